//! What goes into the client and what comes out of it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::deflate::DeflateParams;
use crate::error::{Error, TransportDown};
use crate::handshake::Headers;
use crate::message::{CloseCode, Message};
use crate::proxy::Proxy;
use crate::session::{DecodeError, RequestError, RequestId, ServiceError, Strategy, SubscriptionId};

/// Input from the driver, for [`Client::handle_input`](crate::Client::handle_input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// The transport asked for by [`Output::Connect`] is up (TCP connected, and
    /// TLS established for a `wss` target). The client writes its upgrade request.
    TransportUp,
    /// Bytes read from the transport, in any chunking (one byte at a time works).
    Received(&'a [u8]),
    /// This many bytes were read into the buffer
    /// [`Client::read_in_place`](crate::Client::read_in_place) returned (the
    /// same call's, with nothing in between). Counted only up to that
    /// buffer's length.
    ReceivedInPlace(usize),
    /// The transport ended or failed. Also the answer to an [`Output::Connect`]
    /// that could not be opened.
    TransportDown(TransportDown),
}

/// Where to open a transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host name or IP address literal (IPv6 without brackets). For TLS this is
    /// also the name to verify the certificate against.
    pub host: Arc<str>,
    /// TCP port.
    pub port: u16,
    /// Whether to run TLS over the TCP stream (`wss`).
    pub tls: bool,
    /// 0 for the first connection, then the reconnect attempt number.
    pub attempt: u32,
    /// Connect through this proxy: open TCP to it, run a
    /// [`ProxyHandshake`](crate::proxy::ProxyHandshake) for `host:port`, then
    /// TLS (for `tls`) through the tunnel. `None`: connect directly.
    pub proxy: Option<Arc<Proxy>>,
}

/// Work for the driver, from [`Client::poll_output`](crate::Client::poll_output).
#[derive(Debug, Clone, PartialEq)]
#[must_use = "every output asks the driver to act"]
pub enum Output {
    /// Open a transport to the target, then answer with [`Input::TransportUp`]
    /// or [`Input::TransportDown`].
    Connect(Target),
    /// Write out the bytes already taken from `poll_transmit`, then shut the
    /// transport. Do not feed any more input from it.
    CloseTransport,
    /// A complete message from the server, for the application.
    Message(Message),
    /// Something the application may want to know. Boxed: events are rare and
    /// large, messages are frequent and small, and every `Output` is moved
    /// through the queue.
    Event(Box<Event>),
}

impl Output {
    /// The event, if this is one.
    pub fn as_event(&self) -> Option<&Event> {
        match self {
            Output::Event(e) => Some(e),
            _ => None,
        }
    }

    /// The event, if this is one.
    pub fn into_event(self) -> Option<Event> {
        match self {
            Output::Event(e) => Some(*e),
            _ => None,
        }
    }
}

impl From<Event> for Output {
    fn from(event: Event) -> Output {
        Output::Event(Box::new(event))
    }
}

/// Something that happened to the session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The upgrade succeeded; messages can flow.
    Opened(Opened),
    /// A pong arrived. `rtt` is set when it answers the client's keepalive ping.
    Pong {
        /// The pong's payload.
        payload: Bytes,
        /// Round-trip time of the keepalive ping it answers.
        rtt: Option<Duration>,
    },
    /// A connection, or an attempt to make one, ended. `reconnect` says whether
    /// and when the next attempt happens; when it is `None` a [`Event::Closed`]
    /// follows.
    Disconnected {
        /// Why.
        cause: Disconnect,
        /// The next attempt, if any.
        reconnect: Option<Reconnect>,
    },
    /// A reconnect attempt starts now (an [`Output::Connect`] follows).
    Reconnecting {
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// A message the application sent that did not go out, given back.
    Unsent {
        /// The message.
        message: Message,
        /// Why it did not go out.
        reason: UnsentReason,
    },
    /// The session is over. This is the last output.
    Closed(Closed),

    // The behaviour layer's events: only a `Session` emits them.
    /// The answer to [`Session::request`](crate::session::Session::request):
    /// every request gets exactly one, a success, a service error, or why it
    /// got none (timeout, cancelled, connection lost, closed).
    Response {
        /// The request.
        id: RequestId,
        /// The whole response message, or the error.
        result: Result<Message, RequestError>,
        /// Time from the request to this answer.
        latency: Duration,
    },
    /// Data for a subscription, under the user's stable handle.
    Data {
        /// The subscription.
        subscription: SubscriptionId,
        /// The message, as it came.
        message: Message,
    },
    /// The session is ready: authenticated (if the service needs it) and its
    /// subscriptions restored. Follows every open that succeeds.
    Ready {
        /// Subscriptions confirmed during the restore.
        restored: usize,
        /// Subscriptions that failed during the restore (each also reported
        /// with [`Event::SubscriptionFailed`]).
        failed: usize,
    },
    /// Authentication was refused or timed out. With `retry` the connection
    /// is aborted and the reconnect policy runs; without, the session closes
    /// ([`Termination::AuthFailed`]).
    AuthFailed {
        /// What the service said (never the credentials).
        reason: String,
        /// Whether the session tries again on a new connection.
        retry: bool,
    },
    /// A subscription is confirmed (first time, or restored after a reconnect).
    Subscribed {
        /// The subscription.
        id: SubscriptionId,
        /// Time from the subscribe request to the confirmation.
        latency: Duration,
    },
    /// A subscription failed; the session no longer holds it.
    SubscriptionFailed {
        /// The subscription.
        id: SubscriptionId,
        /// Why.
        error: RequestError,
    },
    /// A subscription is gone: unsubscribed, or forgotten with a dropped
    /// connection while its unsubscribe was pending.
    Unsubscribed {
        /// The subscription.
        id: SubscriptionId,
    },
    /// The service reported an error outside any request; `strategy` is what
    /// the adapter decided, and the session has acted on it.
    ServiceError {
        /// The error.
        error: ServiceError,
        /// What follows.
        strategy: Strategy,
    },
    /// An inbound message the adapter could not decode, handed over whole.
    /// The session goes on.
    Malformed {
        /// What was wrong.
        error: DecodeError,
        /// The message.
        message: Message,
    },
    /// An application heartbeat went unanswered. At `limit` the connection
    /// is aborted as dead ([`Timeout::Heartbeat`](crate::Timeout::Heartbeat)).
    HeartbeatMissed {
        /// Consecutive misses.
        missed: u32,
        /// The misses that end the connection.
        limit: u32,
    },
}

