//! Per-connection behaviour of the mock server: a declarative script that each
//! connection follows on its own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_proto::Message;

use crate::engine::{Action, Core, Handshake, Incoming, Script};
use crate::record::Recorder;

type Reply = Arc<dyn Fn(&Message) -> Vec<Message> + Send + Sync>;
type Generator = Arc<dyn Fn(u64) -> Message + Send + Sync>;
type HandlerFactory = Arc<dyn Fn() -> Box<dyn Handler> + Send + Sync>;

/// A connection's own logic, for a mock server with state: subscriptions,
/// sessions, a sequence to resume from. [`Behavior::handler`] makes one per
/// connection; state shared across connections (the market a feed reports)
/// lives behind an `Arc` the factory clones into each.
///
/// Every method appends the messages to send to `out`. `now` is the server's
/// clock.
///
/// ```
/// use std::time::{Duration, Instant};
/// use nova_proto::Message;
/// use nova_testkit::{Behavior, Handler};
///
/// /// Counts up every tick once the client said "start".
/// #[derive(Default)]
/// struct Counter { started: bool, n: u64 }
///
/// impl Handler for Counter {
///     fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
///         self.started |= message.as_text() == Some("start");
///         out.push(Message::text("ok"));
///     }
///     fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
///         if self.started {
///             self.n += 1;
///             out.push(Message::text(self.n.to_string()));
///         }
///     }
/// }
///
/// let behavior = Behavior::accept().handler(Some(Duration::from_millis(10)), || Box::new(Counter::default()));
/// # let _ = behavior;
/// ```
pub trait Handler: Send {
    /// The connection opened (the upgrade was answered with 101).
    fn on_open(&mut self, _now: Instant, _out: &mut Vec<Message>) {}
    /// A message from the client.
    fn on_message(&mut self, now: Instant, message: &Message, out: &mut Vec<Message>);
    /// Every tick of the interval given to [`Behavior::handler`]. Ticks wait
    /// while the client is not reading what it was sent.
    fn on_tick(&mut self, _now: Instant, _out: &mut Vec<Message>) {}
}

/// What one connection of the mock server does.
///
/// Built from [`Behavior::accept`] (or [`Behavior::refuse`], ...) and refined
/// with builder methods; every timer counts from the moment the upgrade is
/// answered.
///
/// ```
/// use std::time::Duration;
/// use nova_proto::Message;
/// use nova_testkit::Behavior;
///
/// // A feed: pushes a tick every 10 ms, answers requests, and drops the
/// // connection after 50 messages.
/// let feed = Behavior::accept()
///     .push(Duration::from_millis(10), None, |n| Message::text(format!("{{\"seq\":{n}}}")))
///     .reply(|request| vec![Message::text(format!("ack {}", request.as_text().unwrap_or("")))])
///     .drop_after_messages(50);
/// // A dead peer: accepts, then stops answering anything after a second.
/// let dead = Behavior::accept().go_silent_after(Duration::from_secs(1));
/// # let _ = (feed, dead);
/// ```
#[derive(Clone, Default)]
pub struct Behavior {
    handshake: Handshake,
    echo: bool,
    reply: Option<Reply>,
    on_open: Vec<Message>,
    raw: Vec<(Duration, Vec<u8>)>,
    push: Option<(Duration, Option<u64>, Generator)>,
    handler: Option<(Option<Duration>, HandlerFactory)>,
    ping_every: Option<Duration>,
    ignore_pings: bool,
    silent_after: Option<Duration>,
    drop_after_messages: Option<usize>,
    drop_after_received: Option<usize>,
    drop_after: Option<Duration>,
    reset_after: Option<Duration>,
    close_after: Option<(Duration, u16, String)>,
}

impl fmt::Debug for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behavior")
            .field("handshake", &self.handshake)
            .field("echo", &self.echo)
            .field("reply", &self.reply.is_some())
            .field("on_open", &self.on_open)
            .field("raw", &self.raw.iter().map(|(d, b)| (d, b.len())).collect::<Vec<_>>())
            .field("push", &self.push.as_ref().map(|(i, n, _)| (i, n)))
            .field("handler", &self.handler.as_ref().map(|(tick, _)| tick))
            .field("ping_every", &self.ping_every)
            .field("ignore_pings", &self.ignore_pings)
            .field("silent_after", &self.silent_after)
            .field("drop_after_messages", &self.drop_after_messages)
            .field("drop_after_received", &self.drop_after_received)
            .field("drop_after", &self.drop_after)
            .field("reset_after", &self.reset_after)
            .field("close_after", &self.close_after)
            .finish()
    }
}

