//! The behaviours every driver must show, written once.
//!
//! Each scenario is a function generic over [`Driver`]; `main.rs`
//! instantiates all of them for every driver with [`driver_suite!`]. A
//! driver joins the suite by implementing [`Driver`] and [`Session`] as a
//! blocking facade: the suite then runs the same steps and expects the same
//! events from each. What a driver does differently (how it spawns, how the
//! caller reads) stays in the adapter; what it shows the application must
//! not differ.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nova_proto::{
    Backoff, CloseCode, CloseError, Closed, Config, ConfigBuilder, Disconnect, Error, Message, Opened, SendError,
    Termination, Timeout, TransportDown,
};
use nova_testkit::{Behavior, Direction, FaultProxy, Faults, Handshake, MockServer, TestCa};
use rustls::pki_types::CertificateDer;

/// How long any single wait may take before the scenario fails: generous,
/// because CI machines are shared and slow, and a hang must fail rather
/// than stall the run.
pub(crate) const BOUND: Duration = Duration::from_secs(15);

/// A message or a change of the session: every driver hands out
/// nova-driver's `Event`, so the suite expects exactly the same type from
/// each (the adapters' signatures check it).
pub(crate) use nova_driver::Event;

/// Why [`Session::next`] returned without an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// Nothing arrived within the time given.
    TimedOut,
    /// The session ended and every event was read.
    Ended,
}

/// Which certificates a `wss://` session trusts.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// The driver's default (Mozilla's roots).
    Default,
    /// Only this root.
    Only(CertificateDer<'static>),
}

/// A driver, seen through a blocking facade.
pub(crate) trait Driver: 'static {
    /// What the driver shares between sessions (a runtime, or nothing).
    type Runtime;
    /// One session.
    type Session: Session;
    /// A fresh runtime for one scenario.
    fn runtime() -> Self::Runtime;
    /// Starts a session and returns at once; the events tell the story.
    fn start(runtime: &Self::Runtime, config: Config, trust: Trust) -> Self::Session;
}

