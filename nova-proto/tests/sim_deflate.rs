//! permessage-deflate through the whole client, in memory: the server side is
//! played by hand with flate2 (tungstenite 0.30 has no deflate), so every
//! compressed byte on the wire is checked against an independent codec.
//!
//! Covers negotiation reaching `Opened`, both directions with and without
//! context takeover at random chunkings (a property test), strict teardown
//! of both windows on reconnect, and a decompression bomb failing the
//! connection with 1009 before the message buffer passes the limit.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use nova_proto::frame::{Header, Opcode, apply_mask};
use nova_proto::{
    Backoff, Client, CloseCode, Config, DeflateConfig, DeflateParams, Disconnect, Error, Event, Input, Message, Output,
    ProtocolError, TransportDown, accept_key,
};
use proptest::prelude::*;

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// The server's half of the extension: its compressor and decompressor.
struct Server {
    deflate: Compress,
    inflate: Decompress,
    takeover: bool,
}

impl Server {
    fn new(takeover: bool) -> Server {
        Server { deflate: Compress::new(Compression::default(), false), inflate: Decompress::new(false), takeover }
    }

    /// One compressed server frame (or several, `fragments` long each) for `message`.
    fn frames(&mut self, message: &Message, fragments: usize) -> Vec<u8> {
        // Incompressible input can outgrow any first guess: keep feeding what
        // was not taken yet until the sync flush completes (all input taken,
        // output not filled to the brim). The old loop waited for the tail
        // and spun forever on an empty message after a flush (zlib writes
        // nothing then).
        let input = message.as_bytes();
        let start = self.deflate.total_in();
        let mut payload = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            if payload.capacity() - payload.len() < 64 {
                payload.reserve(payload.len().max(64));
            }
            let taken = (self.deflate.total_in() - start) as usize;
            self.deflate.compress_vec(&input[taken..], &mut payload, FlushCompress::Sync).unwrap();
            let taken = (self.deflate.total_in() - start) as usize;
            if taken == input.len() && payload.len() < payload.capacity() {
                break;
            }
        }
        if payload.is_empty() {
            // An empty message right after a flush: zlib has nothing to
            // write. RFC 7692 §7.2.3.6's compressed empty message is `00`.
            payload.push(0x00);
        } else {
            assert!(payload.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
            payload.truncate(payload.len() - TAIL.len());
        }
        if !self.takeover {
            self.deflate.reset();
        }
        let opcode = if matches!(message, Message::Text(_)) { Opcode::Text } else { Opcode::Binary };
        let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(fragments).collect() };
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let header = Header {
                fin: i + 1 == pieces.len(),
                rsv: if i == 0 { 0b100 } else { 0 },
                opcode: if i == 0 { opcode } else { Opcode::Continuation },
                mask: None,
                payload_len: piece.len() as u64,
            };
            header.encode(&mut out);
            out.extend_from_slice(piece);
        }
        out
    }

    /// Decodes the client's frames into messages, inflating compressed ones.
    fn read(&mut self, mut wire: &[u8]) -> Vec<(Message, bool)> {
        let mut got = Vec::new();
        let mut current: Option<(Opcode, bool, Vec<u8>)> = None;
        while let Some((h, n)) = Header::decode(wire).unwrap() {
            let mut payload = wire[n..n + h.payload_len as usize].to_vec();
            apply_mask(&mut payload, h.mask.expect("client frames are masked"), 0);
            wire = &wire[n + h.payload_len as usize..];
            if h.opcode.is_control() {
                assert_eq!(h.rsv, 0, "RSV1 on a control frame");
                continue;
            }
            if h.opcode == Opcode::Continuation {
                assert_eq!(h.rsv, 0, "RSV1 on a continuation frame");
            }
            let (opcode, compressed, buf) = current.get_or_insert_with(|| (h.opcode, h.rsv == 0b100, Vec::new()));
            buf.extend_from_slice(&payload);
            if h.fin {
                let (opcode, compressed, mut buf) = (*opcode, *compressed, std::mem::take(buf));
                current = None;
                if compressed {
                    buf.extend_from_slice(&TAIL);
                    let mut out = Vec::with_capacity(buf.len() * 20 + 1024);
                    loop {
                        let before = self.inflate.total_in();
                        self.inflate.decompress_vec(&buf, &mut out, FlushDecompress::Sync).unwrap();
                        buf.drain(..(self.inflate.total_in() - before) as usize);
                        if buf.is_empty() && out.len() < out.capacity() {
                            break;
                        }
                        out.reserve(out.capacity());
                    }
                    buf = out;
                }
                let m = if opcode == Opcode::Text {
                    Message::text(String::from_utf8(buf).unwrap())
                } else {
                    Message::binary(buf)
                };
                got.push((m, compressed));
            }
        }
        assert!(wire.is_empty());
        got
    }
}

