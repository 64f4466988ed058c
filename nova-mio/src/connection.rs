//! The driver: one [`Connection`] per session, driven from the caller's
//! `mio::Poll` loop. It owns the sockets, the TLS session and the read and
//! write buffers, feeds the core and performs its outputs. No WebSocket
//! logic lives here.
//!
//! Each driving call ([`Connection::on_event`], [`Connection::on_timeout`],
//! [`Connection::flush`]) runs one turn: fire the core's timer if due, move
//! connection attempts along, then alternate draining the core (bytes to
//! write, outputs) with writing and reading the socket until the socket
//! would block, the read budget is spent or the event queue is full; then
//! settle which readiness the socket is registered for.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use nova_driver::proxy;
use nova_driver::runtime::{ATTEMPT_DELAY, handshake_down, read_len, transport_down};
use nova_driver::shared::{Outgoing, Telemetry, event_from_core, event_weight};
use nova_proto::proxy::{Progress, ProxyError, ProxyHandshake};
use nova_proto::session::{
    Readiness, RequestError, RequestId, RequestOptions, RequestPayload, SessionStats, SubscribeError, SubscribeOptions,
    SubscriptionId, Topic,
};
use nova_proto::{
    CloseCode, CloseError, Closed, Config, Disconnect, Input, Message, Output, SendError, SendOptions, Session, State,
    Stats, Target, TransportDown,
};

use crate::Event;
use crate::connector::Resolve;
use crate::transport::{self, Transport};

/// How long a transport being shut may take to write its last bytes and see
/// the peer's end, before it is dropped anyway.
const LINGER: Duration = Duration::from_secs(2);

/// Most bytes read (and discarded) from a transport being shut, or read
/// after a write failed looking for what the peer sent before it went.
const DRAIN_LIMIT: usize = 1 << 20;

/// Bounds of the driver's buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) event_capacity: usize,
    pub(crate) event_bytes: usize,
    pub(crate) max_buffered_input: usize,
}

/// Settings the driver needs besides the core's.
pub(crate) struct Settings {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) nodelay: bool,
    pub(crate) read_chunk: usize,
    pub(crate) read_budget: usize,
    pub(crate) bounds: Bounds,
}

/// One WebSocket session (reconnecting by its policy), embedded in the
/// caller's `mio::Poll` loop.
///
/// Made by [`Connector::start`](crate::Connector::start) or
/// [`start`](crate::start). The caller owns the `Poll`; the connection
/// registers each socket of the session with the caller's [`Registry`]
/// under one [`Token`]. The [crate docs](crate) give the loop and its rules.
///
/// - **drive** it: [`on_event`](Self::on_event) for every `mio` event with
///   its token, [`on_timeout`](Self::on_timeout) once
///   [`poll_timeout`](Self::poll_timeout) has passed, [`flush`](Self::flush)
///   to write what commands queued without waiting for the next turn;
/// - **take** what happened with [`poll_event`](Self::poll_event);
/// - **command** it: [`send`](Self::send), [`ping`](Self::ping),
///   [`close`](Self::close), and with an adapter
///   ([`Connector::adapter`](crate::Connector::adapter))
///   [`request`](Self::request), [`subscribe`](Self::subscribe),
///   [`unsubscribe`](Self::unsubscribe), [`cancel`](Self::cancel).
///   Commands only queue: the next driving call writes (and `poll_timeout`
///   says so by returning a time already passed).
///
/// # Requests and subscriptions
///
/// A caller-owned loop has no futures: [`request`](Self::request) returns
/// the id the session gave the request, and its answer comes out of
/// [`poll_event`](Self::poll_event) as [`Event::Response`] with that id
/// (exactly one per accepted request: the answer, a service error, or why
/// there is none: timeout, cancellation, lost connection, end of the
/// session). Subscription data comes out as [`Event::Data`] under the
/// subscription's stable id, across reconnects. Both take their place in
/// the one bounded event queue, in order with the other events, and count
/// against its bounds like messages do.
pub struct Connection {
    /// The core: a [`Session`], which with the default `Raw` adapter is a
    /// bare `Client`, output for output.
    client: Session,
    token: Token,
    settings: Settings,
    resolver: Box<dyn Resolve>,
    telemetry: Telemetry,
    span: tracing::Span,
    link: Link,
    /// A transport being shut: its last bytes written, its end awaited.
    linger: Option<Linger>,
    /// Bytes taken from the core, not yet written.
    out: Outgoing,
    /// The live socket may have bytes to read: set by a readable event,
    /// cleared when a read would block. Readiness is edge-triggered, so this
    /// is the only memory of it.
    readable: bool,
    /// The last event said the peer ended its side (or the socket failed):
    /// read until the end shows, short reads notwithstanding.
    read_closed: bool,
    events: VecDeque<Event>,
    /// Payload bytes held in `events`.
    event_bytes: usize,
    /// The longest `events` got since it was last empty.
    events_peak: usize,
    /// The last turn ended with the event queue full: the core may hold
    /// undecoded frames, to decode once the application makes room.
    held_back: bool,
    /// A command queued work that no turn has done yet.
    dirty: bool,
    /// The latest time a driving call was given.
    now: Instant,
    /// A connection opened at least once.
    opened: bool,
    /// The last disconnect, for an error when the session ends before opening.
    last_disconnect: Option<Disconnect>,
}

