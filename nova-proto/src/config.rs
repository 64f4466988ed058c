//! Configuration: where to connect, what to send in the upgrade, every limit and
//! timer, the reconnect policy, and the profiles that fill them.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::backoff::{Backoff, Decision, Match, ReconnectPolicy};
use crate::breaker::CircuitBreaker;
use crate::deflate::DeflateConfig;
use crate::profile::Profile;
use crate::proxy::Proxy;

/// Everything a [`Client`](crate::Client) needs to know, validated.
///
/// Built with [`Config::builder`]; immutable afterwards, and cheap to share
/// between many clients behind an `Arc`.
///
/// ```
/// use std::time::Duration;
/// use nova_proto::{Config, Profile};
///
/// let config = Config::builder("wss://stream.example.com/v1?compress=false")
///     .profile(Profile::Financial)
///     .header("X-Api-Key", "k-123")
///     .subprotocol("v1.json")
///     .max_message_size(4 << 20)
///     .build()?;
/// assert_eq!(config.endpoint().port, 443);
/// assert_eq!(config.keepalive().unwrap().interval, Duration::from_secs(15));
/// # Ok::<(), nova_proto::ConfigError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Config {
    endpoint: Endpoint,
    request_head: String,
    subprotocols: Vec<String>,
    require_subprotocol: bool,
    limits: Limits,
    timeouts: Timeouts,
    keepalive: Option<Keepalive>,
    reconnect: ReconnectPolicy,
    outbound: Outbound,
    history_len: usize,
    profile: Profile,
    telemetry: Telemetry,
    deflate: Option<DeflateConfig>,
    proxy: Option<Arc<Proxy>>,
}

/// Header values (tokens, API keys, Basic credentials) never appear in `Debug`
/// output, which ends up in logs: only the header names are shown.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> =
            self.request_head.lines().skip(1).filter_map(|line| line.split_once(':').map(|(name, _)| name)).collect();
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("headers", &header_names)
            .field("subprotocols", &self.subprotocols)
            .field("require_subprotocol", &self.require_subprotocol)
            .field("limits", &self.limits)
            .field("timeouts", &self.timeouts)
            .field("keepalive", &self.keepalive)
            .field("reconnect", &self.reconnect)
            .field("outbound", &self.outbound)
            .field("history_len", &self.history_len)
            .field("profile", &self.profile)
            .field("telemetry", &self.telemetry)
            .field("deflate", &self.deflate)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// The server to connect to, from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `wss`.
    pub tls: bool,
    /// Host name (IDNA-encoded) or IP literal, IPv6 without brackets.
    pub host: Arc<str>,
    /// TCP port (80/443 when the URL has none).
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub resource: String,
}

/// Size limits. Each bounds a buffer; exceeding one is an error, never growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload accepted from the server (larger: close 1009).
    pub max_frame_size: usize,
    /// Largest message accepted from the server, fragments summed (larger:
    /// close 1009), and largest message `send` accepts.
    pub max_message_size: usize,
    /// Largest upgrade response head.
    pub max_handshake_size: usize,
    /// Outgoing messages longer than this are sent as several frames, so pongs
    /// and pings can go out between them. `None`: one frame per message.
    pub max_outgoing_frame_size: Option<usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_handshake_size: 32 << 10,
            max_outgoing_frame_size: None,
        }
    }
}

/// Deadlines for the phases of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From [`Output::Connect`](crate::Output::Connect) to
    /// [`Input::TransportUp`](crate::Input::TransportUp) (DNS, TCP and TLS).
    pub connect: Duration,
    /// From the transport being up to a valid 101.
    pub handshake: Duration,
    /// From the first close frame (sent or received) to the transport being shut.
    pub close: Duration,
}

/// Protocol-level keepalive: a ping every `interval`; when neither the pong nor
/// any other frame arrives within `timeout` after a ping, that ping is missed,
/// and more than `allowed_misses` misses in a row declare the connection dead.
/// A dead connection is aborted (no close handshake) and the reconnect policy runs.
///
/// A slow application is not a dead server: while whole frames wait for the
/// application to take them (its driver stops reading the socket then, so
/// the pong may be sitting unread behind them), no miss is counted. The
/// verdict comes at most one `timeout` after the application catches up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings.
    pub interval: Duration,
    /// How long a ping may go unanswered.
    pub timeout: Duration,
    /// Missed pings tolerated before the connection is declared dead.
    pub allowed_misses: u32,
}

