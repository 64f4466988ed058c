//! Fuzz bodies, shared by the cargo-fuzz targets in `fuzz/` and by `cargo test`,
//! which replays every file of `fuzz/corpus/<target>/` through them.
//!
//! Each body takes arbitrary bytes, drives part of the client, and panics only
//! when an invariant breaks: the decoders must turn any input into a value or a
//! typed error, and the client must stay within its bounds and legal transitions
//! whatever the server sends and however the driver and application call it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{Config, Keepalive, Outbound, Overflow};
use crate::connection::{Connection, Inbound};
use crate::deflate::{Codec, DeflateConfig, DeflateParams};
use crate::error::{TlsFailure, TransportDown};
use crate::frame::{Header, Opcode};
use crate::handshake::{Offer, ResponseReader, accept_key};
use crate::io::{Event, Input, Output, State};
use crate::message::{CloseCode, Message};
use crate::outbound::SendOptions;
use crate::{Backoff, Client};

/// Reads fuzz input a piece at a time; past the end everything is zero.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A fixed epoch: harness time is this plus offsets. The core never reads a
/// clock; the harness needs one `Instant` to start from.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

/// Frame decoder: arbitrary bytes, cut into chunks whose sizes come from the
/// first byte, through one connection's decoder.
pub fn frame_decoder(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let mut conn = Connection::new(4096, 8192, None);
    for piece in rest.chunks(chunk) {
        conn.receive(piece);
        loop {
            match conn.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    // Every error names a close code the client may send.
                    assert!(e.close_code().is_valid_on_wire());
                    return;
                }
            }
        }
    }
    // Also the bare header decoder, on every suffix of the input.
    for start in 0..rest.len().min(32) {
        if let Ok(Some((h, n))) = Header::decode(&rest[start..]) {
            assert!((2..=14).contains(&n));
            assert!(n >= h.encoded_len(), "decoded header shorter than its shortest encoding");
        }
    }
}

/// permessage-deflate's receive path: server frames built from the input
/// (RSV bits, opcode, FIN and payload chosen by it, so RSV1 lands on data,
/// continuation and control frames alike) through a connection that
/// negotiated deflate, chunked by the first byte; then the rest of the input
/// through our compressor and back through a fresh inflater.
///
/// Layout: `[flags, (b0, len, payload[len])*]`; `flags` bit 0 turns context
/// takeover off, the other bits pick the chunk size.
pub fn inflate(data: &[u8]) {
    const MAX_MESSAGE: usize = 8192;
    let mut u = Cursor(data);
    let flags = u.byte();
    let takeover = flags & 1 == 0;
    let chunk = usize::from(flags >> 1) % 64 + 1;
    let params = DeflateParams {
        server_no_context_takeover: !takeover,
        client_no_context_takeover: !takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let config = DeflateConfig { threshold: 0, ..DeflateConfig::default() };
    let mut conn = Connection::new(4096, MAX_MESSAGE, None).with_deflate(Some(Codec::new(params, &config)));
    let mut stream = Vec::new();
    while !u.is_empty() {
        let b0 = u.byte();
        let n = usize::from(u.byte());
        let payload = u.take(n);
        Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: Opcode::from_bits(b0),
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encode(&mut stream);
        stream.extend_from_slice(payload);
    }
    'feed: for piece in stream.chunks(chunk) {
        conn.receive(piece);
        loop {
            match conn.next() {
                Ok(Some(Inbound::Message(m))) => assert!(m.len() <= MAX_MESSAGE, "inflated past the limit"),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(e.close_code().is_valid_on_wire());
                    break 'feed;
                }
            }
        }
    }
    // Whatever we compress, a fresh inflater with the same parameters restores.
    let message = data.get(1..).unwrap_or_default();
    let mut tx = Codec::new(params, &config);
    let mut rx = Codec::new(params, &config);
    for _ in 0..2 {
        let Some(wire) = tx.compress(message) else { continue };
        let mut out = Vec::new();
        rx.inflate(&wire, true, &mut out, usize::MAX).unwrap_or_else(|e| panic!("our own output: {e}"));
        assert_eq!(out, message, "round trip");
    }
}

/// Handshake response reader: arbitrary bytes as the server's answer, chunked
/// by the first byte. Must end in a result or keep waiting within its bound.
pub fn handshake_response(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 32) + 1;
    let subprotocols = ["chat".to_owned(), "v2".to_owned()];
    let deflate =
        DeflateConfig { server_max_window_bits: Some(12), client_max_window_bits: true, ..DeflateConfig::default() };
    let offer = Offer {
        accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        subprotocols: &subprotocols,
        require_subprotocol: first & 0x80 != 0,
        deflate: (first & 0x40 != 0).then_some(&deflate),
    };
    let mut reader = ResponseReader::default();
    let mut fed = 0;
    for piece in rest.chunks(chunk) {
        fed += piece.len();
        if let Some(done) = reader.feed(piece, 1024, &offer) {
            assert!(done.rest.len() <= fed);
            return;
        }
        assert!(fed <= 1024, "reader kept {fed} bytes past its bound");
    }
}

