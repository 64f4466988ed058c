//! A minimal in-memory peer for driving a `nova_proto::Session` with a
//! platform adapter: it answers connects and the upgrade, decodes (unmasks)
//! the client's frames, answers pings and close frames, feeds scripted
//! server frames, and moves a virtual clock from deadline to deadline.
//! (A trimmed version of nova-proto's tests/sim harness: no fault injection.)
#![allow(dead_code, unreachable_pub)]
// The virtual clock needs one real `Instant` as its epoch; it never reads it again.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use nova_proto::session::{Adapter, SessionConfig};
use nova_proto::{Config, Event, Input, Message, Output, Session, TransportDown, accept_key};
use serde_json::Value;

/// A frame the client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
}

pub struct Harness {
    pub session: Session,
    pub t0: Instant,
    pub now: Instant,
    /// Whether a transport is up (TCP connected).
    live: bool,
    /// Whether the upgrade was answered on the live transport.
    upgraded: bool,
    /// The server sent a close frame on the live transport.
    server_closing: bool,
    inbuf: Vec<u8>,
    pub sent: Vec<Sent>,
    pub events: Vec<Event>,
    pub messages: Vec<Message>,
    /// Transports opened so far.
    pub connections: u32,
    /// Answer connect attempts (false: refuse them).
    pub accept: bool,
    pub closed: bool,
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

impl Harness {
    pub fn new(config: Config, adapter: impl Adapter + Send + 'static) -> Harness {
        let t0 = Instant::now();
        let session = Session::new(config, [9; 32], t0, adapter);
        Harness::from_session(session, t0)
    }

    pub fn with_settings(config: Config, adapter: impl Adapter + Send + 'static, settings: SessionConfig) -> Harness {
        let t0 = Instant::now();
        let session = Session::with_settings(config, [9; 32], t0, Box::new(adapter), settings);
        Harness::from_session(session, t0)
    }

    fn from_session(session: Session, t0: Instant) -> Harness {
        Harness {
            session,
            t0,
            now: t0,
            live: false,
            upgraded: false,
            server_closing: false,
            inbuf: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            messages: Vec::new(),
            connections: 0,
            accept: true,
            closed: false,
        }
    }

    /// Connects and runs until nothing more happens at this instant.
    pub fn start(&mut self) {
        self.session.connect(self.now);
        self.pump();
    }

    /// Drains the session until it has nothing more to do at `now`.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            let mut out = Vec::new();
            let _ = self.session.poll_transmit(&mut out, usize::MAX);
            if !out.is_empty() {
                progress = true;
                self.on_client_bytes(&out);
            }
            while let Some(output) = self.session.poll_output() {
                progress = true;
                match output {
                    Output::Connect(_) => {
                        if self.accept {
                            self.connections += 1;
                            self.live = true;
                            self.upgraded = false;
                            self.server_closing = false;
                            self.inbuf.clear();
                            self.session.handle_input(self.now, Input::TransportUp);
                        } else {
                            let down = TransportDown::ConnectFailed(std::io::ErrorKind::ConnectionRefused);
                            self.session.handle_input(self.now, Input::TransportDown(down));
                        }
                    }
                    Output::CloseTransport => {
                        self.live = false;
                    }
                    Output::Message(m) => self.messages.push(m),
                    Output::Event(e) => {
                        if matches!(*e, Event::Closed(_)) {
                            self.closed = true;
                        }
                        self.events.push(*e);
                    }
                }
            }
            // Classifying inside `poll_output` may have queued replies (a
            // heartbeat answer) without returning an output: look again.
            let mut out = Vec::new();
            let _ = self.session.poll_transmit(&mut out, usize::MAX);
            if !out.is_empty() {
                progress = true;
                self.on_client_bytes(&out);
            }
            if !progress {
                return;
            }
        }
        panic!("livelock: the session never went quiet");
    }

    /// Moves the clock `d` forward, firing every deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            match self.session.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.session.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
        self.session.handle_timeout(self.now);
        self.pump();
    }

    fn on_client_bytes(&mut self, bytes: &[u8]) {
        if !self.live {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        if !self.upgraded {
            let Some(end) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
            self.inbuf.drain(..end + 4);
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .expect("the upgrade request has a key")
                .trim()
                .to_owned();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            self.upgraded = true;
            self.session.handle_input(self.now, Input::Received(answer.as_bytes()));
        }
        while let Some((opcode, payload, used)) = decode_client_frame(&self.inbuf) {
            self.inbuf.drain(..used);
            match opcode {
                0x1 => self.sent.push(Sent::Text(String::from_utf8(payload).expect("client text is UTF-8"))),
                0x2 => self.sent.push(Sent::Binary(payload)),
                0x9 => self.feed_frame(0xA, &payload),
                0x8 => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    self.sent.push(Sent::Close(code));
                    if !self.server_closing {
                        self.feed_frame(0x8, &payload);
                    }
                    // The server ends the transport after the close handshake.
                    self.live = false;
                    self.session.handle_input(self.now, Input::TransportDown(TransportDown::Eof));
                    return;
                }
                _ => {}
            }
        }
    }

    fn feed_frame(&mut self, opcode: u8, payload: &[u8]) {
        if !self.live {
            return;
        }
        let frame = server_frame(opcode, payload);
        self.session.handle_input(self.now, Input::Received(&frame));
    }

    /// The server sends a text message.
    pub fn server_text(&mut self, text: &str) {
        self.feed_frame(0x1, text.as_bytes());
        self.pump();
    }

    /// The server sends a JSON value.
    pub fn server_json(&mut self, value: Value) {
        self.server_text(&value.to_string());
    }

    /// The server closes with `code`.
    pub fn server_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.feed_frame(0x8, &payload);
        self.server_closing = true;
        self.pump();
    }

    /// The transport fails without a close frame.
    pub fn drop_transport(&mut self) {
        if self.live {
            self.live = false;
            let down = TransportDown::Reset(std::io::ErrorKind::ConnectionReset);
            self.session.handle_input(self.now, Input::TransportDown(down));
        }
        self.pump();
    }

    pub fn is_live(&self) -> bool {
        self.live && self.upgraded
    }

    /// The client's text frames sent since the last call, as JSON.
    pub fn take_json(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.sent)
            .into_iter()
            .filter_map(|s| match s {
                Sent::Text(t) => Some(serde_json::from_str(&t).expect("the client sends JSON")),
                _ => None,
            })
            .collect()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

/// An unmasked server frame.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Decodes one masked client frame: (opcode, unmasked payload, bytes used).
/// Fragmented messages are not expected from these small adapters' frames.
fn decode_client_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    assert!(buf[0] & 0x80 != 0, "the harness expects unfragmented client frames");
    assert!(buf[1] & 0x80 != 0, "client frames are masked");
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    at += 4;
    let payload = buf.get(at..at + len)?;
    let unmasked = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    Some((opcode, unmasked, at + len))
}

/// The subscription data events (subscription id, JSON) in `events`.
pub fn data(events: &[Event]) -> Vec<(u64, Value)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data { subscription, message } => {
                Some((subscription.0, serde_json::from_slice(message.as_bytes()).unwrap_or(Value::Null)))
            }
            _ => None,
        })
        .collect()
}
