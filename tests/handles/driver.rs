//! The `Handle`/`Events`/`MessageSink` contract of nova-driver, against the
//! testkit's mock server on loopback, under every async runtime (see
//! `support::on_every_runtime`): connecting, sending and its errors,
//! closing, dropping handles, the sink, connect errors, name resolution.
//! Behaviours every driver shares (echo sizes, reconnects, backpressure,
//! TLS, faults) are in the driver suite (`tests/drivers`). Every wait is
//! bounded; a test that hangs fails instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{BOUND, Rt, bounded, listener, ms, sleep, timeout, upgrade};
use futures_util::{SinkExt, StreamExt};
use nova_driver::{ConnectError, Event, Events, MessageSink, Tls};
use nova_proto::{
    Backoff, CloseCode, Config, ConfigBuilder, Disconnect, Error, Message, SendError, State, Termination, TransportDown,
};
use nova_testkit::{Behavior, Handshake, MockServer, TestCa};

/// A configuration that reconnects fast and does not ping unless asked.
fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

/// The next event that is not a message or a pong.
async fn next_change(events: &mut Events) -> Event {
    bounded("a session event", async {
        loop {
            match events.recv().await.expect("the stream ended early") {
                Event::Message(_) | Event::Pong { .. } => {}
                event => return event,
            }
        }
    })
    .await
}

/// The next message, passing over pongs and the `Opened` that starts a session.
async fn next_message(events: &mut Events) -> Message {
    bounded("a message", async {
        loop {
            match events.recv().await.expect("the stream ended early") {
                Event::Message(message) => return message,
                Event::Pong { .. } | Event::Opened(_) => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    })
    .await
}

async fn until_closed(events: &mut Events) -> nova_proto::Closed {
    bounded("the end of the session", async {
        loop {
            if let Event::Closed(closed) = events.recv().await.expect("the stream ended without Closed") {
                assert!(events.recv().await.is_none(), "nothing follows Closed");
                return closed;
            }
        }
    })
    .await
}

fn echo_server() -> MockServer {
    MockServer::start(Behavior::accept().echo()).unwrap()
}

on_every_runtime!(
    a_refused_upgrade_waits_for_retry_after,
    dropping_every_handle_closes_gracefully_with_1000,
    close_sends_the_code_and_reason_and_closed_reports_the_end,
    send_errors_are_typed_and_give_the_message_back,
    send_waits_for_a_socket_that_does_not_drain,
    the_sink_sends_flushes_and_closes,
    dropping_the_events_keeps_the_session_going,
    a_refused_connection_with_no_retries_is_an_error_that_says_why,
    an_untrusted_certificate_is_rejected_once_and_named,
    a_certificate_for_another_name_is_rejected,
    localhost_falls_back_to_the_family_that_listens,
    ipv6_literals_connect,
    start_returns_at_once_and_the_events_tell_the_story,
    a_scenario_of_pings_drops_and_resubscription_passes,
);

async fn a_refused_upgrade_waits_for_retry_after(rt: Rt) {
    let server = MockServer::builder()
        .connection(Behavior::accept().handshake(Handshake::refuse(503).retry_after(1)))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let (_handle, mut events) = rt.connector(config(&server.url("/"))).connect().await.unwrap();
    match next_change(&mut events).await {
        Event::Disconnected { cause: Disconnect::Failed(Error::Handshake(e)), reconnect: Some(r) } => {
            assert!(e.to_string().contains("503"), "{e}");
            // The server's Retry-After, not the configured 20 ms.
            assert_eq!(r.delay, Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next_change(&mut events).await, Event::Reconnecting { attempt: 1 });
    assert!(matches!(next_change(&mut events).await, Event::Opened(o) if o.attempt == 1));
}

async fn dropping_every_handle_closes_gracefully_with_1000(rt: Rt) {
    let server = echo_server();
    let (handle, mut events) = rt.connector(config(&server.url("/"))).connect().await.unwrap();
    let sink = handle.sink();
    drop(handle);
    // The sink is a handle too: the session is still up.
    assert!(!server.wait_for(ms(200), |c| c[0].close.is_some()));
    drop(sink);
    let closed = until_closed(&mut events).await;
    assert_eq!((closed.code, closed.clean, closed.termination), (CloseCode::NORMAL, true, Termination::Requested));
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((1000, String::new())))));
}

async fn close_sends_the_code_and_reason_and_closed_reports_the_end(rt: Rt) {
    let server = echo_server();
    let (handle, _events) = rt.connector(config(&server.url("/"))).connect().await.unwrap();
    handle.close(4001, "bye").unwrap();
    let closed = bounded("closed", handle.closed()).await.unwrap();
    assert!(closed.clean);
    assert_eq!(handle.state(), State::Closed);
    assert!(server.wait_for(BOUND, |c| c[0].close == Some(Some((4001, "bye".to_owned())))));
    assert!(matches!(handle.close(1000, ""), Ok(())), "closing twice does nothing");
    assert!(matches!(handle.try_send("late"), Err(SendError::Closed(m)) if m.as_text() == Some("late")));
}

async fn send_errors_are_typed_and_give_the_message_back(rt: Rt) {
    let server = MockServer::builder()
        .connection(Behavior::accept().drop_after(ms(100)))
        .otherwise(Behavior::accept().handshake(Handshake::silent()))
        .start()
        .unwrap();
    let config = config(&server.url("/")).max_message_size(1024);
    let (handle, mut events) = rt.connector(config).connect().await.unwrap();
    match handle.try_send(Message::binary(vec![0; 2048])) {
        Err(SendError::TooLarge { message, len: 2048, max: 1024 }) => assert_eq!(message.len(), 2048),
        other => panic!("{other:?}"),
    }
    assert!(matches!(handle.ping(vec![0; 126]), Err(SendError::PingTooLong(126))));
    assert!(matches!(next_change(&mut events).await, Event::Opened(_)));
    assert!(matches!(next_change(&mut events).await, Event::Disconnected { .. }));
    match handle.send("while down").await {
        Err(SendError::NotOpen(message)) => assert_eq!(message.as_text(), Some("while down")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(handle.close(999, ""), Err(nova_proto::CloseError::InvalidCode(999))));
}

/// A server that completes the upgrade and then never reads, on a thread of
/// its own: the client's socket buffers fill and its writes stop. It lets
/// go when `done` is set, or after [`BOUND`].
fn server_that_never_reads(done: Arc<AtomicBool>) -> std::net::SocketAddr {
    let (listener, addr) = listener();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        upgrade(&mut tcp);
        // Hold the connection open, reading nothing.
        let until = std::time::Instant::now() + BOUND;
        while !done.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(ms(20));
        }
    });
    addr
}

