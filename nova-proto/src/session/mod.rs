//! The behaviour layer: a [`Session`] is a [`Client`] plus a service's rules.
//!
//! A service's message formats and rules live in one [`Adapter`] type; every
//! method of the trait has a default, so an adapter overrides only what its
//! service needs. The session does the rest, still without IO, clocks or
//! threads:
//!
//! - **requests**: [`Session::request`] assigns an id, the adapter encodes;
//!   the answer (matched by [`Adapter::classify`]) or a timeout, a
//!   cancellation, a dropped connection or the end of the session completes
//!   it with exactly one [`Event::Response`]. Idempotent requests survive a
//!   drop and are re-sent once the session is ready again.
//! - **subscriptions**: [`Session::subscribe`] gives a stable
//!   [`SubscriptionId`]; confirmations are tracked, server-assigned ids are
//!   mapped back to it, and after every reconnect the set is restored in
//!   batches of [`Adapter::max_topics_per_request`].
//! - **authentication**: on every open the adapter's auth message goes first
//!   (or, for services that greet first, as soon as the greeting arrives:
//!   [`Adapter::auth_after_greeting`], [`Inbound::Greeting`]);
//!   subscriptions are restored only once it succeeds, and the session is
//!   ready ([`Event::Ready`]) only then. Expiring credentials are renewed on
//!   the same connection.
//! - **heartbeats**: the adapter's application heartbeat, with misses ending
//!   the connection as dead; server heartbeats answered at once, and so are
//!   messages the adapter acknowledges itself ([`Inbound::Reply`]), which are
//!   still delivered unless the adapter says not to.
//! - **errors**: service errors classified into a [`Strategy`]; malformed
//!   messages reported with the message ([`Event::Malformed`]), never dropped.
//! - **rate limits** ([`SessionConfig::rate_limits`], else [`Adapter::rate_limits`]; none by default):
//!   everything the session sends, and plain sends on an open connection,
//!   waits its turn in a bounded [`RateQueue`] charged
//!   [`Adapter::cost`]; the queue's deadline is part of
//!   [`poll_timeout`](Session::poll_timeout), and a service error's
//!   retry-after pauses it.
//!
//! On every open: `Opened` → (wait for the server's greeting, if the adapter
//! says so, bounded by [`SessionConfig::auth_timeout`]) → authenticate
//! (wait, bounded by [`SessionConfig::auth_timeout`]) → the adapter's
//! setup message ([`Adapter::setup_message`], not waited for) → restore
//! subscriptions (wait for every batch's answer, each bounded by the request
//! timeout) → `Ready` → queued requests go out and the heartbeat starts
//! (unless the greeting started it already). The driver-facing methods are
//! the [`Client`]'s, with the same contract; the session's own outputs are
//! [`Event`]s, so a driver handles one output type.
//!
//! # Example
//!
//! A tiny adapter (`"<id>:<body>"` requests, answers `"re:<id>:<body>"`)
//! driving a session against scripted server bytes.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nova_proto::session::{Adapter, Inbound, RequestId, RequestOptions, RequestPayload, Session, EncodeError};
//! use nova_proto::{accept_key, Config, Event, Input, Message, Output};
//!
//! struct Tiny;
//! impl Adapter for Tiny {
//!     fn encode_request(&mut self, id: RequestId, p: &RequestPayload) -> Result<Message, EncodeError> {
//!         let RequestPayload::Message(m) = p else { return Err(EncodeError::Unsupported("calls")) };
//!         Ok(Message::text(format!("{id}:{}", m.as_text().unwrap_or(""))))
//!     }
//!     fn classify(&mut self, m: &Message) -> Inbound {
//!         let id = m.as_text().and_then(|t| t.strip_prefix("re:")?.split(':').next()?.parse().ok());
//!         id.map_or(Inbound::Other, |id| Inbound::Response { id: RequestId(id), result: Ok(()) })
//!     }
//! }
//!
//! let t0 = Instant::now();
//! let mut s = Session::new(Config::new("ws://h/")?, [1; 32], t0, Tiny);
//! s.connect(t0);
//! assert!(matches!(s.poll_output(), Some(Output::Connect(_))));
//! s.handle_input(t0, Input::TransportUp);
//! let mut wire = Vec::new();
//! let _ = s.poll_transmit(&mut wire, usize::MAX);
//! let head = String::from_utf8(wire)?;
//! let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
//! let ok = format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
//!     accept_key(key.as_bytes()));
//! s.handle_input(t0, Input::Received(ok.as_bytes()));
//! assert!(matches!(s.poll_output().and_then(Output::into_event), Some(Event::Opened(_))));
//! assert!(matches!(s.poll_output().and_then(Output::into_event), Some(Event::Ready { restored: 0, failed: 0 })));
//!
//! let id = s.request(t0, "ping".into(), RequestOptions::default())?;
//! s.handle_input(t0, Input::Received(&[&[0x81, 9][..], format!("re:{id}:pong").as_bytes()].concat()));
//! let Some(Event::Response { id: got, result: Ok(m), .. }) = s.poll_output().and_then(Output::into_event) else { panic!() };
//! assert_eq!((got, m.as_text()), (id, Some("re:1:pong")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adapter;
mod auth;
mod heartbeat;
mod inbound;
#[cfg(feature = "json")]
pub mod json;
#[cfg(feature = "msgpack")]
pub mod msgpack;
mod requests;
mod settings;
mod stats;
mod subscriptions;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use adapter::{Adapter, ErrorPolicy, Raw, Strategy, SubscriptionRef};
pub use auth::{Secret, SecretError};
pub use heartbeat::HeartbeatSpec;
pub use inbound::{AuthDenied, AuthGranted, DecodeError, EncodeError, Inbound, Route, ServiceError};
pub use requests::{RequestError, RequestId, RequestOptions, RequestPayload};
pub use settings::SessionConfig;
pub use stats::SessionStats;
pub use subscriptions::{
    ServerSubId, SubState, SubscribeError, SubscribeOptions, Subscription, SubscriptionId, Subscriptions, Topic,
};

use crate::backoff::Decision;
use crate::client::Client;
use crate::config::Config;
use crate::error::{CloseError, Error, SendError, Timeout};
use crate::history::{History, Stats};
use crate::io::{Disconnect, Event, Input, Output, State, Termination, UnsentReason};
use crate::limits::{OpClass, RateLimiter, RateQueue};
use crate::message::{CloseCode, Message};
use crate::outbound::SendOptions;
use auth::AuthState;
use heartbeat::Heartbeat;
use requests::{Flight, Pending, Purpose, Table};
use subscriptions::Early;

/// Where the session is on the way to being usable, on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Readiness {
    /// No open connection.
    Offline,
    /// Open; the authentication waits for the server's greeting
    /// ([`Adapter::auth_after_greeting`]).
    AwaitingGreeting,
    /// Open; the authentication is out, its answer awaited.
    Authenticating,
    /// Authenticated (or no authentication); subscriptions being restored.
    Restoring,
    /// Ready: requests and subscriptions go out as they come.
    Ready,
}

/// An operation waiting in the rate queue: what to send, and what it is for.
#[derive(Debug)]
struct Op {
    tag: Tag,
    message: Message,
}

