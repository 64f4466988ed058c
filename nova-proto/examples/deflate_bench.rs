//! permessage-deflate against plain frames: bytes on the wire and throughput
//! for JSON market data, from memory, with no sockets.
//!
//! ```text
//! cargo run --release -p nova-proto --example deflate_bench             # a few seconds
//! cargo run --release -p nova-proto --example deflate_bench -- --count 50000
//! ```
//!
//! Messages are order-book updates of about 200 bytes and about 2 KiB whose
//! prices, sizes and sequence numbers vary (a fixed LCG), the way a real feed's
//! do: the same keys, different numbers.
//!
//! - **encode**: an open [`Client`] sends each message and `poll_transmit`
//!   writes it (compressed, when deflate is on) into a reused buffer. MB/s is
//!   payload megabytes per second; wire bytes are what was written per message,
//!   frame headers and masks included.
//! - **decode**: the server's frames for the same messages (compressed by
//!   flate2 with the same takeover mode, before the clock starts) are fed in
//!   64 KiB reads into an open client, and every message is taken out.
//!
//! Modes: `plain` (no extension), `deflate` (context takeover both ways) and
//! `deflate-nct` (no context takeover either way), each at compression level 6
//! (the default) and 1. The server's frames are always flate2's level 6: the
//! level only changes our encoding. Each row is the median of five runs. Not
//! part of the tests.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::hint::black_box;
use std::time::Instant;

use flate2::{Compress, Compression, FlushCompress};
use nova_proto::frame::{Header, Opcode};
use nova_proto::{Client, Config, DeflateConfig, Input, Message, Output, accept_key};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    /// Context takeover, at a compression level.
    Deflate(u8),
    /// No context takeover either way, at a compression level.
    DeflateNoTakeover(u8),
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Plain => "plain".into(),
            Mode::Deflate(level) => format!("deflate, level {level}"),
            Mode::DeflateNoTakeover(level) => format!("deflate-nct, level {level}"),
        }
    }
}

/// Order-book updates of about `target` bytes each.
fn market_messages(count: usize, target: usize) -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    (0..count)
        .map(|i| {
            let mut m = format!(
                r#"{{"channel":"book.BTC-PERP.100ms","type":"update","seq":{},"ts":{},"data":{{"#,
                7_000_000 + i,
                1_700_000_000_000u64 + next() % 1000
            );
            let mut side = |name: &str, m: &mut String| {
                m.push_str(&format!(r#""{name}":["#));
                let mut first = true;
                while m.len() < target / 2 + if name == "asks" { target / 2 } else { 0 } - 40 {
                    if !first {
                        m.push(',');
                    }
                    first = false;
                    m.push_str(&format!(
                        r#"["{}.{}","{}.{:04}"]"#,
                        64_000 + next() % 900,
                        next() % 10,
                        next() % 20,
                        next() % 10_000
                    ));
                }
                m.push(']');
            };
            side("bids", &mut m);
            m.push(',');
            side("asks", &mut m);
            m.push_str("}}");
            m
        })
        .collect()
}

fn open(mode: Mode) -> (Client, Instant) {
    let mut builder = Config::builder("ws://bench.test/").keepalive(None).max_message_size(1 << 20);
    let answer = match mode {
        Mode::Plain => None,
        Mode::Deflate(level) => {
            builder = builder.deflate(Some(DeflateConfig { level, ..DeflateConfig::default() }));
            Some("permessage-deflate")
        }
        Mode::DeflateNoTakeover(level) => {
            let d = DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                level,
                ..DeflateConfig::default()
            };
            builder = builder.deflate(Some(d));
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        }
    };
    let now = Instant::now();
    let mut client = Client::new(builder.build().expect("config"), [5; 32], now);
    client.connect(now);
    while client.poll_output().is_some() {}
    client.handle_input(now, Input::TransportUp);
    let mut request = Vec::new();
    let _ = client.poll_transmit(&mut request, usize::MAX);
    let request = String::from_utf8(request).expect("ascii");
    let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("key");
    let mut reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    );
    if let Some(answer) = answer {
        reply.push_str(&format!("Sec-WebSocket-Extensions: {answer}\r\n"));
    }
    reply.push_str("\r\n");
    client.handle_input(now, Input::Received(reply.as_bytes()));
    while client.poll_output().is_some() {}
    (client, now)
}

