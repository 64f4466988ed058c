//! Load generators: one child process per run, pinned to the client core.
//!
//! Every client sends the same messages (binary, `size` bytes of printable
//! ASCII) to the same server. Ping-pong: one task per connection sends one
//! message and awaits its echo, again and again; the round trip of each is
//! recorded. Pipelined: per connection a writer keeps 64 messages in flight
//! (a semaphore of 64 permits, one returned per echo) and a reader counts
//! echoes. Each library is used through its documented fast path: Nova's
//! `Handle::send` (the driver batches whatever is pending into one write
//! per turn) and nova-mio's `send` + `flush`; the `Sink` peers `feed` while
//! more messages are ready and flush on the last (`send` when not
//! pipelined); fastwebsockets writes each frame at once, as it always does.
//!
//! All connections are opened first, the load runs for a warm-up, then the
//! echoes counted in the measured window make the rate. The child prints one
//! `RESULT` line: messages, seconds, p50 and p99 round trip (ns), CPU seconds
//! of the client process in the window.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::stats::percentile;

pub(crate) type BoxError = Box<dyn Error>;

/// Messages in flight per connection when pipelined.
pub(crate) const WINDOW: usize = 64;

/// Every client the matrix runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NovaTokio,
    NovaAsyncStd,
    NovaMio,
    TokioTungstenite,
    Fastwebsockets,
    TokioWebsockets,
    RawTcp,
}

impl Kind {
    pub(crate) const ALL: [Kind; 7] = [
        Kind::NovaTokio,
        Kind::NovaAsyncStd,
        Kind::NovaMio,
        Kind::TokioTungstenite,
        Kind::Fastwebsockets,
        Kind::TokioWebsockets,
        Kind::RawTcp,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::NovaTokio => "nova-tokio",
            Kind::NovaAsyncStd => "nova-async-std",
            Kind::NovaMio => "nova-mio",
            Kind::TokioTungstenite => "tokio-tungstenite",
            Kind::Fastwebsockets => "fastwebsockets",
            Kind::TokioWebsockets => "tokio-websockets",
            Kind::RawTcp => "raw-tcp",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A WebSocket client that is not Nova: the peers ratios are taken against.
    pub(crate) fn is_peer(self) -> bool {
        matches!(self, Kind::TokioTungstenite | Kind::Fastwebsockets | Kind::TokioWebsockets)
    }
}

/// One run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) conns: usize,
    pub(crate) size: usize,
    pub(crate) pipelined: bool,
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
    /// The WebSocket or the raw port, as the kind needs.
    pub(crate) port: u16,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub(crate) messages: u64,
    pub(crate) secs: f64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) cpu_secs: f64,
}

impl Outcome {
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.secs
    }

    pub(crate) fn to_line(&self) -> String {
        format!("RESULT {} {:.6} {} {} {:.4}", self.messages, self.secs, self.p50_ns, self.p99_ns, self.cpu_secs)
    }

    pub(crate) fn from_line(line: &str) -> Option<Outcome> {
        let mut f = line.strip_prefix("RESULT ")?.split(' ');
        Some(Outcome {
            messages: f.next()?.parse().ok()?,
            secs: f.next()?.parse().ok()?,
            p50_ns: f.next()?.parse().ok()?,
            p99_ns: f.next()?.parse().ok()?,
            cpu_secs: f.next()?.parse().ok()?,
        })
    }
}

/// The payload every client sends.
pub(crate) fn payload(size: usize) -> Bytes {
    (0..size).map(|i| b' ' + (i * 7 % 95) as u8).collect::<Vec<u8>>().into()
}

/// CPU time (user + system) of this process so far, from /proc (10 ms ticks).
pub(crate) fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces) start at ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based); `rest` starts at field 3.
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Counts echoes and keeps round trips, shared by one run's tasks. They
/// all run on one thread, so the atomics and locks are never contended;
/// they are there because the tasks are ordinary (`Send`) tasks, spawned
/// as an application spawns them.
#[derive(Default)]
struct Meter {
    count: AtomicU64,
    window: Mutex<Window>,
    failed: Mutex<Option<String>>,
}

/// The measured window and the round trips sent inside it.
#[derive(Default)]
struct Window {
    start: Option<Instant>,
    end: Option<Instant>,
    rtts: Vec<u64>,
}