/// One session of a driver, seen through a blocking facade.
pub(crate) trait Session: Send {
    /// Sends a message, waiting while the driver's send buffer is full.
    fn send(&self, message: Message) -> Result<(), SendError>;
    /// Sends a ping.
    fn ping(&self, payload: Bytes) -> Result<(), SendError>;
    /// Starts the close handshake.
    fn close(&self, code: u16, reason: &str) -> Result<(), CloseError>;
    /// The next event, waiting at most `within`.
    fn next(&mut self, within: Duration) -> Result<Event, Quiet>;
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A configuration that reconnects after a constant 20 ms and does not ping
/// unless the scenario asks.
pub(crate) fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

pub(crate) fn build(config: ConfigBuilder) -> Config {
    config.build().expect("a valid configuration")
}

fn next<S: Session>(session: &mut S, what: &str) -> Event {
    match session.next(BOUND) {
        Ok(observed) => observed,
        Err(quiet) => panic!("waiting for {what}: {quiet:?}"),
    }
}

/// The next event that is not a message or a pong.
pub(crate) fn next_change<S: Session>(session: &mut S) -> Event {
    loop {
        match next(session, "a session event") {
            Event::Message(_) | Event::Pong { .. } => {}
            observed => return observed,
        }
    }
}

/// The next message, passing over pongs and the `Opened` that starts a session.
pub(crate) fn next_message<S: Session>(session: &mut S) -> Message {
    loop {
        match next(session, "a message") {
            Event::Message(message) => return message,
            Event::Pong { .. } | Event::Opened(_) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Reads up to `Closed`, then checks that nothing follows it.
pub(crate) fn until_closed<S: Session>(session: &mut S) -> Closed {
    loop {
        if let Event::Closed(closed) = next(session, "the end of the session") {
            assert_eq!(session.next(BOUND), Err(Quiet::Ended), "nothing follows Closed");
            return closed;
        }
    }
}

pub(crate) fn expect_opened<S: Session>(session: &mut S, attempt: u32) -> Opened {
    match next_change(session) {
        Event::Opened(opened) if opened.attempt == attempt => opened,
        other => panic!("expected Opened (attempt {attempt}), got {other:?}"),
    }
}

pub(crate) fn echo_server() -> MockServer {
    MockServer::start(Behavior::accept().echo()).expect("a mock server on loopback")
}

// ---- the scenarios ----

/// The upgrade carries the headers and subprotocols asked for, and the
/// server's choice is reported.
pub(crate) fn handshake<D: Driver>() {
    let server = MockServer::start(
        Behavior::accept()
            .handshake(Handshake::accept().require_subprotocol("v2.json").require_header("Authorization", "Bearer t0k"))
            .echo(),
    )
    .unwrap();
    let runtime = D::runtime();
    let config = config(&server.url("/feed?x=1"))
        .subprotocol("v1.json")
        .subprotocol("v2.json")
        .header("Authorization", "Bearer t0k");
    let mut session = D::start(&runtime, build(config), Trust::Default);
    let opened = expect_opened(&mut session, 0);
    assert_eq!(opened.subprotocol.as_deref(), Some("v2.json"));
    session.send(Message::text("hello")).unwrap();
    assert_eq!(next_message(&mut session).as_text(), Some("hello"));
    let request = server.connections()[0].request.clone().expect("the request was logged");
    assert_eq!(request.path, "/feed?x=1");
}

/// Text and binary round trips at the sizes where framing changes, up to
/// 16 MiB, every client frame masked.
pub(crate) fn echo_sizes<D: Driver>() {
    let server = echo_server();
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&server.url("/echo"))), Trust::Default);
    expect_opened(&mut session, 0);
    for len in [0, 1, 125, 126, 65_535, 65_536, 16 << 20] {
        let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
        session.send(Message::text(text.clone())).unwrap();
        assert_eq!(next_message(&mut session).as_text(), Some(text.as_str()), "text of {len} bytes");
        let binary: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        session.send(Message::binary(binary.clone())).unwrap();
        assert_eq!(next_message(&mut session).as_binary(), Some(&binary[..]), "binary of {len} bytes");
    }
    assert!(server.connections()[0].all_masked(), "every client frame is masked (RFC 6455 §5.3)");
}

/// A message the server sends in fragments, with a ping between them, is
/// delivered whole, and the ping is answered.
pub(crate) fn fragmented_messages<D: Driver>() {
    let mut frames = Vec::new();
    frames.extend_from_slice(&[0x01, 3]); // text, not final
    frames.extend_from_slice(b"Hel");
    frames.extend_from_slice(&[0x89, 2]); // ping, final
    frames.extend_from_slice(b"p1");
    frames.extend_from_slice(&[0x00, 1]); // continuation
    frames.extend_from_slice(b"l");
    frames.extend_from_slice(&[0x80, 1]); // continuation, final
    frames.extend_from_slice(b"o");
    frames.extend_from_slice(&[0x02, 2, 0xde, 0xad, 0x80, 2, 0xbe, 0xef]); // binary in two
    let server = MockServer::start(Behavior::accept().send_raw_after(ms(10), frames)).unwrap();
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&server.url("/"))), Trust::Default);
    assert_eq!(next_message(&mut session).as_text(), Some("Hello"));
    assert_eq!(next_message(&mut session).as_binary(), Some(&[0xde, 0xad, 0xbe, 0xef][..]));
    assert!(server.wait_for(BOUND, |c| c[0].pongs == [Bytes::from_static(b"p1")]), "{:?}", server.connections());
}

/// A ping from the application comes back as a pong event; the server's
/// pings are answered by the core without the application.
pub(crate) fn ping_pong<D: Driver>() {
    let server = MockServer::start(Behavior::accept().echo().ping_every(ms(50))).unwrap();
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&server.url("/"))), Trust::Default);
    expect_opened(&mut session, 0);
    session.ping(Bytes::from_static(b"are you there")).unwrap();
    loop {
        match next(&mut session, "the pong") {
            Event::Pong { payload, .. } => {
                assert_eq!(payload, Bytes::from_static(b"are you there"));
                break;
            }
            Event::Message(_) => {}
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    assert!(server.wait_for(BOUND, |c| c[0].pongs.len() >= 3), "the server's pings were not answered");
    assert_eq!(server.connections()[0].unanswered_pings(), 0);
}

/// A path that goes silent is declared dead by the pong timeout, and the
/// session reconnects once the path is back.
pub(crate) fn pong_timeout_reconnects<D: Driver>() {
    let server = echo_server();
    let proxy = proxied(&server, Faults::none());
    let runtime = D::runtime();
    let config = config(&format!("ws://{}/", proxy.addr())).ping(ms(100), ms(200));
    let mut session = D::start(&runtime, build(config), Trust::Default);
    expect_opened(&mut session, 0);
    proxy.update(|faults| faults.stall = true);
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Pong)), reconnect: Some(_) } => {}
        other => panic!("expected a pong timeout, got {other:?}"),
    }
    proxy.update(|faults| faults.stall = false);
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 1 });
    expect_opened(&mut session, 1);
    session.send(Message::text("alive again")).unwrap();
    assert_eq!(next_message(&mut session).as_text(), Some("alive again"));
}

