//! Resident memory per idle connection: a child process opens 1,000
//! connections of one kind, and its VmRSS growth is divided by their number,
//! after the handshake and again after one 16-byte echo on each (which makes
//! every read path touch its buffers). Kernel socket buffers are not in it.
//!
//! A few connections are opened first and kept, so one-time allocations
//! (runtime, TLS provider tables, thread-locals) are in the baseline.
//!
//! Nova's connections are used as an application uses them: one shared
//! `Config`, and the `Opened` event taken from the stream as soon as the
//! connection is up (an application's event loop takes it at once; left
//! in the queue, it and the response headers it carries would be counted
//! as idle memory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::load::{BoxError, Kind, payload};

/// Connections opened before the baseline is read.
const WARM: usize = 8;

/// KiB of resident memory of this process.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// KiB per connection after the handshake and after one echo.
pub(crate) fn run(kind: Kind, n: usize, port: u16) -> Result<(f64, f64), BoxError> {
    match kind {
        Kind::NovaMio => run_mio(n, port),
        Kind::NovaAsyncStd => smol::block_on(async {
            let mut conns = Vec::new();
            let config = shared_config(port);
            let connect = || {
                let config = Arc::clone(&config);
                async { nova_opened(nova_async_std::Connector::new(config).connect().await?).await }
            };
            for _ in 0..WARM {
                conns.push(connect().await?);
            }
            let base = rss_kib();
            for _ in 0..n {
                conns.push(connect().await?);
            }
            let open = rss_kib();
            let msg = payload(16);
            for (handle, events) in &mut conns {
                nova_echo(handle, events, &msg).await?;
            }
            let echoed = rss_kib();
            Ok(per_conn(base, open, echoed, n))
        }),
        _ => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(run_tokio(kind, n, port))
        }
    }
}

/// The configuration every Nova connection of a run shares: one `Arc`, as
/// an application opening many sessions to one service would pass it (a
/// `Config` is built once, not per connection).
fn shared_config(port: u16) -> Arc<nova_proto::Config> {
    Arc::new(crate::load::nova_config(port))
}

fn per_conn(base: u64, open: u64, echoed: u64, n: usize) -> (f64, f64) {
    (open.saturating_sub(base) as f64 / n as f64, echoed.saturating_sub(base) as f64 / n as f64)
}

/// A session that just connected, its `Opened` event taken.
async fn nova_opened(
    (handle, mut events): (nova_driver::Handle, nova_driver::Events),
) -> Result<(nova_driver::Handle, nova_driver::Events), BoxError> {
    match events.recv().await {
        Some(nova_driver::Event::Opened(_)) => Ok((handle, events)),
        other => Err(format!("expected Opened, got {other:?}").into()),
    }
}

async fn nova_echo(
    handle: &nova_driver::Handle,
    events: &mut nova_driver::Events,
    msg: &Bytes,
) -> Result<(), BoxError> {
    handle.send(nova_proto::Message::Binary(msg.clone())).await.map_err(|e| e.to_string())?;
    loop {
        match events.recv().await {
            Some(nova_driver::Event::Message(_)) => return Ok(()),
            Some(nova_driver::Event::Pong { .. }) => {}
            other => return Err(format!("unexpected: {other:?}").into()),
        }
    }
}

/// Connections of one peer library, kept open.
enum Peer {
    Nova(nova_driver::Handle, nova_driver::Events),
    Tung(tokio_tungstenite::WebSocketStream<TcpStream>),
    Fws(fastwebsockets::WebSocket<TcpStream>),
    Tws(tokio_websockets::WebSocketStream<TcpStream>),
}

async fn run_tokio(kind: Kind, n: usize, port: u16) -> Result<(f64, f64), BoxError> {
    use futures_util::{SinkExt, StreamExt};

    let config = shared_config(port);
    let connect = || {
        let config = Arc::clone(&config);
        async move { connect_one(kind, port, config).await }
    };
    let mut conns = Vec::new();
    for _ in 0..WARM {
        conns.push(connect().await?);
    }
    let base = rss_kib();
    for _ in 0..n {
        conns.push(connect().await?);
    }
    let open = rss_kib();
    let msg = payload(16);
    for conn in &mut conns {
        match conn {
            Peer::Nova(h, e) => nova_echo(h, e, &msg).await?,
            Peer::Tung(ws) => {
                ws.send(tungstenite::Message::Binary(msg.clone())).await?;
                ws.next().await.ok_or("closed")??;
            }
            Peer::Fws(ws) => {
                ws.write_frame(fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(&msg))).await?;
                ws.read_frame().await?;
            }
            Peer::Tws(ws) => {
                ws.send(tokio_websockets::Message::binary(msg.clone())).await?;
                ws.next().await.ok_or("closed")??;
            }
        }
    }
    let echoed = rss_kib();
    Ok(per_conn(base, open, echoed, n))
}