impl Meter {
    fn echoed(&self, sent: Option<Instant>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(sent) = sent {
            let mut window = lock(&self.window);
            if let (Some(start), None) = (window.start, window.end)
                && sent >= start
            {
                window.rtts.push(sent.elapsed().as_nanos() as u64);
            }
        }
    }

    fn fail(&self, error: &BoxError) {
        lock(&self.failed).get_or_insert_with(|| error.to_string());
    }
}

/// A lock nothing panics under (the load tasks only count).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the warm-up and the window, then reads the meter.
async fn measure<F: Future<Output = ()>>(
    meter: &Meter,
    spec: &Spec,
    sleep: impl Fn(Duration) -> F,
) -> Result<Outcome, BoxError> {
    sleep(spec.warmup).await;
    let (c0, cpu0, t0) = (meter.count.load(Ordering::Relaxed), cpu_secs(), Instant::now());
    lock(&meter.window).start = Some(t0);
    sleep(spec.window).await;
    let (c1, cpu1, t1) = (meter.count.load(Ordering::Relaxed), cpu_secs(), Instant::now());
    lock(&meter.window).end = Some(t1);
    if let Some(error) = lock(&meter.failed).clone() {
        return Err(error.into());
    }
    let mut rtts = std::mem::take(&mut lock(&meter.window).rtts);
    rtts.sort_unstable();
    Ok(Outcome {
        messages: c1 - c0,
        secs: (t1 - t0).as_secs_f64(),
        p50_ns: percentile(&rtts, 50.0),
        p99_ns: percentile(&rtts, 99.0),
        cpu_secs: cpu1 - cpu0,
    })
}

// ---------------------------------------------------------------------------
// The shape every async client is driven through

// The futures are `Send`: the load runs as ordinary tasks (`tokio::spawn`),
// as an application's do, beside Nova's session tasks. (On a `LocalSet`,
// every wake from a session task to the application's crossed from the
// runtime's queue to the set's, one more scheduler pass and `epoll_wait` a
// message; the peers, one task per connection, never cross.)

trait Tx {
    /// Sends one message; `more` says another follows at once (a batching hint).
    fn send(&mut self, msg: &Bytes, more: bool) -> impl Future<Output = Result<(), BoxError>> + Send;
}

trait Rx {
    /// The next echoed message's length.
    fn recv(&mut self) -> impl Future<Output = Result<usize, BoxError>> + Send;
}

trait Conn: Tx + Rx + Send + Sized + 'static {
    type T: Tx + Send + 'static;
    type R: Rx + Send + 'static;
    fn split(self) -> (Self::T, Self::R);
}

type Spawn<'a> = &'a dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>);

/// Starts the load on every connection.
fn start_load<C: Conn>(conns: Vec<C>, spec: &Spec, meter: &Arc<Meter>, spawn: Spawn<'_>) {
    let msg = payload(spec.size);
    for conn in conns {
        let (msg, meter) = (msg.clone(), Arc::clone(meter));
        let size = spec.size;
        if spec.pipelined {
            let window = Arc::new(Semaphore::new(WINDOW));
            let (mut tx, mut rx) = conn.split();
            let (w, m) = (Arc::clone(&window), Arc::clone(&meter));
            spawn(Box::pin(async move {
                let result: Result<(), BoxError> = async {
                    loop {
                        w.acquire().await?.forget();
                        let more = w.available_permits() > 0;
                        tx.send(&msg, more).await?;
                    }
                }
                .await;
                if let Err(e) = result {
                    m.fail(&e);
                }
            }));
            spawn(Box::pin(async move {
                let result: Result<(), BoxError> = async {
                    loop {
                        let n = rx.recv().await?;
                        if n != size {
                            return Err(format!("echo of {n} bytes, sent {size}").into());
                        }
                        meter.echoed(None);
                        window.add_permits(1);
                    }
                }
                .await;
                if let Err(e) = result {
                    meter.fail(&e);
                }
            }));
        } else {
            let mut conn = conn;
            spawn(Box::pin(async move {
                let result: Result<(), BoxError> = async {
                    loop {
                        let sent = Instant::now();
                        conn.send(&msg, false).await?;
                        let n = conn.recv().await?;
                        if n != size {
                            return Err(format!("echo of {n} bytes, sent {size}").into());
                        }
                        meter.echoed(Some(sent));
                    }
                }
                .await;
                if let Err(e) = result {
                    meter.fail(&e);
                }
            }));
        }
    }
}

