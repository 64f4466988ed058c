//! Deribit through nova-tokio against the mock server on 127.0.0.1: auth →
//! set_heartbeat → Ready → subscribe → data, a forced drop, then re-auth, resubscribe and
//! data again on the same stream; and server heartbeats answered. Then the
//! failure paths: a server gone silent found dead by the keepalive and the
//! session restored on a new connection, a JSON-RPC error reaching the
//! application as a typed error on its request (the session stays up), and
//! 10028 `too_many_requests` backing off for the adapter's wait before a
//! fresh auth and restore (or, with `FailRequest`, failing only the request).
#![allow(missing_docs)]

mod tokio_support;

use std::time::Duration;

use nova_platforms::deribit::{self, Credentials, Deribit, Interval, testing::MockDeribit};
use nova_platforms::{RateLimitAction, WallClock};
use nova_proto::session::{RequestError, RequestOptions, ServiceError, Strategy, SubscribeOptions};
use nova_proto::{Secret, Timeout};
use nova_testkit::MockServer;
use nova_tokio::Event;
use serde_json::json;
use tokio_support::{Feed, Watch, ms, open, serve, until};

const CHANNEL: &str = "ticker.BTC-PERPETUAL.100ms";

fn adapter() -> Deribit {
    let creds = Credentials::client_signature("KEY", Secret::new("deribit_test_secret"), WallClock::system());
    Deribit::new().credentials(creds)
}

fn methods(mock: &MockDeribit, conn: u32) -> Vec<String> {
    mock.calls().into_iter().filter(|(c, _)| *c == conn).map(|(_, m)| m).collect()
}

#[tokio::test]
async fn auth_subscribe_drop_then_reauth_resubscribe_on_the_same_stream() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20));
    // The first connection drops 600 ms in; the next ones stay.
    let server = serve(mock.behavior().drop_after(ms(600)), mock.behavior());
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, mut events) = open(config, adapter()).await;
    let feed = Feed::new(
        handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), SubscribeOptions::default()).unwrap(),
    );

    // The subscription was held until the auth answer, then sent with the restore.
    assert_eq!(events.ready().await, (1, 0));
    let first = feed.more_than(0).await;
    assert_eq!(first["params"]["channel"], CHANNEL);
    assert_eq!(
        methods(&mock, 1)[..3],
        ["public/auth", "public/set_heartbeat", "public/subscribe"],
        "auth goes first, then the connection's heartbeat setup, then the restore"
    );

    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    assert_eq!(events.ready().await, (1, 0), "the channel is restored after a fresh auth");
    assert_eq!(
        methods(&mock, 2)[..3],
        ["public/auth", "public/set_heartbeat", "public/subscribe"],
        "re-auth before resubscribe"
    );
    let before = feed.count();
    let again = feed.more_than(before + 2).await;
    assert_eq!(again["params"]["channel"], CHANNEL, "data flows again on the same stream");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn server_test_requests_are_answered_with_public_test() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20));
    let server = MockServer::start(mock.behavior()).unwrap();
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, mut events) = open(config, adapter()).await;
    events.ready().await;
    // set_heartbeat goes out right after the auth; the mock then sends a
    // test_request, which must come back as public/test.
    until("set_heartbeat then public/test", || {
        let m = methods(&mock, 1);
        m.iter().any(|m| m == "public/set_heartbeat") && m.iter().any(|m| m == "public/test")
    })
    .await;
    assert_eq!(mock.unanswered_test_requests(), 0);
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:?}", events.seen());
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

/// The mock's first connection behaves as `first`, the next ones normally.
fn server(mock: &MockDeribit, first: nova_testkit::Behavior) -> MockServer {
    serve(first, mock.behavior())
}

/// After a reconnect: Ready with the channel restored, re-auth before the
/// resubscribe on connection `conn`, and data again on the same stream.
async fn restored(events: &mut Watch, mock: &MockDeribit, feed: &Feed, conn: u32) {
    assert_eq!(events.ready().await, (1, 0), "the channel is restored after a fresh auth");
    assert_eq!(methods(mock, conn)[..3], ["public/auth", "public/set_heartbeat", "public/subscribe"]);
    let before = feed.count();
    assert_eq!(feed.more_than(before + 2).await["params"]["channel"], CHANNEL, "data again on the same stream");
}

