//! The driver's metrics, captured with a local recorder (no global state:
//! other tests run alongside): the connection's traffic and disconnects, and
//! the behaviour layer's requests, subscriptions, authentication, malformed
//! messages and service errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use nova_proto::session::json::JsonRpc;
use nova_proto::session::{RequestError, RequestOptions, RequestPayload, SubscribeOptions};
use nova_proto::{Backoff, Config, Message, Secret};
use nova_testkit::{Behavior, JsonRpcService, MockServer};
use nova_tokio::{Connector, Event, metrics_names as names};

/// Counters by name and sorted labels, e.g. `nova_disconnects_total{client=t,reason=transport}`,
/// and gauges the same way (their `f64` as bits, as `metrics` stores them in an `AtomicU64`).
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>, Mutex<BTreeMap<String, Arc<AtomicU64>>>);

fn key_of(key: &Key) -> String {
    let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Counters {
    fn get(&self, name: &str, labels: &str) -> u64 {
        let key = format!("{name}{{{labels}}}");
        self.0.lock().unwrap().get(&key).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str, labels: &str) -> Option<f64> {
        let key = format!("{name}{{{labels}}}");
        self.1.lock().unwrap().get(&key).map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::clone(self.0.lock().unwrap().entry(key_of(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::clone(self.1.lock().unwrap().entry(key_of(key)).or_default()))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn server() -> MockServer {
    MockServer::builder()
        .connection(Behavior::accept().echo().drop_after_received(3))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap()
}

fn config(server: &MockServer) -> nova_proto::ConfigBuilder {
    Config::builder(server.url("/")).backoff(Backoff::constant(Duration::from_millis(20), 0.0)).keepalive(None)
}

/// Sends three messages (the server drops the connection after them), waits
/// for the reconnect, then closes.
async fn drive((handle, mut events): (nova_tokio::Handle, nova_tokio::Events)) {
    let mut opened = 0;
    let mut echoes = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Opened(_) => {
                    opened += 1;
                    if opened == 1 {
                        for n in 0..3 {
                            handle.send(Message::text(format!("m{n}"))).await.unwrap();
                        }
                    } else {
                        handle.close(1000, "done").unwrap();
                    }
                }
                Event::Message(_) => echoes += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("the session ends");
    assert_eq!(opened, 2);
    assert!(echoes <= 3);
}

#[test]
fn counters_follow_the_traffic_and_the_disconnects() {
    let server = server();
    let counters = Counters::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The driver registers its metrics when the session starts, under the
    // recorder in force there.
    let connector = Connector::new(config(&server)).name("t");
    runtime.block_on(async {
        let started = metrics::with_local_recorder(&counters, || connector.start()).unwrap();
        drive(started).await;
    });
    let client = "client=t";
    assert!(counters.get(names::CONNECTIONS_STARTED, client) >= 2);
    assert!(counters.get(names::CONNECTIONS_OPENED, client) >= 2);
    assert!(counters.get(names::RECONNECTS, client) >= 1);
    assert!(counters.get(names::MESSAGES_SENT, client) >= 3);
    assert!(counters.get(names::BYTES_SENT, client) > 3);
    assert!(counters.get(names::BYTES_RECEIVED, client) > 0);
    // The drop after three messages: a transport failure, counted as such.
    assert_eq!(counters.get(names::DISCONNECTS, "client=t,reason=transport"), 1);
    assert_eq!(counters.get(names::ERRORS, "client=t,kind=transport"), 1);
    assert_eq!(counters.get(names::DISCONNECTS, "client=t,reason=server_close"), 0);
    // No adapter, no behaviour layer: none of its metrics is registered
    // (each handle is memory in every session).
    let registered = counters.0.lock().unwrap();
    for name in [names::REQUESTS_SENT, names::SUBSCRIBE_REQUESTS, names::AUTH_ATTEMPTS, names::MALFORMED] {
        assert!(!registered.keys().any(|k| k.starts_with(name)), "{name} registered without an adapter");
    }
    assert!(counters.1.lock().unwrap().is_empty(), "no gauge without an adapter");
}

// ---- the behaviour layer's counters ----

/// Not JSON, and a service error outside any request: one each on the first
/// connection.
const GARBAGE: &str = r#"{"jsonrpc":"2.0","result": oops}"#;
const NOTICE: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32099,"message":"maintenance"}}"#;

fn call(method: &str, params: serde_json::Value) -> RequestPayload {
    RequestPayload::call(method, params)
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"));
}

/// The next `Ready`, bounded.
async fn ready(events: &mut nova_tokio::Events) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("the session goes on");
            if matches!(event, Event::Ready { .. }) {
                return event;
            }
        }
    })
    .await
    .expect("ready in time")
}