/// Runs `spec` in this process and returns what it measured.
pub(crate) fn run(spec: &Spec) -> Result<Outcome, BoxError> {
    match spec.kind {
        Kind::NovaMio => run_mio(spec),
        Kind::NovaAsyncStd => run_smol(spec),
        _ => run_tokio(spec),
    }
}

fn run_tokio(spec: &Spec) -> Result<Outcome, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let meter = Arc::new(Meter::default());
        let spawn = |f: Pin<Box<dyn Future<Output = ()> + Send>>| drop(tokio::spawn(f));
        match spec.kind {
            Kind::NovaTokio => {
                let mut conns = Vec::new();
                for _ in 0..spec.conns {
                    let (handle, events) = nova_tokio::Connector::new(nova_config(spec.port)).connect().await?;
                    conns.push(Nova { handle, events });
                }
                start_load(conns, spec, &meter, &spawn);
            }
            Kind::TokioTungstenite => {
                let mut conns = Vec::new();
                for _ in 0..spec.conns {
                    conns.push(tungstenite_connect(spec.port).await?);
                }
                start_load(conns, spec, &meter, &spawn);
            }
            Kind::Fastwebsockets => {
                let mut conns = Vec::new();
                for _ in 0..spec.conns {
                    conns.push(Fws(fastwebsockets_connect(spec.port).await?));
                }
                start_load(conns, spec, &meter, &spawn);
            }
            Kind::TokioWebsockets => {
                let mut conns = Vec::new();
                for _ in 0..spec.conns {
                    conns.push(tokio_websockets_connect(spec.port).await?);
                }
                start_load(conns, spec, &meter, &spawn);
            }
            Kind::RawTcp => {
                let mut conns = Vec::new();
                for _ in 0..spec.conns {
                    let tcp = TcpStream::connect(("127.0.0.1", spec.port)).await?;
                    tcp.set_nodelay(true)?;
                    conns.push(Raw { tcp, buf: vec![0; spec.size] });
                }
                start_load(conns, spec, &meter, &spawn);
            }
            Kind::NovaAsyncStd | Kind::NovaMio => unreachable!("not on tokio"),
        }
        measure(&meter, spec, tokio::time::sleep).await
    })
}

thread_local! {
    /// The one executor of a smol client process: the load generator's tasks
    /// and nova-async-std's sessions both run on it, on the thread that
    /// blocks on it, as every tokio client runs on one current-thread
    /// runtime. (With the default spawner the sessions went to
    /// async-global-executor's own threads, and every message crossed
    /// threads twice on the one core the client is pinned to.)
    static SMOL: smol::LocalExecutor<'static> = const { smol::LocalExecutor::new() };
}

/// nova-async-std's spawner for the bench: the session goes on this thread's
/// [`SMOL`] executor. Only this thread spawns sessions (every connect, and the
/// driver's reconnects run inside the session's own task).
pub(crate) fn smol_runtime() -> nova_async_std::AsyncIo {
    nova_async_std::AsyncIo::with_spawner(|session| SMOL.with(|ex| ex.spawn(session).detach()))
}

fn run_smol(spec: &Spec) -> Result<Outcome, BoxError> {
    SMOL.with(|ex| {
        smol::block_on(ex.run(async move {
            let meter = Arc::new(Meter::default());
            let spawn = |f: Pin<Box<dyn Future<Output = ()> + Send>>| SMOL.with(|ex| ex.spawn(f).detach());
            let mut conns = Vec::new();
            for _ in 0..spec.conns {
                let (handle, events) =
                    nova_async_std::Connector::new(nova_config(spec.port)).runtime(smol_runtime()).connect().await?;
                conns.push(Nova { handle, events });
            }
            start_load(conns, spec, &meter, &spawn);
            measure(&meter, spec, |d| async move {
                smol::Timer::after(d).await;
            })
            .await
        }))
    })
}

/// Nova's configuration for every run: defaults, with limits above the
/// largest message and no keepalive pings in the way.
pub(crate) fn nova_config(port: u16) -> nova_proto::Config {
    nova_proto::Config::builder(format!("ws://127.0.0.1:{port}/"))
        .keepalive(None)
        .build()
        .expect("a valid configuration")
}

