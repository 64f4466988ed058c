//! The driver's metrics, captured with a local recorder (no global state:
//! other tests run alongside).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use nova_proto::{Backoff, Config, Message};
use nova_testkit::{Behavior, MockServer};
use nova_tokio::{Connector, Event, metrics_names as names};

/// Counters by name and sorted labels, e.g. `nova_disconnects_total{client=t,reason=transport}`.
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str, labels: &str) -> u64 {
        let key = format!("{name}{{{labels}}}");
        self.0.lock().unwrap().get(&key).map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(Arc::clone(self.0.lock().unwrap().entry(name).or_default()))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
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
}
