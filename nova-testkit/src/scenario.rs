//! Scenarios: a whole conversation across several connections, written once,
//! run in memory against nova-proto's client or over TCP against any client.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_proto::Message;

use crate::engine::{Action, Core, Handshake, Incoming, Script};
use crate::faults::Faults;
use crate::record::{Logged, Recorder, Transcript};

type Predicate = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// What a message from the client must look like.
#[derive(Clone)]
enum Matcher {
    Text(String),
    TextContaining(String),
    Binary(Bytes),
    Any,
    Predicate(String, Predicate),
}

impl Matcher {
    fn matches(&self, message: &Message) -> bool {
        match self {
            Matcher::Text(t) => message.as_text() == Some(t.as_str()),
            Matcher::TextContaining(t) => message.as_text().is_some_and(|m| m.contains(t.as_str())),
            Matcher::Binary(b) => !message.is_text() && message.as_bytes() == &b[..],
            Matcher::Any => true,
            Matcher::Predicate(_, p) => p(message),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Text(t) => write!(f, "text {t:?}"),
            Matcher::TextContaining(t) => write!(f, "text containing {t:?}"),
            Matcher::Binary(b) => write!(f, "binary of {} bytes", b.len()),
            Matcher::Any => f.write_str("any message"),
            Matcher::Predicate(what, _) => f.write_str(what),
        }
    }
}

#[derive(Clone)]
enum Step {
    Accept { handshake: Handshake, after_disconnect: Option<Duration> },
    Expect { matcher: Matcher, within: Option<Duration> },
    Send(Message),
    SendRaw(Vec<u8>),
    Ping(Bytes),
    ExpectPong { within: Option<Duration> },
    AnswerPings(bool),
    Wait(Duration),
    Drop,
    Reset,
    Close { code: u16, reason: String },
    ExpectClose { code: Option<u16>, within: Option<Duration> },
    ExpectDisconnect { within: Option<Duration> },
    ExpectSilence(Duration),
    Faults(Faults),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Accept { handshake, after_disconnect: Some(d) } => {
                write!(f, "accept a reconnect within {d:?} ({})", describe(handshake))
            }
            Step::Accept { handshake, after_disconnect: None } => {
                write!(f, "accept a connection ({})", describe(handshake))
            }
            Step::Expect { matcher, .. } => write!(f, "expect {matcher}"),
            Step::Send(m) => write!(f, "send {}", short(m)),
            Step::SendRaw(b) => write!(f, "send {} raw bytes", b.len()),
            Step::Ping(p) => write!(f, "ping ({} bytes)", p.len()),
            Step::ExpectPong { .. } => f.write_str("expect a pong"),
            Step::AnswerPings(true) => f.write_str("answer pings"),
            Step::AnswerPings(false) => f.write_str("stop answering pings"),
            Step::Wait(d) => write!(f, "wait {d:?}"),
            Step::Drop => f.write_str("drop the connection"),
            Step::Reset => f.write_str("reset the connection"),
            Step::Close { code, reason } => write!(f, "close with {code} {reason:?} and expect the client's answer"),
            Step::ExpectClose { code: Some(c), .. } => write!(f, "expect the client to close with {c}"),
            Step::ExpectClose { code: None, .. } => f.write_str("expect the client to close"),
            Step::ExpectDisconnect { .. } => f.write_str("expect the client to end the connection"),
            Step::ExpectSilence(d) => write!(f, "expect no message for {d:?}"),
            Step::Faults(faults) => write!(f, "set network faults {faults:?}"),
        }
    }
}

fn describe(h: &Handshake) -> String {
    let text = format!("{h:?}");
    if h == &Handshake::accept() { "101".to_owned() } else { text }
}

fn short(m: &Message) -> String {
    match m.as_text() {
        Some(t) if t.len() <= 60 => format!("text {t:?}"),
        Some(t) => format!("text of {} bytes", t.len()),
        None => format!("binary of {} bytes", m.len()),
    }
}