fn config(deflate: DeflateConfig) -> Config {
    Config::builder("ws://sim.test/")
        .deflate(Some(deflate))
        .keepalive(None)
        .max_message_size(1 << 20)
        .max_outgoing_frame_size(Some(4096))
        .backoff(Backoff::constant(Duration::from_millis(10), 0.0))
        .build()
        .unwrap()
}

/// Runs the client's upgrade against `extensions` as the server's answer;
/// returns the request head the client sent and the `Opened` parameters.
fn upgrade(client: &mut Client, now: Instant, extensions: &str) -> (String, Option<DeflateParams>) {
    client.handle_input(now, Input::TransportUp);
    let mut request = Vec::new();
    let _ = client.poll_transmit(&mut request, usize::MAX);
    let request = String::from_utf8(request).unwrap();
    let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    client.handle_input(now, Input::Received(reply.as_bytes()));
    let opened = std::iter::from_fn(|| client.poll_output())
        .find_map(|o| match o.into_event() {
            Some(Event::Opened(opened)) => Some(opened),
            _ => None,
        })
        .expect("opened");
    (request, opened.deflate)
}

fn open(deflate: DeflateConfig, extensions: &str) -> (Client, Instant, Option<DeflateParams>) {
    let now = Instant::now();
    let mut client = Client::new(config(deflate), [9; 32], now);
    client.connect(now);
    assert!(matches!(client.poll_output(), Some(Output::Connect(_))));
    let (request, params) = upgrade(&mut client, now, extensions);
    assert!(request.contains(&format!("Sec-WebSocket-Extensions: {}\r\n", deflate.offer())), "{request}");
    (client, now, params)
}

fn takeover_answer(takeover: bool) -> &'static str {
    if takeover {
        "permessage-deflate"
    } else {
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    }
}

fn drain(client: &mut Client, wire: &mut Vec<u8>) -> Vec<Message> {
    let mut messages = Vec::new();
    loop {
        let _ = client.poll_transmit(wire, usize::MAX);
        match client.poll_output() {
            Some(Output::Message(m)) => messages.push(m),
            Some(_) => {}
            None => {
                if client.poll_transmit(wire, usize::MAX) == 0 {
                    return messages;
                }
            }
        }
    }
}

#[test]
fn negotiated_parameters_reach_opened() {
    let offer = DeflateConfig { server_no_context_takeover: true, ..DeflateConfig::default() };
    let (_, _, params) = open(offer, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
    let p = params.expect("deflate agreed");
    assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
    assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (10, 15));
}

#[test]
fn an_unacceptable_answer_fails_the_handshake_with_a_typed_error() {
    let now = Instant::now();
    let mut client = Client::new(config(DeflateConfig::default()), [1; 32], now);
    client.connect(now);
    while client.poll_output().is_some() {}
    client.handle_input(now, Input::TransportUp);
    let mut request = Vec::new();
    let _ = client.poll_transmit(&mut request, usize::MAX);
    let request = String::from_utf8(request).unwrap();
    let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n\r\n",
        accept_key(key.as_bytes())
    );
    client.handle_input(now, Input::Received(reply.as_bytes()));
    let cause = std::iter::from_fn(|| client.poll_output())
        .find_map(|o| match o.into_event() {
            Some(Event::Disconnected { cause, .. }) => Some(cause),
            _ => None,
        })
        .unwrap();
    let Disconnect::Failed(Error::Handshake(e)) = cause else { panic!("{cause:?}") };
    let expected =
        nova_proto::NegotiationError::InvalidValue { param: "server_max_window_bits".into(), value: "16".into() };
    assert_eq!(e, nova_proto::HandshakeError::Extension(expected));
}

