//! `nova demo`: an offline demonstration, self-contained and finite.
//!
//! A nova-testkit [`MockServer`] on 127.0.0.1 serves a market-data feed
//! ([`market`]) whose connections follow a script: dropped every few
//! seconds, one gone silent (a dead peer only keepalive can detect), one
//! upgrade refused with `503 Retry-After: 1`, one closed with 1012. A
//! nova-tokio client subscribes on every connection from the last sequence
//! number it saw ([`client`]) and checks that every tick arrives exactly once.
//! [`screen`] shows it as it happens.

mod client;
mod market;
mod screen;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nova_proto::{Backoff, Config, Disconnect, DisconnectKind, Error, Profile, ReconnectPolicy, Timeout};
use nova_testkit::{Behavior, Handshake, MockServer};
use nova_tokio::{Connector, Event, Events, Handle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::failure::{self, Failure};
use crate::output::{describe, human};
use crate::signal::{self, Stop};
use client::{Notice, Tracker, UNSUBSCRIBED, Unsubscribe};
use market::{Feed, INSTRUMENTS, Market};
use screen::Screen;

/// Time between two ticks of an instrument.
const TICK_EVERY: Duration = Duration::from_millis(20);
/// Ticks each instrument keeps for clients that resume (80 s of them).
const HISTORY: usize = 4096;
/// How often a feed connection sends what is due.
const FEED_TICK: Duration = Duration::from_millis(10);
/// The client's keepalive: a ping every half second, dead after a second
/// without any frame.
const PING_EVERY: Duration = Duration::from_millis(500);
const PONG_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect backoff: 100 ms doubling up to 2 s, with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A fixed seed: the same jitter on every run.
const SEED: [u8; 32] = [0x6e; 32];
/// How often the status line is refreshed.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Lines shown for each kind of problem before the rest is only counted.
const SHOWN_PROBLEMS: u64 = 5;

/// Runs the demo for `duration` and returns the exit code: 0 when every
/// tick arrived exactly once, 130/143 when interrupted.
///
/// # Errors
///
/// A failure (exit 1) when the checks found gaps, duplicates or ticks after
/// the unsubscribe, or when the embedded server cannot start.
pub(crate) async fn run(duration: Duration) -> Result<u8, Failure> {
    let start = Instant::now();
    let script = Script::for_duration(duration);
    let market = Arc::new(Mutex::new(Market::new(start.into_std(), TICK_EVERY, HISTORY)));
    let server = script
        .server(&market, duration)
        .map_err(|e| Failure::ended(format!("cannot start the demo's server on 127.0.0.1: {e}")))?;
    let url = server.url("/feed");
    let policy = ReconnectPolicy {
        max_attempts: None,
        // A connection that lasted a second was a good one: the next
        // reconnect starts from the shortest delay again.
        reset_after: Duration::from_secs(1),
        ..ReconnectPolicy::new(Backoff::exponential(BACKOFF_FIRST, BACKOFF_MAX, 0.25))
    };
    let config = Config::builder(&url)
        .profile(Profile::Financial)
        .reconnect(policy)
        .ping(PING_EVERY, PONG_TIMEOUT)
        .build()
        .map_err(|e| Failure::ended(failure::chain(&e)))?;
    let close_timeout = config.timeouts().close;
    let (handle, events) =
        Connector::new(config).seed(SEED).name("nova-demo").start().map_err(|e| Failure::ended(failure::chain(&e)))?;
    let mut demo = Demo {
        handle,
        screen: Screen::new(start),
        tracker: Tracker::new(),
        counts: Counts::default(),
        rate: Rate::default(),
        opens_seen: 0,
    };
    demo.intro(&url, &script, duration);
    let stops = signal::listen(close_timeout + Duration::from_secs(3));
    let deadlines = (start + duration, start + script.unsubscribe_at(duration));
    let (stopped, events) = demo.run(events, stops, deadlines).await;
    demo.close(events, close_timeout).await;
    stop_server(server).await;
    if let Some(e) = demo.screen.stdout_error() {
        return Err(Failure::ended(format!("cannot write to stdout: {e}")));
    }
    if demo.screen.is_closed() {
        // Its reader went away (`nova demo | head`): stop quietly.
        return Ok(0);
    }
    let result = demo.summary();
    match (stopped, result) {
        (Some(stop), _) => Ok(stop.exit_code()),
        (None, Ok(())) => Ok(0),
        (None, Err(problems)) => Err(Failure::ended(format!("the demo found problems: {problems}"))),
    }
}

/// The server's script, scaled to the demo's duration.
#[derive(Debug, Clone, Copy)]
struct Script {
    /// How long a connection lives before the server drops it.
    every: Duration,
}

impl Script {
    /// Six connection lifetimes per run, from 1 s to 4 s each.
    fn for_duration(duration: Duration) -> Script {
        Script { every: (duration / 6).clamp(Duration::from_secs(1), Duration::from_secs(4)) }
    }

    /// When the client unsubscribes from ETH-USD: two seconds (or a tenth
    /// of the run, if longer) before the end, in the last quarter.
    fn unsubscribe_at(&self, duration: Duration) -> Duration {
        duration.saturating_sub((duration / 10).max(Duration::from_secs(2)).min(duration / 4))
    }

    /// The mock server: connection 1 is dropped, 2 goes silent (and is
    /// dropped much later, should keepalive miss it), 3 is refused with 503
    /// and `Retry-After: 1`, 4 is closed with 1012, later ones are dropped.
    fn server(&self, market: &Arc<Mutex<Market>>, duration: Duration) -> std::io::Result<MockServer> {
        let every = self.every;
        let feed = || {
            let market = Arc::clone(market);
            Behavior::accept().handler(Some(FEED_TICK), move || Box::new(Feed::new(Arc::clone(&market))))
        };
        // Generously more than a connection per lifetime, however slow.
        let connections = u32::try_from(duration.as_secs() / every.as_secs().max(1)).unwrap_or(u32::MAX);
        MockServer::builder()
            .connection(feed().drop_after(every))
            .connection(feed().go_silent_after(every / 2).drop_after(every * 4))
            .connection(Behavior::refuse(503).handshake(Handshake::refuse(503).retry_after(1)))
            .connection(feed().close_after(every, 1012, "restarting"))
            .otherwise(feed().drop_after(every))
            .lifetime(duration + Duration::from_secs(30))
            .max_connections(connections.saturating_mul(3).saturating_add(32))
            .start()
    }
}

/// What the connections did, from the client's events.
#[derive(Debug, Default)]
struct Counts {
    opened: u64,
    reconnects: u64,
    refused: u64,
    dead: u64,
    server_closed: u64,
    dropped: u64,
}

/// Messages per second over the last second, from samples of the total.
#[derive(Debug, Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Records `total` messages at `now`; returns the rate over the last second.
    fn sample(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= Duration::from_secs(1) {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// The demo's client side: the session, the checks and the screen.
struct Demo {
    handle: Handle,
    screen: Screen,
    tracker: Tracker,
    counts: Counts,
    rate: Rate,
    /// `Event::Opened` seen so far; the session's own count runs ahead while
    /// the event of a newer connection is still queued.
    opens_seen: u64,
}

impl Demo {
    /// Prints what is about to happen.
    fn intro(&mut self, url: &str, script: &Script, duration: Duration) {
        let every = human(script.every);
        let lines = [
            format!("nova demo: a market-data feed on {url} and a Nova client, for {}", human(duration)),
            format!(
                "  feed:    {}, a tick every {} each, {HISTORY} ticks of history to resume from",
                INSTRUMENTS.join(" and "),
                human(TICK_EVERY)
            ),
            format!("  server:  drops each connection after {every}; the 2nd goes silent (a dead peer),"),
            "           the 3rd upgrade is refused with 503 Retry-After: 1, the 4th is closed with 1012".to_owned(),
            format!(
                "  client:  reconnects after {} doubling to {}, pings every {},",
                human(BACKOFF_FIRST),
                human(BACKOFF_MAX),
                human(PING_EVERY)
            ),
            "           resubscribes to each instrument from the last seq it saw".to_owned(),
            String::new(),
        ];
        for line in lines {
            self.screen.line(format_args!("{line}"));
        }
    }

    /// Runs until the end, a signal, or stdout closing. Returns the signal,
    /// if one stopped it, and the event stream for the close.
    async fn run(
        &mut self,
        mut events: Events,
        mut stops: mpsc::Receiver<Stop>,
        (end, unsubscribe_at): (Instant, Instant),
    ) -> (Option<Stop>, Events) {
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut unsubscribe_pending = true;
        loop {
            tokio::select! {
                biased;
                Some(stop) = stops.recv() => {
                    self.screen.event(format_args!("{}: ending the demo early", stop.name()));
                    return (Some(stop), events);
                }
                () = tokio::time::sleep_until(end) => return (None, events),
                () = tokio::time::sleep_until(unsubscribe_at), if unsubscribe_pending => {
                    unsubscribe_pending = false;
                    self.unsubscribe();
                }
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => return (None, events),
                },
                _ = status.tick() => self.refresh(),
            }
            if self.screen.is_closed() {
                return (None, events);
            }
        }
    }

    /// Time to unsubscribe: now if a subscribed connection is open, else on
    /// the next one.
    fn unsubscribe(&mut self) {
        // Open, and subscribed: a connection whose `Opened` is still queued
        // has not had its subscribe requests yet, and an unsubscribe ahead
        // of them would be refused. It gets the unsubscribe after them.
        let open = self.handle.state() == nova_proto::State::Open && self.handle.stats().opens == self.opens_seen;
        let channel = INSTRUMENTS[UNSUBSCRIBED];
        match self.tracker.unsubscribe_due(open) {
            Some(request) => {
                self.screen.event(format_args!("unsubscribing from {channel}: {request}"));
                let _ = self.handle.try_send(request);
            }
            None => self.screen.event(format_args!("time to unsubscribe from {channel}: on the next connection")),
        }
    }

    /// Checks a message, or shows and counts a change of the session.
    fn on_event(&mut self, event: Event) {
        match event {
            Event::Message(message) => match message.as_text() {
                Some(text) => {
                    if let Some(notice) = self.tracker.on_text(text, self.screen.elapsed()) {
                        self.notice(notice);
                    }
                }
                None => self.tracker.other += 1,
            },
            Event::Opened(opened) => {
                self.opens_seen += 1;
                self.counts.opened += 1;
                let attempt = if opened.attempt > 0 {
                    self.counts.reconnects += 1;
                    format!(" (attempt {})", opened.attempt)
                } else {
                    String::new()
                };
                if self.handle.stats().opens != self.opens_seen {
                    // A newer connection replaced this one already: it
                    // subscribes at its own `Opened` (subscribing here too
                    // would replay the missed ticks twice).
                    self.screen.event(format_args!("connected{attempt}; lost again at once"));
                    return;
                }
                let requests = self.tracker.on_open(self.screen.elapsed());
                let subscriptions = describe_subscriptions(&requests);
                self.screen.event(format_args!("connected{attempt}; {subscriptions}"));
                for request in requests {
                    // Fails only if the connection is already gone: the
                    // next one subscribes again.
                    if self.handle.try_send(request).is_err() {
                        break;
                    }
                }
                if self.tracker.unsubscribe == Unsubscribe::Sent && opened.attempt > 0 {
                    // `on_open` sent the unsubscribe that was due.
                    let channel = INSTRUMENTS[UNSUBSCRIBED];
                    self.screen.event(format_args!("unsubscribing from {channel}"));
                }
            }
            Event::Disconnected { cause, reconnect } => {
                self.count_disconnect(&cause);
                let reason = describe(&cause, Some(PONG_TIMEOUT));
                match reconnect {
                    Some(next) => self.screen.event(format_args!(
                        "disconnected: {reason}; reconnecting in {} (attempt {})",
                        human(next.delay),
                        next.attempt
                    )),
                    None => self.screen.event(format_args!("disconnected: {reason}")),
                }
            }
            Event::Closed(closed) => {
                self.screen.event(format_args!("session closed with {}", closed.code));
            }
            _ => {}
        }
    }

    /// Counts a disconnect by its cause, for the summary.
    fn count_disconnect(&mut self, cause: &Disconnect) {
        let counter = match cause {
            // Only the keepalive's timeout finds a dead peer; a connect or
            // handshake timeout is a failed attempt like the others.
            Disconnect::Failed(Error::Timeout(Timeout::Pong)) => &mut self.counts.dead,
            _ => match cause.kind() {
                DisconnectKind::Rejected => &mut self.counts.refused,
                DisconnectKind::ServerClose => &mut self.counts.server_closed,
                _ => &mut self.counts.dropped,
            },
        };
        *counter += 1;
    }

    /// Shows a notice; problems only up to [`SHOWN_PROBLEMS`] of a kind.
    fn notice(&mut self, notice: Notice) {
        let t = &self.tracker;
        match notice {
            Notice::Subscribed { channel, from, replayed, resumed: false } => {
                let _ = replayed;
                self.screen.event(format_args!("{channel}: subscribed, live from seq {from}"));
            }
            Notice::Subscribed { channel, from, replayed, resumed: true } => {
                self.screen
                    .event(format_args!("{channel}: resumed from seq {from}, {replayed} missed tick(s) replayed"));
            }
            Notice::Unsubscribed { channel } => {
                self.screen.event(format_args!("{channel}: unsubscribed; from now on no {channel} tick may arrive"));
            }
            Notice::Gap { channel, after, seq } if t.gaps() <= SHOWN_PROBLEMS => {
                self.screen.event(format_args!("GAP in {channel}: seq {seq} after {after}"));
            }
            Notice::Duplicate { channel, after, seq } if t.duplicates() <= SHOWN_PROBLEMS => {
                self.screen.event(format_args!("DUPLICATE in {channel}: seq {seq} after {after}"));
            }
            Notice::AfterUnsubscribe { seq } if t.after_unsubscribe <= SHOWN_PROBLEMS => {
                let channel = INSTRUMENTS[UNSUBSCRIBED];
                self.screen.event(format_args!("UNEXPECTED {channel} tick (seq {seq}) after the unsubscribe"));
            }
            Notice::Error(error) if t.errors <= SHOWN_PROBLEMS => {
                self.screen.event(format_args!("server error: {error}"));
            }
            _ => {}
        }
    }

    /// Redraws the status line.
    fn refresh(&mut self) {
        let now = Instant::now();
        let rate = self.rate.sample(now, self.tracker.messages);
        let state = self.handle.state();
        let up = self.handle.stats().current_uptime(now.into_std());
        let state = match state {
            nova_proto::State::Open => format!("open {:>4.1}s", up.as_secs_f64()),
            other => format!("{other:<9}"),
        };
        let seqs: Vec<String> = INSTRUMENTS
            .iter()
            .zip(&self.tracker.channels)
            .map(|(name, c)| format!("{name} #{}", c.last.unwrap_or(0)))
            .collect();
        let status = format!(
            "[{:>6.1}s] {state} | reconnects {} | {rate:>4.0} msg/s | {}",
            self.screen.elapsed().as_secs_f64(),
            self.counts.reconnects,
            seqs.join("  ")
        );
        self.screen.status(status);
    }

    /// Closes the session gracefully and waits (bounded) for the end,
    /// still checking what arrives meanwhile.
    async fn close(&mut self, mut events: Events, close_timeout: Duration) {
        self.screen.event(format_args!("demo over: closing the session with 1000"));
        let _ = self.handle.close(nova_proto::CloseCode::NORMAL, "demo over");
        let deadline = Instant::now() + close_timeout + Duration::from_secs(1);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        let closed = matches!(event, Event::Closed(_));
                        self.on_event(event);
                        if closed {
                            break;
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    self.screen.event(format_args!("the close did not finish within {}", human(close_timeout)));
                    break;
                }
            }
        }
        self.screen.clear_status();
    }

    /// Prints the summary; `Err` lists the problems found.
    fn summary(&mut self) -> Result<(), String> {
        let t = &self.tracker;
        let c = &self.counts;
        let mut lines = vec![
            String::new(),
            "summary".to_owned(),
            format!("  duration: {}", human(self.screen.elapsed())),
            format!("  messages: {} ({} ticks, {} other)", t.messages, t.ticks(), t.other),
        ];
        for (name, channel) in INSTRUMENTS.iter().zip(&t.channels) {
            let range = match (channel.first, channel.last) {
                (Some(first), Some(last)) => format!(", seq {first} to {last}"),
                _ => String::new(),
            };
            lines.push(format!("  {name}: {} ticks{range}", channel.ticks));
        }
        lines.push(format!(
            "  connections: {} opened, {} reconnects; {} dropped by the server, {} closed by it",
            c.opened, c.reconnects, c.dropped, c.server_closed
        ));
        lines.push(format!(
            "  refused handshakes: {}{}",
            c.refused,
            if c.refused > 0 { " (503, Retry-After: 1)" } else { "" }
        ));
        lines.push(format!("  dead connections detected by keepalive: {}", c.dead));
        let missing: u64 = t.channels.iter().map(|c| c.missing).sum();
        lines.push(match t.gaps() {
            0 => "  gaps: none".to_owned(),
            n => format!("  gaps: {n} ({missing} ticks missed)"),
        });
        lines.push(match t.duplicates() {
            0 => "  duplicates: none".to_owned(),
            n => format!("  duplicates: {n}"),
        });
        let channel = INSTRUMENTS[UNSUBSCRIBED];
        lines.push(match (t.unsubscribe, t.after_unsubscribe) {
            (Unsubscribe::Acked(at), 0) => {
                format!("  unsubscribe: {channel} acknowledged at {}, no tick after it", human(at))
            }
            (Unsubscribe::NotResubscribed(at), 0) => {
                format!("  unsubscribe: {channel} not resubscribed after {}, no tick after it", human(at))
            }
            (Unsubscribe::Acked(_) | Unsubscribe::NotResubscribed(_), n) => {
                format!("  unsubscribe: {n} {channel} tick(s) arrived after it")
            }
            _ => format!("  unsubscribe: {channel} not acknowledged before the end"),
        });
        let mut problems = Vec::new();
        if t.ticks() == 0 {
            problems.push("no tick received".to_owned());
        }
        if t.gaps() > 0 {
            problems.push(format!("{} gap(s)", t.gaps()));
        }
        if t.duplicates() > 0 {
            problems.push(format!("{} duplicate(s)", t.duplicates()));
        }
        if t.after_unsubscribe > 0 {
            problems.push(format!("{} tick(s) after the unsubscribe", t.after_unsubscribe));
        }
        if t.errors > 0 {
            problems.push(format!("{} error answer(s) from the server", t.errors));
        }
        lines.push(match problems.is_empty() {
            true => {
                format!("  result: ok, every tick arrived exactly once and in order across {} reconnects", c.reconnects)
            }
            false => format!("  result: FAILED: {}", problems.join(", ")),
        });
        for line in lines {
            self.screen.line(format_args!("{line}"));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join(", ")) }
    }
}

/// What the subscribe requests among `requests` ask for:
/// `resubscribing: BTC-USD from seq 201, ETH-USD from seq 199`.
fn describe_subscriptions(requests: &[String]) -> String {
    let mut live = Vec::new();
    let mut resumed = Vec::new();
    for request in requests {
        let Ok(request) = serde_json::from_str::<serde_json::Value>(request) else { continue };
        if request["op"] != "subscribe" {
            continue;
        }
        let channel = request["channel"].as_str().unwrap_or("?");
        match request["from"].as_u64() {
            Some(from) => resumed.push(format!("{channel} from seq {from}")),
            None => live.push(channel.to_owned()),
        }
    }
    let mut parts = Vec::new();
    if !resumed.is_empty() {
        parts.push(format!("resubscribing: {}", resumed.join(", ")));
    }
    if !live.is_empty() {
        parts.push(format!("subscribing: {} (live)", live.join(", ")));
    }
    parts.join("; ")
}

/// Stops the mock server off the runtime's threads, waiting a little for
/// its threads to end.
async fn stop_server(server: MockServer) {
    let stopping = tokio::task::spawn_blocking(move || server.shutdown());
    let _ = tokio::time::timeout(Duration::from_secs(3), stopping).await;
}
