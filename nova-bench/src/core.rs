//! Core cost, in memory, no sockets: `nova-proto` decode and encode
//! throughput against tungstenite's `WebSocketContext` over an in-memory
//! stream, at 16 B, 1 KiB and 64 KiB.
//!
//! The logic is `nova-proto`'s `decode_bench` example's (which stays as the
//! core's own standalone bench), with binary messages as in the load matrix:
//!
//! - **decode**: a buffer of unmasked server frames (256 KiB, at least 4
//!   frames) fed in socket-sized chunks of `max(64 KiB, frame)`: to an open
//!   `nova_proto::Client` as `Input::Received`, draining the pollers after
//!   each chunk; to a client-role `WebSocketContext` (default 128 KiB read
//!   buffer) through a stream that hands out the chunk then `WouldBlock`.
//! - **encode**: masked client frames in batches of `clamp(64 KiB / size,
//!   1, 1024)`: `send` each then one `poll_transmit` into a reused `Vec`;
//!   tungstenite `write` each then `flush` into a discarding writer.
//!
//! Both run the same work in alternated slices (A B A B ...), the ratio is
//! taken per repetition, and the median over repetitions is reported.

// The harness reads the clock to time runs (nova-proto's clippy.toml forbids
// it for the sans-IO core, not for its benchmarks).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use nova_proto::bytes::Bytes;
use nova_proto::frame::{Header, Opcode};
use nova_proto::{Client, Config, Event, Input, Message, Output, State, accept_key};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::stats::Summary;

const KIB: usize = 1024;
/// The socket read size the decoders are fed (grown to one whole frame if larger).
const READ_CHUNK: usize = 64 * KIB;
/// Frame and message limits of both implementations: well above every case.
const LIMIT: usize = 16 << 20;

/// How long and how often.
pub(crate) struct Options {
    pub(crate) reps: usize,
    /// Alternations of the two implementations within one repetition.
    pub(crate) slices: u32,
    /// Least time the faster implementation runs in one repetition.
    pub(crate) target: Duration,
    /// Approximate size of the prebuilt buffer of frames (one pass).
    pub(crate) pass_bytes: usize,
}

impl Options {
    pub(crate) fn new(quick: bool, reps: usize) -> Options {
        let (slices, ms) = if quick { (4, 60) } else { (10, 250) };
        Options { reps, slices, target: Duration::from_millis(ms), pass_bytes: 256 * KIB }
    }
}

fn payload(size: usize) -> Vec<u8> {
    // Printable ASCII, like the JSON most feeds carry.
    (0..size).map(|i| b' ' + (i * 7 % 95) as u8).collect()
}

pub(crate) fn decode_case(opts: &Options, size: usize, text: bool) -> Row {
    let payload = payload(size);
    let opcode = if text { Opcode::Text } else { Opcode::Binary };
    let mut frame = Vec::with_capacity(size + 10);
    Header { fin: true, rsv: 0, opcode, mask: None, payload_len: size as u64 }.encode(&mut frame);
    frame.extend_from_slice(&payload);
    let per_pass = (opts.pass_bytes / frame.len()).max(4);
    let wire: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * per_pass).collect();
    let chunk = READ_CHUNK.max(frame.len());

    let now = Instant::now();
    let mut nova = open_client(now);
    let mut tung = WebSocketContext::new(Role::Client, Some(tungstenite_config()));
    let nova_run = |passes: u64| nova_decode(&mut nova, now, &wire, chunk, passes);
    let tung_run = |passes: u64| tungstenite_decode(&mut tung, &wire, chunk, passes);
    compare(opts, size, per_pass as u64, nova_run, tung_run)
}