impl Behavior {
    /// Accept the upgrade, answer pings, nothing else.
    pub fn accept() -> Behavior {
        Behavior::default()
    }

    /// Refuse the upgrade with `status` and close.
    pub fn refuse(status: u16) -> Behavior {
        Behavior { handshake: Handshake::refuse(status), ..Behavior::default() }
    }

    /// Answer the upgrade as `handshake` says (refusals, wrong keys, delays,
    /// required subprotocols or headers).
    pub fn handshake(mut self, handshake: Handshake) -> Behavior {
        self.handshake = handshake;
        self
    }

    /// Echo every message back.
    pub fn echo(mut self) -> Behavior {
        self.echo = true;
        self
    }

    /// Answer each message with what `reply` returns (for request/response).
    pub fn reply(mut self, reply: impl Fn(&Message) -> Vec<Message> + Send + Sync + 'static) -> Behavior {
        self.reply = Some(Arc::new(reply));
        self
    }

    /// Send `message` as soon as the connection opens.
    pub fn send_on_open(mut self, message: impl Into<Message>) -> Behavior {
        self.on_open.push(message.into());
        self
    }

    /// Send `bytes` as they are, `after` the upgrade (malformed frames, say).
    pub fn send_raw_after(mut self, after: Duration, bytes: impl Into<Vec<u8>>) -> Behavior {
        self.raw.push((after, bytes.into()));
        self
    }

    /// Push `message(n)` for n = 0, 1, ... every `interval` (first after one
    /// interval), `count` times or forever.
    pub fn push(
        mut self,
        interval: Duration,
        count: Option<u64>,
        message: impl Fn(u64) -> Message + Send + Sync + 'static,
    ) -> Behavior {
        self.push = Some((interval.max(Duration::from_micros(100)), count, Arc::new(message)));
        self
    }

    /// Give each connection its own [`Handler`], made by `factory` when the
    /// connection opens, and call its `on_tick` every `tick` if set. It runs
    /// alongside the rest of the behaviour (echo, replies, pushes, faults).
    pub fn handler(
        mut self,
        tick: Option<Duration>,
        factory: impl Fn() -> Box<dyn Handler> + Send + Sync + 'static,
    ) -> Behavior {
        let tick = tick.map(|t| t.max(Duration::from_micros(100)));
        self.handler = Some((tick, Arc::new(factory)));
        self
    }

    /// Send a ping every `interval`; the connection log says which got a pong.
    pub fn ping_every(mut self, interval: Duration) -> Behavior {
        self.ping_every = Some(interval.max(Duration::from_micros(100)));
        self
    }

    /// Do not answer pings (everything else works): a peer that only looks alive.
    pub fn ignore_pings(mut self) -> Behavior {
        self.ignore_pings = true;
        self
    }

    /// After `after`, stop sending anything and answering pings, without
    /// closing: a dead peer behind a half-open connection.
    pub fn go_silent_after(mut self, after: Duration) -> Behavior {
        self.silent_after = Some(after);
        self
    }

    /// Drop the TCP connection (no close handshake) once the server has sent
    /// `n` messages on it.
    pub fn drop_after_messages(mut self, n: usize) -> Behavior {
        self.drop_after_messages = Some(n);
        self
    }

    /// Drop the TCP connection once the client has sent `n` messages on it.
    pub fn drop_after_received(mut self, n: usize) -> Behavior {
        self.drop_after_received = Some(n);
        self
    }

    /// Drop the TCP connection (no close handshake) `after` the upgrade.
    pub fn drop_after(mut self, after: Duration) -> Behavior {
        self.drop_after = Some(after);
        self
    }

    /// Reset the TCP connection `after` the upgrade.
    pub fn reset_after(mut self, after: Duration) -> Behavior {
        self.reset_after = Some(after);
        self
    }

    /// Close with `code` and `reason` `after` the upgrade.
    pub fn close_after(mut self, after: Duration, code: u16, reason: impl Into<String>) -> Behavior {
        self.close_after = Some((after, code, reason.into()));
        self
    }
}

