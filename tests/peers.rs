//! Tests of the interop harness itself: every peer, every behaviour, driven
//! by the sync tungstenite client (over rustls for TLS), so the harness is
//! proven independently of Nova's own drivers.
//!
//! A peer that cannot run here (no python3/node/npm, no registry) is skipped
//! with a banner, unless `NOVA_INTEROP_REQUIRED=1`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ::tungstenite::error::ProtocolError;
use ::tungstenite::protocol::WebSocketConfig;
use ::tungstenite::{Error, Message, WebSocket};
use nova_interop::{
    DEFAULT_CLOSE_CODE, FRAGMENTED_BINARY, FRAGMENTED_TEXT, MAX_MESSAGE_SIZE, PING_PAYLOAD, PONG_CONFIRMATION, Peer,
    PeerKind, PeerOptions,
};
use rustls::pki_types::ServerName;

/// The longest any single read or write may block: generous for a loaded
/// 2-core machine, and still a bound.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The echo sizes: empty, the largest control-frame-sized payload, a 16-bit
/// length, a 64-bit length.
const SIZES: [usize; 4] = [0, 125, 64 * 1024, 16 * 1024 * 1024];

/// A stream tungstenite can run over: plain TCP, or rustls over TCP.
trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

type Client = WebSocket<Box<dyn Io>>;

/// A client connected to `path_and_query` on `peer`, trusting its CA for TLS
/// (and sending SNI `localhost`).
fn try_connect(peer: &Peer, path_and_query: &str) -> Result<Client, String> {
    let tcp = TcpStream::connect_timeout(&peer.addr(), IO_TIMEOUT).map_err(|e| format!("TCP connect: {e}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let stream: Box<dyn Io> = match peer.ca() {
        None => Box::new(tcp),
        Some(ca) => {
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let tls = rustls::ClientConnection::new(ca.client_config(), name).map_err(|e| e.to_string())?;
            Box::new(rustls::StreamOwned::new(tls, tcp))
        }
    };
    let config =
        WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_SIZE)).max_frame_size(Some(MAX_MESSAGE_SIZE));
    let (client, _response) = ::tungstenite::client::client_with_config(peer.url(path_and_query), stream, Some(config))
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok(client)
}

fn connect(peer: &Peer, path_and_query: &str) -> Client {
    try_connect(peer, path_and_query)
        .unwrap_or_else(|e| panic!("{} {path_and_query}: {e}\nserver stderr:\n{}", peer.kind(), peer.stderr()))
}

/// The next text or binary message; pings are answered by tungstenite.
fn read_data(client: &mut Client, peer: &Peer) -> Message {
    loop {
        match client.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => return message,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("{}: expected a data message, got {other:?}", peer.kind()),
            Err(error) => panic!("{}: read failed: {error}\nserver stderr:\n{}", peer.kind(), peer.stderr()),
        }
    }
}

fn send(client: &mut Client, peer: &Peer, message: Message) {
    if let Err(error) = client.send(message) {
        panic!("{}: send failed: {error}\nserver stderr:\n{}", peer.kind(), peer.stderr());
    }
}

fn text_of(len: usize) -> String {
    // Built by repetition (a memcpy), not per character: the tests run
    // unoptimized and 16 MiB adds up.
    let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = alphabet.repeat(len / alphabet.len() + 1);
    text.truncate(len);
    text
}

fn binary_of(len: usize) -> Vec<u8> {
    // Every byte value, so not valid UTF-8.
    let every_byte: Vec<u8> = (0..=255).collect();
    let mut binary = every_byte.repeat(len / every_byte.len() + 1);
    binary.truncate(len);
    binary
}

/// Sends and expects back one message of each type at each size.
fn echo_round_trips(peer: &Peer, client: &mut Client) {
    for size in SIZES {
        let text = text_of(size);
        send(client, peer, Message::text(text.clone()));
        match read_data(client, peer) {
            Message::Text(echoed) => {
                assert!(
                    echoed.as_str() == text,
                    "{}: text of {size} B came back changed ({} B)",
                    peer.kind(),
                    echoed.len()
                )
            }
            other => panic!("{}: text of {size} B came back as {} B of binary", peer.kind(), other.len()),
        }
        let binary = binary_of(size);
        send(client, peer, Message::binary(binary.clone()));
        match read_data(client, peer) {
            Message::Binary(echoed) => {
                assert!(echoed == binary, "{}: binary of {size} B came back changed ({} B)", peer.kind(), echoed.len())
            }
            other => panic!("{}: binary of {size} B came back as {} B of text", peer.kind(), other.len()),
        }
    }
}

fn echoes_at_every_size(kind: PeerKind, options: PeerOptions) {
    let Some(peer) = Peer::start_or_skip(kind, options) else { return };
    let mut client = connect(&peer, "/echo");
    echo_round_trips(&peer, &mut client);
    client.close(None).ok();
}