enum Link {
    None,
    Connecting(Connecting),
    /// TCP to the proxy is up; its handshake opens the tunnel.
    Proxying(Box<Proxying>),
    Up {
        transport: Transport,
        /// `Input::TransportUp` was given (for TLS: after its handshake).
        up: bool,
        /// The readiness the socket is registered for.
        interest: Interest,
    },
}

/// TCP attempts in flight (Happy Eyeballs, RFC 8305): each starts when the
/// previous one failed or after [`ATTEMPT_DELAY`], whichever comes first.
struct Connecting {
    target: Target,
    /// The host the proxy is asked to connect to: the server's name, or its
    /// address for a `socks5://` proxy (resolved here, as curl does).
    destination: String,
    waiting: VecDeque<SocketAddr>,
    attempts: Vec<TcpStream>,
    /// When the next waiting address starts anyway.
    next_at: Option<Instant>,
    last_error: Option<io::ErrorKind>,
}

/// The proxy's handshake over the fresh TCP connection to it, a phase of
/// connecting: requests written as the socket takes them, replies read no
/// further than [`ProxyHandshake::max_read`] (so the tunnel's first bytes
/// stay in the socket for TLS), the whole within the proxy's timeout.
struct Proxying {
    tcp: TcpStream,
    target: Target,
    handshake: ProxyHandshake,
    out: Vec<u8>,
    written: usize,
    deadline: Instant,
}

/// A transport handed back by the core: write what it still had to say,
/// shut our side, read until the peer's end, all within [`LINGER`]. Reading
/// matters: closing a socket with unread bytes makes the kernel send a reset,
/// which can destroy the close frame the peer has not read yet.
struct Linger {
    transport: Transport,
    rest: Vec<u8>,
    written: usize,
    shut: bool,
    drained: usize,
    deadline: Instant,
    interest: Interest,
}

enum Attempt {
    Pending,
    Connected,
    Failed(io::ErrorKind),
}

