//! What every driver hands the application: the event stream of the async
//! drivers yields it, and so does `nova-mio`'s `Connection::poll_event`.

use std::time::Duration;

use bytes::Bytes;
use nova_proto::session::{DecodeError, RequestError, RequestId, ServiceError, Strategy, SubscriptionId};
use nova_proto::{Closed, Disconnect, Message, Opened, Reconnect, UnsentReason};

/// A message or a change of the session, in the order it happened.
///
/// Nothing follows [`Event::Closed`]: the event stream ends after it. Nothing
/// in it is boxed: messages are the core's [`Message`] (a `Bytes` slice of
/// the receive buffer when it arrived in one frame).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A complete message from the server.
    Message(Message),
    /// A connection opened (the first, or a reconnect: see [`Opened::attempt`]).
    Opened(Opened),
    /// A connection, or an attempt to make one, ended. `reconnect` says when
    /// the next attempt starts; when it is `None`, [`Event::Closed`] follows.
    Disconnected {
        /// Why.
        cause: Disconnect,
        /// The next attempt and its delay, if any.
        reconnect: Option<Reconnect>,
    },
    /// A reconnect attempt starts now.
    Reconnecting {
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// A pong arrived; `rtt` is set when it answers a keepalive ping.
    Pong {
        /// Its payload.
        payload: Bytes,
        /// Round-trip time of the keepalive ping it answers.
        rtt: Option<Duration>,
    },
    /// A message the application sent that did not go out, given back.
    Unsent {
        /// The message.
        message: Message,
        /// Why it did not go out.
        reason: UnsentReason,
    },
    /// The session is over: the last event.
    Closed(Closed),

    // The behaviour layer's events (only with an adapter other than the
    // default `Raw`, which never produces them).
    /// The session is ready: authenticated (if the service needs it) and its
    /// subscriptions restored. Follows every open that succeeds.
    Ready {
        /// Subscriptions confirmed by the restore.
        restored: usize,
        /// Subscriptions that failed during the restore (each also reported
        /// with [`Event::SubscriptionFailed`]).
        failed: usize,
    },
    /// Authentication was refused or timed out. With `retry` the connection
    /// is aborted and the reconnect policy runs; without, [`Event::Closed`]
    /// follows.
    AuthFailed {
        /// What the service said (never the credentials).
        reason: String,
        /// Whether the session tries again on a new connection.
        retry: bool,
    },
    /// A subscription is confirmed (the first time, or restored after a reconnect).
    Subscribed {
        /// The subscription.
        id: SubscriptionId,
        /// Time from the subscribe request to the confirmation.
        latency: Duration,
    },
    /// A subscription failed; the session no longer holds it (its stream ends).
    SubscriptionFailed {
        /// The subscription.
        id: SubscriptionId,
        /// Why.
        error: RequestError,
    },
    /// A subscription is gone (unsubscribed, or forgotten with a dropped
    /// connection while its unsubscribe was pending); its stream ends.
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
    /// An application heartbeat went unanswered; at `limit` the connection
    /// is aborted as dead.
    HeartbeatMissed {
        /// Consecutive misses.
        missed: u32,
        /// The misses that end the connection.
        limit: u32,
    },
    /// The answer to a request: **`nova-mio` only**. A caller-owned loop has
    /// no futures, so `Connection::request` returns the id and the answer
    /// comes out of `poll_event`. The async drivers never put it on
    /// [`Events`](crate::Events): the future from
    /// [`Handle::request`](crate::Handle::request) receives it.
    Response {
        /// The request.
        id: RequestId,
        /// The whole response message, or why there is none.
        result: Result<Message, RequestError>,
        /// Time from the request to this answer.
        latency: Duration,
    },
    /// Data for a subscription: **`nova-mio` only**, as for
    /// [`Event::Response`]. The async drivers route it to the subscription's
    /// [`Subscription`](crate::Subscription) stream instead.
    Data {
        /// The subscription.
        subscription: SubscriptionId,
        /// The message, as it came.
        message: Message,
    },
    /// Messages were dropped because the event queue was full and the
    /// connector's [`Overflow`](crate::Overflow) policy drops rather than
    /// blocks. Coalesced: one notice for every drop since the last one,
    /// delivered next, ahead of the events waiting (for
    /// [`DropOldest`](crate::Overflow::DropOldest) that is where the gap
    /// is). Only messages are ever dropped, never session events.
    Overflow {
        /// Messages dropped since the last notice.
        dropped: u64,
        /// Messages dropped since the session started.
        total: u64,
    },
    /// The event queue crossed its high-water mark
    /// ([`Connector::backlog_warning`](crate::Connector::backlog_warning)):
    /// the application is falling behind. Once per crossing: the next one
    /// comes only after the queue has fallen below half the mark. Delivered
    /// next, ahead of the events waiting.
    Backlog {
        /// Events waiting when the mark was crossed.
        queued: usize,
        /// Message payload bytes waiting then.
        bytes: usize,
    },
}

impl Event {
    /// The event for a core event; `None` for one this driver does not know
    /// (the core's events are non-exhaustive: a newer core may add some).
    pub(crate) fn from_core(event: nova_proto::Event) -> Option<Event> {
        use nova_proto::Event as E;
        Some(match event {
            E::Opened(opened) => Event::Opened(opened),
            E::Disconnected { cause, reconnect } => Event::Disconnected { cause, reconnect },
            E::Reconnecting { attempt } => Event::Reconnecting { attempt },
            E::Pong { payload, rtt } => Event::Pong { payload, rtt },
            E::Unsent { message, reason } => Event::Unsent { message, reason },
            E::Closed(closed) => Event::Closed(closed),
            E::Ready { restored, failed } => Event::Ready { restored, failed },
            E::AuthFailed { reason, retry } => Event::AuthFailed { reason, retry },
            E::Subscribed { id, latency } => Event::Subscribed { id, latency },
            E::SubscriptionFailed { id, error } => Event::SubscriptionFailed { id, error },
            E::Unsubscribed { id } => Event::Unsubscribed { id },
            E::ServiceError { error, strategy } => Event::ServiceError { error, strategy },
            E::Malformed { error, message } => Event::Malformed { error, message },
            E::HeartbeatMissed { missed, limit } => Event::HeartbeatMissed { missed, limit },
            E::Response { id, result, latency } => Event::Response { id, result, latency },
            E::Data { subscription, message } => Event::Data { subscription, message },
            _ => return None,
        })
    }

    /// Payload bytes this event holds, for the event queue's byte bound.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Event::Message(message)
            | Event::Unsent { message, .. }
            | Event::Malformed { message, .. }
            | Event::Data { message, .. }
            | Event::Response { result: Ok(message), .. } => message.len(),
            _ => 0,
        }
    }
}