/// A conversation the server scripts, connection by connection.
///
/// Steps run in order. `accept` waits for the next connection and answers its
/// upgrade; `expect_*` wait for the client (each within the scenario's
/// [`timeout`](Self::timeout), 5 s unless changed); `send`, `drop_connection`
/// and the rest act at once. The first expectation that is not met fails the
/// scenario with a [`ScenarioError`] that carries the full transcript.
///
/// The same scenario runs in memory against nova-proto's client, on a virtual
/// clock ([`run_sim`](Self::run_sim), deterministic, no sockets), and over TCP
/// on loopback against any client ([`serve`](Self::serve)).
///
/// ```
/// use std::time::Duration;
/// use nova_testkit::Scenario;
///
/// let resubscribes = Scenario::new()
///     .accept()
///     .expect_text(r#"{"op":"subscribe","channel":"trades"}"#)
///     .send_text(r#"{"trade":1}"#)
///     .drop_connection()
///     .expect_reconnect_within(Duration::from_secs(2))
///     .expect_text(r#"{"op":"subscribe","channel":"trades"}"#)
///     .send_text(r#"{"trade":2}"#)
///     .close(1000, "done");
/// # let _ = resubscribes;
/// ```
#[derive(Clone)]
pub struct Scenario {
    steps: Vec<Step>,
    timeout: Duration,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario::new()
    }
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
        f.debug_struct("Scenario").field("steps", &steps).field("timeout", &self.timeout).finish()
    }
}

impl Scenario {
    /// An empty scenario.
    pub fn new() -> Scenario {
        Scenario { steps: Vec::new(), timeout: Duration::from_secs(5) }
    }

    /// How long each `expect_*` (and `accept`) waits unless told otherwise.
    pub fn timeout(mut self, timeout: Duration) -> Scenario {
        self.timeout = timeout;
        self
    }

    fn step(mut self, step: Step) -> Scenario {
        self.steps.push(step);
        self
    }

    /// Waits for the next connection and accepts its upgrade.
    pub fn accept(self) -> Scenario {
        self.accept_with(Handshake::accept())
    }

    /// Waits for the next connection and answers as `handshake` says
    /// (refuse with any status, wrong accept key, slow, silent, require a
    /// subprotocol or header).
    pub fn accept_with(self, handshake: Handshake) -> Scenario {
        self.step(Step::Accept { handshake, after_disconnect: None })
    }

    /// Waits for the next connection and refuses it with `status`.
    pub fn refuse(self, status: u16) -> Scenario {
        self.accept_with(Handshake::refuse(status))
    }

    /// Expects the client to connect again within `within` of the last
    /// connection's end, and accepts.
    pub fn expect_reconnect_within(self, within: Duration) -> Scenario {
        self.step(Step::Accept { handshake: Handshake::accept(), after_disconnect: Some(within) })
    }

    /// Like [`expect_reconnect_within`](Self::expect_reconnect_within), answering as `handshake` says.
    pub fn expect_reconnect_within_with(self, within: Duration, handshake: Handshake) -> Scenario {
        self.step(Step::Accept { handshake, after_disconnect: Some(within) })
    }

    /// Expects the next message to be exactly this text.
    pub fn expect_text(self, text: impl Into<String>) -> Scenario {
        self.step(Step::Expect { matcher: Matcher::Text(text.into()), within: None })
    }

    /// Expects the next message to be text containing `part`.
    pub fn expect_text_containing(self, part: impl Into<String>) -> Scenario {
        self.step(Step::Expect { matcher: Matcher::TextContaining(part.into()), within: None })
    }

    /// Expects the next message to be exactly these bytes, as binary.
    pub fn expect_binary(self, bytes: impl Into<Bytes>) -> Scenario {
        self.step(Step::Expect { matcher: Matcher::Binary(bytes.into()), within: None })
    }

    /// Expects a next message, whatever it is.
    pub fn expect_any_message(self) -> Scenario {
        self.step(Step::Expect { matcher: Matcher::Any, within: None })
    }

    /// Expects the next message to satisfy `check` (`what` names it in reports).
    pub fn expect_message(
        self,
        what: impl Into<String>,
        check: impl Fn(&Message) -> bool + Send + Sync + 'static,
    ) -> Scenario {
        self.step(Step::Expect { matcher: Matcher::Predicate(what.into(), Arc::new(check)), within: None })
    }

