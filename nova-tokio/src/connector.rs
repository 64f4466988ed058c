//! Starting a session: [`connect`], [`start`] and the [`Connector`] that
//! carries the driver's own settings.

use std::sync::Arc;

use nova_proto::{Client, Closed, Config, ConfigBuilder, ConfigError, Disconnect};
use tokio::time::Instant;
use tracing::Instrument;

use crate::driver::{self, DriverSettings};
use crate::handle::{Events, Handle};
use crate::shared::{Bounds, Shared};
use crate::telemetry::Telemetry;
use crate::tls::Tls;

/// Default for [`Connector::event_capacity`].
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default for [`Connector::event_bytes`]: 4 MiB.
pub const DEFAULT_EVENT_BYTES: usize = 4 << 20;
/// Default for [`Connector::max_buffered_input`]: 1 MiB.
pub const DEFAULT_MAX_BUFFERED_INPUT: usize = 1 << 20;
/// Default for [`Connector::send_buffer`]: 1 MiB.
pub const DEFAULT_SEND_BUFFER: usize = 1 << 20;
/// Default for [`Connector::read_chunk`]: 16 KiB, the largest TLS record.
pub const DEFAULT_READ_CHUNK: usize = 16 << 10;
/// The largest [`Connector::read_chunk`]: 1 MiB.
const MAX_READ_CHUNK: usize = 1 << 20;

/// Anything a session can be configured from: a URL (`&str`, `String`), a
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

/// Why a session could not start, or ended before it ever opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL or a setting is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The TLS settings cannot work (an added root is not a CA certificate).
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
    /// Not called from within a tokio runtime.
    #[error("no tokio runtime: start the session from within one")]
    NoRuntime,
    /// The session ended before a connection opened: the reconnect policy
    /// gave up, or did not retry (a rejected certificate, say).
    #[error("{0}")]
    NeverOpened(Box<NeverOpened>),
    /// The session's task stopped before a connection opened, without the
    /// session ending: its runtime shut down (or it panicked).
    #[error("the session's task stopped before a connection opened")]
    Stopped,
}

/// A session that ended before its first connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NeverOpened {
    /// Why the last attempt failed, if one was made.
    pub cause: Option<Disconnect>,
    /// How the session ended.
    pub closed: Option<Closed>,
}

impl std::fmt::Display for NeverOpened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the session ended before a connection opened")?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// Connects to `config` (a URL or a [`Config`]) with the default driver
/// settings and waits until the connection is open.
///
/// Failed attempts are retried by the configuration's reconnect policy
/// before this returns: with a policy that retries forever (the default),
/// a server that stays down keeps it waiting. Bound it with
/// `tokio::time::timeout`, a `max_attempts`, or use [`start`] and watch the
/// events. Every failed attempt is logged through `tracing`.
///
/// The session then lives on its own task: it reconnects by the same
/// policy, and ends when [`Handle::close`] is called, when the policy gives
/// up, or when every [`Handle`] is dropped.
///
/// # Errors
///
/// [`ConnectError::Config`] for an invalid URL or setting, at once;
/// [`ConnectError::NeverOpened`] if the session ended before it opened (with
/// the last attempt's failure); [`ConnectError::Stopped`] if the runtime shut
/// down first.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use nova_tokio::Event;
/// # let server = nova_testkit::MockServer::start(nova_testkit::Behavior::accept().echo())?;
/// # let url = server.url("/");
///
/// let (handle, mut events) = nova_tokio::connect(url.as_str()).await?;
/// handle.send("hello").await?;
/// while let Some(event) = events.recv().await {
///     if let Event::Message(message) = event {
///         assert_eq!(message.as_text(), Some("hello"));
///         break;
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub async fn connect(config: impl IntoConfig) -> Result<(Handle, Events), ConnectError> {
    Connector::new(config).connect().await
}

/// Starts a session without waiting for it to open: the first events say
/// how it goes. Must be called within a tokio runtime.
///
/// # Errors
///
/// [`ConnectError::Config`] for an invalid URL or setting,
/// [`ConnectError::NoRuntime`] outside a runtime.
pub fn start(config: impl IntoConfig) -> Result<(Handle, Events), ConnectError> {
    Connector::new(config).start()
}