/// What happens to outgoing messages that cannot be written yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// Most messages waiting at once.
    pub max_messages: usize,
    /// Most payload bytes waiting at once.
    pub max_bytes: usize,
    /// What a full queue does with one more message.
    pub overflow: Overflow,
    /// Whether [`Client::send`](crate::Client::send) queues messages while
    /// disconnected (for replay after reconnect). Off by default: orders and other
    /// non-idempotent messages must not be replayed unless asked for.
    pub offline: bool,
    /// Default time to live of a queued message; expired ones are given back
    /// as [`Event::Unsent`](crate::Event::Unsent).
    pub ttl: Option<Duration>,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound { max_messages: 4096, max_bytes: 32 << 20, overflow: Overflow::Reject, offline: false, ttl: None }
    }
}

/// What a full outbound queue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// `send` fails with [`SendError::QueueFull`](crate::SendError::QueueFull) and
    /// returns the message.
    Reject,
    /// The oldest waiting message (not one already half written) is dropped and
    /// given back as [`Event::Unsent`](crate::Event::Unsent).
    DropOldest,
    /// The new message is dropped and given back as [`Event::Unsent`](crate::Event::Unsent).
    DropNewest,
}

/// How much the drivers report through `tracing` and `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry {
    /// Overall verbosity.
    pub level: TelemetryLevel,
    /// Report connects, disconnects and reconnects.
    pub connection_events: bool,
    /// Report every message sent and received (size, kind).
    pub message_events: bool,
    /// Report errors.
    pub error_events: bool,
}

/// Telemetry verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TelemetryLevel {
    /// Essential counters only.
    Minimal,
    /// Counters and connection events.
    Standard,
    /// Everything, with histograms.
    Detailed,
}

/// The longest duration any setting may have: `Instant + Duration` must not
/// overflow on any platform, and no timer of a client needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A configuration that cannot work, found when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL does not parse.
    #[error("invalid URL")]
    InvalidUrl(#[from] url::ParseError),
    /// Only `ws` and `wss` are WebSocket URLs.
    #[error("unsupported URL scheme {0:?}, expected ws or wss")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("URL has no host")]
    MissingHost,
    /// RFC 6455 §3: WebSocket URLs must not have a fragment.
    #[error("URL has a fragment (#...), which WebSocket URLs must not have")]
    Fragment,
    /// A header name that is not an HTTP token.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A header value with control characters (CR, LF, NUL, ...).
    #[error("invalid value for header {0:?}")]
    InvalidHeaderValue(String),
    /// A header the handshake sets itself, or one that would give the
    /// upgrade request a body.
    #[error("{}", reserved_header_message(.0))]
    ReservedHeader(String),
    /// A subprotocol that is not an HTTP token, or listed twice.
    #[error("invalid or duplicate subprotocol {0:?}")]
    InvalidSubprotocol(String),
    /// A limit or timer that cannot work.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Config {
    /// A configuration for `url` with the [`Profile::Standard`] settings.
    ///
    /// # Errors
    ///
    /// See [`ConfigBuilder::build`].
    pub fn new(url: impl AsRef<str>) -> Result<Config, ConfigError> {
        Config::builder(url).build()
    }

    /// Starts a builder for `url`, with the [`Profile::Standard`] settings.
    pub fn builder(url: impl AsRef<str>) -> ConfigBuilder {
        ConfigBuilder::new(url.as_ref())
    }

    /// The server.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The upgrade request head without the key line and final blank line.
    pub fn request_head(&self) -> &str {
        &self.request_head
    }

    /// Subprotocols offered, in order of preference.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// Whether the server must choose one of the offered subprotocols.
    pub fn require_subprotocol(&self) -> bool {
        self.require_subprotocol
    }

    /// Size limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Deadlines.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Keepalive pings, if enabled.
    pub fn keepalive(&self) -> Option<&Keepalive> {
        self.keepalive.as_ref()
    }

    /// The reconnect policy.
    pub fn reconnect(&self) -> &ReconnectPolicy {
        &self.reconnect
    }

    /// The outbound queue's bounds and policy.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// How many state transitions the history keeps.
    pub fn history_len(&self) -> usize {
        self.history_len
    }

    /// The profile the settings started from.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Telemetry settings, for drivers.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The permessage-deflate offer; `None` when compression is off (the default).
    pub fn deflate(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }

    /// The proxy connections go through; `None` (the default) connects directly.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_deref()
    }

    pub(crate) fn proxy_arc(&self) -> Option<Arc<Proxy>> {
        self.proxy.clone()
    }
}

