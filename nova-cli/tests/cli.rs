//! The `nova` binary end to end: real processes against loopback servers.
//!
//! Every wait is bounded, and every child is killed when its handle drops,
//! so a failing test fails (with the child's output) instead of hanging.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, ConnectionLog, Handshake, MockServer, TestCa};

mod support;

use support::{NOVA, Nova};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn texts(log: &ConnectionLog) -> Vec<String> {
    log.messages.iter().map(|m| m.as_text().unwrap_or("<binary>").to_owned()).collect()
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn connect_prints_messages_sends_stdin_lines_and_closes_with_1000_at_the_end_of_input() {
    let server = MockServer::start(Behavior::accept().send_on_open("hello from the server").echo()).unwrap();
    let mut nova = Nova::start(&["connect", &server.url("/chat")]);
    nova.wait_stdout("hello from the server\n", secs(10));
    nova.send_line("line one");
    nova.send_line("ünïcödé, \"quotes\" and\ttabs");
    nova.send_line("");
    nova.wait_stdout("ünïcödé, \"quotes\" and\ttabs\n\n", secs(10));
    nova.close_stdin();
    let status = nova.wait_exit(secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", nova.stderr_text());
    assert_eq!(nova.stdout_text(), "hello from the server\nline one\nünïcödé, \"quotes\" and\ttabs\n\n");
    assert!(server.wait_for(secs(5), |c| c.first().is_some_and(|c| c.close.is_some())));
    let conn = &server.connections()[0];
    assert_eq!(texts(conn), ["line one", "ünïcödé, \"quotes\" and\ttabs", ""]);
    assert!(matches!(&conn.close, Some(Some((1000, _)))), "{:?}", conn.close);
    let err = nova.stderr_text();
    assert!(err.contains("connected to ws://127.0.0.1:") && err.contains("end of input"), "{err}");
}

#[test]
fn a_pipe_into_nova_waits_for_the_connection_instead_of_losing_lines() {
    // Twice as many lines as the local queue holds, piped in before any
    // connection opens: nova must stop reading, not drop the oldest.
    const LINES: usize = 25_000;
    let server = MockServer::builder()
        .connection(Behavior::refuse(503))
        .connection(Behavior::refuse(503))
        .otherwise(Behavior::accept())
        .start()
        .unwrap();
    let mut nova = Nova::start(&["connect", &server.url("/"), "--profile", "financial"]);
    let mut stdin = nova.stdin.take().expect("stdin is open");
    let writer = std::thread::spawn(move || {
        for n in 1..=LINES {
            // Blocks while nova is not reading: that is the point.
            if writeln!(stdin, "{n}").is_err() {
                return;
            }
        }
    });
    let status = nova.wait_exit(secs(60));
    writer.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", nova.stderr_text());
    let received: Vec<String> = server.connections().iter().flat_map(texts).collect();
    let expected: Vec<String> = (1..=LINES).map(|n| n.to_string()).collect();
    assert!(received == expected, "{} lines arrived of {LINES}; stderr:\n{}", received.len(), nova.stderr_text());
    assert!(!nova.stderr_text().contains("dropped"), "{}", nova.stderr_text());
}

#[test]
fn send_messages_go_first_on_every_connection_and_lines_typed_while_down_follow_them() {
    let server = MockServer::builder()
        // Dropped once both --send messages arrived: no race with a timer.
        .connection(Behavior::accept().drop_after_received(2))
        .connection(Behavior::refuse(503).handshake(Handshake::refuse(503).retry_after(1)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let mut nova =
        Nova::start(&["connect", &server.url("/"), "--send", "sub-a", "--send", "sub-b", "--profile", "financial"]);
    // While the server refuses, the line waits for the next connection.
    nova.wait_stderr("503", secs(10));
    nova.send_line("typed while down");
    assert!(
        server.wait_for(secs(10), |c| c.len() >= 3 && c[2].messages.len() >= 3),
        "connections: {:#?}\nstderr:\n{}",
        server.connections(),
        nova.stderr_text()
    );
    let conns = server.connections();
    assert_eq!(texts(&conns[0])[..2], ["sub-a", "sub-b"]);
    assert_eq!(conns[1].status, Some(503));
    assert_eq!(texts(&conns[2]), ["sub-a", "sub-b", "typed while down"]);
    nova.wait_stdout("sub-a\nsub-b\ntyped while down\n", secs(5));
    let err = nova.stderr_text();
    assert!(err.contains("reconnecting in") && err.contains("Retry-After: 1.0s"), "{err}");
    nova.close_stdin();
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0));
}

#[test]
fn gives_up_after_max_reconnects_failed_attempts_and_says_why() {
    let url = format!("ws://127.0.0.1:{}/", dead_port());
    let mut nova = Nova::start(&["connect", &url, "--max-reconnects", "2", "--profile", "financial"]);
    let status = nova.wait_exit(secs(15));
    assert_eq!(status.code(), Some(1));
    let err = nova.stderr_text();
    assert!(err.contains("gave up after 2 failed reconnect attempts"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn a_connection_that_opens_resets_the_count_of_failed_attempts() {
    // Two refusals in a row, but never two after an open: with
    // --max-reconnects 2 the session must keep going.
    let server = MockServer::builder()
        .connection(Behavior::accept().drop_after_received(1))
        .connection(Behavior::refuse(503))
        .connection(Behavior::accept().drop_after_received(1))
        .connection(Behavior::refuse(503))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let mut nova = Nova::start(&[
        "connect",
        &server.url("/"),
        "--send",
        "hello",
        "--max-reconnects",
        "2",
        "--profile",
        "financial",
    ]);
    nova.wait_stdout("hello\n", secs(20));
    let conns = server.connections();
    assert_eq!(conns.len(), 5, "{conns:#?}");
    assert_eq!([conns[1].status, conns[3].status], [Some(503), Some(503)]);
    nova.close_stdin();
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0), "{}", nova.stderr_text());
    assert!(!nova.stderr_text().contains("gave up"), "{}", nova.stderr_text());
}

#[test]
fn max_reconnects_0_ends_the_session_at_the_first_disconnect() {
    let server = MockServer::start(Behavior::accept().drop_after_received(1)).unwrap();
    let mut nova = Nova::start(&["connect", &server.url("/"), "--send", "once", "--max-reconnects", "0"]);
    let status = nova.wait_exit(secs(15));
    let err = nova.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("not reconnecting (--max-reconnects 0)"), "{err}");
    assert_eq!(server.connections().len(), 1);
}

#[test]
fn headers_origin_and_subprotocols_go_into_the_upgrade_request() {
    let server =
        MockServer::start(Behavior::accept().handshake(Handshake::accept().subprotocol("v2.nova")).echo()).unwrap();
    let mut nova = Nova::start(&[
        "connect",
        &server.url("/ws?x=1"),
        "-H",
        "Authorization: Bearer abc:def",
        "--header",
        "Origin: https://app.example",
        "--subprotocol",
        "v1.nova",
        "--subprotocol",
        "v2.nova",
    ]);
    nova.wait_stderr("(subprotocol v2.nova)", secs(10));
    nova.close_stdin();
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0), "{}", nova.stderr_text());
    let conns = server.connections();
    let request = conns[0].request.as_ref().expect("the upgrade request was logged");
    assert_eq!(request.path, "/ws?x=1");
    assert_eq!(request.header("Authorization"), Some("Bearer abc:def"));
    assert_eq!(request.header("Origin"), Some("https://app.example"));
    assert_eq!(request.subprotocols(), ["v1.nova", "v2.nova"]);
}

