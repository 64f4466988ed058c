//! The driver's tracing output, captured with a subscriber set for this
//! thread (the blocking client drives its connection on the caller's
//! thread). Alone in its test binary: tracing caches per call site whether
//! anyone listens.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nova_mio::blocking::Client;
use nova_mio::{Connector, Event};
use nova_proto::{Backoff, Config, Message};
use nova_testkit::{Behavior, MockServer};

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_state_change_is_a_tracing_event_in_the_connection_span() {
    let server = MockServer::builder()
        .connection(Behavior::accept().echo().drop_after_received(1))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let config =
        Config::builder(server.url("/")).backoff(Backoff::constant(Duration::from_millis(20), 0.0)).keepalive(None);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut client = Client::start(Connector::new(config).name("traced")).unwrap();
        let mut opened = 0;
        loop {
            if let Event::Opened(_) = client.recv_timeout(Duration::from_secs(10)).unwrap() {
                opened += 1;
                if opened == 1 {
                    // The server drops the connection after this one.
                    client.send(Message::text("one")).unwrap();
                } else {
                    client.close(1000, "done").unwrap();
                    break;
                }
            }
        }
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for line in ["connection opened", "disconnected", "reconnecting", "session closed"] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    // Each event carries the connection's span: which client, which host.
    assert!(log.lines().all(|l| l.contains("nova{client=traced host=127.0.0.1")), "{log}");
    // A disconnect says why and when the next attempt comes.
    assert!(log.contains("reason=\"transport\"") && log.contains("reconnect_in=Some(20ms)"), "{log}");
}