/// Builds a [`Config`]. Every setter can be called in any order; [`profile`]
/// replaces the reconnect, timeout, keepalive, queue and telemetry settings, so
/// call it first and override after.
///
/// [`profile`]: ConfigBuilder::profile
#[derive(Clone)]
pub struct ConfigBuilder {
    url: String,
    headers: Vec<(String, String)>,
    origin: Option<String>,
    subprotocols: Vec<String>,
    require_subprotocol: bool,
    limits: Limits,
    timeouts: Timeouts,
    keepalive: Option<Keepalive>,
    reconnect: ReconnectPolicy,
    outbound: Outbound,
    history_len: usize,
    profile: Profile,
    telemetry: Telemetry,
    deflate: Option<DeflateConfig>,
    proxy: Option<Proxy>,
}

/// Like [`Config`]'s, without header values or URL credentials.
impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match url::Url::parse(&self.url) {
            Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
                let _ = u.set_username("redacted");
                let _ = u.set_password(None);
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "<invalid URL>".to_owned(),
        };
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ConfigBuilder")
            .field("url", &url)
            .field("headers", &header_names)
            .field("subprotocols", &self.subprotocols)
            .field("profile", &self.profile)
            .field("deflate", &self.deflate)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Headers the handshake writes itself.
const RESERVED_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
    // The upgrade is a GET without a body; a length or a chunked encoding
    // would make the server wait for one, or read the frames as one.
    "content-length",
    "transfer-encoding",
];

/// The message of [`ConfigError::ReservedHeader`], pointing to the setting
/// that does set the header when there is one.
fn reserved_header_message(name: &str) -> String {
    let hint = match name.to_ascii_lowercase().as_str() {
        "origin" => "; set it with ConfigBuilder::origin",
        "sec-websocket-protocol" => "; offer subprotocols with ConfigBuilder::subprotocol",
        "sec-websocket-extensions" => "; offer permessage-deflate with ConfigBuilder::deflate",
        "content-length" | "transfer-encoding" => "; the upgrade request has no body",
        _ => "",
    };
    format!("header {name:?} is set by the handshake and cannot be overridden{hint}")
}

impl ConfigBuilder {
    fn new(url: &str) -> ConfigBuilder {
        let preset = Profile::Standard.preset();
        ConfigBuilder {
            url: url.to_owned(),
            headers: Vec::new(),
            origin: None,
            subprotocols: Vec::new(),
            require_subprotocol: false,
            limits: Limits::default(),
            timeouts: preset.timeouts,
            keepalive: Some(preset.keepalive),
            reconnect: preset.reconnect,
            outbound: preset.outbound,
            history_len: 64,
            profile: Profile::Standard,
            telemetry: preset.telemetry,
            deflate: preset.deflate,
            proxy: None,
        }
    }

    /// Takes the reconnect, timeout, keepalive, queue and telemetry settings of `profile`.
    pub fn profile(mut self, profile: Profile) -> ConfigBuilder {
        let preset = profile.preset();
        self.profile = profile;
        self.timeouts = preset.timeouts;
        self.keepalive = Some(preset.keepalive);
        self.reconnect = preset.reconnect;
        self.outbound = preset.outbound;
        self.telemetry = preset.telemetry;
        self.deflate = preset.deflate;
        self
    }

    /// Adds a request header (e.g. `Authorization`, `User-Agent`, `Cookie`).
    /// `Host` and `Authorization` replace the ones derived from the URL.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ConfigBuilder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> ConfigBuilder {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol; call again for more, most preferred first.
    pub fn subprotocol(mut self, name: impl Into<String>) -> ConfigBuilder {
        self.subprotocols.push(name.into());
        self
    }

    /// Fail the handshake if the server chooses none of the offered subprotocols
    /// (RFC 6455 allows it to choose none).
    pub fn require_subprotocol(mut self, require: bool) -> ConfigBuilder {
        self.require_subprotocol = require;
        self
    }

