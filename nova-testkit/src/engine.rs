//! The scripted server's engine, sans-IO: connections come and go, bytes come
//! in, and actions for the transport come out. The TCP mock server and the
//! in-memory simulation are two transports for the same engine.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_proto::Message;
use nova_proto::frame::Opcode;

use crate::faults::Faults;
use crate::peer::{self, Peer, PeerEvent, Request};
use crate::record::{Ended, Logged, Recorder};

/// What the engine asks of its transport.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Write bytes to the client of a connection.
    Send(u32, Vec<u8>),
    /// End the connection gracefully (FIN), after what was written.
    Close(u32),
    /// Reset the connection (RST).
    Reset(u32),
    /// Change the network faults between the client and the server.
    Faults(Faults),
}

/// How the server answers an upgrade request.
///
/// ```
/// use std::time::Duration;
/// use nova_testkit::Handshake;
///
/// let slow_json_only = Handshake::accept().require_subprotocol("v1.json").delay(Duration::from_millis(300));
/// let busy = Handshake::refuse(503).retry_after(2);
/// # let _ = (slow_json_only, busy);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    kind: HandshakeKind,
    headers: Vec<(String, String)>,
    delay: Duration,
    subprotocol: Option<String>,
    require_subprotocol: bool,
    require_headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HandshakeKind {
    Accept,
    Refuse(u16, String),
    WrongKey,
    Silent,
}

impl Default for Handshake {
    fn default() -> Handshake {
        Handshake::accept()
    }
}

impl Handshake {
    fn of(kind: HandshakeKind) -> Handshake {
        Handshake {
            kind,
            headers: Vec::new(),
            delay: Duration::ZERO,
            subprotocol: None,
            require_subprotocol: false,
            require_headers: Vec::new(),
        }
    }

    /// Answer with a valid 101.
    pub fn accept() -> Handshake {
        Handshake::of(HandshakeKind::Accept)
    }

    /// Answer with `status` (and close the connection).
    pub fn refuse(status: u16) -> Handshake {
        Handshake::of(HandshakeKind::Refuse(status, String::new()))
    }

    /// Answer with a 101 whose `Sec-WebSocket-Accept` is wrong.
    pub fn wrong_accept_key() -> Handshake {
        Handshake::of(HandshakeKind::WrongKey)
    }

    /// Never answer (the connection stays open): a hung server.
    pub fn silent() -> Handshake {
        Handshake::of(HandshakeKind::Silent)
    }