// ---------------------------------------------------------------------------
// Nova (nova-tokio and nova-async-std share the driver's Handle and Events)

pub(crate) struct Nova {
    pub(crate) handle: nova_driver::Handle,
    pub(crate) events: nova_driver::Events,
}

impl Tx for nova_driver::Handle {
    async fn send(&mut self, msg: &Bytes, _more: bool) -> Result<(), BoxError> {
        nova_driver::Handle::send(self, nova_proto::Message::Binary(msg.clone())).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Rx for nova_driver::Events {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        loop {
            match nova_driver::Events::recv(self).await {
                Some(nova_driver::Event::Message(m)) => return Ok(m.len()),
                Some(nova_driver::Event::Disconnected { cause, .. }) => {
                    return Err(format!("disconnected: {cause}").into());
                }
                Some(nova_driver::Event::Closed(c)) => return Err(format!("closed: {c:?}").into()),
                None => return Err("events ended".into()),
                Some(_) => {}
            }
        }
    }
}

impl Tx for Nova {
    async fn send(&mut self, msg: &Bytes, more: bool) -> Result<(), BoxError> {
        Tx::send(&mut self.handle, msg, more).await
    }
}

impl Rx for Nova {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        Rx::recv(&mut self.events).await
    }
}

impl Conn for Nova {
    type T = nova_driver::Handle;
    type R = nova_driver::Events;
    fn split(self) -> (Self::T, Self::R) {
        (self.handle, self.events)
    }
}

// ---------------------------------------------------------------------------
// tokio-tungstenite (default configuration: its 128 KiB read buffer)

type Tung = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn tungstenite_connect(port: u16) -> Result<Tung, BoxError> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), tcp).await?;
    Ok(ws)
}

async fn sink_send<S, M>(sink: &mut S, m: M, more: bool) -> Result<(), BoxError>
where
    S: Sink<M> + Unpin,
    S::Error: Error + 'static,
{
    if more {
        sink.feed(m).await?
    } else {
        sink.send(m).await?
    }
    Ok(())
}

impl Tx for Tung {
    async fn send(&mut self, msg: &Bytes, more: bool) -> Result<(), BoxError> {
        sink_send(self, tungstenite::Message::Binary(msg.clone()), more).await
    }
}

impl Tx for futures_util::stream::SplitSink<Tung, tungstenite::Message> {
    async fn send(&mut self, msg: &Bytes, more: bool) -> Result<(), BoxError> {
        sink_send(self, tungstenite::Message::Binary(msg.clone()), more).await
    }
}

async fn tungstenite_recv<S>(stream: &mut S) -> Result<usize, BoxError>
where
    S: Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(tungstenite::Message::Binary(b))) => return Ok(b.len()),
            Some(Ok(tungstenite::Message::Text(t))) => return Ok(t.len()),
            Some(Ok(tungstenite::Message::Close(_))) | None => return Err("closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

impl Rx for Tung {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        tungstenite_recv(self).await
    }
}

impl Rx for futures_util::stream::SplitStream<Tung> {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        tungstenite_recv(self).await
    }
}

impl Conn for Tung {
    type T = futures_util::stream::SplitSink<Tung, tungstenite::Message>;
    type R = futures_util::stream::SplitStream<Tung>;
    fn split(self) -> (Self::T, Self::R) {
        StreamExt::split(self)
    }
}

// ---------------------------------------------------------------------------
// tokio-websockets

type Tws = tokio_websockets::WebSocketStream<TcpStream>;

async fn tokio_websockets_connect(port: u16) -> Result<Tws, BoxError> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) =
        tokio_websockets::ClientBuilder::new().uri(&format!("ws://127.0.0.1:{port}/"))?.connect_on(tcp).await?;
    Ok(ws)
}

async fn tws_recv<S>(stream: &mut S) -> Result<usize, BoxError>
where
    S: Stream<Item = Result<tokio_websockets::Message, tokio_websockets::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(m)) if m.is_binary() || m.is_text() => return Ok(m.as_payload().len()),
            Some(Ok(m)) if m.is_close() => return Err("closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("closed".into()),
        }
    }
}