fn proxied(server: &MockServer, faults: Faults) -> FaultProxy {
    FaultProxy::builder(server.addr()).faults(faults).lifetime(Duration::from_secs(60)).start().unwrap()
}

/// Latency with jitter delays messages but keeps their order.
pub(crate) fn latency_keeps_order<D: Driver>() {
    let server = echo_server();
    let proxy = proxied(&server, Faults::latency(ms(50)).with_jitter(ms(10)));
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&format!("ws://{}/", proxy.addr()))), Trust::Default);
    expect_opened(&mut session, 0);
    for n in 0..20 {
        session.send(Message::text(n.to_string())).unwrap();
    }
    for n in 0..20 {
        assert_eq!(next_message(&mut session).as_text(), Some(n.to_string().as_str()));
    }
}

/// The server's side ends (FIN) without a close frame while the client's
/// side stays writable: the client must not wait on it, and reconnects.
pub(crate) fn half_closed_connection_is_replaced<D: Driver>() {
    let server = MockServer::builder()
        .connection(Behavior::accept().drop_after(ms(50)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let proxy = proxied(&server, Faults::latency(ms(20)));
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&format!("ws://{}/", proxy.addr()))), Trust::Default);
    expect_opened(&mut session, 0);
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(TransportDown::Eof)), reconnect: Some(_) } => {
        }
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 1 });
    expect_opened(&mut session, 1);
    session.send(Message::text("whole again")).unwrap();
    assert_eq!(next_message(&mut session).as_text(), Some("whole again"));
}

/// The server's last message and the end of its stream (FIN) come in one
/// segment: the message is delivered, then the end is seen. A driver that
/// stops reading after a short read (the socket was drained) must still
/// notice an end that came with the data.
pub(crate) fn last_message_and_end_in_one_segment<D: Driver>() {
    use std::io::Write;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        nova_testkit::raw::accept_upgrade(&mut tcp).unwrap();
        // Let the client settle into waiting, then both at once.
        std::thread::sleep(ms(100));
        let _ = tcp.set_nodelay(true);
        tcp.write_all(&nova_testkit::raw::server_frame(0x1, b"last words")).unwrap();
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        // Keep the socket (its read side) until the client saw the end.
        std::thread::sleep(ms(500));
    });
    let runtime = D::runtime();
    let config = config(&format!("ws://{addr}/")).backoff(Backoff::constant(Duration::from_secs(60), 0.0));
    let mut session = D::start(&runtime, build(config), Trust::Default);
    expect_opened(&mut session, 0);
    assert_eq!(next_message(&mut session).as_text(), Some("last words"));
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(TransportDown::Eof)), .. } => {}
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    server.join().unwrap();
}

/// Large frames that arrive in pieces, some pieces holding the end of one
/// frame and the start of the next, the last one with the end of the stream:
/// every message is delivered whole and in order (the drivers read the rest
/// of a large frame straight into its buffer), then the end is seen.
pub(crate) fn large_frames_in_pieces<D: Driver>() {
    use std::io::Write;

    let text = "ü".repeat(40_000);
    let binary: Vec<u8> = (0..150_000).map(|i| (i % 253) as u8).collect();
    let stream = [
        nova_testkit::raw::server_frame(0x2, &binary),
        nova_testkit::raw::server_frame(0x1, text.as_bytes()),
        nova_testkit::raw::server_frame(0x1, b"small"),
        nova_testkit::raw::server_frame(0x2, &binary[..70_000]),
    ]
    .concat();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        nova_testkit::raw::accept_upgrade(&mut tcp).unwrap();
        let _ = tcp.set_nodelay(true);
        std::thread::sleep(ms(50));
        // Pieces of uneven sizes, so reads end inside headers and payloads.
        let mut at = 0;
        for (i, size) in [3usize, 9_000, 50_001, 7, 120_000, 33_333].iter().cycle().enumerate() {
            let end = (at + size).min(stream.len());
            tcp.write_all(&stream[at..end]).unwrap();
            at = end;
            if at == stream.len() {
                break;
            }
            if i % 2 == 0 {
                std::thread::sleep(ms(5));
            }
        }
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(ms(500));
    });
    let runtime = D::runtime();
    let config = config(&format!("ws://{addr}/")).backoff(Backoff::constant(Duration::from_secs(60), 0.0));
    let mut session = D::start(&runtime, build(config), Trust::Default);
    expect_opened(&mut session, 0);
    assert_eq!(next_message(&mut session).as_binary(), Some(&binary[..]));
    assert_eq!(next_message(&mut session).as_text(), Some(text.as_str()));
    assert_eq!(next_message(&mut session).as_text(), Some("small"));
    assert_eq!(next_message(&mut session).as_binary(), Some(&binary[..70_000]));
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(TransportDown::Eof)), .. } => {}
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    server.join().unwrap();
}

