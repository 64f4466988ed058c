//! Deterministic simulation: the client against a scripted in-memory server,
//! on a virtual clock, through a seeded network.
//!
//! - The clock only moves to the next event: a client deadline or a delivery.
//!   Nothing sleeps and nothing opens a socket; seconds of protocol time take
//!   microseconds.
//! - The server is tungstenite in the server role (deterministic: servers do not
//!   mask), behind a scripted upgrade (accept, refuse with any status, answer
//!   with a wrong key, stay silent, refuse the TCP connection).
//! - The network delivers server bytes to the client in seeded random chunks
//!   (down to one byte) after a seeded latency, and can stall or reset.
//! - Everything observable is written to a transcript, so a scenario run twice
//!   with one seed can be compared byte for byte.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nova_proto::session::{Adapter, SessionConfig};
use nova_proto::{
    Client, CloseCode, CloseError, Config, Event, Input, Message, Output, SendError, Session, State, Stats,
    TransportDown, accept_key,
};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

pub use tungstenite::Message as ServerMessage;

/// How the server treats the next connection attempt.
#[derive(Debug, Clone)]
pub enum Upgrade {
    /// A valid 101 (with these extra header lines, e.g. a subprotocol).
    Accept { extra: String },
    /// A non-101 response with headers and a body.
    Reject { status: u16, headers: String },
    /// A 101 with a wrong `Sec-WebSocket-Accept`.
    WrongKey,
    /// TCP connects, the server never answers the upgrade.
    Silent,
    /// The TCP connect is refused.
    RefuseTcp,
    /// The TCP connect never completes.
    Blackhole,
}

impl Upgrade {
    pub fn accept() -> Upgrade {
        Upgrade::Accept { extra: String::new() }
    }
}

/// Network behaviour, seeded.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    /// One-way latency.
    pub latency: Duration,
    /// Extra random latency, uniform in `0..=jitter` (order is preserved).
    pub jitter: Duration,
    /// Largest chunk delivered to the client at once (1 = byte by byte).
    pub max_chunk: usize,
}

impl Default for Net {
    fn default() -> Net {
        Net { latency: Duration::from_millis(5), jitter: Duration::ZERO, max_chunk: 64 * 1024 }
    }
}

