//! The tokio-tungstenite peer of nova-interop.
//!
//! Serves the behaviours in the `nova_interop` crate docs, chosen by request
//! path, on 127.0.0.1 only. Started by the harness as
//!
//! ```text
//! nova-interop-tungstenite --lifetime-ms N [--cert FILE --key FILE] --port N
//! ```
//!
//! The first stdout line is `LISTENING 127.0.0.1:PORT`, or
//! `BIND-FAILED <reason>` with exit status 75. Exits when stdin closes or
//! after the lifetime. A separate process (not a thread of the test) so that
//! a kill is a real process death, as for the Python and Node peers.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nova_interop::{
    BIND_FAILED_EXIT, CLOSE_TIMEOUT, DEFAULT_CLOSE_CODE, DEFAULT_STREAM_INTERVAL, FRAGMENTED_BINARY_PARTS,
    FRAGMENTED_TEXT_PARTS, MAX_MESSAGE_SIZE, PING_PAYLOAD, PONG_CONFIRMATION,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long a client may take to complete the TLS and WebSocket handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection does, from its request path.
#[derive(Debug)]
enum Route {
    Echo,
    Fragmented,
    Ping,
    Close { code: u16, reason: String },
    Stream { interval: Duration },
}

impl Route {
    /// The route for a request target; `None` for an unknown path.
    fn parse(path: &str, query: Option<&str>) -> Option<Route> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        let value = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        Some(match path {
            "/echo" => Route::Echo,
            "/fragmented" => Route::Fragmented,
            "/ping" => Route::Ping,
            "/close" => Route::Close {
                code: value("code").and_then(|code| code.parse().ok()).unwrap_or(DEFAULT_CLOSE_CODE),
                reason: value("reason").unwrap_or("").to_owned(),
            },
            "/stream" => Route::Stream {
                interval: value("interval_ms")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map_or(DEFAULT_STREAM_INTERVAL, |ms| Duration::from_millis(ms.max(1))),
            },
            _ => return None,
        })
    }
}

/// The command line.
struct Args {
    port: u16,
    lifetime: Duration,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args { port: 0, lifetime: Duration::from_secs(120), cert: None, key: None };
        let mut port = None;
        let mut argv = std::env::args().skip(1);
        while let Some(flag) = argv.next() {
            let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--port" => port = Some(value.parse().map_err(|_| format!("bad port {value:?}"))?),
                "--lifetime-ms" => {
                    args.lifetime =
                        Duration::from_millis(value.parse().map_err(|_| format!("bad lifetime {value:?}"))?);
                }
                "--cert" => args.cert = Some(value.into()),
                "--key" => args.key = Some(value.into()),
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        args.port = port.ok_or("--port N is required")?;
        Ok(args)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("nova-interop-tungstenite: {message}");
            return ExitCode::from(2);
        }
    };
    let acceptor = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(message) => {
                eprintln!("nova-interop-tungstenite: {message}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };

    // Both watchdogs end the whole process, whatever the runtime is doing.
    thread::spawn(|| {
        let mut stdin = io::stdin();
        let mut buffer = [0_u8; 4096];
        // The harness holds the other end: EOF (or an error) means it is gone.
        while matches!(stdin.read(&mut buffer), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let lifetime = args.lifetime;
    thread::spawn(move || {
        thread::sleep(lifetime);
        std::process::exit(0);
    });

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nova-interop-tungstenite: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args.port, acceptor))
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("reading {}: {error}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| format!("reading {}: {error}", key.display()))?;
    // The ring provider, named: no process-wide default to depend on.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|error| format!("TLS configuration: {error}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(port: u16, acceptor: Option<TlsAcceptor>) -> ExitCode {
    let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(listener) => listener,
        Err(error) => {
            println!("BIND-FAILED {error}");
            return ExitCode::from(BIND_FAILED_EXIT as u8);
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            println!("BIND-FAILED {error}");
            return ExitCode::from(BIND_FAILED_EXIT as u8);
        }
    };
    println!("LISTENING {addr}");
    // stdout is a pipe: without a flush the harness would wait for a buffer.
    let _ = io::stdout().flush();

    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                eprintln!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(error) = connection(stream, acceptor).await {
                eprintln!("connection ended with an error: {error}");
            }
        });
    }
}

