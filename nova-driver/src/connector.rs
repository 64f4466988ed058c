//! Starting a session: the [`Connector`] that carries the driver's own
//! settings, on any [`Runtime`].

use std::sync::Arc;
use std::time::Instant;

use nova_proto::session::{Adapter, SessionConfig};
use nova_proto::{Closed, Config, ConfigBuilder, ConfigError, Disconnect};
use tracing::Instrument;

use crate::driver::{self, DriverSettings};
use crate::handle::{Events, Handle};
use crate::runtime::Runtime;
use crate::shared::{Behaviour, Settings, never_opened};
use crate::state::{Bounds, Shared};
use crate::subscription::Feeds;
use crate::tls::Tls;

/// Default bound on the events waiting for the application, in every
/// driver (its connector's `event_capacity`).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default bound on the message bytes waiting for the application, in every
/// driver (its connector's `event_bytes`): 4 MiB.
pub const DEFAULT_EVENT_BYTES: usize = 4 << 20;
/// Default bound on the bytes read but not decoded yet, in every driver (its
/// connector's `max_buffered_input`): 1 MiB.
pub const DEFAULT_MAX_BUFFERED_INPUT: usize = 1 << 20;
/// Default for [`Connector::send_buffer`]: 1 MiB.
pub const DEFAULT_SEND_BUFFER: usize = 1 << 20;
/// Default for [`Connector::subscription_capacity`]: 1024 messages per subscription.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;
/// Default size of one read from the socket, in every driver (its
/// connector's `read_chunk`): 16 KiB, the largest TLS record.
pub const DEFAULT_READ_CHUNK: usize = 16 << 10;

/// What the driver does when the event queue is full and another message
/// arrives ([`Connector::overflow`]).
///
/// Only [`Event::Message`](crate::Event::Message) is ever dropped: session
/// events (opened, disconnected, closed, unsent, ...) are always delivered.
/// Not to be confused with [`nova_proto::Overflow`], the policy of the
/// *outbound* queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Stop reading the socket until the application makes room: TCP slows
    /// the server down, nothing is lost. The default.
    #[default]
    Block,
    /// Drop the oldest waiting message to make room: the application sees
    /// the latest data (market data, where a stale tick is worthless).
    DropOldest,
    /// Drop the message that arrived: what is waiting is kept.
    DropNewest,
}

/// Anything a session can be configured from: a URL (`&str`, `String`), a
/// [`Config`], an `Arc<Config>` or a [`ConfigBuilder`]. Every driver's
/// connector takes one.
///
/// Opening many sessions to one service, build the `Config` once and pass
/// clones of one `Arc<Config>`: sessions share it (a `Config` is about 800
/// bytes with its URL and headers; an idle session, everything else, is
/// about 4.5 KiB, see `nova-bench/RESULTS.md`).
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
    /// No runtime to run the session on: not called from within one, and
    /// none given with [`Connector::runtime`].
    #[error("no runtime to run the session on: start it from within one, or give the connector one")]
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

/// A session's configuration plus the driver's own settings: TLS, buffer
/// bounds, a fixed seed; and the runtime it runs on.
///
/// Each driver names it for its runtime (`nova_tokio::Connector` is
/// `Connector<nova_tokio::Tokio>`), so applications write `Connector::new`.
///
/// ```no_run
/// # async fn run<R: nova_driver::Runtime>() -> Result<(), nova_driver::ConnectError> {
/// use nova_proto::{Config, Profile};
/// use nova_driver::Tls;
///
/// let config = Config::builder("wss://stream.example.com/ws")
///     .profile(Profile::Financial)
///     .header("Authorization", "Bearer ...");
/// let (handle, events) = nova_driver::Connector::<R>::new(config)
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
pub struct Connector<R> {
    config: Result<Arc<Config>, ConfigError>,
    /// What every driver's connector has.
    settings: Settings,
    /// Only the async drivers' handles wait for room to send.
    send_buffer: usize,
    /// The adapter and the session's settings.
    behaviour: Behaviour,
    /// Bound of each subscription's queue, in messages.
    subscription_capacity: usize,
    /// What a full event queue does with one more message. Only the async
    /// loop has the policy (`nova-mio` keeps its own queue), so it is not in
    /// [`Settings`].
    overflow: Overflow,
    /// The backlog warning's mark, as a fraction of the event queue's bounds.
    backlog_warning: Option<f64>,
    /// The runtime given with [`Connector::runtime`]; by default, the
    /// caller's at start.
    runtime: Option<R>,
}