    /// Expects the next message within `within` instead of the scenario timeout.
    pub fn within(mut self, within: Duration) -> Scenario {
        match self.steps.last_mut() {
            Some(Step::Expect { within: w, .. })
            | Some(Step::ExpectPong { within: w })
            | Some(Step::ExpectClose { within: w, .. })
            | Some(Step::ExpectDisconnect { within: w }) => *w = Some(within),
            _ => {}
        }
        self
    }

    /// Sends a message.
    pub fn send(self, message: impl Into<Message>) -> Scenario {
        self.step(Step::Send(message.into()))
    }

    /// Sends a text message.
    pub fn send_text(self, text: impl Into<String>) -> Scenario {
        self.send(Message::text(text.into()))
    }

    /// Sends a binary message.
    pub fn send_binary(self, bytes: impl Into<Bytes>) -> Scenario {
        self.send(Message::binary(bytes.into()))
    }

    /// Sends `count` messages made by `message(n)`, one every `interval`.
    pub fn push(mut self, count: u64, interval: Duration, message: impl Fn(u64) -> Message) -> Scenario {
        for n in 0..count {
            if n > 0 {
                self = self.wait(interval);
            }
            self = self.send(message(n));
        }
        self
    }

    /// Sends raw bytes (a malformed frame, say).
    pub fn send_raw(self, bytes: impl Into<Vec<u8>>) -> Scenario {
        self.step(Step::SendRaw(bytes.into()))
    }

    /// Sends a ping.
    pub fn ping(self, payload: impl Into<Bytes>) -> Scenario {
        self.step(Step::Ping(payload.into()))
    }

    /// Expects a pong.
    pub fn expect_pong(self) -> Scenario {
        self.step(Step::ExpectPong { within: None })
    }

    /// Stops answering the client's pings on this connection: a dead peer.
    pub fn stop_answering_pings(self) -> Scenario {
        self.step(Step::AnswerPings(false))
    }

    /// Answers the client's pings again.
    pub fn answer_pings(self) -> Scenario {
        self.step(Step::AnswerPings(true))
    }

    /// Does nothing for `duration`.
    pub fn wait(self, duration: Duration) -> Scenario {
        self.step(Step::Wait(duration))
    }

    /// Ends the TCP connection without a close handshake.
    pub fn drop_connection(self) -> Scenario {
        self.step(Step::Drop)
    }

    /// Resets the TCP connection.
    pub fn reset_connection(self) -> Scenario {
        self.step(Step::Reset)
    }

    /// Closes with `code` and `reason`, and expects the client to answer the
    /// close (RFC 6455 §5.5.1).
    pub fn close(self, code: u16, reason: impl Into<String>) -> Scenario {
        self.step(Step::Close { code, reason: reason.into() })
    }

    /// Expects the client to close with `code`.
    pub fn expect_close(self, code: u16) -> Scenario {
        self.step(Step::ExpectClose { code: Some(code), within: None })
    }

    /// Expects the client to close, with any code.
    pub fn expect_any_close(self) -> Scenario {
        self.step(Step::ExpectClose { code: None, within: None })
    }

    /// Expects the client to end the connection (a close, or just TCP), e.g.
    /// once its pong timeout declares the server dead.
    pub fn expect_disconnect(self) -> Scenario {
        self.step(Step::ExpectDisconnect { within: None })
    }

    /// Expects no message at all for `duration`.
    pub fn expect_silence(self, duration: Duration) -> Scenario {
        self.step(Step::ExpectSilence(duration))
    }

    /// Changes the network faults between client and server from here on (in
    /// the simulation the network itself; over TCP a fault proxy in front).
    pub fn faults(self, faults: Faults) -> Scenario {
        self.step(Step::Faults(faults))
    }