/// Timers and counters of one connection following a [`Behavior`].
struct Follower {
    behavior: Behavior,
    handler: Option<Box<dyn Handler>>,
    tick_at: Option<Instant>,
    answer_at: Option<Instant>,
    push_at: Option<Instant>,
    pushed: u64,
    ping_at: Option<Instant>,
    pings: u64,
    silent_at: Option<Instant>,
    silent: bool,
    drop_at: Option<Instant>,
    reset_at: Option<Instant>,
    close_at: Option<Instant>,
    raw: Vec<(Instant, Vec<u8>)>,
    sent: usize,
    received: usize,
}

impl Follower {
    fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        [
            self.answer_at,
            self.push_at,
            self.tick_at,
            self.ping_at,
            self.silent_at,
            self.drop_at,
            self.reset_at,
            self.close_at,
        ]
        .into_iter()
        .flatten()
        .chain(self.raw.iter().map(|(at, _)| *at))
    }
}

/// The mock server's script when each connection follows a [`Behavior`]:
/// connection *n* follows the *n*-th, or the default once they run out.
pub(crate) struct Behaviors {
    core: Core,
    list: Vec<Behavior>,
    default: Behavior,
    followers: BTreeMap<u32, Follower>,
}

impl Behaviors {
    pub(crate) fn new(start: Instant, list: Vec<Behavior>, default: Behavior) -> Behaviors {
        Behaviors { core: Core::new(start), list, default, followers: BTreeMap::new() }
    }

    fn opened(&mut self, now: Instant, id: u32) {
        let Some(f) = self.followers.get_mut(&id) else { return };
        let b = f.behavior.clone();
        f.push_at = b.push.as_ref().map(|(interval, _, _)| now + *interval);
        f.ping_at = b.ping_every.map(|i| now + i);
        f.silent_at = b.silent_after.map(|d| now + d);
        f.drop_at = b.drop_after.map(|d| now + d);
        f.reset_at = b.reset_after.map(|d| now + d);
        f.close_at = b.close_after.as_ref().map(|(d, _, _)| now + *d);
        f.raw = b.raw.iter().map(|(d, bytes)| (now + *d, bytes.clone())).collect();
        if b.ignore_pings {
            self.core.set_answer_pings(id, false);
        }
        for m in &b.on_open {
            self.send(now, id, m);
        }
        if let Some((tick, factory)) = &b.handler {
            let mut handler = factory();
            let mut out = Vec::new();
            handler.on_open(now, &mut out);
            if let Some(f) = self.followers.get_mut(&id) {
                f.handler = Some(handler);
                f.tick_at = tick.map(|t| now + t);
            }
            for m in &out {
                self.send(now, id, m);
            }
        }
    }

    /// Sends a message and applies `drop_after_messages`.
    fn send(&mut self, now: Instant, id: u32, message: &Message) {
        let Some(f) = self.followers.get_mut(&id) else { return };
        if f.silent {
            return;
        }
        f.sent += 1;
        let drop = f.behavior.drop_after_messages.is_some_and(|n| f.sent >= n);
        self.core.send(now, id, message);
        if drop {
            self.core.drop_conn(now, id);
        }
    }

