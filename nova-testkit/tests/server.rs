//! The mock server tests itself with a third-party client (tungstenite, blocking,
//! loopback, every call bounded by a timeout).

use std::io::{Read, Write};
use std::net::TcpStream;

use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, Handshake, MockServer, Scenario, ServeOptions, TestCa};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;

type Ws = WebSocket<TcpStream>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn connect(url: &str) -> Result<Ws, tungstenite::Error> {
    connect_with(url.into_client_request().unwrap())
}

fn connect_with(request: tungstenite::handshake::client::Request) -> Result<Ws, tungstenite::Error> {
    let host = request.uri().host().unwrap().to_owned();
    let port = request.uri().port_u16().unwrap();
    let tcp = TcpStream::connect((host.as_str(), port)).map_err(tungstenite::Error::Io)?;
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    tungstenite::client::client(request, tcp).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
    })
}

fn read_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a message within the timeout") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Binary(_) => panic!("binary"),
            _ => {}
        }
    }
}

#[test]
fn echo_and_records_every_frame_with_masking_checked() {
    let server = MockServer::start(Behavior::accept().echo()).unwrap();
    let mut ws = connect(&server.url("/echo?x=1")).unwrap();
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(read_text(&mut ws), "hello");
    ws.send(tungstenite::Message::binary(vec![1, 2, 3])).unwrap();
    assert!(matches!(ws.read().unwrap(), tungstenite::Message::Binary(b) if b[..] == [1, 2, 3]));
    assert!(server.wait_for(Duration::from_secs(2), |c| c[0].messages.len() == 2));
    let conns = server.connections();
    assert_eq!(conns[0].request.as_ref().unwrap().path, "/echo?x=1");
    assert_eq!(conns[0].status, Some(101));
    assert_eq!(conns[0].messages, [Message::text("hello"), Message::binary(vec![1, 2, 3])]);
    assert!(conns[0].all_masked());
    assert_eq!(server.received().len(), 2);
}

#[test]
fn refusals_carry_status_and_headers() {
    let server =
        MockServer::start(Behavior::refuse(503).handshake(Handshake::refuse(503).retry_after(7).body("busy"))).unwrap();
    let err = connect(&server.url("/")).unwrap_err();
    let tungstenite::Error::Http(response) = err else { panic!("{err:?}") };
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.body().as_deref(), Some(&b"busy"[..]));
}

#[test]
fn a_wrong_accept_key_is_caught_by_the_client() {
    let server = MockServer::start(Behavior::accept().handshake(Handshake::wrong_accept_key())).unwrap();
    let err = connect(&server.url("/")).unwrap_err();
    assert!(
        matches!(err, tungstenite::Error::Protocol(tungstenite::error::ProtocolError::SecWebSocketAcceptKeyMismatch)),
        "{err:?}"
    );
}

#[test]
fn a_slow_handshake_takes_its_time() {
    let server = MockServer::start(Behavior::accept().handshake(Handshake::accept().delay(ms(300)))).unwrap();
    let started = Instant::now();
    connect(&server.url("/")).unwrap();
    assert!(started.elapsed() >= ms(300));
}

#[test]
fn required_subprotocols_and_headers_are_enforced() {
    let server = MockServer::builder()
        .otherwise(
            Behavior::accept()
                .handshake(Handshake::accept().require_subprotocol("v2.json").require_header("X-Token", "secret")),
        )
        .start()
        .unwrap();
    let err = connect(&server.url("/")).unwrap_err();
    assert!(matches!(&err, tungstenite::Error::Http(r) if r.status() == 401), "{err:?}");
    let mut request = server.url("/").into_client_request().unwrap();
    request.headers_mut().insert("X-Token", "secret".parse().unwrap());
    let err = connect_with(request.clone()).unwrap_err();
    assert!(matches!(&err, tungstenite::Error::Http(r) if r.status() == 400), "{err:?}");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v1.json, v2.json".parse().unwrap());
    connect_with(request).unwrap();
    let statuses: Vec<_> = server.connections().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [Some(401), Some(400), Some(101)]);
}

