//! Decode and encode throughput of `nova-proto` against `tungstenite` 0.30, from
//! memory, with no sockets.
//!
//! ```text
//! cargo run --release -p nova-proto --example decode_bench             # full run, about a minute
//! cargo run --release -p nova-proto --example decode_bench -- --quick  # a few seconds
//! ```
//!
//! Options (after `--`): `--quick` (3 repetitions, short measurements), `--reps N`
//! (repetitions), `--ms N` (least time per repetition of the faster side, in ms),
//! `--buffer-kib N` (size of the prebuilt buffer of frames, 256 KiB by default).
//!
//! # What is measured
//!
//! **Decode** (the headline): the client side of a connection reading server
//! frames, unmasked, one frame per message, with payloads of 16 B, 1 KiB and
//! 64 KiB, for text (UTF-8 validated by both libraries) and for binary. A buffer
//! of frames is built once and fed, over and over, in chunks of
//! `max(64 KiB, frame size)`, a realistic socket read. The buffer is 256 KiB (at
//! least 4 frames) so it stays in cache, like bytes a driver has just read from
//! a socket; `--buffer-kib 4096` makes the source colder (the copy into the
//! decoder then costs more, for both).
//!
//! - `nova-proto`: an open [`Client`] (the handshake is done in memory first) gets
//!   each chunk as [`Input::Received`]; after each chunk the driver drains
//!   `poll_transmit`, every [`Output`] and `poll_timeout`, as the run loop asks.
//! - `tungstenite`: a [`WebSocketContext`] (client role, default 128 KiB read
//!   buffer, the same frame and message limits) reads from an in-memory stream
//!   that hands out the chunk and then reports `WouldBlock`; `read` is called
//!   until `WouldBlock` after each chunk.
//!
//! Both sides copy each chunk once into their own buffer, as they would from a
//! socket. Each delivered message is touched (its length goes into a checksum
//! through [`black_box`]); both sides must deliver the same count and checksum.
//!
//! **Encode**: the client sending masked text frames of the same sizes, in
//! batches of `clamp(64 KiB / size, 1, 1024)` messages: `nova-proto` `send` for
//! each message then one `poll_transmit` into a reused `Vec` that is cleared after
//! each batch; `tungstenite` `write` for each message then `flush` into a writer
//! that discards. Messages are clones of one prebuilt `Bytes` payload on both
//! sides. Masks come from `nova-proto`'s seeded ChaCha8 and from tungstenite's
//! thread-local RNG (its normal path).
//!
//! # Method
//!
//! Both implementations run the same messages, the same number of times. Each of
//! the repetitions (7 by default) interleaves them in short slices, A B A B ...
//! (10 of each, 4 with `--quick`; B first on odd repetitions), so both see the
//! same background load; the slices are calibrated so the faster one runs at
//! least `--ms` (250 ms by default) per repetition. The tables show the median rate over the
//! repetitions with [min–max], payload MB/s (10^6 bytes) and ns per message at
//! the median, and the nova/tungstenite ratio computed per repetition (median
//! [min–max] of the ratios; above 1 means nova-proto is faster). Machines are
//! often shared and noisy: trust the ratios more than the absolute numbers.

// The harness, not the core, reads the clock: `Instant::now` times the runs
// (nova-proto's clippy.toml forbids it for the sans-IO core).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use nova_proto::bytes::Bytes;
use nova_proto::frame::{Header, Opcode};
use nova_proto::{Client, Config, Event, Input, Message, Output, State, Text, accept_key};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

const KIB: usize = 1024;
/// Payload sizes of every case.
const SIZES: [usize; 3] = [16, KIB, 64 * KIB];
/// The socket read size the decoders are fed (grown to one whole frame if larger).
const READ_CHUNK: usize = 64 * KIB;
/// Frame and message limits of both implementations: well above every case.
const LIMIT: usize = 16 << 20;