    fn fire(&mut self, now: Instant, id: u32) {
        let due = |at: &mut Option<Instant>| at.is_some_and(|t| t <= now) && at.take().is_some();
        let Some(f) = self.followers.get_mut(&id) else { return };
        if due(&mut f.answer_at) {
            let handshake = f.behavior.handshake.clone();
            if self.core.answer(now, id, &handshake) == Some(101) {
                self.opened(now, id);
            }
            return self.fire(now, id);
        }
        if due(&mut f.silent_at) {
            f.silent = true;
            self.core.set_answer_pings(id, false);
        }
        let raw: Vec<Vec<u8>> = {
            let (now_due, later): (Vec<_>, Vec<_>) = f.raw.drain(..).partition(|(at, _)| *at <= now);
            f.raw = later;
            now_due.into_iter().map(|(_, b)| b).collect()
        };
        let silent = f.silent;
        if !silent {
            for bytes in raw {
                self.core.send_raw(now, id, &bytes);
            }
        }
        let Some(f) = self.followers.get_mut(&id) else { return };
        if f.push_at.is_some_and(|t| t <= now) && self.core.is_backlogged(id) {
            // The client is not reading: the tick slips, as it would on a
            // server that blocks on a full socket.
            f.push_at = f.behavior.push.as_ref().map(|(interval, _, _)| now + *interval);
        }
        if due(&mut f.push_at) {
            if let Some((interval, count, generate)) = f.behavior.push.clone() {
                let n = f.pushed;
                f.pushed += 1;
                if count.is_none_or(|c| f.pushed < c) {
                    f.push_at = Some(now + interval);
                }
                let message = generate(n);
                self.send(now, id, &message);
            }
        }
        let Some(f) = self.followers.get_mut(&id) else { return };
        if f.tick_at.is_some_and(|t| t <= now) {
            let tick = f.behavior.handler.as_ref().and_then(|(tick, _)| *tick);
            f.tick_at = tick.map(|t| now + t);
            // Like a push, a tick slips while the client is not reading.
            if !self.core.is_backlogged(id) {
                let mut out = Vec::new();
                if let Some(handler) = f.handler.as_mut() {
                    handler.on_tick(now, &mut out);
                }
                for m in &out {
                    self.send(now, id, m);
                }
            }
        }
        let Some(f) = self.followers.get_mut(&id) else { return };
        if due(&mut f.ping_at) {
            if let Some(interval) = f.behavior.ping_every {
                f.ping_at = Some(now + interval);
                f.pings += 1;
                if !f.silent {
                    let payload = Bytes::from(format!("nova-testkit ping {}", f.pings));
                    self.core.ping(now, id, payload);
                }
            }
        }
        let Some(f) = self.followers.get_mut(&id) else { return };
        if due(&mut f.close_at) {
            if let Some((_, code, reason)) = f.behavior.close_after.clone() {
                self.core.close(now, id, code, &reason);
            }
        }
        let Some(f) = self.followers.get_mut(&id) else { return };
        if due(&mut f.drop_at) {
            self.core.drop_conn(now, id);
        }
        let Some(f) = self.followers.get_mut(&id) else { return };
        if due(&mut f.reset_at) {
            self.core.reset(now, id);
        }
    }
}

impl Script for Behaviors {
    fn set_backlogged(&mut self, id: u32, backlogged: bool) {
        self.core.set_backlogged(id, backlogged);
    }

    fn connected(&mut self, now: Instant, id: u32) {
        self.core.connected(now, id);
        let behavior = self.list.get(id as usize - 1).cloned().unwrap_or_else(|| self.default.clone());
        self.followers.insert(
            id,
            Follower {
                behavior,
                handler: None,
                tick_at: None,
                answer_at: None,
                push_at: None,
                pushed: 0,
                ping_at: None,
                pings: 0,
                silent_at: None,
                silent: false,
                drop_at: None,
                reset_at: None,
                close_at: None,
                raw: Vec::new(),
                sent: 0,
                received: 0,
            },
        );
    }

    fn received(&mut self, now: Instant, id: u32, bytes: &[u8]) {
        for incoming in self.core.receive(now, id, bytes) {
            let Some(f) = self.followers.get_mut(&id) else { return };
            match incoming {
                Incoming::Request(_) if !f.behavior.handshake.is_silent() => {
                    f.answer_at = Some(now + f.behavior.handshake.delay_of());
                    self.fire(now, id);
                }
                Incoming::Message(message) => {
                    f.received += 1;
                    let drop = f.behavior.drop_after_received.is_some_and(|n| f.received >= n);
                    let mut replies = Vec::new();
                    if f.behavior.echo {
                        replies.push(message.clone());
                    }
                    if let Some(reply) = &f.behavior.reply {
                        replies.extend(reply(&message));
                    }
                    if let Some(handler) = f.handler.as_mut() {
                        handler.on_message(now, &message, &mut replies);
                    }
                    for r in &replies {
                        self.send(now, id, r);
                    }
                    if drop {
                        self.core.drop_conn(now, id);
                    }
                }
                _ => {}
            }
        }
    }

    fn disconnected(&mut self, now: Instant, id: u32) {
        self.core.disconnected(now, id);
        self.followers.remove(&id);
    }

    fn timeout(&mut self, now: Instant) {
        let ids: Vec<u32> = self.followers.keys().copied().collect();
        for id in ids {
            if !self.core.is_up(id) {
                self.followers.remove(&id);
                continue;
            }
            self.fire(now, id);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.followers.iter().filter(|(id, _)| self.core.is_up(**id)).flat_map(|(_, f)| f.deadlines()).min()
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.core.poll_action()
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        None
    }

    fn recorder(&self) -> &Recorder {
        &self.core.rec
    }
}
