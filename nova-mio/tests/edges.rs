//! The driver at its edges, against a raw server (std threads) that
//! controls every byte: an application that stops taking events while the
//! session must still act, a server that resets right after its close
//! frame, a protocol error behind megabytes of writes.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nova_mio::blocking::{self, RecvError};
use nova_mio::{Connector, Event};
use nova_proto::{Backoff, Config, Disconnect, Error, Message, Timeout};
use nova_testkit::raw::{self, server_frame as frame};

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Reads the upgrade request and answers 101.
fn upgrade(tcp: &mut TcpStream) {
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    raw::accept_upgrade(tcp).unwrap();
}

/// Reads one client frame, unmasked: opcode and payload; `None` at the end.
fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let frame = raw::read_client_frame(tcp, None).ok()??;
    Some((frame.opcode, frame.payload))
}

#[test]
fn a_dead_server_is_found_once_the_application_catches_up() {
    let (listener, addr) = listener();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            std::thread::spawn(move || {
                upgrade(&mut tcp);
                if first {
                    for i in 0..10 {
                        tcp.write_all(&frame(1, format!("m{i}").as_bytes())).unwrap();
                    }
                }
                // Silent from now on (no pongs), then gone.
                std::thread::sleep(BOUND);
            });
        }
    });
    let config = Config::builder(format!("ws://{addr}/"))
        .backoff(Backoff::constant(ms(20), 0.0))
        .ping(ms(100), ms(200))
        .max_attempts(Some(1));
    let connector = Connector::new(config).event_capacity(2);
    let mut poll = mio::Poll::new().unwrap();
    let mut readiness = mio::Events::with_capacity(64);
    let mut conn = connector.start(poll.registry(), mio::Token(3), Instant::now()).unwrap();
    let mut turn = |conn: &mut nova_mio::Connection| {
        let timeout = conn.poll_timeout().map_or(ms(100), |at| at.saturating_duration_since(Instant::now()));
        poll.poll(&mut readiness, Some(timeout.min(ms(100)))).unwrap();
        let now = Instant::now();
        for event in readiness.iter() {
            conn.on_event(poll.registry(), event, now);
        }
        if conn.poll_timeout().is_some_and(|at| at <= now) {
            conn.on_timeout(poll.registry(), now);
        }
    };
    // The application is busy for 1.5 s, its event queue full: frames it has
    // not taken are waiting, and the pong could be among them, so the
    // silence is no verdict yet (a slow consumer is not a dead server).
    let started = Instant::now();
    while started.elapsed() < ms(1500) {
        turn(&mut conn);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "declared dead while its frames waited for the application");
    // It takes its events: the silent server is found dead and replaced.
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.iter().filter(|e| matches!(e, Event::Opened(_))).count() < 2 {
        assert!(started.elapsed() < BOUND, "no second connection: {seen:#?}");
        turn(&mut conn);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(_) | Event::Pong { .. } => {}
                event => seen.push(event),
            }
        }
    }
    assert!(
        matches!(
            seen[..],
            [
                Event::Opened(_),
                Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Pong)), reconnect: Some(_) },
                Event::Reconnecting { attempt: 1 },
                Event::Opened(_),
                ..
            ]
        ),
        "{seen:#?}"
    );
}

#[test]
fn a_close_frame_before_a_reset_is_not_lost_to_a_failed_write() {
    for round in 0..5 {
        let (listener, addr) = listener();
        std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            upgrade(&mut tcp);
            std::thread::sleep(ms(100));
            let mut bytes = frame(1, b"last");
            let mut close = 1001u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"going away");
            bytes.extend(frame(8, &close));
            tcp.write_all(&bytes).unwrap();
            // Gone at once with the client's frames unread: a reset, which
            // the busy sender meets on its next write.
            drop(tcp);
        });
        let config = Config::builder(format!("ws://{addr}/")).keepalive(None).no_reconnect();
        let mut client = blocking::connect(config).unwrap();
        let mut last = false;
        let mut cause = None;
        let until = Instant::now() + BOUND;
        loop {
            // A busy sender: a send per turn while the session lasts.
            let _ = client.send(Message::binary(vec![1u8; 16 << 10]));
            match client.recv_timeout(ms(1)) {
                Ok(Event::Message(m)) => last |= m.as_text() == Some("last"),
                Ok(Event::Disconnected { cause: c, .. }) => cause = Some(c),
                Ok(_) | Err(RecvError::Timeout) => {}
                Err(RecvError::Ended) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < until, "round {round}: the session did not end");
        }
        assert!(last, "round {round}: the last message was lost");
        assert!(
            matches!(&cause, Some(Disconnect::ServerClosed { code, .. }) if code.0 == 1001),
            "round {round}: {cause:?}"
        );
    }
}

#[test]
fn a_protocol_error_behind_megabytes_of_writes_still_sends_its_close_frame() {
    let (listener, addr) = listener();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        upgrade(&mut tcp);
        std::thread::sleep(ms(300));
        // A reserved opcode: the client must fail the connection with 1002.
        tcp.write_all(&frame(3, b"bad")).unwrap();
        let mut frames = Vec::new();
        while let Some((opcode, payload)) = read_frame(&mut tcp) {
            frames.push((opcode, payload.len(), payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))));
        }
        frames
    });
    let config = Config::builder(format!("ws://{addr}/")).keepalive(None).no_reconnect();
    let mut client = blocking::connect(config).unwrap();
    client.send(Message::binary(vec![0u8; 8 << 20])).unwrap();
    let mut failed = false;
    loop {
        match client.recv_timeout(BOUND) {
            Ok(Event::Disconnected { cause: Disconnect::Failed(Error::Protocol(_)), .. }) => failed = true,
            Ok(_) => {}
            Err(RecvError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(failed);
    // `Ended` came once the last bytes went out, the socket lingering.
    assert!(client.connection().is_finished());
    let frames = server.join().unwrap();
    assert!(frames.iter().any(|f| f.0 == 8 && f.2 == Some(1002)), "no 1002 close reached the server: {frames:?}");
}
