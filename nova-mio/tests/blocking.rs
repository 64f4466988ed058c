//! The driver through the blocking helper, against the testkit's mock
//! server and fault proxy on loopback. Every wait is bounded; a test that
//! hangs fails instead.

use std::time::{Duration, Instant};

use nova_mio::blocking::{self, Client, ConnectError};
use nova_mio::{Connector, Event, Tls};
use nova_proto::{
    Backoff, CloseCode, Config, ConfigBuilder, Disconnect, Error, Message, SendError, Termination, Timeout,
    TransportDown,
};
use nova_testkit::{Behavior, FaultProxy, Faults, Handshake, MockServer, TestCa};

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A configuration that reconnects fast and does not ping unless asked.
fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

fn connect(config: ConfigBuilder) -> Client {
    blocking::connect(config).expect("connects")
}

/// The next event that is not a message or a pong.
fn next_change(client: &mut Client) -> Event {
    let until = Instant::now() + BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match client.recv_timeout(left).expect("a session event") {
            Event::Message(_) | Event::Pong { .. } => {}
            event => return event,
        }
    }
}

/// The next message, passing over pongs and the `Opened` that starts a session.
fn next_message(client: &mut Client) -> Message {
    let until = Instant::now() + BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match client.recv_timeout(left).expect("a message") {
            Event::Message(message) => return message,
            Event::Pong { .. } | Event::Opened(_) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

fn echo_server() -> MockServer {
    MockServer::start(Behavior::accept().echo()).unwrap()
}

#[test]
fn echoes_text_and_binary_of_every_size_including_16_mib() {
    let server = echo_server();
    let mut client = connect(config(&server.url("/echo")));
    for len in [0, 1, 125, 126, 65_535, 65_536, 16 << 20] {
        let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
        client.send(Message::text(text.clone())).unwrap();
        assert_eq!(next_message(&mut client).as_text(), Some(text.as_str()), "text of {len} bytes");
        let binary: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        client.send(Message::binary(binary.clone())).unwrap();
        assert_eq!(next_message(&mut client).as_binary(), Some(&binary[..]), "binary of {len} bytes");
    }
    let stats = client.connection().stats();
    assert_eq!((stats.messages_out, stats.messages_in), (14, 14));
    // Every frame the server got was masked, as RFC 6455 requires of a client.
    assert!(server.connections()[0].all_masked());
}

/// A server frame: FIN bit as given, no mask.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

#[test]
fn fragmented_messages_from_the_server_are_reassembled_around_a_ping() {
    let mut bytes = frame(false, 1, "frag".as_bytes());
    bytes.extend(frame(false, 0, "men".as_bytes()));
    bytes.extend(frame(true, 9, b"between"));
    bytes.extend(frame(true, 0, "ted ✓".as_bytes()));
    bytes.extend(frame(false, 2, &[1, 2]));
    bytes.extend(frame(true, 0, &[3]));
    let server = MockServer::start(Behavior::accept().send_raw_after(ms(20), bytes)).unwrap();
    let mut client = connect(config(&server.url("/")));
    assert_eq!(next_message(&mut client).as_text(), Some("fragmented ✓"));
    assert_eq!(next_message(&mut client).as_binary(), Some(&[1u8, 2, 3][..]));
    // The ping between the fragments was answered with its payload.
    assert!(server.wait_for(BOUND, |c| c[0].pongs.iter().any(|p| &p[..] == b"between")), "{:?}", server.connections());
}

#[test]
fn a_ping_comes_back_as_a_pong() {
    let server = echo_server();
    let mut client = connect(config(&server.url("/")));
    client.ping(&b"are you there"[..]).unwrap();
    let until = Instant::now() + BOUND;
    loop {
        match client.recv_timeout(until.saturating_duration_since(Instant::now())).unwrap() {
            Event::Pong { payload, .. } => break assert_eq!(&payload[..], b"are you there"),
            Event::Opened(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(client.ping(vec![0; 126]), Err(SendError::PingTooLong(126))));
}

#[test]
fn reconnects_after_a_drop_with_the_configured_backoff() {
    let server = MockServer::builder()
        .connection(Behavior::accept().drop_after(ms(50)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let mut client = connect(config(&server.url("/")));
    assert!(matches!(next_change(&mut client), Event::Opened(o) if o.attempt == 0));
    match next_change(&mut client) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(TransportDown::Eof)), reconnect: Some(r) } => {
            assert_eq!((r.attempt, r.delay), (1, ms(20)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next_change(&mut client), Event::Reconnecting { attempt: 1 });
    assert!(matches!(next_change(&mut client), Event::Opened(o) if o.attempt == 1));
    client.send("after the reconnect").unwrap();
    assert_eq!(next_message(&mut client).as_text(), Some("after the reconnect"));
    assert_eq!(server.connections().len(), 2);
}

#[test]
fn a_refused_upgrade_waits_for_retry_after() {
    let server = MockServer::builder()
        .connection(Behavior::accept().handshake(Handshake::refuse(503).retry_after(1)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let mut client = connect(config(&server.url("/")));
    match next_change(&mut client) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Handshake(e)), reconnect: Some(r) } => {
            assert!(e.to_string().contains("503"), "{e}");
            // The server's Retry-After, not the 20 ms backoff.
            assert_eq!(r.delay, Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next_change(&mut client), Event::Reconnecting { attempt: 1 });
    assert!(matches!(next_change(&mut client), Event::Opened(o) if o.attempt == 1));
    assert_eq!(server.connections().len(), 2);
}

#[test]
fn close_sends_the_code_and_reason_and_ends_cleanly() {
    let server = echo_server();
    let mut client = connect(config(&server.url("/")));
    let closed = client.close(1000, "bye").unwrap();
    assert_eq!((closed.code, closed.clean, closed.termination), (CloseCode::NORMAL, true, Termination::Requested));
    assert!(client.connection().is_finished());
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((1000, "bye".to_owned())))));
    assert!(matches!(client.send("late"), Err(SendError::Closed(m)) if m.as_text() == Some("late")));
    assert!(matches!(client.next_event(), Err(blocking::RecvError::Ended)));
}

#[test]
fn dropping_the_client_sends_a_close_frame() {
    let server = echo_server();
    let client = connect(config(&server.url("/")));
    drop(client);
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((1000, String::new())))), "{:?}", server.connections());
}

#[test]
fn a_close_from_the_server_is_answered_and_ends_cleanly() {
    let server = MockServer::start(Behavior::accept().close_after(ms(50), 4000, "bye")).unwrap();
    let mut client = connect(config(&server.url("/")).no_reconnect());
    assert!(matches!(next_change(&mut client), Event::Opened(_)));
    match next_change(&mut client) {
        Event::Disconnected { cause: Disconnect::ServerClosed { code, reason }, reconnect: None } => {
            assert_eq!((code.0, reason.as_str()), (4000, "bye"));
        }
        other => panic!("{other:?}"),
    }
    match next_change(&mut client) {
        Event::Closed(closed) => assert_eq!((closed.code.0, closed.reason.as_str(), closed.clean), (4000, "bye", true)),
        other => panic!("{other:?}"),
    }
    // The client answered with the same code (RFC 6455 §5.5.1).
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((4000, String::new())))), "{:?}", server.connections());
}