    /// Sets all size limits.
    pub fn limits(mut self, limits: Limits) -> ConfigBuilder {
        self.limits = limits;
        self
    }

    /// Largest frame accepted from the server.
    pub fn max_frame_size(mut self, bytes: usize) -> ConfigBuilder {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Largest message accepted from the server or by `send`.
    pub fn max_message_size(mut self, bytes: usize) -> ConfigBuilder {
        self.limits.max_message_size = bytes;
        self
    }

    /// Largest upgrade response head.
    pub fn max_handshake_size(mut self, bytes: usize) -> ConfigBuilder {
        self.limits.max_handshake_size = bytes;
        self
    }

    /// Split outgoing messages into frames of at most this many bytes.
    pub fn max_outgoing_frame_size(mut self, bytes: Option<usize>) -> ConfigBuilder {
        self.limits.max_outgoing_frame_size = bytes;
        self
    }

    /// Sets all deadlines.
    pub fn timeouts(mut self, timeouts: Timeouts) -> ConfigBuilder {
        self.timeouts = timeouts;
        self
    }

    /// Deadline for the transport to come up.
    pub fn connect_timeout(mut self, timeout: Duration) -> ConfigBuilder {
        self.timeouts.connect = timeout;
        self
    }

    /// Deadline for the 101.
    pub fn handshake_timeout(mut self, timeout: Duration) -> ConfigBuilder {
        self.timeouts.handshake = timeout;
        self
    }

    /// Deadline for the close handshake.
    pub fn close_timeout(mut self, timeout: Duration) -> ConfigBuilder {
        self.timeouts.close = timeout;
        self
    }

    /// Keepalive pings; `None` turns them off.
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> ConfigBuilder {
        self.keepalive = keepalive;
        self
    }

    /// Ping every `interval`, declare the connection dead after `timeout` without
    /// an answer (keeps `allowed_misses`, 0 if keepalive was off).
    pub fn ping(mut self, interval: Duration, timeout: Duration) -> ConfigBuilder {
        let allowed_misses = self.keepalive.map_or(0, |k| k.allowed_misses);
        self.keepalive = Some(Keepalive { interval, timeout, allowed_misses });
        self
    }

    /// The whole reconnect policy.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> ConfigBuilder {
        self.reconnect = policy;
        self
    }

    /// Reconnect delays.
    pub fn backoff(mut self, backoff: Backoff) -> ConfigBuilder {
        self.reconnect.backoff = backoff;
        self
    }

