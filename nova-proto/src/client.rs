//! The reconnecting client: one session across many connections.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::backoff::{Decision, MIN_RECONNECT_DELAY};
use crate::breaker::{self, Breaker};
use crate::config::Config;
use crate::connection::{Connection, Inbound, Transmit};
use crate::deflate::Codec;
use crate::error::{CloseError, Error, ProtocolError, SendError, Timeout, TransportDown};
use crate::handshake::{self, Offer, ResponseReader};
use crate::history::{Cause, History, Stats, Transition};
use crate::io::{
    Closed, Disconnect, Event, Input, Opened, Output, Reconnect, State, Target, Termination, UnsentReason,
};
use crate::message::{CloseCode, CloseFrame, Message, Text};
use crate::outbound::{Pending, Queue, SendOptions};
use crate::rng::Rng;
use crate::timer::{Timer, TimerTable};

/// A WebSocket client session that reconnects by itself, with no IO of its own.
///
/// The client is driven by four kinds of method (see the [crate docs](crate) for
/// the run loop):
///
/// - **commands** from the application: [`connect`](Self::connect),
///   [`send`](Self::send), [`ping`](Self::ping), [`close`](Self::close);
/// - **inputs** from the driver: [`handle_input`](Self::handle_input) and
///   [`handle_timeout`](Self::handle_timeout);
/// - **pollers** that hand out work, drained after every command or input in
///   this order: [`poll_transmit`](Self::poll_transmit), [`poll_output`](Self::poll_output),
///   [`poll_timeout`](Self::poll_timeout);
/// - **getters**: [`state`](Self::state), [`stats`](Self::stats), [`history`](Self::history), ...
///
/// Every method that can start, stop or fire a timer takes `now`. Time must not
/// go backwards between calls (an earlier `now` is treated as the latest seen).
/// Peer faults never come back as `Err`: they end the connection, and the
/// application learns of them through [`Event::Disconnected`].
#[derive(Debug)]
pub struct Client {
    config: Arc<Config>,
    /// A configuration to switch to at the next connection attempt.
    next_config: Option<Arc<Config>>,
    state: State,
    rng: Rng,
    timers: TimerTable,
    now: Instant,
    outputs: VecDeque<Output>,
    /// The longest `outputs` got since it was last drained.
    outputs_peak: usize,
    /// `Opened` was handed out: the queued messages go out once the
    /// application comes back for the next output.
    replay_pending: bool,
    /// Bytes for the current transport written outside any frame queue: the
    /// upgrade request, and the last close frame of a connection being failed.
    raw_out: Vec<u8>,
    queue: Queue,
    link: Link,
    /// Reconnect attempts since the last stable connection; 0 before the first.
    attempt: u32,
    /// What happens once the connection being closed is gone; `Some` only while
    /// a close is under way.
    after_close: Option<AfterClose>,
    /// Consecutive reconnect attempts that failed to open (for `max_attempts`).
    failed_attempts: u32,
    /// When the last connection attempt started: the next starts no sooner
    /// than [`MIN_RECONNECT_DELAY`] after it.
    attempt_started: Option<Instant>,
    /// The server's close frame on the current or last connection (code 1005
    /// when it carried none).
    close_received: Option<CloseFrame>,
    /// Whether our close frame went out on the current or last connection.
    close_sent: bool,
    keepalive: KeepaliveState,
    /// The reconnect policy's circuit breaker.
    breaker: Breaker,
    history: History,
    stats: Stats,
    /// How the next disconnect is handled instead of the reconnect policy;
    /// set by the behaviour layer when it aborts a connection.
    decision_override: Option<Decision>,
    /// How a requested close is reported, when the behaviour layer asked for it.
    stop_as: Option<Termination>,
}