/// How a write went.
enum Wrote {
    /// The socket took everything: the core may have more.
    All,
    /// The socket is full (or there was nothing to write).
    Blocked,
    /// The transport failed; the core was told.
    Failed,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("token", &self.token)
            .field("state", &self.client.state())
            .field("events", &self.events.len())
            .field("buffered_amount", &self.buffered_amount())
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        client: Session,
        token: Token,
        settings: Settings,
        resolver: Box<dyn Resolve>,
        telemetry: Telemetry,
        span: tracing::Span,
        now: Instant,
    ) -> Connection {
        Connection {
            client,
            token,
            settings,
            resolver,
            telemetry,
            span,
            link: Link::None,
            linger: None,
            out: Outgoing::default(),
            readable: false,
            read_closed: false,
            events: VecDeque::new(),
            event_bytes: 0,
            events_peak: 0,
            held_back: false,
            dirty: false,
            now,
            opened: false,
            last_disconnect: None,
        }
    }

    pub(crate) fn start(&mut self, registry: &Registry, now: Instant) {
        self.client.connect(now);
        self.drive(registry, now);
    }

    // ---- driving ----

    /// Handles a readiness event from the caller's `Poll`. Events for other
    /// tokens are ignored, so the caller may pass every event to every
    /// connection, though routing by [`token`](Self::token) is cheaper.
    ///
    /// Runs one turn: reads until the socket would block, the
    /// [read budget](crate::Connector::read_budget) is spent or the event
    /// queue is full; writes what waits; performs what the core decides.
    pub fn on_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        if event.token() != self.token {
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_read_closed() || event.is_error() {
            self.read_closed = true;
        }
        self.drive(registry, now);
    }

    /// Fires the session's timers that are due at `now` (keepalive pings,
    /// pong, connect, handshake and close timeouts, the reconnect backoff),
    /// then runs one turn like [`on_event`](Self::on_event). Call it once
    /// [`poll_timeout`](Self::poll_timeout) has passed; calling it early or
    /// twice is harmless.
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        self.drive(registry, now);
    }

    /// Writes what commands queued ([`send`](Self::send), [`ping`](Self::ping),
    /// [`close`](Self::close)) now, in as few syscalls as the socket allows,
    /// rather than on the next turn of the loop. The same turn as
    /// [`on_timeout`](Self::on_timeout): call it after a burst of sends.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        self.drive(registry, now);
    }

    /// The next event, in the order it happened; `None` when there is none
    /// now. Nothing follows [`Event::Closed`].
    ///
    /// Taking events makes room: when the queue was full, the socket was
    /// left unread, and [`poll_timeout`](Self::poll_timeout) now returns a
    /// time already passed so the loop drives the connection again at once.
    pub fn poll_event(&mut self) -> Option<Event> {
        let Some(event) = self.events.pop_front() else {
            nova_proto::shrink_drained(&mut self.events, &mut self.events_peak);
            return None;
        };
        self.event_bytes -= event_weight(&event);
        Some(event)
    }

    /// When to drive the connection next with [`on_timeout`](Self::on_timeout),
    /// if no readiness event comes first; `None` when only an event can give
    /// it work. A time already passed (the last time it was given) means work
    /// is waiting now: commands to write, a read stopped by the budget, room
    /// made in the event queue. With many connections in one loop, poll with
    /// the earliest of their deadlines.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.has_work() {
            return Some(self.now);
        }
        let mut deadline = self.client.poll_timeout();
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
        };
        match &self.link {
            Link::Connecting(connecting) => consider(connecting.next_at),
            Link::Proxying(proxying) => consider(Some(proxying.deadline)),
            Link::None | Link::Up { .. } => {}
        }
        consider(self.linger.as_ref().map(|l| l.deadline));
        deadline
    }

    // ---- commands ----

    /// Queues a message with the configured [`SendOptions`]; the next driving
    /// call writes it. Reads the clock (for the message's time to live).
    ///
    /// # Errors
    ///
    /// The core's, each giving the message back: [`SendError::NotOpen`]
    /// while disconnected (unless the configuration queues messages offline),
    /// [`SendError::Closed`] once the session is ending,
    /// [`SendError::TooLarge`], [`SendError::QueueFull`].
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        self.dirty = true;
        self.client.send(Instant::now(), message)
    }

    /// Like [`send`](Self::send), with per-message [`SendOptions`] (offline
    /// queueing, time to live) instead of the configured defaults.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with(&mut self, message: impl Into<Message>, options: SendOptions) -> Result<(), SendError> {
        self.dirty = true;
        self.client.send_with(Instant::now(), message, options)
    }

    /// Queues a ping (at most 125 bytes of payload); its pong comes out as
    /// [`Event::Pong`]. Keepalive pings are sent by the session itself.
    ///
    /// # Errors
    ///
    /// [`SendError::PingTooLong`], or [`SendError::PingNotOpen`] when not open.
    pub fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.dirty = true;
        self.client.ping(Instant::now(), payload)
    }

    /// Ends the session gracefully: what was queued is written, then a
    /// close frame with `code` and `reason`; the session waits (up to the
    /// close timeout) for the server's answer, and [`Event::Closed`] ends
    /// it. Calling it again, or after the end, does nothing.
    ///
    /// # Errors
    ///
    /// [`CloseError`] for a code that may not be sent or a reason over 123 bytes.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<(), CloseError> {
        self.dirty = true;
        self.client.close(Instant::now(), code.into(), reason)
    }

    /// Sends a request through the session's adapter; its answer comes out of
    /// [`poll_event`](Self::poll_event) as [`Event::Response`] with the
    /// returned id, within the request's timeout at the latest. Before the
    /// session is ready it waits (unless `options` let it go before).
    ///
    /// # Errors
    ///
    /// The session's: [`RequestError::Closed`],
    /// [`RequestError::TooManyPending`], [`RequestError::QueueFull`],
    /// [`RequestError::Encode`] (from the adapter), [`RequestError::Send`],
    /// [`RequestError::RateLimited`]. No `Event::Response` follows an error.
    pub fn request(
        &mut self,
        payload: impl Into<RequestPayload>,
        options: RequestOptions,
    ) -> Result<RequestId, RequestError> {
        self.dirty = true;
        self.client.request(Instant::now(), payload.into(), options)
    }

    /// Cancels a pending request: its [`Event::Response`] comes at once with
    /// [`RequestError::Cancelled`], and an answer that arrives later is
    /// dropped. Returns whether it was pending.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        self.dirty = true;
        self.client.cancel(Instant::now(), id)
    }

    /// Subscribes to `topic` through the session's adapter. The id stays the
    /// same across reconnects (the session restores the subscription and
    /// maps the server's new id back to it); its data comes out of
    /// [`poll_event`](Self::poll_event) as [`Event::Data`], its confirmation
    /// as [`Event::Subscribed`] (or [`Event::SubscriptionFailed`]).
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Duplicate`], [`SubscribeError::TooMany`],
    /// [`SubscribeError::Closed`], [`SubscribeError::Failed`].
    pub fn subscribe(
        &mut self,
        topic: impl Into<Topic>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.dirty = true;
        self.client.subscribe(Instant::now(), topic, options)
    }

    /// Subscribes to several topics at once, in as few requests as the
    /// adapter allows (see `Session::subscribe_many`).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); on an error no topic is held.
    pub fn subscribe_many<T: Into<Topic>>(
        &mut self,
        topics: impl IntoIterator<Item = T>,
        options: SubscribeOptions,
    ) -> Result<Vec<SubscriptionId>, SubscribeError> {
        self.dirty = true;
        self.client.subscribe_many(Instant::now(), topics, options)
    }

    /// Unsubscribes; [`Event::Unsubscribed`] follows once the server
    /// confirms, and data for it comes until then.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Unknown`] for a subscription the session does not hold.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), SubscribeError> {
        self.dirty = true;
        self.client.unsubscribe(Instant::now(), id)
    }

    /// Replaces the configuration from the next connection attempt on (a
    /// resume URL, a refreshed token). The current connection is not touched.
    pub fn set_config(&mut self, config: impl Into<Arc<Config>>) {
        self.client.set_config(config);
    }

    /// Stops driving the session: deregisters and closes every socket at
    /// once, without a close handshake. Use [`close`](Self::close) and drive
    /// until [`is_finished`](Self::is_finished) for a graceful end.
    pub fn deregister(mut self, registry: &Registry) {
        self.drop_link(registry);
        if let Some(mut linger) = self.linger.take() {
            let _ = registry.deregister(linger.transport.tcp());
        }
    }

    // ---- getters ----

    /// The token the connection's sockets are registered under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.client.state()
    }

    /// Counters across the whole session.
    pub fn stats(&self) -> &Stats {
        self.client.stats()
    }

    /// The core, for its getters (history, configuration, queue lengths,
    /// subscriptions): a [`Session`], the client plus the adapter's behaviour.
    pub fn client(&self) -> &Session {
        &self.client
    }

    /// Whether the session is ready: connected, authenticated (if the
    /// adapter authenticates) and its subscriptions restored.
    pub fn is_ready(&self) -> bool {
        self.client.is_ready()
    }

    /// How far the session is on the current connection.
    pub fn readiness(&self) -> Readiness {
        self.client.readiness()
    }

    /// The behaviour layer's counters.
    pub fn session_stats(&self) -> &SessionStats {
        self.client.session_stats()
    }

    /// Payload bytes sent and not written to the socket yet: the core's
    /// queue plus the driver's write buffer. A producer that must not run
    /// ahead of the network waits while this is large.
    pub fn buffered_amount(&self) -> usize {
        self.client.buffered_amount() + self.out.unwritten().len()
    }

    /// Events waiting in [`poll_event`](Self::poll_event).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Whether the session is over ([`Event::Closed`] was queued).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Whether nothing is left to do: the session is over, every event was
    /// taken, and the last transport has been shut. The connection may be
    /// dropped before this (its sockets are closed at once); driving it until
    /// then lets the last close frame reach the server.
    pub fn is_finished(&self) -> bool {
        self.client.is_closed() && self.events.is_empty() && self.linger.is_none()
    }

    /// Whether a connection opened at least once in this session.
    pub(crate) fn has_opened(&self) -> bool {
        self.opened
    }

    /// Why the last connection or attempt ended, if one did.
    pub(crate) fn last_disconnect(&self) -> Option<&Disconnect> {
        self.last_disconnect.as_ref()
    }

    /// Takes the [`Event::Response`] for `id` out of the event queue,
    /// wherever it is, leaving every other event in order.
    pub(crate) fn take_response(&mut self, id: RequestId) -> Option<Result<Message, RequestError>> {
        let at = self.events.iter().position(|e| matches!(e, Event::Response { id: got, .. } if *got == id))?;
        let event = self.events.remove(at)?;
        self.event_bytes -= event_weight(&event);
        match event {
            Event::Response { result, .. } => Some(result),
            _ => None,
        }
    }

    /// The `Closed` event waiting in the queue, if any.
    pub(crate) fn queued_closed(&self) -> Option<&Closed> {
        self.events.iter().rev().find_map(|e| match e {
            Event::Closed(closed) => Some(closed),
            _ => None,
        })
    }

    // ---- the turn ----

    fn has_room(&self) -> bool {
        let bounds = &self.settings.bounds;
        self.events.is_empty() || (self.events.len() < bounds.event_capacity && self.event_bytes < bounds.event_bytes)
    }

    /// Whether the socket may be read: the application is keeping up, or the
    /// core holds little unread input. With room in the event queue, the core
    /// decoded every complete frame it holds, so what it buffers is the start
    /// of one (bounded by its own frame and message limits) and only more
    /// input completes it. Without room, reading stops past the bound and TCP
    /// pushes back on the server.
    fn may_read(&self) -> bool {
        self.has_room() || self.client.buffered_input() < self.settings.bounds.max_buffered_input
    }

    fn has_work(&self) -> bool {
        self.dirty
            || (self.held_back && self.has_room())
            || (self.readable && matches!(self.link, Link::Up { .. }) && self.may_read())
    }

    fn drive(&mut self, registry: &Registry, now: Instant) {
        let span = self.span.clone();
        let _entered = span.enter();
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        self.dirty = false;
        if self.client.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.client.handle_timeout(now);
        }
        self.progress_connect(registry, now);
        self.progress_proxy(registry, now);
        let mut budget = self.settings.read_budget;
        loop {
            self.service(registry, now);
            match self.write_out(registry, now) {
                Wrote::Failed => continue,
                // The socket took the whole batch: take the next one.
                Wrote::All if self.pull_transmit() => continue,
                Wrote::All | Wrote::Blocked => {}
            }
            if !self.read_once(registry, now, &mut budget) {
                break;
            }
        }
        self.progress_linger(registry, now);
        self.settle_interest(registry);
        self.telemetry.count(self.client.stats());
        self.telemetry.transitions(self.client.history());
    }

    /// Drains the core: bytes to write into `out` (up to a batch), outputs
    /// performed, until neither poller has anything. Decoding inside
    /// `poll_output` can queue bytes (a pong, a close echo) without an
    /// output, hence the last `pull_transmit`.
    ///
    /// With the event queue full no new frame is decoded (that is the
    /// backpressure), but what the core already decided still happens: a
    /// dead transport is closed, a reconnect starts. The few events those
    /// produce may go past the queue's bound.
    fn service(&mut self, registry: &Registry, now: Instant) {
        loop {
            self.pull_transmit();
            let output = if self.has_room() { self.client.poll_output() } else { self.client.poll_queued_output() };
            match output {
                Some(output) => self.perform(registry, now, output),
                None if self.pull_transmit() => {}
                None => break,
            }
        }
        self.held_back = !self.has_room();
    }

    /// Appends what the core has to write, up to the batch size. Returns
    /// whether anything was appended.
    fn pull_transmit(&mut self) -> bool {
        self.out.pull(&mut self.client).appended
    }

    fn perform(&mut self, registry: &Registry, now: Instant, output: Output) {
        match output {
            Output::Message(message) => {
                self.telemetry.message(&message);
                self.push_event(Event::Message(message));
            }
            Output::Connect(target) => {
                // A core that asks again has given up on the previous transport.
                self.close_transport(registry, now);
                self.begin_connect(registry, now, target);
            }
            Output::CloseTransport => {
                // The bytes the core handed out before this go out first,
                // whatever the batch size: a close frame is among them.
                self.out.pull_all(&mut self.client);
                self.close_transport(registry, now);
            }
            Output::Event(event) => {
                let event = *event;
                self.telemetry.event(&event, self.client.stats());
                match &event {
                    nova_proto::Event::Opened(_) => self.opened = true,
                    nova_proto::Event::Disconnected { cause, .. } => self.last_disconnect = Some(cause.clone()),
                    _ => {}
                }
                if let Some(event) = event_from_core(event) {
                    self.push_event(event);
                }
            }
        }
    }

    fn push_event(&mut self, event: Event) {
        self.event_bytes += event_weight(&event);
        self.events.push_back(event);
        self.events_peak = self.events_peak.max(self.events.len());
    }

    // ---- connecting ----

    fn begin_connect(&mut self, registry: &Registry, now: Instant, target: Target) {
        let destination = if proxy::resolves_locally(&target) {
            match transport::addresses(&target.host, target.port, &mut *self.resolver) {
                Ok(addrs) => proxy::local_destination(&addrs),
                Err(down) => return self.client.handle_input(now, Input::TransportDown(down)),
            }
        } else {
            target.host.to_string()
        };
        let (host, port) = proxy::first_hop(&target);
        match transport::addresses(host, port, &mut *self.resolver) {
            Err(down) => self.client.handle_input(now, Input::TransportDown(proxy::resolve_failed(&target, down))),
            Ok(addrs) => {
                tracing::debug!(
                    attempt = target.attempt,
                    addresses = addrs.len(),
                    proxy = target.proxy.is_some(),
                    "connecting"
                );
                self.link = Link::Connecting(Connecting {
                    target,
                    destination,
                    waiting: addrs.into(),
                    attempts: Vec::new(),
                    next_at: None,
                    last_error: None,
                });
                self.start_attempt(registry, now);
                self.check_exhausted(now);
            }
        }
    }

    /// Starts the next waiting address (skipping those that fail at once).
    fn start_attempt(&mut self, registry: &Registry, now: Instant) {
        let Link::Connecting(c) = &mut self.link else {
            return;
        };
        while let Some(addr) = c.waiting.pop_front() {
            let started = TcpStream::connect(addr).and_then(|mut tcp| {
                registry.register(&mut tcp, self.token, Interest::READABLE | Interest::WRITABLE)?;
                Ok(tcp)
            });
            match started {
                Ok(tcp) => {
                    c.attempts.push(tcp);
                    break;
                }
                Err(e) => c.last_error = Some(e.kind()),
            }
        }
        c.next_at = (!c.waiting.is_empty()).then(|| now + ATTEMPT_DELAY);
    }

    /// Every address failed: the attempt is over.
    fn check_exhausted(&mut self, now: Instant) {
        let Link::Connecting(c) = &self.link else {
            return;
        };
        if c.attempts.is_empty() && c.waiting.is_empty() {
            let kind = c.last_error.unwrap_or(io::ErrorKind::NotFound);
            let down = proxy::connect_failed(&c.target, kind);
            self.link = Link::None;
            self.client.handle_input(now, Input::TransportDown(down));
        }
    }

    fn progress_connect(&mut self, registry: &Registry, now: Instant) {
        let Link::Connecting(c) = &mut self.link else {
            return;
        };
        let mut i = 0;
        let mut failed = false;
        while i < c.attempts.len() {
            match check(&c.attempts[i]) {
                Attempt::Pending => i += 1,
                Attempt::Failed(kind) => {
                    let mut tcp = c.attempts.swap_remove(i);
                    let _ = registry.deregister(&mut tcp);
                    c.last_error = Some(kind);
                    failed = true;
                }
                Attempt::Connected => {
                    let tcp = c.attempts.swap_remove(i);
                    for mut loser in c.attempts.drain(..) {
                        let _ = registry.deregister(&mut loser);
                    }
                    let target = c.target.clone();
                    let destination = std::mem::take(&mut c.destination);
                    self.link = Link::None;
                    self.connected(registry, now, tcp, target, &destination);
                    return;
                }
            }
        }
        // A failure starts the next address at once; otherwise it starts
        // when its delay is up.
        if failed || c.next_at.is_some_and(|at| at <= now) {
            self.start_attempt(registry, now);
        }
        self.check_exhausted(now);
    }

    /// TCP is up: to the proxy, whose handshake comes first, or to the server.
    fn connected(&mut self, registry: &Registry, now: Instant, mut tcp: TcpStream, target: Target, destination: &str) {
        // Without it, a small message can wait for the previous one's ACK
        // (Nagle), tens of milliseconds for a latency-sensitive feed.
        if self.settings.nodelay {
            let _ = tcp.set_nodelay(true);
        }
        let Some(via) = target.proxy.clone() else {
            return self.establish(registry, now, tcp, &target);
        };
        match ProxyHandshake::new(&via, destination, target.port) {
            Ok(handshake) => {
                tracing::debug!(kind = ?via.kind(), "proxy handshake");
                self.link = Link::Proxying(Box::new(Proxying {
                    tcp,
                    target,
                    handshake,
                    out: Vec::new(),
                    written: 0,
                    deadline: now + via.timeout(),
                }));
                self.progress_proxy(registry, now);
            }
            Err(e) => {
                let _ = registry.deregister(&mut tcp);
                self.client.handle_input(now, Input::TransportDown(TransportDown::Proxy(e)));
            }
        }
    }

    /// Moves the proxy's handshake along without blocking: writes what it
    /// has, reads what it allows until the socket would block (readiness is
    /// edge-triggered), and hands the tunnel on once it is open.
    fn progress_proxy(&mut self, registry: &Registry, now: Instant) {
        let Link::Proxying(p) = &mut self.link else {
            return;
        };
        let outcome = if now >= p.deadline {
            Err(ProxyError::Timeout(p.target.proxy.as_ref().map_or(Duration::ZERO, |v| v.timeout())))
        } else {
            p.step()
        };
        match outcome {
            Ok(false) => {}
            Ok(true) => {
                let Link::Proxying(p) = std::mem::replace(&mut self.link, Link::None) else {
                    return;
                };
                tracing::debug!("proxy tunnel open");
                let Proxying { tcp, target, .. } = *p;
                self.establish(registry, now, tcp, &target);
            }
            Err(e) => {
                self.drop_link(registry);
                self.client.handle_input(now, Input::TransportDown(TransportDown::Proxy(e)));
            }
        }
    }

    /// The tunnel (or the direct TCP connection) is up: TLS starts over it,
    /// or the transport is up already.
    fn establish(&mut self, registry: &Registry, now: Instant, mut tcp: TcpStream, target: &Target) {
        let transport = if target.tls {
            match Transport::tls_session(&self.settings.tls, &target.host) {
                Ok(session) => Transport::tls(tcp, session),
                Err(down) => {
                    let _ = registry.deregister(&mut tcp);
                    self.client.handle_input(now, Input::TransportDown(down));
                    return;
                }
            }
        } else {
            Transport::Plain(tcp)
        };
        let up = !target.tls;
        self.link = Link::Up { transport, up, interest: Interest::READABLE | Interest::WRITABLE };
        // Bytes may have arrived before this turn looked: try once.
        self.readable = true;
        if up {
            self.client.handle_input(now, Input::TransportUp);
        }
    }

    // ---- reading and writing ----

    /// Writes what waits. One `write` (or one vectored TLS write) per call
    /// when the socket has room.
    fn write_out(&mut self, registry: &Registry, now: Instant) -> Wrote {
        let Link::Up { transport, .. } = &mut self.link else {
            return Wrote::Blocked;
        };
        loop {
            if self.out.unwritten().is_empty() && !transport.has_pending() {
                return Wrote::All;
            }
            match transport.write(self.out.unwritten()) {
                Ok(n) => {
                    self.out.advance(n);
                    if !self.out.unwritten().is_empty() || transport.has_pending() {
                        return Wrote::Blocked;
                    }
                    return Wrote::All;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.write_failed(registry, now, &e);
                    return Wrote::Failed;
                }
            }
        }
    }

    /// A write failed: the peer may be gone, but what it sent before going
    /// (its last messages, a close frame saying why) may still be readable,
    /// and it decides how the connection ended. Reads what is there now, up
    /// to [`DRAIN_LIMIT`] bytes.
    fn write_failed(&mut self, registry: &Registry, now: Instant, error: &io::Error) {
        let mut end = None;
        if let Link::Up { transport, up, .. } = &mut self.link {
            if !*up {
                end = Some(handshake_down(error));
            } else {
                let mut drained = 0;
                while drained < DRAIN_LIMIT && end.is_none() {
                    let chunk = self.settings.read_chunk;
                    let client = &mut self.client;
                    let result = with_read_buf(chunk, |buf| {
                        let result = transport.read(buf);
                        if let Ok(n) = result
                            && n > 0
                        {
                            client.handle_input(now, Input::Received(&buf[..n]));
                        }
                        result
                    });
                    match result {
                        Ok(0) => end = Some(TransportDown::Eof),
                        Ok(n) => drained += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => end = Some(transport_down(&e)),
                    }
                }
            }
        }
        self.drop_link(registry);
        let why = end.unwrap_or_else(|| transport_down(error));
        self.client.handle_input(now, Input::TransportDown(why));
    }

    /// Reads once from the live transport, if it may have bytes, the budget
    /// allows and the application keeps up. Returns whether it fed the core.
    fn read_once(&mut self, registry: &Registry, now: Instant, budget: &mut usize) -> bool {
        if !self.readable || *budget == 0 || !self.may_read() {
            return false;
        }
        let Link::Up { transport, up, .. } = &mut self.link else {
            return false;
        };
        let was_up = *up;
        let client = &mut self.client;
        // Bytes go to the core straight from this thread's read buffer
        // (after `TransportUp` when this read finished the TLS handshake).
        // A hinted read stays within what is left of the budget (a call
        // reads at most its budget plus one `read_chunk`, as before).
        let chunk = read_len(self.settings.read_chunk, client.read_hint()).min((*budget).max(self.settings.read_chunk));
        let (result, handshake_done) = with_read_buf(chunk, |buf| {
            // The rest of a large frame partly received (only then is there
            // a hint) goes straight into its own buffer: one copy fewer.
            // Only its rest: a `readv` that also took what follows into
            // this thread's buffer measured worse in nova-bench (1 × 64 KiB
            // pipelined, 6 interleaved runs: 31.6 µs of CPU a message
            // before, 32.0 with this, 47.7 with `readv`; 64 × 64 KiB: 52.4,
            // 46.1, 46.0).
            if *up
                && client.read_hint() > 0
                && let Some(place) = client.read_in_place(chunk)
            {
                let asked = place.len();
                let result = transport.read(place);
                if let Ok(n) = result
                    && n > 0
                {
                    client.handle_input(now, Input::ReceivedInPlace(n));
                }
                return (result.map(|n| (n, asked)), false);
            }
            let result = transport.read(buf);
            let handshake_done = !*up && !transport.is_handshaking();
            if handshake_done {
                *up = true;
                tracing::debug!("TLS established");
                client.handle_input(now, Input::TransportUp);
            }
            if let Ok(n) = result
                && n > 0
            {
                client.handle_input(now, Input::Received(&buf[..n]));
            }
            (result.map(|n| (n, buf.len())), handshake_done)
        });
        match result {
            Ok((0, _)) => {
                self.drop_link(registry);
                let why = if was_up {
                    TransportDown::Eof
                } else {
                    TransportDown::ConnectFailed(io::ErrorKind::UnexpectedEof)
                };
                self.client.handle_input(now, Input::TransportDown(why));
                true
            }
            Ok((n, asked)) => {
                *budget = budget.saturating_sub(n);
                // A plain socket that filled less than the buffer was
                // drained: with edge-triggered readiness (epoll, kqueue) the
                // next bytes bring a new event, so the read that would only
                // say `WouldBlock` is saved, one syscall a message in a
                // ping-pong (tokio's rule too). Not for TLS (what the socket
                // held is not what the plaintext read returned), nor after
                // the peer's end was reported (no new event would come).
                if n < asked && !self.read_closed && !cfg!(windows) && transport.is_plain() {
                    self.readable = false;
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                handshake_done
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.drop_link(registry);
                let why = if was_up && !handshake_done { transport_down(&e) } else { handshake_down(&e) };
                self.client.handle_input(now, Input::TransportDown(why));
                true
            }
        }
    }

    /// Registers the live socket for what it needs: always readable, and
    /// writable only while bytes wait for room.
    fn settle_interest(&mut self, registry: &Registry) {
        let pending = !self.out.unwritten().is_empty();
        let Link::Up { transport, interest, .. } = &mut self.link else {
            return;
        };
        let want = if pending || transport.has_pending() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if *interest != want {
            match registry.reregister(transport.tcp(), self.token, want) {
                Ok(()) => *interest = want,
                Err(e) => tracing::warn!(error = %e, "could not change the socket's registration"),
            }
        }
    }

    // ---- shutting transports ----

    /// Drops the live transport (or the attempts in flight) after the core
    /// was told it went down.
    fn drop_link(&mut self, registry: &Registry) {
        match std::mem::replace(&mut self.link, Link::None) {
            Link::None => {}
            Link::Connecting(mut c) => {
                for mut tcp in c.attempts.drain(..) {
                    let _ = registry.deregister(&mut tcp);
                }
            }
            Link::Proxying(mut p) => {
                let _ = registry.deregister(&mut p.tcp);
            }
            Link::Up { mut transport, .. } => {
                let _ = registry.deregister(transport.tcp());
            }
        }
        self.out.clear();
        self.readable = false;
        self.read_closed = false;
    }

    /// Hands the live transport and its unwritten bytes to a [`Linger`] that
    /// writes them, shuts the stream and waits (briefly) for the peer's end,
    /// so the close is a FIN and not a reset. At most one transport lingers:
    /// an older one is dropped.
    fn close_transport(&mut self, registry: &Registry, now: Instant) {
        let rest = self.out.take_unwritten();
        let link = std::mem::replace(&mut self.link, Link::None);
        self.drop_link(registry);
        match link {
            Link::Up { transport, interest, .. } => {
                if let Some(mut old) = self.linger.take() {
                    let _ = registry.deregister(old.transport.tcp());
                }
                self.linger = Some(Linger {
                    transport,
                    rest,
                    written: 0,
                    shut: false,
                    drained: 0,
                    deadline: now + LINGER,
                    interest,
                });
                // Everything it needs happens now or on a later event.
                self.progress_linger(registry, now);
            }
            Link::Connecting(mut c) => {
                for mut tcp in c.attempts.drain(..) {
                    let _ = registry.deregister(&mut tcp);
                }
            }
            Link::Proxying(mut p) => {
                let _ = registry.deregister(&mut p.tcp);
            }
            Link::None => {}
        }
    }

    fn progress_linger(&mut self, registry: &Registry, now: Instant) {
        let Some(linger) = &mut self.linger else {
            return;
        };
        let done = now >= linger.deadline || linger.progress();
        if done {
            let _ = registry.deregister(linger.transport.tcp());
            self.linger = None;
            return;
        }
        let want = if linger.written < linger.rest.len() || linger.transport.has_pending() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if want != linger.interest && registry.reregister(linger.transport.tcp(), self.token, want).is_ok() {
            linger.interest = want;
        }
    }
}

