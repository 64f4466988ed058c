//! The rest of the behaviour layer through the Handle, under every async
//! runtime (`session.rs` has requests, subscriptions and authentication):
//! application heartbeats (a silent server found dead, a server's heartbeat
//! answered), client-side rate limits (a burst then spacing, a full queue as
//! a typed error, a server's retry-after pausing sends), the reconnect
//! policy's circuit breaker, malformed messages and service errors.
//!
//! The server is the testkit's JSON-RPC service, its transcript the record
//! of what arrived when. No assertion needs the machine to be fast: times
//! are checked only as lower bounds the limits guarantee (a slow machine
//! only makes gaps longer) or as counts within windows with a message of
//! slack; every wait is bounded.

use std::time::{Duration, Instant};

use crate::session::{answer, call, config, eventually, json_of, result_of, rpc, until};
use crate::support::{Rt, bounded, ms, timeout};
use nova_driver::{Event, Events, Handle};
use nova_proto::limits::{Bucket, RateLimits};
use nova_proto::session::json::JsonRpc;
use nova_proto::session::{ErrorPolicy, HeartbeatSpec, RequestError, RequestOptions, SessionConfig, Strategy};
use nova_proto::{CircuitBreaker, Disconnect, Error, Message, Reconnect, Timeout};
use nova_testkit::{Behavior, Logged, MockServer};
use nova_testkit::{Entry, JsonRpcService};
use serde_json::{Value, json};

on_every_runtime!(
    heartbeats_find_a_silent_server_dead_and_the_session_reconnects,
    a_server_heartbeat_is_answered_and_never_reaches_the_application,
    a_burst_goes_at_once_and_the_rest_is_spaced_by_the_rate_limit,
    a_full_rate_queue_is_a_typed_error,
    a_retry_after_from_the_service_pauses_sending,
    the_circuit_breaker_holds_reconnects_for_its_cool_down_then_probes,
    malformed_json_and_service_errors_reach_the_application_and_the_session_stays,
    a_service_error_with_retry_after_reconnects_after_exactly_that_wait,
);

/// Starts a session with `adapter` and `settings` and waits until it is ready.
async fn ready(rt: Rt, server: &MockServer, adapter: JsonRpc, settings: SessionConfig) -> (Handle, Events) {
    let connector = rt.connector(config(&server.url("/"))).adapter(adapter).session_config(settings);
    let (handle, mut events) = bounded("connect", connector.connect()).await.expect("the session opens");
    until(&mut events, "Ready", |e| matches!(e, Event::Ready { .. })).await;
    (handle, events)
}

/// The server's transcript entries that are messages it received, parsed,
/// with when and on which connection.
fn received(server: &MockServer) -> Vec<(Duration, u32, Value)> {
    server
        .transcript()
        .entries()
        .iter()
        .filter_map(|Entry { at, conn, what }| match what {
            Logged::Received(m) => Some((*at, conn.unwrap_or(0), json_of(m))),
            _ => None,
        })
        .collect()
}

/// When the server first logged `what` on connection `conn`.
fn logged_at(server: &MockServer, conn: u32, mut what: impl FnMut(&Logged) -> bool) -> Option<Duration> {
    server.transcript().entries().iter().find(|e| e.conn == Some(conn) && what(&e.what)).map(|e| e.at)
}

/// The calls of `method` the server received, with when and on which connection.
fn calls(server: &MockServer, method: &str) -> Vec<(Duration, u32, Value)> {
    received(server).into_iter().filter(|(_, _, v)| v["method"] == json!(method)).collect()
}

/// The answers the server sent on connection `conn` whose text contains `needle`.
fn sent_containing(server: &MockServer, conn: u32, needle: &str) -> usize {
    server
        .transcript()
        .entries()
        .iter()
        .filter(|e| e.conn == Some(conn))
        .filter(|e| matches!(&e.what, Logged::Sent(m) if m.as_text().is_some_and(|t| t.contains(needle))))
        .count()
}

// ---- 1. application heartbeats ----