    /// Whether any step changes network faults.
    pub(crate) fn uses_faults(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Faults(_)))
    }

    /// The scenario as a script for the engine.
    pub(crate) fn script(self, start: Instant) -> ScenarioScript {
        ScenarioScript {
            core: Core::new(start),
            steps: self.steps,
            timeout: self.timeout,
            cursor: 0,
            step_started: start,
            current: None,
            current_gone: false,
            pending: VecDeque::new(),
            requested: Vec::new(),
            answer_at: None,
            close_sent: false,
            inbox: VecDeque::new(),
            pongs: VecDeque::new(),
            closes: VecDeque::new(),
            last_end: None,
            deadline: None,
            outcome: None,
            failed_step: None,
        }
    }
}

/// A scenario that was not followed: which step, what went wrong, and the
/// whole transcript.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scenario failed at step {step} ({step_description}): {problem}\n\ntranscript:\n{transcript}")]
pub struct ScenarioError {
    /// The step, from 1.
    pub step: usize,
    /// What the step was.
    pub step_description: String,
    /// What went wrong.
    pub problem: String,
    /// Everything the server saw and did.
    pub transcript: Transcript,
}

enum Progress {
    Done(String),
    Wait(Option<Instant>),
    Fail(String),
}

/// A [`Scenario`] being run by the engine.
pub(crate) struct ScenarioScript {
    core: Core,
    steps: Vec<Step>,
    timeout: Duration,
    cursor: usize,
    step_started: Instant,
    /// The connection the scenario is talking to.
    current: Option<u32>,
    current_gone: bool,
    /// Connections that arrived and wait for an `accept`.
    pending: VecDeque<u32>,
    /// Connections whose upgrade request is complete.
    requested: Vec<u32>,
    /// A delayed answer: the connection, when, how.
    answer_at: Option<(u32, Instant, Handshake)>,
    close_sent: bool,
    inbox: VecDeque<Message>,
    pongs: VecDeque<Bytes>,
    closes: VecDeque<Option<(u16, String)>>,
    last_end: Option<Instant>,
    deadline: Option<Instant>,
    outcome: Option<Result<(), String>>,
    failed_step: Option<usize>,
}

impl ScenarioScript {
    /// The error for a failed run, with the transcript.
    pub(crate) fn error(&self) -> Option<ScenarioError> {
        let Some(Err(problem)) = &self.outcome else { return None };
        let step = self.failed_step.unwrap_or(self.cursor);
        Some(ScenarioError {
            step: step + 1,
            step_description: self.steps.get(step).map_or_else(|| "end".to_owned(), ToString::to_string),
            problem: problem.clone(),
            transcript: self.core.rec.transcript.clone(),
        })
    }

    /// Fails with `problem` unless a run-level failure already happened.
    pub(crate) fn fail(&mut self, now: Instant, problem: String) {
        if self.outcome.is_some() {
            return;
        }
        self.core.rec.log(now, self.current, Logged::Failed(problem.clone()));
        self.failed_step = Some(self.cursor);
        self.outcome = Some(Err(problem));
    }

    fn advance(&mut self, now: Instant) {
        while self.outcome.is_none() {
            let Some(step) = self.steps.get(self.cursor).cloned() else {
                self.outcome = Some(Ok(()));
                self.core.rec.log(now, None, Logged::Step("scenario complete".to_owned()));
                return;
            };
            match self.try_step(now, &step) {
                Progress::Done(what) => {
                    self.core.rec.log(now, self.current, Logged::Step(what));
                    self.cursor += 1;
                    self.step_started = now;
                    self.deadline = None;
                    self.close_sent = false;
                }
                Progress::Wait(deadline) => {
                    self.deadline = deadline;
                    return;
                }
                Progress::Fail(problem) => return self.fail(now, problem),
            }
        }
    }

    fn bound(&self, within: Option<Duration>) -> Instant {
        self.step_started + within.unwrap_or(self.timeout)
    }

    /// Waits until `deadline`, failing with `problem` once it has passed.
    fn wait_or_fail(now: Instant, deadline: Instant, problem: impl FnOnce() -> String) -> Progress {
        if now >= deadline { Progress::Fail(problem()) } else { Progress::Wait(Some(deadline)) }
    }

