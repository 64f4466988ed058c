//! Starting a connection: the [`Connector`] with the driver's own settings,
//! and the [`Resolve`] hook for host names.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use mio::{Registry, Token};
use nova_proto::{Client, Config, ConfigBuilder, ConfigError};

use crate::connection::{Bounds, Connection, Settings};
use crate::telemetry::Telemetry;
use crate::tls::Tls;

/// Default for [`Connector::event_capacity`].
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default for [`Connector::event_bytes`]: 4 MiB.
pub const DEFAULT_EVENT_BYTES: usize = 4 << 20;
/// Default for [`Connector::max_buffered_input`]: 1 MiB.
pub const DEFAULT_MAX_BUFFERED_INPUT: usize = 1 << 20;
/// Default for [`Connector::read_chunk`]: 16 KiB, the largest TLS record.
pub const DEFAULT_READ_CHUNK: usize = 16 << 10;
/// Default for [`Connector::read_budget`]: 256 KiB.
pub const DEFAULT_READ_BUDGET: usize = 256 << 10;
/// The largest [`Connector::read_chunk`]: 1 MiB.
const MAX_READ_CHUNK: usize = 1 << 20;

/// Anything a connection can be configured from: a URL (`&str`, `String`), a
/// [`Config`], an `Arc<Config>` or a [`ConfigBuilder`].
pub trait IntoConfig {
    /// The configuration.
    ///
    /// # Errors
    ///
    /// When the URL or a setting is invalid.
    fn into_config(self) -> Result<Arc<Config>, ConfigError>;
}

impl IntoConfig for &str {
    fn into_config(self) -> Result<Arc<Config>, ConfigError> {
        Config::new(self).map(Arc::new)
    }
}

impl IntoConfig for String {
    fn into_config(self) -> Result<Arc<Config>, ConfigError> {
        self.as_str().into_config()
    }
}

impl IntoConfig for &String {
    fn into_config(self) -> Result<Arc<Config>, ConfigError> {
        self.as_str().into_config()
    }
}

impl IntoConfig for Config {
    fn into_config(self) -> Result<Arc<Config>, ConfigError> {
        Ok(Arc::new(self))
    }
}

impl IntoConfig for Arc<Config> {
    fn into_config(self) -> Result<Arc<Config>, ConfigError> {
        Ok(self)
    }
}

impl IntoConfig for ConfigBuilder {
    fn into_config(self) -> Result<Arc<Config>, ConfigError> {
        self.build().map(Arc::new)
    }
}