#[test]
fn session_counters_follow_requests_subscriptions_and_authentication() {
    // The first connection drops once the client has sent its 7th message
    // (auth, subscribe, echo, fail, never, delay, hold); the next is healthy.
    let service = JsonRpcService::new().auth("auth", "good");
    let server = MockServer::builder()
        .connection(service.behavior().send_on_open(GARBAGE).send_on_open(NOTICE).drop_after_received(7))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let adapter = JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription").auth(
        "auth",
        serde_json::json!({}),
        Some(("token", Secret::new("good"))),
    );
    let counters = Counters::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connector = Connector::new(config(&server)).adapter(adapter).name("s");
    let client = "client=s";
    runtime.block_on(async {
        let (handle, mut events) = metrics::with_local_recorder(&counters, || connector.start()).unwrap();
        ready(&mut events).await;
        let _sub = handle.subscribe("newHeads", SubscribeOptions::default()).unwrap();
        let opts = RequestOptions::default;
        assert!(handle.request(call("echo", 1.into()), opts()).await.is_ok());
        assert!(handle.request(call("fail", 1.into()), opts()).await.is_err());
        let never = handle.request(call("never", 1.into()), opts().timeout(Duration::from_millis(100)));
        assert_eq!(never.await, Err(RequestError::Timeout));
        // Handed to the session (and sent) at once, cancelled when dropped.
        drop(handle.request(call("delay", serde_json::json!([300, "late"])), opts()));
        // Never answered on the first connection, which drops on receiving it.
        assert_eq!(handle.request(call("hold", 1.into()), opts()).await, Err(RequestError::ConnectionLost));
        // The reconnect authenticates again and restores the subscription.
        assert_eq!(ready(&mut events).await, Event::Ready { restored: 1, failed: 0 });
        // The gauge is set at the end of the driver's turn.
        eventually("one active subscription", || counters.gauge(names::SUBSCRIPTIONS_ACTIVE, client) == Some(1.0))
            .await;
        handle.close(1000, "done").unwrap();
        tokio::time::timeout(Duration::from_secs(10), async { while events.recv().await.is_some() {} })
            .await
            .expect("the session ends");
    });
    let count = |name| counters.get(name, client);
    assert_eq!(count(names::AUTH_ATTEMPTS), 2, "one per connection");
    assert_eq!(count(names::AUTH_FAILURES), 0);
    assert_eq!(count(names::REQUESTS_SENT), 5);
    assert_eq!(count(names::REQUESTS_COMPLETED), 1);
    assert_eq!(count(names::REQUESTS_FAILED), 1);
    assert_eq!(count(names::REQUESTS_TIMED_OUT), 1);
    assert_eq!(count(names::REQUESTS_CANCELLED), 1);
    assert_eq!(count(names::REQUESTS_LOST), 1);
    assert_eq!(count(names::SUBSCRIBE_REQUESTS), 2, "the first subscribe and the restore");
    assert_eq!(count(names::SUBSCRIPTIONS_RESTORED), 1);
    assert_eq!(count(names::SUBSCRIPTIONS_FAILED), 0);
    assert_eq!(count(names::MALFORMED), 1);
    assert_eq!(count(names::SERVICE_ERRORS), 1);
    assert_eq!(count(names::HEARTBEATS_MISSED), 0);
    assert_eq!(count(names::RECONNECTS), 1);
    assert_eq!(counters.get(names::DISCONNECTS, "client=s,reason=transport"), 1);
}