pub(crate) fn encode_case(opts: &Options, size: usize) -> Row {
    let bytes = Bytes::from(payload(size));
    let nova_message = Message::Binary(bytes.clone());
    let tung_message = tungstenite::Message::Binary(bytes);
    let batch = (64 * KIB / size).clamp(1, 1024);
    let batches = (opts.pass_bytes / (size * batch)).max(4);

    let now = Instant::now();
    let mut nova = open_client(now);
    let mut out = Vec::new();
    let mut tung = WebSocketContext::new(Role::Client, Some(tungstenite_config()));
    let nova_run = |passes: u64| nova_encode(&mut nova, now, &mut out, &nova_message, batch, batches * passes as usize);
    let tung_run = |passes: u64| tungstenite_encode(&mut tung, &tung_message, batch, batches * passes as usize);
    compare(opts, size, (batch * batches) as u64, nova_run, tung_run)
}

fn tungstenite_config() -> WebSocketConfig {
    // Defaults otherwise: 128 KiB read buffer, 128 KiB write buffer.
    WebSocketConfig::default().max_frame_size(Some(LIMIT)).max_message_size(Some(LIMIT))
}

// ---------------------------------------------------------------------------
// nova-proto

/// A client that went through connect, `TransportUp` and a valid 101, in memory.
fn open_client(now: Instant) -> Client {
    let config = Config::builder("ws://bench.invalid/feed")
        .max_frame_size(LIMIT)
        .max_message_size(LIMIT)
        .build()
        .expect("valid config");
    let mut client = Client::new(config, [42; 32], now);
    client.connect(now);
    assert!(matches!(client.poll_output(), Some(Output::Connect(_))));
    client.handle_input(now, Input::TransportUp);
    let mut request = Vec::new();
    let _ = client.poll_transmit(&mut request, usize::MAX);
    let request = String::from_utf8(request).expect("the request head is ASCII");
    let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("a key");
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    client.handle_input(now, Input::Received(reply.as_bytes()));
    assert!(matches!(client.poll_output().and_then(Output::into_event), Some(Event::Opened(_))));
    assert!(client.poll_output().is_none());
    assert_eq!(client.state(), State::Open);
    client
}

fn nova_decode(client: &mut Client, now: Instant, wire: &[u8], chunk: usize, passes: u64) -> Run {
    let mut tx = Vec::new();
    let (mut messages, mut checksum) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..passes {
        for piece in wire.chunks(chunk) {
            client.handle_input(now, Input::Received(black_box(piece)));
            // The run loop: transmit, outputs, timeout. There is nothing to write.
            let _ = client.poll_transmit(&mut tx, usize::MAX);
            while let Some(output) = client.poll_output() {
                match output {
                    Output::Message(message) => {
                        messages += 1;
                        checksum += black_box(&message).len() as u64;
                    }
                    other => panic!("unexpected output: {other:?}"),
                }
            }
            black_box(client.poll_timeout());
        }
    }
    let elapsed = start.elapsed();
    assert!(tx.is_empty(), "the client wrote {} bytes while reading", tx.len());
    Run { messages, checksum, elapsed }
}

fn nova_encode(
    client: &mut Client,
    now: Instant,
    out: &mut Vec<u8>,
    message: &Message,
    batch: usize,
    batches: usize,
) -> Run {
    let (mut messages, mut checksum) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..batches {
        for _ in 0..batch {
            client.send(now, message.clone()).expect("the queue takes a batch");
        }
        messages += batch as u64;
        let _ = client.poll_transmit(out, usize::MAX);
        if let Some(output) = client.poll_output() {
            panic!("unexpected output: {output:?}");
        }
        checksum += black_box(&*out).len() as u64;
        out.clear();
    }
    Run { messages, checksum, elapsed: start.elapsed() }
}

// ---------------------------------------------------------------------------
// tungstenite