async fn connection(stream: TcpStream, acceptor: Option<TlsAcceptor>) -> Result<(), WsError> {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => websocket(stream).await,
        Some(acceptor) => {
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            websocket(stream).await
        }
    }
}

async fn websocket<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<(), WsError> {
    let mut route = None;
    // tungstenite's `Callback` fixes the error type (an HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        route = Route::parse(request.uri().path(), request.uri().query());
        if route.is_some() {
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("unknown path\n".to_owned()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let config =
        WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_SIZE)).max_frame_size(Some(MAX_MESSAGE_SIZE));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "WebSocket handshake timed out"))??;
    let Some(route) = route else { return Ok(()) };
    match route {
        Route::Echo => echo(&mut ws, false).await,
        Route::Fragmented => {
            send_fragmented(&mut ws, Data::Text, &FRAGMENTED_TEXT_PARTS).await?;
            send_fragmented(&mut ws, Data::Binary, &FRAGMENTED_BINARY_PARTS).await?;
            echo(&mut ws, false).await
        }
        Route::Ping => {
            ws.send(Message::Ping(PING_PAYLOAD.into())).await?;
            echo(&mut ws, true).await
        }
        Route::Close { code, reason } => close_on_first_message(&mut ws, code, reason).await,
        Route::Stream { interval } => stream_and_echo(&mut ws, interval).await,
    }
}

/// Echoes until the connection ends; with `confirm_pong`, answers the pong
/// to [`PING_PAYLOAD`] with [`PONG_CONFIRMATION`].
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    confirm_pong: bool,
) -> Result<(), WsError> {
    while let Some(message) = ws.next().await {
        if let Some(reply) = reply(message?, confirm_pong) {
            ws.send(reply).await?;
        }
    }
    Ok(())
}

/// What answers `message`: itself for data, the confirmation for the pong.
/// tungstenite answers pings and close frames by itself.
fn reply(message: Message, confirm_pong: bool) -> Option<Message> {
    match message {
        Message::Text(_) | Message::Binary(_) => Some(message),
        Message::Pong(payload) if confirm_pong && payload == PING_PAYLOAD.as_bytes() => {
            Some(Message::text(PONG_CONFIRMATION))
        }
        _ => None,
    }
}

/// One message as a data frame and continuations, FIN on the last.
async fn send_fragmented<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    data: Data,
    parts: &[&'static [u8]],
) -> Result<(), WsError> {
    for (i, part) in parts.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { data } else { Data::Continue });
        let frame = Frame::message(*part, opcode, i + 1 == parts.len());
        // `feed` queues without flushing, so the frames leave together.
        ws.feed(Message::Frame(frame)).await?;
    }
    ws.flush().await
}

async fn close_on_first_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: String,
) -> Result<(), WsError> {
    while let Some(message) = ws.next().await {
        if matches!(message?, Message::Text(_) | Message::Binary(_)) {
            ws.close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() })).await?;
            // Read until the client's close frame ends the stream; dropping
            // the stream then closes TCP, the server first.
            let drain = async { while let Some(Ok(_)) = ws.next().await {} };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
            return Ok(());
        }
    }
    Ok(())
}

async fn stream_and_echo<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    interval: Duration,
) -> Result<(), WsError> {
    let mut ticks = tokio::time::interval(interval);
    // A slow client stretches the interval instead of causing a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                // `send` waits for the socket, so a client that does not read
                // stops the counter instead of growing a buffer.
                ws.send(Message::text(n.to_string())).await?;
                n += 1;
            }
            message = ws.next() => match message {
                None => return Ok(()),
                Some(message) => {
                    if let Some(reply) = reply(message?, false) {
                        ws.send(reply).await?;
                    }
                }
            },
        }
    }
}