async fn send_waits_for_a_socket_that_does_not_drain(rt: Rt) {
    let done = Arc::new(AtomicBool::new(false));
    let addr = server_that_never_reads(Arc::clone(&done));
    let connector = rt.connector(config(&format!("ws://{addr}/"))).send_buffer(256 << 10);
    let (handle, _events) = connector.connect().await.unwrap();
    let sending = async {
        for _ in 0..1024 {
            // 64 MiB in all: far more than any socket buffer takes.
            if handle.send(Message::binary(vec![7u8; 64 << 10])).await.is_err() {
                return;
            }
        }
    };
    assert!(timeout(ms(500), sending).await.is_none(), "64 MiB went into a socket nobody reads");
    let waiting = handle.buffered_amount();
    assert!(waiting <= (256 << 10) + (64 << 10), "{waiting} bytes waiting: the send buffer did not bound the sender");
    done.store(true, Ordering::SeqCst);
}

async fn the_sink_sends_flushes_and_closes(rt: Rt) {
    let server = echo_server();
    let (handle, mut events) = rt.connector(config(&server.url("/"))).connect().await.unwrap();
    let mut sink: MessageSink = handle.sink();
    for n in 0..100 {
        sink.feed(Message::text(format!("m{n}"))).await.unwrap();
    }
    bounded("flush", sink.flush()).await.unwrap();
    assert_eq!(handle.buffered_amount(), 0);
    for n in 0..100 {
        assert_eq!(next_message(&mut events).await.as_text(), Some(format!("m{n}").as_str()));
    }
    bounded("close", sink.close()).await.unwrap();
    assert_eq!(until_closed(&mut events).await.code, CloseCode::NORMAL);
}

async fn dropping_the_events_keeps_the_session_going(rt: Rt) {
    let server = echo_server();
    let (handle, events) = rt.connector(config(&server.url("/"))).connect().await.unwrap();
    drop(events);
    for n in 0..50 {
        handle.send(Message::text(format!("{n}"))).await.unwrap();
    }
    // The echoes are discarded, and the session stays open.
    assert!(server.wait_for(BOUND, |c| c[0].messages.len() == 50));
    assert_eq!(handle.state(), State::Open);
}

