//! For driver authors: what every Nova driver shares, whether or not it runs
//! the async session loop of this crate.
//!
//! The async drivers (`nova-tokio`, `nova-async-std`) use all of this
//! through [`Connector`](crate::Connector). A driver that runs its session
//! somewhere else (`nova-mio`, inside the caller's own `mio::Poll` loop)
//! cannot use that loop, but must still behave the same where the
//! application can tell: the same [`Event`],
//! [`Tls`] settings and defaults, the same seed source, the same
//! `tracing` span and events, the same counters. This module gives it those
//! pieces:
//!
//! - [`Settings`]: the connector settings every driver has (TLS, event-queue
//!   and input bounds, read size, `TCP_NODELAY`, seed, name), with their
//!   defaults and limits, and what a session is started with: the rustls
//!   configuration, the seed, the span, the [`Telemetry`];
//! - [`Telemetry`]: the session's events and counters, fed by the driver's
//!   own loop;
//! - [`event_from_core`] and [`event_weight`]: the core's events as the
//!   application sees them, and what one counts against the event queue's
//!   byte bound;
//! - [`never_opened`]: the error value for a session that ended before it
//!   opened;
//! - [`Outgoing`]: the bytes taken from the core and not yet written,
//!   pulled in batches of at most [`WRITE_BATCH`], given back once empty;
//! - [`Behaviour`]: the adapter and session settings a connector was given,
//!   and the [`Session`] they make.
//!
//! The helpers that turn I/O and rustls errors into the core's
//! [`TransportDown`](nova_proto::TransportDown) values and order addresses
//! (Happy Eyeballs) need no runtime either; they are in [`runtime`](crate::runtime).
//!
//! Applications have no use for this module: it is public so that drivers in
//! other crates share one copy, not as part of any driver's API.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use nova_proto::session::{Adapter, Raw, SessionConfig};
use nova_proto::{Closed, Config, Disconnect, Session};

use crate::connector::{DEFAULT_EVENT_BYTES, DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_BUFFERED_INPUT, DEFAULT_READ_CHUNK};
use crate::{Event, NeverOpened, Tls};

pub use crate::outgoing::{Outgoing, Pulled, WRITE_BATCH};
pub use crate::telemetry::Telemetry;

/// The smallest read size: below it, a read per few frames costs more than
/// the memory saves.
const MIN_READ_CHUNK: usize = 512;
/// The largest read size: 1 MiB.
const MAX_READ_CHUNK: usize = 1 << 20;

/// The connector settings every driver has, besides the core's
/// configuration: which certificates `wss://` trusts, the bounds of the event
/// queue and of undecoded input, the read size, `TCP_NODELAY`, a fixed seed,
/// the name in metrics and traces.
///
/// A driver's connector holds one and forwards its builder methods to the
/// `set_*` methods here, which apply the limits (so every driver clamps
/// alike); it adds the settings only it has (a runtime, a send buffer, a read
/// budget, a resolver) beside it. The defaults are the crate's `DEFAULT_*`
/// constants.
#[derive(Clone)]
pub struct Settings {
    tls: Tls,
    event_capacity: usize,
    event_bytes: usize,
    max_buffered_input: usize,
    read_chunk: usize,
    nodelay: bool,
    seed: Option<[u8; 32]>,
    name: Arc<str>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            tls: Tls::default(),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            event_bytes: DEFAULT_EVENT_BYTES,
            max_buffered_input: DEFAULT_MAX_BUFFERED_INPUT,
            read_chunk: DEFAULT_READ_CHUNK,
            nodelay: true,
            seed: None,
            name: Arc::from("nova"),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("tls", &self.tls)
            .field("event_capacity", &self.event_capacity)
            .field("event_bytes", &self.event_bytes)
            .field("max_buffered_input", &self.max_buffered_input)
            .field("read_chunk", &self.read_chunk)
            .field("nodelay", &self.nodelay)
            // The seed is a secret of sorts (it predicts the masks): say only
            // whether one was fixed.
            .field("seed", &self.seed.map(|_| "fixed"))
            .field("name", &self.name)
            .finish()
    }
}

impl Settings {
    /// Which certificates `wss://` trusts (Mozilla's roots by default).
    pub fn set_tls(&mut self, tls: Tls) {
        self.tls = tls;
    }

    /// Most events waiting for the application; at least 1.
    pub fn set_event_capacity(&mut self, events: usize) {
        self.event_capacity = events.max(1);
    }

    /// Most message payload bytes waiting for the application; one message
    /// is always let through, however large, so 0 is allowed.
    pub fn set_event_bytes(&mut self, bytes: usize) {
        self.event_bytes = bytes;
    }

    /// Most bytes read but not decoded yet; at least 1.
    pub fn set_max_buffered_input(&mut self, bytes: usize) {
        self.max_buffered_input = bytes.max(1);
    }

    /// Bytes read from the socket at once, from 512 bytes to 1 MiB.
    pub fn set_read_chunk(&mut self, bytes: usize) {
        self.read_chunk = bytes.clamp(MIN_READ_CHUNK, MAX_READ_CHUNK);
    }

    /// Whether to disable Nagle's algorithm.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// A fixed seed for masks, keys and jitter, instead of one from the OS.
    pub fn set_seed(&mut self, seed: [u8; 32]) {
        self.seed = Some(seed);
    }