/// A client past a valid upgrade, fed arbitrary server bytes chunked by the
/// first byte (odd: read into a large frame's own buffer when one is
/// offered, as the drivers do), with the application answering every message.
pub fn client_stream(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let mut h = Harness::new(small_config(Some(3), Overflow::Reject), [first; 32]);
    h.client.connect(h.now);
    h.drain();
    h.client.handle_input(h.now, Input::TransportUp);
    h.drain();
    h.answer_handshake(b"");
    for piece in rest.chunks(chunk) {
        // As the drivers read: into a large frame's own buffer when one is
        // offered (odd first bytes), the rest handed over.
        let mut piece = piece;
        if first % 2 == 1
            && let Some(place) = h.client.read_in_place(piece.len())
        {
            let n = place.len().min(piece.len());
            place[..n].copy_from_slice(&piece[..n]);
            h.client.handle_input(h.now, Input::ReceivedInPlace(n));
            piece = &piece[n..];
        }
        h.client.handle_input(h.now, Input::Received(piece));
        h.drain();
        let echoes: Vec<Message> = std::mem::take(&mut h.delivered);
        for m in echoes {
            let _ = h.client.send(h.now, m);
            h.drain();
        }
    }
}

/// The client under arbitrary sequences of driver inputs, timer ticks and
/// application commands, with a scripted server that can answer handshakes and
/// send well-formed or raw frames.
pub fn client_ops(data: &[u8]) {
    let mut u = Cursor(data);
    let max_attempts = match u.byte() % 4 {
        0 => None,
        n => Some(u32::from(n) * 2),
    };
    let overflow = [Overflow::Reject, Overflow::DropOldest, Overflow::DropNewest][usize::from(u.byte() % 3)];
    let mut h = Harness::new(small_config(max_attempts, overflow), [u.byte(); 32]);
    while !u.is_empty() {
        match u.byte() % 14 {
            0 => h.client.connect(h.now),
            1 => h.client.handle_input(h.now, Input::TransportUp),
            2 => {
                let n = usize::from(u.byte());
                let bytes = u.take(n).to_vec();
                h.client.handle_input(h.now, Input::Received(&bytes));
            }
            3 => {
                let n = usize::from(u.byte() % 8);
                let trailing = u.take(n).to_vec();
                h.answer_handshake(&trailing);
            }
            4 => {
                let b0 = u.byte();
                let n = usize::from(u.byte());
                let payload = u.take(n).to_vec();
                let mut frame = Vec::new();
                Header {
                    fin: b0 & 0x80 != 0,
                    rsv: 0,
                    opcode: Opcode::from_bits(b0),
                    mask: None,
                    payload_len: n as u64,
                }
                .encode(&mut frame);
                frame.extend_from_slice(&payload);
                h.client.handle_input(h.now, Input::Received(&frame));
            }
            5 => {
                h.now += Duration::from_millis(u64::from(u.u16()));
                h.client.handle_timeout(h.now);
            }
            6 => {
                if let Some(at) = h.client.poll_timeout() {
                    h.now = h.now.max(at);
                    h.client.handle_timeout(h.now);
                }
            }
            7 => {
                let why = match u.byte() % 5 {
                    0 => TransportDown::Eof,
                    1 => TransportDown::Reset(std::io::ErrorKind::ConnectionReset),
                    2 => TransportDown::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
                    3 => TransportDown::Resolve("no such host".into()),
                    _ => TransportDown::Tls(TlsFailure { certificate: u.byte() & 1 == 1, detail: "fuzz".into() }),
                };
                h.client.handle_input(h.now, Input::TransportDown(why));
            }
            8 | 9 => {
                let n = usize::from(u.u16()) % 9000;
                let message =
                    if u.byte() & 1 == 0 { Message::text("é".repeat(n / 2)) } else { Message::binary(vec![0xA5; n]) };
                let offline = u.byte() & 1 == 1;
                let ttl = match u.byte() % 3 {
                    0 => None,
                    n => Some(Duration::from_millis(u64::from(n) * 700)),
                };
                let _ = h.client.send_with(h.now, message, SendOptions { offline, ttl });
            }
            10 => {
                let n = usize::from(u.byte() % 130);
                let _ = h.client.ping(h.now, Bytes::from(vec![1; n]));
            }
            11 => {
                let code = CloseCode(u.u16());
                let _ = h.client.close(h.now, code, "fuzz");
            }
            12 => h.transmit_limit = usize::from(u.byte()) * 16,
            _ => h.transmit_limit = usize::MAX,
        }
        h.drain();
    }
}

