//! Errors, one enum per layer.
//!
//! Peer faults ([`ProtocolError`], [`HandshakeError`], [`TransportDown`], timeouts)
//! never come back from a `handle_*` call: they end the connection and reach the
//! application inside [`Event::Disconnected`](crate::Event::Disconnected) as an
//! [`Error`]. Caller mistakes come back at once from the command that made them
//! ([`SendError`], [`CloseError`], [`ConfigError`](crate::ConfigError)).

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::message::{CloseCode, Message};

/// Why a connection ended with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The opening handshake failed.
    #[error("handshake failed")]
    Handshake(#[from] HandshakeError),
    /// The server broke RFC 6455; the client sent the close code the error names.
    #[error("protocol violation by the server")]
    Protocol(#[from] ProtocolError),
    /// A deadline passed.
    #[error("{0} timed out")]
    Timeout(Timeout),
    /// The transport (TCP, TLS, DNS) failed or ended.
    #[error("transport failed")]
    Transport(#[from] TransportDown),
    /// The session's behaviour layer ended the connection: the service
    /// refused authentication (worth retrying) or reported an error its
    /// adapter classifies as reason to reconnect.
    #[error("connection aborted: {0}")]
    Aborted(String),
}

impl Error {
    /// The close code that describes this error, as reported to the application:
    /// the code the client sent for a protocol error, 1006 (abnormal) otherwise.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(e) => e.close_code(),
            Error::Transport(TransportDown::Tls(_)) => CloseCode::TLS_HANDSHAKE,
            _ => CloseCode::ABNORMAL,
        }
    }
}

/// A deadline that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// The transport did not come up within the connect timeout.
    Connect,
    /// The server did not complete the upgrade within the handshake timeout.
    Handshake,
    /// No pong (and no other frame) came back within the pong timeout: the
    /// connection is considered dead and was aborted.
    Pong,
    /// The service left the session's application heartbeats unanswered
    /// too many times: the connection was aborted as dead.
    Heartbeat,
    /// The service did not answer the session's authentication in time.
    Auth,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeout::Connect => "connect",
            Timeout::Handshake => "handshake",
            Timeout::Pong => "pong",
            Timeout::Heartbeat => "application heartbeat",
            Timeout::Auth => "authentication",
        })
    }
}

/// The server sent bytes that break RFC 6455. Each variant knows the close code
/// the client answers with ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV bits set without a negotiated extension that defines them.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// An opcode RFC 6455 reserves (0x3–0x7, 0xB–0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    /// A masked frame from the server (servers must not mask).
    #[error("masked frame from the server")]
    MaskedFrame,
    /// A continuation frame with no fragmented message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// A 64-bit payload length with the most significant bit set.
    #[error("payload length has the most significant bit set")]
    InvalidLength,
    /// A frame longer than the configured `max_frame_size` (1009).
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced payload length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message longer than the configured `max_message_size` (1009).
    #[error("message of at least {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The length reached so far, counting the frame that crossed the limit.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A text message that is not valid UTF-8 (1007).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose payload is a single byte.
    #[error("close frame payload of 1 byte")]
    CloseTooShort,
    /// A close frame with a code that may not appear on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close frame whose reason is not valid UTF-8 (1007).
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// RSV1 on a control or continuation frame while permessage-deflate is
    /// in use: RFC 7692 §6 allows it only on the first frame of a data message.
    #[error("RSV1 set on a frame with opcode {0:#x}, where permessage-deflate does not allow it")]
    MisplacedRsv1(u8),
    /// A compressed message that is not a valid DEFLATE stream (1007, as a
    /// payload inconsistent with its message, the way Node's `ws` answers it).
    #[error("compressed message is not valid DEFLATE data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code the client sends for this violation: 1007 for invalid
    /// UTF-8 and invalid compressed data, 1009 for size limits (an inflated
    /// message included), 1002 for everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason | ProtocolError::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The server's answer to the upgrade request was not an acceptable 101.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The response head did not end within `max_handshake_size` bytes.
    #[error("response head exceeds {max} bytes")]
    ResponseTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// The response is not parseable HTTP/1.1.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The server answered with a status other than 101.
    #[error("server refused the upgrade with status {} {}", .0.status, .0.reason)]
    Rejected(Box<Rejection>),
    /// The response is not HTTP/1.1.
    #[error("response is HTTP/1.{0}, not HTTP/1.1")]
    Version(u8),
    /// `Upgrade: websocket` is missing.
    #[error("response lacks `Upgrade: websocket`")]
    MissingUpgrade,
    /// The `Connection` header lacks the `upgrade` token.
    #[error("response lacks `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is missing.
    #[error("response lacks `Sec-WebSocket-Accept`")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` does not match the key the client sent.
    #[error("`Sec-WebSocket-Accept` does not match the key sent")]
    WrongAccept,
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnofferedSubprotocol(String),
    /// The client requires a subprotocol and the server chose none.
    #[error("server chose no subprotocol, and one is required")]
    MissingSubprotocol,
    /// The server enabled an extension the client did not offer: any
    /// extension when deflate is off, anything but `permessage-deflate` when on.
    #[error("server enabled extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    /// A header that may appear once appeared several times.
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    /// The server's `Sec-WebSocket-Extensions` answer is not acceptable for
    /// the permessage-deflate offer (RFC 7692 §7.1).
    #[error("unacceptable extension response")]
    Extension(#[from] NegotiationError),
}