impl Proxying {
    /// One pass: `Ok(true)` once the tunnel is open, `Ok(false)` while the
    /// socket would block.
    fn step(&mut self) -> Result<bool, ProxyError> {
        use std::io::{Read, Write};
        // A SOCKS5 reply is at most 262 bytes; an HTTP one is read 1 or 2 at a time.
        let mut buf = [0u8; 512];
        loop {
            let _ = self.handshake.poll_transmit(&mut self.out);
            while self.written < self.out.len() {
                match self.tcp.write(&self.out[self.written..]) {
                    Ok(0) => return Err(ProxyError::Connect(io::ErrorKind::WriteZero)),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ProxyError::Connect(e.kind())),
                }
            }
            self.out.clear();
            self.written = 0;
            let want = self.handshake.max_read().min(buf.len());
            match self.tcp.read(&mut buf[..want]) {
                Ok(0) => return Err(self.handshake.handle_eof()),
                Ok(n) => match self.handshake.handle_input(&buf[..n]) {
                    Progress::NeedMore => {}
                    Progress::Done { used } => {
                        // Reads are capped at `max_read`: the reply ends with the read.
                        debug_assert_eq!(used, n, "read past the proxy's reply");
                        return Ok(true);
                    }
                    Progress::Failed(e) => return Err(e),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ProxyError::Connect(e.kind())),
            }
        }
    }
}