/// A [`Session`](crate::session::Session) with the JSON-RPC adapter
/// (authentication, `eth_subscribe`-style subscriptions with server ids or
/// channel lists, an application heartbeat, sequence numbers), small bounds
/// and optionally rate limits, all chosen by the first byte, under arbitrary
/// driver inputs, server messages (answers to the ids actually seen on the
/// wire, notifications, garbage, close frames), timer ticks and application
/// commands.
///
/// Layout: `[flags, ops...]`; `flags` bit 0: rate limits, bit 1: channel
/// lists (two per request) instead of server ids, bits 2-3: max pending
/// requests - 1, bits 4-5: max subscriptions - 1, bits 6-7: the request
/// timeout in 300 ms steps.
#[cfg(feature = "json")]
pub fn session_ops(data: &[u8]) {
    let mut u = Cursor(data);
    let flags = u.byte();
    let mut h = SessionHarness::new(flags);
    while !u.is_empty() {
        h.op(&mut u);
        h.drain();
    }
    // Closing at the end must complete everything still pending.
    let _ = h.session.close(h.now, CloseCode(1000), "end");
    h.drain();
    h.session.handle_input(h.now, Input::TransportDown(TransportDown::Eof));
    h.drain();
}

#[cfg(feature = "json")]
struct SessionHarness {
    session: crate::session::Session,
    now: Instant,
    /// Client bytes since the upgrade was answered (or not yet answered).
    wire: Vec<u8>,
    /// Whether `wire` holds frames (the upgrade was answered).
    framed: bool,
    /// Request ids seen on the wire, newest last (bounded).
    seen: Vec<u64>,
    max_subscriptions: usize,
    max_pending: usize,
    max_queued: Option<usize>,
    closed: bool,
    /// The application's requests, and which of them got their `Response`.
    requests: Vec<crate::session::RequestId>,
    answered: std::collections::HashSet<crate::session::RequestId>,
    /// Subscriptions handed to the application and not yet reported gone.
    held: std::collections::HashSet<crate::session::SubscriptionId>,
    handles: Vec<crate::session::SubscriptionId>,
    /// Texts the application sent itself (each unique).
    sent: std::collections::HashSet<String>,
    counter: u64,
}

#[cfg(feature = "json")]
impl SessionHarness {
    fn new(flags: u8) -> SessionHarness {
        use crate::limits::{Bucket, RateLimits};
        use crate::session::{HeartbeatSpec, Session, SessionConfig, json::JsonRpc};
        let limited = flags & 1 == 1;
        let channels = flags & 2 != 0;
        let max_pending = usize::from((flags >> 2) & 3) + 1;
        let max_subscriptions = usize::from((flags >> 4) & 3) + 1;
        let timeout = Duration::from_millis(300 * (u64::from(flags >> 6) + 1));
        let mut adapter = JsonRpc::new()
            .subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription")
            .auth("public/auth", serde_json::json!({ "client_id": "fuzz" }), None)
            .heartbeat("public/test", HeartbeatSpec::new(Duration::from_millis(800), 2))
            .sequence_field("seq");
        if channels {
            adapter = adapter.channels(2);
        }
        let mut settings = SessionConfig::default()
            .request_timeout(timeout)
            .auth_timeout(timeout)
            .max_requests(max_pending, 2)
            .max_subscriptions(max_subscriptions);
        let mut max_queued = None;
        if limited {
            let bucket = Bucket::new(2, 1, Duration::from_millis(200)).unwrap_or_else(|e| panic!("bucket: {e}"));
            settings = settings.rate_limits(RateLimits::none().connection(bucket).max_queued(4));
            max_queued = Some(4);
        }
        let now = epoch();
        let session = Session::with_settings(
            small_config(Some(4), Overflow::Reject),
            [flags; 32],
            now,
            Box::new(adapter),
            settings,
        );
        SessionHarness {
            session,
            now,
            wire: Vec::new(),
            framed: false,
            seen: Vec::new(),
            max_subscriptions,
            max_pending,
            max_queued,
            closed: false,
            requests: Vec::new(),
            answered: std::collections::HashSet::new(),
            held: std::collections::HashSet::new(),
            handles: Vec::new(),
            sent: std::collections::HashSet::new(),
            counter: 0,
        }
    }

    fn receive(&mut self, bytes: &[u8]) {
        self.session.handle_input(self.now, Input::Received(bytes));
    }

    fn server_text(&mut self, text: &str) {
        let mut frame = Vec::new();
        let payload = text.as_bytes();
        Header { fin: true, rsv: 0, opcode: Opcode::Text, mask: None, payload_len: payload.len() as u64 }
            .encode(&mut frame);
        frame.extend_from_slice(payload);
        self.receive(&frame);
    }

    /// A request id the client sent (or, rarely, one it never did).
    fn seen_id(&self, pick: u8) -> u64 {
        if self.seen.is_empty() || pick == 0xFF {
            return u64::from(pick);
        }
        self.seen[self.seen.len() - 1 - usize::from(pick) % self.seen.len()]
    }

