//! Bybit's rules, in memory: a `Session` with the Bybit adapter against a
//! scripted server.
#![cfg(feature = "bybit")]
#![allow(missing_docs)]

mod support;

use nova_platforms::bybit::{self, Bybit, Credentials, Stream};
use nova_platforms::{RateLimitAction, WallClock};
use nova_proto::Event;
use nova_proto::session::{Secret, Strategy};
use serde_json::{Value, json};
use support::{Harness, data, secs};

const NOW: u64 = 1_700_000_000_000;

fn harness(adapter: Bybit) -> Harness {
    let config = bybit::config("ws://bybit.test/v5/private").build().unwrap();
    Harness::new(config, adapter)
}

fn private() -> Bybit {
    let creds = Credentials::new("K", Secret::new("bybit_test_secret"), WallClock::fixed(NOW));
    Bybit::new(Stream::Private).credentials(creds)
}

fn ok(h: &mut Harness, request: &Value) {
    h.server_json(
        json!({"success": true, "ret_msg": "", "op": request["op"], "conn_id": "c1", "req_id": request["req_id"]}),
    );
}

#[test]
fn auth_with_a_fresh_signature_then_private_topics_routed_by_topic() {
    let mut h = harness(private());
    let order = h.session.subscribe(h.now, bybit::private("order"), Default::default()).unwrap();
    let wallet = h.session.subscribe(h.now, bybit::private("wallet"), Default::default()).unwrap();
    h.start();
    let sent = h.take_json();
    assert_eq!(sent.len(), 1, "only auth before its answer: {sent:?}");
    assert_eq!(sent[0]["op"], "auth");
    let expires = sent[0]["args"][1].as_u64().unwrap();
    assert_eq!(expires, NOW + 10_000);
    assert_eq!(sent[0]["args"][2], bybit::signature(&Secret::new("bybit_test_secret"), expires));
    ok(&mut h, &sent[0]);
    let sent = h.take_json();
    assert_eq!(sent[0]["op"], "subscribe");
    assert_eq!(sent[0]["args"], json!(["order", "wallet"]));
    ok(&mut h, &sent[0]);
    h.server_json(json!({"id": "msg-1", "topic": "wallet", "creationTime": 1, "data": []}));
    h.server_json(json!({"id": "msg-2", "topic": "order", "creationTime": 2, "data": [{"orderId": "o-1"}]}));
    let got = data(&h.take_events());
    assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [wallet.0, order.0]);
}

#[test]
fn restores_are_batched_to_ten_topics_and_acks_without_req_id_still_match() {
    let mut h = harness(Bybit::new(Stream::Spot));
    for i in 0..25 {
        h.session.subscribe(h.now, bybit::tickers(&format!("S{i}USDT")), Default::default()).unwrap();
    }
    h.start();
    let sent = h.take_json();
    let sizes: Vec<usize> = sent.iter().map(|v| v["args"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    // Acks without req_id, in order.
    for _ in &sent {
        h.server_json(json!({"success": true, "ret_msg": "subscribe", "op": "subscribe", "conn_id": "c2"}));
    }
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Ready { failed: 0, .. })));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Subscribed { .. })).count(), 25);
}

#[test]
fn a_drop_means_a_fresh_signature_then_the_identical_resubscribe() {
    let clock_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(NOW));
    let c = clock_ms.clone();
    let clock = WallClock::from_fn(move || c.load(std::sync::atomic::Ordering::Relaxed));
    let creds = Credentials::new("K", Secret::new("bybit_test_secret"), clock);
    let mut h = harness(Bybit::new(Stream::Private).credentials(creds));
    h.session.subscribe(h.now, bybit::private("order"), Default::default()).unwrap();
    h.start();
    let auth1 = h.take_json().remove(0);
    ok(&mut h, &auth1);
    let sub1 = h.take_json().remove(0);
    ok(&mut h, &sub1);
    h.drop_transport();
    clock_ms.store(NOW + 60_000, std::sync::atomic::Ordering::Relaxed);
    h.advance(secs(2));
    let auth2 = h.take_json().remove(0);
    assert_eq!(auth2["op"], "auth");
    assert_ne!(auth2["args"][2], auth1["args"][2], "a fresh signature");
    ok(&mut h, &auth2);
    let sub2 = h.take_json().remove(0);
    assert_eq!(sub2["args"], sub1["args"]);
}

#[test]
fn pings_every_interval_and_a_missing_pong_ends_the_connection() {
    let mut h = harness(Bybit::new(Stream::Linear));
    h.start();
    h.advance(secs(20));
    let ping = h.take_json().remove(0);
    assert_eq!(ping["op"], "ping");
    h.server_json(json!({"success": true, "ret_msg": "pong", "conn_id": "c", "req_id": ping["req_id"], "op": "ping"}));
    h.advance(secs(20));
    let ping = h.take_json().remove(0);
    h.server_json(json!({"req_id": ping["req_id"], "op": "pong", "args": ["1"], "conn_id": "c"}));
    assert!(h.take_events().iter().all(|e| !matches!(e, Event::HeartbeatMissed { .. })));
    h.advance(secs(20));
    h.take_json();
    h.advance(secs(20));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::HeartbeatMissed { missed: 1, limit: 1 })));
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { .. })));
}

#[test]
fn a_failed_batch_fails_its_subscriptions_and_rate_limits_retry_after() {
    let mut h = harness(Bybit::new(Stream::Trade).on_rate_limit(RateLimitAction::Reconnect(secs(3))));
    h.start();
    h.take_events();
    let sub = h.session.subscribe(h.now, "orderbook.INVALID.X", Default::default()).unwrap();
    h.pump();
    let sent = h.take_json();
    h.server_json(json!({"success": false, "ret_msg": "error:handler not found,topic:orderbook.INVALID.X", "op": "subscribe", "req_id": sent[0]["reqId"]}));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::SubscriptionFailed { id, .. } if *id == sub)));
    h.session.request(h.now, bybit::order("order.create", json!({"symbol": "BTCUSDT"})), Default::default()).unwrap();
    h.pump();
    let order = h.take_json().remove(0);
    assert_eq!(order["op"], "order.create");
    h.server_json(json!({"reqId": order["reqId"], "retCode": 10429, "retMsg": "System frequency protection", "op": "order.create"}));
    let events = h.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ServiceError { strategy: Strategy::RetryAfter(w), .. } if *w == secs(3)))
    );
}

#[test]
fn malformed_frames_are_reported() {
    let mut h = harness(Bybit::new(Stream::Linear));
    h.start();
    h.server_text("{\"topic\":");
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Malformed { .. })));
}