/// Per-connection state that only exists in some states.
#[derive(Debug)]
enum Link {
    /// Idle, Connecting, Backoff, Closed.
    None,
    /// Handshaking: the upgrade request is out, the response is being read.
    Upgrading { reader: ResponseReader, accept: String },
    /// Open or Closing.
    Connected(Box<Connection>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterClose {
    /// The application asked to close: the session ends.
    Terminate,
    /// The server closed: reconnect (or not) as the policy says.
    Disconnect(Disconnect),
}

#[derive(Debug, Default)]
struct KeepaliveState {
    seq: u64,
    /// The last keepalive ping: its payload and when it was queued.
    probe: Option<(u64, Instant)>,
    missed: u32,
}

impl Client {
    /// A client in [`State::Idle`]. `seed` drives every random choice (masks,
    /// handshake keys, jitter): drivers take it from the OS, tests fix it.
    ///
    /// Allocates nothing in proportion to the configured limits.
    pub fn new(config: impl Into<Arc<Config>>, seed: [u8; 32], now: Instant) -> Client {
        let config = config.into();
        let queue = Queue::new(*config.outbound());
        let history = History::new(config.history_len());
        Client {
            config,
            next_config: None,
            state: State::Idle,
            rng: Rng::new(seed),
            timers: TimerTable::default(),
            now,
            outputs: VecDeque::new(),
            outputs_peak: 0,
            replay_pending: false,
            raw_out: Vec::new(),
            queue,
            link: Link::None,
            attempt: 0,
            after_close: None,
            failed_attempts: 0,
            attempt_started: None,
            close_received: None,
            close_sent: false,
            keepalive: KeepaliveState::default(),
            breaker: Breaker::default(),
            history,
            stats: Stats::default(),
            decision_override: None,
            stop_as: None,
        }
    }

    // ---- getters ----

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters across the whole session.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last state transitions.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Messages waiting to be written (not counting one partly written).
    pub fn queued_messages(&self) -> usize {
        self.queue.len()
    }

    /// Payload bytes waiting to be written: with [`poll_transmit`](Self::poll_transmit)
    /// pulling only what the socket takes, this is the application's backpressure signal.
    pub fn buffered_amount(&self) -> usize {
        self.queue.bytes()
    }

    /// Reconnect attempts made since the last stable connection.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    // ---- commands ----

    /// Starts the first connection: emits [`Output::Connect`]. Only acts in
    /// [`State::Idle`]; later connections are made by the reconnect policy.
    pub fn connect(&mut self, now: Instant) {
        self.advance(now);
        if self.state == State::Idle {
            self.start_attempt(Cause::ConnectCalled);
        }
    }

    /// Sends a message with the configured [`SendOptions`].
    ///
    /// While open the message is queued for [`poll_transmit`](Self::poll_transmit);
    /// the payload is not copied until it is masked into the driver's buffer.
    ///
    /// # Errors
    ///
    /// The message is handed back in the error: [`SendError::TooLarge`] above
    /// `max_message_size`, [`SendError::NotOpen`] while disconnected unless the
    /// options queue it, [`SendError::Closed`] once the session is ending,
    /// [`SendError::QueueFull`] when the queue is full and its policy is `Reject`.
    pub fn send(&mut self, now: Instant, message: impl Into<Message>) -> Result<(), SendError> {
        let options = SendOptions::from_config(self.config.outbound());
        self.send_with(now, message, options)
    }

    /// Sends a message with explicit options (offline queueing, time to live).
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
        self.enqueue(now, message.into(), options, false)
    }

    /// Sends the behaviour layer's own message (authentication, a
    /// subscribe, a heartbeat, a request it sends again after a reconnect):
    /// as [`send_with`](Self::send_with) without offline queueing, but if it
    /// is not written it is dropped rather than handed back as
    /// [`Event::Unsent`], and a full queue refuses it whatever the overflow
    /// policy.
    pub(crate) fn send_internal(&mut self, now: Instant, message: Message) -> Result<(), SendError> {
        let options = SendOptions::from_config(self.config.outbound()).offline(false);
        self.enqueue(now, message, options, true)
    }

    fn enqueue(
        &mut self,
        now: Instant,
        message: Message,
        options: SendOptions,
        internal: bool,
    ) -> Result<(), SendError> {
        self.advance(now);
        let max = self.config.limits().max_message_size;
        if message.len() > max {
            let len = message.len();
            return Err(SendError::TooLarge { message, len, max });
        }
        match self.state {
            State::Closed => return Err(SendError::Closed(message)),
            State::Closing if self.after_close == Some(AfterClose::Terminate) => {
                return Err(SendError::Closed(message));
            }
            State::Open => {}
            _ if options.offline => {}
            _ => return Err(SendError::NotOpen(message)),
        }
        // A time to live too long to represent is no expiry at all.
        let expires = options.ttl.and_then(|ttl| self.now.checked_add(ttl));
        let pending = Pending { message, offline: options.offline, expires, internal };
        let outputs = &mut self.outputs;
        self.queue.push(pending, &mut |m, r| outputs.push_back(unsent(m, r))).map_err(SendError::QueueFull)
    }

    /// Sends a ping with `payload` (at most 125 bytes); its pong arrives as
    /// [`Event::Pong`]. Keepalive pings are sent by the client itself.
    ///
    /// # Errors
    ///
    /// [`SendError::PingTooLong`], or [`SendError::PingNotOpen`] when not open.
    pub fn ping(&mut self, now: Instant, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.advance(now);
        let payload = payload.into();
        if payload.len() > 125 {
            return Err(SendError::PingTooLong(payload.len()));
        }
        match (&mut self.link, self.state) {
            (Link::Connected(conn), State::Open) => {
                conn.queue_ping(payload);
                Ok(())
            }
            _ => Err(SendError::PingNotOpen),
        }
    }

    /// Ends the session for good, gracefully: messages already queued are
    /// written, then a close frame with `code` and `reason`, then the client
    /// waits (up to the close timeout) for the server's close and for the
    /// transport to end. Without an open connection the session ends at once.
    /// Calling it again, or after the end, does nothing.
    ///
    /// # Errors
    ///
    /// [`CloseError`] for a code that may not be sent or a reason over 123 bytes.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.advance(now);
        if self.state == State::Closed {
            return Ok(());
        }
        if !code.is_valid_on_wire() {
            return Err(CloseError::InvalidCode(code.0));
        }
        if reason.len() > 123 {
            return Err(CloseError::ReasonTooLong(reason.len()));
        }
        let frame = CloseFrame { code, reason: Text::from(reason.to_owned()) };
        match self.state {
            State::Closed => {}
            State::Idle | State::Backoff => self.terminate(Termination::Requested, Cause::CloseCalled),
            State::Connecting | State::Handshaking => {
                // Nothing of the upgrade request may follow the decision to leave.
                self.raw_out.clear();
                self.outputs.push_back(Output::CloseTransport);
                self.terminate(Termination::Requested, Cause::CloseCalled);
            }
            State::Open => {
                if let Link::Connected(conn) = &mut self.link {
                    conn.queue_close(Some(&frame), true);
                }
                self.after_close = Some(AfterClose::Terminate);
                self.begin_closing(Cause::CloseCalled);
            }
            // Already closing: make it final. The close frame in flight (or the
            // echo sent to the server's close) stands.
            State::Closing => self.after_close = Some(AfterClose::Terminate),
        }
        Ok(())
    }

    /// Replaces the configuration from the next connection attempt on: a new URL
    /// (a resume URL a server handed out), new headers (a refreshed token), new
    /// limits or policy. The current connection, if any, is not touched.
    pub fn set_config(&mut self, config: impl Into<Arc<Config>>) {
        self.next_config = Some(config.into());
    }

    /// Aborts the open connection without a close handshake, as a dead one
    /// is: for the behaviour layer (a missed application heartbeat, refused
    /// authentication). `decision`, if set, replaces the reconnect policy's
    /// for this disconnect. Does nothing unless open.
    pub(crate) fn abort_connection(&mut self, now: Instant, error: Error, decision: Option<Decision>) {
        self.advance(now);
        if self.state == State::Open {
            self.decision_override = decision;
            self.abort_with(error);
        }
    }