    /// The `client` label of the metrics and the tracing span.
    pub fn set_name(&mut self, name: Arc<str>) {
        self.name = name;
    }

    /// The bound on waiting events.
    pub fn event_capacity(&self) -> usize {
        self.event_capacity
    }

    /// The bound on waiting message bytes.
    pub fn event_bytes(&self) -> usize {
        self.event_bytes
    }

    /// The bound on undecoded input.
    pub fn max_buffered_input(&self) -> usize {
        self.max_buffered_input
    }

    /// The read size.
    pub fn read_chunk(&self) -> usize {
        self.read_chunk
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// The session's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The rustls configuration to connect with; build it once per session,
    /// when it starts, so bad settings fail there and not at each connect.
    ///
    /// # Errors
    ///
    /// When an added root is not a usable CA certificate, or roots were added
    /// to a full `ClientConfig`.
    pub fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        self.tls.build()
    }

    /// The seed for a new session: the fixed one, or 32 bytes from the OS.
    pub fn seed(&self) -> [u8; 32] {
        self.seed.unwrap_or_else(os_seed)
    }

    /// The session's `tracing` span: `nova`, with `client`, `host` and
    /// `port`. Everything the session logs is inside it.
    pub fn span(&self, config: &Config) -> tracing::Span {
        let endpoint = config.endpoint();
        tracing::info_span!("nova", client = %self.name, host = %endpoint.host, port = endpoint.port)
    }

    /// The session's telemetry, registered now at the level `config` asks
    /// for; the behaviour layer's metrics with `adapter` (the session has one).
    pub fn telemetry(&self, config: &Config, adapter: bool) -> Telemetry {
        Telemetry::new(*config.telemetry(), Arc::clone(&self.name), adapter)
    }
}

/// The application's event for a core event; `None` for one the drivers do
/// not know (the core's events are non-exhaustive: a newer core may add some).
/// Messages come from [`Output::Message`](nova_proto::Output::Message) as
/// [`Event::Message`].
pub fn event_from_core(event: nova_proto::Event) -> Option<Event> {
    Event::from_core(event)
}

/// Payload bytes `event` holds, which is what counts against the event
/// queue's byte bound ([`Settings::event_bytes`]).
pub fn event_weight(event: &Event) -> usize {
    event.weight()
}

/// The error value for a session that ended before its first connection
/// opened: why the last attempt failed, if one was made, and how the session
/// ended.
pub fn never_opened(cause: Option<Disconnect>, closed: Option<Closed>) -> NeverOpened {
    NeverOpened { cause, closed }
}

/// What a session does beyond plain WebSocket: the service's [`Adapter`]
/// and the behaviour layer's limits and timeouts. Every driver's connector
/// holds one and forwards its `adapter` and `session_config` methods here.
///
/// The default is the [`Raw`] adapter, with which a [`Session`] is a bare
/// [`Client`](nova_proto::Client), output for output: no request ids, no
/// subscriptions, no `Ready`.
#[derive(Default)]
pub struct Behaviour {
    adapter: Option<Box<dyn Adapter + Send>>,
    settings: Option<SessionConfig>,
}

impl fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The adapter is not shown: it may hold credentials.
        f.debug_struct("Behaviour")
            .field("adapter", &if self.adapter.is_some() { "given" } else { "raw" })
            .field("settings", &self.settings)
            .finish()
    }
}

impl Behaviour {
    /// Whether an adapter was given (else the session passes messages as they are).
    pub fn has_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    /// The service's adapter (requests, subscriptions, authentication,
    /// heartbeats). Replaces any given before.
    pub fn set_adapter(&mut self, adapter: Box<dyn Adapter + Send>) {
        self.adapter = Some(adapter);
    }

    /// The behaviour layer's limits and timeouts, instead of those of the
    /// configuration's profile ([`SessionConfig::for_profile`]).
    pub fn set_settings(&mut self, settings: SessionConfig) {
        self.settings = Some(settings);
    }

    /// The session's settings for `config`: those given, else its profile's.
    pub fn settings(&self, config: &Config) -> SessionConfig {
        self.settings.clone().unwrap_or_else(|| SessionConfig::for_profile(config.profile()))
    }

    /// The core of a new session (not connected yet).
    pub fn session(self, config: Arc<Config>, seed: [u8; 32], now: Instant) -> Session {
        let settings = self.settings(&config);
        let adapter = self.adapter.unwrap_or_else(|| Box::new(Raw));
        Session::with_settings(config, seed, now, adapter, settings)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_their_limits_whatever_is_asked() {
        let mut settings = Settings::default();
        settings.set_event_capacity(0);
        settings.set_max_buffered_input(0);
        settings.set_event_bytes(0);
        settings.set_read_chunk(1);
        assert_eq!((settings.event_capacity(), settings.max_buffered_input(), settings.event_bytes()), (1, 1, 0));
        assert_eq!(settings.read_chunk(), MIN_READ_CHUNK);
        settings.set_read_chunk(usize::MAX);
        assert_eq!(settings.read_chunk(), MAX_READ_CHUNK);
    }

    #[test]
    fn a_fixed_seed_is_used_and_not_shown() {
        let mut settings = Settings::default();
        assert_ne!(settings.seed(), settings.seed(), "each session draws its own");
        settings.set_seed([7; 32]);
        assert_eq!(settings.seed(), [7; 32]);
        assert!(format!("{settings:?}").contains("seed: Some(\"fixed\")"));
    }
}
