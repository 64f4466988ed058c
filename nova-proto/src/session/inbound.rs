//! What an inbound message is, as the adapter classifies it, and the errors
//! a service or a codec can report.

use std::fmt;
use std::time::Duration;

use crate::session::requests::RequestId;
use crate::session::subscriptions::{ServerSubId, Topic};

/// The adapter's verdict on one inbound message, from [`Adapter::classify`](crate::session::Adapter::classify).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// The response to the request `id` (a user request, the authentication,
    /// a subscribe or unsubscribe, a heartbeat). The whole message is the
    /// response's payload; `result` says whether the service accepted it.
    Response {
        /// The id the session assigned to the request.
        id: RequestId,
        /// `Err` when the service answered with an error.
        result: Result<(), ServiceError>,
    },
    /// Data for a subscription.
    Data {
        /// Which subscription it belongs to.
        route: Route,
        /// The server's sequence number for this subscription's stream, if it
        /// has one: data at or below the last sequence seen is a duplicate and
        /// is dropped (and counted), never delivered twice.
        seq: Option<u64>,
    },
    /// The result of authentication, for services that answer it with a
    /// message of its own rather than a response to the auth request's id.
    Auth(Result<AuthGranted, AuthDenied>),
    /// The server's greeting, the first message of a connection on services
    /// that open with one (Discord's Hello). When the adapter's
    /// authentication waits for it ([`Adapter::auth_after_greeting`](crate::session::Adapter::auth_after_greeting)),
    /// the auth message goes now. Only a connection's first greeting
    /// counts; a later one is ignored (and counted in
    /// [`SessionStats::ignored`](crate::session::SessionStats::ignored)).
    /// The message itself is not delivered.
    Greeting {
        /// Starts the application heartbeat now rather than at readiness:
        /// the first beat after this delay (a jittered one, say), the next
        /// ones every [`HeartbeatSpec::interval`](crate::session::HeartbeatSpec::interval)
        /// as [`Adapter::heartbeat`](crate::session::Adapter::heartbeat)
        /// says after the beat. `None`: the heartbeat starts at readiness,
        /// as without a greeting. Ignored when the adapter has no heartbeat.
        first_beat: Option<Duration>,
    },
    /// A heartbeat from the server; `reply` (if any) is sent at once.
    Heartbeat {
        /// The answer the server expects.
        reply: Option<crate::Message>,
    },
    /// A message that needs an answer from the adapter at once (Slack's
    /// envelope acknowledgement): `reply` is sent now, before the message is
    /// handed out, and never waits behind queued data (like a server
    /// heartbeat's reply, it is charged as [`OpClass::Heartbeat`](crate::limits::OpClass::Heartbeat):
    /// nothing by default). Counted in
    /// [`SessionStats::replies_sent`](crate::session::SessionStats::replies_sent).
    Reply {
        /// The answer.
        reply: crate::Message,
        /// Whether the message is also delivered to the application, as a
        /// plain [`Output::Message`](crate::Output::Message) (as
        /// [`Inbound::Other`] is). `false`: answered, then dropped and
        /// counted as ignored (a redelivery already handed out, say).
        deliver: bool,
    },
    /// The answer to the session's own application heartbeat.
    HeartbeatReply,
    /// An error from the service not tied to a request; the adapter's
    /// [`classify_error`](crate::session::Adapter::classify_error) decides what follows.
    Error(ServiceError),
    /// The message could not be decoded; it is handed to the application
    /// with the error in [`Event::Malformed`](crate::Event::Malformed).
    Malformed(DecodeError),
    /// Nothing the session handles: delivered as a plain [`Output::Message`](crate::Output::Message).
    Other,
    /// Noise the application does not need (an acknowledgement without an
    /// id, say): dropped and counted.
    Ignore,
}

/// Where subscription data goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// The id the server assigned when the subscription was confirmed (it
    /// changes with every connection; the session maps it to the user's handle).
    Server(ServerSubId),
    /// The topic itself, for services that name the channel in each message.
    Topic(Topic),
}

/// Authentication succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthGranted {
    /// How long the credentials last; the session re-authenticates
    /// [`reauth_before_expiry`](crate::session::Adapter::reauth_before_expiry)
    /// before they run out. `None`: they do not expire.
    pub expires_in: Option<Duration>,
}

/// Authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthDenied {
    /// Whether trying again (on a new connection, after the backoff) may
    /// succeed. `false` ends the session with
    /// [`Termination::AuthFailed`](crate::Termination::AuthFailed).
    pub retry: bool,
    /// What the service said.
    pub reason: String,
}

/// An error reported by the service (a JSON-RPC `error` object, an
/// exchange's error frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ServiceError {
    /// The service's error code, if it has one.
    pub code: Option<i64>,
    /// The service's message.
    pub message: String,
    /// How long the service asked us to wait before trying again.
    pub retry_after: Option<Duration>,
}

impl ServiceError {
    /// An error with a code and a message.
    pub fn new(code: Option<i64>, message: impl Into<String>) -> ServiceError {
        ServiceError { code, message: message.into(), retry_after: None }
    }

    /// The same error, with the wait the service asked for.
    pub fn with_retry_after(mut self, wait: Duration) -> ServiceError {
        self.retry_after = Some(wait);
        self
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "service error {code}: {}", self.message),
            None => write!(f, "service error: {}", self.message),
        }
    }
}

/// An inbound message the adapter could not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {reason}")]
pub struct DecodeError {
    /// What was wrong (the codec's error text, with its position).
    pub reason: String,
}

impl DecodeError {
    /// An error with `reason`.
    pub fn new(reason: impl Into<String>) -> DecodeError {
        DecodeError { reason: reason.into() }
    }
}

/// The adapter could not encode an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The adapter does not support this operation (requests, subscriptions).
    #[error("the adapter does not support {0}")]
    Unsupported(&'static str),
    /// The payload cannot be encoded.
    #[error("cannot encode: {0}")]
    Invalid(String),
}
