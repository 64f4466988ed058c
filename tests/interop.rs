//! nova-tokio against real servers nobody here wrote: Python `websockets`,
//! Node `ws` and `tokio-tungstenite`, on loopback, plain and TLS.
//!
//! Each behaviour is one function run against each peer by the
//! `interop_matrix!` macro below, so a failure names the peer, the transport
//! and the behaviour. A peer that cannot run here (no python3/node/npm, no
//! registry) is skipped with a banner, unless `NOVA_INTEROP_REQUIRED=1`
//! (CI sets it).

use std::future::Future;
use std::time::Duration;

use nova_interop::{FRAGMENTED_BINARY, FRAGMENTED_TEXT, PONG_CONFIRMATION, Peer, PeerDeflate, PeerKind, PeerOptions};
use nova_tokio::nova_proto::{
    Backoff, Config, ConfigBuilder, DeflateConfig, DeflateParams, Disconnect, Error, Message, Termination,
};
use nova_tokio::{Connector, Event, Events, Tls};

/// The longest any one wait may take: generous for a loaded 2-core machine
/// moving 16 MiB through a debug build and a Python server.
const BOUND: Duration = Duration::from_secs(60);

const SIZES: [usize; 4] = [0, 125, 64 << 10, 16 << 20];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A connector for `path` on `peer`: large messages allowed, fast reconnects,
/// no keepalive (the servers send no pings), the peer's CA trusted for TLS.
fn connector(peer: &Peer, path: &str, tune: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Connector {
    let config = Config::builder(peer.url(path))
        .max_message_size(32 << 20)
        .max_frame_size(32 << 20)
        .backoff(Backoff::constant(Duration::from_millis(100), 0.0))
        .keepalive(None);
    let connector = Connector::new(tune(config));
    match peer.ca() {
        Some(ca) => connector.tls(Tls::no_roots().with_root(ca.root_der())),
        None => connector,
    }
}

/// The next message, passing over the events that start a session.
async fn next_message(events: &mut Events) -> Message {
    bounded("a message", async {
        loop {
            match events.recv().await.expect("the session ended early") {
                Event::Message(message) => return message,
                Event::Opened(_) | Event::Pong { .. } => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    })
    .await
}

/// The next event that is not a message.
async fn next_change(events: &mut Events) -> Event {
    bounded("a session event", async {
        loop {
            match events.recv().await.expect("the session ended early") {
                Event::Message(_) | Event::Pong { .. } => {}
                event => return event,
            }
        }
    })
    .await
}

// ---- the behaviours ----

async fn echo_at_every_size(peer: &Peer) {
    let (handle, mut events) = connector(peer, "/echo", |c| c).connect().await.unwrap();
    for len in SIZES {
        let text: String = "nova✓".chars().cycle().take(len).collect();
        handle.send(Message::text(text.clone())).await.unwrap();
        let echoed = next_message(&mut events).await;
        assert_eq!(echoed.as_text(), Some(text.as_str()), "{} text of {} chars", peer.kind(), len);
        let binary: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
        handle.send(Message::binary(binary.clone())).await.unwrap();
        let echoed = next_message(&mut events).await;
        assert!(echoed.as_binary() == Some(&binary[..]), "{} binary of {len} bytes", peer.kind());
    }
    handle.close(1000, "").unwrap();
    let closed = bounded("closed", handle.closed()).await.unwrap();
    assert!(closed.clean, "{} {closed:?}", peer.kind());
}

async fn fragmented_messages_arrive_whole(peer: &Peer) {
    let (handle, mut events) = connector(peer, "/fragmented", |c| c).connect().await.unwrap();
    assert_eq!(next_message(&mut events).await.as_text(), Some(FRAGMENTED_TEXT));
    assert_eq!(next_message(&mut events).await.as_binary(), Some(FRAGMENTED_BINARY));
    handle.close(1000, "").unwrap();
}

async fn server_pings_are_answered(peer: &Peer) {
    let (_handle, mut events) = connector(peer, "/ping", |c| c).connect().await.unwrap();
    // The server says so once our pong with its payload arrived.
    assert_eq!(next_message(&mut events).await.as_text(), Some(PONG_CONFIRMATION));
}

async fn client_pings_get_pongs(peer: &Peer) {
    let (handle, mut events) = connector(peer, "/echo", |c| c).connect().await.unwrap();
    handle.ping(&b"from nova"[..]).unwrap();
    bounded("the pong", async {
        loop {
            match events.recv().await.unwrap() {
                Event::Pong { payload, .. } => return assert_eq!(&payload[..], b"from nova"),
                Event::Opened(_) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
}

async fn a_close_from_the_server_is_answered(peer: &Peer) {
    let connector = connector(peer, "/close?code=4001&reason=see+you", |c| c.no_reconnect());
    let (handle, mut events) = connector.connect().await.unwrap();
    assert!(matches!(next_change(&mut events).await, Event::Opened(_)));
    handle.send("close please").await.unwrap();
    match next_change(&mut events).await {
        Event::Disconnected { cause: Disconnect::ServerClosed { code, reason }, reconnect: None } => {
            assert_eq!((code.0, reason.as_str()), (4001, "see you"), "{}", peer.kind());
        }
        other => panic!("{}: {other:?}", peer.kind()),
    }
    match next_change(&mut events).await {
        Event::Closed(closed) => {
            assert_eq!((closed.code.0, closed.clean, closed.termination), (4001, true, Termination::NotRetried));
        }
        other => panic!("{}: {other:?}", peer.kind()),
    }
}

async fn a_killed_server_is_reconnected_once_it_is_back(peer: &mut Peer) {
    // However long the peer takes to come back (a Python or Node start on a
    // loaded machine can take seconds), the session keeps trying; the wait
    // is bounded by the test, not by the profile's attempt limit.
    let (handle, mut events) =
        connector(peer, "/stream?interval_ms=5", |c| c.max_attempts(None)).connect().await.unwrap();
    // The stream counts from 0 on each connection.
    for n in 0..20 {
        assert_eq!(next_message(&mut events).await.as_text(), Some(n.to_string().as_str()));
    }
    peer.kill();
    // Ticks already in flight may still arrive; then the connection ends
    // without a close frame.
    bounded("the disconnect", async {
        loop {
            match events.recv().await.unwrap() {
                Event::Message(_) => {}
                Event::Disconnected { cause: Disconnect::Failed(Error::Transport(_)), reconnect: Some(_) } => return,
                other => panic!("{}: {other:?}", peer.kind()),
            }
        }
    })
    .await;
    // While it is down, attempts fail and the session keeps trying.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restart = tokio::task::block_in_place(|| peer.restart());
    restart.unwrap_or_else(|e| panic!("{} did not restart: {e}", peer.kind()));
    bounded("the reconnect", async {
        loop {
            match events.recv().await.unwrap() {
                Event::Opened(opened) => return assert!(opened.attempt >= 1),
                Event::Disconnected { reconnect: Some(_), .. } | Event::Reconnecting { .. } => {}
                other => panic!("{}: {other:?}", peer.kind()),
            }
        }
    })
    .await;
    assert_eq!(next_message(&mut events).await.as_text(), Some("0"), "a new connection, a new count");
    handle.send("still here").await.unwrap();
    bounded("the echo", async {
        loop {
            // The echo arrives between ticks.
            if next_message(&mut events).await.as_text() == Some("still here") {
                return;
            }
        }
    })
    .await;
    assert!(handle.stats().reconnects >= 1);
}

// ---- permessage-deflate ----

/// Message sizes for the compressed echo.
const DEFLATE_SIZES: [usize; 4] = [0, 125, 64 << 10, 1 << 20];

/// JSON market data of exactly `len` bytes: order-book updates whose
/// numbers vary (a small LCG), compressible the way real feeds are.
fn market_json(len: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = String::with_capacity(len + 200);
    while out.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let (price, size, seq) = (60_000 + (x >> 40) % 5000, (x >> 20) % 10_000, x >> 48);
        out.push_str(&format!(
            r#"{{"channel":"book.BTC-PERP.raw","seq":{seq},"bids":[[{price}.5,{}.{size}]],"asks":[[{}.0,0.{size}]]}}"#,
            size % 7,
            price + 1
        ));
    }
    out.truncate(len);
    out
}

/// Echoes compressible JSON at every size with deflate offered as `ours`;
/// checks the parameters `Opened` reports against `expected` (`None`: the
/// server declined) and, when agreed, that the bytes on the wire in both
/// directions are far fewer than the payloads (so frames really were
/// compressed, not only negotiated).
async fn deflate_echo(peer: &Peer, ours: DeflateConfig, expected: Option<DeflateParams>) {
    let (handle, mut events) = connector(peer, "/echo", |c| c.deflate(Some(ours))).connect().await.unwrap();
    let opened = match bounded("opened", events.recv()).await.expect("the session ended early") {
        Event::Opened(opened) => opened,
        other => panic!("{}: expected Opened, got {other:?}", peer.kind()),
    };
    assert_eq!(opened.deflate, expected, "{}: negotiated {:?}", peer.kind(), opened.headers);
    let before = handle.stats();
    let mut payload = 0;
    for (i, len) in DEFLATE_SIZES.into_iter().enumerate() {
        for repeat in 0..2 {
            let text = market_json(len, (i * 2 + repeat) as u64);
            handle.send(Message::text(text.clone())).await.unwrap();
            let echoed = next_message(&mut events).await;
            assert!(echoed.as_text() == Some(text.as_str()), "{} text of {len} bytes", peer.kind());
            payload += len as u64;
        }
    }
    let binary = market_json(64 << 10, 99).into_bytes();
    handle.send(Message::binary(binary.clone())).await.unwrap();
    assert!(next_message(&mut events).await.as_binary() == Some(&binary[..]), "{} binary", peer.kind());
    payload += binary.len() as u64;
    let after = handle.stats();
    let (sent, received) = (after.bytes_out - before.bytes_out, after.bytes_in - before.bytes_in);
    eprintln!(
        "{}: {ours:?} → {expected:?}: {payload} B of payload each way, {sent} B sent, {received} B received",
        peer.kind()
    );
    if expected.is_some() {
        // JSON like this deflates to well under a third, with or without takeover.
        assert!(sent * 3 < payload, "{}: {sent} bytes sent for {payload} of payload", peer.kind());
        assert!(received * 3 < payload, "{}: {received} bytes received for {payload} of payload", peer.kind());
    } else {
        assert!(sent > payload && received > payload, "{}: uncompressed, yet {sent}/{received}", peer.kind());
    }
    handle.close(1000, "").unwrap();
    let closed = bounded("closed", handle.closed()).await.unwrap();
    assert!(closed.clean, "{} {closed:?}", peer.kind());
}

/// What a peer started with `peer` answers to our default offer.
fn agreed(peer: PeerDeflate) -> DeflateParams {
    let mut p = DeflateParams::default();
    p.server_no_context_takeover = peer.server_no_context_takeover;
    p.client_no_context_takeover = peer.client_no_context_takeover;
    p.server_max_window_bits = peer.server_max_window_bits.unwrap_or(15);
    p
}

// ---- the matrix ----

/// Starts `kind` (or skips, loudly) and runs `test` against it.
fn with_peer<F, Fut>(kind: PeerKind, options: PeerOptions, test: F)
where
    F: FnOnce(Peer) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(peer) = Peer::start_or_skip(kind, options) else { return };
    runtime().block_on(test(peer));
}

macro_rules! interop_matrix {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn echo_at_every_size() {
                with_peer($kind, PeerOptions::plain(), |peer| async move { super::echo_at_every_size(&peer).await });
            }

            #[test]
            fn echo_at_every_size_over_tls() {
                with_peer($kind, PeerOptions::tls(), |peer| async move { super::echo_at_every_size(&peer).await });
            }

            #[test]
            fn fragmented_messages_arrive_whole() {
                with_peer($kind, PeerOptions::plain(), |peer| async move {
                    super::fragmented_messages_arrive_whole(&peer).await
                });
            }

            #[test]
            fn fragmented_messages_arrive_whole_over_tls() {
                with_peer($kind, PeerOptions::tls(), |peer| async move {
                    super::fragmented_messages_arrive_whole(&peer).await
                });
            }

            #[test]
            fn server_pings_are_answered() {
                with_peer($kind, PeerOptions::plain(), |peer| async move { super::server_pings_are_answered(&peer).await });
            }

            #[test]
            fn client_pings_get_pongs() {
                with_peer($kind, PeerOptions::plain(), |peer| async move { super::client_pings_get_pongs(&peer).await });
            }

            #[test]
            fn a_close_from_the_server_is_answered() {
                with_peer($kind, PeerOptions::plain(), |peer| async move {
                    super::a_close_from_the_server_is_answered(&peer).await
                });
            }

            #[test]
            fn a_close_from_the_server_is_answered_over_tls() {
                with_peer($kind, PeerOptions::tls(), |peer| async move {
                    super::a_close_from_the_server_is_answered(&peer).await
                });
            }

            #[test]
            fn a_killed_server_is_reconnected_once_it_is_back() {
                with_peer($kind, PeerOptions::plain(), |mut peer| async move {
                    super::a_killed_server_is_reconnected_once_it_is_back(&mut peer).await
                });
            }

            #[test]
            fn a_killed_server_is_reconnected_once_it_is_back_over_tls() {
                with_peer($kind, PeerOptions::tls(), |mut peer| async move {
                    super::a_killed_server_is_reconnected_once_it_is_back(&mut peer).await
                });
            }
        }
    )*};
}

/// A deflate peer of `kind` with `peer` settings, echoing with our default offer.
fn deflate_case(kind: PeerKind, options: PeerOptions, peer: PeerDeflate) {
    with_peer(kind, options.with_deflate(peer), |p| async move {
        deflate_echo(&p, DeflateConfig::default(), Some(agreed(peer))).await
    });
}

macro_rules! deflate_matrix {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn deflate_echo() {
                deflate_case($kind, PeerOptions::plain(), PeerDeflate::default());
            }

            #[test]
            fn deflate_echo_over_tls() {
                deflate_case($kind, PeerOptions::tls(), PeerDeflate::default());
            }

            #[test]
            fn deflate_server_no_context_takeover() {
                let peer = PeerDeflate { server_no_context_takeover: true, ..PeerDeflate::default() };
                deflate_case($kind, PeerOptions::plain(), peer);
            }

            #[test]
            fn deflate_client_no_context_takeover() {
                let peer = PeerDeflate { client_no_context_takeover: true, ..PeerDeflate::default() };
                deflate_case($kind, PeerOptions::plain(), peer);
            }

            #[test]
            fn deflate_both_no_context_takeover_asked_by_us() {
                let ours = DeflateConfig {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    ..DeflateConfig::default()
                };
                let mut expected = DeflateParams::default();
                expected.server_no_context_takeover = true;
                expected.client_no_context_takeover = true;
                with_peer($kind, PeerOptions::plain().with_deflate(PeerDeflate::default()), |p| async move {
                    super::deflate_echo(&p, ours, Some(expected)).await
                });
            }

            #[test]
            fn deflate_server_window_9() {
                let peer = PeerDeflate { server_max_window_bits: Some(9), ..PeerDeflate::default() };
                deflate_case($kind, PeerOptions::plain(), peer);
            }

            #[test]
            fn deflate_server_window_15() {
                let peer = PeerDeflate { server_max_window_bits: Some(15), ..PeerDeflate::default() };
                deflate_case($kind, PeerOptions::plain(), peer);
            }

            /// Every window we can ask for, 9 to 15, against one peer.
            #[test]
            fn deflate_server_window_asked_by_us_9_to_15() {
                with_peer($kind, PeerOptions::plain().with_deflate(PeerDeflate::default()), |p| async move {
                    for bits in 9..=15 {
                        let ours = DeflateConfig { server_max_window_bits: Some(bits), ..DeflateConfig::default() };
                        let mut expected = DeflateParams::default();
                        expected.server_max_window_bits = bits;
                        super::deflate_echo(&p, ours, Some(expected)).await;
                    }
                });
            }
        }
    )*};
}

deflate_matrix! {
    python_websockets_deflate => PeerKind::Python,
    node_ws_deflate => PeerKind::Node,
}

/// tokio-tungstenite has no permessage-deflate: it declines the offer, and
/// everything flows uncompressed.
#[test]
fn tokio_tungstenite_declines_deflate() {
    with_peer(PeerKind::Tungstenite, PeerOptions::plain(), |p| async move {
        deflate_echo(&p, DeflateConfig::default(), None).await
    });
}

/// A peer with deflate off declines too, and the session works as without it.
#[test]
fn python_websockets_without_deflate_declines() {
    with_peer(PeerKind::Python, PeerOptions::plain(), |p| async move {
        deflate_echo(&p, DeflateConfig::default(), None).await
    });
}

interop_matrix! {
    python_websockets => PeerKind::Python,
    node_ws => PeerKind::Node,
    tokio_tungstenite => PeerKind::Tungstenite,
}