async fn heartbeats_find_a_silent_server_dead_and_the_session_reconnects(rt: Rt) {
    let service = JsonRpcService::new();
    // The first connection answers heartbeats, then stops sending anything
    // (a dead peer behind a half-open connection); the next one is healthy.
    let server = MockServer::builder()
        .connection(service.behavior().go_silent_after(ms(700)))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let spec = HeartbeatSpec::new(ms(150), 2);
    // No keepalive pings (see `config`): only the application heartbeat can
    // find the dead peer.
    let (handle, mut events) =
        ready(rt, &server, JsonRpc::new().heartbeat("ping", spec), SessionConfig::default()).await;

    let (dropped, before) =
        until(&mut events, "the heartbeat timeout", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { cause, reconnect } = dropped else { unreachable!() };
    assert!(matches!(cause, Disconnect::Failed(Error::Timeout(Timeout::Heartbeat))), "{cause:?}");
    assert!(reconnect.is_some(), "a dead peer is worth a reconnect");
    // The misses counted up to the limit, then the connection went. (A
    // miss earlier, on a slow turn, was forgiven by the next answer.)
    let misses: Vec<(u32, u32)> = before
        .iter()
        .filter_map(|e| match e {
            Event::HeartbeatMissed { missed, limit } => Some((*missed, *limit)),
            _ => None,
        })
        .collect();
    assert!(misses.ends_with(&[(1, 2), (2, 2)]), "{misses:?}");
    // While the server was alive its answers kept the connection.
    assert!(sent_containing(&server, 1, "\"pong\"") >= 1, "the heartbeat was answered before the silence");
    let stats = handle.session_stats();
    assert!(stats.heartbeats_missed >= 2 && stats.heartbeats_sent >= 3, "{stats:?}");

    // Reconnected, ready again, and the heartbeat runs (answered) on the
    // new connection.
    let (_, before) = until(&mut events, "Ready again", |e| matches!(e, Event::Ready { .. })).await;
    assert!(before.iter().any(|e| matches!(e, Event::Opened(o) if o.attempt >= 1)), "{before:?}");
    eventually("heartbeats answered on the new connection", || sent_containing(&server, 2, "\"pong\"") >= 2).await;
    assert!(calls(&server, "ping").iter().any(|(_, conn, _)| *conn == 2));
}

async fn a_server_heartbeat_is_answered_and_never_reaches_the_application(rt: Rt) {
    // Three heartbeat notifications, 30 ms apart, on top of the service.
    let beat = |n: u64| {
        Message::text(
            json!({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request", "n": n}}).to_string(),
        )
    };
    let server = MockServer::start(JsonRpcService::new().behavior().push(ms(30), Some(3), beat)).unwrap();
    let adapter = JsonRpc::new().server_heartbeat("heartbeat", "public/test");
    let (handle, mut events) = ready(rt, &server, adapter, SessionConfig::default()).await;

    // The server sees a reply to each, with the reply id the adapter uses.
    eventually("three heartbeat replies at the server", || calls(&server, "public/test").len() == 3).await;
    for (_, _, reply) in calls(&server, "public/test") {
        assert_eq!(reply["id"], json!("heartbeat"), "{reply}");
    }
    // The service answers the replies (with an error: it has no such
    // method); the adapter recognises them and the session drops them.
    eventually("the answers to the replies are ignored", || handle.session_stats().ignored == 3).await;
    assert_eq!(handle.session_stats().server_heartbeats, 3);
    // Neither the heartbeats nor those answers reached the application.
    while let Some(Some(event)) = timeout(ms(100), events.recv()).await {
        assert!(
            !matches!(event, Event::Message(_) | Event::ServiceError { .. } | Event::Malformed { .. }),
            "{event:?}"
        );
    }
}

// ---- 2. rate limits ----

async fn a_burst_goes_at_once_and_the_rest_is_spaced_by_the_rate_limit(rt: Rt) {
    const N: u64 = 15;
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    // 5 a second in bursts of 5: the bucket is full when the session opens.
    let limits = RateLimits::per_second(5).unwrap().max_queued(32);
    let (handle, _events) = ready(rt, &server, JsonRpc::new(), SessionConfig::default().rate_limits(limits)).await;
    // All handed to the session at once; over the limit is waiting, not an error.
    let requests: Vec<_> =
        (0..N).map(|n| handle.try_request(call("echo", json!(n)), RequestOptions::default()).unwrap()).collect();
    for (n, request) in (0..N).zip(requests) {
        assert_eq!(result_of(&answer(request).await.unwrap()), json!(n));
    }

    let echoes = calls(&server, "echo");
    let order: Vec<u64> = echoes.iter().map(|(_, _, v)| v["params"].as_u64().unwrap()).collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "every request, once, in order");
    let at: Vec<Duration> = echoes.iter().map(|(at, _, _)| *at).collect();
    let first = at[0];
    // The burst: without it the fifth would come 800 ms after the first.
    assert!(at[4] - first < ms(600), "the first five together: {at:?}");
    // Then one every 200 ms at most: within `w` of the first, at most the
    // burst plus one per 200 ms (and one of slack for the first's latency).
    // A slow machine only lowers these counts.
    for w in [300, 700, 1100, 1500] {
        let arrived = at.iter().filter(|t| **t <= first + ms(w)).count() as u64;
        assert!(arrived <= 5 + w / 200 + 1, "{arrived} within {w} ms: {at:?}");
    }
    // Ten after the burst take two seconds at 5 a second, never less
    // (a bound the limiter keeps on any machine; 1.5 s leaves room for a
    // late first arrival).
    assert!(at[N as usize - 1] - first >= ms(1500), "{at:?}");
}

async fn a_full_rate_queue_is_a_typed_error(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    // Bursts of 2, then one token every 10 s; one request may wait.
    let bucket = Bucket::new(2, 1, Duration::from_secs(10)).unwrap();
    let limits = RateLimits::none().connection(bucket).max_queued(1);
    let (handle, _events) = ready(rt, &server, JsonRpc::new(), SessionConfig::default().rate_limits(limits)).await;
    let sent: Vec<_> =
        (0..2).map(|n| handle.try_request(call("echo", json!(n)), RequestOptions::default()).unwrap()).collect();
    let waiting = handle.try_request(call("echo", json!("waits")), RequestOptions::default()).unwrap();
    let before = Instant::now();
    match handle.try_request(call("echo", json!("refused")), RequestOptions::default()) {
        // The error says when the queue moves: when the waiting one's token comes.
        Err(RequestError::RateLimited { until }) => assert!(until > before + Duration::from_secs(1), "{until:?}"),
        other => panic!("expected RateLimited, got {:?}", other.map(|r| r.id())),
    }
    // The future form gives the same error.
    let refused = handle.request(call("echo", json!("refused")), RequestOptions::default());
    assert!(matches!(answer(refused).await, Err(RequestError::RateLimited { .. })));
    // The burst went and was answered; the refused ones never reached the server.
    for (n, request) in sent.into_iter().enumerate() {
        assert_eq!(result_of(&answer(request).await.unwrap()), json!(n));
    }
    assert!(!calls(&server, "echo").iter().any(|(_, _, v)| v["params"] == json!("refused")));
    // Dropping the waiting one cancels it before it spends a token.
    drop(waiting);
    eventually("the waiting request cancelled", || handle.session_stats().requests_cancelled == 1).await;
}

async fn a_retry_after_from_the_service_pauses_sending(rt: Rt) {
    let server = MockServer::start(JsonRpcService::new().behavior()).unwrap();
    // A generous limit that never holds anything back by itself.
    let limits = RateLimits::per_second(100).unwrap();
    let (handle, _events) = ready(rt, &server, JsonRpc::new(), SessionConfig::default().rate_limits(limits)).await;
    match answer(handle.request(call("busy", json!([0.4])), RequestOptions::default())).await {
        Err(RequestError::Service(e)) => {
            assert_eq!((e.code, e.message.as_str()), (Some(-32005), "too many requests"));
            assert_eq!(e.retry_after, Some(ms(400)), "read from error.data.retry_after");
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    // Made right after the answer: they wait out the pause, then all go.
    let after: Vec<_> =
        (0..3).map(|n| handle.try_request(call("echo", json!(n)), RequestOptions::default()).unwrap()).collect();
    for (n, request) in after.into_iter().enumerate() {
        assert_eq!(result_of(&answer(request).await.unwrap()), json!(n));
    }
    let busy_answered =
        logged_at(&server, 1, |w| matches!(w, Logged::Sent(m) if m.as_text().is_some_and(|t| t.contains("-32005"))))
            .expect("the server answered busy");
    for (at, _, v) in calls(&server, "echo") {
        // The client paused from when it read the answer, after the server
        // sent it: so at least 400 ms after that on the server's clock.
        assert!(at >= busy_answered + ms(400), "{v} came {:?} after the retry-after", at - busy_answered);
    }
}

// ---- 3. the circuit breaker ----

async fn the_circuit_breaker_holds_reconnects_for_its_cool_down_then_probes(rt: Rt) {
    let service = JsonRpcService::new();
    let server = MockServer::builder()
        .connection(Behavior::refuse(503))
        .connection(Behavior::refuse(503))
        .connection(Behavior::refuse(503))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let cool_down = ms(300);
    let config =
        config(&server.url("/")).circuit_breaker(Some(CircuitBreaker::new(3, Duration::from_secs(10), cool_down)));
    let (_handle, mut events) = rt.connector(config).adapter(rpc()).start().unwrap();
    let (_, before) = until(&mut events, "Ready after the probe", |e| matches!(e, Event::Ready { .. })).await;

    let plans: Vec<Reconnect> = before
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { reconnect, .. } => Some(reconnect.expect("refusals are retried")),
            _ => None,
        })
        .collect();
    assert_eq!(plans.len(), 3, "{before:?}");
    // Two refusals are the backoff's (20 ms); the third opens the breaker:
    // the next attempt waits out the cool-down and is a probe.
    assert!(!plans[0].breaker_open && !plans[1].breaker_open, "{plans:?}");
    assert!(plans[2].breaker_open, "{plans:?}");
    assert!(plans[2].delay >= cool_down, "{plans:?}");
    // The probe opened (attempt 3 = the third reconnect), and the session is ready on it.
    let opened: Vec<u32> = before
        .iter()
        .filter_map(|e| match e {
            Event::Opened(o) => Some(o.attempt),
            _ => None,
        })
        .collect();
    assert_eq!(opened, [3], "{before:?}");
    // Nothing was attempted during the cool-down: the server saw the probe
    // at least the cool-down after it refused the third attempt.
    let refused = logged_at(&server, 3, |w| matches!(w, Logged::Answered { status: 503 })).unwrap();
    let probe = logged_at(&server, 4, |w| matches!(w, Logged::Connected)).unwrap();
    assert!(probe >= refused + cool_down, "probe {probe:?}, third refusal {refused:?}");
    assert_eq!(server.connections().len(), 4);
}

// ---- 4. malformed messages and service errors ----

/// Not JSON: the value of `result` is a bare word.
const GARBAGE: &str = r#"{"jsonrpc":"2.0","id":1,"result": oops}"#;

/// A JSON-RPC error with no id: an error of the service, not of a request.
fn notice(code: i64, message: &str, retry_after: Option<f64>) -> String {
    let mut error = json!({"code": code, "message": message});
    if let Some(secs) = retry_after {
        error["data"] = json!({"retry_after": secs});
    }
    json!({"jsonrpc": "2.0", "id": null, "error": error}).to_string()
}

async fn malformed_json_and_service_errors_reach_the_application_and_the_session_stays(rt: Rt) {
    let behavior = JsonRpcService::new().behavior().send_on_open(GARBAGE).send_on_open(notice(
        -32099,
        "maintenance at noon",
        None,
    ));
    let server = MockServer::start(behavior).unwrap();
    let (handle, mut events) = rt.connector(config(&server.url("/"))).adapter(rpc()).start().unwrap();

    let (malformed, _) = until(&mut events, "Malformed", |e| matches!(e, Event::Malformed { .. })).await;
    let Event::Malformed { error, message } = malformed else { unreachable!() };
    assert_eq!(message.as_text(), Some(GARBAGE), "handed over whole, as it came");
    assert!(error.reason.contains("column"), "serde_json says where: {error}");

    let (service, _) = until(&mut events, "ServiceError", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = service else { unreachable!() };
    assert_eq!((error.code, error.message.as_str()), (Some(-32099), "maintenance at noon"));
    assert_eq!(strategy, Strategy::Continue, "JsonRpc's default policy: report and continue");

    // The session stays on the same connection: requests work, and a
    // request's own error carries the service's code and message.
    let echo = answer(handle.request(call("echo", json!("still here")), RequestOptions::default())).await;
    assert_eq!(result_of(&echo.unwrap()), json!("still here"));
    match answer(handle.request(call("fail", json!(null)), RequestOptions::default())).await {
        Err(RequestError::Service(e)) => assert_eq!((e.code, e.message.as_str()), (Some(-32000), "failed on purpose")),
        other => panic!("expected a service error, got {other:?}"),
    }
    let stats = handle.session_stats();
    assert_eq!((stats.malformed, stats.service_errors, stats.requests_failed), (1, 1, 1));
    assert_eq!((handle.stats().opens, handle.stats().disconnects), (1, 0));
}

async fn a_service_error_with_retry_after_reconnects_after_exactly_that_wait(rt: Rt) {
    let service = JsonRpcService::new();
    let server = MockServer::builder()
        .connection(service.behavior().send_on_open(notice(-32098, "overloaded", Some(0.25))))
        .otherwise(service.behavior())
        .start()
        .unwrap();
    let adapter = rpc().errors(ErrorPolicy::AlwaysReconnect);
    let (handle, mut events) = rt.connector(config(&server.url("/"))).adapter(adapter).start().unwrap();

    let (service_error, _) = until(&mut events, "ServiceError", |e| matches!(e, Event::ServiceError { .. })).await;
    let Event::ServiceError { error, strategy } = service_error else { unreachable!() };
    assert_eq!(error.code, Some(-32098));
    assert_eq!(strategy, Strategy::RetryAfter(ms(250)));
    let (dropped, _) = until(&mut events, "Disconnected", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reconnect: Some(reconnect), .. } = dropped else { panic!("{dropped:?}") };
    // The service's wait, not the backoff's 20 ms.
    assert_eq!(reconnect.delay, ms(250));
    until(&mut events, "Ready on the next connection", |e| matches!(e, Event::Ready { .. })).await;
    let sent =
        logged_at(&server, 1, |w| matches!(w, Logged::Sent(m) if m.as_text().is_some_and(|t| t.contains("-32098"))))
            .unwrap();
    let next = logged_at(&server, 2, |w| matches!(w, Logged::Connected)).unwrap();
    assert!(next >= sent + ms(250), "reconnected {:?} after the error", next - sent);
    assert_eq!(handle.stats().opens, 2);
}
