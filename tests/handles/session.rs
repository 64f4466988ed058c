//! The behaviour layer through the Handle, under every async runtime:
//! requests (answers, service errors, timeouts, cancellation, lost
//! connections, idempotent re-sends), subscriptions (restored under new
//! server ids after a drop, unsubscribed, backpressure), authentication
//! (readiness, refusal). The server is the testkit's JSON-RPC service; the
//! client uses nova-proto's `JsonRpc` adapter. Every wait is bounded.

use std::collections::BTreeSet;
use std::future::Future;

use crate::support::{Rt, bounded, ms, sleep, timeout};
use nova_driver::{Event, Events, Handle, Subscription};
use nova_proto::session::json::JsonRpc;
use nova_proto::session::{Readiness, RequestError, RequestOptions, RequestPayload, SubscribeOptions};
use nova_proto::{Backoff, Config, ConfigBuilder, Message, Termination};
use nova_testkit::{JsonRpcService, MockServer};
use serde_json::{Value, json};

/// Reconnects fast, no keepalive pings.
pub(crate) fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

/// JSON-RPC with `eth_subscribe` subscriptions.
pub(crate) fn rpc() -> JsonRpc {
    JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription")
}

pub(crate) fn call(method: &str, params: Value) -> RequestPayload {
    RequestPayload::call(method, params)
}

pub(crate) fn json_of(message: &Message) -> Value {
    serde_json::from_slice(message.as_bytes()).expect("JSON from the service")
}

/// The `result` of a JSON-RPC answer.
pub(crate) fn result_of(message: &Message) -> Value {
    json_of(message)["result"].clone()
}

/// The next event that is not a message or a pong.
pub(crate) async fn next_change(events: &mut Events) -> Event {
    bounded("a session event", async {
        loop {
            match events.recv().await.expect("the stream ended early") {
                Event::Message(_) | Event::Pong { .. } => {}
                event => return event,
            }
        }
    })
    .await
}

/// Reads events until one matches, returning it and what came before.
pub(crate) async fn until(
    events: &mut Events,
    what: &str,
    mut matches: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    bounded(what, async {
        loop {
            let event = next_change(events).await;
            if matches(&event) {
                return (event, before);
            }
            before.push(event);
        }
    })
    .await
}

/// The next data message of a subscription, as JSON.
async fn next_data(sub: &mut Subscription) -> Value {
    let message = bounded("subscription data", sub.recv()).await.expect("the subscription ended early");
    json_of(&message)
}

/// Waits (bounded) until `done` holds.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    bounded(what, async {
        while !done() {
            sleep(ms(10)).await;
        }
    })
    .await;
}

pub(crate) async fn connect_ready(rt: Rt, url: &str, adapter: JsonRpc) -> (Handle, Events) {
    let (handle, mut events) =
        bounded("connect", rt.connector(config(url)).adapter(adapter).connect()).await.expect("the session opens");
    until(&mut events, "Ready", |e| matches!(e, Event::Ready { .. })).await;
    (handle, events)
}

pub(crate) async fn answer<F: Future<Output = Result<Message, RequestError>>>(
    request: F,
) -> Result<Message, RequestError> {
    bounded("the answer to a request", request).await
}

on_every_runtime!(
    requests_are_answered_failed_and_timed_out,
    a_dropped_request_is_cancelled_and_its_late_answer_reaches_no_one,
    a_lost_connection_fails_pending_requests_and_resends_idempotent_ones,
    subscriptions_are_restored_under_new_server_ids_on_the_same_stream,
    unsubscribing_ends_the_stream_and_dropping_it_unsubscribes,
    subscribe_many_gives_one_stream_per_topic_in_order,
    requests_and_subscriptions_wait_for_authentication,
    a_refused_authentication_closes_the_session,
    a_slow_subscription_reader_holds_the_socket_and_loses_nothing,
);

async fn requests_are_answered_failed_and_timed_out(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    let (handle, _events) = connect_ready(rt, &server.url("/"), rpc()).await;
    assert!(handle.is_ready());
    assert_eq!(handle.readiness(), Readiness::Ready);

    let echo = handle.request(call("echo", json!({"n": 1})), RequestOptions::default());
    assert!(echo.id().is_some(), "the session gave it an id");
    assert_eq!(result_of(&answer(echo).await.unwrap()), json!({"n": 1}));

    match answer(handle.request(call("fail", json!(null)), RequestOptions::default())).await {
        Err(RequestError::Service(e)) => assert_eq!(e.code, Some(-32000)),
        other => panic!("expected a service error, got {other:?}"),
    }
    let slow = handle.request(call("never", json!(null)), RequestOptions::default().timeout(ms(200)));
    assert_eq!(answer(slow).await, Err(RequestError::Timeout));

    // A payload the adapter cannot encode is refused at once.
    let raw = handle.try_request(Message::text("not a call"), RequestOptions::default());
    assert!(matches!(raw, Err(RequestError::Encode(_))), "{raw:?}");
    assert!(matches!(
        answer(handle.request("not a call", RequestOptions::default())).await,
        Err(RequestError::Encode(_))
    ));

    let stats = handle.session_stats();
    assert_eq!((stats.requests_completed, stats.requests_failed, stats.requests_timed_out), (1, 1, 1));
}

