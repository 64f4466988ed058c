//! Ethereum JSON-RPC through nova-tokio against the mock node on
//! 127.0.0.1: `eth_subscribe` → heads on the stream → a forced drop → the
//! subscription restored under the new id the node assigns, its heads
//! still arriving on the same stream; the outage is reported by the driver
//! (Disconnected, then Subscribed for the same id) with the last block seen.
//! Then the failure paths: a silent node found dead by the keepalive and
//! the subscription restored on a new connection, JSON-RPC errors reaching
//! the application typed on their request (the session stays up), and
//! `-32005` limit exceeded backing off for the adapter's wait (an
//! idempotent request re-sent after it), or with `FailRequest` failing only
//! the request.
#![allow(missing_docs)]

mod tokio_support;

use std::time::Duration;

use nova_platforms::RateLimitAction;
use nova_platforms::ethereum::{self, Ethereum, quantity, testing::MockEthereum};
use nova_proto::session::{RequestError, RequestOptions, ServiceError, Strategy, SubscribeOptions};
use nova_proto::{Backoff, Timeout};
use nova_testkit::MockServer;
use nova_tokio::Event;
use serde_json::{Value, json};
use tokio_support::{Feed, json as to_json, ms, open, serve};

fn block(v: &Value) -> u64 {
    quantity(&v["params"]["result"]["number"]).expect("a head carries its number")
}

fn server_id(v: &Value) -> String {
    v["params"]["subscription"].as_str().expect("a notification names its subscription").to_owned()
}