impl Linger {
    /// Moves the shutdown along without blocking. Returns whether it is over.
    fn progress(&mut self) -> bool {
        while self.written < self.rest.len() || (self.transport.has_pending() && !self.shut) {
            match self.transport.write(&self.rest[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    if self.written < self.rest.len() || self.transport.has_pending() {
                        // The socket is full: wait for room.
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        if !self.shut {
            self.shut = true;
            self.rest = Vec::new();
            self.transport.shutdown();
        }
        let mut scratch = [0u8; 4096];
        loop {
            match self.transport.read(&mut scratch) {
                Ok(0) => return true,
                Ok(n) => {
                    self.drained += n;
                    if self.drained >= DRAIN_LIMIT {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}

thread_local! {
    /// The read buffer of every connection driven on this thread: bytes are
    /// handed to the core as soon as they are read, so one buffer serves
    /// them all and an idle connection holds none.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's read buffer, `chunk` bytes long.
fn with_read_buf<T>(chunk: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    READ_BUF.with_borrow_mut(|buf| {
        if buf.len() < chunk {
            buf.resize(chunk, 0);
        }
        f(&mut buf[..chunk])
    })
}

/// Where a non-blocking connect stands: an error on the socket means it
/// failed; a peer address means it completed; "not connected" means it is
/// still under way (a spurious wake-up).
fn check(tcp: &TcpStream) -> Attempt {
    match tcp.take_error() {
        Ok(Some(e)) | Err(e) => return Attempt::Failed(e.kind()),
        Ok(None) => {}
    }
    match tcp.peer_addr() {
        Ok(_) => Attempt::Connected,
        Err(e) if e.kind() == io::ErrorKind::NotConnected || e.kind() == io::ErrorKind::WouldBlock => Attempt::Pending,
        Err(e) => Attempt::Failed(e.kind()),
    }
}