impl<R> std::fmt::Debug for Connector<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("settings", &self.settings)
            .field("send_buffer", &self.send_buffer)
            .field("behaviour", &self.behaviour)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("overflow", &self.overflow)
            .field("backlog_warning", &self.backlog_warning)
            .field("runtime", &if self.runtime.is_some() { "given" } else { "current" })
            .finish()
    }
}

impl<R> Connector<R> {
    /// A connector for `config` with the default driver settings.
    pub fn new(config: impl IntoConfig) -> Connector<R> {
        Connector {
            config: config.into_config(),
            settings: Settings::default(),
            send_buffer: DEFAULT_SEND_BUFFER,
            behaviour: Behaviour::default(),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            overflow: Overflow::Block,
            backlog_warning: None,
            runtime: None,
        }
    }

    /// The service's behaviour: how requests, subscriptions, authentication
    /// and heartbeats look on the wire (the JSON-RPC 2.0 one is
    /// [`JsonRpc`](nova_proto::session::json::JsonRpc)). Enables
    /// [`Handle::request`] and [`Handle::subscribe`], and the behaviour
    /// layer's events ([`Event::Ready`](crate::Event::Ready) and others).
    ///
    /// By default a session has the [`Raw`](nova_proto::session::Raw)
    /// adapter: it behaves exactly like a plain WebSocket client.
    pub fn adapter(mut self, adapter: impl Adapter + Send + 'static) -> Connector<R> {
        self.behaviour.set_adapter(Box::new(adapter));
        self
    }

    /// The behaviour layer's limits and timeouts (request and
    /// authentication timeouts, how many requests and subscriptions are
    /// held), instead of those of the configuration's profile
    /// ([`SessionConfig::for_profile`]).
    pub fn session_config(mut self, settings: SessionConfig) -> Connector<R> {
        self.behaviour.set_settings(settings);
        self
    }

    /// Most messages waiting in each [`Subscription`](crate::Subscription)
    /// stream (at least 1; 1024 by default); its payload bytes are bounded
    /// by [`event_bytes`](Self::event_bytes) too. A full subscription pauses
    /// reading from the socket, as a full event queue does: nothing is
    /// dropped, TCP slows the server down.
    pub fn subscription_capacity(mut self, messages: usize) -> Connector<R> {
        self.subscription_capacity = messages.max(1);
        self
    }

    /// The runtime to run the session on, instead of the one
    /// [`start`](Self::start) is called from.
    pub fn runtime(mut self, runtime: R) -> Connector<R> {
        self.runtime = Some(runtime);
        self
    }

    /// Which certificates `wss://` trusts (Mozilla's roots by default).
    pub fn tls(mut self, tls: Tls) -> Connector<R> {
        self.settings.set_tls(tls);
        self
    }

    /// Most events waiting for the application (at least 1; 1024 by default).
    /// A full queue pauses reading from the socket, or drops messages (see
    /// [`overflow`](Self::overflow)).
    pub fn event_capacity(mut self, events: usize) -> Connector<R> {
        self.settings.set_event_capacity(events);
        self
    }

    /// What a full event queue does with one more message:
    /// [`Overflow::Block`] (the default) stops reading the socket,
    /// [`Overflow::DropOldest`] and [`Overflow::DropNewest`] keep reading and
    /// drop a message, counted in [`Event::Overflow`](crate::Event::Overflow).
    pub fn overflow(mut self, overflow: Overflow) -> Connector<R> {
        self.overflow = overflow;
        self
    }

    /// A high-water mark, as a fraction of the event queue's bounds (count
    /// and bytes, whichever is crossed first): crossing it queues one
    /// [`Event::Backlog`](crate::Event::Backlog), and another only after the
    /// queue falls below half the mark. Off (`None`) by default; the design
    /// notes suggest `0.8`. A fraction outside `0.0..=1.0` is clamped into
    /// it; NaN turns the warning off.
    pub fn backlog_warning(mut self, fraction: Option<f64>) -> Connector<R> {
        self.backlog_warning = fraction.filter(|f| !f.is_nan()).map(|f| f.clamp(0.0, 1.0));
        self
    }

    /// Most message payload bytes waiting for the application (4 MiB by
    /// default); one message is always let through, however large.
    pub fn event_bytes(mut self, bytes: usize) -> Connector<R> {
        self.settings.set_event_bytes(bytes);
        self
    }

