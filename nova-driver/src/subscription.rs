//! Subscriptions through a [`Handle`](crate::Handle): one bounded queue
//! ("feed") per subscription in the shared state, and the [`Subscription`]
//! stream that reads it.
//!
//! The session ([`nova_proto::Session`]) routes each inbound data message to
//! the subscription's stable [`SubscriptionId`] (whatever id the server
//! assigned on the current connection) and restores subscriptions after a
//! reconnect; the driver only carries
//! [`Event::Data`](nova_proto::Event::Data) to the feed of that id, and ends
//! the feed on `Unsubscribed`, `SubscriptionFailed` or `Closed`.
//!
//! # Backpressure
//!
//! Each feed is bounded ([`Connector::subscription_capacity`](crate::Connector::subscription_capacity)
//! messages and [`Connector::event_bytes`](crate::Connector::event_bytes)
//! payload bytes, one message always let through). While any feed is full,
//! the driver decodes no more frames and, past
//! [`max_buffered_input`](crate::Connector::max_buffered_input), stops
//! reading the socket: exactly what a full event queue does. Nothing is
//! dropped; TCP slows the server down. One slow reader therefore holds up
//! the whole session (its other subscriptions and its events): read every
//! subscription you keep, or drop it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_core::Stream;
use nova_proto::Message;
use nova_proto::session::{RequestError, SubscribeError, SubscriptionId};

use crate::state::{Bounds, Inner, Shared};

/// How a feed ended.
#[derive(Debug, Clone)]
enum End {
    /// Unsubscribed (by the application, or forgotten with a dropped connection).
    Unsubscribed,
    /// The subscription failed (refused, timed out, not restorable).
    Failed(RequestError),
    /// The session is over.
    Closed,
}

/// One subscription's queue.
#[derive(Default)]
struct Feed {
    queue: VecDeque<Message>,
    /// Payload bytes in `queue`.
    bytes: usize,
    waker: Option<Waker>,
    end: Option<End>,
}

impl Feed {
    /// At its bound (one message is always let through, however large).
    fn is_full(&self, capacity: usize, max_bytes: usize) -> bool {
        !self.queue.is_empty() && (self.queue.len() >= capacity || self.bytes >= max_bytes)
    }
}

/// The feeds of the subscriptions whose streams are alive, by id.
///
/// Bounded: a feed exists only while its [`Subscription`] does, and
/// [`Handle::subscribe`](crate::Handle::subscribe) refuses a new one while
/// the session's [`max_subscriptions`](nova_proto::session::SessionConfig::max_subscriptions)
/// feeds exist (ended ones whose stream is still held included).
pub(crate) struct Feeds {
    feeds: HashMap<SubscriptionId, Feed>,
    /// Feeds at their bound: while any is, nothing more is decoded.
    full: usize,
    capacity: usize,
    max_bytes: usize,
    /// Data for a subscription whose stream was dropped: discarded.
    discarded: u64,
}

impl Feeds {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Feeds {
        Feeds { feeds: HashMap::new(), full: 0, capacity: capacity.max(1), max_bytes, discarded: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.feeds.len()
    }

    /// Whether every feed takes one more message.
    pub(crate) fn has_room(&self) -> bool {
        self.full == 0
    }

    /// Data messages discarded because their stream was gone.
    pub(crate) fn discarded(&self) -> u64 {
        self.discarded
    }

    pub(crate) fn insert(&mut self, id: SubscriptionId) {
        self.feeds.insert(id, Feed::default());
    }

    /// Data for `id`. Returns `false` when no stream takes it (dropped, or
    /// ended): the message is discarded and counted.
    pub(crate) fn deliver(&mut self, id: SubscriptionId, message: Message) -> bool {
        let (capacity, max_bytes) = (self.capacity, self.max_bytes);
        let Some(feed) = self.feeds.get_mut(&id).filter(|f| f.end.is_none()) else {
            self.discarded += 1;
            return false;
        };
        let was_full = feed.is_full(capacity, max_bytes);
        feed.bytes += message.len();
        feed.queue.push_back(message);
        if let Some(waker) = feed.waker.take() {
            waker.wake();
        }
        if feed.is_full(capacity, max_bytes) && !was_full {
            self.full += 1;
        }
        true
    }

    /// The subscription `id` ended; its stream ends once it has read what
    /// is queued.
    pub(crate) fn end_unsubscribed(&mut self, id: SubscriptionId) {
        self.end(id, End::Unsubscribed);
    }

    /// The subscription `id` failed.
    pub(crate) fn end_failed(&mut self, id: SubscriptionId, error: RequestError) {
        self.end(id, End::Failed(error));
    }

    /// The session is over: every stream ends.
    pub(crate) fn end_all(&mut self) {
        let ids: Vec<SubscriptionId> = self.feeds.keys().copied().collect();
        for id in ids {
            self.end(id, End::Closed);
        }
    }

    fn end(&mut self, id: SubscriptionId, end: End) {
        if let Some(feed) = self.feeds.get_mut(&id) {
            feed.end.get_or_insert(end);
            if let Some(waker) = feed.waker.take() {
                waker.wake();
            }
        }
    }