/// What a rate-queued operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// A pending entry of the table (request, subscribe, unsubscribe,
    /// authentication), in [`Flight::Limited`] until it goes.
    Entry(RequestId),
    /// A heartbeat that costs tokens: the session's own beat (counted as
    /// sent when it goes) or a reply to the server's.
    Heartbeat { beat: bool },
    /// A plain [`Session::send`], with its options.
    Raw(SendOptions),
}

/// The restore under way on the current connection.
#[derive(Debug, Clone, Copy, Default)]
struct Restore {
    batches: usize,
    restored: usize,
    failed: usize,
}

/// A [`Client`] with a service's behaviour: requests, subscriptions,
/// authentication, heartbeats (see the [module docs](self)).
///
/// Driven exactly like a [`Client`]: the same commands, inputs and pollers,
/// with the same contract. Its own timers are merged into
/// [`poll_timeout`](Self::poll_timeout). Within one call, the behaviour
/// layer's outputs come before the connection's; `Event::Closed` stays last.
pub struct Session {
    client: Client,
    adapter: Box<dyn Adapter + Send>,
    settings: SessionConfig,
    now: Instant,
    outputs: VecDeque<Output>,
    readiness: Readiness,
    /// Counts opened connections: in-flight entries carry the one they were sent on.
    generation: u64,
    next_id: u64,
    table: Table,
    subs: Subscriptions,
    auth: AuthState,
    heartbeat: Heartbeat,
    /// Whether the current connection's greeting came.
    greeted: bool,
    restore: Restore,
    stats: SessionStats,
    /// Data for a server id no subscription holds yet, while subscribes are
    /// in flight: some servers (go-ethereum among them) send a new
    /// subscription's first notifications before its confirmation. Handed
    /// to the subscription once the confirmation names the id; bounded,
    /// and dropped (as unrouted) with the connection.
    early: Early,
    /// The rate queue, only when limits are configured: without limits the
    /// session sends exactly as it did before there was a limiter, with no
    /// cost asked and nothing queued. Boxed: it is the rare case.
    rate: Option<Box<RateQueue<Op>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The adapter is not shown: it may hold credentials.
        f.debug_struct("Session")
            .field("client", &self.client)
            .field("readiness", &self.readiness)
            .field("pending", &self.table.len())
            .field("subscriptions", &self.subs.len())
            .field("rate_queued", &self.rate_queued())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session in [`State::Idle`] with `adapter` and the settings of the
    /// configuration's profile ([`SessionConfig::for_profile`]).
    pub fn new(
        config: impl Into<Arc<Config>>,
        seed: [u8; 32],
        now: Instant,
        adapter: impl Adapter + Send + 'static,
    ) -> Session {
        let config = config.into();
        let settings = SessionConfig::for_profile(config.profile());
        Session::with_settings(config, seed, now, Box::new(adapter), settings)
    }

    /// A session that behaves exactly like a bare [`Client`] (the [`Raw`] adapter).
    pub fn raw(config: impl Into<Arc<Config>>, seed: [u8; 32], now: Instant) -> Session {
        Session::new(config, seed, now, Raw)
    }

    /// A session with explicit settings and a boxed adapter.
    pub fn with_settings(
        config: impl Into<Arc<Config>>,
        seed: [u8; 32],
        now: Instant,
        adapter: Box<dyn Adapter + Send>,
        settings: SessionConfig,
    ) -> Session {
        let limits = settings.rate_limits.clone().unwrap_or_else(|| adapter.rate_limits());
        let rate = limits.is_limited().then(|| Box::new(RateQueue::new(limits)));
        Session {
            rate,
            client: Client::new(config, seed, now),
            adapter,
            settings,
            now,
            outputs: VecDeque::new(),
            readiness: Readiness::Offline,
            generation: 0,
            next_id: 0,
            table: Table::default(),
            subs: Subscriptions::default(),
            auth: AuthState::None,
            heartbeat: Heartbeat::default(),
            greeted: false,
            restore: Restore::default(),
            stats: SessionStats::default(),
            early: Early::default(),
        }
    }

    // ---- getters ----

    /// The connection's state.
    pub fn state(&self) -> State {
        self.client.state()
    }

    /// How far the session is on the current connection.
    pub fn readiness(&self) -> Readiness {
        self.readiness
    }

    /// Whether the session is ready: authenticated and subscriptions restored.
    pub fn is_ready(&self) -> bool {
        self.readiness == Readiness::Ready
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        self.client.config()
    }

    /// The behaviour layer's settings.
    pub fn settings(&self) -> &SessionConfig {
        &self.settings
    }

    /// The connection's counters.
    pub fn stats(&self) -> &Stats {
        self.client.stats()
    }

    /// The behaviour layer's counters.
    pub fn session_stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The last state transitions of the connection.
    pub fn history(&self) -> &History {
        self.client.history()
    }