    fn try_step(&mut self, now: Instant, step: &Step) -> Progress {
        let open = self.current.is_some_and(|id| self.core.is_open(id));
        match step {
            Step::Accept { handshake, after_disconnect } => self.try_accept(now, handshake, *after_disconnect),
            Step::Expect { matcher, within } => {
                if let Some(message) = self.inbox.pop_front() {
                    return if matcher.matches(&message) {
                        Progress::Done(format!("received {}", short(&message)))
                    } else {
                        Progress::Fail(format!("expected {matcher}, received {}", short(&message)))
                    };
                }
                if self.current_gone {
                    return Progress::Fail(format!("the connection ended while expecting {matcher}"));
                }
                let deadline = self.bound(*within);
                Self::wait_or_fail(now, deadline, || format!("no message within {:?}", deadline - self.step_started))
            }
            Step::Send(message) if open => {
                self.core.send(now, self.current.unwrap_or_default(), message);
                Progress::Done(format!("sent {}", short(message)))
            }
            Step::SendRaw(bytes) if self.current.is_some_and(|id| self.core.is_up(id)) => {
                self.core.send_raw(now, self.current.unwrap_or_default(), bytes);
                Progress::Done(format!("sent {} raw bytes", bytes.len()))
            }
            Step::Ping(payload) if open => {
                self.core.ping(now, self.current.unwrap_or_default(), payload.clone());
                Progress::Done("sent a ping".to_owned())
            }
            Step::Send(_) | Step::SendRaw(_) | Step::Ping(_) => Progress::Fail("no open connection".to_owned()),
            Step::ExpectPong { within } => {
                if self.pongs.pop_front().is_some() {
                    return Progress::Done("received a pong".to_owned());
                }
                let deadline = self.bound(*within);
                Self::wait_or_fail(now, deadline, || "no pong".to_owned())
            }
            Step::AnswerPings(answer) => {
                if let Some(id) = self.current {
                    self.core.set_answer_pings(id, *answer);
                }
                Progress::Done(step.to_string())
            }
            Step::Wait(d) => {
                let until = self.step_started + *d;
                if now >= until { Progress::Done(format!("waited {d:?}")) } else { Progress::Wait(Some(until)) }
            }
            Step::Drop | Step::Reset => {
                let Some(id) = self.current.filter(|id| self.core.is_up(*id)) else {
                    return Progress::Fail("no connection to end".to_owned());
                };
                if matches!(step, Step::Drop) {
                    self.core.drop_conn(now, id);
                } else {
                    self.core.reset(now, id);
                }
                self.current_gone = true;
                self.last_end = Some(now);
                Progress::Done(step.to_string())
            }
            Step::Close { code, reason } => {
                if !self.close_sent {
                    if !open {
                        return Progress::Fail("no open connection".to_owned());
                    }
                    self.core.close(now, self.current.unwrap_or_default(), *code, reason);
                    self.close_sent = true;
                }
                if let Some(answer) = self.closes.pop_front() {
                    self.last_end = Some(now);
                    return Progress::Done(format!("the client answered the close with {answer:?}"));
                }
                if self.current_gone {
                    return Progress::Fail("the client ended the connection without answering the close".to_owned());
                }
                let deadline = self.bound(None);
                Self::wait_or_fail(now, deadline, || "the client did not answer the close".to_owned())
            }
            Step::ExpectClose { code, within } => {
                if let Some(close) = self.closes.pop_front() {
                    let got = close.as_ref().map(|(c, _)| *c);
                    return match code {
                        Some(want) if got != Some(*want) => {
                            Progress::Fail(format!("expected close code {want}, the client closed with {close:?}"))
                        }
                        _ => Progress::Done(format!("the client closed with {close:?}")),
                    };
                }
                if self.current_gone {
                    return Progress::Fail("the client ended the connection without a close frame".to_owned());
                }
                let deadline = self.bound(*within);
                Self::wait_or_fail(now, deadline, || "the client did not close".to_owned())
            }
            Step::ExpectDisconnect { within } => {
                if self.current_gone {
                    return Progress::Done("the client ended the connection".to_owned());
                }
                let deadline = self.bound(*within);
                Self::wait_or_fail(now, deadline, || "the client did not end the connection".to_owned())
            }
            Step::ExpectSilence(d) => {
                if let Some(message) = self.inbox.pop_front() {
                    return Progress::Fail(format!("expected silence, received {}", short(&message)));
                }
                let until = self.step_started + *d;
                if now >= until { Progress::Done(format!("no message for {d:?}")) } else { Progress::Wait(Some(until)) }
            }
            Step::Faults(faults) => {
                self.core.push_action(Action::Faults(*faults));
                self.core.rec.log(now, None, Logged::Faults(*faults));
                Progress::Done(step.to_string())
            }
        }
    }