    fn op(&mut self, u: &mut Cursor<'_>) {
        use crate::session::{RequestId, RequestOptions, RequestPayload, SubscribeOptions, SubscriptionId};
        let now = self.now;
        match u.byte() % 20 {
            0 => self.session.connect(now),
            1 => self.session.handle_input(now, Input::TransportUp),
            2 => {
                let why = match u.byte() % 3 {
                    0 => TransportDown::Eof,
                    1 => TransportDown::Reset(std::io::ErrorKind::ConnectionReset),
                    _ => TransportDown::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
                };
                self.framed = false;
                self.wire.clear();
                self.session.handle_input(now, Input::TransportDown(why));
            }
            3 => self.answer_handshake(),
            4 | 5 => {
                // A response for an id seen on the wire.
                let id = self.seen_id(u.byte());
                let kind = u.byte();
                let v = u.byte();
                let body = match kind % 6 {
                    0 => format!(r#""result":"0x{}""#, v % 8),
                    1 => format!(r#""result":{{"expires_in":{}}}"#, f64::from(v) / 8.0),
                    2 => r#""result":true"#.to_owned(),
                    3 => format!(r#""error":{{"code":{},"message":"no"}}"#, -32000 - i64::from(v)),
                    4 => format!(
                        r#""error":{{"code":10006,"message":"slow down","data":{{"retry_after":{}}}}}"#,
                        f64::from(v) / 10.0
                    ),
                    _ => r#""result":null,"error":null"#.to_owned(),
                };
                let text = format!(r#"{{"jsonrpc":"2.0","id":{id},{body}}}"#);
                self.server_text(&text);
            }
            6 | 7 => {
                let which = u.byte();
                let seq = u.byte();
                let route = if which & 0x80 == 0 {
                    format!(r#""subscription":"0x{}""#, which % 8)
                } else {
                    format!(r#""channel":"t{}""#, (which & 0x7F) % 6)
                };
                let text = format!(
                    r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{{route},"result":{{"seq":{seq}}}}}}}"#
                );
                self.server_text(&text);
            }
            8 => {
                let n = usize::from(u.byte() % 64);
                let raw = String::from_utf8_lossy(u.take(n)).into_owned();
                self.server_text(&raw);
            }
            9 => {
                let code = u.u16();
                let mut frame = vec![0x88, 2];
                frame.extend_from_slice(&code.to_be_bytes());
                self.receive(&frame);
            }
            10 => {
                let topic = format!("t{}", u.byte() % 6);
                if let Ok(id) = self.session.subscribe(now, topic, SubscribeOptions::default()) {
                    self.held.insert(id);
                    self.handles.push(id);
                }
            }
            11 => {
                let b = u.byte();
                let topics: Vec<String> = (0..(b % 4) + 1).map(|i| format!("t{}", (b / 4 + i) % 6)).collect();
                if let Ok(ids) = self.session.subscribe_many(now, topics, SubscribeOptions::default()) {
                    self.held.extend(ids.iter().copied());
                    self.handles.extend(ids);
                }
            }
            12 => {
                let b = u.byte();
                let id = match self.handles.len() {
                    0 => SubscriptionId(u64::from(b)),
                    n => self.handles[usize::from(b) % n],
                };
                let _ = self.session.unsubscribe(now, id);
            }
            13 => {
                let b = u.byte();
                let mut options = RequestOptions::default().idempotent(b & 1 == 1).before_ready(b & 2 != 0);
                if b & 4 != 0 {
                    options = options.timeout(Duration::from_millis(u64::from(b >> 3) * 50));
                }
                let payload = RequestPayload::call("public/get_time", serde_json::json!([]));
                if let Ok(id) = self.session.request(now, payload, options) {
                    self.requests.push(id);
                }
            }
            14 => {
                let b = u.byte();
                let id = match self.requests.len() {
                    0 => RequestId(u64::from(b)),
                    n => self.requests[usize::from(b) % n],
                };
                let _ = self.session.cancel(now, id);
            }
            15 => {
                let b = u.byte();
                self.counter += 1;
                let text = format!("app:{}", self.counter);
                self.sent.insert(text.clone());
                let options =
                    SendOptions { offline: b & 1 == 1, ttl: (b & 2 != 0).then_some(Duration::from_millis(500)) };
                let _ = self.session.send_with(now, Message::text(text), options);
            }
            16 => {
                self.now += Duration::from_millis(u64::from(u.u16()) % 4000);
                self.session.handle_timeout(self.now);
            }
            17 => {
                if let Some(at) = self.session.poll_timeout() {
                    self.now = self.now.max(at);
                    self.session.handle_timeout(self.now);
                }
            }
            18 => {
                let _ = self.session.close(now, CloseCode(1000), "fuzz");
            }
            _ => {
                let n = usize::from(u.byte() % 16);
                let bytes = u.take(n).to_vec();
                self.receive(&bytes);
            }
        }
    }

    fn answer_handshake(&mut self) {
        if self.framed {
            return;
        }
        let text = String::from_utf8_lossy(&self.wire).into_owned();
        let Some(key) = text.lines().rev().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")) else {
            return;
        };
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        self.wire.clear();
        self.framed = true;
        self.receive(reply.as_bytes());
    }

    /// Takes the session's bytes and reads the request ids off its frames.
    fn transmit(&mut self) -> bool {
        let before = self.wire.len();
        let n = self.session.poll_transmit(&mut self.wire, usize::MAX);
        assert_eq!(self.wire.len() - before, n);
        if self.closed {
            assert_eq!(n, 0, "bytes transmitted after Closed");
        }
        if self.framed {
            self.read_frames();
        } else if self.wire.len() > 1 << 16 {
            self.wire.clear();
        }
        n > 0
    }

    /// Decodes the client's (masked) frames on the wire, keeping any partial one.
    fn read_frames(&mut self) {
        loop {
            let (header, n) = match Header::decode(&self.wire) {
                Ok(Some(found)) => found,
                Ok(None) => return,
                Err(e) => panic!("the client wrote a bad frame header: {e:?}"),
            };
            let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
            if self.wire.len() - n < len {
                return;
            }
            let key = header.mask.unwrap_or_else(|| panic!("unmasked client frame"));
            let payload: Vec<u8> = self.wire[n..n + len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            self.wire.drain(..n + len);
            if header.opcode != Opcode::Text {
                continue;
            }
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&payload) else { continue };
            if let Some(id) = value.get("id").and_then(serde_json::Value::as_u64) {
                self.seen.push(id);
                if self.seen.len() > 64 {
                    self.seen.remove(0);
                }
            }
        }
    }

    fn drain(&mut self) {
        use crate::session::Readiness;
        loop {
            self.transmit();
            let Some(output) = self.session.poll_output() else {
                if self.transmit() {
                    continue;
                }
                break;
            };
            assert!(!self.closed, "output after Closed: {output:?}");
            match output {
                Output::CloseTransport => {
                    self.transmit();
                    self.framed = false;
                    self.wire.clear();
                }
                Output::Connect(_) => {
                    self.framed = false;
                    self.wire.clear();
                }
                Output::Event(e) => self.event(*e),
                _ => {}
            }
        }
        let s = &self.session;
        if let Some(at) = s.poll_timeout() {
            assert!(at >= self.now, "deadline in the past");
        }
        assert!(s.subscriptions().len() <= self.max_subscriptions, "{} subscriptions", s.subscriptions().len());
        assert!(s.pending_requests() <= self.max_pending, "{} pending requests", s.pending_requests());
        // Requests, one subscribe or unsubscribe per subscription, the
        // authentication and the heartbeat.
        let entries = s.deadlines().count();
        assert!(entries <= self.max_pending + self.max_subscriptions + 2, "{entries} pending entries");
        match self.max_queued {
            Some(max) => assert!(s.rate_queued() <= max, "{} rate-queued", s.rate_queued()),
            None => assert_eq!(s.rate_queued(), 0),
        }
        // Readiness belongs to an open connection (a closing one keeps it
        // until it is gone); never to one being set up, or to none.
        if s.readiness() != Readiness::Offline {
            assert!(matches!(s.state(), State::Open | State::Closing), "{:?} while {:?}", s.readiness(), s.state());
        }
        assert_eq!(self.closed, s.state() == State::Closed);
        if self.closed {
            assert_eq!(s.poll_timeout(), None);
            assert_eq!(s.pending_requests(), 0);
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Closed(_) => self.closed = true,
            Event::Response { id, .. } => {
                assert!(self.requests.contains(&id), "response for {id}, which the application never asked");
                assert!(self.answered.insert(id), "second response for {id}");
            }
            Event::Data { subscription, .. } => {
                assert!(self.held.contains(&subscription), "data for {subscription}, which is gone");
            }
            Event::SubscriptionFailed { id, .. } | Event::Unsubscribed { id } => {
                assert!(self.held.remove(&id), "{id} reported gone twice or never held");
            }
            Event::Unsent { message, .. } => {
                let text = message.as_text().unwrap_or_default();
                assert!(self.sent.remove(text), "unsent message the application did not send: {text:?}");
            }
            _ => {}
        }
    }
}

fn small_config(max_attempts: Option<u32>, overflow: Overflow) -> Config {
    Config::builder("ws://fuzz.test/")
        .max_frame_size(4096)
        .max_message_size(8192)
        .max_handshake_size(1024)
        .max_outgoing_frame_size(Some(1000))
        .outbound(Outbound { max_messages: 8, max_bytes: 16 * 1024, overflow, offline: false, ttl: None })
        .keepalive(Some(Keepalive {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            allowed_misses: 1,
        }))
        .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1), 0.5))
        .max_attempts(max_attempts)
        .history_len(8)
        .build()
        .unwrap_or_else(|e| panic!("fuzz config: {e}"))
}