fn fragmented_messages_arrive_whole(kind: PeerKind) {
    let Some(peer) = Peer::start_or_skip(kind, PeerOptions::plain()) else { return };
    let mut client = connect(&peer, "/fragmented");
    match read_data(&mut client, &peer) {
        Message::Text(text) => assert_eq!(text.as_str(), FRAGMENTED_TEXT, "{kind}"),
        other => panic!("{kind}: expected the fragmented text, got {other:?}"),
    }
    match read_data(&mut client, &peer) {
        Message::Binary(binary) => assert_eq!(&binary[..], FRAGMENTED_BINARY, "{kind}"),
        other => panic!("{kind}: expected the fragmented binary, got {other:?}"),
    }
    // Then it echoes.
    send(&mut client, &peer, Message::text("after"));
    assert_eq!(read_data(&mut client, &peer), Message::text("after"), "{kind}");
}

fn ping_is_confirmed_after_the_pong(kind: PeerKind) {
    let Some(peer) = Peer::start_or_skip(kind, PeerOptions::plain()) else { return };
    let mut client = connect(&peer, "/ping");
    // tungstenite queues the pong when it reads the ping and sends it on the
    // next read.
    match client.read() {
        Ok(Message::Ping(payload)) => assert_eq!(&payload[..], PING_PAYLOAD.as_bytes(), "{kind}"),
        other => panic!("{kind}: expected the ping first, got {other:?}"),
    }
    assert_eq!(read_data(&mut client, &peer), Message::text(PONG_CONFIRMATION), "{kind}");
    send(&mut client, &peer, Message::binary(vec![1, 2, 3]));
    assert_eq!(read_data(&mut client, &peer), Message::binary(vec![1, 2, 3]), "{kind}");
}

/// Expects a close frame with `code` and `reason` after the first message,
/// then the server ending TCP.
fn expect_close(peer: &Peer, path_and_query: &str, code: u16, reason: &str) {
    let kind = peer.kind();
    let mut client = connect(peer, path_and_query);
    send(&mut client, peer, Message::text("trigger"));
    match client.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), code, "{kind} {path_and_query}");
            assert_eq!(frame.reason.as_str(), reason, "{kind} {path_and_query}");
        }
        other => panic!("{kind} {path_and_query}: expected a close frame, got {other:?}\n{}", peer.stderr()),
    }
    // tungstenite sends the close reply on this read; the server then ends
    // TCP, which tungstenite reports as ConnectionClosed (a read timeout
    // would be an Io error instead).
    match client.read() {
        Err(Error::ConnectionClosed) => {}
        other => panic!("{kind} {path_and_query}: expected the server to end TCP, got {other:?}"),
    }
}

fn close_carries_code_and_reason(kind: PeerKind) {
    let Some(peer) = Peer::start_or_skip(kind, PeerOptions::plain()) else { return };
    expect_close(&peer, "/close?code=4001&reason=nova+bye%21", 4001, "nova bye!");
    expect_close(&peer, "/close?code=1001&reason=going%20away", 1001, "going away");
    expect_close(&peer, "/close", DEFAULT_CLOSE_CODE, "");
}

/// Reads `count` stream messages, expecting `from`, `from + 1`, ... and
/// returning the echoes seen among them.
fn read_counter(client: &mut Client, peer: &Peer, from: u64, count: u64, echoes: &mut Vec<String>) {
    let mut next = from;
    while next < from + count {
        match read_data(client, peer) {
            Message::Text(text) => match text.parse::<u64>() {
                Ok(n) => {
                    assert_eq!(n, next, "{}: the counter skipped or repeated", peer.kind());
                    next += 1;
                }
                Err(_) => echoes.push(text.as_str().to_owned()),
            },
            other => panic!("{}: unexpected {other:?} on /stream", peer.kind()),
        }
    }
}

fn stream_counts_from_zero_per_connection(kind: PeerKind) {
    let Some(peer) = Peer::start_or_skip(kind, PeerOptions::plain()) else { return };
    for _connection in 0..2 {
        let mut client = connect(&peer, "/stream?interval_ms=2");
        let mut echoes = Vec::new();
        read_counter(&mut client, &peer, 0, 20, &mut echoes);
        send(&mut client, &peer, Message::text("interleaved"));
        read_counter(&mut client, &peer, 20, 20, &mut echoes);
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut next = 40;
        while echoes.is_empty() && Instant::now() < deadline {
            read_counter(&mut client, &peer, next, 1, &mut echoes);
            next += 1;
        }
        assert_eq!(echoes, ["interleaved"], "{kind}: the echo on /stream");
        client.close(None).ok();
    }
}

