//! The subscription registry: the user's stable handles, their topics, their
//! state across reconnects, and the server's ids mapped back to the handles.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::session::inbound::Route;
use crate::session::requests::RequestError;

/// The user's handle on a subscription. It stays the same across reconnects,
/// whatever id the server assigns each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What to subscribe to, in the service's own words: a channel name
/// (`trades.BTC-PERPETUAL`) or, for JSON-RPC, the subscribe parameters
/// (`["newHeads"]`). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// A topic.
    pub fn new(topic: impl Into<Arc<str>>) -> Topic {
        Topic(topic.into())
    }

    /// The topic text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Topic {
    fn from(s: &str) -> Topic {
        Topic(s.into())
    }
}

impl From<String> for Topic {
    fn from(s: String) -> Topic {
        Topic(s.into())
    }
}

impl From<&String> for Topic {
    fn from(s: &String) -> Topic {
        Topic(s.as_str().into())
    }
}

/// An id the server assigned to a subscription on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerSubId(Arc<str>);

impl ServerSubId {
    /// A server id.
    pub fn new(id: impl Into<Arc<str>>) -> ServerSubId {
        ServerSubId(id.into())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ServerSubId {
    fn from(s: &str) -> ServerSubId {
        ServerSubId(s.into())
    }
}

/// How one subscription is treated (none of the options is required today;
/// the type keeps the signature stable as options are added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {}

/// Why [`Session::subscribe`](crate::session::Session::subscribe) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The topic is already subscribed, under this handle.
    #[error("already subscribed as {0}")]
    Duplicate(SubscriptionId),
    /// The session holds its maximum of subscriptions.
    #[error("{max} subscriptions already held")]
    TooMany {
        /// The configured limit.
        max: usize,
    },
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// No such subscription (never made, failed, or already unsubscribed).
    #[error("no subscription {0}")]
    Unknown(SubscriptionId),
    /// The subscribe request could not be encoded or sent.
    #[error("the subscribe request failed")]
    Failed(#[source] RequestError),
}

/// Where a subscription is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubState {
    /// Asked for, not sent yet: waits for the session to be ready.
    Pending,
    /// Sent, waiting for the server's confirmation.
    Subscribing,
    /// Confirmed on the current connection.
    Active,
    /// Unsubscribe sent, waiting for the confirmation.
    Unsubscribing,
    /// Was active on a connection that dropped: re-sent after the next
    /// authentication.
    Restoring,
}

/// One subscription, as [`Subscriptions`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic.
    pub topic: Topic,
    /// Its state.
    pub state: SubState,
    /// The id the server assigned on the current connection, if it assigns ids.
    pub server_id: Option<ServerSubId>,
    /// The last sequence number delivered, if the data carries them.
    pub last_seq: Option<u64>,
    /// Unsubscribe as soon as the pending subscribe is confirmed.
    pub(crate) drop_when_confirmed: bool,
    /// Confirmed on some connection already: a confirmation now is a restore.
    pub(crate) confirmed_before: bool,
}

/// The subscriptions the session holds: a read-only view for the application
/// (from [`Session::subscriptions`](crate::session::Session::subscriptions)).
/// Bounded by [`SessionConfig::max_subscriptions`](crate::session::SessionConfig::max_subscriptions).
#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: BTreeMap<SubscriptionId, Subscription>,
    by_topic: HashMap<Topic, SubscriptionId>,
    by_server: HashMap<ServerSubId, SubscriptionId>,
    next: u64,
}

impl Subscriptions {
    /// One subscription.
    pub fn get(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.subs.get(&id)
    }

