//! The driver through the blocking helper, against the testkit's mock
//! server and fault proxy on loopback. Every wait is bounded; a test that
//! hangs fails instead.
//!
//! What every driver must do (echo at every size, fragments, pings, the pong
//! timeout, reconnects and their backoff, Retry-After, TLS with a private
//! root or an untrusted certificate, both ways of closing, backpressure,
//! many sessions) is tested once for all drivers, nova-mio included, by the
//! driver suite (`tests/drivers` in the workspace). Here: the blocking
//! helper's own contract, and what only this driver does itself (name
//! resolution, the address attempts, TLS through rustls' sans-IO API).

use std::time::{Duration, Instant};

use nova_mio::blocking::{self, Client, ConnectError};
use nova_mio::{Connector, Event, Tls};
use nova_proto::{
    Backoff, CloseCode, Config, ConfigBuilder, Disconnect, Error, Message, SendError, Termination, TransportDown,
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
fn close_waits_for_the_end_and_the_last_socket() {
    let server = echo_server();
    let mut client = connect(config(&server.url("/")));
    let closed = client.close(1000, "bye").unwrap();
    assert_eq!((closed.code, closed.clean, closed.termination), (CloseCode::NORMAL, true, Termination::Requested));
    // `close` returned the end, and drove the last socket until it was shut.
    assert!(client.connection().is_finished());
    assert!(matches!(client.next_event(), Err(blocking::RecvError::Ended)));
    assert!(matches!(client.recv_timeout(ms(10)), Err(blocking::RecvError::Ended)));
}

#[test]
fn dropping_the_client_sends_a_close_frame() {
    let server = echo_server();
    let client = connect(config(&server.url("/")));
    drop(client);
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((1000, String::new())))), "{:?}", server.connections());
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
    assert!(matches!(client.ping(vec![0; 126]), Err(SendError::PingTooLong(126))));
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