    /// Closes for good like [`close`](Self::close), reporting `termination`
    /// in the final [`Event::Closed`]: the behaviour layer's decision to stop.
    pub(crate) fn stop(&mut self, now: Instant, code: CloseCode, reason: &str, termination: Termination) {
        if self.state != State::Closed && self.close(now, code, reason).is_ok() {
            self.stop_as = Some(termination);
        }
    }

    // ---- inputs ----

    /// Feeds an input from the driver. Inputs that make no sense in the current
    /// state (bytes while connecting, a second `TransportUp`) are ignored.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.advance(now);
        match input {
            Input::TransportUp => self.on_transport_up(),
            Input::Received(bytes) => self.on_received(bytes),
            Input::ReceivedInPlace(n) => self.on_received_in_place(n),
            Input::TransportDown(why) => self.on_transport_down(why),
        }
    }

    /// Fires every timer due at `now`. Calling it early, or twice, does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        for timer in Timer::ALL {
            if self.timers.is_due(timer, self.now) {
                self.timers.stop(timer);
                self.on_timer(timer);
            }
        }
        let outputs = &mut self.outputs;
        self.queue.expire(self.now, &mut |m, r| outputs.push_back(unsent(m, r)));
    }

    // ---- pollers ----

    /// Appends bytes to write to the transport into `out` and returns how many.
    ///
    /// Stops starting new frames once `max` bytes were appended. A frame is never
    /// split, so a call may overshoot `max` by one frame: with
    /// [`Limits::max_outgoing_frame_size`](crate::Limits::max_outgoing_frame_size)
    /// unset a large message is one frame; set it to bound what each call can
    /// append. Only pull what the socket can take: what is left stays queued and
    /// counts in [`buffered_amount`](Self::buffered_amount). Allocates only by
    /// growing `out`.
    #[must_use = "the bytes must be written to the transport"]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let start = out.len();
        if !self.raw_out.is_empty() {
            // Taken, not drained: it holds a handshake or a last close frame,
            // and its buffer should not stay for the connection's life.
            out.append(&mut std::mem::take(&mut self.raw_out));
        }
        let appended = out.len() - start;
        if let Link::Connected(conn) = &mut self.link {
            let outputs = &mut self.outputs;
            conn.poll_transmit(&mut Transmit {
                out,
                max: max.saturating_sub(appended),
                now: self.now,
                queue: &mut self.queue,
                rng: &mut self.rng,
                stats: &mut self.stats,
                unsent: &mut |m, r| outputs.push_back(unsent(m, r)),
            });
        }
        let n = out.len() - start;
        self.stats.bytes_out += n as u64;
        n
    }

    /// The next output, in the order it happened.
    ///
    /// Received frames are decoded here, one at a time, as the application asks
    /// for them, not when the bytes arrive: the application answers message *n*
    /// (through [`poll_transmit`](Self::poll_transmit), before asking for the
    /// next output) before frame *n + 1* is even looked at, and a slow consumer
    /// leaves bytes undecoded in [`buffered_input`](Self::buffered_input) rather
    /// than piling up messages. Decoding may queue bytes to write (pongs, a close
    /// frame), which is why `poll_transmit` is called between outputs.
    #[must_use = "every output asks the driver to act"]
    #[inline]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.next_output(true)
    }

    /// Like [`poll_output`](Self::poll_output), but decodes no new frame: it
    /// hands out only what is already waiting (events, `Connect` and
    /// `CloseTransport` requests, messages decoded when a transport went
    /// down). A driver whose application has stopped taking messages calls
    /// this instead, so the session's own work (closing a dead transport,
    /// reconnecting) goes on while unread frames stay undecoded in
    /// [`buffered_input`](Self::buffered_input).
    #[must_use = "every output asks the driver to act"]
    pub fn poll_queued_output(&mut self) -> Option<Output> {
        self.next_output(false)
    }

    #[inline]
    fn next_output(&mut self, decode: bool) -> Option<Output> {
        if std::mem::take(&mut self.replay_pending) {
            // The application has seen `Opened` and sent what it sends first
            // (authentication, say): the messages queued before now follow.
            self.queue.release();
        }
        if decode && self.outputs.is_empty() {
            match self.decode_next() {
                // The hot path: a message goes straight to the caller.
                Decoded::Message(message) => return Some(Output::Message(message)),
                Decoded::Other | Decoded::Nothing => {}
            }
        }
        self.outputs_peak = self.outputs_peak.max(self.outputs.len());
        let output = self.outputs.pop_front();
        if matches!(output.as_ref().and_then(Output::as_event), Some(Event::Opened(_))) {
            self.replay_pending = true;
        }
        if output.is_none() {
            // Messages bypass the queue on the hot path, so what it carries
            // is occasional (events, a connect, a close).
            crate::shrink_drained(&mut self.outputs, &mut self.outputs_peak);
        }
        output
    }

    /// The next deadline: call [`handle_timeout`](Self::handle_timeout) at or
    /// after it. `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.queue.earliest_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- transitions ----

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn set_state(&mut self, to: State, cause: Cause) {
        debug_assert!(self.state.can_become(to), "illegal transition {:?} -> {to:?}", self.state);
        self.history.record(Transition { at: self.now, from: self.state, to, cause });
        self.state = to;
    }

    fn start_attempt(&mut self, cause: Cause) {
        if let Some(config) = self.next_config.take() {
            self.queue.set_limits(*config.outbound());
            self.config = config;
        }
        let c = &self.config;
        let endpoint = c.endpoint();
        let target = Target {
            host: endpoint.host.clone(),
            port: endpoint.port,
            tls: endpoint.tls,
            attempt: self.attempt,
            proxy: c.proxy_arc(),
        };
        self.timers.set(Timer::Connect, self.now + c.timeouts().connect);
        self.attempt_started = Some(self.now);
        self.stats.connects += 1;
        if self.attempt > 0 {
            self.stats.reconnects += 1;
            self.outputs.push_back(Event::Reconnecting { attempt: self.attempt }.into());
        }
        self.raw_out.clear();
        self.outputs.push_back(Output::Connect(target));
        self.set_state(State::Connecting, cause);
    }

    fn on_transport_up(&mut self) {
        if self.state != State::Connecting {
            return;
        }
        self.timers.stop(Timer::Connect);
        self.timers.set(Timer::Handshake, self.now + self.config.timeouts().handshake);
        let (key, accept) = handshake::new_key(self.rng.nonce());
        // Bytes left for an earlier transport must never reach this one.
        self.raw_out.clear();
        handshake::write_request(&mut self.raw_out, self.config.request_head(), &key);
        self.link = Link::Upgrading { reader: ResponseReader::default(), accept };
        self.set_state(State::Handshaking, Cause::TransportUp);
    }

    fn on_received(&mut self, bytes: &[u8]) {
        self.stats.bytes_in += bytes.len() as u64;
        match &mut self.link {
            Link::Upgrading { reader, accept } => {
                let offer = Offer {
                    accept,
                    subprotocols: self.config.subprotocols(),
                    require_subprotocol: self.config.require_subprotocol(),
                    deflate: self.config.deflate(),
                };
                let Some(done) = reader.feed(bytes, self.config.limits().max_handshake_size, &offer) else {
                    return;
                };
                match done.result {
                    Ok(accepted) => {
                        // The rest of the chunk is frames: copy it before `link` changes.
                        let limits = self.config.limits();
                        // A fresh codec for every connection: no compression
                        // window survives a reconnect.
                        let codec = accepted.deflate.zip(self.config.deflate()).map(|(p, c)| Codec::new(p, c));
                        let mut conn = Connection::new(
                            limits.max_frame_size,
                            limits.max_message_size,
                            limits.max_outgoing_frame_size,
                        )
                        .with_deflate(codec);
                        conn.receive(done.rest);
                        let opened = Opened {
                            subprotocol: accepted.subprotocol,
                            headers: accepted.headers,
                            attempt: self.attempt,
                            connection: self.stats.opens + 1,
                            deflate: accepted.deflate,
                        };
                        self.open(conn, opened);
                    }
                    Err(e) => {
                        self.outputs.push_back(Output::CloseTransport);
                        self.disconnect(Disconnect::Failed(Error::Handshake(e)));
                    }
                }
            }
            Link::Connected(conn) => {
                conn.receive(bytes);
                self.heard_from_server(bytes.len());
            }
            Link::None => {}
        }
    }

    fn on_received_in_place(&mut self, n: usize) {
        if let Link::Connected(conn) = &mut self.link {
            let n = conn.received_in_place(n);
            self.stats.bytes_in += n as u64;
            self.heard_from_server(n);
        }
    }

    /// `n` bytes of frames arrived.
    fn heard_from_server(&mut self, n: usize) {
        if self.state == State::Open && n > 0 {
            // Any byte from the server is proof of life.
            self.keepalive.missed = 0;
            self.timers.stop(Timer::Pong);
        }
    }

    fn open(&mut self, conn: Connection, opened: Opened) {
        self.link = Link::Connected(Box::new(conn));
        // Messages queued while disconnected wait until the application has
        // seen `Opened` and sent what must go first.
        self.queue.hold();
        self.timers.stop(Timer::Handshake);
        if let Some(k) = self.config.keepalive() {
            self.timers.set(Timer::Ping, self.now + k.interval);
        }
        self.keepalive = KeepaliveState::default();
        self.close_received = None;
        self.close_sent = false;
        self.after_close = None;
        self.failed_attempts = 0;
        self.breaker.succeeded();
        self.stats.opened(self.now);
        self.outputs.push_back(Event::Opened(opened).into());
        self.set_state(State::Open, Cause::Upgraded);
    }

    /// Decodes buffered frames until one means something to the application
    /// (pings are answered on the way). A message is returned, not queued;
    /// anything else is handled and queues its own outputs.
    #[inline]
    fn decode_next(&mut self) -> Decoded {
        let Link::Connected(conn) = &mut self.link else {
            return Decoded::Nothing;
        };
        match conn.next() {
            Ok(None) => {
                return Decoded::Nothing;
            }
            Ok(Some(Inbound::Message(message))) => {
                self.stats.messages_in += 1;
                return Decoded::Message(message);
            }
            Ok(Some(Inbound::Pong(payload))) => self.on_pong(payload),
            Ok(Some(Inbound::Close(frame))) => self.on_close_frame(frame),
            Err(e) => self.fail(e),
        }
        Decoded::Other
    }

    /// Whether whole frames are waiting for the application to take them
    /// (they are decoded as it reads outputs). Liveness checks do not count
    /// a miss then: the answer they wait for may be among those frames.
    pub fn holds_untaken_frames(&self) -> bool {
        match &self.link {
            Link::Connected(conn) => conn.holds_whole_frame(),
            _ => false,
        }
    }

    /// Bytes received but not decoded yet. A driver whose application is not
    /// taking outputs can stop reading the socket while this is large: that is
    /// how backpressure reaches TCP.
    pub fn buffered_input(&self) -> usize {
        match &self.link {
            Link::Connected(conn) => conn.buffered(),
            _ => 0,
        }
    }

    /// Bytes the frame being received still needs before it can be decoded:
    /// a driver that reads `max(its chunk, read_hint())` (bounded by a
    /// maximum of its own) reads a large frame in one call instead of many.
    /// 0 when no frame is partly received, when its header is incomplete, or
    /// when the header breaks the limits (an announced length is trusted only
    /// once it passed `max_frame_size` and `max_message_size`). Never more
    /// than `max_frame_size` plus a header; computing it allocates nothing.
    pub fn read_hint(&self) -> usize {
        match &self.link {
            Link::Connected(conn) => conn.read_hint(),
            _ => 0,
        }
    }

    /// Where a driver may read the next bytes to save copying them: the
    /// room left in the payload buffer of the large frame being received
    /// (at most `max` bytes, never past that frame's end). Read into it, then
    /// report the count with [`Input::ReceivedInPlace`] before anything
    /// else; `None` (no large frame is partly received): read into a buffer
    /// of your own and hand the bytes over as [`Input::Received`].
    ///
    /// Only frames of at least 4 KiB get a buffer of their own, so small
    /// messages never come this way; bytes the first read of a frame
    /// brought (its header and what followed) are always handed over. The
    /// room is zeroed the first time it is offered (a recycled buffer
    /// already is initialized) and bounded like the frame's reservation: up
    /// to 256 KiB at once, then growing with what arrived.
    pub fn read_in_place(&mut self, max: usize) -> Option<&mut [u8]> {
        match &mut self.link {
            Link::Connected(conn) => conn.read_in_place(max),
            _ => None,
        }
    }

    fn on_pong(&mut self, payload: Bytes) {
        self.stats.pongs_received += 1;
        let rtt = match self.keepalive.probe {
            Some((seq, sent)) if payload[..] == seq.to_be_bytes() => {
                self.keepalive.probe = None;
                let rtt = self.now.saturating_duration_since(sent);
                self.stats.last_rtt = Some(rtt);
                Some(rtt)
            }
            _ => None,
        };
        self.outputs.push_back(Event::Pong { payload, rtt }.into());
    }

    fn on_close_frame(&mut self, frame: Option<CloseFrame>) {
        let Link::Connected(conn) = &mut self.link else {
            return;
        };
        match self.state {
            State::Open => {
                // The server closes: echo its code (RFC 6455 §5.5.1; an empty close
                // gets an empty one), then wait for it to end the transport.
                let echo = frame.as_ref().map(|f| CloseFrame { code: f.code, reason: Text::default() });
                conn.queue_close(echo.as_ref(), false);
                let frame = frame.unwrap_or(CloseFrame { code: CloseCode::NO_STATUS, reason: Text::default() });
                let cause = Disconnect::ServerClosed { code: frame.code, reason: frame.reason.to_string() };
                self.close_received = Some(frame);
                self.after_close = Some(AfterClose::Disconnect(cause));
                self.begin_closing(Cause::ServerClose);
            }
            State::Closing => {
                // Either the answer to our close (the handshake is complete; the
                // server now ends the transport, or the close timer does), or the
                // server closing while ours still waited behind queued messages:
                // then ours goes now, as an answer should (RFC 6455 §5.5.1).
                conn.expedite_close();
                self.close_received =
                    Some(frame.unwrap_or(CloseFrame { code: CloseCode::NO_STATUS, reason: Text::default() }));
            }
            _ => {}
        }
    }

    fn begin_closing(&mut self, cause: Cause) {
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Pong);
        self.timers.set(Timer::Close, self.now + self.config.timeouts().close);
        self.set_state(State::Closing, cause);
    }

    /// The server broke the protocol: send the close code the error names, shut
    /// the transport at once (RFC 6455 §7.1.7), then reconnect or stop.
    fn fail(&mut self, error: ProtocolError) {
        let Link::Connected(conn) = &mut self.link else {
            return;
        };
        if !conn.close_received() {
            let reason = short_reason(&error.to_string());
            let frame = CloseFrame { code: error.close_code(), reason };
            // Even when a graceful close was waiting behind data: the error's
            // code replaces it and goes next (RFC 6455 §7.1.7).
            conn.force_close(&frame);
            // Written now into `raw_out`, since the connection is dropped below.
            let mut t = Transmit {
                out: &mut self.raw_out,
                max: usize::MAX,
                now: self.now,
                queue: &mut Queue::new(*self.config.outbound()),
                rng: &mut self.rng,
                stats: &mut self.stats,
                unsent: &mut |_, _| {},
            };
            conn.poll_transmit(&mut t);
        }
        self.outputs.push_back(Output::CloseTransport);
        self.disconnect(Disconnect::Failed(Error::Protocol(error)));
    }

    fn on_transport_down(&mut self, why: TransportDown) {
        // What arrived before the end is not lost: the messages (and a close
        // frame) still buffered are decoded and queued first.
        loop {
            match self.decode_next() {
                Decoded::Message(message) => self.outputs.push_back(Output::Message(message)),
                Decoded::Other => {}
                Decoded::Nothing => break,
            }
        }
        // Whatever was waiting to be written has nowhere to go.
        self.raw_out.clear();
        match self.state {
            State::Connecting | State::Handshaking | State::Open => {
                self.disconnect(Disconnect::Failed(Error::Transport(why)));
            }
            State::Closing => self.finish_closing(),
            State::Idle | State::Backoff | State::Closed => {}
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match (timer, self.state) {
            (Timer::Connect, State::Connecting) => self.abort(Timeout::Connect),
            (Timer::Handshake, State::Handshaking) => self.abort(Timeout::Handshake),
            (Timer::Close, State::Closing) => {
                self.outputs.push_back(Output::CloseTransport);
                self.finish_closing();
            }
            (Timer::Pong, State::Open) if self.holds_untaken_frames() => {
                // The application is behind: frames it has not taken are
                // waiting (and its driver may have stopped reading, as it
                // should), so the pong may be among them. Silence proves
                // nothing yet; judge again a timeout later.
                if let Some(k) = self.config.keepalive().copied() {
                    self.timers.set(Timer::Pong, self.now + k.timeout);
                }
            }
            (Timer::Pong, State::Open) => {
                self.keepalive.missed += 1;
                let allowed = self.config.keepalive().map_or(0, |k| k.allowed_misses);
                if self.keepalive.missed > allowed {
                    self.abort(Timeout::Pong);
                }
            }
            (Timer::Ping, State::Open) => self.send_keepalive(),
            (Timer::Reconnect, State::Backoff) => self.start_attempt(Cause::BackoffElapsed),
            // A timer armed for a state the client has left; `handle_timeout`
            // stopped it already.
            _ => {}
        }
    }

    fn send_keepalive(&mut self) {
        let Some(k) = self.config.keepalive().copied() else {
            return;
        };
        let Link::Connected(conn) = &mut self.link else {
            return;
        };
        self.keepalive.seq += 1;
        let seq = self.keepalive.seq;
        conn.queue_ping(Bytes::copy_from_slice(&seq.to_be_bytes()));
        self.keepalive.probe = Some((seq, self.now));
        self.stats.pings_sent += 1;
        // An earlier unanswered ping keeps its own, earlier deadline.
        if self.timers.get(Timer::Pong).is_none() {
            self.timers.set(Timer::Pong, self.now + k.timeout);
        }
        self.timers.set(Timer::Ping, self.now + k.interval);
    }

    /// A deadline passed: abandon the transport without a close handshake.
    fn abort(&mut self, timeout: Timeout) {
        self.abort_with(Error::Timeout(timeout));
    }

    fn abort_with(&mut self, error: Error) {
        self.raw_out.clear();
        self.outputs.push_back(Output::CloseTransport);
        self.disconnect(Disconnect::Failed(error));
    }

    /// The closing connection is gone (transport down, or close timer).
    fn finish_closing(&mut self) {
        match self.after_close.take() {
            Some(AfterClose::Disconnect(cause)) => self.disconnect(cause),
            Some(AfterClose::Terminate) | None => {
                self.drop_connection(UnsentReason::Closed);
                self.terminate(Termination::Requested, Cause::CloseDone);
            }
        }
    }

    /// Forgets the connection; gives back a message it was half-way through
    /// writing, for `reason`.
    fn drop_connection(&mut self, reason: UnsentReason) {
        if let Link::Connected(conn) = &mut self.link {
            self.close_sent = conn.close_sent();
            if let Some(m) = conn.take_partial() {
                self.outputs.push_back(unsent(m, reason));
            }
        }
        self.link = Link::None;
        self.stats.left_open(self.now);
    }

    /// A connection or attempt ended: schedule the next attempt or end the session.
    fn disconnect(&mut self, cause: Disconnect) {
        let was_open_for = self.stats.current_uptime(self.now);
        let opened = matches!(self.link, Link::Connected(_));
        let closing_for_good = self.after_close == Some(AfterClose::Terminate);
        self.drop_connection(if closing_for_good { UnsentReason::Closed } else { UnsentReason::Disconnected });
        self.timers.clear();
        self.keepalive = KeepaliveState::default();
        self.replay_pending = false;
        self.stats.disconnects += 1;
        let outputs = &mut self.outputs;
        self.queue.disconnected(&mut |m, r| outputs.push_back(unsent(m, r)));

        let kind = cause.kind();
        if self.after_close.take() == Some(AfterClose::Terminate) {
            // The application was closing for good when the connection failed
            // (say, the server broke the protocol instead of answering the close).
            self.terminate(Termination::Requested, Cause::Disconnected(kind));
            return;
        }
        let policy = self.config.reconnect();
        // Backoff grows until a connection proves stable; `max_attempts` counts
        // only reconnect attempts that never opened.
        if opened && was_open_for >= policy.reset_after {
            self.attempt = 0;
        }
        if !opened && self.attempt > 0 {
            self.failed_attempts += 1;
        }
        let next = self.attempt.saturating_add(1);
        let unit = self.rng.unit();
        let gave_up = policy.max_attempts.is_some_and(|max| self.failed_attempts >= max);
        // The behaviour layer may have decided for this disconnect (a service
        // error's strategy); otherwise the reconnect policy does.
        let plan = match self.decision_override.take() {
            _ if gave_up => None,
            Some(Decision::Stop) => None,
            Some(Decision::ReconnectAfter(delay)) => Some(delay),
            Some(Decision::Reconnect) | None => policy.planned(&cause, next, unit),
        };
        // No tight loop: attempts start at least `MIN_RECONNECT_DELAY` apart.
        // After a connection that lived longer, the policy's delay is kept
        // as it is (and stays within its backoff and jitter bounds).
        let floor = self
            .attempt_started
            .map_or(MIN_RECONNECT_DELAY, |started| (started + MIN_RECONNECT_DELAY).saturating_duration_since(self.now));
        let plan = plan.map(|delay| delay.max(floor));
        // The breaker counts attempts that never opened; open, it holds the
        // next attempt back for its cool-down.
        let cool_down = if opened { None } else { self.breaker.failed(self.now, policy.breaker.as_ref()) };
        match plan {
            Some(delay) => {
                let delay = cool_down.map_or(delay, |c| breaker::hold(delay, c, policy.backoff.jitter(), unit));
                self.attempt = next;
                let at = self.now + delay;
                self.timers.set(Timer::Reconnect, at);
                let breaker_open = cool_down.is_some();
                let reconnect = Some(Reconnect { attempt: next, delay, at, breaker_open });
                self.outputs.push_back(Event::Disconnected { cause, reconnect }.into());
                self.set_state(State::Backoff, Cause::Disconnected(kind));
            }
            None => {
                self.outputs.push_back(Event::Disconnected { cause, reconnect: None }.into());
                let termination = if gave_up {
                    Termination::GaveUp { attempts: self.failed_attempts }
                } else {
                    Termination::NotRetried
                };
                self.terminate(termination, Cause::Stopped);
            }
        }
    }

    /// The session is over: give back every waiting message, disarm everything.
    fn terminate(&mut self, termination: Termination, cause: Cause) {
        let termination = match (termination, self.stop_as.take()) {
            (Termination::Requested, Some(stop)) => stop,
            (t, _) => t,
        };
        self.drop_connection(UnsentReason::Closed);
        self.timers.clear();
        let outputs = &mut self.outputs;
        self.queue.close(&mut |m, r| outputs.push_back(unsent(m, r)));
        // RFC 6455 §7.1.5: the close code is the one the server sent, 1005 if its
        // frame had none, 1006 if no close frame arrived at all.
        let received = self.close_received.take();
        let clean = received.is_some() && self.close_sent;
        let (code, reason) = match received {
            Some(f) => (f.code, f.reason.to_string()),
            None => (CloseCode::ABNORMAL, String::new()),
        };
        self.outputs.push_back(Event::Closed(Closed { code, reason, clean, termination }).into());
        self.set_state(State::Closed, cause);
    }
}

