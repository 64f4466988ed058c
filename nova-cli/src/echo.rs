//! `nova echo-server`: a local echo server, built on tokio-tungstenite so
//! that clients are tried against an implementation other than Nova's own.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::failure::Failure;
use crate::output::Status;
use crate::signal;

/// Largest message (and frame) accepted, and so echoed.
const MAX_MESSAGE: usize = 64 << 20;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send its upgrade request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections get to finish their close when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves on `127.0.0.1:port` until SIGINT or SIGTERM; returns exit code 0.
///
/// # Errors
///
/// When the port cannot be bound, or stdout cannot take the first line.
pub(crate) async fn run(port: u16, quiet: bool) -> Result<u8, Failure> {
    let status = Status::new(quiet);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| Failure::ended(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Failure::ended(format!("cannot read the bound address: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on ws://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure::ended(format!("cannot write to stdout: {e}")))?;
    }
    let mut stops = signal::listen(SHUTDOWN_GRACE + Duration::from_secs(1));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    let stop = loop {
        let permit = tokio::select! {
            Some(stop) = stops.recv() => break stop,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => continue,
            },
        };
        let (tcp, peer) = tokio::select! {
            Some(stop) = stops.recv() => break stop,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, then go on.
                    status.warn(format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        connections.spawn(serve(tcp, peer, next_id, permit, shutdown_rx.clone(), status));
        // Forget finished connections, so the set stays as small as the
        // number of live ones.
        while connections.try_join_next().is_some() {}
    };
    while connections.try_join_next().is_some() {}
    status.line(format_args!("{}: closing {} connection(s) with 1001", stop.name(), connections.len()));
    let _ = shutdown.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    Ok(0)
}

/// The limits: 64 MiB messages, no compression (this build has none).
fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

/// One connection: upgrade, then echo every text and binary message until
/// the client closes or the server stops.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    _permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
    status: Status,
) {
    let _ = tcp.set_nodelay(true);
    let upgrade = tokio_tungstenite::accept_async_with_config(tcp, Some(config()));
    let mut ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            status.line(format_args!("connection {id} from {peer}: upgrade failed: {e}"));
            return;
        }
        Err(_) => {
            status.line(format_args!("connection {id} from {peer}: no upgrade request within {HANDSHAKE_TIMEOUT:?}"));
            return;
        }
    };
    status.line(format_args!("connection {id} from {peer}: open"));
    let mut echoed = 0u64;
    let outcome = loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let frame = CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() };
                let _ = ws.send(Message::Close(Some(frame))).await;
                // Wait (briefly) for the client's close frame.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                break "closed by the server (shutting down)".to_owned();
            }
            next = ws.next() => match next {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if let Err(e) = ws.send(message).await {
                        break format!("echo failed: {e}");
                    }
                    echoed += 1;
                }
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite answers the close itself; the stream ends next.
                    let code = frame.map_or_else(|| "no code".to_owned(), |f| u16::from(f.code).to_string());
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    break format!("closed by the client ({code})");
                }
                // Pings are answered by tungstenite on the next read.
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("ended: {e}"),
                None => break "ended".to_owned(),
            },
        }
    };
    status.line(format_args!("connection {id}: {outcome}, {echoed} message(s) echoed"));
}