impl Tx for Tws {
    async fn send(&mut self, msg: &Bytes, more: bool) -> Result<(), BoxError> {
        sink_send(self, tokio_websockets::Message::binary(msg.clone()), more).await
    }
}

impl Tx for futures_util::stream::SplitSink<Tws, tokio_websockets::Message> {
    async fn send(&mut self, msg: &Bytes, more: bool) -> Result<(), BoxError> {
        sink_send(self, tokio_websockets::Message::binary(msg.clone()), more).await
    }
}

impl Rx for Tws {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        tws_recv(self).await
    }
}

impl Rx for futures_util::stream::SplitStream<Tws> {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        tws_recv(self).await
    }
}

impl Conn for Tws {
    type T = futures_util::stream::SplitSink<Tws, tokio_websockets::Message>;
    type R = futures_util::stream::SplitStream<Tws>;
    fn split(self) -> (Self::T, Self::R) {
        StreamExt::split(self)
    }
}

// ---------------------------------------------------------------------------
// fastwebsockets: the upgrade by hand, then `after_handshake` on the TcpStream

/// Sends a client upgrade request on `tcp` and reads the 101.
pub(crate) async fn upgrade_by_hand(tcp: &mut TcpStream, port: u16) -> Result<(), BoxError> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 256];
    while !head.ends_with(b"\r\n\r\n") {
        // The server sends nothing after the 101 until we do: reading past it is impossible.
        let n = tcp.read(&mut byte).await?;
        if n == 0 {
            return Err("closed during the upgrade".into());
        }
        head.extend_from_slice(&byte[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err("upgrade refused".into());
    }
    Ok(())
}

async fn fastwebsockets_connect(port: u16) -> Result<fastwebsockets::WebSocket<TcpStream>, BoxError> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    upgrade_by_hand(&mut tcp, port).await?;
    Ok(fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client))
}

pub(crate) struct Fws(pub(crate) fastwebsockets::WebSocket<TcpStream>);

fn fws_frame(msg: &Bytes) -> fastwebsockets::Frame<'_> {
    fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(msg))
}

fn fws_len(frame: &fastwebsockets::Frame<'_>) -> Option<Result<usize, BoxError>> {
    match frame.opcode {
        fastwebsockets::OpCode::Binary | fastwebsockets::OpCode::Text => Some(Ok(frame.payload.len())),
        fastwebsockets::OpCode::Close => Some(Err("closed".into())),
        _ => None,
    }
}

impl Tx for Fws {
    async fn send(&mut self, msg: &Bytes, _more: bool) -> Result<(), BoxError> {
        self.0.write_frame(fws_frame(msg)).await?;
        Ok(())
    }
}

impl Rx for Fws {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        loop {
            let frame = self.0.read_frame().await?;
            if let Some(len) = fws_len(&frame) {
                return len;
            }
        }
    }
}

type FwsWrite = fastwebsockets::WebSocketWrite<tokio::net::tcp::OwnedWriteHalf>;
type FwsRead = fastwebsockets::WebSocketRead<tokio::net::tcp::OwnedReadHalf>;

impl Tx for FwsWrite {
    async fn send(&mut self, msg: &Bytes, _more: bool) -> Result<(), BoxError> {
        self.write_frame(fws_frame(msg)).await?;
        Ok(())
    }
}

impl Rx for FwsRead {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        loop {
            // The server sends no pings: nothing obliges this half to write.
            let frame = self.read_frame(&mut |_| async { Ok::<(), std::io::Error>(()) }).await?;
            if let Some(len) = fws_len(&frame) {
                return len;
            }
        }
    }
}

impl Conn for Fws {
    type T = FwsWrite;
    type R = FwsRead;
    fn split(self) -> (Self::T, Self::R) {
        let (r, w) = self.0.split(TcpStream::into_split);
        (w, r)
    }
}

// ---------------------------------------------------------------------------
// Raw TCP echo: the floor (no framing; the echo of `size` bytes is one message)

struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

struct RawRx {
    tcp: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
}

impl Tx for Raw {
    async fn send(&mut self, msg: &Bytes, _more: bool) -> Result<(), BoxError> {
        self.tcp.write_all(msg).await?;
        Ok(())
    }
}

impl Rx for Raw {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        Ok(self.tcp.read_exact(&mut self.buf).await?)
    }
}