    /// Give up after this many consecutive attempts; `None` retries forever.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> ConfigBuilder {
        self.reconnect.max_attempts = attempts;
        self
    }

    /// Adds a per-reason reconnect rule, e.g. stop after close code 1008:
    /// `.reconnect_rule(Match::close_code(1008), Decision::Stop)`.
    pub fn reconnect_rule(mut self, when: Match, then: Decision) -> ConfigBuilder {
        self.reconnect = self.reconnect.rule(when, then);
        self
    }

    /// A circuit breaker on the reconnect policy (`None` turns it off):
    /// after repeated failed attempts, no attempt for a cool-down.
    pub fn circuit_breaker(mut self, breaker: Option<CircuitBreaker>) -> ConfigBuilder {
        self.reconnect.breaker = breaker;
        self
    }

    /// Never reconnect: the first disconnect ends the session.
    pub fn no_reconnect(mut self) -> ConfigBuilder {
        self.reconnect.enabled = false;
        self
    }

    /// The outbound queue's bounds and policy.
    pub fn outbound(mut self, outbound: Outbound) -> ConfigBuilder {
        self.outbound = outbound;
        self
    }

    /// How many transitions the history keeps (0 keeps none).
    pub fn history_len(mut self, len: usize) -> ConfigBuilder {
        self.history_len = len;
        self
    }

    /// Telemetry settings.
    pub fn telemetry(mut self, telemetry: Telemetry) -> ConfigBuilder {
        self.telemetry = telemetry;
        self
    }

    /// Offers permessage-deflate (RFC 7692) with these parameters; `None`
    /// turns compression off, which is the default. Whether the server
    /// accepted, and with what, is in [`Opened::deflate`](crate::Opened::deflate).
    /// Inflated messages are bounded by [`Limits::max_message_size`], checked
    /// while inflating (close 1009).
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> ConfigBuilder {
        self.deflate = deflate;
        self
    }

    /// Connects through `proxy` (HTTP CONNECT or SOCKS5); `None`, the
    /// default, connects directly. The environment is not consulted: pick a
    /// proxy from it with [`ProxySettings`](crate::proxy::ProxySettings)
    /// (drivers offer `proxy_from_env()`). TLS runs through the tunnel end
    /// to end; the proxy's handshake counts within the connect timeout, and
    /// has its own ([`Proxy::with_timeout`]).
    pub fn proxy(mut self, proxy: Option<Proxy>) -> ConfigBuilder {
        self.proxy = proxy;
        self
    }

    /// Validates everything and prepares the upgrade request head.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first thing that cannot work: the URL (scheme,
    /// host, fragment), a header or subprotocol, or a limit or timer.
    pub fn build(self) -> Result<Config, ConfigError> {
        let url = url::Url::parse(&self.url)?;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(ConfigError::UnsupportedScheme(other.to_owned())),
        };
        if url.fragment().is_some() {
            return Err(ConfigError::Fragment);
        }
        let host: Arc<str> = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.into(),
            Some(url::Host::Ipv4(ip)) => ip.to_string().into(),
            Some(url::Host::Ipv6(ip)) => ip.to_string().into(),
            _ => return Err(ConfigError::MissingHost),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let mut resource = url.path().to_owned();
        if let Some(query) = url.query() {
            resource.push('?');
            resource.push_str(query);
        }

        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err(ConfigError::InvalidHeaderName(name.clone()));
            }
            if RESERVED_HEADERS.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                return Err(ConfigError::ReservedHeader(name.clone()));
            }
            if !is_header_value(value) {
                return Err(ConfigError::InvalidHeaderValue(name.clone()));
            }
        }
        if let Some(origin) = &self.origin {
            if !is_header_value(origin) {
                return Err(ConfigError::InvalidHeaderValue("Origin".into()));
            }
        }
        for (i, p) in self.subprotocols.iter().enumerate() {
            if !is_token(p) || self.subprotocols[..i].contains(p) {
                return Err(ConfigError::InvalidSubprotocol(p.clone()));
            }
        }
        self.validate_numbers()?;

        let has = |n: &str| self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
        // `write!` into a String cannot fail.
        let mut head = String::with_capacity(256);
        let _ = write!(head, "GET {resource} HTTP/1.1\r\n");
        if !has("host") {
            let host_str = url.host_str().unwrap_or_default();
            match url.port() {
                Some(p) => _ = write!(head, "Host: {host_str}:{p}\r\n"),
                None => _ = write!(head, "Host: {host_str}\r\n"),
            }
        }
        head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        if let Some(origin) = &self.origin {
            let _ = write!(head, "Origin: {origin}\r\n");
        }
        if !self.subprotocols.is_empty() {
            let _ = write!(head, "Sec-WebSocket-Protocol: {}\r\n", self.subprotocols.join(", "));
        }
        if let Some(deflate) = &self.deflate {
            let _ = write!(head, "Sec-WebSocket-Extensions: {}\r\n", deflate.offer());
        }
        if !url.username().is_empty() && !has("authorization") {
            let user = percent_encoding::percent_decode_str(url.username()).collect::<Vec<u8>>();
            let pass = percent_encoding::percent_decode_str(url.password().unwrap_or("")).collect::<Vec<u8>>();
            let credentials = [user.as_slice(), b":", pass.as_slice()].concat();
            let _ = write!(head, "Authorization: Basic {}\r\n", BASE64.encode(credentials));
        }
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }

        Ok(Config {
            endpoint: Endpoint { tls, host, port, resource },
            request_head: head,
            subprotocols: self.subprotocols,
            require_subprotocol: self.require_subprotocol,
            limits: self.limits,
            timeouts: self.timeouts,
            keepalive: self.keepalive,
            reconnect: self.reconnect,
            outbound: self.outbound,
            history_len: self.history_len,
            profile: self.profile,
            telemetry: self.telemetry,
            deflate: self.deflate,
            proxy: self.proxy.map(Arc::new),
        })
    }

    fn validate_numbers(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        let l = &self.limits;
        if l.max_message_size == 0 {
            return invalid("max_message_size", "must be at least 1");
        }
        if l.max_frame_size == 0 {
            return invalid("max_frame_size", "must be at least 1");
        }
        if l.max_handshake_size < 64 {
            return invalid("max_handshake_size", "must be at least 64 bytes");
        }
        if l.max_outgoing_frame_size == Some(0) {
            return invalid("max_outgoing_frame_size", "must be at least 1");
        }
        let t = &self.timeouts;
        let mut durations =
            vec![("connect_timeout", t.connect), ("handshake_timeout", t.handshake), ("close_timeout", t.close)];
        if let Some(p) = &self.proxy {
            durations.push(("proxy timeout", p.timeout()));
        }
        if let Some(k) = &self.keepalive {
            durations.extend([("ping interval", k.interval), ("pong timeout", k.timeout)]);
        }
        for (field, d) in durations {
            if d.is_zero() {
                return invalid(field, "must be longer than zero");
            }
            if d > MAX_DURATION {
                return invalid(field, "must be at most a year");
            }
        }
        if self.outbound.ttl.is_some_and(|ttl| ttl > MAX_DURATION) {
            return invalid("outbound ttl", "must be at most a year");
        }
        if let Err(reason) = self.reconnect.validate() {
            return invalid("backoff", reason);
        }
        if let Some(Err(reason)) = self.deflate.as_ref().map(DeflateConfig::validate) {
            return invalid("deflate", reason);
        }
        let o = &self.outbound;
        if o.max_messages == 0 {
            return invalid("outbound max_messages", "must be at least 1");
        }
        if o.max_bytes == 0 {
            return invalid("outbound max_bytes", "must be at least 1");
        }
        Ok(())
    }
}

