//! The behaviour trait: one adapter type per service overrides what the
//! service needs; every method has a default.

use std::time::Duration;

use crate::io::Disconnect;
use crate::limits::{OpClass, RateLimits};
use crate::message::Message;
use crate::session::heartbeat::HeartbeatSpec;
use crate::session::inbound::{AuthDenied, AuthGranted, EncodeError, Inbound, ServiceError};
use crate::session::requests::{RequestId, RequestPayload};
use crate::session::subscriptions::{ServerSubId, Topic};

/// What to do about an error the service reported, from
/// [`Adapter::classify_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Report it ([`Event::ServiceError`](crate::Event::ServiceError)) and go on.
    Continue,
    /// Abort the connection; the reconnect policy's backoff applies.
    Reconnect,
    /// Abort the connection and reconnect after exactly this wait (the
    /// service asked for it).
    RetryAfter(Duration),
    /// Close the session for good ([`Termination::Stopped`](crate::Termination::Stopped)).
    Stop,
}

/// Ready-made error strategies, for adapters that do not classify errors
/// one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Every service error ends the connection; the session reconnects
    /// (honouring a `retry_after` the service sent).
    AlwaysReconnect,
    /// Every service error ends the session.
    FailFast,
    /// Report and continue: the connection stays.
    #[default]
    LogAndContinue,
}

impl ErrorPolicy {
    /// The strategy for `error`.
    pub fn strategy(self, error: &ServiceError) -> Strategy {
        match self {
            ErrorPolicy::AlwaysReconnect => error.retry_after.map_or(Strategy::Reconnect, Strategy::RetryAfter),
            ErrorPolicy::FailFast => Strategy::Stop,
            ErrorPolicy::LogAndContinue => Strategy::Continue,
        }
    }
}

/// A subscription the session asks the adapter to unsubscribe from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRef {
    /// Its topic.
    pub topic: Topic,
    /// The id the server assigned on this connection, if it assigns ids.
    pub server_id: Option<ServerSubId>,
}

/// A service's message formats and rules, for a [`Session`](crate::session::Session).
///
/// Every method has a default, and the defaults together make a session
/// behave exactly like a bare [`Client`](crate::Client): every inbound
/// message is [`Inbound::Other`] (delivered as it came, nothing parsed), no
/// authentication, no heartbeat. An adapter overrides what its service
/// needs. Methods are called from inside the session's handlers and pollers:
/// they must not block, and they do no IO (the session is sans-IO, and so is
/// its adapter). The trait is object safe: a session holds a
/// `Box<dyn Adapter + Send>`.
pub trait Adapter {
    /// What an inbound message is. Called once per message, in order.
    fn classify(&mut self, message: &Message) -> Inbound {
        let _ = message;
        Inbound::Other
    }

