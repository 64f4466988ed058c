//! `nova connect`: a terminal session that stays up.
//!
//! The session is a nova-tokio [`Connector`] started without waiting, so a
//! server that is down at start is retried like any later disconnect. One
//! loop reacts to the session's events, stdin lines, signals and a retry
//! timer; nothing else sends, so the order on every connection is: the
//! `--send` messages, then queued lines, then new lines.
//!
//! With `--platform` (see [`platform`]) the session runs the platform's
//! adapter: the loop also reads the `--subscribe` streams (ahead of the
//! events), reports the behaviour layer's events, and sends the `--send`
//! messages and lines once the session is ready rather than open.

mod gaps;
mod outbox;
pub(crate) mod platform;
mod setup;
mod stdin;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use nova_proto::session::{SubscribeOptions, SubscriptionId};
use nova_proto::{Closed, Disconnect, DisconnectKind, Message, SendError, State, Termination, UnsentReason};
use nova_tokio::{Connector, Event, Events, Handle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ConnectArgs;
use crate::failure::Failure;
use crate::output::{Printer, Status, describe, human};
use crate::signal::{self, Stop};
use outbox::Outbox;
use stdin::Input;

/// Lines kept while disconnected; beyond it stdin is not read until a
/// connection takes some. (Lines given back by a dropped connection may
/// still overflow it: then the oldest are dropped, with a warning.)
const QUEUE_LINES: usize = 10_000;
/// Payload bytes kept while disconnected, likewise: 10000 long lines must
/// not take gigabytes.
const QUEUE_BYTES: usize = 64 << 20;
/// Payload bytes handed to the session and not written yet above which
/// lines wait (the server reads slower than stdin produces).
const SEND_HIGH_WATER: usize = 1 << 20;
/// How soon to try again when the session cannot take a line yet.
const RETRY: Duration = Duration::from_millis(10);
/// Time allowed beyond the close timeout before giving up on a close.
const CLOSE_MARGIN: Duration = Duration::from_secs(1);

/// Runs `nova connect` until stdin ends, a signal, or the session ends for
/// good. Returns the exit code.
///
/// # Errors
///
/// A usage failure for a configuration that cannot work; a failure with
/// exit code 1 when the session ended by itself (the reconnect policy gave
/// up or did not retry) or stdout failed.
pub(crate) async fn run(args: ConnectArgs) -> Result<u8, Failure> {
    let mut setup = setup::prepare(&args)?;
    let status = Status::new(args.quiet);
    let close_timeout = setup.config.timeouts().close;
    let keepalive_timeout = setup.config.keepalive().map(|k| k.timeout);
    let max_line = setup.config.limits().max_message_size;
    let outbox = Outbox::new(
        args.send,
        outbox::Bounds {
            lines: QUEUE_LINES,
            bytes: QUEUE_BYTES,
            session_messages: setup.config.outbound().max_messages,
            session_bytes: setup.config.outbound().max_bytes,
            max_message: max_line,
        },
    );
    let stdin = match args.no_stdin {
        true => None,
        false => Some(stdin::spawn(max_line).map_err(|e| Failure::ended(format!("cannot read stdin: {e}")))?),
    };
    let mut connector = Connector::new(Arc::clone(&setup.config)).tls(setup.tls).name("nova-cli");
    if let Some(platform) = &mut setup.platform {
        connector = platform.attach(connector);
    }
    let (handle, events) = connector.start().map_err(setup::start_failure)?;
    status.line(format_args!("connecting to {}", setup.shown));
    // Subscriptions wait for the session to be ready, and are restored by
    // it after every reconnect; their data is read with the events.
    let mut data = SelectAll::new();
    let platform = match setup.platform {
        Some(platform) => {
            let mut names = BTreeMap::new();
            for (given, topic) in platform.topics() {
                let subscription = handle
                    .subscribe(topic.clone(), SubscribeOptions::default())
                    .map_err(|e| Failure::ended(format!("cannot subscribe to {given}: {e}")))?;
                let id = subscription.id();
                names.insert(id, given.clone());
                data.push(subscription.map(move |message| (id, message)).boxed());
            }
            Some(platform.live(names))
        }
        None => None,
    };
    // After a first Ctrl-C, a close that hangs still ends in bounded time.
    let stops = signal::listen(close_timeout + CLOSE_MARGIN * 2);
    let session = Session {
        handle,
        status,
        printer: Some(Printer::new(args.json, args.binary_mode)),
        outbox,
        shown: setup.shown,
        close_timeout,
        keepalive_timeout,
        opens_seen: 0,
        connected: false,
        reading: stdin.is_some(),
        input_done: false,
        warned_drop: false,
        closing: None,
        retry_at: None,
        last_cause: None,
        lost: 0,
        platform,
    };
    session.run(events, stops, stdin, data).await
}

/// A close the CLI asked for, and what to exit with once it is done.
#[derive(Debug)]
struct Closing {
    result: Result<u8, Failure>,
    deadline: Instant,
}

/// The loop's state.
struct Session {
    handle: Handle,
    status: Status,
    /// `None` once stdout is gone.
    printer: Option<Printer>,
    outbox: Outbox,
    shown: String,
    close_timeout: Duration,
    keepalive_timeout: Option<Duration>,
    /// `Event::Opened` seen so far; the session's own count (`Stats::opens`)
    /// runs ahead when a newer connection opened whose event is still queued.
    opens_seen: u64,
    /// The last connection event was `Opened`.
    connected: bool,
    /// Stdin is still being read.
    reading: bool,
    /// Stdin ended: close once every line went out.
    input_done: bool,
    /// Warned about dropping lines since the last connection opened.
    warned_drop: bool,
    closing: Option<Closing>,
    retry_at: Option<Instant>,
    last_cause: Option<Disconnect>,
    /// Lines that will never be sent (the session ended with them).
    lost: u64,
    /// `--platform`: the behaviour layer's state.
    platform: Option<platform::Live>,
}

/// Every subscription's data, tagged with its id.
type Data = SelectAll<BoxStream<'static, (SubscriptionId, Message)>>;

impl Session {
    /// The loop: one event, stdin line, signal or timer at a time, then
    /// whatever it made possible (sending queued lines, closing).
    async fn run(
        mut self,
        mut events: Events,
        mut stops: mpsc::Receiver<Stop>,
        mut stdin: Option<mpsc::Receiver<Input>>,
        mut data: Data,
    ) -> Result<u8, Failure> {
        loop {
            let wants_input = self.wants_input();
            let retry_at = self.retry_at;
            let deadline = self.closing.as_ref().map(|c| c.deadline);
            tokio::select! {
                biased;
                Some(stop) = stops.recv() => self.on_stop(stop),
                // Data before events: what a subscription received before a
                // drop is printed before the drop is reported.
                Some((id, message)) = data.next(), if !data.is_empty() => self.on_data(id, &message),
                event = events.recv() => match event {
                    Some(event) => {
                        if let Some(result) = self.on_event(event) {
                            return result;
                        }
                    }
                    None => return self.ended_without_close(),
                },
                input = recv_input(&mut stdin), if wants_input => self.on_input(input),
                () = sleep_until(retry_at), if retry_at.is_some() => self.retry_at = None,
                () = sleep_until(deadline), if deadline.is_some() => return self.close_timed_out(),
            }
            self.pump();
            self.finish_input();
        }
    }

    /// Whether to take a stdin line now. A full queue means the server is
    /// slower than stdin, or away: stop reading, so whatever writes into
    /// nova waits (a pipe fills and blocks its writer) and nothing is lost.
    fn wants_input(&self) -> bool {
        self.reading && self.closing.is_none() && !self.outbox.is_full()
    }

    /// The first Ctrl-C or SIGTERM: close gracefully, exit with its code.
    fn on_stop(&mut self, stop: Stop) {
        if self.closing.is_none() {
            self.status.line(format_args!("{}: closing the session", stop.name()));
            self.begin_close(Ok(stop.exit_code()));
        }
    }

    /// Starts the graceful close (1000); the loop ends at `Event::Closed`
    /// or at the deadline.
    fn begin_close(&mut self, result: Result<u8, Failure>) {
        if self.closing.is_some() {
            return;
        }
        self.reading = false;
        // 1000 with an empty reason is always valid.
        let _ = self.handle.close(nova_proto::CloseCode::NORMAL, "");
        let deadline = Instant::now() + self.close_timeout + CLOSE_MARGIN;
        self.closing = Some(Closing { result, deadline });
    }

    /// Returns the loop's result when the session is over.
    fn on_event(&mut self, event: Event) -> Option<Result<u8, Failure>> {
        match event {
            Event::Message(message) => {
                self.print(&message);
            }
            Event::Opened(opened) => {
                self.opens_seen += 1;
                self.connected = true;
                self.outbox.opened();
                self.warned_drop = false;
                let mut details = Vec::new();
                if opened.attempt > 0 {
                    details.push(format!("attempt {}", opened.attempt));
                }
                if let Some(subprotocol) = &opened.subprotocol {
                    details.push(format!("subprotocol {subprotocol}"));
                }
                let details = if details.is_empty() { String::new() } else { format!(" ({})", details.join(", ")) };
                self.status.line(format_args!("connected to {}{details}", self.shown));
                let dropped = self.outbox.take_dropped();
                if dropped > 0 {
                    self.status.warn(format_args!(
                        "{dropped} stdin line(s) were dropped while disconnected (the queue holds {})",
                        self.outbox.capacity()
                    ));
                }
                if self.platform.is_none() {
                    self.send_preamble();
                }
            }
            Event::Disconnected { cause, reconnect } => {
                self.connected = false;
                if let Some(platform) = &mut self.platform {
                    platform.disconnected();
                }
                let requeued = self.outbox.disconnected();
                let reason = describe(&cause, self.keepalive_timeout);
                match reconnect {
                    Some(next) => self.status.line(format_args!(
                        "disconnected: {reason}; reconnecting in {} (attempt {})",
                        human(next.delay),
                        next.attempt
                    )),
                    None => self.status.line(format_args!("disconnected: {reason}")),
                }
                if requeued > 0 && self.closing.is_none() {
                    self.status.line(format_args!(
                        "{requeued} line(s) were not written before the drop; they will be sent after reconnecting"
                    ));
                }
                self.last_cause = Some(cause);
            }
            Event::Reconnecting { attempt } => {
                self.status.line(format_args!("connecting to {} (attempt {attempt})", self.shown));
            }
            Event::Unsent { message, reason } => match reason {
                UnsentReason::Disconnected => self.outbox.given_back(),
                _ if self.outbox.preamble().contains(&message) => {}
                _ => self.lost += 1,
            },
            Event::Closed(closed) => return Some(self.on_closed(&closed)),
            event => self.on_platform_event(event),
        }
        None
    }

    /// Writes a message to stdout. A reader that went away (EPIPE) ends the
    /// program quietly with 0, like other Unix tools; another write error
    /// ends it with 1.
    fn print(&mut self, message: &Message) {
        let Some(printer) = self.printer.as_mut() else { return };
        if let Err(e) = printer.print(message) {
            self.printer = None;
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.status.line(format_args!("stdout closed: closing the session"));
                self.begin_close(Ok(0));
            } else {
                self.begin_close(Err(Failure::ended(format!("cannot write to stdout: {e}"))));
            }
        }
    }

    /// Sends the `--send` messages on the connection that just opened,
    /// unless a newer one already replaced it (its own `Opened` follows).
    fn send_preamble(&mut self) {
        if self.closing.is_some() || self.handle.stats().opens != self.opens_seen {
            return;
        }
        for message in self.outbox.preamble().to_vec() {
            let len = message.len();
            match self.handle.try_send(message) {
                Ok(()) => self.outbox.gave_preamble(len),
                Err(SendError::TooLarge { len, max, .. }) => {
                    self.status
                        .warn(format_args!("a --send message of {len} bytes exceeds the limit of {max}; skipped"));
                }
                // The connection is already gone; the next one gets it all.
                Err(_) => return,
            }
        }
    }

    /// Gives queued lines to the session while a connection is open.
    fn pump(&mut self) {
        if !self.can_send() || self.closing.is_some() || self.outbox.is_empty() {
            return;
        }
        // Lines for this connection only after its preamble: if a newer
        // connection opened meanwhile, wait for its `Opened`.
        if self.handle.stats().opens != self.opens_seen {
            return;
        }
        while let Some(line) = self.outbox.pop() {
            if self.handle.buffered_amount() >= SEND_HIGH_WATER {
                self.outbox.unpop(line);
                self.retry_soon();
                return;
            }
            match self.handle.try_send(line.clone()) {
                Ok(()) => self.outbox.gave_line(line),
                Err(SendError::QueueFull(line)) => {
                    self.outbox.unpop(line);
                    self.retry_soon();
                    return;
                }
                Err(SendError::TooLarge { len, max, .. }) => {
                    self.status.warn(format_args!("a line of {len} bytes exceeds the limit of {max}; not sent"));
                }
                Err(e) => {
                    // Not open any more: the `Disconnected` event is on its way.
                    if let Some(line) = e.into_message() {
                        self.outbox.unpop(line);
                    }
                    return;
                }
            }
        }
    }

    /// Wakes the loop shortly to try sending (or closing) again.
    fn retry_soon(&mut self) {
        self.retry_at.get_or_insert_with(|| Instant::now() + RETRY);
    }

    /// A stdin line (queued), a warning about one, or the end of stdin.
    fn on_input(&mut self, input: Option<Input>) {
        match input {
            Some(Input::Line(line)) => {
                if self.outbox.push(Message::text(line)) && !std::mem::replace(&mut self.warned_drop, true) {
                    self.status.warn(format_args!(
                        "{} queued while disconnected: dropping the oldest lines until a connection opens",
                        self.outbox.capacity()
                    ));
                }
            }
            Some(Input::Warning(warning)) => self.status.warn(format_args!("{warning}")),
            Some(Input::Failed(e)) => {
                self.status.warn(format_args!("cannot read stdin any more: {e}; treating it as its end"));
                self.reading = false;
                self.input_done = true;
            }
            None => {
                self.reading = false;
                self.input_done = true;
            }
        }
    }

    /// After the end of stdin: close once every line went out. Lines handed
    /// to a connection count as out once written: should the connection
    /// drop before, they come back and wait for the next one.
    fn finish_input(&mut self) {
        if !self.input_done || self.closing.is_some() || !self.outbox.is_empty() {
            return;
        }
        // A connection that is no longer open (or was replaced) may have
        // lines to give back in events not read yet: wait for them (its
        // `Disconnected` follows).
        let current = self.handle.state() == State::Open && self.handle.stats().opens == self.opens_seen;
        if self.connected && (!current || self.handle.buffered_amount() > 0) {
            self.retry_soon();
            return;
        }
        self.status.line(format_args!("end of input: closing the session"));
        self.begin_close(Ok(0));
    }

    /// The session is over: reports it and returns the exit code, or the
    /// failure that ended the session when the CLI did not ask for it.
    fn on_closed(&mut self, closed: &Closed) -> Result<u8, Failure> {
        if closed.clean {
            self.status.line(format_args!("session closed with {}", closed.code));
        } else if self.connected {
            self.status.line(format_args!("session closed with {}, without a close handshake", closed.code));
        } else {
            // The disconnect (or the lack of any connection) was reported.
            self.status.line(format_args!("session closed"));
        }
        let lost = self.lost + self.outbox.len() as u64;
        if lost > 0 {
            self.status.warn(format_args!("{lost} line(s) were not sent"));
        }
        if let Some(closing) = self.closing.take() {
            return closing.result;
        }
        if let Some(failure) = self.platform.as_ref().and_then(|p| p.ended(closed, self.last_cause.as_ref())) {
            return Err(failure);
        }
        let cause =
            self.last_cause.as_ref().map_or_else(|| "unknown".to_owned(), |c| describe(c, self.keepalive_timeout));
        match closed.termination {
            // `--max-reconnects 0`: the first disconnect ends the session.
            Termination::GaveUp { attempts: 0 } => {
                Err(Failure::ended(format!("not reconnecting (--max-reconnects 0); last error: {cause}")))
            }
            Termination::GaveUp { attempts } => Err(Failure::ended(format!(
                "gave up after {attempts} failed reconnect attempt{}; last error: {cause}",
                if attempts == 1 { "" } else { "s" }
            ))),
            Termination::NotRetried => {
                let hint = match self.last_cause.as_ref().map(Disconnect::kind) {
                    Some(DisconnectKind::Certificate) => " (to trust a private CA, pass --ca FILE)",
                    _ => "",
                };
                Err(Failure::ended(format!("the session ended, not retried: {cause}{hint}")))
            }
            _ => Err(Failure::ended(format!("the session ended: {cause}"))),
        }
    }

    /// The event stream ended without `Event::Closed`.
    fn ended_without_close(&mut self) -> Result<u8, Failure> {
        match self.closing.take() {
            Some(closing) => closing.result,
            None => Err(Failure::ended("the session's driver stopped unexpectedly")),
        }
    }

    /// The close the CLI started did not end in time.
    fn close_timed_out(&mut self) -> Result<u8, Failure> {
        self.status.warn(format_args!("the close did not finish within {}; exiting", human(self.close_timeout)));
        self.ended_without_close()
    }
}

/// The next stdin input; never, without stdin.
async fn recv_input(stdin: &mut Option<mpsc::Receiver<Input>>) -> Option<Input> {
    match stdin {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