/// The client plus what the fuzz server saw, with invariants checked on every drain.
struct Harness {
    client: Client,
    now: Instant,
    wire: Vec<u8>,
    delivered: Vec<Message>,
    transmit_limit: usize,
    closed: bool,
    transitions_seen: u64,
}

impl Harness {
    fn new(config: Config, seed: [u8; 32]) -> Harness {
        let now = epoch();
        Harness {
            client: Client::new(config, seed, now),
            now,
            wire: Vec::new(),
            delivered: Vec::new(),
            transmit_limit: usize::MAX,
            closed: false,
            transitions_seen: 0,
        }
    }

    /// Takes the client's bytes; whether there were any.
    fn transmit(&mut self) -> bool {
        let before = self.wire.len();
        let n = self.client.poll_transmit(&mut self.wire, self.transmit_limit);
        assert_eq!(self.wire.len() - before, n);
        if self.wire.len() > 1 << 20 {
            self.wire.drain(..self.wire.len() - 4096);
        }
        if self.closed {
            assert_eq!(n, 0, "bytes transmitted after Closed");
        }
        n > 0
    }

    /// Answers the upgrade request on the wire (if one is there) with a valid 101.
    fn answer_handshake(&mut self, trailing: &[u8]) {
        let text = String::from_utf8_lossy(&self.wire).into_owned();
        let Some(key) = text.lines().rev().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")) else {
            return;
        };
        let mut reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        )
        .into_bytes();
        reply.extend_from_slice(trailing);
        self.wire.clear();
        self.client.handle_input(self.now, Input::Received(&reply));
        self.drain();
    }

    /// Drains the pollers in the documented order and checks the invariants.
    fn drain(&mut self) {
        let config = self.client.config().clone();
        loop {
            self.transmit();
            let Some(output) = self.client.poll_output() else {
                // Decoding may have queued pongs: done only when nothing is left.
                if self.transmit() {
                    continue;
                }
                break;
            };
            assert!(!self.closed, "output after Closed: {output:?}");
            match output {
                Output::Message(m) => {
                    assert!(m.len() <= config.limits().max_message_size);
                    self.delivered.push(m);
                }
                Output::CloseTransport => {
                    self.transmit();
                }
                Output::Event(e) if matches!(*e, Event::Closed(_)) => self.closed = true,
                _ => {}
            }
        }
        if self.delivered.len() > 64 {
            self.delivered.clear();
        }
        if let Some(at) = self.client.poll_timeout() {
            assert!(at >= self.now, "deadline in the past");
        }
        let o = config.outbound();
        assert!(self.client.queued_messages() <= o.max_messages);
        assert!(self.client.buffered_amount() <= o.max_bytes.max(config.limits().max_message_size));
        let history = self.client.history();
        let new = (history.total() - self.transitions_seen) as usize;
        for t in history.iter().rev().take(new) {
            assert!(t.from.can_become(t.to), "illegal transition {t:?}");
        }
        self.transitions_seen = history.total();
        assert_eq!(self.closed, self.client.state() == State::Closed);
        if self.closed {
            assert_eq!(self.client.poll_timeout(), None);
        }
    }
}

