//! The application's side: [`Handle`] for commands, [`Events`] for what
//! happens, [`MessageSink`] for those who like `Sink`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_core::Stream;
use nova_proto::session::{
    Readiness, RequestError, RequestOptions, RequestPayload, SessionStats, SubscribeError, SubscribeOptions, Topic,
};
use nova_proto::{CloseCode, CloseError, Closed, Config, Message, SendError, SendOptions, State, Stats};

use crate::Event;
use crate::request::Request;
use crate::state::{Inner, Shared};
use crate::subscription::Subscription;

/// Sends messages and controls the session; cheap to clone.
///
/// Commands take effect at once under a short lock, and return the core's
/// typed errors: nothing panics, and a message that cannot be taken comes
/// back inside the error. When the last clone (and the last
/// [`MessageSink`]) is dropped, the session closes gracefully with 1000.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    /// Counts the handles; its drop closes the session.
    _alive: Arc<Alive>,
}

/// Closes the session when the last handle goes.
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        if !inner.finished && !inner.client.is_closed() {
            // 1000 and an empty reason are always valid.
            let _ = inner.client.close(Instant::now(), CloseCode::NORMAL, "");
            drop(inner);
            self.0.driver.notify();
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("Handle")
            .field("state", &inner.client.state())
            .field("buffered_amount", &inner.client.buffered_amount())
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Handle {
        Handle { _alive: Arc::new(Alive(Arc::clone(&shared))), shared }
    }

    /// Sends a message, first waiting while more than the send buffer
    /// ([`Connector::send_buffer`](crate::Connector::send_buffer)) is waiting
    /// to be written: a fast producer is slowed to the socket's pace instead
    /// of filling memory.
    ///
    /// Cancel-safe: if the future is dropped before it completes, the message
    /// was not sent.
    ///
    /// # Errors
    ///
    /// [`SendError::NotOpen`] while disconnected (unless the configuration
    /// queues messages offline), [`SendError::Closed`] once the session is
    /// ending, [`SendError::TooLarge`], [`SendError::QueueFull`]. Each gives
    /// the message back.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.send_with(message, None).await
    }

    /// Like [`send`](Self::send), with per-message [`SendOptions`] (offline
    /// queueing, time to live) instead of the configured defaults.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_with(
        &self,
        message: impl Into<Message>,
        options: impl Into<Option<SendOptions>>,
    ) -> Result<(), SendError> {
        let options = options.into();
        let mut message = Some(message.into());
        poll_fn(|cx| {
            let bounds = self.shared.bounds;
            let mut inner = self.shared.lock();
            if !inner.writable(&bounds) {
                inner.wait_writable(cx.waker());
                return Poll::Pending;
            }
            let Some(message) = message.take() else {
                // Polled again after completing: nothing left to send.
                return Poll::Ready(Ok(()));
            };
            // Under the lock the room was checked under: one lock per message.
            let result = submit(&mut inner, message, options);
            drop(inner);
            if result.is_ok() {
                self.shared.driver.notify();
            }
            Poll::Ready(result)
        })
        .await
    }

    /// Sends a message now, without waiting for the send buffer to drain.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.submit(message.into(), None)
    }

    fn submit(&self, message: Message, options: Option<SendOptions>) -> Result<(), SendError> {
        let mut inner = self.shared.lock();
        submit(&mut inner, message, options)?;
        drop(inner);
        self.shared.driver.notify();
        Ok(())
    }

    /// Sends a ping (at most 125 bytes of payload); its pong arrives as
    /// [`Event::Pong`]. Keepalive pings are sent by the session itself.
    ///
    /// # Errors
    ///
    /// [`SendError::PingTooLong`], or [`SendError::PingNotOpen`] when not open.
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        let mut inner = self.shared.lock();
        inner.client.ping(Instant::now(), payload)?;
        drop(inner);
        self.shared.driver.notify();
        Ok(())
    }

    /// Starts closing the session for good: queued messages are written,
    /// then a close frame with `code` and `reason`; the server's answer is
    /// awaited up to the close timeout. Returns at once; [`closed`](Self::closed)
    /// waits for the end. Closing twice does nothing.
    ///
    /// # Errors
    ///
    /// [`CloseError`] for a code that may not be sent or a reason over 123 bytes.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<(), CloseError> {
        let mut inner = self.shared.lock();
        inner.client.close(Instant::now(), code.into(), reason)?;
        drop(inner);
        self.shared.driver.notify();
        Ok(())
    }

    /// Waits until the session is over, and says how it ended. If the driver
    /// stopped without a close (its runtime shut down), `None`.
    pub async fn closed(&self) -> Option<Closed> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.closed.is_some() || inner.finished {
                return Poll::Ready(inner.closed.clone());
            }
            // Registered under the lock the end is recorded under: it
            // cannot slip between the check and the wait.
            inner.wait_status(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Sends a request through the session's adapter and returns the future
    /// of its answer. The session assigns the id, the adapter encodes the
    /// payload, and the answer (matched by the adapter) completes the
    /// future; so do a service error, the request's timeout, a dropped
    /// connection (unless the request is idempotent: then it is re-sent once
    /// the session is ready again) and the end of the session. It never waits
    /// forever. Before the session is ready the request waits for it (unless
    /// `options` let it go before).
    ///
    /// The request is handed to the session now, not when the future is
    /// first polled; dropping the future cancels it (see [`Request`]).
    /// Requests need an adapter ([`Connector::adapter`](crate::Connector::adapter)):
    /// the default one sends a [`RequestPayload::Message`] as it is and
    /// cannot tell its answer, so the request times out.
    ///
    /// # Errors
    ///
    /// The future's: as [`try_request`](Self::try_request), or later
    /// [`RequestError::Timeout`], [`RequestError::Service`],
    /// [`RequestError::ConnectionLost`], [`RequestError::Closed`].
    pub fn request(&self, payload: impl Into<RequestPayload>, options: RequestOptions) -> Request {
        match self.try_request(payload, options) {
            Ok(request) => request,
            Err(error) => Request::refused(Arc::clone(&self.shared), error),
        }
    }

    /// Like [`request`](Self::request), but a request the session refuses
    /// at once is an error here rather than from the future.
    ///
    /// # Errors
    ///
    /// [`RequestError::Closed`] once the session is over,
    /// [`RequestError::TooManyPending`] when the session's
    /// [`max_pending_requests`](nova_proto::session::SessionConfig::max_pending_requests)
    /// requests (or unclaimed answers) are held, [`RequestError::QueueFull`],
    /// [`RequestError::Encode`] (from the adapter), [`RequestError::Send`],
    /// [`RequestError::RateLimited`].
    pub fn try_request(
        &self,
        payload: impl Into<RequestPayload>,
        options: RequestOptions,
    ) -> Result<Request, RequestError> {
        let mut inner = self.shared.lock();
        if inner.finished {
            return Err(RequestError::Closed);
        }
        let max = inner.client.settings().max_pending_requests;
        if inner.calls.len() >= max {
            return Err(RequestError::TooManyPending { max });
        }
        let id = inner.client.request(Instant::now(), payload.into(), options)?;
        inner.calls.insert(id);
        drop(inner);
        self.shared.driver.notify();
        Ok(Request::pending(Arc::clone(&self.shared), id))
    }

    /// Subscribes to `topic` through the session's adapter and returns the
    /// stream of its data. The subscription lives across reconnects: the
    /// session restores it on every new connection (remapping the server's
    /// new id) and its data keeps coming to the same stream. Its
    /// confirmation comes on [`Events`] as [`Event::Subscribed`] (or
    /// [`Event::SubscriptionFailed`], which also ends the stream). Before the
    /// session is ready the subscribe request waits and goes out with the
    /// restore. Dropping the stream unsubscribes.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Duplicate`] for a topic already subscribed,
    /// [`SubscribeError::TooMany`] at the session's
    /// [`max_subscriptions`](nova_proto::session::SessionConfig::max_subscriptions)
    /// (streams of ended subscriptions still held count), [`SubscribeError::Closed`],
    /// [`SubscribeError::Failed`] when the adapter cannot encode it (the
    /// default adapter supports no subscriptions) or it cannot be sent.
    pub fn subscribe(
        &self,
        topic: impl Into<Topic>,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let mut subscriptions = self.subscribe_many([topic], options)?;
        // One topic in, one subscription out.
        Ok(subscriptions.remove(0))
    }

    /// Subscribes to several topics at once, in as few requests as the
    /// adapter allows (see `Session::subscribe_many`): one stream per topic,
    /// in the order given.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); on an error no topic is held.
    pub fn subscribe_many<T: Into<Topic>>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: SubscribeOptions,
    ) -> Result<Vec<Subscription>, SubscribeError> {
        let topics: Vec<Topic> = topics.into_iter().map(Into::into).collect();
        let mut inner = self.shared.lock();
        if inner.finished {
            return Err(SubscribeError::Closed);
        }
        let max = inner.client.settings().max_subscriptions;
        if inner.feeds.len() + topics.len() > max {
            return Err(SubscribeError::TooMany { max });
        }
        let ids = inner.client.subscribe_many(Instant::now(), topics, options)?;
        for id in &ids {
            inner.feeds.insert(*id);
        }
        drop(inner);
        self.shared.driver.notify();
        Ok(ids.into_iter().map(|id| Subscription::new(Arc::clone(&self.shared), id)).collect())
    }

    /// Whether the session is ready: connected, authenticated (if the
    /// adapter authenticates) and its subscriptions restored.
    pub fn is_ready(&self) -> bool {
        self.shared.lock().client.is_ready()
    }

    /// How far the session is on the current connection.
    pub fn readiness(&self) -> Readiness {
        self.shared.lock().client.readiness()
    }

    /// The behaviour layer's counters now (requests, subscriptions,
    /// authentication, heartbeats, malformed messages).
    pub fn session_stats(&self) -> SessionStats {
        *self.shared.lock().client.session_stats()
    }

    /// Subscription data discarded because its [`Subscription`] stream had
    /// been dropped (while its unsubscribe was under way).
    pub fn discarded_data(&self) -> u64 {
        self.shared.lock().feeds.discarded()
    }

    /// Replaces the configuration from the next connection attempt on (a new
    /// URL, a refreshed token in a header). The open connection is untouched.
    pub fn set_config(&self, config: impl Into<Arc<Config>>) {
        self.shared.lock().client.set_config(config);
    }

    /// The session's state now.
    pub fn state(&self) -> State {
        self.shared.lock().client.state()
    }

    /// The session's counters now.
    pub fn stats(&self) -> Stats {
        *self.shared.lock().client.stats()
    }

    /// Bytes of sent messages not yet written to the socket: payloads
    /// waiting in the session's queue, plus framed bytes waiting in the
    /// driver's write buffer.
    pub fn buffered_amount(&self) -> usize {
        self.shared.lock().buffered()
    }

    /// A [`Sink`](futures_sink::Sink) of messages over this session; it keeps
    /// the session alive like a handle does.
    pub fn sink(&self) -> MessageSink {
        MessageSink { handle: self.clone(), closing: false }
    }

    /// Waits until the session has opened a connection, or has ended. Returns
    /// whether it opened.
    pub(crate) async fn opened(&self) -> bool {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.opened {
                return Poll::Ready(true);
            }
            if inner.closed.is_some() || inner.finished {
                return Poll::Ready(false);
            }
            inner.wait_status(cx.waker());
            Poll::Pending
        })
        .await
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Hands `message` to the core; the caller wakes the driver if it was taken.
fn submit(inner: &mut Inner, message: Message, options: Option<SendOptions>) -> Result<(), SendError> {
    if inner.finished {
        return Err(SendError::Closed(message));
    }
    let now = Instant::now();
    match options {
        Some(options) => inner.client.send_with(now, message, options),
        None => inner.client.send(now, message),
    }
}