/// A path cut toward the server only: the client's pings go nowhere,
/// nothing comes back, and the connection is declared dead.
pub(crate) fn one_way_cut_is_dead<D: Driver>() {
    let server = echo_server();
    let proxy = proxied(&server, Faults::none());
    let runtime = D::runtime();
    let config = config(&format!("ws://{}/", proxy.addr())).ping(ms(100), ms(200));
    let mut session = D::start(&runtime, build(config), Trust::Default);
    expect_opened(&mut session, 0);
    proxy.update(|faults| faults.cut = Some(Direction::ToServer));
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Pong)), reconnect: Some(_) } => {}
        other => panic!("expected a pong timeout, got {other:?}"),
    }
    proxy.update(|faults| faults.cut = None);
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 1 });
    expect_opened(&mut session, 1);
}

/// A dropped connection is reported with its cause and the backoff delay;
/// the delay keeps growing across connections that do not stay up long
/// enough to count as stable (flapping), and the last connection carries
/// traffic again.
pub(crate) fn server_drop_reconnects_with_backoff<D: Driver>() {
    let server = MockServer::builder()
        .connection(Behavior::accept().drop_after(ms(50)))
        .connection(Behavior::refuse(502))
        .connection(Behavior::accept().reset_after(ms(50)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let runtime = D::runtime();
    let config = config(&server.url("/")).backoff(Backoff::exponential(ms(20), ms(1000), 0.0));
    let mut session = D::start(&runtime, build(config), Trust::Default);
    expect_opened(&mut session, 0);
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(TransportDown::Eof)), reconnect: Some(r) } => {
            assert_eq!((r.attempt, r.delay), (1, ms(20)));
        }
        other => panic!("expected the drop, got {other:?}"),
    }
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 1 });
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Handshake(e)), reconnect: Some(r) } => {
            assert!(e.to_string().contains("502"), "{e}");
            assert_eq!((r.attempt, r.delay), (2, ms(40)), "the second failure in a row waits twice as long");
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 2 });
    expect_opened(&mut session, 2);
    // Up for 50 ms: not stable, so the backoff goes on growing.
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(down)), reconnect: Some(r) } => {
            assert!(matches!(down, TransportDown::Reset(_) | TransportDown::Eof), "{down:?}");
            assert_eq!((r.attempt, r.delay), (3, ms(80)));
        }
        other => panic!("expected the reset, got {other:?}"),
    }
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 3 });
    expect_opened(&mut session, 3);
    session.send(Message::text("after two drops")).unwrap();
    assert_eq!(next_message(&mut session).as_text(), Some("after two drops"));
    assert_eq!(server.connections().len(), 4);
}

/// A refused upgrade names the status, and the next attempt waits for the
/// server's `Retry-After`.
pub(crate) fn refused_handshake<D: Driver>() {
    let server = MockServer::builder()
        .connection(Behavior::accept().handshake(Handshake::refuse(503).retry_after(1)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let runtime = D::runtime();
    let started = Instant::now();
    let mut session = D::start(&runtime, build(config(&server.url("/"))), Trust::Default);
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Handshake(e)), reconnect: Some(r) } => {
            assert!(e.to_string().contains("503"), "{e}");
            assert_eq!(r.delay, Duration::from_secs(1));
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(next_change(&mut session), Event::Reconnecting { attempt: 1 });
    expect_opened(&mut session, 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "opened after {:?}", started.elapsed());
}

/// `wss://` with a private root: the session opens and echoes.
pub(crate) fn tls_with_a_custom_root<D: Driver>() {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    let runtime = D::runtime();
    let url = format!("wss://localhost:{}/secure", server.addr().port());
    let mut session = D::start(&runtime, build(config(&url)), Trust::Only(ca.root_der()));
    expect_opened(&mut session, 0);
    for len in [0, 125, 64 << 10, 1 << 20] {
        let payload = vec![0xA5u8; len];
        session.send(Message::binary(payload.clone())).unwrap();
        assert_eq!(next_message(&mut session).as_binary(), Some(&payload[..]), "{len} bytes over TLS");
    }
    session.close(1000, "").unwrap();
    assert!(until_closed(&mut session).clean);
}

/// A certificate nobody trusts ends the session at once with an error that
/// says so; it is not retried.
pub(crate) fn bad_certificate<D: Driver>() {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    let runtime = D::runtime();
    let url = format!("wss://localhost:{}/", server.addr().port());
    // Mozilla's roots do not include a test CA.
    let mut session = D::start(&runtime, build(config(&url)), Trust::Default);
    match next_change(&mut session) {
        Event::Disconnected {
            cause: Disconnect::Failed(Error::Transport(TransportDown::Tls(failure))),
            reconnect: None,
        } => {
            assert!(failure.certificate, "{failure}");
            assert!(failure.to_string().contains("certificate"), "{failure}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let closed = until_closed(&mut session);
    assert_eq!(closed.termination, Termination::NotRetried);
    assert_eq!(server.connections().len(), 1, "a rejected certificate was retried");
}

/// `close` sends the code and reason, waits for the server's answer, and
/// ends the session cleanly; sending afterwards is a typed error.
pub(crate) fn graceful_close<D: Driver>() {
    let server = echo_server();
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&server.url("/"))), Trust::Default);
    expect_opened(&mut session, 0);
    session.close(4001, "bye").unwrap();
    let closed = until_closed(&mut session);
    assert!(closed.clean, "{closed:?}");
    assert_eq!(closed.termination, Termination::Requested);
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((4001, "bye".to_owned())))));
    match session.send(Message::text("late")) {
        Err(SendError::Closed(message)) => assert_eq!(message.as_text(), Some("late")),
        other => panic!("expected SendError::Closed, got {other:?}"),
    }
    assert!(matches!(session.close(999, ""), Err(CloseError::InvalidCode(999)) | Ok(())));
}

