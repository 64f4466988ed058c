//! Bybit v5 through nova-tokio against the mock server on 127.0.0.1: the
//! private socket's auth → Ready → subscribe → data, a forced drop, then
//! re-auth, resubscribe and data again on the same stream; and the spot
//! socket's subscribe batches of at most 10 args (the mock refuses more).
#![allow(missing_docs)]

mod tokio_support;

use std::time::Duration;

use nova_platforms::WallClock;
use nova_platforms::bybit::{self, Bybit, Credentials, Stream, testing::MockBybit};
use nova_proto::Secret;
use nova_proto::session::SubscribeOptions;
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};
use serde_json::Value;
use tokio_support::{Feed, Watch, ms};

const SECRET: &str = "bybit_test_secret";

/// The ops of the requests the mock received on connection `conn`.
fn ops(mock: &MockBybit, conn: u32) -> Vec<String> {
    let received = mock.received().into_iter().filter(|(c, _)| *c == conn);
    received.filter_map(|(_, v)| v["op"].as_str().map(str::to_owned)).filter(|op| op != "ping").collect()
}

#[tokio::test]
async fn private_auth_subscribe_drop_then_reauth_resubscribe_on_the_same_stream() {
    let mock = MockBybit::new(Stream::Private, "K", Secret::new(SECRET), WallClock::system()).tick(ms(20));
    let server = MockServer::builder()
        .lifetime(Duration::from_secs(20))
        .connection(mock.behavior().drop_after(ms(600)))
        .otherwise(mock.behavior())
        .start()
        .unwrap();
    let adapter =
        Bybit::new(Stream::Private).credentials(Credentials::new("K", Secret::new(SECRET), WallClock::system()));
    let config = bybit::config(&server.url("/v5/private"));
    let (handle, events) = Connector::new(config).adapter(adapter).connect().await.unwrap();
    let mut events = Watch::new(events);
    let feed = Feed::new(handle.subscribe(bybit::private("order"), SubscribeOptions::default()).unwrap());

    assert_eq!(events.ready().await, (1, 0));
    assert_eq!(feed.more_than(0).await["topic"], "order");
    assert_eq!(ops(&mock, 1)[..2], ["auth", "subscribe"], "auth goes first");

    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    assert_eq!(events.ready().await, (1, 0), "the topic is restored after a fresh auth");
    assert_eq!(ops(&mock, 2)[..2], ["auth", "subscribe"], "re-auth before resubscribe");
    let before = feed.count();
    assert_eq!(feed.more_than(before + 2).await["topic"], "order", "data flows again on the same stream");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn more_than_ten_spot_topics_go_out_in_batches_of_ten() {
    let mock = MockBybit::new(Stream::Spot, "K", Secret::new(SECRET), WallClock::system()).tick(ms(20));
    let server = MockServer::builder()
        .lifetime(Duration::from_secs(20))
        .connection(mock.behavior().drop_after(ms(600)))
        .otherwise(mock.behavior())
        .start()
        .unwrap();
    let config = bybit::config(&server.url("/v5/public/spot"));
    let (handle, events) = Connector::new(config).adapter(Bybit::new(Stream::Spot)).connect().await.unwrap();
    let mut events = Watch::new(events);
    let symbols: Vec<String> = (0..23).map(|i| format!("SYM{i}USDT")).collect();
    let feeds: Vec<Feed> = symbols
        .iter()
        .map(|s| Feed::new(handle.subscribe(bybit::orderbook(1, s), SubscribeOptions::default()).unwrap()))
        .collect();

    // All 23 are confirmed: the mock fails any request with more than 10.
    events.confirmed(23).await;
    for feed in &feeds {
        feed.more_than(0).await;
    }
    let sizes = |conn: u32| -> Vec<usize> {
        let received = mock.received().into_iter().filter(|(c, v)| *c == conn && v["op"] == "subscribe");
        received.map(|(_, v)| v["args"].as_array().map_or(0, Vec::len)).collect::<Vec<_>>()
    };
    let first = sizes(1);
    assert!(first.iter().all(|n| *n <= 10) && first.iter().sum::<usize>() == 23, "{first:?}");

    // The restore after the drop is batched the same way.
    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    events.confirmed(23).await;
    let second = sizes(2);
    assert!(second.iter().all(|n| *n <= 10) && second.iter().sum::<usize>() == 23, "{second:?}");
    let before = feeds[22].count();
    let again: Value = feeds[22].more_than(before + 1).await;
    assert_eq!(again["topic"], "orderbook.1.SYM22USDT");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
