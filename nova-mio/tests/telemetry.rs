//! The driver's metrics, captured with a local recorder (no global state:
//! other tests run alongside). The names are `nova-tokio`'s.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use nova_mio::blocking::Client;
use nova_mio::{Connector, Event, metrics_names as names};
use nova_proto::{Backoff, Config, Message};
use nova_testkit::{Behavior, MockServer};

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

#[test]
fn counters_follow_the_traffic_and_the_disconnects() {
    let server = MockServer::builder()
        .connection(Behavior::accept().echo().drop_after_received(3))
        .otherwise(Behavior::accept().echo())
        .start()
        .unwrap();
    let config =
        Config::builder(server.url("/")).backoff(Backoff::constant(Duration::from_millis(20), 0.0)).keepalive(None);
    let counters = Counters::default();
    // The driver registers its metrics when the connection starts, under
    // the recorder in force there.
    let mut client =
        metrics::with_local_recorder(&counters, || Client::start(Connector::new(config).name("t"))).unwrap();
    let mut opened = 0;
    loop {
        match client.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Opened(_)) => {
                opened += 1;
                if opened == 1 {
                    for n in 0..3 {
                        client.send(Message::text(format!("m{n}"))).unwrap();
                    }
                } else {
                    client.close(1000, "done").unwrap();
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
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

/// The names are nova-driver's, shared by every driver; they are what
/// dashboards query, so they are pinned here as written.
#[test]
fn the_names_are_the_documented_ones() {
    assert_eq!(names::CONNECTIONS_STARTED, "nova_connections_started_total");
    assert_eq!(names::DISCONNECTS, "nova_disconnects_total");
    assert_eq!(names::PONG_RTT, "nova_pong_rtt_seconds");
}