async fn a_refused_connection_with_no_retries_is_an_error_that_says_why(rt: Rt) {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = config(&format!("ws://{addr}/")).no_reconnect();
    match bounded("connect", rt.connector(config).connect()).await {
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
    assert!(matches!(rt.connector("http://example.com").connect().await, Err(ConnectError::Config(_))));
}

async fn an_untrusted_certificate_is_rejected_once_and_named(rt: Rt) {
    let ca = TestCa::generate().unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    let url = format!("wss://localhost:{}/", server.addr().port());
    // Mozilla's roots do not include a test CA.
    let error = bounded("connect", rt.connector(config(&url)).connect()).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("certificate"), "{message}");
    match error {
        ConnectError::NeverOpened(never) => match never.cause {
            Some(Disconnect::Failed(Error::Transport(TransportDown::Tls(failure)))) => {
                assert!(failure.certificate, "{failure}");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // Not retried: one attempt, one connection (a retry would come 20 ms later).
    sleep(ms(300)).await;
    assert_eq!(server.connections().len(), 1);
}

async fn a_certificate_for_another_name_is_rejected(rt: Rt) {
    let ca = TestCa::generate_for(&["wrong.example"]).unwrap();
    let server = MockServer::builder().otherwise(Behavior::accept()).tls(ca.server_config()).start().unwrap();
    let url = format!("wss://localhost:{}/", server.addr().port());
    let connector = rt.connector(config(&url)).tls(Tls::no_roots().with_root(ca.root_der()));
    let error = bounded("connect", connector.connect()).await.unwrap_err().to_string();
    assert!(error.contains("certificate not valid for name \"localhost\""), "{error}");
}

async fn localhost_falls_back_to_the_family_that_listens(rt: Rt) {
    // The mock server listens on 127.0.0.1 only; `localhost` may resolve to
    // ::1 first, which refuses.
    let server = echo_server();
    let url = format!("ws://localhost:{}/", server.addr().port());
    let (handle, mut events) = rt.connector(config(&url)).connect().await.unwrap();
    handle.send("v4").await.unwrap();
    assert_eq!(next_message(&mut events).await.as_text(), Some("v4"));
}

async fn ipv6_literals_connect(rt: Rt) {
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
        let _ = ws.read();
    });
    let (handle, mut events) = rt.connector(config(&format!("ws://[::1]:{port}/"))).connect().await.unwrap();
    handle.send("over IPv6").await.unwrap();
    assert_eq!(next_message(&mut events).await.as_text(), Some("over IPv6"));
    handle.close(1000, "").unwrap();
    until_closed(&mut events).await;
    server.join().unwrap();
}

async fn start_returns_at_once_and_the_events_tell_the_story(rt: Rt) {
    let server = MockServer::builder()
        .connection(Behavior::refuse(502))
        .otherwise(Behavior::accept().send_on_open("welcome"))
        .start()
        .unwrap();
    let (_handle, mut events) = rt.connector(config(&server.url("/"))).start().unwrap();
    assert!(matches!(
        next_change(&mut events).await,
        Event::Disconnected { cause: Disconnect::Failed(Error::Handshake(_)), reconnect: Some(_) }
    ));
    assert!(matches!(next_change(&mut events).await, Event::Reconnecting { attempt: 1 }));
    assert!(matches!(next_change(&mut events).await, Event::Opened(_)));
    assert_eq!(next_message(&mut events).await.as_text(), Some("welcome"));
    // `Events` is a `Stream` (this line is a compile-time check).
    let _: Option<Event> = timeout(ms(10), events.next()).await.flatten();
}

async fn a_scenario_of_pings_drops_and_resubscription_passes(rt: Rt) {
    use nova_testkit::Scenario;
    // Each step waits for the client: a pong that stays queued in the core
    // until some later wake-up fails `expect_pong` here.
    let scenario = Scenario::new()
        .accept()
        .expect_text("subscribe")
        .ping("are you there")
        .expect_pong()
        .within(ms(500))
        .send_text("tick 1")
        .drop_connection()
        .expect_reconnect_within(Duration::from_secs(2))
        .expect_text("subscribe")
        .ping("still there")
        .expect_pong()
        .within(ms(500))
        .close(1000, "done");
    let server = scenario.serve().unwrap();
    let (handle, mut events) = rt.connector(config(&server.url("/"))).start().unwrap();
    let subscriber = handle.clone();
    let app = rt.spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Opened(_) = event {
                subscriber.send("subscribe").await.unwrap();
            }
        }
    });
    // The scenario blocks while it waits: on the blocking pool, off the executor.
    let report = blocking::unblock(move || server.finish(BOUND)).await;
    if let Err(error) = report {
        panic!("{error}");
    }
    handle.close(1000, "").unwrap();
    bounded("the app", app).await;
}