#[test]
fn replies_come_from_the_closure() {
    let server =
        MockServer::start(Behavior::accept().reply(|m| {
            vec![Message::text(format!("re: {}", m.as_text().unwrap_or("?"))), Message::text("and another")]
        }))
        .unwrap();
    let mut ws = connect(&server.url("/")).unwrap();
    ws.send(tungstenite::Message::text("question")).unwrap();
    assert_eq!(read_text(&mut ws), "re: question");
    assert_eq!(read_text(&mut ws), "and another");
}

#[test]
fn pushes_at_a_rate_then_drops_after_n_messages() {
    let server = MockServer::start(
        Behavior::accept().push(ms(20), None, |n| Message::text(format!("tick {n}"))).drop_after_messages(5),
    )
    .unwrap();
    let started = Instant::now();
    let mut ws = connect(&server.url("/")).unwrap();
    let ticks: Vec<String> = (0..5).map(|_| read_text(&mut ws)).collect();
    assert_eq!(ticks, ["tick 0", "tick 1", "tick 2", "tick 3", "tick 4"]);
    assert!(started.elapsed() >= ms(100), "five ticks 20 ms apart");
    // Then the TCP connection ends without a close frame.
    let end = ws.read().unwrap_err();
    assert!(
        matches!(
            end,
            tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)
                | tungstenite::Error::Io(_)
        ),
        "{end:?}"
    );
}

#[test]
fn a_client_that_does_not_read_holds_back_the_pushes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    const SIZE: usize = 64 << 10;
    let generated = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&generated);
    let server = MockServer::start(Behavior::accept().push(Duration::from_micros(100), None, move |n| {
        counter.fetch_add(1, Ordering::SeqCst);
        Message::binary(vec![n as u8; SIZE])
    }))
    .unwrap();
    let mut ws = connect(&server.url("/")).unwrap();
    // 5,000 ticks' worth of time without reading: 300+ MiB if nothing held the pushes back.
    std::thread::sleep(ms(500));
    let pushed = generated.load(Ordering::SeqCst) as usize * SIZE;
    // The server's 8 MiB backlog plus what the loopback socket buffers hold.
    assert!(pushed < 64 << 20, "{} MiB pushed to a client that reads nothing", pushed >> 20);
    // Nothing was lost: reading resumes where it stopped, in order.
    for n in 0..200u32 {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => assert_eq!((b.len(), b[0]), (SIZE, n as u8)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_handler_keeps_state_per_connection_and_ticks() {
    use nova_testkit::Handler;

    /// Counts up every tick once the client said "start"; answers "ok <n>".
    #[derive(Default)]
    struct Counter {
        started: bool,
        n: u64,
    }
    impl Handler for Counter {
        fn on_open(&mut self, _now: Instant, out: &mut Vec<Message>) {
            out.push(Message::text("hello"));
        }
        fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
            self.started |= message.as_text() == Some("start");
            out.push(Message::text(format!("ok {}", self.n)));
        }
        fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
            if self.started {
                self.n += 1;
                out.push(Message::text(self.n.to_string()));
            }
        }
    }

    let server = MockServer::start(Behavior::accept().handler(Some(ms(10)), || Box::new(Counter::default()))).unwrap();
    for _ in 0..2 {
        // Each connection has its own counter, from zero.
        let mut ws = connect(&server.url("/")).unwrap();
        assert_eq!(read_text(&mut ws), "hello");
        ws.send(tungstenite::Message::text("start")).unwrap();
        assert_eq!(read_text(&mut ws), "ok 0");
        let ticks: Vec<String> = (0..3).map(|_| read_text(&mut ws)).collect();
        assert_eq!(ticks, ["1", "2", "3"]);
        ws.close(None).unwrap();
    }
}