/// What one decoding step produced.
enum Decoded {
    /// A message for the application.
    Message(Message),
    /// A frame handled inside (a pong, a close, a failure); outputs, if any, queued.
    Other,
    /// No complete frame buffered.
    Nothing,
}

fn unsent(message: Message, reason: UnsentReason) -> Output {
    Event::Unsent { message, reason }.into()
}

/// A close reason from an error message, cut to the 123 bytes a close frame allows.
fn short_reason(text: &str) -> Text {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Text::from(text[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn new_client_is_idle_with_no_deadline_and_no_output() {
        let mut c = Client::new(Config::new("ws://h/").unwrap(), [0; 32], Instant::now());
        assert_eq!(c.state(), State::Idle);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.poll_output(), None);
        let mut out = Vec::new();
        assert_eq!(c.poll_transmit(&mut out, usize::MAX), 0);
    }

    #[test]
    fn output_is_no_bigger_than_a_message() {
        // Messages flow through `Output` by the million and each is moved through
        // the queue: events are boxed so an output costs what a message costs.
        assert_eq!(std::mem::size_of::<Output>(), std::mem::size_of::<Message>());
    }

    #[test]
    fn a_drained_output_queue_gives_its_memory_back() {
        let now = Instant::now();
        let mut c = Client::new(Config::new("ws://h/").unwrap(), [0; 32], now);
        for _ in 0..10_000 {
            c.outputs.push_back(Output::Message(Message::text("x")));
        }
        while c.poll_output().is_some() {}
        // The batch that just drained used all of it: kept for the next one.
        assert!(c.outputs.capacity() >= 10_000);
        // A quiet batch after the burst releases it: an idle connection
        // holds no buffer for its outputs.
        c.outputs.push_back(Output::Message(Message::text("x")));
        while c.poll_output().is_some() {}
        assert_eq!(c.outputs.capacity(), 0);
    }

    #[test]
    fn steady_batches_do_not_reallocate_the_output_queue() {
        let now = Instant::now();
        let mut c = Client::new(Config::new("ws://h/").unwrap(), [0; 32], now);
        let mut capacities = Vec::new();
        for _ in 0..5 {
            for _ in 0..3000 {
                c.outputs.push_back(Output::Message(Message::text("x")));
            }
            while c.poll_output().is_some() {}
            capacities.push(c.outputs.capacity());
        }
        assert!(capacities.windows(2).all(|w| w[0] == w[1]), "{capacities:?}");
    }

    /// A client with an open connection, keepalive off.
    fn open_client(now: Instant) -> Client {
        open_client_with(Config::builder("ws://h/").keepalive(None).build().unwrap(), now)
    }

    fn open_client_with(config: Config, now: Instant) -> Client {
        let mut c = Client::new(config, [0; 32], now);
        c.connect(now);
        assert!(matches!(c.poll_output(), Some(Output::Connect(_))));
        upgrade(&mut c, now);
        c
    }

    /// Brings the transport up and answers the upgrade.
    fn upgrade(c: &mut Client, now: Instant) {
        c.handle_input(now, Input::TransportUp);
        let mut request = Vec::new();
        let _ = c.poll_transmit(&mut request, usize::MAX);
        let request = String::from_utf8(request).unwrap();
        let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            crate::accept_key(key.as_bytes())
        );
        c.handle_input(now, Input::Received(response.as_bytes()));
        assert!(matches!(c.poll_output().and_then(Output::into_event), Some(Event::Opened(_))));
    }

    /// The delay of the reconnect the last disconnect scheduled; drains the outputs.
    fn reconnect_delay(c: &mut Client) -> Duration {
        let mut delay = None;
        while let Some(output) = c.poll_output() {
            if let Some(Event::Disconnected { reconnect: Some(r), .. }) = output.into_event() {
                delay = Some(r.delay);
            }
        }
        delay.expect("a reconnect was scheduled")
    }

    #[test]
    fn attempts_start_the_floor_apart_and_a_long_lived_connection_reconnects_at_once() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let config = Config::builder("ws://h/")
            .keepalive(None)
            .backoff(crate::Backoff::constant(Duration::ZERO, 0.0))
            .build()
            .unwrap();
        let mut c = Client::new(config, [0; 32], t0);
        c.connect(t0);
        assert!(matches!(c.poll_output(), Some(Output::Connect(_))));
        // A connection open for a minute, then dropped: no floor, the
        // policy's zero delay as it is.
        upgrade(&mut c, t0 + ms(1));
        let t1 = t0 + Duration::from_secs(60);
        c.handle_input(t1, Input::TransportDown(TransportDown::Eof));
        assert_eq!(reconnect_delay(&mut c), Duration::ZERO);
        c.handle_timeout(t1);
        assert!(matches!(c.poll_output().and_then(Output::into_event), Some(Event::Reconnecting { .. })));
        assert!(matches!(c.poll_output(), Some(Output::Connect(_))));
        // Dropped 3 ms after that attempt started: it waits out the rest of
        // the floor, so attempts never start less than 10 ms apart.
        upgrade(&mut c, t1 + ms(1));
        c.handle_input(t1 + ms(3), Input::TransportDown(TransportDown::Eof));
        assert_eq!(reconnect_delay(&mut c), ms(7));
        // A loop of refused attempts: each a full floor after the last.
        let mut now = t1 + ms(10);
        for _ in 0..5 {
            c.handle_timeout(now);
            assert!(matches!(c.poll_output().and_then(Output::into_event), Some(Event::Reconnecting { .. })));
            assert!(matches!(c.poll_output(), Some(Output::Connect(_))));
            c.handle_input(
                now,
                Input::TransportDown(TransportDown::ConnectFailed(std::io::ErrorKind::ConnectionRefused)),
            );
            assert_eq!(reconnect_delay(&mut c), MIN_RECONNECT_DELAY);
            now += MIN_RECONNECT_DELAY;
        }
    }

    #[test]
    fn queued_outputs_come_out_without_decoding_a_frame() {
        let now = Instant::now();
        let mut c = open_client(now);
        c.handle_input(now, Input::Received(&[0x81, 0x02, b'h', b'i']));
        // An application that takes no messages leaves the frame undecoded.
        assert_eq!(c.poll_queued_output(), None);
        assert_eq!(c.buffered_input(), 4);
        c.handle_input(now, Input::TransportDown(TransportDown::Eof));
        // What arrived before the end is not lost, and the session's own
        // work (the disconnect, the reconnect it schedules) comes out.
        assert_eq!(c.poll_queued_output(), Some(Output::Message(Message::text("hi"))));
        assert!(matches!(
            c.poll_queued_output().and_then(Output::into_event),
            Some(Event::Disconnected { reconnect: Some(_), .. })
        ));
        assert_eq!(c.poll_queued_output(), None);
    }

    /// `open_client` with a keepalive: a ping every second, dead 2 s later.
    fn open_client_with_keepalive(now: Instant) -> Client {
        let config = Config::builder("ws://h/").ping(Duration::from_secs(1), Duration::from_secs(2)).build().unwrap();
        open_client_with(config, now)
    }

    fn run_timers(c: &mut Client, from: Instant, to: Instant) {
        let mut t = from;
        while t <= to {
            c.handle_timeout(t);
            t += Duration::from_millis(100);
        }
    }

    #[test]
    fn a_server_is_not_declared_dead_while_the_application_has_frames_to_take() {
        let t0 = Instant::now();
        let mut c = open_client_with_keepalive(t0);
        // A frame arrives and the application takes nothing for 10 s (its
        // driver stops reading): the pong may be behind that frame.
        c.handle_input(t0, Input::Received(&[0x81, 0x02, b'h', b'i']));
        run_timers(&mut c, t0, t0 + Duration::from_secs(10));
        assert_eq!(c.state(), State::Open, "no verdict while frames wait for the application");
        assert!(c.holds_untaken_frames());
        // It catches up; the server stays silent: dead within a timeout.
        assert_eq!(c.poll_output(), Some(Output::Message(Message::text("hi"))));
        assert!(!c.holds_untaken_frames());
        let t1 = t0 + Duration::from_secs(10);
        run_timers(&mut c, t1, t1 + Duration::from_secs(4));
        assert_ne!(c.state(), State::Open, "a silent server is found dead once the application caught up");
    }

    #[test]
    fn bytes_read_in_place_are_counted_and_keep_the_connection_alive() {
        let t0 = Instant::now();
        let mut c = open_client_with_keepalive(t0);
        let payload = vec![7u8; 40_000];
        let mut frame = vec![0x82, 126, 0, 0];
        frame[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(&payload);
        let before = c.stats().bytes_in;
        assert!(c.read_in_place(1 << 20).is_none(), "nothing offered before a large frame starts");
        c.handle_input(t0, Input::Received(&frame[..5000]));
        // The rest trickles in, read in place, over more than the dead-server
        // timeout: each piece is proof of life.
        let mut at = 5000;
        let mut t = t0;
        while at < frame.len() {
            t += Duration::from_millis(500);
            run_timers(&mut c, t - Duration::from_millis(500), t);
            let place = c.read_in_place(4000).expect("the frame's rest is offered");
            let n = place.len();
            place.copy_from_slice(&frame[at..at + n]);
            c.handle_input(t, Input::ReceivedInPlace(n));
            at += n;
            assert_eq!(c.state(), State::Open, "at {at}");
        }
        assert_eq!(c.stats().bytes_in - before, frame.len() as u64);
        let delivered = std::iter::from_fn(|| c.poll_output()).find_map(|o| match o {
            Output::Message(m) => Some(m),
            _ => None,
        });
        assert_eq!(delivered, Some(Message::binary(payload)));
        // Not connected: nothing offered, a stray count is ignored.
        c.handle_input(t, Input::TransportDown(TransportDown::Eof));
        assert!(c.read_in_place(1 << 20).is_none());
        let counted = c.stats().bytes_in;
        c.handle_input(t, Input::ReceivedInPlace(100));
        assert_eq!(c.stats().bytes_in, counted);
    }

    #[test]
    fn part_of_a_frame_is_no_excuse_for_a_dead_server() {
        let t0 = Instant::now();
        let mut c = open_client_with_keepalive(t0);
        // The server died in the middle of a frame.
        c.handle_input(t0, Input::Received(&[0x81, 0x05, b'h', b'i']));
        assert!(!c.holds_untaken_frames());
        run_timers(&mut c, t0, t0 + Duration::from_secs(4));
        assert_ne!(c.state(), State::Open);
    }

    #[test]
    fn the_read_hint_follows_the_frame_being_received_and_ends_with_the_connection() {
        let now = Instant::now();
        let mut c = open_client(now);
        assert_eq!(c.read_hint(), 0);
        // A 64 KiB binary frame: its header and 100 payload bytes.
        let mut start = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        start.extend_from_slice(&[7; 100]);
        c.handle_input(now, Input::Received(&start));
        assert_eq!(c.read_hint(), 65_436);
        assert_eq!(c.poll_output(), None);
        assert_eq!(c.read_hint(), 65_436);
        c.handle_input(now, Input::Received(&[7; 65_000]));
        assert_eq!(c.read_hint(), 436);
        c.handle_input(now, Input::Received(&[7; 436]));
        assert!(matches!(c.poll_output(), Some(Output::Message(m)) if m.len() == 65_536));
        assert_eq!(c.read_hint(), 0);
        c.handle_input(now, Input::Received(&start));
        c.handle_input(now, Input::TransportDown(TransportDown::Eof));
        assert_eq!(c.read_hint(), 0);
    }

    #[test]
    fn short_reason_cuts_on_a_character_boundary() {
        let long = "é".repeat(100);
        let r = short_reason(&long);
        assert!(r.len() <= 123 && r.len() % 2 == 0);
        assert_eq!(short_reason("x").as_str(), "x");
    }
}