/// The server's frames for `messages`: compressed by flate2 in `mode`.
fn server_stream(messages: &[String], mode: Mode) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::new();
    for m in messages {
        let (payload, rsv) = if mode == Mode::Plain {
            (m.as_bytes().to_vec(), 0)
        } else {
            let mut c = Vec::with_capacity(m.len() + 64);
            z.compress_vec(m.as_bytes(), &mut c, FlushCompress::Sync).expect("deflate");
            c.truncate(c.len() - 4);
            if matches!(mode, Mode::DeflateNoTakeover(_)) {
                z.reset();
            }
            (c, 0b100)
        };
        Header { fin: true, rsv, opcode: Opcode::Text, mask: None, payload_len: payload.len() as u64 }.encode(&mut out);
        out.extend_from_slice(&payload);
    }
    out
}

/// (seconds, wire bytes) to encode every message.
fn encode(messages: &[String], mode: Mode) -> (f64, usize) {
    let (mut client, now) = open(mode);
    let mut wire = Vec::with_capacity(1 << 20);
    let mut total = 0;
    // Cheap clones (reference counts), so only the client's work is timed.
    let messages: Vec<Message> = messages.iter().map(|m| Message::text(m.clone())).collect();
    let start = Instant::now();
    for m in &messages {
        client.send(now, m.clone()).expect("send");
        total += client.poll_transmit(&mut wire, usize::MAX);
        if wire.len() > 512 << 10 {
            black_box(&wire);
            wire.clear();
        }
    }
    (start.elapsed().as_secs_f64(), total)
}

/// Seconds to decode the server's stream.
fn decode(stream: &[u8], count: usize, mode: Mode) -> f64 {
    let (mut client, now) = open(mode);
    let mut got = 0;
    let mut sink = Vec::new();
    let start = Instant::now();
    for chunk in stream.chunks(64 << 10) {
        client.handle_input(now, Input::Received(chunk));
        while let Some(output) = client.poll_output() {
            if let Output::Message(m) = output {
                got += 1;
                black_box(m.len());
            }
        }
        let _ = client.poll_transmit(&mut sink, usize::MAX);
    }
    assert_eq!(got, count, "every message decoded");
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args
        .iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("| message | mode | wire B/msg | wire vs plain | encode MB/s | decode MB/s |");
    println!("|---|---|---:|---:|---:|---:|");
    for target in [200, 2048] {
        let n = if target > 1000 { count / 8 } else { count };
        let messages = market_messages(n, target);
        let payload: usize = messages.iter().map(String::len).sum();
        let mut plain_wire = 0.0;
        let modes =
            [Mode::Plain, Mode::Deflate(6), Mode::Deflate(1), Mode::DeflateNoTakeover(6), Mode::DeflateNoTakeover(1)];
        for mode in modes {
            let stream = server_stream(&messages, mode);
            let mut enc = Vec::new();
            let mut dec = Vec::new();
            let mut wire = 0;
            for _ in 0..5 {
                let (secs, bytes) = encode(&messages, mode);
                enc.push(secs);
                wire = bytes;
                dec.push(decode(&stream, n, mode));
            }
            let per_msg = wire as f64 / n as f64;
            if mode == Mode::Plain {
                plain_wire = per_msg;
            }
            let mbps = |secs: f64| payload as f64 / secs / 1e6;
            println!(
                "| {} B JSON | {} | {:.0} | {:.0}% | {:.0} | {:.0} |",
                payload / n,
                mode.name(),
                per_msg,
                100.0 * per_msg / plain_wire,
                mbps(median(enc)),
                mbps(median(dec)),
            );
        }
    }
}