    /// Wait this long before answering: a slow server.
    pub fn delay(mut self, delay: Duration) -> Handshake {
        self.delay = delay;
        self
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Handshake {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Retry-After: seconds` (for a refusal).
    pub fn retry_after(self, seconds: u64) -> Handshake {
        self.header("Retry-After", seconds.to_string())
    }

    /// Adds a body to a refusal.
    pub fn body(mut self, body: impl Into<String>) -> Handshake {
        if let HandshakeKind::Refuse(_, b) = &mut self.kind {
            *b = body.into();
        }
        self
    }

    /// Choose this subprotocol when the client offers it.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Handshake {
        self.subprotocol = Some(name.into());
        self
    }

    /// Refuse with 400 unless the client offers this subprotocol (and choose it).
    pub fn require_subprotocol(mut self, name: impl Into<String>) -> Handshake {
        self.subprotocol = Some(name.into());
        self.require_subprotocol = true;
        self
    }

    /// Refuse with 401 unless the request carries this header with this value.
    pub fn require_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Handshake {
        self.require_headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn delay_of(&self) -> Duration {
        self.delay
    }

    pub(crate) fn is_silent(&self) -> bool {
        self.kind == HandshakeKind::Silent
    }
}

/// One connection as the engine sees it.
#[derive(Debug)]
struct Conn {
    peer: Peer,
    answer_pings: bool,
    request: Option<Request>,
    /// Our close frame went out; the client's answer ends the connection.
    close_sent: bool,
    /// The TCP connection is gone (or going).
    gone: bool,
    /// The transport holds too many unwritten bytes.
    backlogged: bool,
}

/// What a script gets from the client of one connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    Request(Request),
    Message(Message),
    Pong(Bytes),
    /// The client closed (after we answered its close, or answered ours).
    Closed(Option<(u16, String)>),
    /// The client broke the protocol; the connection was failed.
    Violation(String),
}

/// Connections, their peers, the recorder and the actions queue: what every
/// script needs. Pings are answered, close handshakes completed, everything recorded.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) rec: Recorder,
    conns: BTreeMap<u32, Conn>,
    actions: VecDeque<Action>,
}

impl Core {
    pub(crate) fn new(start: Instant) -> Core {
        Core { rec: Recorder::new(start), conns: BTreeMap::new(), actions: VecDeque::new() }
    }

    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub(crate) fn push_action(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Whether connection `id` is still up.
    pub(crate) fn is_up(&self, id: u32) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.gone)
    }

    /// Whether connection `id` completed the upgrade and is up.
    pub(crate) fn is_open(&self, id: u32) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.gone && c.peer.is_open())
    }

    pub(crate) fn connected(&mut self, now: Instant, id: u32) {
        self.conns.insert(
            id,
            Conn {
                peer: Peer::new(),
                answer_pings: true,
                request: None,
                close_sent: false,
                gone: false,
                backlogged: false,
            },
        );
        self.rec.conn(id);
        self.rec.log(now, Some(id), Logged::Connected);
    }

    pub(crate) fn disconnected(&mut self, now: Instant, id: u32) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if conn.gone {
            return;
        }
        conn.gone = true;
        conn.peer.finish();
        let log = self.rec.conn(id);
        if log.ended.is_none() {
            log.ended = Some(Ended::ByClient);
            self.rec.log(now, Some(id), Logged::ClientClosed);
        }
    }

    /// Takes the client's bytes; returns what matters to a script.
    pub(crate) fn receive(&mut self, now: Instant, id: u32, bytes: &[u8]) -> Vec<Incoming> {
        let mut events = Vec::new();
        let mut incoming = Vec::new();
        {
            let Some(conn) = self.conns.get_mut(&id) else { return incoming };
            if conn.gone {
                return incoming;
            }
            conn.peer.receive(bytes, &mut events);
        }
        for event in events {
            match event {
                PeerEvent::Request(request) => {
                    self.rec.log(now, Some(id), Logged::Request { path: request.path.clone() });
                    self.rec.conn(id).request = Some(request.clone());
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.request = Some(request.clone());
                    }
                    incoming.push(Incoming::Request(request));
                }
                PeerEvent::BadRequest(why) => {
                    self.rec.log(now, Some(id), Logged::Violation(format!("bad upgrade request: {why}")));
                    self.rec.conn(id).violations.push(why.clone());
                    self.refuse_now(now, id, 400, &[], "bad request");
                    incoming.push(Incoming::Violation(why));
                }
                PeerEvent::Frame(frame) => self.rec.conn(id).frames.push(frame),
                PeerEvent::Message(m) => {
                    self.rec.log(now, Some(id), Logged::Received(m.clone()));
                    self.rec.conn(id).messages.push(m.clone());
                    incoming.push(Incoming::Message(m));
                }
                PeerEvent::Ping(payload) => {
                    self.rec.log(now, Some(id), Logged::ReceivedPing(payload.clone()));
                    self.rec.conn(id).pings_received.push(payload.clone());
                    if self.conns.get(&id).is_some_and(|c| c.answer_pings) {
                        let mut out = Vec::new();
                        peer::encode(&mut out, Opcode::Pong, true, &payload);
                        self.actions.push_back(Action::Send(id, out));
                    }
                }
                PeerEvent::Pong(payload) => {
                    self.rec.log(now, Some(id), Logged::ReceivedPong(payload.clone()));
                    self.rec.conn(id).pongs.push(payload.clone());
                    incoming.push(Incoming::Pong(payload));
                }
                PeerEvent::Close(close) => {
                    self.rec.log(now, Some(id), Logged::ReceivedClose(close.clone()));
                    self.rec.conn(id).close = Some(close.clone());
                    let answered = self.conns.get(&id).is_some_and(|c| c.close_sent);
                    if !answered {
                        // Echo the code (RFC 6455 §5.5.1), then end TCP: the server
                        // closes first (§7.1.1).
                        let mut out = Vec::new();
                        peer::encode_close(&mut out, close.as_ref().map(|(code, _)| (*code, "")));
                        self.actions.push_back(Action::Send(id, out));
                        self.rec.log(
                            now,
                            Some(id),
                            Logged::SentClose(close.as_ref().map(|(c, _)| (*c, String::new()))),
                        );
                    }
                    self.end(now, id, Ended::Closed, None);
                    incoming.push(Incoming::Closed(close));
                }
                PeerEvent::Violation(why) => {
                    self.rec.log(now, Some(id), Logged::Violation(why.clone()));
                    self.rec.conn(id).violations.push(why.clone());
                    let code = if why.contains("UTF-8") { 1007 } else { 1002 };
                    let mut out = Vec::new();
                    peer::encode_close(&mut out, Some((code, "protocol error")));
                    self.actions.push_back(Action::Send(id, out));
                    self.end(now, id, Ended::Closed, None);
                    incoming.push(Incoming::Violation(why));
                }
            }
        }
        incoming
    }

    /// Answers connection `id`'s upgrade request as `handshake` says (its
    /// delay is the caller's business). Returns the status sent, if any.
    pub(crate) fn answer(&mut self, now: Instant, id: u32, handshake: &Handshake) -> Option<u16> {
        let request = self.conns.get(&id)?.request.clone()?;
        for (name, value) in &handshake.require_headers {
            if request.header(name).map(str::trim) != Some(value.as_str()) {
                self.refuse_now(now, id, 401, &handshake.headers, &format!("header {name} required"));
                return Some(401);
            }
        }
        let offered = request.subprotocols();
        let chosen = handshake.subprotocol.as_deref().filter(|p| offered.contains(p));
        if handshake.require_subprotocol && chosen.is_none() {
            self.refuse_now(now, id, 400, &handshake.headers, "subprotocol required");
            return Some(400);
        }
        match &handshake.kind {
            HandshakeKind::Silent => None,
            HandshakeKind::Refuse(status, body) => {
                self.refuse_now(now, id, *status, &handshake.headers, body);
                Some(*status)
            }
            kind => {
                let wrong = *kind == HandshakeKind::WrongKey;
                let answer = peer::switching_protocols(&request, chosen, &handshake.headers, wrong);
                self.actions.push_back(Action::Send(id, answer));
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.peer.open();
                }
                self.rec.conn(id).status = Some(101);
                self.rec.log(now, Some(id), Logged::Answered { status: 101 });
                Some(101)
            }
        }
    }

    fn refuse_now(&mut self, now: Instant, id: u32, status: u16, headers: &[(String, String)], body: &str) {
        self.actions.push_back(Action::Send(id, peer::refusal(status, headers, body)));
        self.rec.conn(id).status = Some(status);
        self.rec.log(now, Some(id), Logged::Answered { status });
        self.end(now, id, Ended::Closed, None);
    }

    pub(crate) fn set_backlogged(&mut self, id: u32, backlogged: bool) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.backlogged = backlogged;
        }
    }

    /// Whether connection `id`'s transport holds too many unwritten bytes.
    pub(crate) fn is_backlogged(&self, id: u32) -> bool {
        self.conns.get(&id).is_some_and(|c| c.backlogged)
    }

    pub(crate) fn set_answer_pings(&mut self, id: u32, answer: bool) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.answer_pings = answer;
        }
    }

    pub(crate) fn send(&mut self, now: Instant, id: u32, message: &Message) {
        if !self.is_open(id) {
            return;
        }
        let mut out = Vec::new();
        peer::encode_message(&mut out, message);
        self.actions.push_back(Action::Send(id, out));
        self.rec.log(now, Some(id), Logged::Sent(message.clone()));
    }

    pub(crate) fn send_raw(&mut self, now: Instant, id: u32, bytes: &[u8]) {
        if !self.is_up(id) {
            return;
        }
        self.actions.push_back(Action::Send(id, bytes.to_vec()));
        self.rec.log(now, Some(id), Logged::SentRaw(bytes.len()));
    }

    pub(crate) fn ping(&mut self, now: Instant, id: u32, payload: Bytes) {
        if !self.is_open(id) {
            return;
        }
        let mut out = Vec::new();
        peer::encode(&mut out, Opcode::Ping, true, &payload);
        self.actions.push_back(Action::Send(id, out));
        self.rec.conn(id).pings_sent.push(payload.clone());
        self.rec.log(now, Some(id), Logged::SentPing(payload));
    }

    /// Starts a close handshake; the client's answer ends the connection.
    pub(crate) fn close(&mut self, now: Instant, id: u32, code: u16, reason: &str) {
        if !self.is_open(id) {
            return;
        }
        let mut out = Vec::new();
        peer::encode_close(&mut out, Some((code, reason)));
        self.actions.push_back(Action::Send(id, out));
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.close_sent = true;
        }
        self.rec.log(now, Some(id), Logged::SentClose(Some((code, reason.to_owned()))));
    }

    /// Ends the TCP connection without a close handshake.
    pub(crate) fn drop_conn(&mut self, now: Instant, id: u32) {
        if self.is_up(id) {
            self.end(now, id, Ended::Dropped, Some(Logged::Dropped));
        }
    }

    /// Resets the TCP connection.
    pub(crate) fn reset(&mut self, now: Instant, id: u32) {
        if !self.is_up(id) {
            return;
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.gone = true;
            conn.peer.finish();
        }
        self.actions.push_back(Action::Reset(id));
        self.rec.conn(id).ended = Some(Ended::Reset);
        self.rec.log(now, Some(id), Logged::Reset);
    }

    fn end(&mut self, now: Instant, id: u32, how: Ended, log: Option<Logged>) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if conn.gone {
                return;
            }
            conn.gone = true;
            conn.peer.finish();
        }
        self.actions.push_back(Action::Close(id));
        self.rec.conn(id).ended = Some(how);
        if let Some(what) = log {
            self.rec.log(now, Some(id), what);
        }
    }
}

/// A script: what the server does, connection by connection, over time.
pub(crate) trait Script: Send {
    fn connected(&mut self, now: Instant, id: u32);
    fn received(&mut self, now: Instant, id: u32, bytes: &[u8]);
    fn disconnected(&mut self, now: Instant, id: u32);
    /// Fires what is due at `now`; early or repeated calls do nothing.
    fn timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_action(&mut self) -> Option<Action>;
    /// `Some` once the script is over: `Ok` when it ran to the end.
    fn outcome(&self) -> Option<Result<(), String>>;
    fn recorder(&self) -> &Recorder;
    /// The failure, with its step, when the script is a failed scenario.
    fn failure(&self) -> Option<crate::scenario::ScenarioError> {
        None
    }
    /// Ends the script as failed (the runner's own deadline passed).
    fn abort(&mut self, _now: Instant, _problem: String) {}
    /// Whether the transport of connection `id` holds too many unwritten
    /// bytes: pushes wait until it drains.
    fn set_backlogged(&mut self, _id: u32, _backlogged: bool) {}
}