impl Tx for tokio::net::tcp::OwnedWriteHalf {
    async fn send(&mut self, msg: &Bytes, _more: bool) -> Result<(), BoxError> {
        self.write_all(msg).await?;
        Ok(())
    }
}

impl Rx for RawRx {
    async fn recv(&mut self) -> Result<usize, BoxError> {
        Ok(self.tcp.read_exact(&mut self.buf).await?)
    }
}

impl Conn for Raw {
    type T = tokio::net::tcp::OwnedWriteHalf;
    type R = RawRx;
    fn split(self) -> (Self::T, Self::R) {
        let (r, w) = self.tcp.into_split();
        (w, RawRx { tcp: r, buf: self.buf })
    }
}

// ---------------------------------------------------------------------------
// nova-mio: the caller-owned loop, all connections in one Poll

fn run_mio(spec: &Spec) -> Result<Outcome, BoxError> {
    use mio::{Events, Poll, Token};
    use nova_mio::{Connector, Event};

    let mut poll = Poll::new()?;
    let mut readiness = Events::with_capacity(1024);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        conns.push(Connector::new(nova_config(spec.port)).start(poll.registry(), Token(i), started)?);
    }
    let msg = nova_proto::Message::Binary(payload(spec.size));
    // Per connection: when its one ping-pong message went out.
    let mut sent_at: Vec<Option<Instant>> = vec![None; spec.conns];
    let mut count = 0u64;
    let mut rtts = Vec::new();
    let (mut c0, mut cpu0) = (0, 0.0);
    let mut window_start: Option<Instant> = None;
    let mut measure_start = None;
    let limit = started + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        if now > limit {
            return Err("nova-mio: no progress".into());
        }
        match window_start {
            Some(t0) if now >= t0 + spec.window => {
                rtts.sort_unstable();
                return Ok(Outcome {
                    messages: count - c0,
                    secs: (now - t0).as_secs_f64(),
                    p50_ns: percentile(&rtts, 50.0),
                    p99_ns: percentile(&rtts, 99.0),
                    cpu_secs: cpu_secs() - cpu0,
                });
            }
            None if measure_start.is_some_and(|at| now >= at) => {
                window_start = Some(now);
                c0 = count;
                cpu0 = cpu_secs();
            }
            _ => {}
        }
        let deadline = conns.iter().filter_map(nova_mio::Connection::poll_timeout).min();
        let timeout = deadline.map_or(Duration::from_millis(10), |at| at.saturating_duration_since(now));
        poll.poll(&mut readiness, Some(timeout.min(Duration::from_millis(10))))?;
        let now = Instant::now();
        for event in readiness.iter() {
            if let Some(conn) = conns.get_mut(event.token().0) {
                conn.on_event(poll.registry(), event, now);
            }
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            if conn.poll_timeout().is_some_and(|at| at <= now) {
                conn.on_timeout(poll.registry(), now);
            }
            let mut wrote = false;
            while let Some(event) = conn.poll_event() {
                match event {
                    Event::Opened(_) => {
                        let n = if spec.pipelined { WINDOW } else { 1 };
                        for _ in 0..n {
                            conn.send(msg.clone())?;
                        }
                        sent_at[i] = Some(Instant::now());
                        wrote = true;
                    }
                    Event::Message(m) => {
                        if m.len() != spec.size {
                            return Err(format!("echo of {} bytes, sent {}", m.len(), spec.size).into());
                        }
                        count += 1;
                        if !spec.pipelined
                            && let (Some(sent), Some(t0)) = (sent_at[i], window_start)
                            && sent >= t0
                        {
                            rtts.push(now.saturating_duration_since(sent).as_nanos() as u64);
                        }
                        conn.send(msg.clone())?;
                        sent_at[i] = Some(Instant::now());
                        wrote = true;
                    }
                    Event::Disconnected { cause, .. } => return Err(format!("disconnected: {cause}").into()),
                    Event::Closed(c) => return Err(format!("closed: {c:?}").into()),
                    _ => {}
                }
            }
            if wrote {
                conn.flush(poll.registry(), Instant::now());
            }
        }
        if measure_start.is_none() && sent_at.iter().all(Option::is_some) {
            measure_start = Some(Instant::now() + spec.warmup);
        }
    }
}
