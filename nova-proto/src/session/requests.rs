//! Request/response correlation: ids, options, errors, and the table of
//! pending requests with their deadlines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::SendError;
use crate::message::Message;
use crate::session::inbound::{EncodeError, ServiceError};
use crate::session::subscriptions::SubscriptionId;

/// A request's id: assigned by the session, increasing, never reused within a
/// session (across reconnects too), so a late answer can never be taken for
/// the answer to a newer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What to send, for [`Adapter::encode_request`](crate::session::Adapter::encode_request).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RequestPayload {
    /// A ready message; the default adapter sends it as it is.
    Message(Message),
    /// A method call with parameters, encoded by the adapter (JSON-RPC, say).
    #[cfg(feature = "json")]
    Call {
        /// The method name.
        method: String,
        /// Its parameters (`null` for none).
        params: serde_json::Value,
    },
}

impl RequestPayload {
    /// A method call.
    #[cfg(feature = "json")]
    pub fn call(method: impl Into<String>, params: serde_json::Value) -> RequestPayload {
        RequestPayload::Call { method: method.into(), params }
    }
}

impl From<Message> for RequestPayload {
    fn from(message: Message) -> RequestPayload {
        RequestPayload::Message(message)
    }
}

impl From<&'static str> for RequestPayload {
    fn from(text: &'static str) -> RequestPayload {
        RequestPayload::Message(Message::text(text))
    }
}

impl From<String> for RequestPayload {
    fn from(text: String) -> RequestPayload {
        RequestPayload::Message(Message::text(text))
    }
}

/// How one request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RequestOptions {
    /// How long to wait for the response; `None` takes the session's
    /// [`request_timeout`](crate::session::SessionConfig::request_timeout).
    /// The deadline runs from the call, across reconnects: it bounds the
    /// request however many times it is sent.
    pub timeout: Option<Duration>,
    /// Safe to send again: when the connection drops before the answer, the
    /// request is re-sent after the next `Ready` instead of failing with
    /// [`RequestError::ConnectionLost`].
    pub idempotent: bool,
    /// May go out before the session is ready (before authentication
    /// succeeded and subscriptions were restored): an authentication-free
    /// query, say. Still waits for a connection.
    pub before_ready: bool,
}

impl RequestOptions {
    /// The default options with this timeout.
    pub fn timeout(mut self, timeout: Duration) -> RequestOptions {
        self.timeout = Some(timeout);
        self
    }

    /// Marks the request safe to re-send after a reconnect.
    pub fn idempotent(mut self, idempotent: bool) -> RequestOptions {
        self.idempotent = idempotent;
        self
    }

    /// Lets the request go out before the session is ready.
    pub fn before_ready(mut self, before_ready: bool) -> RequestOptions {
        self.before_ready = before_ready;
        self
    }
}

/// Why a request failed: returned at once by
/// [`Session::request`](crate::session::Session::request), or later in
/// [`Event::Response`](crate::Event::Response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No response within the request's timeout.
    #[error("request timed out")]
    Timeout,
    /// The application cancelled it; a response that comes later is dropped.
    #[error("request cancelled")]
    Cancelled,
    /// The connection dropped before the response, and the request was not
    /// idempotent (it may or may not have been processed).
    #[error("connection lost before the response")]
    ConnectionLost,
    /// The session closed before the response.
    #[error("the session is closed")]
    Closed,
    /// The service answered with an error.
    #[error(transparent)]
    Service(ServiceError),
    /// Too many requests wait for the session to become ready.
    #[error("{max} requests already wait for the session to be ready")]
    QueueFull {
        /// The configured limit.
        max: usize,
    },
    /// Too many requests are pending.
    #[error("{max} requests already pending")]
    TooManyPending {
        /// The configured limit.
        max: usize,
    },
    /// The adapter could not encode the request.
    #[error("could not encode the request")]
    Encode(#[source] EncodeError),
    /// The encoded request could not be sent (too large, outbound queue full).
    #[error("could not send the request")]
    Send(#[source] SendError),
    /// Rate limits are configured
    /// ([`SessionConfig::rate_limits`](crate::session::SessionConfig::rate_limits))
    /// and their queue is full
    /// ([`RateLimits::max_queued`](crate::limits::RateLimits::max_queued)):
    /// nothing was queued. An operation merely over the limit is not an
    /// error; it waits in the queue.
    #[error("rate limited: the rate-limit queue is full")]
    RateLimited {
        /// When the queue next gives an operation out, making room: the
        /// earliest point a retry can succeed.
        until: Instant,
    },
}

/// What a pending entry is for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Purpose {
    /// An application request, kept encoded so it can be re-sent.
    User { message: Message, idempotent: bool, before_ready: bool },
    /// The authentication (or a re-authentication).
    Auth,
    /// The adapter's per-connection setup message.
    Setup,
    /// Subscribe to these; `restore` when part of the restore on (re)open.
    Subscribe { subs: Vec<SubscriptionId>, restore: bool },
    /// Unsubscribe from these.
    Unsubscribe { subs: Vec<SubscriptionId> },
}

