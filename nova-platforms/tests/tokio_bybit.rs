//! Bybit v5 through nova-tokio against the mock server on 127.0.0.1: the
//! private socket's auth → Ready → subscribe → data, a forced drop, then
//! re-auth, resubscribe and data again on the same stream; and the spot
//! socket's subscribe batches of at most 10 args (the mock refuses more).
//! Then the failure paths: JSON pings left unanswered end the connection
//! and the session restores itself on a new one; a `success: false` subscribe
//! ack and a trade socket `retCode` reach the application typed (the
//! session stays up); and a rate-limit `retCode` backs off for the
//! adapter's wait before a fresh auth (or, with `FailRequest`, fails only
//! that request).
#![allow(missing_docs)]

mod tokio_support;

use std::time::Duration;

use nova_platforms::bybit::{self, Bybit, Credentials, Stream, testing::MockBybit};
use nova_platforms::{RateLimitAction, WallClock};
use nova_proto::session::{RequestError, RequestOptions, ServiceError, Strategy, SubscribeOptions};
use nova_proto::{Secret, Timeout};
use nova_testkit::MockServer;
use nova_tokio::Event;
use serde_json::{Value, json};
use tokio_support::{Feed, Watch, ms, open, serve};

const SECRET: &str = "bybit_test_secret";

/// The ops of the requests the mock received on connection `conn`.
fn ops(mock: &MockBybit, conn: u32) -> Vec<String> {
    let received = mock.received().into_iter().filter(|(c, _)| *c == conn);
    received.filter_map(|(_, v)| v["op"].as_str().map(str::to_owned)).filter(|op| op != "ping").collect()
}