    /// The subscriptions held.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subs
    }

    /// Application requests held (waiting or in flight).
    pub fn pending_requests(&self) -> usize {
        self.table.users()
    }

    /// Every pending entry (requests, authentication, subscribe and
    /// unsubscribe requests) with its deadline, in id order.
    pub fn deadlines(&self) -> impl Iterator<Item = (RequestId, Instant)> + '_ {
        self.table.iter().map(|(id, p)| (*id, p.deadline))
    }

    /// Operations waiting for the rate limits (0 without limits).
    pub fn rate_queued(&self) -> usize {
        self.rate.as_ref().map_or(0, |q| q.len())
    }

    /// The rate limiter, when limits apply (the settings' or the
    /// adapter's): its settings and the end of a server-ordered pause.
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.rate.as_ref().map(|q| q.limiter())
    }

    /// See [`Client::queued_messages`].
    pub fn queued_messages(&self) -> usize {
        self.client.queued_messages()
    }

    /// See [`Client::buffered_amount`].
    pub fn buffered_amount(&self) -> usize {
        self.client.buffered_amount()
    }

    /// See [`Client::read_hint`].
    pub fn read_hint(&self) -> usize {
        self.client.read_hint()
    }

    /// See [`Client::read_in_place`].
    pub fn read_in_place(&mut self, max: usize) -> Option<&mut [u8]> {
        self.client.read_in_place(max)
    }

    /// See [`Client::holds_untaken_frames`].
    pub fn holds_untaken_frames(&self) -> bool {
        self.client.holds_untaken_frames()
    }

    /// See [`Client::buffered_input`].
    pub fn buffered_input(&self) -> usize {
        self.client.buffered_input()
    }

    /// See [`Client::attempt`].
    pub fn attempt(&self) -> u32 {
        self.client.attempt()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    // ---- connection commands (the client's, unchanged) ----

    /// See [`Client::connect`].
    pub fn connect(&mut self, now: Instant) {
        self.advance(now);
        self.client.connect(now);
    }

    /// Sends a message as it is, outside the behaviour layer (no id, no
    /// queueing for readiness): see [`Client::send`].
    ///
    /// With [rate limits](SessionConfig::rate_limits), a message sent while
    /// the connection is open is an [`OpClass::Message`] operation: it waits
    /// its turn in the rate queue, in order with the session's own
    /// operations, and reaches the outbound queue when it goes (a failure
    /// then, such as a full outbound queue, hands it back as
    /// [`Event::Unsent`]). If the connection drops while it waits, it
    /// follows the outbound queue's rules: kept for the next connection if
    /// it may be queued offline, otherwise handed back as `Unsent`. While
    /// the connection is not open, messages go to the outbound queue as
    /// without limits (its offline replay at the next open is not rate
    /// limited).
    ///
    /// # Errors
    ///
    /// As [`Client::send`], and [`SendError::RateLimited`] when the rate
    /// queue is full.
    pub fn send(&mut self, now: Instant, message: impl Into<Message>) -> Result<(), SendError> {
        if self.rate.is_none() {
            self.advance(now);
            return self.client.send(now, message);
        }
        let options = SendOptions::from_config(self.client.config().outbound());
        self.send_with(now, message, options)
    }

    /// See [`Client::send_with`]; rate limited as [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with(
        &mut self,
        now: Instant,
        message: impl Into<Message>,
        options: SendOptions,
    ) -> Result<(), SendError> {
        self.advance(now);
        if self.rate.is_none() || self.client.state() != State::Open {
            return self.client.send_with(now, message, options);
        }
        let message = message.into();
        // Checked now, so a message that could never go is refused at once
        // rather than handed back later.
        let max = self.client.config().limits().max_message_size;
        if message.len() > max {
            let len = message.len();
            return Err(SendError::TooLarge { message, len, max });
        }
        self.enqueue(OpClass::Message, Op { tag: Tag::Raw(options), message })
            .map_err(|(op, until)| SendError::RateLimited { message: op.message, until })?;
        self.pump();
        Ok(())
    }

    /// See [`Client::ping`].
    ///
    /// # Errors
    ///
    /// As [`Client::ping`].
    pub fn ping(&mut self, now: Instant, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.advance(now);
        self.client.ping(now, payload)
    }

    /// See [`Client::close`]. Requests still pending when the session ends
    /// complete with [`RequestError::Closed`].
    ///
    /// # Errors
    ///
    /// As [`Client::close`].
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.advance(now);
        self.client.close(now, code, reason)
    }

    /// See [`Client::set_config`].
    pub fn set_config(&mut self, config: impl Into<Arc<Config>>) {
        self.client.set_config(config);
    }

    // ---- application commands ----

    /// Sends a request; its answer comes as [`Event::Response`] with the
    /// returned id. Before the session is ready it waits (bounded by
    /// [`SessionConfig::max_queued_requests`]) unless `options` let it go
    /// before. Its deadline (`options.timeout`, else the session's request
    /// timeout) runs from now, whatever happens to the connection.
    ///
    /// # Errors
    ///
    /// [`RequestError::Closed`], [`RequestError::TooManyPending`],
    /// [`RequestError::QueueFull`], [`RequestError::Encode`] (from the
    /// adapter), [`RequestError::Send`] or [`RequestError::RateLimited`]
    /// (the [rate queue](SessionConfig::rate_limits) is full; a request over
    /// the limit otherwise waits in it and goes out in its turn). No
    /// [`Event::Response`] follows an error returned here.
    pub fn request(
        &mut self,
        now: Instant,
        payload: RequestPayload,
        options: RequestOptions,
    ) -> Result<RequestId, RequestError> {
        self.advance(now);
        if self.client.is_closed() {
            return Err(RequestError::Closed);
        }
        let max = self.settings.max_pending_requests;
        if self.table.users() >= max {
            return Err(RequestError::TooManyPending { max });
        }
        let sendable = match self.readiness {
            Readiness::Ready => true,
            Readiness::Authenticating | Readiness::Restoring => options.before_ready,
            // Nothing may precede the authentication held for the greeting.
            Readiness::Offline | Readiness::AwaitingGreeting => false,
        };
        let max = self.settings.max_queued_requests;
        if !sendable && self.table.queued_users() >= max {
            return Err(RequestError::QueueFull { max });
        }
        let id = self.next_request_id();
        let message = self.adapter.encode_request(id, &payload).map_err(RequestError::Encode)?;
        let flight = if sendable {
            let flight = self.transmit(OpClass::Request, message.clone(), id)?;
            if let Flight::Sent { .. } = flight {
                self.stats.requests_sent += 1;
            }
            flight
        } else {
            Flight::Queued
        };
        let timeout = options.timeout.unwrap_or(self.settings.request_timeout);
        let purpose = Purpose::User { message, idempotent: options.idempotent, before_ready: options.before_ready };
        self.table.insert(id, Pending { purpose, issued: self.now, deadline: self.deadline(timeout), flight });
        self.stats.requests += 1;
        self.pump();
        Ok(id)
    }

    /// Cancels a pending request: it completes at once with
    /// [`RequestError::Cancelled`], and an answer that comes later is dropped
    /// (counted in [`SessionStats::late_responses`]). Returns whether it was pending.
    pub fn cancel(&mut self, now: Instant, id: RequestId) -> bool {
        self.advance(now);
        if !matches!(self.table.get(id), Some(Pending { purpose: Purpose::User { .. }, .. })) {
            return false;
        }
        if let Some(p) = self.table.remove(id) {
            self.unqueue(id, p.flight);
            self.stats.requests_cancelled += 1;
            self.respond(id, p.issued, Err(RequestError::Cancelled));
        }
        true
    }

    /// Subscribes to `topic`. The handle stays valid across reconnects; the
    /// confirmation comes as [`Event::Subscribed`] (or
    /// [`Event::SubscriptionFailed`]). Before the session is ready the
    /// subscription waits and goes out with the restore.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Duplicate`], [`SubscribeError::TooMany`],
    /// [`SubscribeError::Closed`], or [`SubscribeError::Failed`] when the
    /// request could not be encoded or sent (the session does not hold it then).
    pub fn subscribe(
        &mut self,
        now: Instant,
        topic: impl Into<Topic>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, SubscribeError> {
        let ids = self.subscribe_many(now, [topic], options)?;
        Ok(ids[0])
    }

    /// Subscribes to several topics at once: on a ready session they go in
    /// as few requests as the adapter allows
    /// ([`max_topics_per_request`](Adapter::max_topics_per_request)), where
    /// one [`subscribe`](Self::subscribe) per topic would send one request
    /// each. Before the session is ready they wait and go with the restore,
    /// as single subscriptions do. An error leaves none of the topics
    /// held; a batch after the first that cannot be sent (a full queue,
    /// say) fails its own subscriptions with [`Event::SubscriptionFailed`].
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe) (a topic twice in `topics` is
    /// [`SubscribeError::Duplicate`]).
    pub fn subscribe_many<T: Into<Topic>>(
        &mut self,
        now: Instant,
        topics: impl IntoIterator<Item = T>,
        options: SubscribeOptions,
    ) -> Result<Vec<SubscriptionId>, SubscribeError> {
        let _ = options;
        self.advance(now);
        if self.client.is_closed() {
            return Err(SubscribeError::Closed);
        }
        let mut ids = Vec::new();
        for topic in topics {
            match self.subs.add(topic.into(), self.settings.max_subscriptions) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    ids.into_iter().for_each(|id| drop(self.subs.remove(id)));
                    return Err(e);
                }
            }
        }
        if self.readiness == Readiness::Ready {
            let per = self.adapter.max_topics_per_request().max(1);
            for (n, batch) in ids.chunks(per).enumerate() {
                if let Err(e) = self.send_subscribe(batch.to_vec(), false) {
                    if n == 0 {
                        // Nothing went: nothing is held.
                        ids.into_iter().for_each(|id| drop(self.subs.remove(id)));
                        return Err(SubscribeError::Failed(e));
                    }
                    // Earlier batches are on their way; these are reported failed.
                    self.fail_subscriptions(batch, false, &e);
                }
            }
        }
        self.pump();
        Ok(ids)
    }

    /// Unsubscribes. [`Event::Unsubscribed`] follows once the server confirms
    /// (at once when the subscription was never on the server); data for it
    /// is delivered until then.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Unknown`] for a handle the session does not hold;
    /// [`SubscribeError::Closed`] once the session is over (nothing follows
    /// [`Event::Closed`]).
    pub fn unsubscribe(&mut self, now: Instant, id: SubscriptionId) -> Result<(), SubscribeError> {
        self.advance(now);
        if self.client.is_closed() {
            return Err(SubscribeError::Closed);
        }
        let Some(sub) = self.subs.get_mut(id) else {
            return Err(SubscribeError::Unknown(id));
        };
        match sub.state {
            SubState::Pending | SubState::Restoring => self.forget(id),
            SubState::Subscribing => sub.drop_when_confirmed = true,
            SubState::Active => self.send_unsubscribe(id),
            SubState::Unsubscribing => {}
        }
        self.pump();
        Ok(())
    }

    // ---- inputs ----

    /// See [`Client::handle_input`].
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.advance(now);
        self.client.handle_input(now, input);
    }

    /// Fires every timer due at `now`, the connection's and the session's.
    /// Calling it early, or twice, does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.client.handle_timeout(now);
        if self.client.is_closed() {
            // Everything pending completes when `Closed` is handed out.
            return;
        }
        while let Some((id, pending)) = self.table.pop_due(self.now) {
            self.unqueue(id, pending.flight);
            self.expired(id, pending);
        }
        if let AuthState::Granted { renew_at: Some(at) } = self.auth {
            if at <= self.now && self.readiness == Readiness::Ready {
                self.authenticate(true);
            }
        }
        if let AuthState::Greeting { until } = self.auth {
            if until <= self.now {
                self.greeting_missed();
            }
        }
        // The heartbeat runs from readiness, or from the greeting when it
        // said so; it is reset whenever the connection drops.
        if self.heartbeat.next.is_some_and(|at| at <= self.now) && self.readiness != Readiness::Offline {
            self.beat();
        }
        self.pump();
    }

    // ---- pollers ----

    /// See [`Client::poll_transmit`].
    #[must_use = "the bytes must be written to the transport"]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        self.client.poll_transmit(out, max)
    }

    /// The next output (see [`Client::poll_output`]): the connection's, and
    /// the behaviour layer's [`Event`]s. Inbound messages are classified here,
    /// one at a time, as they are decoded.
    #[must_use = "every output asks the driver to act"]
    #[inline]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.next_output(true)
    }

    /// See [`Client::poll_queued_output`].
    #[must_use = "every output asks the driver to act"]
    pub fn poll_queued_output(&mut self) -> Option<Output> {
        self.next_output(false)
    }

    /// The next deadline, the connection's or the session's.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Renewals wait for readiness: one that fell due during the restore
        // is due now, not at a time already past.
        let renew = match self.auth {
            AuthState::Granted { renew_at } if self.readiness == Readiness::Ready => {
                renew_at.map(|at| at.max(self.now))
            }
            _ => None,
        };
        let heartbeat = self.heartbeat.next.filter(|_| self.readiness != Readiness::Offline);
        let own = if self.client.is_closed() { None } else { self.table.next_deadline() };
        let greeting = match self.auth {
            AuthState::Greeting { until } if !self.client.is_closed() => Some(until),
            _ => None,
        };
        // The rate queue gives out only on an open connection.
        let rate = self.rate.as_ref().filter(|_| self.client.state() == State::Open).and_then(|q| q.poll_timeout());
        [self.client.poll_timeout(), own, renew, heartbeat, greeting, rate].into_iter().flatten().min()
    }

    // ---- the connection's outputs ----

    #[inline]
    fn next_output(&mut self, decode: bool) -> Option<Output> {
        loop {
            // What the last output's handling queued (an authentication, a
            // restore) goes as soon as the limits allow.
            self.pump();
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            let output = if decode { self.client.poll_output() } else { self.client.poll_queued_output() };
            let Some(output) = output else {
                // Drained. What goes through this queue is occasional (events,
                // answers): an idle session keeps no buffer for it.
                if self.outputs.capacity() != 0 {
                    self.outputs = VecDeque::new();
                }
                return None;
            };
            match output {
                Output::Message(message) => {
                    if let Some(output) = self.on_message(message) {
                        return Some(output);
                    }
                }
                Output::Event(event) => match &*event {
                    Event::Opened(_) => {
                        self.on_opened();
                        return Some(Output::Event(event));
                    }
                    Event::Disconnected { cause, .. } => {
                        self.on_connection_lost(cause);
                        return Some(Output::Event(event));
                    }
                    Event::Closed(_) => {
                        // Every request completes before the last output.
                        self.on_closed();
                        self.outputs.push_back(Output::Event(event));
                    }
                    _ => return Some(Output::Event(event)),
                },
                other => return Some(other),
            }
        }
    }

    #[inline]
    fn on_message(&mut self, message: Message) -> Option<Output> {
        let inbound = self.adapter.classify(&message);
        if self.heartbeat.outstanding.is_some() && self.adapter.heartbeat().is_some_and(|h| h.any_traffic) {
            self.heartbeat.answered();
        }
        match inbound {
            // The hot path of a raw session: the message goes straight out.
            Inbound::Other => return Some(Output::Message(message)),
            Inbound::Data { route, seq } => return self.on_data(route, seq, message),
            Inbound::Response { id, result } => self.on_response(id, result, &message),
            Inbound::Auth(result) => match self.auth {
                AuthState::Waiting { id, .. } => {
                    self.table.remove(id);
                    self.auth_outcome(result);
                }
                _ => self.stats.ignored += 1,
            },
            Inbound::Heartbeat { reply } => {
                self.stats.server_heartbeats += 1;
                if let Some(reply) = reply {
                    // A refused reply (connection closing) changes nothing: the
                    // server's own liveness rules apply.
                    let _ = self.send_heartbeat(reply, false);
                }
            }
            Inbound::Reply { reply, deliver } => {
                // Answered before the message is handed out; a refused reply
                // (connection closing) leaves the service to redeliver.
                if self.send_heartbeat(reply, false).is_ok() {
                    self.stats.replies_sent += 1;
                }
                if deliver {
                    return Some(Output::Message(message));
                }
                self.stats.ignored += 1;
            }
            Inbound::HeartbeatReply => self.heartbeat.answered(),
            Inbound::Greeting { first_beat } => self.on_greeting(first_beat),
            Inbound::Error(error) => self.on_service_error(error),
            Inbound::Malformed(error) => {
                self.stats.malformed += 1;
                return Some(Event::Malformed { error, message }.into());
            }
            Inbound::Ignore => self.stats.ignored += 1,
        }
        None
    }

    fn on_data(&mut self, route: Route, seq: Option<u64>, message: Message) -> Option<Output> {
        let Some(id) = self.subs.route(&route) else {
            if let Route::Server(server) = route {
                if self.subs.iter().any(|(_, s)| s.state == SubState::Subscribing) {
                    // Perhaps the subscription being confirmed: kept until its answer.
                    let dropped = self.early.push(server, seq, message);
                    self.stats.data_unrouted += dropped;
                    return None;
                }
            }
            // Not a subscription held (unsubscribed, or a server id from an
            // earlier connection): never routed to a wrong handle.
            self.stats.data_unrouted += 1;
            return None;
        };
        self.deliver(id, seq, message)
    }

    /// Data for subscription `id`, unless its sequence number shows a duplicate.
    fn deliver(&mut self, id: SubscriptionId, seq: Option<u64>, message: Message) -> Option<Output> {
        if let (Some(seq), Some(sub)) = (seq, self.subs.get_mut(id)) {
            if sub.last_seq.is_some_and(|last| seq <= last) {
                self.stats.data_duplicates += 1;
                return None;
            }
            sub.last_seq = Some(seq);
        }
        self.stats.data_delivered += 1;
        Some(Event::Data { subscription: id, message }.into())
    }

    fn on_response(&mut self, id: RequestId, result: Result<(), ServiceError>, message: &Message) {
        if self.heartbeat.outstanding == Some(id) {
            self.heartbeat.answered();
            return;
        }
        let Some(pending) = self.table.remove(id) else {
            self.stats.late_responses += 1;
            return;
        };
        // An answer to an entry still waiting for the limits (a confused
        // server): it no longer goes out.
        self.unqueue(id, pending.flight);
        let latency = self.now.saturating_duration_since(pending.issued);
        if let Err(ServiceError { retry_after: Some(wait), .. }) = &result {
            self.pause_for(*wait);
        }
        match pending.purpose {
            Purpose::User { .. } => {
                let result = match result {
                    Ok(()) => {
                        self.stats.requests_completed += 1;
                        Ok(message.clone())
                    }
                    Err(e) => {
                        self.stats.requests_failed += 1;
                        Err(RequestError::Service(e))
                    }
                };
                self.outputs.push_back(Event::Response { id, result, latency }.into());
            }
            Purpose::Auth => {
                if matches!(self.auth, AuthState::Waiting { id: waiting, .. } if waiting == id) {
                    let outcome = self.adapter.auth_result(message, result);
                    self.auth_outcome(outcome);
                }
            }
            Purpose::Subscribe { subs, restore } => {
                let result = result.map(|()| message).map_err(RequestError::Service);
                self.subscribe_outcome(&subs, restore, result, latency);
            }
            Purpose::Unsubscribe { subs } => subs.into_iter().for_each(|s| self.forget(s)),
            Purpose::Setup => {
                if let Err(error) = result {
                    self.on_service_error(error);
                }
            }
        }
    }

    fn on_opened(&mut self) {
        self.generation += 1;
        if let Some(queue) = &mut self.rate {
            // Servers count per connection; a pause the server ordered stays.
            queue.limiter_mut().refill_all();
        }
        self.heartbeat = Heartbeat::default();
        self.greeted = false;
        self.restore = Restore::default();
        if self.adapter.auth_after_greeting() {
            self.readiness = Readiness::AwaitingGreeting;
            self.auth = AuthState::Greeting { until: self.deadline(self.settings.auth_timeout) };
            return;
        }
        self.readiness = Readiness::Authenticating;
        if !self.authenticate(false) {
            self.authenticated();
        }
    }

    /// The server's greeting: the heartbeat starts if it says so, and the
    /// authentication held for it goes.
    fn on_greeting(&mut self, first_beat: Option<Duration>) {
        if self.greeted || self.readiness == Readiness::Offline {
            self.stats.ignored += 1;
            return;
        }
        self.greeted = true;
        if let Some(delay) = first_beat.filter(|_| self.adapter.heartbeat().is_some()) {
            self.heartbeat.next = Some(self.deadline(delay));
        }
        if let AuthState::Greeting { .. } = self.auth {
            self.auth = AuthState::None;
            self.readiness = Readiness::Authenticating;
            if !self.authenticate(false) {
                self.authenticated();
            }
        }
    }

    /// No greeting came in time: a retryable authentication failure.
    fn greeting_missed(&mut self) {
        self.stats.auth_failures += 1;
        self.auth = AuthState::None;
        let reason = "no greeting from the server in time".to_owned();
        self.outputs.push_back(Event::AuthFailed { reason, retry: true }.into());
        self.abort(Error::Timeout(Timeout::Auth), None);
    }

    /// Sends the adapter's auth message; whether there was one.
    fn authenticate(&mut self, renewal: bool) -> bool {
        // The id is taken only when used: a session without authentication
        // numbers its first request 1.
        let id = RequestId(self.next_id + 1);
        let Some(message) = self.adapter.auth_message(id) else {
            self.auth = AuthState::None;
            return false;
        };
        self.next_id = id.0;
        self.stats.auth_attempts += 1;
        let flight = match self.transmit(OpClass::Auth, message, id) {
            Ok(flight) => flight,
            Err(e) => {
                // It would fail the same way on every connection, unless it
                // is only the rate queue that is full (a renewal behind a
                // backlog): then a new connection starts with an empty queue.
                let retry = matches!(e, RequestError::RateLimited { .. });
                self.auth_outcome(Err(AuthDenied { retry, reason: e.to_string() }));
                return true;
            }
        };
        let pending = Pending {
            purpose: Purpose::Auth,
            issued: self.now,
            deadline: self.deadline(self.settings.auth_timeout),
            flight,
        };
        self.table.insert(id, pending);
        self.auth = AuthState::Waiting { id, renewal };
        if !renewal {
            // Requests allowed before readiness follow the authentication.
            self.send_queued(true);
        }
        true
    }

    fn auth_outcome(&mut self, outcome: Result<AuthGranted, AuthDenied>) {
        let renewal = matches!(self.auth, AuthState::Waiting { renewal: true, .. });
        match outcome {
            Ok(granted) => {
                let renew_at = granted.expires_in.map(|life| {
                    let before = self.adapter.reauth_before_expiry();
                    let lead = if life > before { life - before } else { life / 2 };
                    self.deadline(lead)
                });
                self.auth = AuthState::Granted { renew_at };
                if renewal {
                    self.stats.reauths += 1;
                } else {
                    self.authenticated();
                }
            }
            Err(denied) => {
                self.stats.auth_failures += 1;
                self.auth = AuthState::None;
                let reason = denied.reason;
                self.outputs.push_back(Event::AuthFailed { reason: reason.clone(), retry: denied.retry }.into());
                if denied.retry {
                    self.abort(Error::Aborted(format!("authentication refused: {reason}")), None);
                } else {
                    self.client.stop(
                        self.now,
                        CloseCode::POLICY_VIOLATION,
                        "authentication failed",
                        Termination::AuthFailed,
                    );
                }
            }
        }
    }

    /// Authentication is done (or not needed): set up, restore, then ready.
    fn authenticated(&mut self) {
        self.readiness = Readiness::Restoring;
        self.send_setup();
        self.send_queued(true);
        let ids = self.subs.to_restore();
        let per = self.adapter.max_topics_per_request().max(1);
        for batch in ids.chunks(per) {
            match self.send_subscribe(batch.to_vec(), true) {
                Ok(()) => self.restore.batches += 1,
                Err(e) => self.fail_subscriptions(batch, true, &e),
            }
        }
        if self.restore.batches == 0 {
            self.become_ready();
        }
    }

    fn become_ready(&mut self) {
        self.readiness = Readiness::Ready;
        self.stats.readies += 1;
        if self.adapter.reports_ready() {
            let Restore { restored, failed, .. } = self.restore;
            self.outputs.push_back(Event::Ready { restored, failed }.into());
        }
        // Subscriptions asked for while authenticating or restoring go now.
        let per = self.adapter.max_topics_per_request().max(1);
        for batch in self.subs.to_restore().chunks(per) {
            if let Err(e) = self.send_subscribe(batch.to_vec(), false) {
                self.fail_subscriptions(batch, false, &e);
            }
        }
        self.send_queued(false);
        // Unless the greeting started it already.
        if self.heartbeat.next.is_none() {
            if let Some(spec) = self.adapter.heartbeat() {
                self.heartbeat.next = Some(self.deadline(spec.interval));
            }
        }
    }

    /// Sends the adapter's per-connection setup message, if it has one. A
    /// message that cannot go is dropped: it is per connection, and the
    /// session does not wait for it.
    fn send_setup(&mut self) {
        let id = RequestId(self.next_id + 1);
        let Some(message) = self.adapter.setup_message(id) else { return };
        self.next_id = id.0;
        let Ok(flight) = self.transmit(OpClass::Request, message, id) else { return };
        let deadline = self.deadline(self.settings.request_timeout);
        self.table.insert(id, Pending { purpose: Purpose::Setup, issued: self.now, deadline, flight });
    }

    /// Sends the waiting application requests, in id order (only those
    /// allowed before readiness when `before_ready_only`).
    fn send_queued(&mut self, before_ready_only: bool) {
        let ids: Vec<RequestId> = self
            .table
            .iter()
            .filter(|(_, p)| p.flight == Flight::Queued)
            .filter(
                |(_, p)| matches!(p.purpose, Purpose::User { before_ready, .. } if before_ready || !before_ready_only),
            )
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(Pending { purpose: Purpose::User { message, .. }, .. }) = self.table.get(id) else { continue };
            match self.transmit(OpClass::Request, message.clone(), id) {
                Ok(flight) => {
                    if let Flight::Sent { .. } = flight {
                        self.stats.requests_sent += 1;
                    }
                    self.table.set_flight(id, flight);
                }
                Err(e) => {
                    if let Some(p) = self.table.remove(id) {
                        self.respond(id, p.issued, Err(e));
                    }
                }
            }
        }
    }

    fn send_subscribe(&mut self, subs: Vec<SubscriptionId>, restore: bool) -> Result<(), RequestError> {
        let topics: Vec<Topic> = subs.iter().filter_map(|s| self.subs.get(*s).map(|s| s.topic.clone())).collect();
        let id = self.next_request_id();
        let message = self.adapter.encode_subscribe(id, &topics).map_err(RequestError::Encode)?;
        let flight = self.transmit(OpClass::Subscribe, message, id)?;
        if let Flight::Sent { .. } = flight {
            self.stats.subscribe_requests += 1;
        }
        for s in &subs {
            if let Some(sub) = self.subs.get_mut(*s) {
                sub.state = SubState::Subscribing;
            }
        }
        let pending = Pending {
            purpose: Purpose::Subscribe { subs, restore },
            issued: self.now,
            deadline: self.deadline(self.settings.request_timeout),
            flight,
        };
        self.table.insert(id, pending);
        Ok(())
    }

    fn subscribe_outcome(
        &mut self,
        subs: &[SubscriptionId],
        restore: bool,
        result: Result<&Message, RequestError>,
        latency: Duration,
    ) {
        match result {
            Ok(response) => {
                let topics: Vec<Topic> =
                    subs.iter().filter_map(|s| self.subs.get(*s).map(|s| s.topic.clone())).collect();
                for (topic, server) in self.adapter.server_ids(&topics, response) {
                    if let Some(id) = self.subs.find(&topic) {
                        self.subs.set_server_id(id, server);
                    }
                }
                for (topic, error) in self.adapter.refused_topics(&topics, response) {
                    let refused = self.subs.find(&topic).filter(|id| subs.contains(id));
                    if let Some(id) =
                        refused.filter(|id| self.subs.get(*id).is_some_and(|s| s.state == SubState::Subscribing))
                    {
                        self.fail_subscriptions(&[id], restore, &RequestError::Service(error));
                    }
                }
                for &id in subs {
                    let Some(sub) = self.subs.get_mut(id) else { continue };
                    if sub.state != SubState::Subscribing {
                        continue;
                    }
                    sub.state = SubState::Active;
                    let drop = sub.drop_when_confirmed;
                    let again = std::mem::replace(&mut sub.confirmed_before, true);
                    self.stats.subscriptions_confirmed += 1;
                    if restore {
                        self.restore.restored += 1;
                        if again {
                            self.stats.subscriptions_restored += 1;
                        }
                    }
                    self.outputs.push_back(Event::Subscribed { id, latency }.into());
                    if drop {
                        self.send_unsubscribe(id);
                    }
                }
            }
            Err(error) => self.fail_subscriptions(subs, restore, &error),
        }
        self.release_early();
        if restore {
            self.restore.batches = self.restore.batches.saturating_sub(1);
            if self.restore.batches == 0 && self.readiness == Readiness::Restoring {
                self.become_ready();
            }
        }
    }

    /// Hands data that came before its subscription's confirmation to the
    /// subscriptions confirmed since, in arrival order (after their
    /// `Subscribed`); keeps what a subscribe still in flight may claim, and
    /// drops the rest as unrouted.
    fn release_early(&mut self) {
        if self.early.is_empty() {
            return;
        }
        let in_flight = self.subs.iter().any(|(_, s)| s.state == SubState::Subscribing);
        for (server, seq, message) in self.early.take() {
            let route = Route::Server(server);
            match self.subs.route(&route) {
                Some(id) => {
                    if let Some(output) = self.deliver(id, seq, message) {
                        self.outputs.push_back(output);
                    }
                }
                None if in_flight => {
                    let Route::Server(server) = route else { continue };
                    self.stats.data_unrouted += self.early.push(server, seq, message);
                }
                None => self.stats.data_unrouted += 1,
            }
        }
    }

    fn fail_subscriptions(&mut self, subs: &[SubscriptionId], restore: bool, error: &RequestError) {
        for &id in subs {
            if self.subs.remove(id).is_none() {
                continue;
            }
            self.stats.subscriptions_failed += 1;
            if restore {
                self.restore.failed += 1;
            }
            self.outputs.push_back(Event::SubscriptionFailed { id, error: error.clone() }.into());
        }
    }

    fn send_unsubscribe(&mut self, id: SubscriptionId) {
        let Some(sub) = self.subs.get(id) else { return };
        let target = SubscriptionRef { topic: sub.topic.clone(), server_id: sub.server_id.clone() };
        let request = self.next_request_id();
        let flight = match self.adapter.encode_unsubscribe(request, std::slice::from_ref(&target)) {
            Ok(message) => self.transmit(OpClass::Subscribe, message, request).ok(),
            Err(_) => None,
        };
        let Some(flight) = flight else {
            // The user no longer wants it: forget it here; data the server
            // still sends for it is dropped as unrouted.
            self.forget(id);
            return;
        };
        if let Some(sub) = self.subs.get_mut(id) {
            sub.state = SubState::Unsubscribing;
        }
        let pending = Pending {
            purpose: Purpose::Unsubscribe { subs: vec![id] },
            issued: self.now,
            deadline: self.deadline(self.settings.request_timeout),
            flight,
        };
        self.table.insert(request, pending);
    }

    /// Drops a subscription and says so.
    fn forget(&mut self, id: SubscriptionId) {
        if self.subs.remove(id).is_some() {
            self.outputs.push_back(Event::Unsubscribed { id }.into());
        }
    }

    fn on_service_error(&mut self, error: ServiceError) {
        self.stats.service_errors += 1;
        let strategy = self.adapter.classify_error(&error);
        let reason = error.to_string();
        // The server's retry-after holds the rate queue whatever the
        // strategy, unless the session stops; `RetryAfter` names its own wait.
        match strategy {
            Strategy::RetryAfter(wait) => self.pause_for(wait),
            Strategy::Stop => {}
            _ => {
                if let Some(wait) = error.retry_after {
                    self.pause_for(wait);
                }
            }
        }
        self.outputs.push_back(Event::ServiceError { error, strategy }.into());
        match strategy {
            Strategy::Continue => {}
            Strategy::Reconnect => self.abort(Error::Aborted(reason), None),
            Strategy::RetryAfter(wait) => {
                self.abort(Error::Aborted(reason), Some(Decision::ReconnectAfter(wait)));
            }
            Strategy::Stop => self.client.stop(self.now, CloseCode::NORMAL, "service error", Termination::Stopped),
        }
    }

    /// The connection dropped: requests in flight fail (or wait to be re-sent
    /// when idempotent), subscriptions wait to be restored.
    fn on_connection_lost(&mut self, cause: &Disconnect) {
        self.adapter.on_disconnect(cause);
        self.stats.data_unrouted += self.early.clear();
        self.drain_rate_queue(UnsentReason::Disconnected);
        self.readiness = Readiness::Offline;
        self.auth = AuthState::None;
        self.heartbeat = Heartbeat::default();
        self.restore = Restore::default();
        for id in self.table.ids() {
            let Some(p) = self.table.get(id) else { continue };
            match (&p.purpose, p.flight) {
                (Purpose::User { .. }, Flight::Queued) => {}
                // Held by the rate limits, never written: not lost. It waits
                // for the next `Ready` like a request made while offline.
                (Purpose::User { .. }, Flight::Limited) => self.table.set_flight(id, Flight::Queued),
                (Purpose::User { idempotent: true, .. }, Flight::Sent { .. }) => {
                    self.stats.requests_resent += 1;
                    self.table.set_flight(id, Flight::Queued);
                }
                (Purpose::User { .. }, Flight::Sent { .. }) => {
                    if let Some(p) = self.table.remove(id) {
                        self.stats.requests_lost += 1;
                        self.respond(id, p.issued, Err(RequestError::ConnectionLost));
                    }
                }
                // Per-connection work: redone on the next open.
                (Purpose::Auth | Purpose::Setup | Purpose::Subscribe { .. } | Purpose::Unsubscribe { .. }, _) => {
                    self.table.remove(id);
                }
            }
        }
        for id in self.subs.connection_lost() {
            self.outputs.push_back(Event::Unsubscribed { id }.into());
        }
    }

    fn on_closed(&mut self) {
        self.drain_rate_queue(UnsentReason::Closed);
        self.readiness = Readiness::Offline;
        self.heartbeat = Heartbeat::default();
        self.auth = AuthState::None;
        for id in self.table.ids() {
            if let Some(p) = self.table.remove(id) {
                if let Purpose::User { .. } = p.purpose {
                    self.respond(id, p.issued, Err(RequestError::Closed));
                }
            }
        }
    }

    /// An entry's deadline passed.
    fn expired(&mut self, id: RequestId, pending: Pending) {
        match pending.purpose {
            Purpose::User { .. } => {
                self.stats.requests_timed_out += 1;
                self.respond(id, pending.issued, Err(RequestError::Timeout));
            }
            Purpose::Auth => {
                self.stats.auth_failures += 1;
                self.auth = AuthState::None;
                let reason = "no answer in time".to_owned();
                self.outputs.push_back(Event::AuthFailed { reason, retry: true }.into());
                self.abort(Error::Timeout(Timeout::Auth), None);
            }
            Purpose::Subscribe { subs, restore } => {
                let latency = self.now.saturating_duration_since(pending.issued);
                self.subscribe_outcome(&subs, restore, Err(RequestError::Timeout), latency);
            }
            Purpose::Unsubscribe { subs } => subs.into_iter().for_each(|s| self.forget(s)),
            // Per connection, and not waited for: forgotten.
            Purpose::Setup => {}
        }
    }

    /// The heartbeat timer fired: count a miss, maybe end the connection, beat.
    fn beat(&mut self) {
        let Some(spec) = self.adapter.heartbeat() else {
            self.heartbeat.next = None;
            return;
        };
        // With frames the application has not taken yet, the reply may be
        // among them: no miss (see `Client::holds_untaken_frames`).
        if self.heartbeat.outstanding.is_some() && !self.client.holds_untaken_frames() {
            self.heartbeat.missed += 1;
            self.stats.heartbeats_missed += 1;
            let (missed, limit) = (self.heartbeat.missed, spec.missed_limit.max(1));
            self.outputs.push_back(Event::HeartbeatMissed { missed, limit }.into());
            if missed >= limit {
                self.heartbeat = Heartbeat::default();
                self.abort(Error::Timeout(Timeout::Heartbeat), None);
                return;
            }
        }
        let id = RequestId(self.next_id + 1);
        if let Some(message) = self.adapter.heartbeat_message(id) {
            self.next_id = id.0;
            match self.send_heartbeat(message, true) {
                Ok(true) => {
                    self.stats.heartbeats_sent += 1;
                    self.heartbeat.outstanding = Some(id);
                }
                // Waiting for the limits (a heartbeat with a cost): due from
                // now, so a limiter that holds it past the interval counts a miss.
                Ok(false) => self.heartbeat.outstanding = Some(id),
                Err(_) => {}
            }
        }
        self.heartbeat.next = Some(self.deadline(spec.interval));
    }

    // ---- helpers ----

    fn respond(&mut self, id: RequestId, issued: Instant, result: Result<Message, RequestError>) {
        let latency = self.now.saturating_duration_since(issued);
        self.outputs.push_back(Event::Response { id, result, latency }.into());
    }

    fn abort(&mut self, error: Error, decision: Option<Decision>) {
        self.client.abort_connection(self.now, error, decision);
    }

    /// Sends a message of the behaviour layer for the pending entry `id`
    /// (never queued while offline: the session only sends on an open
    /// connection). Without rate limits it goes to the connection at once
    /// ([`Flight::Sent`]); with them it joins the rate queue
    /// ([`Flight::Limited`]) and goes at the next [`pump`](Self::pump),
    /// which marks the entry sent. The caller records the entry with the
    /// returned flight.
    fn transmit(&mut self, class: OpClass, message: Message, id: RequestId) -> Result<Flight, RequestError> {
        if self.rate.is_none() {
            self.send_now(message)?;
            return Ok(Flight::Sent { generation: self.generation });
        }
        let max = self.client.config().limits().max_message_size;
        if message.len() > max {
            let len = message.len();
            return Err(RequestError::Send(SendError::TooLarge { message, len, max }));
        }
        self.enqueue(class, Op { tag: Tag::Entry(id), message })
            .map_err(|(_, until)| RequestError::RateLimited { until })?;
        Ok(Flight::Limited)
    }

    /// Sends a heartbeat (or the reply to the server's): at once when it
    /// costs nothing (the default, see [`Adapter::cost`]) or nothing is
    /// limited, otherwise through the rate queue. Whether it went now.
    fn send_heartbeat(&mut self, message: Message, beat: bool) -> Result<bool, RequestError> {
        let free = match &self.rate {
            None => true,
            Some(_) => self.adapter.cost(OpClass::Heartbeat, &message) == 0,
        };
        if free {
            self.send_now(message)?;
            return Ok(true);
        }
        self.enqueue(OpClass::Heartbeat, Op { tag: Tag::Heartbeat { beat }, message })
            .map_err(|(_, until)| RequestError::RateLimited { until })?;
        Ok(false)
    }

    /// Hands a behaviour-layer message to the connection. If the
    /// connection drops before it is written, it is not handed to the
    /// application as unsent: the session redoes its own work.
    fn send_now(&mut self, message: Message) -> Result<(), RequestError> {
        self.client.send_internal(self.now, message).map_err(|e| match e {
            SendError::Closed(_) => RequestError::Closed,
            e => RequestError::Send(e),
        })
    }

    /// Queues `op` for the rate limits, charged the adapter's cost for its
    /// class. A full queue hands it back with the instant room comes.
    fn enqueue(&mut self, class: OpClass, op: Op) -> Result<(), (Op, Instant)> {
        let cost = self.adapter.cost(class, &op.message);
        let Some(queue) = &mut self.rate else {
            // Callers check first; without limits nothing waits.
            debug_assert!(false, "enqueue without rate limits");
            return Err((op, self.now));
        };
        queue.push(self.now, class, cost, op).map_err(|full| {
            // A full queue is never empty, so something goes out then.
            let until = queue.poll_timeout().unwrap_or(self.now);
            (full.item, until)
        })
    }

    /// Sends what the rate limits let go now, while the connection is open:
    /// each class in order, the oldest admissible operation first. Without
    /// limits, one branch and nothing else.
    #[inline]
    fn pump(&mut self) {
        if self.rate.is_some() {
            self.pump_rate_queue();
        }
    }

    fn pump_rate_queue(&mut self) {
        if self.client.state() != State::Open {
            return;
        }
        while let Some(op) = self.rate.as_mut().and_then(|q| q.pop_ready(self.now)) {
            match op.tag {
                Tag::Entry(id) => self.send_entry(id, op.message),
                Tag::Heartbeat { beat } => {
                    if self.send_now(op.message).is_ok() && beat {
                        self.stats.heartbeats_sent += 1;
                    }
                }
                Tag::Raw(options) => {
                    if let Err(e) = self.client.send_with(self.now, op.message, options) {
                        self.hand_back(e);
                    }
                }
            }
        }
    }

    /// A rate-queued entry's turn came: send it and mark it sent, or fail it.
    fn send_entry(&mut self, id: RequestId, message: Message) {
        // An entry that left the table (answered, timed out, cancelled) was
        // taken out of the queue then; this only guards the invariant.
        let Some(pending) = self.table.get(id).filter(|p| p.flight == Flight::Limited) else {
            return;
        };
        let user = matches!(pending.purpose, Purpose::User { .. });
        let subscribe = matches!(pending.purpose, Purpose::Subscribe { .. });
        match self.send_now(message) {
            Ok(()) => {
                if user {
                    self.stats.requests_sent += 1;
                } else if subscribe {
                    self.stats.subscribe_requests += 1;
                }
                self.table.set_flight(id, Flight::Sent { generation: self.generation });
            }
            Err(error) => {
                let Some(pending) = self.table.remove(id) else { return };
                match pending.purpose {
                    Purpose::User { .. } => self.respond(id, pending.issued, Err(error)),
                    Purpose::Subscribe { subs, restore } => {
                        let latency = self.now.saturating_duration_since(pending.issued);
                        self.subscribe_outcome(&subs, restore, Err(error), latency);
                    }
                    Purpose::Unsubscribe { subs } => subs.into_iter().for_each(|s| self.forget(s)),
                    Purpose::Setup => {}
                    Purpose::Auth => {
                        let retry = !matches!(error, RequestError::Send(SendError::TooLarge { .. }));
                        self.auth_outcome(Err(AuthDenied { retry, reason: error.to_string() }));
                    }
                }
            }
        }
    }

    /// A raw message the connection refused when its turn came, or that
    /// could not wait for the next connection: given back.
    fn hand_back(&mut self, error: SendError) {
        let reason = match &error {
            SendError::Closed(_) => UnsentReason::Closed,
            SendError::QueueFull(_) => UnsentReason::Overflow,
            _ => UnsentReason::Disconnected,
        };
        if let Some(message) = error.into_message() {
            self.outputs.push_back(Event::Unsent { message, reason }.into());
        }
    }

    /// The connection dropped (or the session closed): the rate queue is
    /// per connection. Raw messages follow the outbound queue's rules
    /// (offered to it again: kept if they may wait offline, else handed
    /// back); requests go back to waiting (see `on_connection_lost`); the
    /// rest is per-connection work, redone on the next open.
    fn drain_rate_queue(&mut self, reason: UnsentReason) {
        let Some(queue) = &mut self.rate else { return };
        for op in queue.drain() {
            let Tag::Raw(options) = op.tag else { continue };
            let result = if reason == UnsentReason::Closed {
                Err(SendError::Closed(op.message))
            } else {
                self.client.send_with(self.now, op.message, options)
            };
            if let Err(e) = result {
                self.hand_back(e);
            }
        }
    }

    /// Takes a rate-queued entry out of the queue when it leaves the table
    /// before its turn (answered, cancelled, timed out), so it spends no tokens.
    fn unqueue(&mut self, id: RequestId, flight: Flight) {
        if flight != Flight::Limited {
            return;
        }
        if let Some(queue) = &mut self.rate {
            queue.retain(|op| op.tag != Tag::Entry(id));
        }
    }

    /// The server said to retry after `wait`: nothing in the rate queue goes
    /// before then (without limits there is no queue, and the reconnect
    /// strategy alone honours it).
    fn pause_for(&mut self, wait: Duration) {
        let until = self.deadline(wait);
        if let Some(queue) = &mut self.rate {
            queue.limiter_mut().pause_until(until);
        }
    }

    fn next_request_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    /// `now + d`, clamped to the longest duration the configuration allows
    /// so a huge timeout cannot overflow the clock.
    fn deadline(&self, d: Duration) -> Instant {
        self.now + d.min(crate::config::MAX_DURATION)
    }

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }
}