/// Why a connection could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The URL or a setting is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The TLS settings cannot work (an added root is not a CA certificate).
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// Turns a host name into addresses, on the caller's thread.
///
/// The driver calls it when the core asks for a connection to a host that
/// is not an IP literal (literals are never looked up), from inside
/// [`Connection::on_timeout`](crate::Connection::on_timeout) and the other
/// driving methods: whatever it does, the event loop waits for it. The
/// default, [`SystemResolver`], is the blocking `getaddrinfo` of the
/// standard library. An application that must never block its loop gives
/// its own: addresses it resolved ahead of time, a cache filled by another
/// thread, or fixed addresses ([`Connector::addrs`]).
pub trait Resolve: Send {
    /// The addresses of `host`, for `port`. An error or an empty list ends
    /// the attempt with [`TransportDown::Resolve`](nova_proto::TransportDown::Resolve),
    /// and the reconnect policy decides what follows.
    ///
    /// # Errors
    ///
    /// When the name cannot be resolved.
    fn resolve(&mut self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The standard library's resolver (`getaddrinfo`): **blocks** the calling
/// thread until the system answers, which for an unreachable DNS server can
/// take seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&mut self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// Fixed addresses, whatever the host name: see [`Connector::addrs`].
#[derive(Debug, Clone)]
struct FixedAddrs(Vec<SocketAddr>);

impl Resolve for FixedAddrs {
    fn resolve(&mut self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(self.0.clone())
    }
}

/// A connection's configuration plus the driver's own settings: TLS,
/// buffer bounds, name resolution, a fixed seed.
///
/// ```no_run
/// use std::time::Instant;
/// use mio::{Poll, Token};
/// use nova_mio::nova_proto::{Config, Profile};
/// use nova_mio::{Connector, Tls};
///
/// let poll = Poll::new()?;
/// let config = Config::builder("wss://stream.example.com/ws")
///     .profile(Profile::Financial)
///     .header("Authorization", "Bearer ...");
/// let connection = Connector::new(config)
///     .tls(Tls::webpki_roots())
///     .event_capacity(4096)
///     .name("market-data")
///     .start(poll.registry(), Token(7), Instant::now())?;
/// # let _ = connection;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a connector does nothing until `start`"]
pub struct Connector {
    config: Result<Arc<Config>, ConfigError>,
    tls: Tls,
    bounds: Bounds,
    read_chunk: usize,
    read_budget: usize,
    nodelay: bool,
    seed: Option<[u8; 32]>,
    name: Arc<str>,
    resolver: Box<dyn Resolve>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("bounds", &self.bounds)
            .field("read_chunk", &self.read_chunk)
            .field("read_budget", &self.read_budget)
            .field("nodelay", &self.nodelay)
            .field("seed", &self.seed.map(|_| "fixed"))
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for `config` with the default driver settings.
    pub fn new(config: impl IntoConfig) -> Connector {
        Connector {
            config: config.into_config(),
            tls: Tls::default(),
            bounds: Bounds {
                event_capacity: DEFAULT_EVENT_CAPACITY,
                event_bytes: DEFAULT_EVENT_BYTES,
                max_buffered_input: DEFAULT_MAX_BUFFERED_INPUT,
            },
            read_chunk: DEFAULT_READ_CHUNK,
            read_budget: DEFAULT_READ_BUDGET,
            nodelay: true,
            seed: None,
            name: Arc::from("nova"),
            resolver: Box::new(SystemResolver),
        }
    }

    /// Which certificates `wss://` trusts (Mozilla's roots by default).
    pub fn tls(mut self, tls: Tls) -> Connector {
        self.tls = tls;
        self
    }

    /// Most events waiting in [`Connection::poll_event`](crate::Connection::poll_event)
    /// (at least 1; 1024 by default). A full queue pauses reading from the socket.
    pub fn event_capacity(mut self, events: usize) -> Connector {
        self.bounds.event_capacity = events.max(1);
        self
    }

    /// Most message payload bytes waiting to be polled (4 MiB by default);
    /// one message is always let through, however large.
    pub fn event_bytes(mut self, bytes: usize) -> Connector {
        self.bounds.event_bytes = bytes;
        self
    }

    /// Most bytes read but not decoded yet (1 MiB by default); beyond it the
    /// driver stops reading the socket until the application polls events.
    pub fn max_buffered_input(mut self, bytes: usize) -> Connector {
        self.bounds.max_buffered_input = bytes.max(1);
        self
    }

    /// Bytes read from the socket at once (16 KiB by default; from 512 bytes
    /// to 1 MiB). The buffer exists only while a connection is up.
    pub fn read_chunk(mut self, bytes: usize) -> Connector {
        self.read_chunk = bytes.clamp(512, MAX_READ_CHUNK);
        self
    }

    /// Most bytes read from the socket in one driving call (256 KiB by
    /// default, at least one read chunk), so one busy connection cannot
    /// starve the others sharing the loop. When a call stops at the budget,
    /// [`Connection::poll_timeout`](crate::Connection::poll_timeout) returns
    /// a deadline already passed: the loop comes back at once.
    pub fn read_budget(mut self, bytes: usize) -> Connector {
        self.read_budget = bytes.max(1);
        self
    }

    /// Whether to disable Nagle's algorithm (on by default: a small message
    /// must not wait for the previous one's acknowledgement).
    pub fn nodelay(mut self, nodelay: bool) -> Connector {
        self.nodelay = nodelay;
        self
    }

    /// A fixed seed for masks, keys and jitter, for reproducible runs. By
    /// default each connection draws one from the operating system.
    pub fn seed(mut self, seed: [u8; 32]) -> Connector {
        self.seed = Some(seed);
        self
    }

    /// The `client` label of the metrics and the tracing span (`"nova"` by
    /// default), to tell connections apart.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Connector {
        self.name = name.into();
        self
    }

    /// Resolves host names with `resolver` instead of the blocking
    /// [`SystemResolver`]. IP literals are never passed to it.
    pub fn resolver(mut self, resolver: impl Resolve + 'static) -> Connector {
        self.resolver = Box::new(resolver);
        self
    }

    /// Connects to these addresses (tried in order, IPv6 and IPv4
    /// interleaved) instead of resolving the URL's host, which still names
    /// the server for the `Host` header and TLS verification. Nothing blocks
    /// on DNS.
    pub fn addrs(self, addrs: impl IntoIterator<Item = SocketAddr>) -> Connector {
        self.resolver(FixedAddrs(addrs.into_iter().collect()))
    }

    /// Starts the connection: its socket is registered with `registry` under
    /// `token` (and every later socket of the session, after a reconnect,
    /// under the same token). Resolves the host first, on this thread, unless
    /// it is an IP literal or a [`resolver`](Self::resolver) says otherwise.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] for an invalid URL or setting,
    /// [`StartError::Tls`] for TLS settings that cannot work. Network
    /// failures are not errors here: they come out as
    /// [`Event::Disconnected`](crate::Event::Disconnected), and the reconnect
    /// policy decides what follows.
    pub fn start(self, registry: &Registry, token: Token, now: Instant) -> Result<Connection, StartError> {
        let config = self.config?;
        let tls = self.tls.build().map_err(StartError::Tls)?;
        let seed = self.seed.unwrap_or_else(os_seed);
        let endpoint = config.endpoint();
        let span = tracing::info_span!("nova", client = %self.name, host = %endpoint.host, port = endpoint.port);
        let telemetry = Telemetry::new(*config.telemetry(), Arc::clone(&self.name));
        let client = Client::new(config, seed, now);
        let settings = Settings {
            tls,
            nodelay: self.nodelay,
            read_chunk: self.read_chunk,
            read_budget: self.read_budget.max(self.read_chunk),
            bounds: self.bounds,
        };
        let mut connection = Connection::new(client, token, settings, self.resolver, telemetry, span, now);
        connection.start(registry, now);
        Ok(connection)
    }
}

/// Starts a connection to `config` (a URL or a [`Config`]) with the default
/// driver settings. See [`Connector::start`].
///
/// # Errors
///
/// As [`Connector::start`].
pub fn start(
    config: impl IntoConfig,
    registry: &Registry,
    token: Token,
    now: Instant,
) -> Result<Connection, StartError> {
    Connector::new(config).start(registry, token, now)
}

/// A seed from the operating system. Should the OS source fail (it does not
/// on supported platforms), the seed still differs per process and connection.
fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        for (i, chunk) in seed.chunks_mut(8).enumerate() {
            let word = state.hash_one((i, std::time::SystemTime::now(), std::process::id()));
            chunk.copy_from_slice(&word.to_le_bytes());
        }
    }
    seed
}