#[test]
fn reconnecting_starts_both_windows_afresh() {
    let (mut client, now, _) = open(DeflateConfig::default(), takeover_answer(true));
    let mut server = Server::new(true);
    let msg = Message::text(r#"{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}"#);
    let mut wire = Vec::new();
    client.send(now, msg.clone()).unwrap();
    client.send(now, msg.clone()).unwrap();
    drain(&mut client, &mut wire);
    let first = server.read(&wire);
    assert_eq!(
        first.iter().map(|(m, c)| (m.clone(), *c)).collect::<Vec<_>>(),
        [(msg.clone(), true), (msg.clone(), true)]
    );
    // Inbound: a message the client's window now holds.
    let inbound = Message::text("x".repeat(300));
    client.handle_input(now, Input::Received(&server.frames(&inbound, 1 << 20)));
    assert_eq!(drain(&mut client, &mut Vec::new()), std::slice::from_ref(&inbound));

    // The transport drops; the session reconnects.
    client.handle_input(now, Input::TransportDown(TransportDown::Eof));
    let later = now + Duration::from_secs(1);
    client.handle_timeout(later);
    assert!(std::iter::from_fn(|| client.poll_output()).any(|o| matches!(o, Output::Connect(_))));
    let (_, params) = upgrade(&mut client, later, takeover_answer(true));
    assert!(params.is_some());
    // A fresh server: it can only read the client if the client's window is fresh too.
    let mut fresh = Server::new(true);
    let mut wire = Vec::new();
    client.send(later, msg.clone()).unwrap();
    drain(&mut client, &mut wire);
    assert_eq!(fresh.read(&wire), [(msg, true)]);
    // And the client inflates a fresh server's stream.
    client.handle_input(later, Input::Received(&fresh.frames(&inbound, 7)));
    assert_eq!(drain(&mut client, &mut Vec::new()), [inbound]);
}

#[test]
fn a_bomb_fails_the_connection_with_1009() {
    let (mut client, now, _) = open(DeflateConfig::default(), takeover_answer(true));
    let mut server = Server::new(true);
    // 16 MiB of zeros in one small frame, against a 1 MiB message limit.
    let bomb = server.frames(&Message::binary(vec![0u8; 16 << 20]), usize::MAX);
    assert!(bomb.len() < 32 << 10, "{}", bomb.len());
    client.handle_input(now, Input::Received(&bomb));
    let mut wire = Vec::new();
    let mut cause = None;
    loop {
        let _ = client.poll_transmit(&mut wire, usize::MAX);
        match client.poll_output() {
            Some(o) => {
                if let Some(Event::Disconnected { cause: c, .. }) = o.into_event() {
                    cause = Some(c);
                }
            }
            None => break,
        }
    }
    let Some(Disconnect::Failed(Error::Protocol(e))) = cause else { panic!("{cause:?}") };
    assert!(matches!(e, ProtocolError::MessageTooLarge { max, len } if max == 1 << 20 && len <= (1 << 20) + 1));
    // The close frame the client sent carries 1009.
    let (h, n) = Header::decode(&wire).unwrap().unwrap();
    let mut payload = wire[n..n + h.payload_len as usize].to_vec();
    apply_mask(&mut payload, h.mask.unwrap(), 0);
    assert_eq!((h.opcode, u16::from_be_bytes([payload[0], payload[1]])), (Opcode::Close, CloseCode::TOO_BIG.0));
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..400).prop_map(|c| Message::text(c.into_iter().collect::<String>())),
        prop::collection::vec(any::<u8>(), 0..400).prop_map(Message::binary),
        (0usize..40_000, any::<u8>()).prop_map(|(n, b)| Message::binary(vec![b; n])),
        (0u32..5000).prop_map(|n| Message::text(format!(r#"{{"seq":{n},"bids":[[{n}.5,1.25]],"asks":[]}}"#).repeat(3))),
    ]
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    /// Whatever the messages, the chunking, the fragmenting and the takeover
    /// mode: server → client and client → server both round-trip.
    #[test]
    fn messages_round_trip_both_ways(
        messages in prop::collection::vec(message(), 1..12),
        takeover in any::<bool>(),
        chunk in 1usize..700,
        fragments in 1usize..5000,
        threshold in 0usize..200,
    ) {
        let offer = DeflateConfig { threshold, ..DeflateConfig::default() };
        let (mut client, now, params) = open(offer, takeover_answer(takeover));
        prop_assert!(params.is_some());
        let mut server = Server::new(takeover);
        let stream: Vec<u8> = messages.iter().flat_map(|m| server.frames(m, fragments)).collect();
        let mut got = Vec::new();
        let mut wire = Vec::new();
        for piece in stream.chunks(chunk) {
            client.handle_input(now, Input::Received(piece));
            got.extend(drain(&mut client, &mut wire));
        }
        prop_assert_eq!(&got, &messages);
        for m in &messages {
            client.send(now, m.clone()).unwrap();
        }
        drain(&mut client, &mut wire);
        let echoed = server.read(&wire);
        let sent: Vec<Message> = echoed.iter().map(|(m, _)| m.clone()).collect();
        prop_assert_eq!(&sent, &messages);
        for ((m, compressed), original) in echoed.iter().zip(&messages) {
            if original.len() < threshold {
                prop_assert!(!compressed, "{} bytes under the threshold went out compressed", m.len());
            }
        }
    }
}