/// Why the server's `Sec-WebSocket-Extensions` answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// `permessage-deflate` accepted more than once.
    #[error("permessage-deflate accepted more than once")]
    DuplicateExtension,
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("permessage-deflate parameter {0:?} appears more than once")]
    DuplicateParameter(String),
    /// A value a parameter cannot have: window bits outside 8–15 or with a
    /// leading zero, a missing value, or a value on a flag.
    #[error("invalid value {value:?} for permessage-deflate parameter {param:?}")]
    InvalidValue {
        /// The parameter.
        param: String,
        /// The value as sent (empty when missing).
        value: String,
    },
    /// `server_no_context_takeover` was asked for and the server did not agree.
    #[error("server did not accept server_no_context_takeover")]
    MissingServerNoContextTakeover,
    /// `server_max_window_bits` was asked for and the server did not agree.
    #[error("server did not accept server_max_window_bits={offered}")]
    MissingServerMaxWindowBits {
        /// What the offer asked for.
        offered: u8,
    },
    /// The server chose a larger window than the offer allowed.
    #[error("server_max_window_bits={got} exceeds the {offered} offered")]
    ServerWindowTooLarge {
        /// What the offer asked for.
        offered: u8,
        /// What the server answered.
        got: u8,
    },
    /// `client_max_window_bits` in the answer, though the offer did not have it.
    #[error("server sent client_max_window_bits, which was not offered")]
    UnofferedClientMaxWindowBits,
    /// The header value is not text.
    #[error("malformed Sec-WebSocket-Extensions value")]
    Malformed,
}

/// A refused upgrade: what the server said instead of 101.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The HTTP status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// `Retry-After` in seconds, when the server sent one. The reconnect policy
    /// waits at least this long.
    pub retry_after: Option<Duration>,
    /// All response headers.
    pub headers: crate::Headers,
}

impl Rejection {
    /// Where a redirect (3xx) points. Nova does not follow redirects itself: a
    /// WebSocket endpoint that moved is a configuration change the application
    /// should see (see [`Client::set_config`](crate::Client::set_config)).
    pub fn location(&self) -> Option<&str> {
        self.headers.get_str("location")
    }
}

/// How the transport ended or failed, as reported by the driver in
/// [`Input::TransportDown`](crate::Input::TransportDown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportDown {
    /// The peer closed the stream (a read returned 0).
    #[error("connection closed by the peer")]
    Eof,
    /// The host name did not resolve.
    #[error("could not resolve host: {0}")]
    Resolve(String),
    /// Opening the connection failed (refused, unreachable, timed out).
    #[error("connect failed: {0}")]
    ConnectFailed(io::ErrorKind),
    /// An established stream failed (reset, broken pipe).
    #[error("connection lost: {0}")]
    Reset(io::ErrorKind),
    /// TLS failed.
    #[error(transparent)]
    Tls(TlsFailure),
    /// The proxy in [`Target::proxy`](crate::Target::proxy) could not be
    /// reached, or refused the tunnel.
    #[error("proxy failed")]
    Proxy(#[from] crate::proxy::ProxyError),
}