#[test]
fn send_errors_are_typed_and_give_the_message_back() {
    let server = MockServer::builder()
        .connection(Behavior::accept().drop_after(ms(100)))
        .otherwise(Behavior::accept().handshake(Handshake::silent()))
        .start()
        .unwrap();
    let mut client = connect(config(&server.url("/")).max_message_size(1024));
    match client.send(Message::binary(vec![0; 2048])) {
        Err(SendError::TooLarge { message, len: 2048, max: 1024 }) => assert_eq!(message.len(), 2048),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next_change(&mut client), Event::Opened(_)));
    assert!(matches!(next_change(&mut client), Event::Disconnected { .. }));
    match client.send("while down") {
        Err(SendError::NotOpen(message)) => assert_eq!(message.as_text(), Some("while down")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.close(999, ""), Err(blocking::CloseWaitError::Close(_))));
}

#[test]
fn a_refused_connection_with_no_retries_is_an_error_that_says_why() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    match blocking::connect(config(&format!("ws://{addr}/")).no_reconnect()) {
        Err(ConnectError::NeverOpened(never)) => {
            assert!(matches!(
                never.cause,
                Some(Disconnect::Failed(Error::Transport(TransportDown::ConnectFailed(
                    std::io::ErrorKind::ConnectionRefused
                ))))
            ));
            assert_eq!(never.closed.unwrap().termination, Termination::NotRetried);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(blocking::connect("http://example.com"), Err(ConnectError::Start(_))));
}