#[test]
fn server_pings_are_recorded_with_their_pongs() {
    let server = MockServer::start(Behavior::accept().ping_every(ms(20))).unwrap();
    let mut ws = connect(&server.url("/")).unwrap();
    ws.get_mut().set_read_timeout(Some(ms(30))).unwrap();
    let until = Instant::now() + ms(200);
    while Instant::now() < until {
        // Reading answers pings (tungstenite queues the pong and flushes it).
        let _ = ws.read();
        let _ = ws.flush();
    }
    assert!(server.wait_for(Duration::from_secs(1), |c| c[0].pongs.len() >= 3));
    let log = &server.connections()[0];
    assert!(log.pings_sent.len() >= 3);
    assert!(log.unanswered_pings() <= 1, "{log:?}");
}

#[test]
fn ignoring_pings_and_going_silent_look_like_a_dead_peer() {
    let server = MockServer::builder()
        .connection(Behavior::accept().echo().ignore_pings())
        .connection(Behavior::accept().push(ms(10), None, |_| Message::text("tick")).go_silent_after(ms(100)))
        .start()
        .unwrap();
    let mut ws = connect(&server.url("/")).unwrap();
    ws.send(tungstenite::Message::Ping(b"anyone?"[..].into())).unwrap();
    ws.send(tungstenite::Message::text("echo me")).unwrap();
    assert_eq!(read_text(&mut ws), "echo me", "messages still echo, but no pong came first");

    let mut ws = connect(&server.url("/")).unwrap();
    ws.get_mut().set_read_timeout(Some(ms(300))).unwrap();
    let mut ticks = 0;
    while let Ok(m) = ws.read() {
        if m.is_text() {
            ticks += 1;
        }
    }
    assert!((5..=12).contains(&ticks), "ticks stop after 100 ms: {ticks}");
    let log = &server.connections()[1];
    assert_eq!(log.ended, None, "silent, not closed");
}

#[test]
fn close_and_reset_after_a_delay() {
    let server = MockServer::builder()
        .connection(Behavior::accept().close_after(ms(50), 4001, "maintenance"))
        .connection(Behavior::accept().reset_after(ms(50)))
        .start()
        .unwrap();
    let mut ws = connect(&server.url("/")).unwrap();
    let frame = loop {
        match ws.read().unwrap() {
            tungstenite::Message::Close(frame) => break frame,
            _ => continue,
        }
    };
    let frame = frame.unwrap();
    assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4001, "maintenance"));
    let _ = ws.flush(); // the echo
    assert!(server.wait_for(Duration::from_secs(1), |c| c[0].close.is_some()));

    let mut ws = connect(&server.url("/")).unwrap();
    let err = ws.read().unwrap_err();
    assert!(matches!(&err, tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset), "{err:?}");
}

#[test]
fn raw_malformed_bytes_reach_the_client() {
    let server = MockServer::start(Behavior::accept().send_raw_after(ms(10), vec![0x83, 0x00])).unwrap();
    let mut ws = connect(&server.url("/")).unwrap();
    let err = ws.read().unwrap_err();
    assert!(matches!(err, tungstenite::Error::Protocol(_)), "{err:?}");
}

#[test]
fn an_unmasked_client_frame_is_recorded_as_a_violation_and_closed_with_1002() {
    let server = MockServer::start(Behavior::accept().echo()).unwrap();
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut head = vec![0u8; 129];
    tcp.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 101"));
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).unwrap(); // text "hi", unmasked
    let mut close = [0u8; 4];
    tcp.read_exact(&mut close).unwrap();
    // A close frame: 16 bytes of payload, code 1002 first.
    assert_eq!(close, [0x88, 16, 0x03, 0xEA]);
    assert!(server.wait_for(Duration::from_secs(1), |c| !c[0].violations.is_empty()));
    let log = &server.connections()[0];
    assert!(!log.all_masked());
    assert!(log.violations[0].contains("unmasked"));
}