struct Options {
    reps: usize,
    /// Alternations of the two implementations within one repetition.
    slices: u32,
    /// Least time the faster implementation runs in one repetition.
    target: Duration,
    /// Approximate size of the prebuilt buffer of frames (one pass).
    pass_bytes: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut opts = Options { reps: 7, slices: 10, target: Duration::from_millis(250), pass_bytes: 256 * KIB };
    let mut reps = None;
    let mut ms = None;
    let mut buffer = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or_else(|| format!("{name} needs a number"))?;
            value.parse().map_err(|_| format!("{name}: not a number: {value}"))
        };
        match arg.as_str() {
            "--quick" => {
                opts = Options { reps: 3, slices: 4, target: Duration::from_millis(40), pass_bytes: 256 * KIB };
            }
            "--reps" => reps = Some(number("--reps")?.max(1) as usize),
            "--ms" => ms = Some(Duration::from_millis(number("--ms")?.max(1))),
            "--buffer-kib" => buffer = Some(number("--buffer-kib")?.max(1) as usize * KIB),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    opts.reps = reps.unwrap_or(opts.reps);
    opts.target = ms.unwrap_or(opts.target);
    opts.pass_bytes = buffer.unwrap_or(opts.pass_bytes);
    Ok(opts)
}

fn main() {
    let opts = match parse_options() {
        Ok(opts) => opts,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("decode_bench: {e}");
            }
            eprintln!("usage: decode_bench [--quick] [--reps N] [--ms N] [--buffer-kib N]");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: built without optimisations; run with `cargo run --release`");
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# nova-proto vs tungstenite 0.30: {} repetitions of {} interleaved slices, >= {} ms each, \
         {} KiB buffer, {} cores\n",
        opts.reps,
        opts.slices,
        opts.target.as_millis(),
        opts.pass_bytes / KIB,
        cores
    );

    let mut min_decode_ratio = f64::INFINITY;
    for text in [true, false] {
        let kind = if text { "text" } else { "binary" };
        println!("## Decode: server frames, {kind}, one frame per message, read chunk max(64 KiB, frame)\n");
        print_table_head();
        for size in SIZES {
            let row = decode_case(&opts, size, text);
            min_decode_ratio = min_decode_ratio.min(row.ratio.median);
            print_row(&row);
        }
        println!();
    }

    println!("## Encode: client text frames, masked, batched send + poll_transmit / write + flush\n");
    print_table_head();
    for size in SIZES {
        print_row(&encode_case(&opts, size));
    }
    println!();
    println!("min decode ratio vs tungstenite: {min_decode_ratio:.2}");
}

// ---------------------------------------------------------------------------
// Cases

fn payload(size: usize) -> Vec<u8> {
    // Printable ASCII, like the JSON most feeds carry.
    (0..size).map(|i| b' ' + (i * 7 % 95) as u8).collect()
}

fn decode_case(opts: &Options, size: usize, text: bool) -> Row {
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

fn encode_case(opts: &Options, size: usize) -> Row {
    let bytes = Bytes::from(payload(size));
    let nova_message = Message::Text(Text::from_utf8(bytes.clone()).expect("ASCII payload"));
    let tung_message = tungstenite::Message::Text(bytes.try_into().expect("ASCII payload"));
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

/// Median, min and max of some samples.
struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Summary { median, min: s[0], max: s[n - 1] }
    }
}

struct Row {
    size: usize,
    nova: Summary,
    tungstenite: Summary,
    ratio: Summary,
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
    Row { size, nova: Summary::of(&a), tungstenite: Summary::of(&b), ratio: Summary::of(&ratios) }
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

fn print_table_head() {
    println!("| payload | implementation | messages/s median [min–max] | MB/s | ns/message | nova/tungstenite |");
    println!("|---:|---|---:|---:|---:|---:|");
}

fn print_row(row: &Row) {
    let size = if row.size >= KIB { format!("{} KiB", row.size / KIB) } else { format!("{} B", row.size) };
    let r = &row.ratio;
    let ratio = format!("**{:.2}** [{:.2}–{:.2}]", r.median, r.min, r.max);
    for (name, s, ratio) in [("nova-proto", &row.nova, ratio.as_str()), ("tungstenite", &row.tungstenite, "")] {
        println!(
            "| {size} | {name} | {} [{}–{}] | {:.0} | {:.1} | {ratio} |",
            human(s.median),
            human(s.min),
            human(s.max),
            s.median * row.size as f64 / 1e6,
            1e9 / s.median,
        );
    }
}

/// A rate with an SI suffix and three significant digits.
fn human(x: f64) -> String {
    let (v, unit) = if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}