#[test]
fn a_closed_stderr_does_not_turn_a_failure_into_a_panic() {
    let url = format!("ws://127.0.0.1:{}/", dead_port());
    let mut child = Command::new(NOVA)
        .args(["connect", &url, "--max-reconnects", "0", "--no-stdin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the nova binary starts");
    // Every line nova writes on stderr now fails with EPIPE.
    drop(child.stderr.take());
    let deadline = Instant::now() + secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nova did not exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // 101 would be a panic (`eprintln!` on a broken stderr).
    assert_eq!(status.code(), Some(1));
}

#[test]
fn json_is_pretty_printed_and_binary_messages_follow_the_binary_mode() {
    let server = MockServer::start(
        Behavior::accept()
            .send_on_open(r#"{"b":1.50,"a":[true,null],"c":{}}"#)
            .send_on_open("plain text, not JSON")
            .send_on_open(r#"{"broken": [1, 2}"#)
            .send_on_open(Message::binary(vec![0xde, 0xad, 0xbe, 0xef])),
    )
    .unwrap();
    let url = server.url("/");
    let json = Nova::start(&["connect", &url, "--json"]);
    let base64 = Nova::start(&["connect", &url, "--binary-mode", "base64"]);
    let raw = Nova::start(&["connect", &url, "--binary-mode", "raw"]);
    let pretty = "{\n  \"b\": 1.50,\n  \"a\": [\n    true,\n    null\n  ],\n  \"c\": {}\n}\n";
    json.wait_stdout("deadbeef\n", secs(10));
    // What is not valid JSON is printed unchanged.
    let broken = "{\"broken\": [1, 2}\n";
    assert_eq!(json.stdout_text(), format!("{pretty}plain text, not JSON\n{broken}deadbeef\n"));
    base64.wait_stdout("3q2+7w==\n", secs(10));
    assert_eq!(
        base64.stdout_text(),
        format!("{{\"b\":1.50,\"a\":[true,null],\"c\":{{}}}}\nplain text, not JSON\n{broken}3q2+7w==\n")
    );
    raw.wait_for_bytes("four raw bytes", secs(10), |out, _| out.ends_with(&[0xde, 0xad, 0xbe, 0xef]));
    assert!(raw.stdout().starts_with(b"{\"b\":1.50"));
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["connect", "http://example.com/"], "unsupported URL scheme \"http\""),
        (&["connect", "not a url"], "invalid URL"),
        (&["connect", "ws://h/", "--header", "NoColon"], "expected 'Name: value'"),
        (&["connect", "ws://h/", "-H", "Sec-WebSocket-Key: x"], "set by the handshake"),
        (&["connect", "ws://h/", "-H", "Sec-WebSocket-Protocol: chat"], "offer subprotocols with --subprotocol"),
        (&["connect", "ws://h/", "-H", "X-Injected: a\r\nEvil: 1"], "invalid --header"),
        (&["connect", "ws://h/", "--profile", "turbo"], "possible values: financial, standard, lightweight, messaging"),
        (&["connect", "ws://h/", "--ping-interval", "0"], "from 0.001 to 86400 seconds"),
        (&["connect", "ws://h/", "--ping-interval", "soon"], "not a number of seconds"),
        (&["connect", "ws://h/", "--max-reconnects", "many"], "invalid value 'many' for '--max-reconnects <N>'"),
        (&["connect", "ws://h/", "--binary-mode", "octal"], "possible values: hex, base64, raw"),
        (&["connect", "ws://h/", "--ca", "/nonexistent/ca.pem"], "--ca /nonexistent/ca.pem: cannot read it"),
        (&["demo", "--duration", "0"], "from 1 to 3600 seconds"),
        (&["echo-server", "--port", "70000"], "--port"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&[], "Usage"),
    ];
    for (args, expected) in cases {
        let mut nova = Nova::start(args);
        let status = nova.wait_exit(secs(10));
        let err = nova.stderr_text();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(nova.stdout_text(), "", "{args:?}");
    }
}

#[test]
fn help_lists_the_subcommands_options_and_exit_codes() {
    let mut nova = Nova::start(&["--help"]);
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0));
    let help = nova.stdout_text();
    for needle in ["connect", "demo", "echo-server", "Exit codes", "130"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    let mut nova = Nova::start(&["connect", "--help"]);
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0));
    let help = nova.stdout_text();
    for needle in [
        "--send",
        "--ping-interval",
        "--max-reconnects",
        "--profile",
        "--header",
        "--json",
        "--binary-mode",
        "--ca",
        "at least once",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

#[test]
fn a_silent_server_is_declared_dead_by_keepalive_and_the_client_reconnects() {
    let server = MockServer::builder()
        .connection(Behavior::accept().go_silent_after(Duration::from_millis(300)))
        .otherwise(Behavior::accept())
        .start()
        .unwrap();
    let mut nova = Nova::start(&["connect", &server.url("/"), "--ping-interval", "0.2", "--profile", "financial"]);
    nova.wait_stderr("connection dead", secs(10));
    nova.wait_stderr("(attempt 1)", secs(10));
    nova.wait_for("the reconnect to open", secs(10), |_, err| {
        err.lines().any(|l| l.contains("connected to") && l.contains("attempt 1"))
    });
    assert!(server.connections().len() >= 2);
    let err = nova.stderr_text();
    assert!(err.contains("pong timed out") && err.contains("reconnecting in"), "{err}");
    nova.close_stdin();
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0));
}