/// A session's configuration plus the driver's own settings: TLS, buffer
/// bounds, a fixed seed.
///
/// ```no_run
/// # async fn run() -> Result<(), nova_tokio::ConnectError> {
/// use nova_proto::{Config, Profile};
/// use nova_tokio::{Connector, Tls};
///
/// let config = Config::builder("wss://stream.example.com/ws")
///     .profile(Profile::Financial)
///     .header("Authorization", "Bearer ...");
/// let (handle, events) = Connector::new(config)
///     .tls(Tls::webpki_roots())
///     .event_capacity(4096)
///     .name("market-data")
///     .connect()
///     .await?;
/// # let _ = (handle, events);
/// # Ok(())
/// # }
/// ```
#[must_use = "a connector does nothing until `connect` or `start`"]
pub struct Connector {
    config: Result<Arc<Config>, ConfigError>,
    tls: Tls,
    bounds: Bounds,
    read_chunk: usize,
    nodelay: bool,
    seed: Option<[u8; 32]>,
    name: Arc<str>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("bounds", &self.bounds)
            .field("read_chunk", &self.read_chunk)
            .field("nodelay", &self.nodelay)
            .field("seed", &self.seed.map(|_| "fixed"))
            .field("name", &self.name)
            .finish()
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
                send_buffer: DEFAULT_SEND_BUFFER,
            },
            read_chunk: DEFAULT_READ_CHUNK,
            nodelay: true,
            seed: None,
            name: Arc::from("nova"),
        }
    }

    /// Which certificates `wss://` trusts (Mozilla's roots by default).
    pub fn tls(mut self, tls: Tls) -> Connector {
        self.tls = tls;
        self
    }

    /// Most events waiting for the application (at least 1; 1024 by default).
    /// A full queue pauses reading from the socket.
    pub fn event_capacity(mut self, events: usize) -> Connector {
        self.bounds.event_capacity = events.max(1);
        self
    }

    /// Most message payload bytes waiting for the application (4 MiB by
    /// default); one message is always let through, however large.
    pub fn event_bytes(mut self, bytes: usize) -> Connector {
        self.bounds.event_bytes = bytes;
        self
    }

    /// Most bytes read but not decoded yet (1 MiB by default); beyond it the
    /// driver stops reading the socket until the application catches up.
    pub fn max_buffered_input(mut self, bytes: usize) -> Connector {
        self.bounds.max_buffered_input = bytes.max(1);
        self
    }

    /// How many payload bytes may wait to be written before
    /// [`Handle::send`] waits (1 MiB by default).
    pub fn send_buffer(mut self, bytes: usize) -> Connector {
        self.bounds.send_buffer = bytes.max(1);
        self
    }

    /// Bytes read from the socket at once (16 KiB by default; from 512 bytes
    /// to 1 MiB). The buffer exists only while a connection is up.
    pub fn read_chunk(mut self, bytes: usize) -> Connector {
        self.read_chunk = bytes.clamp(512, MAX_READ_CHUNK);
        self
    }

    /// Whether to disable Nagle's algorithm (on by default: a small message
    /// must not wait for the previous one's acknowledgement).
    pub fn nodelay(mut self, nodelay: bool) -> Connector {
        self.nodelay = nodelay;
        self
    }

    /// A fixed seed for masks, keys and jitter, for reproducible runs. By
    /// default each session draws one from the operating system.
    pub fn seed(mut self, seed: [u8; 32]) -> Connector {
        self.seed = Some(seed);
        self
    }

    /// The `client` label of the metrics and the tracing span (`"nova"` by
    /// default), to tell sessions apart.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Connector {
        self.name = name.into();
        self
    }

    /// Starts the session and waits until its first connection opens.
    ///
    /// # Errors
    ///
    /// As [`connect`].
    pub async fn connect(self) -> Result<(Handle, Events), ConnectError> {
        let (handle, events) = self.start()?;
        if handle.opened().await {
            return Ok((handle, events));
        }
        let inner = handle.shared().lock();
        if inner.closed.is_none() {
            return Err(ConnectError::Stopped);
        }
        let never = NeverOpened { cause: inner.last_disconnect.clone(), closed: inner.closed.clone() };
        Err(ConnectError::NeverOpened(Box::new(never)))
    }

    /// Starts the session without waiting.
    ///
    /// # Errors
    ///
    /// As [`start`].
    pub fn start(self) -> Result<(Handle, Events), ConnectError> {
        let config = self.config?;
        let tls = self.tls.build().map_err(ConnectError::Tls)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        let seed = self.seed.unwrap_or_else(os_seed);
        let now = Instant::now().into_std();
        let endpoint = config.endpoint();
        let span = tracing::info_span!("nova", client = %self.name, host = %endpoint.host, port = endpoint.port);
        let telemetry = Telemetry::new(*config.telemetry(), Arc::clone(&self.name));
        let mut client = Client::new(config, seed, now);
        client.connect(now);
        let shared = Arc::new(Shared::new(client, self.bounds));
        let settings = DriverSettings { tls: Some(tls), nodelay: self.nodelay, read_chunk: self.read_chunk };
        runtime.spawn(driver::run(Arc::clone(&shared), settings, telemetry).instrument(span));
        Ok((Handle::new(Arc::clone(&shared)), Events::new(shared)))
    }
}

/// A seed from the operating system. Should the OS source fail (it does not
/// on supported platforms), the seed still differs per process and session.
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