/// One connection of `kind`; Nova's from the configuration all share.
async fn connect_one(kind: Kind, port: u16, config: Arc<nova_proto::Config>) -> Result<Peer, BoxError> {
    Ok(match kind {
        Kind::NovaTokio => {
            let (h, e) = nova_opened(nova_tokio::Connector::new(config).connect().await?).await?;
            Peer::Nova(h, e)
        }
        Kind::TokioTungstenite => {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            Peer::Tung(tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), tcp).await?.0)
        }
        Kind::Fastwebsockets => {
            let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            crate::load::upgrade_by_hand(&mut tcp, port).await?;
            Peer::Fws(fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client))
        }
        Kind::TokioWebsockets => {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let builder = tokio_websockets::ClientBuilder::new().uri(&format!("ws://127.0.0.1:{port}/"))?;
            Peer::Tws(builder.connect_on(tcp).await?.0)
        }
        other => return Err(format!("{} has no memory run", other.name()).into()),
    })
}

/// nova-mio connections in one `Poll`, each with its stage:
/// 0 connecting, 1 open, 2 echo sent, 3 echoed.
struct MioSet {
    poll: mio::Poll,
    readiness: mio::Events,
    conns: Vec<nova_mio::Connection>,
    stage: Vec<u8>,
    config: Arc<nova_proto::Config>,
    limit: Instant,
}

impl MioSet {
    fn open(&mut self, count: usize) -> Result<(), BoxError> {
        let now = Instant::now();
        for _ in 0..count {
            let token = mio::Token(self.conns.len());
            let config = Arc::clone(&self.config);
            self.conns.push(nova_mio::Connector::new(config).start(self.poll.registry(), token, now)?);
            self.stage.push(0);
        }
        Ok(())
    }

    /// Drives until every connection reached `until`.
    fn drive(&mut self, until: u8, msg: &nova_proto::Message) -> Result<(), BoxError> {
        while self.stage.iter().any(|s| *s < until) {
            if Instant::now() > self.limit {
                return Err("nova-mio: connections did not finish".into());
            }
            self.poll.poll(&mut self.readiness, Some(Duration::from_millis(5)))?;
            let now = Instant::now();
            for event in self.readiness.iter() {
                self.conns[event.token().0].on_event(self.poll.registry(), event, now);
            }
            for (i, conn) in self.conns.iter_mut().enumerate() {
                if conn.poll_timeout().is_some_and(|at| at <= now) {
                    conn.on_timeout(self.poll.registry(), now);
                }
                while let Some(event) = conn.poll_event() {
                    match event {
                        nova_mio::Event::Opened(_) => self.stage[i] = 1,
                        nova_mio::Event::Message(_) => self.stage[i] = 3,
                        nova_mio::Event::Pong { .. } => {}
                        other => return Err(format!("unexpected: {other:?}").into()),
                    }
                }
                if until == 3 && self.stage[i] == 1 {
                    conn.send(msg.clone())?;
                    conn.flush(self.poll.registry(), now);
                    self.stage[i] = 2;
                }
            }
        }
        Ok(())
    }
}

fn run_mio(n: usize, port: u16) -> Result<(f64, f64), BoxError> {
    let msg = nova_proto::Message::Binary(payload(16));
    let mut set = MioSet {
        poll: mio::Poll::new()?,
        readiness: mio::Events::with_capacity(1024),
        conns: Vec::new(),
        stage: Vec::new(),
        config: shared_config(port),
        limit: Instant::now() + Duration::from_secs(60),
    };
    set.open(WARM)?;
    set.drive(1, &msg)?;
    let base = rss_kib();
    // Opened in batches of 100 so connects do not pile up in the listener's backlog.
    let mut left = n;
    while left > 0 {
        let batch = left.min(100);
        set.open(batch)?;
        set.drive(1, &msg)?;
        left -= batch;
    }
    let opened = rss_kib();
    set.drive(3, &msg)?;
    let echoed = rss_kib();
    Ok(per_conn(base, opened, echoed, n))
}