/// Messages and session events, in order; ends after [`Event::Closed`].
///
/// The queue behind it is bounded
/// ([`Connector::event_capacity`](crate::Connector::event_capacity)): while it
/// is full the driver stops reading the socket, so TCP slows the server down
/// instead of memory filling up (the default [`Overflow::Block`](crate::Overflow::Block);
/// the other [`Overflow`](crate::Overflow) policies drop messages instead,
/// and say so with [`Event::Overflow`]). Keepalive pongs queue behind unread
/// messages too, so an application that stops reading for longer than the
/// keepalive's interval plus timeout sees its connection declared dead.
///
/// Dropping it discards every later message and event; the session goes on
/// while a [`Handle`] exists.
pub struct Events {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    pub(crate) fn new(shared: Arc<Shared>) -> Events {
        Events { shared }
    }

    /// The next event; `None` once the session is over and every event was
    /// taken. The same as `StreamExt::next`, without the import.
    pub async fn recv(&mut self) -> Option<Event> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let bounds = self.shared.bounds;
        let mut inner = self.shared.lock();
        match inner.pop_event(&bounds) {
            Some((event, made_room)) => {
                drop(inner);
                if made_room {
                    self.shared.driver.notify();
                }
                Poll::Ready(Some(event))
            }
            None if inner.events_done() => Poll::Ready(None),
            None => {
                inner.set_events_waker(cx.waker());
                Poll::Pending
            }
        }
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.shared.lock().drop_events();
        // The driver may be waiting for room that will now never be made.
        self.shared.driver.notify();
    }
}