/// A TLS failure reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", if *.certificate { "server certificate rejected" } else { "TLS failed" })]
pub struct TlsFailure {
    /// A certificate was rejected: the server's, here (unknown issuer,
    /// expired, wrong name), or ours, by the server (mutual TLS). Retrying
    /// cannot fix it: the default reconnect policy does not retry these.
    pub certificate: bool,
    /// What the TLS library said.
    pub detail: String,
}

/// [`Client::send`](crate::Client::send) or [`Client::ping`](crate::Client::ping)
/// could not take the message; it is handed back where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is not open and the message did not ask to be queued.
    #[error("not connected, and the message was not marked for the offline queue")]
    NotOpen(Message),
    /// The session is closing or closed for good.
    #[error("the session is closed")]
    Closed(Message),
    /// The outbound queue is full and its overflow policy is `Reject`.
    #[error("outbound queue is full")]
    QueueFull(Message),
    /// The message is larger than `max_message_size`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message.
        message: Message,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Rate limits are configured
    /// ([`SessionConfig::rate_limits`](crate::session::SessionConfig::rate_limits))
    /// and their queue already holds
    /// [`RateLimits::max_queued`](crate::limits::RateLimits::max_queued)
    /// operations: the message is handed back. Room comes at `until`, when
    /// the next waiting operation goes out.
    #[error("the rate-limit queue is full")]
    RateLimited {
        /// The message.
        message: Message,
        /// When the queue next gives an operation out.
        until: Instant,
    },
    /// A ping payload longer than 125 bytes.
    #[error("ping payload of {0} bytes exceeds 125")]
    PingTooLong(usize),
    /// A ping while the connection is not open.
    #[error("ping needs an open connection")]
    PingNotOpen,
}

impl SendError {
    /// The message the failed call took, given back.
    pub fn into_message(self) -> Option<Message> {
        match self {
            SendError::NotOpen(m) | SendError::Closed(m) | SendError::QueueFull(m) => Some(m),
            SendError::TooLarge { message, .. } | SendError::RateLimited { message, .. } => Some(message),
            SendError::PingTooLong(_) | SendError::PingNotOpen => None,
        }
    }
}

/// [`Client::close`](crate::Client::close) was given a code or reason that may not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Only 1000–1003, 1007–1014 and 3000–4999 may be sent.
    #[error("close code {0} may not be sent")]
    InvalidCode(u16),
    /// A close reason is limited to 123 bytes so the frame stays within 125.
    #[error("close reason of {0} bytes exceeds 123")]
    ReasonTooLong(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_map_to_rfc_close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode(1007));
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), CloseCode(1007));
        assert_eq!(ProtocolError::FrameTooLarge { len: 9, max: 8 }.close_code(), CloseCode(1009));
        assert_eq!(ProtocolError::MessageTooLarge { len: 9, max: 8 }.close_code(), CloseCode(1009));
        for e in [
            ProtocolError::ReservedBits(4),
            ProtocolError::ReservedOpcode(3),
            ProtocolError::FragmentedControl,
            ProtocolError::ControlTooLong(126),
            ProtocolError::MaskedFrame,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidLength,
            ProtocolError::CloseTooShort,
            ProtocolError::InvalidCloseCode(1005),
        ] {
            assert_eq!(e.close_code(), CloseCode(1002), "{e}");
        }
    }

    #[test]
    fn messages_are_lower_case_and_chain_sources() {
        let e = Error::from(ProtocolError::ReservedOpcode(0xB));
        assert_eq!(e.to_string(), "protocol violation by the server");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("reserved opcode 0xb"));
        let tls = TransportDown::Tls(TlsFailure { certificate: true, detail: "UnknownIssuer".into() });
        assert_eq!(tls.to_string(), "server certificate rejected: UnknownIssuer");
        assert_eq!(Error::from(tls).close_code(), CloseCode::TLS_HANDSHAKE);
    }
}
