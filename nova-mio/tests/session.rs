//! The behaviour layer in a caller-owned loop: requests whose answers come
//! out of `poll_event` as `Event::Response`, subscription data as
//! `Event::Data` under a stable id across reconnects, and the blocking
//! client's `request` and `subscribe`. The server is the testkit's JSON-RPC
//! service; the client uses nova-proto's `JsonRpc` adapter. Every wait is
//! bounded; a test that hangs fails instead.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use nova_mio::blocking::{self, Client};
use nova_mio::{Connection, Connector, Event};
use nova_proto::session::json::JsonRpc;
use nova_proto::session::{RequestError, RequestOptions, RequestPayload, SubscribeOptions};
use nova_proto::{Backoff, Config, ConfigBuilder, Message};
use nova_testkit::{JsonRpcService, MockServer};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(url: &str) -> ConfigBuilder {
    Config::builder(url).backoff(Backoff::constant(ms(20), 0.0)).keepalive(None)
}

fn rpc() -> JsonRpc {
    JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription")
}

fn call(method: &str, params: Value) -> RequestPayload {
    RequestPayload::call(method, params)
}

fn json_of(message: &Message) -> Value {
    serde_json::from_slice(message.as_bytes()).expect("JSON from the service")
}

/// Events until one matches; returns it and what came before.
fn until(client: &mut Client, mut matches: impl FnMut(&Event) -> bool) -> (Event, Vec<Event>) {
    let deadline = Instant::now() + BOUND;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = client.recv_timeout(left).expect("an event in time");
        if matches(&event) {
            return (event, before);
        }
        before.push(event);
    }
}

#[test]
fn blocking_requests_are_answered_fail_and_time_out() {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    let mut client = blocking::connect_with(Connector::new(config(&server.url("/"))).adapter(rpc())).unwrap();
    until(&mut client, |e| matches!(e, Event::Ready { .. }));
    assert!(client.connection().is_ready());

    let answer = client.request(call("echo", json!([1, 2])), RequestOptions::default()).unwrap();
    assert_eq!(json_of(&answer)["result"], json!([1, 2]));
    match client.request(call("fail", json!(null)), RequestOptions::default()) {
        Err(RequestError::Service(e)) => assert_eq!(e.code, Some(-32000)),
        other => panic!("expected a service error, got {other:?}"),
    }
    let started = Instant::now();
    let timed_out = client.request(call("never", json!(null)), RequestOptions::default().timeout(ms(200)));
    assert_eq!(timed_out, Err(RequestError::Timeout));
    assert!(started.elapsed() < BOUND);
    let stats = client.connection().session_stats();
    assert_eq!((stats.requests_completed, stats.requests_failed, stats.requests_timed_out), (1, 1, 1));
}

#[test]
fn blocking_subscription_data_keeps_its_id_across_a_drop() {
    let service = JsonRpcService::new();
    let server = MockServer::builder()
        .connection(service.behavior().drop_after(ms(300)))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let mut client = blocking::connect_with(Connector::new(config(&server.url("/"))).adapter(rpc())).unwrap();
    until(&mut client, |e| matches!(e, Event::Ready { .. }));
    let id = client.subscribe("newHeads", SubscribeOptions::default()).unwrap();

    let mut server_ids = BTreeSet::new();
    let mut saw = Vec::new();
    loop {
        let (event, before) = until(&mut client, |e| matches!(e, Event::Data { .. }));
        saw.extend(before);
        let Event::Data { subscription, message } = event else { unreachable!() };
        assert_eq!(subscription, id, "the same id on every connection");
        let params = json_of(&message)["params"].clone();
        server_ids.insert(params["subscription"].as_str().unwrap().to_owned());
        if params["result"]["connection"] == json!(2) {
            break;
        }
    }
    assert_eq!(server_ids.len(), 2, "{server_ids:?}");
    assert!(saw.iter().any(|e| matches!(e, Event::Ready { restored: 1, failed: 0 })), "{saw:?}");
    // A request while data flows: the data stays queued, in order.
    let answer = client.request(call("echo", json!("x")), RequestOptions::default()).unwrap();
    assert_eq!(json_of(&answer)["result"], json!("x"));
    until(&mut client, |e| matches!(e, Event::Data { subscription, .. } if *subscription == id));
    client.unsubscribe(id).unwrap();
    until(&mut client, |e| matches!(e, Event::Unsubscribed { id: got } if *got == id));
}

/// Drives `connection` until `done` says so with an event it took.
fn drive(poll: &mut Poll, connection: &mut Connection, mut done: impl FnMut(&mut Connection, Event) -> bool) {
    let deadline = Instant::now() + BOUND;
    let mut readiness = Events::with_capacity(16);
    loop {
        while let Some(event) = connection.poll_event() {
            if done(connection, event) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out");
        let timeout = connection.poll_timeout().map(|at| at.saturating_duration_since(Instant::now()));
        poll.poll(&mut readiness, Some(timeout.unwrap_or(BOUND).min(ms(100)))).unwrap();
        let now = Instant::now();
        for event in readiness.iter() {
            connection.on_event(poll.registry(), event, now);
        }
        connection.on_timeout(poll.registry(), now);
    }
}

#[test]
fn responses_come_out_of_poll_event_and_a_cancel_is_answered_at_once() {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    let mut poll = Poll::new().unwrap();
    let connector = Connector::new(config(&server.url("/"))).adapter(rpc());
    let mut connection = connector.start(poll.registry(), Token(3), Instant::now()).unwrap();
    // Made before the connection is ready: it waits for `Ready`.
    let echo = connection.request(call("echo", json!("hi")), RequestOptions::default()).unwrap();
    let never = connection.request(call("never", json!(null)), RequestOptions::default()).unwrap();
    let mut answered = None;
    drive(&mut poll, &mut connection, |_, event| match event {
        Event::Response { id, result, .. } if id == echo => {
            answered = Some(result);
            true
        }
        _ => false,
    });
    assert_eq!(json_of(&answered.unwrap().unwrap())["result"], json!("hi"));

    assert!(connection.cancel(never));
    assert!(!connection.cancel(never), "answered already");
    let mut cancelled = None;
    drive(&mut poll, &mut connection, |_, event| match event {
        Event::Response { id, result, .. } if id == never => {
            cancelled = Some(result);
            true
        }
        _ => false,
    });
    assert_eq!(cancelled, Some(Err(RequestError::Cancelled)));
    assert_eq!(connection.session_stats().requests_cancelled, 1);
    connection.deregister(poll.registry());
}