    /// The message that authenticates a new connection, sent first on every
    /// open; its answer is an [`Inbound::Response`] for `id` (or an
    /// [`Inbound::Auth`]). `None` (the default): no authentication, the
    /// session restores subscriptions at once.
    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        None
    }

    /// Whether the auth message waits for the server's greeting
    /// ([`Inbound::Greeting`]) rather than going out as the connection
    /// opens (Discord: Identify or Resume only after Hello). While it
    /// waits the session is [`Readiness::AwaitingGreeting`](crate::session::Readiness::AwaitingGreeting),
    /// for at most [`SessionConfig::auth_timeout`](crate::session::SessionConfig::auth_timeout):
    /// a connection that gets no greeting in time fails like an
    /// authentication left unanswered (a retryable
    /// [`Event::AuthFailed`](crate::Event::AuthFailed), then the connection
    /// is aborted with [`Timeout::Auth`](crate::Timeout::Auth)). Read once
    /// per connection, as it opens. The default: `false`.
    fn auth_after_greeting(&self) -> bool {
        false
    }

    /// Reads the answer to the auth request. The default grants on `Ok`
    /// (with no expiry) and refuses for good on `Err`.
    ///
    /// # Errors
    ///
    /// [`AuthDenied`] when the service refused; its `retry` decides whether
    /// the session reconnects or stops.
    fn auth_result(&mut self, response: &Message, result: Result<(), ServiceError>) -> Result<AuthGranted, AuthDenied> {
        let _ = response;
        match result {
            Ok(()) => Ok(AuthGranted::default()),
            Err(e) => Err(AuthDenied { retry: false, reason: e.to_string() }),
        }
    }

    /// A per-connection setup message (Deribit's `public/set_heartbeat`),
    /// sent on every connection as soon as it is authenticated (at once
    /// when there is no authentication, after the greeting when the auth
    /// waits for one): after the auth message and ahead of the restore and
    /// of queued requests. Not sent again when credentials are renewed. Its
    /// answer is an [`Inbound::Response`] for `id`: a success is dropped, an
    /// error is handled like an unsolicited one
    /// ([`classify_error`](Self::classify_error),
    /// [`Event::ServiceError`](crate::Event::ServiceError)); one left
    /// unanswered is forgotten at the request timeout. The session does not
    /// wait for the answer before restoring. `None` (the default): nothing.
    fn setup_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        None
    }

    /// How long before the credentials expire the session re-authenticates
    /// (on the same connection). When the credentials last less than this,
    /// it re-authenticates halfway through their life.
    fn reauth_before_expiry(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Encodes an application request with the session's id for it. The
    /// default sends a [`RequestPayload::Message`] as it is (correlating its
    /// answer is then up to [`classify`](Self::classify)) and supports nothing else.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when the payload cannot be encoded; the request is refused.
    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        let _ = id;
        match payload {
            RequestPayload::Message(m) => Ok(m.clone()),
            #[cfg(feature = "json")]
            RequestPayload::Call { .. } => Err(EncodeError::Unsupported("method calls")),
        }
    }

    /// Encodes one subscribe request for `topics` (at most
    /// [`max_topics_per_request`](Self::max_topics_per_request) of them).
    ///
    /// # Errors
    ///
    /// [`EncodeError`]; the default supports no subscriptions.
    fn encode_subscribe(&mut self, id: RequestId, topics: &[Topic]) -> Result<Message, EncodeError> {
        let _ = (id, topics);
        Err(EncodeError::Unsupported("subscriptions"))
    }

    /// Encodes one unsubscribe request.
    ///
    /// # Errors
    ///
    /// [`EncodeError`]; the default supports no subscriptions.
    fn encode_unsubscribe(&mut self, id: RequestId, subs: &[SubscriptionRef]) -> Result<Message, EncodeError> {
        let _ = (id, subs);
        Err(EncodeError::Unsupported("subscriptions"))
    }

    /// How many topics one subscribe request may carry: restores are batched
    /// to this size.
    fn max_topics_per_request(&self) -> usize {
        100
    }

    /// The ids the server assigned in a successful subscribe response, one per
    /// topic that has one. The default assigns none: data is routed by topic.
    fn server_ids(&mut self, topics: &[Topic], response: &Message) -> Vec<(Topic, ServerSubId)> {
        let _ = (topics, response);
        Vec::new()
    }

    /// The topics a successful subscribe response did not take (a batch
    /// the service accepted only in part), each with why: they fail with
    /// [`Event::SubscriptionFailed`](crate::Event::SubscriptionFailed) and
    /// the rest of the batch is confirmed. The default: none.
    fn refused_topics(&mut self, topics: &[Topic], response: &Message) -> Vec<(Topic, ServiceError)> {
        let _ = (topics, response);
        Vec::new()
    }

    /// The application heartbeat, if the service has one.
    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        None
    }

    /// One heartbeat message (the first of a connection goes one
    /// [`interval`](HeartbeatSpec::interval) after the session is ready, or
    /// when an [`Inbound::Greeting`] says). Its reply is an [`Inbound::HeartbeatReply`] or
    /// an [`Inbound::Response`] for `id`. `None` skips this beat.
    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        None
    }

    /// What to do about an error the service reported outside any request.
    /// The default reports it and continues ([`ErrorPolicy::LogAndContinue`]).
    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        ErrorPolicy::LogAndContinue.strategy(error)
    }

    /// The connection dropped, for `cause` (the same as in
    /// [`Event::Disconnected`](crate::Event::Disconnected)): the server's
    /// close frame ([`Disconnect::ServerClosed`], with its code and reason),
    /// or a failure (transport lost, a timeout such as a missed heartbeat or
    /// an unanswered authentication, the adapter's own abort). Called before
    /// the next connection is tried and before the event is handed out; the
    /// adapter may reset per-connection state, and decide from the cause
    /// what its next [`auth_message`](Self::auth_message) is (Discord:
    /// Identify rather than Resume after 4007). Whether the session
    /// reconnects at all is the configuration's reconnect policy.
    fn on_disconnect(&mut self, cause: &Disconnect) {
        let _ = cause;
    }

    /// The service's published rate limits, applied unless the session's
    /// settings set their own
    /// ([`SessionConfig::rate_limits`](crate::session::SessionConfig::rate_limits)).
    /// The default: none.
    fn rate_limits(&self) -> RateLimits {
        RateLimits::none()
    }

    /// The rate-limit cost of an outgoing message, asked only when rate
    /// limits are configured
    /// ([`SessionConfig::rate_limits`](crate::session::SessionConfig::rate_limits)).
    /// The default charges 1 for everything but heartbeats, which cost 0:
    /// a zero-cost heartbeat is sent at once, never queued behind data or
    /// held by a pause, so the limiter can never make a live connection
    /// look dead. Give heartbeats a cost to have them limited (and queued)
    /// like the rest.
    fn cost(&self, class: OpClass, message: &Message) -> u32 {
        let _ = message;
        match class {
            OpClass::Heartbeat => 0,
            _ => 1,
        }
    }

    /// Whether the session reports its readiness ([`Event::Ready`](crate::Event::Ready)).
    /// Only [`Raw`] turns it off, so a raw session's outputs are exactly a
    /// bare client's.
    fn reports_ready(&self) -> bool {
        true
    }
}

/// The adapter that does nothing: a session with it is a bare
/// [`Client`](crate::Client), output for output and byte for byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl Adapter for Raw {
    fn reports_ready(&self) -> bool {
        false
    }
}