/// In-memory duplex stream for tungstenite: reads of an empty inbox would block.
#[derive(Debug, Default)]
pub struct Mem {
    pub inbox: VecDeque<u8>,
    pub outbox: Vec<u8>,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbox.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.inbox.len());
        for (dst, src) in buf.iter_mut().zip(self.inbox.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbox.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The server end of one connection.
pub struct Server {
    pub id: u32,
    upgrade: Upgrade,
    request: Vec<u8>,
    /// The request head the client sent.
    pub request_head: Option<String>,
    ws: Option<WebSocketContext>,
    io: Mem,
    /// Every message the server read (data, ping, pong, close).
    pub received: Vec<ServerMessage>,
    /// The protocol error tungstenite reported on the client's bytes, if any.
    pub error: Option<String>,
    /// Echo text and binary messages.
    pub echo: bool,
    /// Neither read nor write: a half-open, dead peer.
    pub stalled: bool,
    /// End the TCP connection after answering a close.
    pub hang_up_after_close: bool,
    /// The server ended this connection.
    pub hung_up: bool,
}

/// Something travelling through the network.
#[derive(Debug, Clone)]
enum Delivery {
    ToClient(Vec<u8>),
    Up,
    Down(TransportDown),
    ToServer(Vec<u8>),
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Bytes the client handed over to write.
    Transmit(Vec<u8>),
    /// An output of the client.
    Output(Output),
    /// A chunk of server bytes fed to the client.
    Received(Vec<u8>),
    /// A transport event fed to the client.
    Transport(String),
    /// The client's deadline after a drain.
    Deadline(Option<Duration>),
}

/// What the simulation drives: a bare client or a session (same contract).
pub trait Core {
    fn connect(&mut self, now: Instant);
    fn send(&mut self, now: Instant, message: Message) -> Result<(), SendError>;
    fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError>;
    fn handle_input(&mut self, now: Instant, input: Input<'_>);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, out: &mut Vec<u8>, max: usize) -> usize;
    fn poll_output(&mut self) -> Option<Output>;
    fn poll_queued_output(&mut self) -> Option<Output>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn state(&self) -> State;
    fn stats(&self) -> &Stats;
}

macro_rules! core_impl {
    ($t:ty) => {
        impl Core for $t {
            fn connect(&mut self, now: Instant) {
                <$t>::connect(self, now)
            }
            fn send(&mut self, now: Instant, message: Message) -> Result<(), SendError> {
                <$t>::send(self, now, message)
            }
            fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), CloseError> {
                <$t>::close(self, now, code, reason)
            }
            fn handle_input(&mut self, now: Instant, input: Input<'_>) {
                <$t>::handle_input(self, now, input)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
                <$t>::poll_transmit(self, out, max)
            }
            fn poll_output(&mut self) -> Option<Output> {
                <$t>::poll_output(self)
            }
            fn poll_queued_output(&mut self) -> Option<Output> {
                <$t>::poll_queued_output(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn state(&self) -> State {
                <$t>::state(self)
            }
            fn stats(&self) -> &Stats {
                <$t>::stats(self)
            }
        }
    };
}
core_impl!(Client);
core_impl!(Session);

/// A scripted server brain: given the connection id and a text message the
/// server read, the texts it answers with.
pub type Responder = Box<dyn FnMut(u32, &str) -> Vec<String>>;

pub struct Sim<C: Core = Client> {
    pub client: C,
    /// Answers the server's text messages (instead of, or besides, echoing).
    pub responder: Option<Responder>,
    pub t0: Instant,
    pub now: Instant,
    pub net: Net,
    rng: u64,
    /// Every server end, oldest first (refused or blackholed attempts have none).
    pub servers: Vec<Server>,
    /// The server end the `server_*` methods act on: the newest one still up.
    current: Option<u32>,
    /// The transport the client has open, as the network sees it.
    live: Option<u32>,
    next_id: u32,
    /// How the next connection attempts are answered (then: accept).
    pub upgrades: VecDeque<Upgrade>,
    /// Outputs not yet taken by the test (messages and events), with their time.
    pub outputs: Vec<(Duration, Output)>,
    pub transcript: Vec<(Duration, Record)>,
    in_flight: VecDeque<(Instant, u32, Delivery)>,
    /// Every CloseTransport the client asked for.
    pub close_transports: u32,
    /// Every message delivered, with the id of the transport it came over.
    pub delivered: Vec<(u32, Message)>,
    /// Whether each server echoes by default.
    pub echo: bool,
    /// The application echoes every message it receives, at once (as the
    /// Autobahn test client does).
    pub app_echo: bool,
    /// The application takes no messages: the client is polled with
    /// `poll_queued_output`, so frames stay undecoded (a driver whose
    /// application is behind).
    pub app_paused: bool,
    /// The application sends these on every `Opened` (authentication, say).
    pub on_open: Vec<Message>,
    closed: bool,
}

/// One epoch for every simulation in the process, so two runs of a
/// scenario produce identical instants, not just identical offsets.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn client_seed(seed: u64) -> [u8; 32] {
    let mut client_seed = [0u8; 32];
    client_seed[..8].copy_from_slice(&seed.to_le_bytes());
    client_seed
}

impl Sim<Client> {
    /// A simulation with the client created (not connected) at `t0`.
    pub fn new(config: Config, seed: u64) -> Sim {
        Sim::with_core(Client::new(config, client_seed(seed), epoch()), seed)
    }
}

impl Sim<Session> {
    /// A simulation of a session with `adapter`.
    pub fn session(config: Config, seed: u64, adapter: Box<dyn Adapter + Send>, settings: SessionConfig) -> Self {
        Sim::with_core(Session::with_settings(config, client_seed(seed), epoch(), adapter, settings), seed)
    }
}

impl<C: Core> Sim<C> {
    /// A simulation around a core created at [`epoch`].
    pub fn with_core(client: C, seed: u64) -> Self {
        let t0 = epoch();
        Sim {
            client,
            responder: None,
            t0,
            now: t0,
            net: Net::default(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            servers: Vec::new(),
            current: None,
            live: None,
            next_id: 0,
            upgrades: VecDeque::new(),
            outputs: Vec::new(),
            transcript: Vec::new(),
            in_flight: VecDeque::new(),
            close_transports: 0,
            delivered: Vec::new(),
            echo: true,
            app_echo: false,
            app_paused: false,
            on_open: Vec::new(),
            closed: false,
        }
    }

    pub fn with_net(mut self, net: Net) -> Self {
        self.net = net;
        self
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: the network's own seeded randomness, separate from the client's.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn arrival(&mut self) -> Instant {
        let jitter = self.net.jitter.as_nanos() as u64;
        let extra = if jitter == 0 { 0 } else { self.random() % (jitter + 1) };
        let t = self.now + self.net.latency + Duration::from_nanos(extra);
        // Keep order: a stream does not reorder.
        self.in_flight.back().map_or(t, |(last, _, _)| t.max(*last))
    }

    fn record(&mut self, record: Record) {
        self.transcript.push((self.elapsed(), record));
    }

    // ---- the application side ----

    pub fn connect(&mut self) {
        self.client.connect(self.now);
        self.drain();
    }

    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), nova_proto::SendError> {
        let r = self.client.send(self.now, message.into());
        self.drain();
        r
    }

    pub fn close(&mut self, code: u16, reason: &str) {
        self.client.close(self.now, code.into(), reason).expect("valid close");
        self.drain();
    }

    // ---- the server side ----

    /// The current server end.
    pub fn server(&mut self) -> &mut Server {
        let id = self.current.expect("no server connection");
        self.server_by_id(id).expect("current server exists")
    }

    /// Whether a server end is up.
    pub fn has_server(&self) -> bool {
        self.current.is_some()
    }

    /// The id of the current server end.
    pub fn current_id(&self) -> Option<u32> {
        self.current
    }

    fn server_by_id(&mut self, id: u32) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.id == id)
    }

    /// Sends a message from the server.
    pub fn server_send(&mut self, message: ServerMessage) {
        let s = self.server();
        let ws = s.ws.as_mut().expect("not upgraded");
        ws.write(&mut s.io, message).expect("server write");
        ws.flush(&mut s.io).expect("server flush");
        self.flush_server();
    }

    /// Sends raw bytes from the server (malformed frames, say).
    pub fn server_raw(&mut self, bytes: &[u8]) {
        self.server().io.outbox.extend_from_slice(bytes);
        self.flush_server();
    }

    /// The server starts a close handshake.
    pub fn server_close(&mut self, code: u16, reason: &str) {
        let frame = tungstenite::protocol::CloseFrame { code: code.into(), reason: reason.into() };
        let s = self.server();
        let ws = s.ws.as_mut().expect("not upgraded");
        ws.close(&mut s.io, Some(frame)).expect("server close");
        self.flush_server();
    }

    /// The server ends the TCP connection (the client reads EOF after the latency).
    pub fn server_hang_up(&mut self) {
        self.drop_server(TransportDown::Eof);
    }

    /// The connection is reset.
    pub fn server_reset(&mut self) {
        self.drop_server(TransportDown::Reset(io::ErrorKind::ConnectionReset));
    }

    /// The server stops reading and writing (and answering pings): a dead peer.
    pub fn server_stall(&mut self) {
        self.server().stalled = true;
    }

    fn drop_server(&mut self, why: TransportDown) {
        let Some(id) = self.current.take() else { return };
        if let Some(s) = self.server_by_id(id) {
            s.hung_up = true;
        }
        let at = self.arrival();
        self.in_flight.push_back((at, id, Delivery::Down(why)));
    }

    fn flush_server(&mut self) {
        if let Some(id) = self.current {
            self.flush_server_id(id);
        }
    }

    fn flush_server_id(&mut self, id: u32) {
        let Some(s) = self.server_by_id(id) else { return };
        if s.stalled || s.io.outbox.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut s.io.outbox);
        let at = self.arrival();
        self.in_flight.push_back((at, id, Delivery::ToClient(bytes)));
    }

    fn server_receive(&mut self, id: u32, bytes: Vec<u8>) {
        let echo = self.echo;
        let Some(s) = self.server_by_id(id) else { return };
        if s.stalled || s.hung_up {
            return;
        }
        if s.ws.is_none() {
            s.request.extend_from_slice(&bytes);
            let Some(end) = s.request.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&s.request[..end + 4]).into_owned();
            let rest = s.request[end + 4..].to_vec();
            s.request_head = Some(head.clone());
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or("").to_owned();
            let reply = match &s.upgrade {
                Upgrade::Accept { extra } => Some(format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
                    accept_key(key.as_bytes())
                )),
                Upgrade::Reject { status, headers } => {
                    Some(format!("HTTP/1.1 {status} Refused\r\n{headers}Content-Length: 2\r\n\r\nno"))
                }
                Upgrade::WrongKey => Some(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
                        .to_owned(),
                ),
                Upgrade::Silent | Upgrade::RefuseTcp | Upgrade::Blackhole => None,
            };
            let accepted = matches!(s.upgrade, Upgrade::Accept { .. });
            if let Some(reply) = reply {
                s.io.outbox.extend_from_slice(reply.as_bytes());
            }
            if accepted {
                let config = WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
                s.ws = Some(WebSocketContext::new(Role::Server, Some(config)));
                s.echo = echo;
            }
            self.flush_server_id(id);
            if accepted && !rest.is_empty() {
                self.server_receive(id, rest);
            }
            return;
        }
        s.io.inbox.extend(bytes);
        let ws = s.ws.as_mut().expect("upgraded");
        let mut hang_up = false;
        let mut texts = Vec::new();
        loop {
            match ws.read(&mut s.io) {
                Ok(message) => {
                    if s.echo && (message.is_text() || message.is_binary()) {
                        ws.write(&mut s.io, message.clone()).expect("echo");
                    }
                    if message.is_close() && s.hang_up_after_close {
                        hang_up = true;
                    }
                    if let Ok(text) = message.to_text() {
                        texts.push(text.to_owned());
                    }
                    s.received.push(message);
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
                Err(e) => {
                    s.error = Some(e.to_string());
                    break;
                }
            }
        }
        let _ = ws.flush(&mut s.io);
        if let Some(mut responder) = self.responder.take() {
            for text in texts {
                for reply in responder(id, &text) {
                    let Some(s) = self.server_by_id(id) else { break };
                    let ws = s.ws.as_mut().expect("upgraded");
                    let _ = ws.write(&mut s.io, ServerMessage::text(reply));
                    let _ = ws.flush(&mut s.io);
                }
            }
            self.responder = Some(responder);
        }
        self.flush_server_id(id);
        if hang_up && self.current == Some(id) {
            self.server_hang_up();
        }
    }

    // ---- driving ----

    /// Drains the client's pollers in the documented order, acting on each output,
    /// until it has nothing more to say.
    pub fn drain(&mut self) {
        // The run loop of the crate docs: bytes out, then one output, again and
        // again, so whatever an output makes the application do (and whatever
        // decoding queued: pongs, a close frame) is written before the next one.
        loop {
            self.transmit();
            let output = if self.app_paused { self.client.poll_queued_output() } else { self.client.poll_output() };
            match output {
                Some(output) => self.act(output),
                // Decoding may have queued pongs: done only when nothing is left.
                None if self.transmit() => {}
                None => break,
            }
        }
        let deadline = self.client.poll_timeout();
        if let Some(at) = deadline {
            assert!(at >= self.now, "deadline in the past");
        }
        self.record(Record::Deadline(deadline.map(|d| d - self.t0)));
    }

    /// Takes the client's bytes and puts them on the wire; whether there were any.
    fn transmit(&mut self) -> bool {
        let mut wire = Vec::new();
        let n = self.client.poll_transmit(&mut wire, usize::MAX);
        assert_eq!(n, wire.len());
        if n == 0 {
            return false;
        }
        assert!(!self.closed, "client transmitted after Closed");
        self.record(Record::Transmit(wire.clone()));
        if let Some(id) = self.live {
            let at = self.arrival();
            self.in_flight.push_back((at, id, Delivery::ToServer(wire)));
        }
        true
    }

    fn act(&mut self, output: Output) {
        assert!(!self.closed, "output after Closed: {output:?}");
        self.record(Record::Output(output.clone()));
        match &output {
            Output::Connect(_) => self.open_transport(),
            Output::CloseTransport => {
                // Write out the last bytes (a close frame), then shut; the server
                // still reads what was written, then EOF.
                self.transmit();
                self.close_transports += 1;
                self.live = None;
                self.current = None;
            }
            Output::Message(m) => {
                let id = self.live.expect("a message arrived without a live transport");
                self.delivered.push((id, m.clone()));
                if self.app_echo {
                    let _ = self.client.send(self.now, m.clone());
                }
                self.outputs.push((self.elapsed(), output));
            }
            Output::Event(e) if matches!(**e, Event::Closed(_)) => {
                self.closed = true;
                self.outputs.push((self.elapsed(), output));
            }
            Output::Event(e) if matches!(**e, Event::Opened(_)) => {
                for m in self.on_open.clone() {
                    self.client.send(self.now, m).expect("the connection just opened");
                }
                self.outputs.push((self.elapsed(), output));
            }
            _ => self.outputs.push((self.elapsed(), output)),
        }
    }

    fn open_transport(&mut self) {
        let upgrade = self.upgrades.pop_front().unwrap_or_else(Upgrade::accept);
        self.next_id += 1;
        let id = self.next_id;
        self.live = Some(id);
        self.current = None;
        let at = self.arrival();
        match upgrade {
            Upgrade::RefuseTcp => {
                self.in_flight.push_back((
                    at,
                    id,
                    Delivery::Down(TransportDown::ConnectFailed(io::ErrorKind::ConnectionRefused)),
                ));
            }
            Upgrade::Blackhole => {}
            upgrade => {
                self.current = Some(id);
                self.servers.push(Server {
                    id,
                    upgrade,
                    request: Vec::new(),
                    request_head: None,
                    ws: None,
                    io: Mem::default(),
                    received: Vec::new(),
                    error: None,
                    echo: self.echo,
                    stalled: false,
                    hang_up_after_close: true,
                    hung_up: false,
                });
                self.in_flight.push_back((at, id, Delivery::Up));
            }
        }
    }

    /// Moves to the next event (delivery or deadline) if it is at or before
    /// `limit`; returns whether it did.
    pub fn step(&mut self, limit: Instant) -> bool {
        let deadline = self.client.poll_timeout();
        let arrival = self.in_flight.front().map(|(at, _, _)| *at);
        let next = match (deadline, arrival) {
            (Some(d), Some(a)) => d.min(a),
            (d, a) => match d.or(a) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        while self.in_flight.front().is_some_and(|(at, _, _)| *at <= self.now) {
            let (_, id, delivery) = self.in_flight.pop_front().expect("front");
            self.deliver(id, delivery);
        }
        if self.client.poll_timeout().is_some_and(|d| d <= self.now) {
            self.client.handle_timeout(self.now);
            self.drain();
        }
        true
    }

    fn deliver(&mut self, id: u32, delivery: Delivery) {
        match delivery {
            Delivery::ToServer(bytes) => self.server_receive(id, bytes),
            // Anything from a transport the client has since closed is not read.
            _ if self.live != Some(id) => {}
            Delivery::Up => {
                self.record(Record::Transport("up".into()));
                self.client.handle_input(self.now, Input::TransportUp);
                self.drain();
            }
            Delivery::Down(why) => {
                self.live = None;
                self.record(Record::Transport(format!("down {why:?}")));
                self.client.handle_input(self.now, Input::TransportDown(why));
                self.drain();
            }
            Delivery::ToClient(bytes) => {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let max = self.net.max_chunk.max(1);
                    let n = if max == 1 { 1 } else { 1 + (self.random() as usize % max) }.min(rest.len());
                    let (chunk, tail) = rest.split_at(n);
                    rest = tail;
                    self.record(Record::Received(chunk.to_vec()));
                    self.client.handle_input(self.now, Input::Received(chunk));
                    self.drain();
                }
            }
        }
    }

    /// Runs the simulation for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        let mut steps = 0;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 100_000, "livelock: over 100000 steps in {d:?}");
        }
        self.now = self.now.max(limit);
    }

    /// Runs until `done` holds, for at most `max` of virtual time; panics with
    /// the transcript tail if it never does.
    pub fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Self) -> bool) {
        let limit = self.now + max;
        let mut steps = 0;
        while !done(self) {
            if !self.step(limit) {
                panic!("condition not met within {max:?}; last records:\n{}", self.tail(30));
            }
            steps += 1;
            assert!(steps < 100_000, "livelock: over 100000 steps");
        }
    }

    /// Runs until the client is in `state`.
    pub fn run_until_state(&mut self, state: State, max: Duration) {
        self.run_until(max, |s| s.client.state() == state);
    }

    /// Runs until a connection newer than the current one is open.
    pub fn reopen(&mut self, max: Duration) {
        let opens = self.client.stats().opens;
        self.run_until(max, |s| s.client.stats().opens > opens && s.client.state() == State::Open);
    }

    /// Takes the outputs collected so far.
    pub fn take(&mut self) -> Vec<(Duration, Output)> {
        std::mem::take(&mut self.outputs)
    }

    /// Takes the outputs, without their times.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.take().into_iter().map(|(_, o)| o).collect()
    }

    /// Takes only the messages delivered.
    pub fn take_messages(&mut self) -> Vec<Message> {
        self.take()
            .into_iter()
            .filter_map(|(_, o)| match o {
                Output::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The last records of the transcript, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let mut s = String::new();
        for (t, r) in self.transcript.iter().rev().take(n).rev() {
            let _ = writeln!(s, "{t:>12?} {}", short(r));
        }
        s
    }

    /// Every message the servers read, all connections, in order.
    pub fn server_received(&self) -> Vec<ServerMessage> {
        self.servers.iter().flat_map(|s| s.received.iter().cloned()).collect()
    }

    /// The whole transcript as text (for replay comparison and seeds).
    pub fn transcript_text(&self) -> String {
        let mut s = String::new();
        for (t, r) in &self.transcript {
            let _ = writeln!(s, "{t:?} {r:?}");
        }
        s
    }

    /// The bytes the client read after the first 101 head, in order: a seed for
    /// the `client_stream` fuzz target.
    pub fn received_after_upgrade(&self) -> Vec<u8> {
        let all: Vec<u8> = self
            .transcript
            .iter()
            .filter_map(|(_, r)| match r {
                Record::Received(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        match all.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => all[end + 4..].to_vec(),
            None => Vec::new(),
        }
    }
}

fn short(r: &Record) -> String {
    match r {
        Record::Transmit(b) => format!("client wrote {} bytes", b.len()),
        Record::Received(b) => format!("client read {} bytes", b.len()),
        other => format!("{other:?}").chars().take(160).collect(),
    }
}

/// The events in `outputs`, without messages.
pub fn events(outputs: &[(Duration, Output)]) -> Vec<(Duration, Event)> {
    outputs
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Event(e) => Some((*t, (**e).clone())),
            _ => None,
        })
        .collect()
}

/// A server frame with the given first byte and payload, built by hand.
pub fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    nova_proto::frame::Header {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 7,
        opcode: nova_proto::frame::Opcode::from_bits(b0),
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    out
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