/// Hand-made seeds per target: each reaches a different part of the client.
/// `cargo test` replays them; with `NOVA_WRITE_CORPUS=1` a test also writes them
/// into `fuzz/corpus/<target>/` as the fuzzers' starting points.
pub fn seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: Opcode::from_bits(b0),
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encode(&mut out);
        out.extend_from_slice(payload);
        out
    }
    let streams: Vec<(&'static str, Vec<u8>)> = vec![
        ("text", frame(0x81, b"hello")),
        ("binary_300", frame(0x82, &[7; 300])),
        ("len16", frame(0x82, &[1; 70_000 % 4000])),
        (
            "fragmented_with_ping",
            [frame(0x01, "κό".as_bytes()), frame(0x89, b"p"), frame(0x80, "σμε".as_bytes())].concat(),
        ),
        ("pong_and_close", [frame(0x8A, b"x"), frame(0x88, b"\x03\xe8bye")].concat()),
        ("close_empty", frame(0x88, b"")),
        ("bad_rsv", frame(0xC1, b"x")),
        ("bad_opcode", frame(0x83, b"")),
        ("masked", vec![0x81, 0x81, 1, 2, 3, 4, 0x60]),
        ("bad_utf8", frame(0x81, b"\xce\xba\xff")),
        ("ping_too_long", frame(0x89, &[0; 126])),
        ("bad_close_code", frame(0x88, b"\x03\xed")),
        ("len64_msb", vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ("too_big", vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ];
    let with_chunk = |chunk: u8, v: &[u8]| [&[chunk][..], v].concat();
    match target {
        "frame_decoder" | "client_stream" => {
            let mut seeds: Vec<(&'static str, Vec<u8>)> =
                streams.iter().enumerate().map(|(i, (name, v))| (*name, with_chunk(i as u8 * 7, v))).collect();
            // Frames long enough for a buffer of their own (the fuzz limit is
            // 4096), read in place when the first byte is odd.
            let text = "ζ".repeat(2048);
            let large = [frame(0x82, &[5; 4096]), frame(0x81, text.as_bytes()), frame(0x81, b"after")].concat();
            seeds.push(("large_in_place", with_chunk(63, &large)));
            seeds.push(("large_copied", with_chunk(62, &large)));
            seeds
        }
        "inflate" => {
            // [flags, (b0, len, payload)*]: b0 0xC1 = FIN + RSV1 + text.
            let f = |b0: u8, payload: &[u8]| [&[b0, payload.len() as u8][..], payload].concat();
            let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
            let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
            let mut zeros = Codec::new(
                DeflateParams {
                    server_no_context_takeover: false,
                    client_no_context_takeover: false,
                    server_max_window_bits: 15,
                    client_max_window_bits: 15,
                },
                &DeflateConfig { threshold: 0, level: 9, ..DeflateConfig::default() },
            );
            // 64 KiB of zeros: about 100 bytes, eight times the fuzz limit.
            let bomb = zeros.compress(&[0; 64 << 10]).unwrap_or_default();
            vec![
                ("hello_twice", [&[0][..], &f(0xC1, &hello), &f(0xC1, &again)].concat()),
                ("hello_no_takeover", [&[1][..], &f(0xC1, &hello), &f(0xC1, &hello)].concat()),
                ("fragmented", [&[6][..], &f(0x41, &hello[..3]), &f(0x89, b"p"), &f(0x80, &hello[3..])].concat()),
                (
                    "stored",
                    [&[0][..], &f(0xC1, &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00])].concat(),
                ),
                (
                    "bfinal",
                    [&[0][..], &f(0xC1, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]), &f(0xC1, &hello)].concat(),
                ),
                ("bomb", [&[8][..], &f(0xC2, &bomb)].concat()),
                ("garbage", [&[0][..], &f(0xC2, &[0xff; 9])].concat()),
                ("rsv1_on_ping", [&[0][..], &f(0xC9, b"")].concat()),
                ("rsv1_on_continuation", [&[0][..], &f(0x41, &hello[..3]), &f(0xC0, &hello[3..])].concat()),
                ("plain_between", [&[2][..], &f(0x81, b"plain"), &f(0xC1, &hello)].concat()),
            ]
        }
        "handshake_response" => {
            let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
            vec![
                ("ok", with_chunk(0, &[format!("{ok}\r\n").as_bytes(), &[0x81, 2, b'h', b'i']].concat())),
                ("ok_subprotocol", with_chunk(3, format!("{ok}Sec-WebSocket-Protocol: chat\r\n\r\n").as_bytes())),
                ("required_missing", with_chunk(0x85, format!("{ok}\r\n").as_bytes())),
                ("extension", with_chunk(5, format!("{ok}Sec-WebSocket-Extensions: x\r\n\r\n").as_bytes())),
                (
                    "deflate_accepted",
                    with_chunk(
                        0x47,
                        format!(
                            "{ok}Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; \
                             client_max_window_bits=9; client_no_context_takeover\r\n\r\n"
                        )
                        .as_bytes(),
                    ),
                ),
                (
                    "deflate_bad_parameter",
                    with_chunk(
                        0x41,
                        format!("{ok}Sec-WebSocket-Extensions: permessage-deflate; x=\"1\"\r\n\r\n").as_bytes(),
                    ),
                ),
                ("rejected", with_chunk(1, b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\n\r\nbody")),
                ("garbage", with_chunk(9, b"SSH-2.0-OpenSSH\r\n\r\n")),
                ("lf_only", with_chunk(2, b"HTTP/1.1 101 OK\nUpgrade: websocket\n\n")),
            ]
        }
        "client_ops" => {
            // [max_attempts, overflow, seed, ops...]; op numbers as in `client_ops`.
            let open = [0, 1, 3, 0];
            let send_text = |n: u8| [8, n, 0, 0, 0, 0];
            vec![
                (
                    "open_send_close",
                    [&[0, 0, 1][..], &open, &send_text(5), &[11, 0xE8, 0x03], &[4, 0x88, 2, 0x03, 0xE8], &[7, 0]]
                        .concat(),
                ),
                ("drop_and_reconnect", [&[2, 1, 2][..], &open, &[7, 1, 6, 1, 3, 0, 6, 6]].concat()),
                ("keepalive_dead", [&[0, 0, 3][..], &open, &[6, 6, 6, 6]].concat()),
                ("offline_queue", [&[0, 2, 4][..], &[0, 8, 9, 0, 1, 1, 2], &[1, 3, 0]].concat()),
                (
                    "server_frames",
                    [&[1, 0, 5][..], &open, &[4, 0x01, 2, b'h', b'i', 4, 0x80, 1, b'!', 4, 0x89, 0, 12, 3]].concat(),
                ),
                (
                    "refused_forever",
                    [&[3, 0, 6][..], &[0, 7, 2, 6, 7, 2, 6, 7, 2, 6, 7, 2, 6, 7, 2, 6, 7, 2, 6, 7, 2]].concat(),
                ),
            ]
        }
        "session_ops" => {
            // [flags, ops...]; op numbers as in `SessionHarness::op`.
            // flags 0x54: no limits, eth_subscribe ids, 2 pending, 2 subscriptions, 600 ms timeout.
            let open = [0, 1, 3];
            let ok = |pick: u8| [4, pick, 2, 0];
            let sub_id = |pick: u8, server: u8| [4, pick, 0, server];
            let note = |server: u8, seq: u8| [6, server, seq];
            let ready = [&[10, 0, 10, 1][..], &open, &ok(0), &sub_id(0, 1), &sub_id(1, 2)].concat();
            vec![
                (
                    "auth_restore_ready",
                    [&[0x54][..], &ready, &note(1, 1), &note(2, 1), &note(1, 1), &[13, 0], &ok(0), &[15, 0]].concat(),
                ),
                (
                    "drop_restore_new_ids",
                    [
                        &[0x54][..],
                        &ready,
                        &[2, 1, 17, 1, 3],
                        &ok(0),
                        &sub_id(0, 3),
                        &sub_id(0, 4),
                        &note(3, 1),
                        &note(1, 2),
                    ]
                    .concat(),
                ),
                (
                    "early_notifications",
                    [
                        &[0x54][..],
                        &[10, 0],
                        &open,
                        &ok(0),
                        &note(5, 1),
                        &note(5, 2),
                        &note(6, 1),
                        &sub_id(0, 5),
                        &note(5, 3),
                    ]
                    .concat(),
                ),
                (
                    // Channel lists, two per request: the first batch taken, the second refused.
                    "partial_batch",
                    [&[0x76][..], &open, &ok(0), &[11, 0x0E], &ok(1), &[4, 0, 3, 7], &[6, 0x83, 1, 6, 0x85, 1]]
                        .concat(),
                ),
                ("heartbeat_miss", [&[0x00][..], &open, &ok(0), &[13, 0, 17, 17, 17, 17, 17, 17, 17, 1, 3]].concat()),
                (
                    // Rate limits: a retry-after answer pauses the queue that long.
                    "retry_after_pause",
                    [
                        &[0x55][..],
                        &open,
                        &ok(0),
                        &[13, 0, 13, 1, 15, 0, 15, 1],
                        &[4, 0, 4, 15],
                        &[15, 0, 17, 17, 17, 16, 0xFF, 0x0F],
                    ]
                    .concat(),
                ),
                (
                    "unsubscribe_and_close",
                    [&[0x54][..], &ready, &[12, 0], &ok(0), &note(1, 9), &[12, 1, 18, 9, 0xE8, 0x03]].concat(),
                ),
                (
                    // Regression: unsubscribing after `Closed` (here: the auth refused
                    // for good) emitted `Unsubscribed` after the last output.
                    "unsubscribe_after_closed",
                    [&[0x54][..], &[10, 0], &open, &[4, 0, 3, 4], &[2, 0, 12, 0]].concat(),
                ),
                (
                    // Regression: an authentication renewal due during the restore
                    // made `poll_timeout` return a time already past once ready.
                    "renewal_due_before_ready",
                    [&[0x54][..], &[10, 0], &open, &[4, 0, 1, 1], &[16, 200, 0], &[4, 0, 0, 1, 17, 17]].concat(),
                ),
                ("offline_sends_and_cancel", [&[0x55][..], &[13, 0, 15, 1, 15, 0, 14, 0, 0, 1, 2, 0, 17, 17]].concat()),
            ]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    type Body = fn(&[u8]);
    const TARGETS: &[(&str, Body)] = &[
        ("frame_decoder", frame_decoder),
        ("handshake_response", handshake_response),
        ("client_stream", client_stream),
        ("client_ops", client_ops),
        ("inflate", inflate),
        #[cfg(feature = "json")]
        ("session_ops", session_ops),
    ];

    #[test]
    fn seeds_run_clean_and_are_written_on_request() {
        let write = std::env::var_os("NOVA_WRITE_CORPUS").is_some();
        for &(target, body) in TARGETS {
            let seeds = seeds(target);
            assert!(!seeds.is_empty(), "{target} has no seeds");
            for (name, data) in seeds {
                body(&data);
                if write {
                    let dir = corpus_dir(target);
                    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                    let path = dir.join(format!("seed-{name}"));
                    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
            }
        }
    }

    fn corpus_dir(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
    }

    fn replay(target: &str, body: fn(&[u8])) {
        let dir = corpus_dir(target);
        let mut count = 0;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
        entries.sort();
        for path in entries {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            body(&data);
            count += 1;
        }
        assert!(count > 0, "corpus {} is empty", dir.display());
    }

    #[test]
    fn replay_frame_decoder_corpus() {
        replay("frame_decoder", frame_decoder);
    }

    #[test]
    fn replay_handshake_response_corpus() {
        replay("handshake_response", handshake_response);
    }

    #[test]
    fn replay_client_stream_corpus() {
        replay("client_stream", client_stream);
    }

    #[test]
    fn replay_client_ops_corpus() {
        replay("client_ops", client_ops);
    }

    #[test]
    fn replay_inflate_corpus() {
        replay("inflate", inflate);
    }

    #[cfg(feature = "json")]
    #[test]
    fn replay_session_ops_corpus() {
        replay("session_ops", session_ops);
    }

    #[test]
    fn bodies_survive_edge_inputs() {
        for &(_, body) in TARGETS {
            body(&[]);
            body(&[0]);
            body(&[0xFF; 300]);
            body(&(0..=255).collect::<Vec<u8>>());
        }
    }
}