/// RFC 7230 token: what header names and subprotocols are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value without control characters (tab allowed).
fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7F))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(config: &Config) -> &str {
        config.request_head()
    }

    #[test]
    fn url_parts_become_endpoint_and_request_line() {
        let c = Config::new("ws://example.com/feed?x=1&y=%20").unwrap();
        assert_eq!(
            c.endpoint(),
            &Endpoint { tls: false, host: "example.com".into(), port: 80, resource: "/feed?x=1&y=%20".into() }
        );
        assert_eq!(
            head(&c),
            "GET /feed?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\n"
        );
        let c = Config::new("wss://EXAMPLE.com:8443").unwrap();
        assert_eq!((c.endpoint().tls, c.endpoint().port, c.endpoint().resource.as_str()), (true, 8443, "/"));
        assert!(head(&c).contains("Host: example.com:8443\r\n"));
    }

    #[test]
    fn ipv6_and_idna_hosts_are_handled() {
        let c = Config::new("ws://[::1]:9001/x").unwrap();
        assert_eq!(&*c.endpoint().host, "::1");
        assert!(head(&c).contains("Host: [::1]:9001\r\n"));
        let c = Config::new("wss://bücher.example/").unwrap();
        assert_eq!(&*c.endpoint().host, "xn--bcher-kva.example");
    }

    #[test]
    fn bad_urls_get_typed_errors() {
        assert!(matches!(Config::new("not a url"), Err(ConfigError::InvalidUrl(_))));
        assert_eq!(Config::new("https://example.com"), Err(ConfigError::UnsupportedScheme("https".into())));
        assert_eq!(Config::new("ws://example.com/#frag"), Err(ConfigError::Fragment));
        assert!(Config::new("ws://").is_err());
        assert!(matches!(Config::new("ws://:80/"), Err(ConfigError::InvalidUrl(_) | ConfigError::MissingHost)));
    }

    #[test]
    fn headers_subprotocols_origin_and_userinfo_go_into_the_head() {
        let c = Config::builder("ws://us%40er:p%3Ass@h/")
            .header("User-Agent", "nova/0.1")
            .origin("https://app.example")
            .subprotocol("v2")
            .subprotocol("v1")
            .build()
            .unwrap();
        let h = head(&c);
        assert!(h.contains("User-Agent: nova/0.1\r\n"));
        assert!(h.contains("Origin: https://app.example\r\n"));
        assert!(h.contains("Sec-WebSocket-Protocol: v2, v1\r\n"));
        // "us@er:p:ss" in base64.
        assert!(h.contains(&format!("Authorization: Basic {}\r\n", BASE64.encode("us@er:p:ss"))), "{h}");
        // A custom Host or Authorization replaces the derived one.
        let c =
            Config::builder("ws://u:p@h/").header("Host", "other").header("Authorization", "Bearer t").build().unwrap();
        assert!(!head(&c).contains("Host: h\r\n") && head(&c).contains("Host: other\r\n"));
        assert!(!head(&c).contains("Basic"));
    }

    #[test]
    fn header_injection_and_reserved_headers_are_refused() {
        let e = Config::builder("ws://h/").header("X-A", "1\r\nEvil: 2").build();
        assert_eq!(e, Err(ConfigError::InvalidHeaderValue("X-A".into())));
        assert_eq!(
            Config::builder("ws://h/").header("Bad Name", "v").build(),
            Err(ConfigError::InvalidHeaderName("Bad Name".into()))
        );
        assert_eq!(
            Config::builder("ws://h/").header("sec-websocket-key", "x").build(),
            Err(ConfigError::ReservedHeader("sec-websocket-key".into()))
        );
        // A body length on the upgrade GET would desynchronise the server.
        for name in ["Content-Length", "transfer-encoding"] {
            let e = Config::builder("ws://h/").header(name, "5").build().unwrap_err();
            assert_eq!(e, ConfigError::ReservedHeader(name.into()));
            assert!(e.to_string().contains("has no body"), "{e}");
        }
        let e = Config::builder("ws://h/").header("Origin", "https://a.example").build().unwrap_err();
        assert!(e.to_string().ends_with("set it with ConfigBuilder::origin"), "{e}");
        assert_eq!(
            Config::builder("ws://h/").subprotocol("a b").build(),
            Err(ConfigError::InvalidSubprotocol("a b".into()))
        );
        assert_eq!(
            Config::builder("ws://h/").subprotocol("a").subprotocol("a").build(),
            Err(ConfigError::InvalidSubprotocol("a".into()))
        );
    }

    #[test]
    fn deflate_is_off_by_default_and_offered_when_set() {
        assert!(Config::new("ws://h/").unwrap().deflate().is_none());
        assert!(!head(&Config::new("ws://h/").unwrap()).contains("Extensions"));
        let c = Config::builder("ws://h/").deflate(Some(DeflateConfig::default())).build().unwrap();
        assert!(
            head(&c).contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
            "{}",
            head(&c)
        );
        let bad = DeflateConfig { server_max_window_bits: Some(8), ..DeflateConfig::default() };
        assert!(matches!(
            Config::builder("ws://h/").deflate(Some(bad)).build(),
            Err(ConfigError::Invalid { field: "deflate", .. })
        ));
        let e = Config::builder("ws://h/").header("Sec-WebSocket-Extensions", "x").build().unwrap_err();
        assert!(e.to_string().ends_with("offer permessage-deflate with ConfigBuilder::deflate"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_header_values_or_credentials() {
        let builder = Config::builder("wss://alice:hunter2@h.example/").header("X-Api-Key", "sk-live-123");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("sk-live-123") && !shown.contains("alice"), "{shown}");
        let config = builder.build().unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("X-Api-Key") && shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("sk-live-123") && !shown.contains("Basic"), "{shown}");
    }

    #[test]
    fn unusable_numbers_are_refused() {
        assert!(matches!(Config::builder("ws://h/").max_message_size(0).build(), Err(ConfigError::Invalid { .. })));
        assert!(matches!(
            Config::builder("ws://h/").connect_timeout(Duration::ZERO).build(),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::builder("ws://h/").ping(Duration::ZERO, Duration::from_secs(1)).build(),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::builder("ws://h/").backoff(Backoff::constant(Duration::from_secs(1), 2.0)).build(),
            Err(ConfigError::Invalid { field: "backoff", .. })
        ));
        // Durations that would overflow `Instant` at run time are refused up front.
        let huge = Duration::MAX;
        let one = Duration::from_secs(1);
        assert!(Config::builder("ws://h/").close_timeout(huge).build().is_err());
        assert!(Config::builder("ws://h/").ping(huge, one).build().is_err());
        assert!(Config::builder("ws://h/").backoff(Backoff::exponential(one, huge, 0.0)).build().is_err());
        let rule = Config::builder("ws://h/").reconnect_rule(Match::close_code(1000), Decision::ReconnectAfter(huge));
        assert!(rule.build().is_err());
        // An exponential backoff from zero would stay at zero.
        assert!(Config::builder("ws://h/").backoff(Backoff::exponential(Duration::ZERO, one, 0.0)).build().is_err());
    }
}
