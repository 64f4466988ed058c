//! Starting a connection: the [`Connector`] with the driver's own settings,
//! and the [`Resolve`] hook for host names.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use mio::{Registry, Token};
use nova_driver::shared::{self, Behaviour};
use nova_driver::{IntoConfig, Tls};
use nova_proto::session::{Adapter, SessionConfig};
use nova_proto::{Config, ConfigError};

use crate::connection::{Bounds, Connection, Settings};

/// Default for [`Connector::read_budget`]: 256 KiB.
pub const DEFAULT_READ_BUDGET: usize = 256 << 10;

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
    /// The settings every Nova driver has, with the same defaults and limits.
    settings: shared::Settings,
    /// Only a driver that shares its thread with other work bounds a turn.
    read_budget: usize,
    resolver: Box<dyn Resolve>,
    /// The adapter and the session's settings.
    behaviour: Behaviour,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("settings", &self.settings)
            .field("read_budget", &self.read_budget)
            .field("behaviour", &self.behaviour)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for `config` with the default driver settings.
    pub fn new(config: impl IntoConfig) -> Connector {
        Connector {
            config: config.into_config(),
            settings: shared::Settings::default(),
            read_budget: DEFAULT_READ_BUDGET,
            resolver: Box::new(SystemResolver),
            behaviour: Behaviour::default(),
        }
    }

    /// The service's behaviour: how requests, subscriptions, authentication
    /// and heartbeats look on the wire (the JSON-RPC 2.0 one is
    /// [`JsonRpc`](nova_proto::session::json::JsonRpc)). Enables
    /// [`Connection::request`](crate::Connection::request) and
    /// [`Connection::subscribe`](crate::Connection::subscribe), and the
    /// behaviour layer's events. By default a connection has the
    /// [`Raw`](nova_proto::session::Raw) adapter: a plain WebSocket client.
    pub fn adapter(mut self, adapter: impl Adapter + Send + 'static) -> Connector {
        self.behaviour.set_adapter(Box::new(adapter));
        self
    }

    /// The behaviour layer's limits and timeouts, instead of those of the
    /// configuration's profile ([`SessionConfig::for_profile`]).
    pub fn session_config(mut self, settings: SessionConfig) -> Connector {
        self.behaviour.set_settings(settings);
        self
    }

    /// Which certificates `wss://` trusts (Mozilla's roots by default).
    pub fn tls(mut self, tls: Tls) -> Connector {
        self.settings.set_tls(tls);
        self
    }

    /// Most events waiting in [`Connection::poll_event`](crate::Connection::poll_event)
    /// (at least 1; 1024 by default). A full queue pauses reading from the socket.
    pub fn event_capacity(mut self, events: usize) -> Connector {
        self.settings.set_event_capacity(events);
        self
    }

    /// Most message payload bytes waiting to be polled (4 MiB by default);
    /// one message is always let through, however large.
    pub fn event_bytes(mut self, bytes: usize) -> Connector {
        self.settings.set_event_bytes(bytes);
        self
    }

    /// Most bytes read but not decoded yet (1 MiB by default); beyond it the
    /// driver stops reading the socket until the application polls events.
    pub fn max_buffered_input(mut self, bytes: usize) -> Connector {
        self.settings.set_max_buffered_input(bytes);
        self
    }

    /// Bytes read from the socket at once (16 KiB by default; from 512 bytes
    /// to 1 MiB). The buffer exists only while a connection is up.
    pub fn read_chunk(mut self, bytes: usize) -> Connector {
        self.settings.set_read_chunk(bytes);
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
        self.settings.set_nodelay(nodelay);
        self
    }

    /// A fixed seed for masks, keys and jitter, for reproducible runs. By
    /// default each connection draws one from the operating system.
    pub fn seed(mut self, seed: [u8; 32]) -> Connector {
        self.settings.set_seed(seed);
        self
    }

    /// The `client` label of the metrics and the tracing span (`"nova"` by
    /// default), to tell connections apart.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Connector {
        self.settings.set_name(name.into());
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
        let shared = self.settings;
        let tls = shared.tls_config().map_err(StartError::Tls)?;
        let span = shared.span(&config);
        let telemetry = shared.telemetry(&config, self.behaviour.has_adapter());
        let client = self.behaviour.session(config, shared.seed(), now);
        let settings = Settings {
            tls,
            nodelay: shared.nodelay(),
            read_chunk: shared.read_chunk(),
            read_budget: self.read_budget.max(shared.read_chunk()),
            bounds: Bounds {
                event_capacity: shared.event_capacity(),
                event_bytes: shared.event_bytes(),
                max_buffered_input: shared.max_buffered_input(),
            },
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