    /// Most bytes read but not decoded yet (1 MiB by default); beyond it the
    /// driver stops reading the socket until the application catches up.
    pub fn max_buffered_input(mut self, bytes: usize) -> Connector<R> {
        self.settings.set_max_buffered_input(bytes);
        self
    }

    /// How many payload bytes may wait to be written before
    /// [`Handle::send`] waits (1 MiB by default).
    pub fn send_buffer(mut self, bytes: usize) -> Connector<R> {
        self.send_buffer = bytes.max(1);
        self
    }

    /// Bytes read from the socket at once (16 KiB by default; from 512 bytes
    /// to 1 MiB). Sessions read into one buffer per thread, so a larger
    /// chunk costs no memory per session.
    pub fn read_chunk(mut self, bytes: usize) -> Connector<R> {
        self.settings.set_read_chunk(bytes);
        self
    }

    /// Whether to disable Nagle's algorithm (on by default: a small message
    /// must not wait for the previous one's acknowledgement).
    pub fn nodelay(mut self, nodelay: bool) -> Connector<R> {
        self.settings.set_nodelay(nodelay);
        self
    }

    /// A fixed seed for masks, keys and jitter, for reproducible runs. By
    /// default each session draws one from the operating system.
    pub fn seed(mut self, seed: [u8; 32]) -> Connector<R> {
        self.settings.set_seed(seed);
        self
    }

    /// The `client` label of the metrics and the tracing span (`"nova"` by
    /// default), to tell sessions apart.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Connector<R> {
        self.settings.set_name(name.into());
        self
    }
}

impl<R: Runtime> Connector<R> {
    /// Starts the session and waits until its first connection opens.
    ///
    /// Failed attempts are retried by the configuration's reconnect policy
    /// before this returns: with a policy that retries forever (the default),
    /// a server that stays down keeps it waiting. Bound it with a timeout, a
    /// `max_attempts`, or use [`start`](Self::start) and watch the events.
    /// Every failed attempt is logged through `tracing`.
    ///
    /// The session then lives on its own task: it reconnects by the same
    /// policy, and ends when [`Handle::close`] is called, when the policy
    /// gives up, or when every [`Handle`] is dropped.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid URL or setting and
    /// [`ConnectError::NoRuntime`] without a runtime, at once;
    /// [`ConnectError::NeverOpened`] if the session ended before it opened
    /// (with the last attempt's failure); [`ConnectError::Stopped`] if the
    /// runtime shut down first.
    pub async fn connect(self) -> Result<(Handle, Events), ConnectError> {
        let (handle, events) = self.start()?;
        if handle.opened().await {
            return Ok((handle, events));
        }
        let inner = handle.shared().lock();
        if inner.closed.is_none() {
            return Err(ConnectError::Stopped);
        }
        let never = never_opened(inner.last_disconnect.clone(), inner.closed.clone());
        Err(ConnectError::NeverOpened(Box::new(never)))
    }

    /// Starts the session without waiting for it to open: the first events
    /// say how it goes.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid URL or setting,
    /// [`ConnectError::Tls`] for TLS settings that cannot work,
    /// [`ConnectError::NoRuntime`] outside a runtime when none was given.
    pub fn start(self) -> Result<(Handle, Events), ConnectError> {
        let config = self.config?;
        let settings = self.settings;
        let tls = settings.tls_config().map_err(ConnectError::Tls)?;
        let runtime = self.runtime.or_else(R::current).ok_or(ConnectError::NoRuntime)?;
        let now = Instant::now();
        let span = settings.span(&config);
        let telemetry = settings.telemetry(&config, self.behaviour.has_adapter());
        let mut client = self.behaviour.session(config, settings.seed(), now);
        client.connect(now);
        let bounds = Bounds {
            event_capacity: settings.event_capacity(),
            event_bytes: settings.event_bytes(),
            max_buffered_input: settings.max_buffered_input(),
            send_buffer: self.send_buffer,
            overflow: self.overflow,
            backlog_warning: self.backlog_warning,
        };
        let feeds = Feeds::new(self.subscription_capacity, settings.event_bytes());
        let shared = Arc::new(Shared::new(client, bounds, feeds));
        let settings =
            DriverSettings { tls: Some(tls), nodelay: settings.nodelay(), read_chunk: settings.read_chunk() };
        let session = driver::run(Arc::clone(&shared), settings, telemetry, runtime.clone());
        runtime.spawn(Box::pin(session.instrument(span)));
        Ok((Handle::new(Arc::clone(&shared)), Events::new(shared)))
    }
}