#[test]
fn a_certificate_from_an_unknown_ca_ends_the_session_unless_the_ca_is_given() {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder()
        .otherwise(Behavior::accept().send_on_open("secure hello"))
        .tls(ca.server_config())
        .start()
        .unwrap();
    let url = server.url("/");
    let mut untrusted = Nova::start(&["connect", &url]);
    let status = untrusted.wait_exit(secs(15));
    assert_eq!(status.code(), Some(1));
    let err = untrusted.stderr_text();
    assert!(err.contains("certificate") && err.contains("--ca"), "{err}");

    let pem = std::env::temp_dir().join(format!("nova-cli-test-ca-{}.pem", std::process::id()));
    std::fs::write(&pem, ca.root_pem()).unwrap();
    let mut trusted = Nova::start(&["connect", &url, "--ca", pem.to_str().unwrap()]);
    trusted.wait_stdout("secure hello\n", secs(10));
    trusted.close_stdin();
    assert_eq!(trusted.wait_exit(secs(10)).code(), Some(0));
    let _ = std::fs::remove_file(&pem);
}

#[cfg(unix)]
#[test]
fn ctrl_c_closes_the_session_with_1000_and_exits_130() {
    let server = MockServer::start(Behavior::accept()).unwrap();
    // With --no-stdin, an empty stdin does not end the session.
    let mut nova = Nova::start_with(&["connect", &server.url("/"), "--no-stdin", "--send", "hi"], Stdio::null());
    nova.wait_stderr("connected to", secs(10));
    assert!(server.wait_for(secs(5), |c| c.first().is_some_and(|c| !c.messages.is_empty())));
    std::thread::sleep(Duration::from_millis(300));
    assert!(nova.child.try_wait().unwrap().is_none(), "nova ended early:\n{}", nova.stderr_text());
    nova.signal("-INT");
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(130), "{}", nova.stderr_text());
    assert!(server.wait_for(secs(5), |c| c[0].close.is_some()));
    assert!(matches!(&server.connections()[0].close, Some(Some((1000, _)))));
    assert!(nova.stderr_text().contains("interrupted"));
}

