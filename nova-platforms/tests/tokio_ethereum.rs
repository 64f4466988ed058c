//! Ethereum JSON-RPC through nova-tokio against the mock node on
//! 127.0.0.1: `eth_subscribe` → heads on the stream → a forced drop → the
//! subscription restored under the new id the node assigns, its heads
//! still arriving on the same stream; the outage is reported by the driver
//! (Disconnected, then Subscribed for the same id) with the last block seen.
#![allow(missing_docs)]

mod tokio_support;

use std::time::Duration;

use nova_platforms::ethereum::{self, Ethereum, quantity, testing::MockEthereum};
use nova_proto::Backoff;
use nova_proto::session::SubscribeOptions;
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};
use serde_json::Value;
use tokio_support::{Feed, Watch, ms};

fn block(v: &Value) -> u64 {
    quantity(&v["params"]["result"]["number"]).expect("a head carries its number")
}

fn server_id(v: &Value) -> String {
    v["params"]["subscription"].as_str().expect("a notification names its subscription").to_owned()
}

#[tokio::test]
async fn new_ids_are_remapped_to_the_same_stream_and_the_gap_shows() {
    let mock = MockEthereum::new().tick(ms(20));
    let server = MockServer::builder()
        .lifetime(Duration::from_secs(20))
        .connection(mock.behavior().drop_after(ms(600)))
        .otherwise(mock.behavior())
        .start()
        .unwrap();
    // 300 ms down at least, so heads are produced while the client is away.
    let config = ethereum::config(&server.url("/")).backoff(Backoff::constant(ms(300), 0.0));
    let (handle, events) = Connector::new(config).adapter(Ethereum::new()).connect().await.unwrap();
    let mut events = Watch::new(events);
    let sub = handle.subscribe(ethereum::new_heads(), SubscribeOptions::default()).unwrap();
    let id = sub.id();
    let feed = Feed::new(sub);

    events.expect("the subscription", |e| matches!(e, Event::Subscribed { id: i, .. } if *i == id)).await;
    let first = feed.more_than(0).await;
    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    // The driver reports the same subscription restored: that is the gap's start.
    events.expect("the restore", |e| matches!(e, Event::Subscribed { id: i, .. } if *i == id)).await;
    let before: Vec<Value> = feed.all();
    let old_id = server_id(&first);
    let last_before = before.iter().filter(|v| server_id(v) == old_id).map(block).max().unwrap();

    let n = feed.count();
    let after = feed.more_than(n + 1).await;
    let new_id = server_id(&after);
    assert_ne!(new_id, old_id, "the node assigned a new id on the new connection");
    let resubscribes = mock.received().iter().filter(|(c, v)| *c == 2 && v["method"] == "eth_subscribe").count();
    assert_eq!(resubscribes, 1);
    let first_after = feed.all().iter().filter(|v| server_id(v) == new_id).map(block).min().unwrap();
    // The gap to backfill starts after `last_before`: the mock's chain moves
    // on while nobody is connected (a block per 20 ms, 300 ms down).
    assert!(first_after > last_before + 1, "no block was missed: {last_before} then {first_after}");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