#[test]
fn tls_with_the_exported_root() {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    assert!(server.url("/").starts_with("wss://localhost:"));
    let tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    let stream = rustls::StreamOwned::new(tls, tcp);
    let (mut ws, _) = tungstenite::client::client(server.url("/secure"), stream).map_err(|e| format!("{e:?}")).unwrap();
    ws.send(tungstenite::Message::text("over tls")).unwrap();
    loop {
        if let tungstenite::Message::Text(t) = ws.read().unwrap() {
            assert_eq!(t.as_str(), "over tls");
            break;
        }
    }
    // Larger than rustls' 64 KiB plaintext buffers, both ways.
    let large = vec![0x5Au8; 1 << 20];
    ws.send(tungstenite::Message::binary(large.clone())).unwrap();
    loop {
        if let tungstenite::Message::Binary(b) = ws.read().unwrap() {
            assert!(b[..] == large[..], "{} bytes came back", b.len());
            break;
        }
    }
    assert_eq!(server.connections()[0].request.as_ref().unwrap().path, "/secure");
}

#[test]
fn a_scenario_served_over_tcp_checks_a_real_client() {
    let scenario = Scenario::new()
        .accept()
        .expect_text("subscribe")
        .send_text("update 1")
        .drop_connection()
        .expect_reconnect_within(Duration::from_secs(2))
        .expect_text("subscribe")
        .send_text("update 2")
        .close(1000, "done");
    let served = scenario.serve().unwrap();
    let url = served.url("/");
    let client = std::thread::spawn(move || {
        let mut ws = connect(&url).unwrap();
        ws.send(tungstenite::Message::text("subscribe")).unwrap();
        assert_eq!(read_text(&mut ws), "update 1");
        assert!(ws.read().is_err(), "dropped");
        let mut ws = connect(&url).unwrap();
        ws.send(tungstenite::Message::text("subscribe")).unwrap();
        assert_eq!(read_text(&mut ws), "update 2");
        while !matches!(ws.read(), Ok(tungstenite::Message::Close(_)) | Err(_)) {}
        let _ = ws.flush();
    });
    let report = served.finish(Duration::from_secs(5)).unwrap();
    client.join().unwrap();
    assert_eq!(report.connections.len(), 2);
}

#[test]
fn a_failed_scenario_over_tcp_reports_the_step() {
    let served = Scenario::new().accept().expect_text("subscribe").timeout(ms(200)).serve().unwrap();
    let url = served.url("/");
    let _ws = connect(&url).unwrap(); // connects, never subscribes
    let err = served.finish(Duration::from_secs(3)).unwrap_err();
    assert_eq!(err.step, 2);
    assert!(err.problem.contains("no message"), "{err}");
}

#[test]
fn scenario_faults_go_through_a_proxy() {
    let scenario =
        Scenario::new().faults(nova_testkit::Faults::latency(ms(100))).accept().expect_text("ping").send_text("pong");
    let served = scenario.serve_with(ServeOptions::default()).unwrap();
    let url = served.url("/");
    let started = Instant::now();
    let mut ws = connect(&url).unwrap();
    ws.send(tungstenite::Message::text("ping")).unwrap();
    assert_eq!(read_text(&mut ws), "pong");
    // Upgrade and one exchange: two round trips of 200 ms.
    assert!(started.elapsed() >= ms(400), "{:?}", started.elapsed());
    served.finish(Duration::from_secs(3)).unwrap();
}

#[test]
fn the_server_stops_by_itself_after_its_lifetime() {
    let server = MockServer::builder().lifetime(ms(200)).start().unwrap();
    let addr = server.addr();
    std::thread::sleep(ms(400));
    // The listener is gone: connecting fails or the connection is never served.
    let served = TcpStream::connect_timeout(&addr, ms(200)).and_then(|mut s| {
        s.set_read_timeout(Some(ms(300)))?;
        s.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
        let mut b = [0u8; 1];
        s.read(&mut b)
    });
    assert!(!matches!(served, Ok(1)), "{served:?}");
    drop(server);
}

#[test]
fn connections_beyond_the_maximum_are_refused() {
    let server = MockServer::builder().max_connections(1).start().unwrap();
    let _first = connect(&server.url("/")).unwrap();
    assert!(connect(&server.url("/")).is_err());
}