    /// The next message for `id`, and whether taking it made room the
    /// driver may be waiting for. `Ready(None)` once the feed ended and is
    /// empty (or the driver is gone: `finished`).
    fn poll_next(&mut self, id: SubscriptionId, waker: &Waker, finished: bool) -> (Poll<Option<Message>>, bool) {
        let (capacity, max_bytes) = (self.capacity, self.max_bytes);
        let Some(feed) = self.feeds.get_mut(&id) else { return (Poll::Ready(None), false) };
        let was_full = feed.is_full(capacity, max_bytes);
        if let Some(message) = feed.queue.pop_front() {
            feed.bytes -= message.len();
            let made_room = was_full && !feed.is_full(capacity, max_bytes);
            if made_room {
                self.full -= 1;
            }
            return (Poll::Ready(Some(message)), made_room);
        }
        if feed.end.is_some() || finished {
            return (Poll::Ready(None), false);
        }
        match &mut feed.waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
        (Poll::Pending, false)
    }

    /// Removes the feed of a dropped stream. Returns whether the
    /// subscription was still live (so must be unsubscribed) and whether
    /// removing it lifted backpressure.
    fn remove(&mut self, id: SubscriptionId) -> (bool, bool) {
        let Some(feed) = self.feeds.get(&id) else { return (false, false) };
        let was_full = feed.is_full(self.capacity, self.max_bytes);
        let live = feed.end.is_none();
        self.feeds.remove(&id);
        if was_full {
            self.full -= 1;
        }
        (live, was_full)
    }

    fn failure(&self, id: SubscriptionId) -> Option<RequestError> {
        match self.feeds.get(&id)?.end.as_ref()? {
            End::Failed(error) => Some(error.clone()),
            End::Unsubscribed | End::Closed => None,
        }
    }

    /// Wakes every waiting stream: the driver is gone.
    pub(crate) fn wake_all(&mut self) {
        for feed in self.feeds.values_mut() {
            if let Some(waker) = feed.waker.take() {
                waker.wake();
            }
        }
    }
}

impl Inner {
    /// Whether the driver may decode more frames: the event queue and every
    /// subscription's feed take one more message.
    pub(crate) fn can_deliver(&self, bounds: &Bounds) -> bool {
        self.has_room(bounds) && self.feeds.has_room()
    }
}

/// The data of one subscription, from [`Handle::subscribe`](crate::Handle::subscribe):
/// a [`Stream`] of its messages, in order, across reconnects.
///
/// The subscription keeps its [`id`](Self::id) for its whole life: after a
/// reconnect the session restores it (under whatever new id the server
/// assigns) and its data keeps coming here. Its confirmation is reported on
/// [`Events`](crate::Events) as [`Event::Subscribed`](crate::Event::Subscribed)
/// (again after each restore).
///
/// The stream ends (after the messages already queued) when the
/// subscription ends: unsubscribed, failed ([`failure`](Self::failure) says
/// why; [`Event::SubscriptionFailed`](crate::Event::SubscriptionFailed) too),
/// or the session closed.
///
/// The queue behind it is bounded; while it is full the driver stops
/// reading the socket (see [`Connector::subscription_capacity`](crate::Connector::subscription_capacity)).
///
/// Dropping it unsubscribes (gracefully, through the session); data that
/// still arrives for it is discarded and counted
/// ([`Handle::discarded_data`](crate::Handle::discarded_data), and the
/// `nova_subscription_data_discarded_total` counter).
pub struct Subscription {
    shared: Arc<Shared>,
    id: SubscriptionId,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, id: SubscriptionId) -> Subscription {
        Subscription { shared, id }
    }

    /// The subscription's stable id (the one in
    /// [`Event::Subscribed`](crate::Event::Subscribed) and friends).
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The next message; `None` once the subscription has ended and every
    /// message was taken. The same as `StreamExt::next`, without the import.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut inner = self.shared.lock();
        let finished = inner.finished;
        let (poll, made_room) = inner.feeds.poll_next(self.id, cx.waker(), finished);
        drop(inner);
        if made_room {
            self.shared.driver.notify();
        }
        poll
    }

    /// Unsubscribes gracefully: the session sends the unsubscribe request;
    /// data keeps coming until the server confirms, then the stream ends.
    /// Calling it again while that is under way does nothing.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Unknown`] when the subscription already ended.
    pub fn unsubscribe(&self) -> Result<(), SubscribeError> {
        let mut inner = self.shared.lock();
        inner.client.unsubscribe(Instant::now(), self.id)?;
        drop(inner);
        self.shared.driver.notify();
        Ok(())
    }

    /// Why the subscription failed, once its stream ended because it did.
    pub fn failure(&self) -> Option<RequestError> {
        self.shared.lock().feeds.failure(self.id)
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        let (live, lifted) = inner.feeds.remove(self.id);
        let unsubscribed = live && !inner.finished && inner.client.unsubscribe(Instant::now(), self.id).is_ok();
        drop(inner);
        if unsubscribed || lifted {
            self.shared.driver.notify();
        }
    }
}