#[tokio::test]
async fn private_auth_subscribe_drop_then_reauth_resubscribe_on_the_same_stream() {
    let mock = MockBybit::new(Stream::Private, "K", Secret::new(SECRET), WallClock::system()).tick(ms(20));
    let server = serve(mock.behavior().drop_after(ms(600)), mock.behavior());
    let adapter =
        Bybit::new(Stream::Private).credentials(Credentials::new("K", Secret::new(SECRET), WallClock::system()));
    let config = bybit::config(&server.url("/v5/private"));
    let (handle, mut events) = open(config, adapter).await;
    let feed = Feed::new(handle.subscribe(bybit::private("order"), SubscribeOptions::default()).unwrap());

    assert_eq!(events.ready().await, (1, 0));
    assert_eq!(feed.more_than(0).await["topic"], "order");
    assert_eq!(ops(&mock, 1)[..2], ["auth", "subscribe"], "auth goes first");

    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    restored_after_a_fresh_auth(&mut events, &mock, &feed).await;
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn more_than_ten_spot_topics_go_out_in_batches_of_ten() {
    let mock = MockBybit::new(Stream::Spot, "K", Secret::new(SECRET), WallClock::system()).tick(ms(20));
    let server = serve(mock.behavior().drop_after(ms(600)), mock.behavior());
    let config = bybit::config(&server.url("/v5/public/spot"));
    let (handle, mut events) = open(config, Bybit::new(Stream::Spot)).await;
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

/// A trade stream whose every `order.create` is answered with `code`.
fn trade_mock_refusing_orders(code: i64, message: &str) -> MockBybit {
    MockBybit::new(Stream::Trade, "K", Secret::new(SECRET), WallClock::system()).ret_code_on(
        "order.create",
        code,
        message,
    )
}

/// After a drop: the `order` topic restored on the second connection, auth
/// first, and its data flowing again on the same stream.
async fn restored_after_a_fresh_auth(events: &mut Watch, mock: &MockBybit, feed: &Feed) {
    assert_eq!(events.ready().await, (1, 0), "the topic is restored after a fresh auth");
    assert_eq!(ops(mock, 2)[..2], ["auth", "subscribe"], "re-auth before resubscribe");
    let before = feed.count();
    assert_eq!(feed.more_than(before + 2).await["topic"], "order", "data flows again on the same stream");
}

fn credentials() -> Credentials {
    Credentials::new("K", Secret::new(SECRET), WallClock::system())
}

#[tokio::test]
async fn unanswered_json_pings_end_the_connection_then_reauth_resubscribe_on_the_same_stream() {
    let mock = MockBybit::new(Stream::Private, "K", Secret::new(SECRET), WallClock::system()).tick(ms(20));
    // The first connection keeps pushing data and answering protocol pings,
    // but never answers `op: ping`: only the JSON heartbeat can tell.
    let server = serve(mock.behavior_without_pongs(), mock.behavior());
    // The shortest interval the adapter allows (Bybit recommends 20 s).
    let adapter = Bybit::new(Stream::Private).credentials(credentials()).ping_interval(Duration::from_secs(1));
    let config = bybit::config(&server.url("/v5/private"));
    let (handle, mut events) = open(config, adapter).await;
    let feed = Feed::new(handle.subscribe(bybit::private("order"), SubscribeOptions::default()).unwrap());
    assert_eq!(events.ready().await, (1, 0));
    feed.more_than(0).await;

    events.expect("a missed heartbeat", |e| matches!(e, Event::HeartbeatMissed { .. })).await;
    // Ended by the JSON heartbeat.
    events.dead_by(Timeout::Heartbeat).await;
    restored_after_a_fresh_auth(&mut events, &mock, &feed).await;
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn a_refused_subscribe_and_a_trade_ret_code_are_typed_errors_and_the_session_stays() {
    let mock = MockBybit::new(Stream::Spot, "K", Secret::new(SECRET), WallClock::system()).tick(ms(20));
    let server = MockServer::start(mock.behavior()).unwrap();
    let config = bybit::config(&server.url("/v5/public/spot"));
    let (handle, mut events) = open(config, Bybit::new(Stream::Spot)).await;
    let good = Feed::new(handle.subscribe(bybit::tickers("BTCUSDT"), SubscribeOptions::default()).unwrap());
    events.confirmed(1).await;
    // `{"success":false,"ret_msg":"error:handler not found,topic:..."}`.
    let bad = handle.subscribe(bybit::tickers("INVALIDUSDT"), SubscribeOptions::default()).unwrap();
    let bad_id = bad.id();
    let failed = events.expect("the refusal", |e| matches!(e, Event::SubscriptionFailed { .. })).await;
    let Event::SubscriptionFailed { id, error: RequestError::Service(error) } = failed else { panic!("{failed:?}") };
    assert_eq!(id, bad_id);
    assert_eq!(error, ServiceError::new(None, "error:handler not found,topic:tickers.INVALIDUSDT"));
    let before = good.count();
    assert_eq!(good.more_than(before + 2).await["topic"], "tickers.BTCUSDT", "the other topic keeps flowing");
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    handle.close(1000, "done").unwrap();
    server.shutdown();

    // The trade socket: `{"retCode":10001,"retMsg":...}` answers its request.
    let mock = trade_mock_refusing_orders(10001, "params error: qty");
    let server = MockServer::start(mock.behavior()).unwrap();
    let adapter = Bybit::new(Stream::Trade).credentials(credentials());
    let (handle, mut events) = open(bybit::config(&server.url("/v5/trade")), adapter).await;
    assert_eq!(events.ready().await, (0, 0));
    let order = bybit::order("order.create", json!({"symbol": "BTCUSDT", "qty": "0"}));
    let answer = handle.request(order, RequestOptions::default()).await;
    assert_eq!(answer, Err(RequestError::Service(ServiceError::new(Some(10001), "params error: qty"))));
    let amend = bybit::order("order.amend", json!({"symbol": "BTCUSDT", "orderId": "o-1"}));
    let ok = handle.request(amend, RequestOptions::default()).await.expect("the next order is answered");
    assert_eq!(tokio_support::json(&ok)["retCode"], 0);
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    assert_eq!(server.connections().len(), 1);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn a_rate_limit_ret_code_reconnects_after_the_adapters_wait_then_reauths() {
    let mock = trade_mock_refusing_orders(bybit::SYSTEM_FREQUENCY_PROTECTION, "System frequency protection");
    let server = MockServer::builder().lifetime(Duration::from_secs(20)).otherwise(mock.behavior()).start().unwrap();
    // The default wait is 1 s; shortened here.
    let wait = ms(400);
    let adapter = Bybit::new(Stream::Trade).credentials(credentials()).on_rate_limit(RateLimitAction::Reconnect(wait));
    let (handle, mut events) = open(bybit::config(&server.url("/v5/trade")), adapter).await;
    assert_eq!(events.ready().await, (0, 0));

    let order = bybit::order("order.create", json!({"symbol": "BTCUSDT", "qty": "1"}));
    let answer = handle.request(order, RequestOptions::default());
    let error = events.expect("the rate-limit error", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = error else { unreachable!("matched above") };
    assert_eq!((error.code, strategy), (Some(bybit::SYSTEM_FREQUENCY_PROTECTION), Strategy::RetryAfter(wait)));
    let down = events.expect("the back-off", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reconnect: Some(reconnect), .. } = down else { panic!("no reconnect: {down:?}") };
    assert_eq!(reconnect.delay, wait, "exactly the adapter's wait, not the backoff's");
    assert_eq!(answer.await, Err(RequestError::ConnectionLost), "an order is never re-sent by itself");

    assert_eq!(events.ready().await, (0, 0));
    assert_eq!(ops(&mock, 2).first().map(String::as_str), Some("auth"), "a fresh auth on the new connection");
    let amend = bybit::order("order.amend", json!({"symbol": "BTCUSDT", "orderId": "o-1"}));
    handle.request(amend, RequestOptions::default()).await.expect("orders go through again");
    assert_eq!(server.connections().len(), 2);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn a_rate_limit_ret_code_with_fail_request_fails_only_that_request() {
    let mock = trade_mock_refusing_orders(bybit::TOO_FREQUENT, "too frequent");
    let server = MockServer::start(mock.behavior()).unwrap();
    let adapter = Bybit::new(Stream::Trade).credentials(credentials()).on_rate_limit(RateLimitAction::FailRequest);
    let (handle, mut events) = open(bybit::config(&server.url("/v5/trade")), adapter).await;
    assert_eq!(events.ready().await, (0, 0));
    let order = bybit::order("order.create", json!({"symbol": "BTCUSDT", "qty": "1"}));
    let answer = handle.request(order, RequestOptions::default()).await;
    assert_eq!(answer, Err(RequestError::Service(ServiceError::new(Some(bybit::TOO_FREQUENT), "too frequent"))));
    let amend = bybit::order("order.amend", json!({"symbol": "BTCUSDT", "orderId": "o-1"}));
    handle.request(amend, RequestOptions::default()).await.expect("the connection stays");
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:#?}", events.seen());
    assert_eq!(server.connections().len(), 1);
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn trade_service_restarting_opens_a_new_connection_with_a_fresh_auth() {
    let mock = trade_mock_refusing_orders(bybit::TRADE_SERVICE_RESTARTING, "trade service restarting");
    let server = MockServer::builder().lifetime(Duration::from_secs(20)).otherwise(mock.behavior()).start().unwrap();
    let adapter = Bybit::new(Stream::Trade).credentials(credentials());
    let config = bybit::config(&server.url("/v5/trade"));
    let (handle, mut events) = open(config, adapter).await;
    assert_eq!(events.ready().await, (0, 0));

    let order = bybit::order("order.create", json!({"symbol": "BTCUSDT", "qty": "1"}));
    let answer = handle.request(order, RequestOptions::default());
    let error = events.expect("the restart notice", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = error else { unreachable!("matched above") };
    assert_eq!((error.code, strategy), (Some(bybit::TRADE_SERVICE_RESTARTING), Strategy::Reconnect));
    events.expect("the drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    assert_eq!(answer.await, Err(RequestError::ConnectionLost));
    assert_eq!(events.ready().await, (0, 0));
    assert_eq!(ops(&mock, 2).first().map(String::as_str), Some("auth"), "a fresh auth on the new connection");
    let amend = bybit::order("order.amend", json!({"symbol": "BTCUSDT", "orderId": "o-1"}));
    handle.request(amend, RequestOptions::default()).await.expect("orders go through on the new connection");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