    /// Every subscription, by handle.
    pub fn iter(&self) -> impl Iterator<Item = (SubscriptionId, &Subscription)> {
        self.subs.iter().map(|(id, s)| (*id, s))
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// How many are confirmed on the current connection.
    pub fn active(&self) -> usize {
        self.subs.values().filter(|s| s.state == SubState::Active).count()
    }

    /// The handle subscribed to `topic`.
    pub fn find(&self, topic: &Topic) -> Option<SubscriptionId> {
        self.by_topic.get(topic).copied()
    }

    pub(crate) fn add(&mut self, topic: Topic, max: usize) -> Result<SubscriptionId, SubscribeError> {
        if let Some(id) = self.by_topic.get(&topic) {
            return Err(SubscribeError::Duplicate(*id));
        }
        if self.subs.len() >= max {
            return Err(SubscribeError::TooMany { max });
        }
        self.next += 1;
        let id = SubscriptionId(self.next);
        self.by_topic.insert(topic.clone(), id);
        let sub = Subscription {
            topic,
            state: SubState::Pending,
            server_id: None,
            last_seq: None,
            drop_when_confirmed: false,
            confirmed_before: false,
        };
        self.subs.insert(id, sub);
        Ok(id)
    }

    pub(crate) fn get_mut(&mut self, id: SubscriptionId) -> Option<&mut Subscription> {
        self.subs.get_mut(&id)
    }

    pub(crate) fn remove(&mut self, id: SubscriptionId) -> Option<Subscription> {
        let sub = self.subs.remove(&id)?;
        self.by_topic.remove(&sub.topic);
        if let Some(server) = &sub.server_id {
            self.by_server.remove(server);
        }
        Some(sub)
    }

    /// Maps `server` to `id` on this connection, replacing the id's old mapping.
    pub(crate) fn set_server_id(&mut self, id: SubscriptionId, server: ServerSubId) {
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if let Some(old) = sub.server_id.replace(server.clone()) {
            self.by_server.remove(&old);
        }
        // A server id reused for another topic moves to the newest confirmation.
        if let Some(other) = self.by_server.insert(server, id).filter(|o| *o != id) {
            if let Some(o) = self.subs.get_mut(&other) {
                o.server_id = None;
            }
        }
    }

    /// The handle data on `route` belongs to, if the session holds it.
    pub(crate) fn route(&self, route: &Route) -> Option<SubscriptionId> {
        match route {
            Route::Server(server) => self.by_server.get(server).copied(),
            Route::Topic(topic) => self.by_topic.get(topic).copied(),
        }
    }

    /// The connection dropped: server ids are void, confirmed and in-flight
    /// subscriptions must be restored, and pending unsubscribes are done (the
    /// server forgot them with the connection). Returns the handles dropped.
    pub(crate) fn connection_lost(&mut self) -> Vec<SubscriptionId> {
        self.by_server.clear();
        let mut dropped = Vec::new();
        for (id, sub) in &mut self.subs {
            sub.server_id = None;
            match sub.state {
                SubState::Unsubscribing => dropped.push(*id),
                SubState::Subscribing if sub.drop_when_confirmed => dropped.push(*id),
                SubState::Active | SubState::Subscribing => sub.state = SubState::Restoring,
                SubState::Pending | SubState::Restoring => {}
            }
        }
        for id in &dropped {
            self.remove(*id);
        }
        dropped
    }

    /// The handles to (re)subscribe, in order.
    pub(crate) fn to_restore(&self) -> Vec<SubscriptionId> {
        self.subs
            .iter()
            .filter(|(_, s)| matches!(s.state, SubState::Pending | SubState::Restoring))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_remapped_and_forgotten_on_drop() {
        let mut r = Subscriptions::default();
        let a = r.add("a".into(), 10).unwrap();
        let b = r.add("b".into(), 10).unwrap();
        assert_eq!(r.add("a".into(), 10), Err(SubscribeError::Duplicate(a)));
        r.get_mut(a).unwrap().state = SubState::Active;
        r.set_server_id(a, "0x1".into());
        assert_eq!(r.route(&Route::Server("0x1".into())), Some(a));
        assert_eq!(r.route(&Route::Topic("b".into())), Some(b));
        r.get_mut(b).unwrap().state = SubState::Unsubscribing;
        assert_eq!(r.connection_lost(), [b]);
        // The old server id routes nowhere until the new confirmation.
        assert_eq!(r.route(&Route::Server("0x1".into())), None);
        assert_eq!(r.get(a).unwrap().state, SubState::Restoring);
        assert_eq!(r.to_restore(), [a]);
        r.set_server_id(a, "0x2".into());
        assert_eq!(r.route(&Route::Server("0x2".into())), Some(a));
        assert_eq!(r.add("c".into(), 1), Err(SubscribeError::TooMany { max: 1 }));
    }
}

/// Data for a server id that no subscription holds yet, kept while
/// subscribes are in flight (some servers send a new subscription's first
/// notifications before confirming it). Bounded in messages and bytes: past
/// either, the oldest goes.
#[derive(Debug, Default)]
pub(crate) struct Early {
    items: std::collections::VecDeque<(ServerSubId, Option<u64>, crate::Message)>,
    bytes: usize,
}

impl Early {
    /// Messages kept at most.
    pub(crate) const MAX_MESSAGES: usize = 64;
    /// Payload bytes kept at most.
    pub(crate) const MAX_BYTES: usize = 1 << 20;

    /// Keeps a message; returns how many were dropped to make room.
    pub(crate) fn push(&mut self, server: ServerSubId, seq: Option<u64>, message: crate::Message) -> u64 {
        self.bytes += message.len();
        self.items.push_back((server, seq, message));
        let mut dropped = 0;
        while self.items.len() > Early::MAX_MESSAGES || self.bytes > Early::MAX_BYTES {
            let Some((_, _, old)) = self.items.pop_front() else { break };
            self.bytes -= old.len();
            dropped += 1;
        }
        dropped
    }

    /// Everything kept, oldest first.
    pub(crate) fn take(&mut self) -> std::collections::VecDeque<(ServerSubId, Option<u64>, crate::Message)> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets everything; returns how many messages that was.
    pub(crate) fn clear(&mut self) -> u64 {
        self.take().len() as u64
    }
}