#[test]
fn a_closed_stdout_ends_the_program_quietly_with_0() {
    let server = MockServer::start(
        Behavior::accept().push(Duration::from_millis(5), None, |n| Message::text(format!("tick {n}"))),
    )
    .unwrap();
    let (mut nova, stdout) = Nova::start_reading_stdout(&["connect", &server.url("/")], Stdio::piped());
    // Read the first line on a thread, so that a silent nova fails the test
    // instead of hanging it; the thread closes stdout when it is done.
    let (first_line, first) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = first_line.send(line);
    });
    let first = first.recv_timeout(secs(10)).unwrap_or_else(|_| panic!("no line within 10 s:\n{}", nova.stderr_text()));
    assert_eq!(first, "tick 0\n");
    let status = nova.wait_exit(secs(10));
    let err = nova.stderr_text();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("stdout closed"), "{err}");
}

#[test]
fn the_demo_runs_offline_and_every_tick_arrives_exactly_once() {
    let mut nova = Nova::start(&["demo", "--duration", "6"]);
    let status = nova.wait_exit(secs(30));
    let out = nova.stdout_text();
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{}", nova.stderr_text());
    for needle in [
        "gaps: none",
        "duplicates: none",
        "upgrade refused with 503",
        "refused handshakes: 1",
        "reconnecting in",
        "connection dead",
        "resubscribing: BTC-USD from seq",
        "ETH-USD: unsubscribed",
        "result: ok",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
}

#[test]
fn the_echo_server_echoes_text_and_binary_and_stops_on_ctrl_c() {
    let mut server = Nova::start(&["echo-server"]);
    server.wait_stdout("\n", secs(10));
    let first = server.stdout_text();
    let url = first.trim().strip_prefix("listening on ").expect("the first line names the URL").to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");

    // Timeouts from the start, the upgrade included: a hung server fails the test.
    let addr = url.strip_prefix("ws://").expect("a ws:// URL").parse().expect("an IP address and port");
    let tcp = std::net::TcpStream::connect_timeout(&addr, secs(10)).expect("connect to the echo server");
    tcp.set_read_timeout(Some(secs(10))).unwrap();
    tcp.set_write_timeout(Some(secs(10))).unwrap();
    let (mut ws, _) = tungstenite::client(url.as_str(), tcp).expect("upgrade with the echo server");
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    for message in [
        tungstenite::Message::text("hello, echo"),
        tungstenite::Message::binary(vec![0u8, 1, 2, 255]),
        tungstenite::Message::binary(big),
    ] {
        ws.send(message.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), message);
    }
    ws.close(None).unwrap();

    // And the client against it, end to end.
    let mut nova = Nova::start(&["connect", &url]);
    nova.send_line("round trip");
    nova.wait_stdout("round trip\n", secs(10));
    nova.close_stdin();
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0));

    #[cfg(unix)]
    {
        server.signal("-INT");
        assert_eq!(server.wait_exit(secs(10)).code(), Some(0), "{}", server.stderr_text());
    }
}