/// A server-initiated close is answered with the same code and ends the
/// session when reconnects are off.
pub(crate) fn server_close<D: Driver>() {
    let server = MockServer::start(Behavior::accept().close_after(ms(50), 4000, "bye")).unwrap();
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&server.url("/")).no_reconnect()), Trust::Default);
    expect_opened(&mut session, 0);
    match next_change(&mut session) {
        Event::Disconnected { cause: Disconnect::ServerClosed { code, reason }, reconnect: None } => {
            assert_eq!((code.0, reason.as_str()), (4000, "bye"));
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
    let closed = until_closed(&mut session);
    assert_eq!((closed.code, closed.clean), (CloseCode(4000), true));
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((4000, String::new())))), "{:?}", server.connections());
}

/// An application that stops reading holds the server back through TCP:
/// the driver stops reading the socket instead of buffering without limit,
/// and nothing is lost once the application reads again.
pub(crate) fn backpressure<D: Driver>() {
    const SIZE: usize = 64 << 10;
    let generated = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&generated);
    let server = MockServer::start(Behavior::accept().push(Duration::from_micros(100), None, move |n| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut payload = vec![0; SIZE];
        payload[..8].copy_from_slice(&n.to_be_bytes());
        Message::binary(payload)
    }))
    .unwrap();
    let runtime = D::runtime();
    let mut session = D::start(&runtime, build(config(&server.url("/"))), Trust::Default);
    // Over 300 MiB of pushes' worth of time, not reading.
    std::thread::sleep(ms(500));
    let pushed = generated.load(Ordering::SeqCst) as usize * SIZE;
    // The driver's default bounds, the socket buffers and the mock server's
    // own 8 MiB backlog: far below what the server would push unchecked.
    assert!(pushed < 96 << 20, "{} MiB pushed to a client that reads nothing", pushed >> 20);
    for n in 0..300u64 {
        let message = next_message(&mut session);
        let payload = message.as_binary().expect("binary");
        assert_eq!((payload.len(), u64::from_be_bytes(payload[..8].try_into().unwrap())), (SIZE, n));
    }
}

/// 64 sessions at once against one server, each with its own traffic.
pub(crate) fn concurrent_sessions<D: Driver>() {
    const SESSIONS: usize = 64;
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).max_connections(256).start().unwrap();
    let runtime = D::runtime();
    let mut sessions: Vec<D::Session> =
        (0..SESSIONS).map(|_| D::start(&runtime, build(config(&server.url("/"))), Trust::Default)).collect();
    for (n, session) in sessions.iter_mut().enumerate() {
        expect_opened(session, 0);
        for m in 0..10 {
            session.send(Message::text(format!("{n}:{m}"))).unwrap();
        }
    }
    for (n, session) in sessions.iter_mut().enumerate() {
        for m in 0..10 {
            assert_eq!(next_message(session).as_text(), Some(format!("{n}:{m}").as_str()));
        }
        session.close(1000, "").unwrap();
    }
    for session in &mut sessions {
        assert!(until_closed(session).clean);
    }
    assert_eq!(server.connections().len(), SESSIONS);
}