#[test]
fn wss_with_a_trusted_root_echoes() {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    let url = format!("wss://localhost:{}/secure", server.addr().port());
    let connector = Connector::new(config(&url)).tls(Tls::no_roots().with_root(ca.root_der()));
    let mut client = blocking::connect_with(connector).unwrap();
    for len in [0, 125, 64 << 10, 1 << 20] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        client.send(Message::binary(payload.clone())).unwrap();
        assert_eq!(next_message(&mut client).as_binary(), Some(&payload[..]), "{len} bytes");
    }
    let closed = client.close(1000, "").unwrap();
    assert!(closed.clean);
}

#[test]
fn an_untrusted_certificate_is_rejected_once_and_named() {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    let url = format!("wss://localhost:{}/", server.addr().port());
    // Mozilla's roots do not include a test CA.
    let error = blocking::connect(config(&url)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("certificate"), "{message}");
    match error {
        ConnectError::NeverOpened(never) => {
            match never.cause {
                Some(Disconnect::Failed(Error::Transport(TransportDown::Tls(failure)))) => {
                    assert!(failure.certificate, "{failure}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(never.closed.unwrap().termination, Termination::NotRetried);
        }
        other => panic!("{other:?}"),
    }
    // Not retried: one attempt, one connection (a retry would come 20 ms later).
    std::thread::sleep(ms(300));
    assert_eq!(server.connections().len(), 1);
}

#[test]
fn a_certificate_for_another_name_is_rejected() {
    let ca = TestCa::generate_for(&["wrong.example"]).unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept()).tls(ca.server_config()).start().unwrap();
    let url = format!("wss://localhost:{}/", server.addr().port());
    let connector = Connector::new(config(&url)).tls(Tls::no_roots().with_root(ca.root_der()));
    let error = blocking::connect_with(connector).unwrap_err().to_string();
    assert!(error.contains("certificate not valid for name \"localhost\""), "{error}");
}

#[test]
fn localhost_falls_back_to_the_family_that_listens() {
    // The mock server listens on 127.0.0.1 only; `localhost` may resolve to
    // ::1 first, which refuses.
    let server = echo_server();
    let mut client = connect(config(&format!("ws://localhost:{}/", server.addr().port())));
    client.send("v4").unwrap();
    assert_eq!(next_message(&mut client).as_text(), Some("v4"));
}

#[test]
fn given_addresses_are_used_without_any_lookup() {
    let server = echo_server();
    // `.invalid` never resolves: only the given address can be used.
    let url = format!("ws://nova-test.invalid:{}/", server.addr().port());
    let mut client = blocking::connect_with(Connector::new(config(&url)).addrs([server.addr()])).unwrap();
    client.send("no dns").unwrap();
    assert_eq!(next_message(&mut client).as_text(), Some("no dns"));
    // The URL's host still names the server.
    let request = server.connections()[0].request.clone().unwrap();
    assert!(format!("{request:?}").contains("nova-test.invalid"), "{request:?}");
}

#[test]
fn an_unresolvable_host_is_a_resolve_error() {
    match blocking::connect(config("ws://nova-test.invalid/").no_reconnect()) {
        Err(ConnectError::NeverOpened(never)) => {
            assert!(
                matches!(never.cause, Some(Disconnect::Failed(Error::Transport(TransportDown::Resolve(_))))),
                "{never:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv6_literals_connect() {
    let listener = match std::net::TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("\n!!!! SKIPPED ipv6_literals_connect: this machine has no IPv6 loopback ({e}) !!!!\n");
            return;
        }
    };
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(BOUND)).unwrap();
        let mut ws = tungstenite::accept(tcp).unwrap();
        let message = ws.read().unwrap();
        ws.send(message).unwrap();
        // The client's close; tungstenite answers it.
        let _ = ws.read();
        let _ = ws.flush();
    });
    let mut client = connect(config(&format!("ws://[::1]:{port}/")));
    client.send("over IPv6").unwrap();
    assert_eq!(next_message(&mut client).as_text(), Some("over IPv6"));
    assert!(client.close(1000, "").unwrap().clean);
    server.join().unwrap();
}