/// An in-memory transport: reads hand out the current chunk, then `WouldBlock`;
/// writes are counted and discarded.
struct MemStream<'a> {
    inbox: &'a [u8],
    written: u64,
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbox.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.inbox.len());
        let (now, rest) = self.inbox.split_at(n);
        buf[..n].copy_from_slice(now);
        self.inbox = rest;
        Ok(n)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += black_box(buf).len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tungstenite_decode(ctx: &mut WebSocketContext, wire: &[u8], chunk: usize, passes: u64) -> Run {
    let (mut messages, mut checksum) = (0u64, 0u64);
    let mut written = 0;
    let start = Instant::now();
    for _ in 0..passes {
        for piece in wire.chunks(chunk) {
            let mut stream = MemStream { inbox: black_box(piece), written: 0 };
            loop {
                match ctx.read(&mut stream) {
                    Ok(tungstenite::Message::Text(text)) => {
                        messages += 1;
                        checksum += black_box(&text).len() as u64;
                    }
                    Ok(tungstenite::Message::Binary(bytes)) => {
                        messages += 1;
                        checksum += black_box(&bytes).len() as u64;
                    }
                    Ok(other) => panic!("unexpected message: {other:?}"),
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("tungstenite failed: {e}"),
                }
            }
            written += stream.written;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(written, 0, "tungstenite wrote while reading");
    Run { messages, checksum, elapsed }
}

fn tungstenite_encode(ctx: &mut WebSocketContext, message: &tungstenite::Message, batch: usize, batches: usize) -> Run {
    let mut sink = MemStream { inbox: &[], written: 0 };
    let mut messages = 0u64;
    let start = Instant::now();
    for _ in 0..batches {
        for _ in 0..batch {
            ctx.write(&mut sink, message.clone()).expect("write to a sink");
        }
        messages += batch as u64;
        ctx.flush(&mut sink).expect("flush to a sink");
    }
    Run { messages, checksum: sink.written, elapsed: start.elapsed() }
}

// ---------------------------------------------------------------------------
// Measurement and report

/// One measurement: messages delivered (or sent), a checksum both sides must
/// agree on, and the time taken.
#[derive(Default)]
struct Run {
    messages: u64,
    checksum: u64,
    elapsed: Duration,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.messages += other.messages;
        self.checksum += other.checksum;
        self.elapsed += other.elapsed;
    }

    /// Messages per second.
    fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

pub(crate) struct Row {
    pub(crate) size: usize,
    pub(crate) nova: Summary,
    pub(crate) tungstenite: Summary,
    pub(crate) ratio: Summary,
}

/// Warms both up, picks a common number of passes per slice so the faster one
/// runs at least `opts.target` per repetition, then measures both `opts.reps`
/// times. A repetition is `opts.slices` short runs of each, alternated
/// (A B A B ..., starting with B on odd repetitions), so that both see the same
/// background load; its rate is the total over the slices.
fn compare(
    opts: &Options,
    size: usize,
    per_pass: u64,
    mut nova: impl FnMut(u64) -> Run,
    mut tungstenite: impl FnMut(u64) -> Run,
) -> Row {
    let slice = opts.target / opts.slices;
    let passes = calibrate(&mut nova, slice).max(calibrate(&mut tungstenite, slice));
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..opts.reps {
        let (mut x, mut y) = (Run::default(), Run::default());
        for _ in 0..opts.slices {
            if rep % 2 == 0 {
                x.add(nova(passes));
                y.add(tungstenite(passes));
            } else {
                y.add(tungstenite(passes));
                x.add(nova(passes));
            }
        }
        let expected = per_pass * passes * u64::from(opts.slices);
        assert_eq!(x.messages, expected, "nova-proto message count");
        assert_eq!(y.messages, expected, "tungstenite message count");
        assert_eq!(x.checksum, y.checksum, "checksums differ");
        let (rx, ry) = (x.rate(), y.rate());
        a.push(rx);
        b.push(ry);
        ratios.push(rx / ry);
    }
    Row {
        size,
        nova: Summary::of(&a).expect("reps >= 1"),
        tungstenite: Summary::of(&b).expect("reps >= 1"),
        ratio: Summary::of(&ratios).expect("reps >= 1"),
    }
}

/// Passes needed for one run of at least `target` (after a warm-up).
fn calibrate(run: &mut impl FnMut(u64) -> Run, target: Duration) -> u64 {
    run(1);
    let mut passes = 1;
    loop {
        let elapsed = run(passes).elapsed;
        if elapsed >= target / 4 {
            let scale = target.as_secs_f64() / elapsed.as_secs_f64();
            return ((passes as f64 * scale).ceil() as u64).max(1);
        }
        passes *= 2;
    }
}