async fn a_dropped_request_is_cancelled_and_its_late_answer_reaches_no_one(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().tick(ms(5)).behavior()).unwrap();
    let (handle, _events) = connect_ready(rt, &server.url("/"), rpc()).await;
    let late = handle.request(call("delay", json!([300, "late"])), RequestOptions::default());
    // Dropped unanswered: cancelled in the session at once.
    assert!(timeout(ms(50), late).await.is_none());
    assert_eq!(handle.session_stats().requests_cancelled, 1);
    // The answer still comes, 300 ms in, and reaches no one.
    eventually("the late answer", || handle.session_stats().late_responses == 1).await;
    // The session goes on.
    let echo = handle.request(call("echo", json!("still here")), RequestOptions::default());
    assert_eq!(result_of(&answer(echo).await.unwrap()), json!("still here"));
}

async fn a_lost_connection_fails_pending_requests_and_resends_idempotent_ones(rt: Rt) {
    let service = JsonRpcService::new();
    let server = MockServer::builder()
        .connection(service.behavior().drop_after(ms(300)))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let (handle, _events) = connect_ready(rt, &server.url("/"), rpc()).await;
    // `hold` is never answered on the first connection.
    let lost = handle.request(call("hold", json!("once")), RequestOptions::default());
    let kept = handle.request(call("hold", json!("again")), RequestOptions::default().idempotent(true));
    assert_eq!(answer(lost).await, Err(RequestError::ConnectionLost));
    assert_eq!(result_of(&answer(kept).await.unwrap()), json!("again"));
    let stats = handle.session_stats();
    assert_eq!((stats.requests_lost, stats.requests_resent), (1, 1));
}

async fn subscriptions_are_restored_under_new_server_ids_on_the_same_stream(rt: Rt) {
    let service = JsonRpcService::new();
    let server = MockServer::builder()
        .connection(service.behavior().drop_after(ms(300)))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let (handle, mut events) = connect_ready(rt, &server.url("/"), rpc()).await;
    let mut sub = handle.subscribe("newHeads", SubscribeOptions::default()).unwrap();
    let id = sub.id();
    until(&mut events, "Subscribed", |e| matches!(e, Event::Subscribed { id: got, .. } if *got == id)).await;

    // Data flows, the server drops, and the data keeps coming to the same
    // stream, under the id the new connection's server assigned.
    let mut server_ids = BTreeSet::new();
    let mut last_seq = 0;
    loop {
        let data = next_data(&mut sub).await;
        let params = &data["params"];
        server_ids.insert(params["subscription"].as_str().unwrap().to_owned());
        let seq = params["result"]["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "in order, never twice: {seq} after {last_seq}");
        last_seq = seq;
        if params["result"]["connection"] == json!(2) {
            break;
        }
    }
    assert_eq!(server_ids.len(), 2, "a new server id after the reconnect: {server_ids:?}");

    let (_, before) =
        until(&mut events, "Ready after the restore", |e| matches!(e, Event::Ready { restored: 1, failed: 0 })).await;
    assert!(before.iter().any(|e| matches!(e, Event::Disconnected { .. })), "{before:?}");
    assert!(before.iter().any(|e| matches!(e, Event::Subscribed { id: got, .. } if *got == id)), "{before:?}");
    assert_eq!(handle.session_stats().subscriptions_restored, 1);
    drop(server);
}

async fn unsubscribing_ends_the_stream_and_dropping_it_unsubscribes(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    let (handle, mut events) = connect_ready(rt, &server.url("/"), rpc()).await;
    let mut a = handle.subscribe("a", SubscribeOptions::default()).unwrap();
    let b = handle.subscribe("b", SubscribeOptions::default()).unwrap();
    let (a_id, b_id) = (a.id(), b.id());
    next_data(&mut a).await;

    a.unsubscribe().unwrap();
    bounded("the end of the stream", async { while a.recv().await.is_some() {} }).await;
    assert_eq!(a.failure(), None);
    until(&mut events, "Unsubscribed", |e| matches!(e, Event::Unsubscribed { id } if *id == a_id)).await;
    assert!(a.unsubscribe().is_err(), "already gone");

    drop(b);
    until(&mut events, "Unsubscribed after the drop", |e| matches!(e, Event::Unsubscribed { id } if *id == b_id)).await;
    let unsubscribes =
        server.received().iter().filter(|m| m.as_text().is_some_and(|t| t.contains("eth_unsubscribe"))).count();
    assert_eq!(unsubscribes, 2);
    // The topic is free again.
    let mut again = handle.subscribe("b", SubscribeOptions::default()).unwrap();
    assert_eq!(next_data(&mut again).await["params"]["result"]["topic"], json!("b"));
}

async fn subscribe_many_gives_one_stream_per_topic_in_order(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    let (handle, _events) = connect_ready(rt, &server.url("/"), rpc()).await;
    let mut subs = handle.subscribe_many(["x", "y", "z"], SubscribeOptions::default()).unwrap();
    for (sub, topic) in subs.iter_mut().zip(["x", "y", "z"]) {
        assert_eq!(next_data(sub).await["params"]["result"]["topic"], json!(topic));
    }
    // A topic already held refuses the whole call, and holds nothing new.
    assert!(handle.subscribe_many(["w", "y"], SubscribeOptions::default()).is_err());
    let mut w = handle.subscribe("w", SubscribeOptions::default()).unwrap();
    assert_eq!(next_data(&mut w).await["params"]["result"]["topic"], json!("w"));
}

async fn requests_and_subscriptions_wait_for_authentication(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().auth("auth", "good").behavior()).unwrap();
    let adapter = rpc().auth("auth", json!({}), Some(("token", nova_proto::Secret::new("good"))));
    let (handle, mut events) = rt.connector(config(&server.url("/"))).adapter(adapter).start().unwrap();
    // Made before the session is ready: both wait for the authentication
    // (the service refuses them before it).
    let request = handle.request(call("delay", json!([0, "after auth"])), RequestOptions::default());
    let mut sub = handle.subscribe("newHeads", SubscribeOptions::default()).unwrap();
    let (_, before) = until(&mut events, "Ready", |e| matches!(e, Event::Ready { .. })).await;
    assert!(matches!(before[..], [Event::Opened(_), Event::Subscribed { .. }]), "{before:?}");
    assert!(handle.is_ready());
    assert_eq!(result_of(&answer(request).await.unwrap()), json!("after auth"));
    assert_eq!(next_data(&mut sub).await["params"]["result"]["topic"], json!("newHeads"));
    assert_eq!(handle.session_stats().auth_attempts, 1);
}

