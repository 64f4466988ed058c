//! Deribit's rules, in memory: a `Session` with the Deribit adapter against a
//! scripted server (the test plays the server frame by frame).
#![cfg(feature = "deribit")]
#![allow(missing_docs)]

mod support;

use nova_platforms::deribit::{self, Credentials, Deribit, Interval};
use nova_platforms::{RateLimitAction, WallClock};
use nova_proto::Event;
use nova_proto::session::{RequestError, Secret, Strategy};
use serde_json::{Value, json};
use support::{Harness, data, secs};

fn adapter() -> Deribit {
    let creds =
        Credentials::client_signature("KEY", Secret::new("deribit_test_secret"), WallClock::fixed(1_700_000_000_000));
    Deribit::new().credentials(creds)
}

fn harness(adapter: Deribit) -> Harness {
    let config = deribit::config("ws://deribit.test/ws/api/v2").build().unwrap();
    Harness::new(config, adapter)
}

fn methods(sent: &[Value]) -> Vec<&str> {
    sent.iter().filter_map(|v| v["method"].as_str()).collect()
}

fn answer(h: &mut Harness, request: &Value, result: Value) {
    h.server_json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}));
}

fn auth_ok(h: &mut Harness, request: &Value, n: u32) {
    answer(
        h,
        request,
        json!({"access_token": format!("AT{n}"), "refresh_token": format!("RT{n}"), "expires_in": 900, "scope": "connection"}),
    );
}

/// What the client sent once authenticated (or at once, anonymous):
/// `public/set_heartbeat` first, enabling server heartbeats on this
/// connection (answered here); the rest is returned.
fn after_auth(h: &mut Harness) -> Vec<Value> {
    let mut sent = h.take_json();
    assert_eq!(methods(&sent).first(), Some(&"public/set_heartbeat"), "set_heartbeat right after the auth");
    let setup = sent.remove(0);
    answer(h, &setup, json!("ok"));
    sent
}

#[test]
fn auth_goes_first_then_subscriptions_and_data_is_routed_by_channel() {
    let mut h = harness(adapter());
    let ticker =
        h.session.subscribe(h.now, deribit::ticker("BTC-PERPETUAL", Interval::Ms100), Default::default()).unwrap();
    let trades =
        h.session.subscribe(h.now, deribit::trades("ETH-PERPETUAL", Interval::Raw), Default::default()).unwrap();
    h.start();
    let sent = h.take_json();
    assert_eq!(methods(&sent), ["public/auth"], "nothing goes before the auth answer");
    let params = &sent[0]["params"];
    assert_eq!(params["grant_type"], "client_signature");
    let expected = deribit::signature(
        &Secret::new("deribit_test_secret"),
        1_700_000_000_000,
        params["nonce"].as_str().unwrap(),
        "",
    );
    assert_eq!(params["signature"], expected);
    auth_ok(&mut h, &sent[0], 1);
    let sent = after_auth(&mut h);
    assert_eq!(methods(&sent), ["public/subscribe"]);
    assert_eq!(sent[0]["params"]["channels"], json!(["ticker.BTC-PERPETUAL.100ms", "trades.ETH-PERPETUAL.raw"]));
    answer(&mut h, &sent[0], json!(["ticker.BTC-PERPETUAL.100ms", "trades.ETH-PERPETUAL.raw"]));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Ready { failed: 0, .. })));

    h.server_json(json!({"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.ETH-PERPETUAL.raw","data":[{"price":1}]}}));
    h.server_json(json!({"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{"mark_price":64000.5}}}));
    let got = data(&h.take_events());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, trades.0);
    assert_eq!(got[1].0, ticker.0);
    assert_eq!(got[1].1["params"]["data"]["mark_price"], 64000.5);
}

#[test]
fn a_drop_means_a_full_auth_again_before_the_same_channels_are_restored() {
    let mut h = harness(adapter());
    h.session.subscribe(h.now, deribit::ticker("BTC-PERPETUAL", Interval::Ms100), Default::default()).unwrap();
    h.start();
    let sent = h.take_json();
    let first_nonce = sent[0]["params"]["nonce"].clone();
    auth_ok(&mut h, &sent[0], 1);
    let sub = after_auth(&mut h);
    answer(&mut h, &sub[0], json!(["ticker.BTC-PERPETUAL.100ms"]));
    h.take_events();

    h.drop_transport();
    h.advance(secs(2));
    assert_eq!(h.connections, 2);
    let sent = h.take_json();
    assert_eq!(methods(&sent), ["public/auth"], "re-auth before resubscribe");
    assert_eq!(sent[0]["params"]["grant_type"], "client_signature", "connection-scoped tokens died with the socket");
    assert_ne!(sent[0]["params"]["nonce"], first_nonce, "nonces are single-use");
    auth_ok(&mut h, &sent[0], 2);
    let sub = after_auth(&mut h);
    assert_eq!(methods(&sub), ["public/subscribe"]);
    assert_eq!(sub[0]["params"]["channels"], json!(["ticker.BTC-PERPETUAL.100ms"]));
    answer(&mut h, &sub[0], json!(["ticker.BTC-PERPETUAL.100ms"]));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Ready { restored: 1, failed: 0 })));
}

#[test]
fn expiring_tokens_are_refreshed_on_the_same_connection() {
    let mut h = harness(adapter().heartbeat_interval(None));
    h.start();
    let sent = h.take_json();
    answer(&mut h, &sent[0], json!({"access_token": "AT1", "refresh_token": "RT1", "expires_in": 60}));
    // Renewed 30 s before expiry.
    h.advance(secs(31));
    let sent = h.take_json();
    assert_eq!(methods(&sent), ["public/auth"]);
    assert_eq!(sent[0]["params"], json!({"grant_type": "refresh_token", "refresh_token": "RT1"}));
    assert_eq!(h.connections, 1);
}