/// Where a pending entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flight {
    /// Waiting to be sent (for a connection, or for `Ready`).
    Queued,
    /// Sent on the connection of this generation.
    Sent { generation: u64 },
    /// In the session's rate queue on the current connection: not written
    /// yet, it goes out when the rate limits allow.
    Limited,
}

/// One pending entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub(crate) purpose: Purpose,
    pub(crate) issued: Instant,
    pub(crate) deadline: Instant,
    pub(crate) flight: Flight,
}

/// The pending entries, by id, and their deadlines in order: every entry has
/// exactly one deadline, so nothing can wait forever.
#[derive(Debug, Default)]
pub(crate) struct Table {
    entries: BTreeMap<RequestId, Pending>,
    deadlines: BTreeSet<(Instant, RequestId)>,
    users: usize,
    queued_users: usize,
}

impl Table {
    pub(crate) fn insert(&mut self, id: RequestId, pending: Pending) {
        self.deadlines.insert((pending.deadline, id));
        if let Purpose::User { .. } = pending.purpose {
            self.users += 1;
            if pending.flight == Flight::Queued {
                self.queued_users += 1;
            }
        }
        let old = self.entries.insert(id, pending);
        debug_assert!(old.is_none(), "request id {id} reused");
    }

    pub(crate) fn remove(&mut self, id: RequestId) -> Option<Pending> {
        let pending = self.entries.remove(&id)?;
        self.deadlines.remove(&(pending.deadline, id));
        if let Purpose::User { .. } = pending.purpose {
            self.users -= 1;
            if pending.flight == Flight::Queued {
                self.queued_users -= 1;
            }
        }
        Some(pending)
    }

    pub(crate) fn get(&self, id: RequestId) -> Option<&Pending> {
        self.entries.get(&id)
    }

    pub(crate) fn set_flight(&mut self, id: RequestId, flight: Flight) {
        if let Some(p) = self.entries.get_mut(&id) {
            if let Purpose::User { .. } = p.purpose {
                match (p.flight == Flight::Queued, flight == Flight::Queued) {
                    (true, false) => self.queued_users -= 1,
                    (false, true) => self.queued_users += 1,
                    _ => {}
                }
            }
            p.flight = flight;
        }
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The first entry due at `now`, taken out.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(RequestId, Pending)> {
        let &(at, id) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.remove(id).map(|p| (id, p))
    }

    /// Application requests held (queued or in flight).
    pub(crate) fn users(&self) -> usize {
        self.users
    }

    /// Application requests waiting to be sent.
    pub(crate) fn queued_users(&self) -> usize {
        self.queued_users
    }

    pub(crate) fn ids(&self) -> Vec<RequestId> {
        self.entries.keys().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&RequestId, &Pending)> {
        self.entries.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(now: Instant, deadline: Instant) -> Pending {
        Pending {
            purpose: Purpose::User { message: Message::text("x"), idempotent: false, before_ready: false },
            issued: now,
            deadline,
            flight: Flight::Queued,
        }
    }

    #[allow(clippy::disallowed_methods)]
    #[test]
    fn deadlines_come_out_in_order_and_counts_follow_flights() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = Table::default();
        t.insert(RequestId(1), user(t0, s(5)));
        t.insert(RequestId(2), user(t0, s(3)));
        t.insert(RequestId(3), Pending { purpose: Purpose::Auth, issued: t0, deadline: s(4), flight: Flight::Queued });
        assert_eq!((t.users(), t.queued_users(), t.next_deadline()), (2, 2, Some(s(3))));
        t.set_flight(RequestId(1), Flight::Sent { generation: 1 });
        assert_eq!(t.queued_users(), 1);
        assert!(t.pop_due(s(2)).is_none());
        let due: Vec<_> = std::iter::from_fn(|| t.pop_due(s(5))).map(|(id, _)| id.0).collect();
        assert_eq!(due, [2, 3, 1]);
        assert_eq!((t.users(), t.queued_users(), t.len()), (0, 0, 0));
    }
}