#[tokio::test]
async fn new_ids_are_remapped_to_the_same_stream_and_the_gap_shows() {
    let mock = MockEthereum::new().tick(ms(20));
    let server = serve(mock.behavior().drop_after(ms(600)), mock.behavior());
    // 300 ms down at least, so heads are produced while the client is away.
    let config = ethereum::config(&server.url("/")).backoff(Backoff::constant(ms(300), 0.0));
    let (handle, mut events) = open(config, Ethereum::new()).await;
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

#[tokio::test]
async fn a_silent_node_is_found_dead_then_the_subscription_is_restored_on_the_same_stream() {
    let mock = MockEthereum::new().tick(ms(20));
    // Half-open: no heads, no answers, no pongs after 600 ms, and no close.
    let server = serve(mock.behavior().go_silent_after(ms(600)), mock.behavior());
    // The preset pings every 20 s with a 20 s timeout; shortened here.
    let config = ethereum::config(&server.url("/")).ping(ms(200), ms(300)).backoff(Backoff::constant(ms(100), 0.0));
    let (handle, mut events) = open(config, Ethereum::new()).await;
    let sub = handle.subscribe(ethereum::new_heads(), SubscribeOptions::default()).unwrap();
    let id = sub.id();
    let feed = Feed::new(sub);
    events.expect("the subscription", |e| matches!(e, Event::Subscribed { id: i, .. } if *i == id)).await;
    let first = feed.more_than(0).await;

    // Declared dead by the keepalive.
    events.dead_by(Timeout::Pong).await;
    events.expect("the restore", |e| matches!(e, Event::Subscribed { id: i, .. } if *i == id)).await;
    let n = feed.count();
    let after = feed.more_than(n + 1).await;
    assert_ne!(server_id(&after), server_id(&first), "heads under the new connection's id, on the same stream");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn json_rpc_errors_fail_their_request_typed_and_the_session_stays() {
    let mock = MockEthereum::new().tick(ms(20));
    let server = MockServer::start(mock.behavior()).unwrap();
    let config = ethereum::config(&server.url("/"));
    let (handle, mut events) = open(config, Ethereum::new()).await;
    let feed = Feed::new(handle.subscribe(ethereum::new_heads(), SubscribeOptions::default()).unwrap());
    events.confirmed(1).await;

    let unknown = handle.request(ethereum::call("eth_nope", json!([])), RequestOptions::default()).await;
    assert_eq!(
        unknown,
        Err(RequestError::Service(ServiceError::new(Some(-32601), "the method does not exist/is not available")))
    );
    let bad = handle.request(ethereum::call("eth_getBlockByNumber", json!(["12", false])), RequestOptions::default());
    let bad = bad.await;
    assert!(matches!(&bad, Err(RequestError::Service(e)) if e.code == Some(-32602)), "{bad:?}");

    let chain = handle.request(ethereum::chain_id(), RequestOptions::default()).await.expect("the next one answers");
    assert_eq!(to_json(&chain)["result"], "0x1");
    let before = feed.count();
    feed.more_than(before + 2).await;
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    assert!(!events.seen().iter().any(|e| e.starts_with("ServiceError")), "a request's error is not a session error");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn limit_exceeded_backs_off_for_the_adapters_wait_then_restores_and_resends_idempotent_requests() {
    // Per connection: the eth_subscribe and one request pass, then -32005.
    let mock = MockEthereum::new().tick(ms(20)).request_budget(2);
    let server = MockServer::builder().lifetime(Duration::from_secs(20)).otherwise(mock.behavior()).start().unwrap();
    // The default wait is 5 s; shortened here.
    let wait = ms(400);
    let adapter = Ethereum::new().on_rate_limit(RateLimitAction::Reconnect(wait));
    let config = ethereum::config(&server.url("/"));
    let (handle, mut events) = open(config, adapter).await;
    let sub = handle.subscribe(ethereum::new_heads(), SubscribeOptions::default()).unwrap();
    let id = sub.id();
    let feed = Feed::new(sub);
    events.expect("the subscription", |e| matches!(e, Event::Subscribed { id: i, .. } if *i == id)).await;
    handle.request(ethereum::chain_id(), RequestOptions::default()).await.expect("within the budget");

    // Over the budget: an idempotent read, safe to send again.
    let again = handle.request(ethereum::block_number(), RequestOptions::default().idempotent(true));
    let error = events.expect("the rate-limit error", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = error else { unreachable!("matched above") };
    assert_eq!((error.code, strategy), (Some(ethereum::LIMIT_EXCEEDED), Strategy::RetryAfter(wait)));
    let down = events.expect("the back-off", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reconnect: Some(reconnect), .. } = down else { panic!("no reconnect: {down:?}") };
    assert_eq!(reconnect.delay, wait, "exactly the adapter's wait, not the backoff's");

    events.expect("the restore", |e| matches!(e, Event::Subscribed { id: i, .. } if *i == id)).await;
    let block = again.await.expect("re-sent on the new connection and answered");
    assert!(quantity(&to_json(&block)["result"]).is_some());
    let on_second: Vec<String> = mock
        .received()
        .into_iter()
        .filter(|(c, _)| *c == 2)
        .filter_map(|(_, v)| v["method"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(on_second, ["eth_subscribe", "eth_blockNumber"], "the restore, then the re-sent request");
    let n = feed.count();
    feed.more_than(n + 1).await;
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn limit_exceeded_with_fail_request_fails_only_the_request() {
    let mock = MockEthereum::new().tick(ms(20)).request_budget(1);
    let server = MockServer::start(mock.behavior()).unwrap();
    let adapter = Ethereum::new().on_rate_limit(RateLimitAction::FailRequest);
    let (handle, mut events) = open(ethereum::config(&server.url("/")), adapter).await;
    let feed = Feed::new(handle.subscribe(ethereum::new_heads(), SubscribeOptions::default()).unwrap());
    events.confirmed(1).await;
    let answer = handle.request(ethereum::chain_id(), RequestOptions::default()).await;
    assert!(matches!(&answer, Err(RequestError::Service(e)) if e.code == Some(ethereum::LIMIT_EXCEEDED)), "{answer:?}");
    let before = feed.count();
    feed.more_than(before + 2).await;
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    assert_eq!(server.connections().len(), 1);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