#[test]
fn server_heartbeats_are_enabled_and_test_requests_answered() {
    let mut h = harness(Deribit::new());
    h.start();
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Ready { .. })));
    // At once on an anonymous connection, not riding on a heartbeat.
    let sent = h.take_json();
    assert_eq!(methods(&sent), ["public/set_heartbeat"]);
    assert_eq!(sent[0]["params"], json!({"interval": 30}));
    answer(&mut h, &sent[0], json!("ok"));
    h.server_json(json!({"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}));
    let sent = h.take_json();
    assert_eq!(methods(&sent), ["public/test"], "answered at once");
    h.server_json(json!({"jsonrpc":"2.0","id": sent[0]["id"], "result": {"version": "1.2.26"}}));
    h.server_json(json!({"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}));
    assert!(h.take_json().is_empty(), "a plain heartbeat needs no answer");
    assert!(h.take_events().iter().all(|e| !matches!(e, Event::Malformed { .. } | Event::Response { .. })));
}

#[test]
fn a_silent_connection_is_declared_dead_after_two_intervals() {
    let mut h = harness(Deribit::new().heartbeat_interval(Some(secs(10))));
    h.start();
    h.take_json();
    // No answer to anything (set_heartbeat included) for three intervals
    // (the harness still pongs protocol pings; silence here is at the JSON
    // level): the beats at 20 s and 30 s find the previous one unanswered.
    h.advance(secs(25));
    assert!(h.is_live(), "one miss is tolerated");
    h.advance(secs(6));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::HeartbeatMissed { missed: 2, limit: 2 })), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { .. })));
}

#[test]
fn too_many_requests_backs_off_for_the_configured_wait() {
    let mut h = harness(Deribit::new().on_rate_limit(RateLimitAction::Reconnect(secs(7))));
    h.start();
    let id = h.session.request(h.now, deribit::get_time(), Default::default()).unwrap();
    h.pump();
    let sent = h.take_json();
    h.server_json(json!({"jsonrpc":"2.0","id": sent[0]["id"],"error":{"code":10028,"message":"too_many_requests"}}));
    let events = h.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ServiceError { strategy: Strategy::RetryAfter(w), .. } if *w == secs(7)))
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::Response { id: got, result: Err(RequestError::ConnectionLost), .. } if *got == id)
    ));
    let Some(Event::Disconnected { reconnect: Some(r), .. }) =
        events.iter().find(|e| matches!(e, Event::Disconnected { .. }))
    else {
        panic!("{events:#?}")
    };
    assert_eq!(r.delay, secs(7));
    h.advance(secs(6));
    assert_eq!(h.connections, 1, "no reconnect before the wait");
    h.advance(secs(2));
    assert_eq!(h.connections, 2);
}

#[test]
fn malformed_json_is_reported_and_the_session_goes_on() {
    let mut h = harness(Deribit::new());
    h.start();
    h.server_text("{\"jsonrpc\":\"2.0\",");
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Malformed { .. })));
    assert!(h.is_live());
}

#[test]
fn an_unaccepted_channel_fails_its_subscription() {
    let mut h = harness(Deribit::new());
    h.start();
    h.take_events();
    after_auth(&mut h);
    let sub = h.session.subscribe(h.now, "ticker.NOPE.100ms", Default::default()).unwrap();
    h.pump();
    let sent = h.take_json();
    answer(&mut h, &sent[0], json!([]));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::SubscriptionFailed { id, .. } if *id == sub)), "{events:#?}");
}

#[test]
fn a_batch_taken_in_part_fails_only_the_channels_left_out() {
    let mut h = harness(Deribit::new());
    let good = h.session.subscribe(h.now, "ticker.BTC-PERPETUAL.100ms", Default::default()).unwrap();
    let bad = h.session.subscribe(h.now, "ticker.NOPE.100ms", Default::default()).unwrap();
    h.start();
    let sent = after_auth(&mut h);
    assert_eq!(sent[0]["params"]["channels"], json!(["ticker.BTC-PERPETUAL.100ms", "ticker.NOPE.100ms"]), "one batch");
    answer(&mut h, &sent[0], json!(["ticker.BTC-PERPETUAL.100ms"]));
    let events = h.take_events();
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::SubscriptionFailed { id, error: RequestError::Service(e) } => Some((*id, e.message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [(bad, "channel not accepted: ticker.NOPE.100ms".to_owned())]);
    assert!(events.iter().any(|e| matches!(e, Event::Subscribed { id, .. } if *id == good)), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, Event::Ready { restored: 1, failed: 1 })), "{events:#?}");
    // Data for the channel taken still routes to it.
    h.server_json(json!({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": "ticker.BTC-PERPETUAL.100ms", "data": {}}}));
    let delivered: Vec<u64> = data(&h.take_events()).into_iter().map(|(id, _)| id).collect();
    assert_eq!(delivered, [good.0]);
}

#[test]
fn a_bad_key_stops_the_session() {
    let mut h = harness(adapter());
    h.start();
    let sent = h.take_json();
    h.server_json(json!({"jsonrpc":"2.0","id": sent[0]["id"],"error":{"code":13004,"message":"invalid_credentials"}}));
    let events = h.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::AuthFailed { retry: false, .. })));
    assert!(h.closed);
    let debug = format!("{:?} {:?}", events, h.session);
    assert!(!debug.contains("deribit_test_secret"));
}
