//! The driver's tracing output, captured with a subscriber set for this
//! thread. Alone in its test binary: tracing caches per call site whether
//! anyone listens, and a test on another thread without a subscriber could
//! make the session's span look unwanted.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nova_proto::{Backoff, Config, Message};
use nova_testkit::{Behavior, MockServer};
use nova_tokio::{Connector, Event};

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
fn every_state_change_is_a_tracing_event_in_the_session_span() {
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
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (handle, mut events) = Connector::new(config).name("traced").start().unwrap();
            let mut opened = 0;
            while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap() {
                if let Event::Opened(_) = event {
                    opened += 1;
                    if opened == 1 {
                        // The server drops the connection after this one.
                        handle.send(Message::text("one")).await.unwrap();
                    } else {
                        handle.close(1000, "done").unwrap();
                    }
                }
            }
        });
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for line in ["connection opened", "disconnected", "reconnecting", "session closed"] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    // Each event carries the session's span: which client, which host.
    assert!(log.lines().all(|l| l.contains("nova{client=traced host=127.0.0.1")), "{log}");
    // A disconnect says why and when the next attempt comes.
    assert!(log.contains("reason=\"transport\"") && log.contains("reconnect_in=Some(20ms)"), "{log}");
}