/// A [`Sink`](futures_sink::Sink) of messages, from [`Handle::sink`].
///
/// `poll_ready` waits for the send buffer to drain below its bound,
/// `start_send` sends (returning the core's typed error, with the message),
/// `poll_flush` waits until every sent message was written to the socket,
/// and `poll_close` closes the session with 1000 and waits for its end.
///
/// While the session is reconnecting, `start_send` fails with
/// [`SendError::NotOpen`] unless the configuration queues messages offline
/// ([`Outbound::offline`](nova_proto::Outbound::offline)): combinators such
/// as `forward` stop at the first error, so either configure the offline
/// queue or handle the error and retry after [`Event::Opened`].
#[derive(Debug, Clone)]
pub struct MessageSink {
    handle: Handle,
    /// `poll_close` already asked the session to close.
    closing: bool,
}

impl futures_sink::Sink<Message> for MessageSink {
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let shared = self.handle.shared();
        let mut inner = shared.lock();
        if inner.writable(&shared.bounds) {
            // A closed session is "ready": `start_send` gives the message
            // back with the reason.
            Poll::Ready(Ok(()))
        } else {
            inner.wait_writable(cx.waker());
            Poll::Pending
        }
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), SendError> {
        self.handle.try_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let shared = self.handle.shared();
        let mut inner = shared.lock();
        if inner.flushed() {
            Poll::Ready(Ok(()))
        } else {
            inner.wait_flushed(cx.waker());
            Poll::Pending
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let this = self.get_mut();
        let shared = Arc::clone(this.handle.shared());
        let mut inner = shared.lock();
        if inner.finished || inner.closed.is_some() {
            return Poll::Ready(Ok(()));
        }
        inner.wait_end(cx.waker());
        if !std::mem::replace(&mut this.closing, true) {
            let _ = inner.client.close(Instant::now(), CloseCode::NORMAL, "");
            drop(inner);
            shared.driver.notify();
        }
        Poll::Pending
    }
}