#[tokio::test]
async fn a_silent_server_is_found_dead_then_reauth_resubscribe_on_the_same_stream() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20));
    // Half-open: no data, no answers, no pongs after 600 ms, and no close.
    let server = server(&mock, mock.behavior().go_silent_after(ms(600)));
    // Deribit's own heartbeat is 10 s at least, and any traffic counts as
    // proof of life: the protocol keepalive is what finds a silent peer
    // quickly; shortened here from the preset's 15 s + 5 s.
    let config = deribit::config(&server.url("/ws/api/v2")).ping(ms(200), ms(300));
    let (handle, mut events) = open(config, adapter()).await;
    let feed = Feed::new(
        handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), SubscribeOptions::default()).unwrap(),
    );
    assert_eq!(events.ready().await, (1, 0));
    feed.more_than(0).await;

    // Declared dead by the keepalive.
    events.dead_by(Timeout::Pong).await;
    restored(&mut events, &mock, &feed, 2).await;
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn a_json_rpc_error_fails_its_request_with_the_code_and_the_session_stays() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20)).error_on(
        "public/get_index_price",
        10001,
        "not_found",
    );
    let server = MockServer::start(mock.behavior()).unwrap();
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, mut events) = open(config, adapter()).await;
    let feed = Feed::new(
        handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), SubscribeOptions::default()).unwrap(),
    );
    assert_eq!(events.ready().await, (1, 0));

    let call = deribit::call("public/get_index_price", json!({"index_name": "btc_usd"}));
    let answer = handle.request(call, RequestOptions::default()).await;
    assert_eq!(answer, Err(RequestError::Service(ServiceError::new(Some(10001), "not_found"))));
    // The mock's own "method_not_found" goes the same way.
    let unknown = handle.request(deribit::call("public/nope", json!({})), RequestOptions::default()).await;
    assert!(matches!(unknown, Err(RequestError::Service(ServiceError { code: Some(-32601), .. }))), "{unknown:?}");

    // The same connection goes on: requests are answered, data keeps coming.
    let time = handle.request(deribit::get_time(), RequestOptions::default()).await.expect("get_time answers");
    assert!(tokio_support::json(&time)["result"].is_u64());
    let before = feed.count();
    feed.more_than(before + 2).await;
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    assert!(!events.seen().iter().any(|e| e.starts_with("ServiceError")), "a request's error is not a session error");
    assert_eq!(server.connections().len(), 1);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn too_many_requests_reconnects_after_the_adapters_wait_then_reauth_and_restore() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20)).error_on(
        "public/get_index_price",
        deribit::TOO_MANY_REQUESTS,
        "too_many_requests",
    );
    let server = MockServer::builder().lifetime(Duration::from_secs(20)).otherwise(mock.behavior()).start().unwrap();
    // The default wait is 5 s (the credit pool's refill); shortened here.
    let wait = ms(400);
    let adapter = adapter().on_rate_limit(RateLimitAction::Reconnect(wait));
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, mut events) = open(config, adapter).await;
    let feed = Feed::new(
        handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), SubscribeOptions::default()).unwrap(),
    );
    assert_eq!(events.ready().await, (1, 0));

    let call = deribit::call("public/get_index_price", json!({"index_name": "btc_usd"}));
    let answer = handle.request(call, RequestOptions::default());
    let error = events.expect("the rate-limit error", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = error else { unreachable!("matched above") };
    assert_eq!((error.code, strategy), (Some(deribit::TOO_MANY_REQUESTS), Strategy::RetryAfter(wait)));
    let down = events.expect("the back-off", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reconnect: Some(reconnect), .. } = down else { panic!("no reconnect: {down:?}") };
    assert_eq!(reconnect.delay, wait, "exactly the adapter's wait, not the backoff's");
    // Deribit ends the session itself after 10028: the request is lost with it.
    assert_eq!(answer.await, Err(RequestError::ConnectionLost));

    restored(&mut events, &mock, &feed, 2).await;
    let conns = server.connections();
    assert_eq!(conns.len(), 2);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn too_many_requests_with_fail_request_fails_only_that_request() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20)).error_on(
        "public/get_index_price",
        deribit::TOO_MANY_REQUESTS,
        "too_many_requests",
    );
    let server = MockServer::start(mock.behavior()).unwrap();
    let adapter = adapter().on_rate_limit(RateLimitAction::FailRequest);
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, mut events) = open(config, adapter).await;
    assert_eq!(events.ready().await, (0, 0));

    let call = deribit::call("public/get_index_price", json!({"index_name": "btc_usd"}));
    let answer = handle.request(call, RequestOptions::default()).await;
    assert!(
        matches!(&answer, Err(RequestError::Service(e)) if e.code == Some(deribit::TOO_MANY_REQUESTS)),
        "{answer:?}"
    );
    handle.request(deribit::get_time(), RequestOptions::default()).await.expect("the connection stays");
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    assert_eq!(server.connections().len(), 1);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