// ---- faults through the testkit proxy ----

fn proxied(server: &MockServer, faults: Faults) -> FaultProxy {
    FaultProxy::builder(server.addr()).faults(faults).lifetime(Duration::from_secs(60)).start().unwrap()
}

#[test]
fn a_stalled_path_is_caught_by_the_pong_timeout_and_replaced() {
    let server = echo_server();
    let proxy = proxied(&server, Faults::none());
    let mut client = connect(config(&format!("ws://{}/", proxy.addr())).ping(ms(100), ms(200)));
    assert!(matches!(next_change(&mut client), Event::Opened(_)));
    proxy.update(|f| f.stall = true);
    match next_change(&mut client) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Pong)), reconnect: Some(_) } => {}
        other => panic!("{other:?}"),
    }
    proxy.update(|f| f.stall = false);
    assert_eq!(next_change(&mut client), Event::Reconnecting { attempt: 1 });
    assert!(matches!(next_change(&mut client), Event::Opened(o) if o.attempt == 1));
    client.send("alive again").unwrap();
    assert_eq!(next_message(&mut client).as_text(), Some("alive again"));
}

#[test]
fn a_reset_is_reported_and_followed_by_a_reconnect() {
    let server = echo_server();
    let proxy = proxied(&server, Faults::none());
    let mut client = connect(config(&format!("ws://{}/", proxy.addr())));
    assert!(matches!(next_change(&mut client), Event::Opened(_)));
    assert_eq!(proxy.reset_all(), 1);
    match next_change(&mut client) {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(down)), reconnect: Some(_) } => {
            assert!(matches!(down, TransportDown::Reset(_) | TransportDown::Eof), "{down:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(next_change(&mut client), Event::Reconnecting { .. }));
    assert!(matches!(next_change(&mut client), Event::Opened(_)));
    client.send("after the reset").unwrap();
    assert_eq!(next_message(&mut client).as_text(), Some("after the reset"));
}

#[test]
fn latency_delays_but_keeps_order() {
    let server = echo_server();
    let proxy = proxied(&server, Faults::latency(ms(20)).with_jitter(ms(5)));
    let mut client = connect(config(&format!("ws://{}/", proxy.addr())));
    for n in 0..20 {
        client.send(Message::text(n.to_string())).unwrap();
    }
    for n in 0..20 {
        assert_eq!(next_message(&mut client).as_text(), Some(n.to_string().as_str()));
    }
}

#[test]
fn a_refused_or_silent_address_is_passed_over_for_one_that_listens() {
    let server = echo_server();
    // A port that was just free (refuses at once), and an address from
    // TEST-NET-1 that never answers (or is unreachable at once, offline):
    // the next address starts when one fails or after 250 ms.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let silent: std::net::SocketAddr = "192.0.2.1:9".parse().unwrap();
    for addrs in [[closed, server.addr()], [silent, server.addr()]] {
        let url = format!("ws://nova-test.invalid:{}/", server.addr().port());
        let mut client = blocking::connect_with(Connector::new(config(&url)).addrs(addrs)).unwrap();
        client.send("found").unwrap();
        assert_eq!(next_message(&mut client).as_text(), Some("found"), "{addrs:?}");
    }
}