    fn try_accept(&mut self, now: Instant, handshake: &Handshake, after_disconnect: Option<Duration>) -> Progress {
        let deadline = match after_disconnect {
            Some(within) => self.last_end.unwrap_or(self.step_started) + within,
            None => self.bound(None),
        };
        if let Some((id, at, _)) = &self.answer_at {
            let (id, at) = (*id, *at);
            if now < at {
                return Progress::Wait(Some(at));
            }
            let handshake = self.answer_at.take().map(|(_, _, h)| h).unwrap_or_default();
            return match self.core.answer(now, id, &handshake) {
                Some(101) => Progress::Done(format!("accepted connection {id}")),
                Some(status) => {
                    self.current_gone = true;
                    self.last_end = Some(now);
                    Progress::Done(format!("answered connection {id} with {status}"))
                }
                None => Progress::Done(format!("left connection {id} unanswered")),
            };
        }
        // The oldest connection whose request is complete.
        let ready = self.pending.iter().position(|id| self.requested.contains(id));
        let Some(index) = ready else {
            return Self::wait_or_fail(now, deadline, || match after_disconnect {
                Some(d) => format!("the client did not reconnect within {d:?}"),
                None => "no connection arrived".to_owned(),
            });
        };
        let id = self.pending.remove(index).unwrap_or_default();
        self.current = Some(id);
        self.current_gone = false;
        self.inbox.clear();
        self.pongs.clear();
        self.closes.clear();
        self.answer_at = Some((id, now + handshake.delay_of(), handshake.clone()));
        self.try_accept(now, handshake, after_disconnect)
    }

    pub(crate) fn steps_done(&self) -> usize {
        self.cursor
    }
}

impl Script for ScenarioScript {
    fn connected(&mut self, now: Instant, id: u32) {
        self.core.connected(now, id);
        self.pending.push_back(id);
        self.advance(now);
    }

    fn received(&mut self, now: Instant, id: u32, bytes: &[u8]) {
        for incoming in self.core.receive(now, id, bytes) {
            let current = self.current == Some(id);
            match incoming {
                Incoming::Request(_) => self.requested.push(id),
                Incoming::Message(m) if current => self.inbox.push_back(m),
                Incoming::Pong(p) if current => self.pongs.push_back(p),
                Incoming::Closed(c) if current => {
                    self.closes.push_back(c);
                    self.current_gone = true;
                    self.last_end = Some(now);
                }
                Incoming::Violation(v) if current => self.fail(now, format!("the client broke the protocol: {v}")),
                _ => {}
            }
        }
        self.advance(now);
    }

    fn disconnected(&mut self, now: Instant, id: u32) {
        self.core.disconnected(now, id);
        self.pending.retain(|p| *p != id);
        if self.current == Some(id) && !self.current_gone {
            self.current_gone = true;
            self.last_end = Some(now);
        }
        self.advance(now);
    }

    fn timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        self.deadline
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.core.poll_action()
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        self.outcome.clone()
    }

    fn recorder(&self) -> &Recorder {
        &self.core.rec
    }

    fn failure(&self) -> Option<ScenarioError> {
        self.error()
    }

    fn set_backlogged(&mut self, id: u32, backlogged: bool) {
        self.core.set_backlogged(id, backlogged);
    }

    fn abort(&mut self, now: Instant, problem: String) {
        self.fail(now, problem);
    }
}
