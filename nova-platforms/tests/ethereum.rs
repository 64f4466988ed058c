//! Ethereum's rules, in memory: a `Session` with the Ethereum adapter against
//! a scripted node.
#![cfg(feature = "ethereum")]
#![allow(missing_docs)]

mod support;

use nova_platforms::ethereum::{self, Ethereum, GapTracker};
use nova_proto::Event;
use nova_proto::session::Strategy;
use serde_json::{Value, json};
use support::{Harness, secs};

fn harness() -> Harness {
    Harness::new(ethereum::config("ws://node.test:8546").build().unwrap(), Ethereum::new())
}

fn head(h: &mut Harness, sub: &str, number: u64) {
    h.server_json(json!({"jsonrpc": "2.0", "method": "eth_subscription",
        "params": {"subscription": sub, "result": {"number": format!("{number:#x}"), "hash": "0xab"}}}));
}

/// Answers each eth_subscribe sent since the last call with the next id of `ids`.
fn answer_subscribes(h: &mut Harness, ids: &[&str]) -> Vec<Value> {
    let sent = h.take_json();
    assert_eq!(sent.len(), ids.len(), "{sent:?}");
    for (request, id) in sent.iter().zip(ids) {
        assert_eq!(request["method"], "eth_subscribe");
        h.server_json(json!({"jsonrpc": "2.0", "id": request["id"], "result": id}));
    }
    sent
}

#[test]
fn subscriptions_are_routed_by_server_id_and_remapped_after_a_reconnect_with_the_gap_reported() {
    let mut h = harness();
    let heads = h.session.subscribe(h.now, ethereum::new_heads(), Default::default()).unwrap();
    let filter = json!({"address": "0xdac1", "topics": []});
    let logs = h.session.subscribe(h.now, ethereum::logs(&filter), Default::default()).unwrap();
    h.start();
    let first = answer_subscribes(&mut h, &["0x9f3c11a2b4c5d6e7f8091a2b3c4d5e6f", "0x1"]);
    assert_eq!(first[0]["params"], json!(["newHeads"]));
    assert_eq!(first[1]["params"], json!(["logs", filter]));
    head(&mut h, "0x9f3c11a2b4c5d6e7f8091a2b3c4d5e6f", 100);
    h.server_json(json!({"jsonrpc": "2.0", "method": "eth_subscription",
        "params": {"subscription": "0x1", "result": {"blockNumber": "0x64", "logIndex": "0x0", "removed": false}}}));
    let mut tracker = GapTracker::new();
    let events = h.take_events();
    let mut routed = Vec::new();
    for e in &events {
        assert!(tracker.observe(h.now, e).is_none());
        if let Event::Data { subscription, .. } = e {
            routed.push(*subscription);
        }
    }
    assert_eq!(routed, [heads, logs]);

    h.drop_transport();
    let down_at = h.now;
    for e in h.take_events() {
        assert!(tracker.observe(h.now, &e).is_none());
    }
    h.advance(secs(2));
    let second = answer_subscribes(&mut h, &["0x2", "0x3"]);
    assert_eq!(
        second.iter().map(|v| v["params"].clone()).collect::<Vec<_>>(),
        first.iter().map(|v| v["params"].clone()).collect::<Vec<_>>(),
        "every logical subscription again"
    );
    head(&mut h, "0x9f3c11a2b4c5d6e7f8091a2b3c4d5e6f", 101); // an old id: never misrouted
    head(&mut h, "0x2", 105);
    let mut gaps = Vec::new();
    let mut data = Vec::new();
    for e in h.take_events() {
        if let Some(g) = tracker.observe(h.now, &e) {
            gaps.push(g);
        }
        if let Event::Data { subscription, .. } = e {
            data.push(subscription);
        }
    }
    assert_eq!(data, [heads], "the new id reaches the same handle; the old one nothing");
    assert_eq!(h.session.session_stats().data_unrouted, 1);
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    let g = gaps.iter().find(|g| g.subscription == heads).unwrap();
    assert_eq!(g.last_block, Some(100));
    assert_eq!(g.outage, h.now - down_at);
    let backfill = gaps.iter().find(|g| g.subscription == logs).unwrap().backfill_logs(&filter).unwrap();
    let nova_proto::session::RequestPayload::Call { method, params } = backfill else { panic!() };
    assert_eq!((method.as_str(), &params[0]["fromBlock"]), ("eth_getLogs", &json!("0x65")));
}

#[test]
fn rate_limited_answers_back_off_and_uncorrelated_errors_continue() {
    let mut h = harness();
    h.start();
    h.take_events();
    h.session.request(h.now, ethereum::block_number(), Default::default()).unwrap();
    h.pump();
    let sent = h.take_json();
    h.server_json(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}}));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::ServiceError { strategy: Strategy::Continue, .. })));
    h.server_json(
        json!({"jsonrpc": "2.0", "id": sent[0]["id"], "error": {"code": -32005, "message": "request rate limited"}}),
    );
    let events = h.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ServiceError { strategy: Strategy::RetryAfter(w), .. } if *w == secs(5)))
    );
    h.advance(secs(4));
    assert_eq!(h.connections, 1, "backing off");
    h.advance(secs(2));
    assert_eq!(h.connections, 2);
}

#[test]
fn batches_pass_through_and_malformed_frames_are_reported() {
    let mut h = harness();
    h.start();
    h.server_text(r#"[{"jsonrpc":"2.0","id":2,"result":"0x1"},{"jsonrpc":"2.0","id":1,"result":"0x2"}]"#);
    assert!(ethereum::is_batch(&h.messages[0]));
    h.server_text("{\"jsonrpc\":");
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Malformed { .. })));
}