async fn a_refused_authentication_closes_the_session(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().auth("auth", "good").behavior()).unwrap();
    let adapter = rpc().auth("auth", json!({}), Some(("token", nova_proto::Secret::new("bad"))));
    let (handle, mut events) = rt.connector(config(&server.url("/"))).adapter(adapter).start().unwrap();
    let request = handle.request(call("echo", json!(1)), RequestOptions::default());
    let mut sub = handle.subscribe("newHeads", SubscribeOptions::default()).unwrap();
    let (failed, _) = until(&mut events, "AuthFailed", |e| matches!(e, Event::AuthFailed { .. })).await;
    assert!(matches!(failed, Event::AuthFailed { retry: false, .. }), "{failed:?}");
    let (closed, _) = until(&mut events, "Closed", |e| matches!(e, Event::Closed(_))).await;
    let Event::Closed(closed) = closed else { unreachable!() };
    assert_eq!(closed.termination, Termination::AuthFailed);
    assert_eq!(answer(request).await, Err(RequestError::Closed));
    assert_eq!(bounded("the end of the stream", sub.recv()).await, None);
    assert!(matches!(handle.try_request(call("echo", json!(1)), RequestOptions::default()), Err(RequestError::Closed)));
    assert_eq!(handle.session_stats().auth_failures, 1);
}

async fn a_slow_subscription_reader_holds_the_socket_and_loses_nothing(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().tick(ms(1)).behavior()).unwrap();
    let (handle, mut events) =
        bounded("connect", rt.connector(config(&server.url("/"))).adapter(rpc()).subscription_capacity(8).connect())
            .await
            .unwrap();
    until(&mut events, "Ready", |e| matches!(e, Event::Ready { .. })).await;
    let mut sub = handle.subscribe("fast", SubscribeOptions::default()).unwrap();
    // Not read for a while: the feed fills (8), the driver stops reading,
    // and the server's ticks wait behind TCP.
    sleep(ms(300)).await;
    let delivered = handle.session_stats().data_delivered;
    assert!(delivered <= 16, "decoding stopped near the bound, not after {delivered} messages");
    let mut last = 0;
    for _ in 0..100 {
        let seq = next_data(&mut sub).await["params"]["result"]["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "nothing dropped, nothing twice");
        last = seq;
    }
    assert_eq!(handle.discarded_data(), 0);
}