/// Details of an opened connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// The 101 response's headers.
    pub headers: Headers,
    /// 0 for the first connection, else the reconnect attempt that succeeded.
    pub attempt: u32,
    /// Which connection of the session this is: 1 for the first one opened,
    /// then counting every connection that opened (a name for logs and
    /// metrics that tells connections apart across reconnects).
    pub connection: u64,
    /// The permessage-deflate parameters in force, when the server accepted
    /// the offer made with [`ConfigBuilder::deflate`](crate::ConfigBuilder::deflate).
    pub deflate: Option<DeflateParams>,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// The server closed with a close frame.
    ServerClosed {
        /// The server's status code; 1005 ([`CloseCode::NO_STATUS`]) when its
        /// frame carried none.
        code: CloseCode,
        /// The server's reason.
        reason: String,
    },
    /// The connection failed.
    Failed(Error),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::ServerClosed { code, reason } if reason.is_empty() => write!(f, "server closed with {code}"),
            Disconnect::ServerClosed { code, reason } => write!(f, "server closed with {code}: {reason}"),
            Disconnect::Failed(e) => {
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
        }
    }
}

/// When the next connection attempt happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Its attempt number, from 1.
    pub attempt: u32,
    /// The wait.
    pub delay: Duration,
    /// The instant it starts (`now + delay`); also what `poll_timeout` returns.
    pub at: Instant,
    /// The circuit breaker is open: attempts kept failing, so this one waits
    /// out the breaker's cool-down (at least), and is a probe: if it opens,
    /// the breaker closes; if it fails, the next wait is longer.
    pub breaker_open: bool,
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Closed {
    /// The connection close code (RFC 6455 §7.1.5): the code of the server's
    /// close frame, 1005 ([`CloseCode::NO_STATUS`]) if it carried none, 1006
    /// ([`CloseCode::ABNORMAL`]) if no close frame arrived (timeout, reset, or no
    /// connection at all).
    pub code: CloseCode,
    /// The reason in the server's close frame.
    pub reason: String,
    /// The close handshake completed: close frames went both ways.
    pub clean: bool,
    /// Why the session ended.
    pub termination: Termination,
}

/// Why the session ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Termination {
    /// The application called [`Client::close`](crate::Client::close).
    Requested,
    /// The reconnect policy's `max_attempts` was reached.
    GaveUp {
        /// The attempts made since the last stable connection.
        attempts: u32,
    },
    /// The reconnect policy said not to reconnect after the last disconnect.
    NotRetried,
    /// The service refused authentication for good (the session's adapter
    /// said retrying cannot help).
    AuthFailed,
    /// The session's adapter classified a service error as reason to stop.
    Stopped,
}

/// Why a sent message did not go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsentReason {
    /// The connection dropped before the message was written, and it was not
    /// marked for the offline queue (or it was partly written).
    Disconnected,
    /// Its time to live passed while it waited.
    Expired,
    /// The outbound queue overflowed and the policy dropped it.
    Overflow,
    /// The session closed before it went out.
    Closed,
}

/// The session's state.
///
/// ```text
///  Idle ─connect─▶ Connecting ─up─▶ Handshaking ─101─▶ Open ─close()─▶ Closing ─▶ Closed
///                     ▲   │              │              │                 │
///                     │   └──────────────┴──── fail ────┴─ server close ──┤
///                     │                                                   ▼
///                     └──────────────── delay elapsed ─────────────── Backoff
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Created, `connect` not called yet.
    Idle,
    /// Waiting for the driver to open the transport.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Handshaking,
    /// Messages flow.
    Open,
    /// A close handshake is under way, or the transport is being shut.
    Closing,
    /// Waiting to reconnect.
    Backoff,
    /// Over for good.
    Closed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Handshaking => "handshaking",
            State::Open => "open",
            State::Closing => "closing",
            State::Backoff => "backoff",
            State::Closed => "closed",
        })
    }
}

impl State {
    /// Whether the client may move from `self` to `to`. The simulation and the
    /// model tests check every transition against this table.
    pub fn can_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Idle, Connecting | Closed)
                | (Connecting, Handshaking | Backoff | Closed)
                | (Handshaking, Open | Closing | Backoff | Closed)
                | (Open, Closing | Backoff | Closed)
                | (Closing, Backoff | Closed)
                | (Backoff, Connecting | Closed)
        )
    }
}