/// The server is gone: the open connection fails without a close frame and
/// new connections are refused.
fn assert_dead(peer: &Peer, client: &mut Client) {
    let kind = peer.kind();
    loop {
        match client.read() {
            Ok(Message::Close(frame)) => panic!("{kind}: a killed server sent a close frame {frame:?}"),
            // A message in flight before the kill is fine.
            Ok(_) => {}
            Err(Error::Io(error)) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("{kind}: the connection outlived the killed server")
            }
            Err(
                Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                | Error::Io(_)
                | Error::ConnectionClosed
                | Error::AlreadyClosed,
            ) => break,
            Err(other) => panic!("{kind}: unexpected error after the kill: {other}"),
        }
    }
    match TcpStream::connect_timeout(&peer.addr(), IO_TIMEOUT) {
        Err(error) => assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{kind}"),
        Ok(_) => panic!("{kind}: {} still accepts connections after the kill", peer.addr()),
    }
}

fn kill_and_restart_on_the_same_port(kind: PeerKind, options: PeerOptions) {
    let Some(mut peer) = Peer::start_or_skip(kind, options) else { return };
    let addr = peer.addr();
    let mut client = connect(&peer, "/echo");
    for round in 0..2 {
        send(&mut client, &peer, Message::text(format!("before kill {round}")));
        assert_eq!(read_data(&mut client, &peer), Message::text(format!("before kill {round}")), "{kind}");
        peer.kill();
        assert!(!peer.is_running(), "{kind}");
        assert_dead(&peer, &mut client);

        peer.restart().unwrap_or_else(|e| panic!("{kind}: restart failed: {e}"));
        assert_eq!(peer.addr(), addr, "{kind}: restarted on another address");
        assert!(peer.is_running(), "{kind}");
        client = connect(&peer, "/echo");
    }
    send(&mut client, &peer, Message::text("after restarts"));
    assert_eq!(read_data(&mut client, &peer), Message::text("after restarts"), "{kind}");
}

fn unknown_paths_are_refused_with_404(kind: PeerKind) {
    let Some(peer) = Peer::start_or_skip(kind, PeerOptions::plain()) else { return };
    match try_connect(&peer, "/no-such-path") {
        Err(error) => assert!(error.contains("404"), "{kind}: expected HTTP 404, got {error}"),
        Ok(_) => panic!("{kind}: an unknown path was accepted"),
    }
    // The server is unharmed.
    let mut client = connect(&peer, "/echo");
    send(&mut client, &peer, Message::text("still here"));
    assert_eq!(read_data(&mut client, &peer), Message::text("still here"), "{kind}");
}

fn stops_by_itself_after_its_lifetime(kind: PeerKind) {
    let options = PeerOptions { lifetime: Duration::from_millis(1500), ..PeerOptions::plain() };
    let Some(mut peer) = Peer::start_or_skip(kind, options) else { return };
    let deadline = Instant::now() + IO_TIMEOUT;
    while peer.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!peer.is_running(), "{kind}: still running long after its lifetime");
    let refused = TcpStream::connect_timeout(&peer.addr(), IO_TIMEOUT).map(drop);
    assert!(refused.is_err(), "{kind}: still accepting after its lifetime");
}

/// The same tests for every peer, as `python::…`, `node::…`, `tungstenite::…`.
macro_rules! peer_tests {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn echoes_text_and_binary_at_every_size() {
                echoes_at_every_size($kind, PeerOptions::plain());
            }

            #[test]
            fn echoes_text_and_binary_at_every_size_over_tls() {
                echoes_at_every_size($kind, PeerOptions::tls());
            }

            #[test]
            fn fragmented_messages_arrive_whole() {
                super::fragmented_messages_arrive_whole($kind);
            }

            #[test]
            fn ping_is_confirmed_after_the_pong() {
                super::ping_is_confirmed_after_the_pong($kind);
            }

            #[test]
            fn close_carries_code_and_reason() {
                super::close_carries_code_and_reason($kind);
            }

            #[test]
            fn stream_counts_from_zero_per_connection() {
                super::stream_counts_from_zero_per_connection($kind);
            }

            #[test]
            fn kill_drops_connections_and_restart_reuses_the_port() {
                kill_and_restart_on_the_same_port($kind, PeerOptions::plain());
            }

            #[test]
            fn restart_over_tls_keeps_the_certificate() {
                kill_and_restart_on_the_same_port($kind, PeerOptions::tls());
            }

            #[test]
            fn unknown_paths_are_refused_with_404() {
                super::unknown_paths_are_refused_with_404($kind);
            }

            #[test]
            fn stops_by_itself_after_its_lifetime() {
                super::stops_by_itself_after_its_lifetime($kind);
            }
        }
    )*};
}

peer_tests! {
    python => PeerKind::Python,
    node => PeerKind::Node,
    tungstenite => PeerKind::Tungstenite,
}
