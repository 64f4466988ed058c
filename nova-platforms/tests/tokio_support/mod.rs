//! Shared plumbing of the driver-level tests (`tests/tokio_*.rs`): the
//! event stream and each subscription stream drained on tasks of their own
//! (so the driver never waits on the test), and bounded waits on what they
//! saw. Every wait fails the test with what was seen instead of hanging.
#![allow(dead_code, unreachable_pub)] // each platform's tests use a different subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nova_proto::{Disconnect, Error, Timeout};
use nova_tokio::{Event, Events, Message, Subscription};
use serde_json::Value;
use tokio::sync::mpsc;

/// How long any single wait may take: generous for a loaded CI machine,
/// well under the 10 s a test may run.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A mock server whose first connection behaves as `first` (a drop, a
/// silence, a close) and every later one as `then`, for the length of a
/// test (20 s at most).
pub fn serve(first: nova_testkit::Behavior, then: nova_testkit::Behavior) -> nova_testkit::MockServer {
    nova_testkit::MockServer::builder()
        .lifetime(Duration::from_secs(20))
        .connection(first)
        .otherwise(then)
        .start()
        .expect("the mock server starts")
}

/// Connects through nova-tokio with `adapter` (the first connection open)
/// and watches the session's events.
pub async fn open(
    config: impl nova_tokio::nova_driver::IntoConfig,
    adapter: impl nova_proto::session::Adapter + Send + 'static,
) -> (nova_tokio::Handle, Watch) {
    let (handle, events) =
        nova_tokio::Connector::new(config).adapter(adapter).connect().await.expect("the session opens");
    (handle, Watch::new(events))
}

/// The session's events, read on a task of their own.
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Event>,
    seen: Vec<String>,
}

impl Watch {
    pub fn new(mut events: Events) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Watch { rx, seen: Vec::new() }
    }

    /// The next event matching `pred` (others are skipped, and kept for the
    /// failure message).
    pub async fn expect(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => {
                    let hit = pred(&event);
                    self.seen.push(short(&event));
                    if hit {
                        return event;
                    }
                }
                Ok(None) => panic!("the event stream ended while waiting for {what}; seen: {:#?}", self.seen),
                Err(_) => panic!("no {what} within {WAIT:?}; seen: {:#?}", self.seen),
            }
        }
    }

    /// Waits for the next `Disconnected` and checks that `timeout` ended the
    /// connection (it was found dead) and that a reconnect follows.
    pub async fn dead_by(&mut self, timeout: Timeout) {
        let dead = self.expect("the dead connection", |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(
            matches!(
                &dead,
                Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(t)), reconnect: Some(_) } if *t == timeout
            ),
            "found dead by {timeout:?}, and reconnecting: {dead:?}"
        );
    }

    /// Waits for `Ready`, returning (restored, failed).
    pub async fn ready(&mut self) -> (usize, usize) {
        match self.expect("Ready", |e| matches!(e, Event::Ready { .. })).await {
            Event::Ready { restored, failed } => (restored, failed),
            _ => unreachable!("matched above"),
        }
    }

    /// Waits for `n` subscription confirmations; any failure fails the test.
    pub async fn confirmed(&mut self, n: usize) {
        for i in 0..n {
            let e = self
                .expect("a subscription confirmed", |e| {
                    matches!(e, Event::Subscribed { .. } | Event::SubscriptionFailed { .. })
                })
                .await;
            assert!(matches!(e, Event::Subscribed { .. }), "subscription {i} of {n}: {e:?}");
        }
    }

    /// Everything seen so far, one line each.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

/// An event, without message payloads (kept short for failure output).
fn short(event: &Event) -> String {
    match event {
        Event::Message(m) => format!("Message({} bytes)", m.as_bytes().len()),
        other => format!("{other:?}"),
    }
}

/// A subscription stream read on a task of its own, its messages kept as JSON.
#[derive(Clone)]
pub struct Feed {
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Feed {
    pub fn new(mut sub: Subscription) -> Feed {
        let messages: Arc<Mutex<Vec<Value>>> = Arc::default();
        let log = Arc::clone(&messages);
        tokio::spawn(async move {
            while let Some(message) = sub.recv().await {
                let value = json(&message);
                log.lock().unwrap().push(value);
            }
        });
        Feed { messages }
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until more than `n` messages arrived; returns the last one.
    pub async fn more_than(&self, n: usize) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(last) = self.messages.lock().unwrap().get(n) {
                return last.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no more than {n} messages within {WAIT:?}");
            tokio::time::sleep(ms(10)).await;
        }
    }
}

/// A message as JSON (`Null` when it is not).
pub fn json(message: &Message) -> Value {
    serde_json::from_slice(message.as_bytes()).unwrap_or(Value::Null)
}

/// Polls `cond` every 10 ms until it holds, failing after [`WAIT`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(ms(10)).await;
    }
}
