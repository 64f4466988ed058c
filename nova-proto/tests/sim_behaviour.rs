//! The behaviour layer in the deterministic simulation: a `Session` with the
//! JSON-RPC adapter against a scripted JSON-RPC server (serde_json on the
//! server side), across drops and reconnects.
#![allow(missing_docs)]

mod sim;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use nova_proto::session::json::JsonRpc;
use nova_proto::session::{
    Adapter, ErrorPolicy, HeartbeatSpec, Readiness, RequestError, RequestOptions, RequestPayload, Secret, ServiceError,
    SessionConfig, Strategy, SubState, SubscribeError, SubscribeOptions, SubscriptionId,
};
use nova_proto::{Backoff, Config, Disconnect, Error, Event, Output, Session, Termination, Timeout};
use serde_json::{Value, json};
use sim::{ServerMessage, Sim, ms, secs};

/// How the scripted server answers authentication.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuthMode {
    Accept { expires_in: Option<u64> },
    Deny,
    Silent,
}

/// The scripted JSON-RPC server's state, shared across connections.
pub struct Brain {
    pub auth: AuthMode,
    /// Every call the server read: (connection, method, params).
    pub log: Vec<(u32, String, Value)>,
    pub next_sub: u32,
    /// Server subscription id -> topic, for the current connections.
    pub subs: HashMap<String, String>,
    pub heartbeat_replies: bool,
    /// Calls to `slow_once` are answered from this connection on.
    pub answer_slow_from: u32,
    /// Each new subscription's first notifications go before its
    /// confirmation (as go-ethereum may send them).
    pub notify_before_confirming: u64,
}

impl Brain {
    fn new() -> Brain {
        Brain {
            auth: AuthMode::Accept { expires_in: None },
            log: Vec::new(),
            next_sub: 0,
            subs: HashMap::new(),
            heartbeat_replies: true,
            answer_slow_from: u32::MAX,
            notify_before_confirming: 0,
        }
    }

    fn answer(&mut self, conn: u32, text: &str) -> Vec<String> {
        let Ok(v) = serde_json::from_str::<Value>(text) else { return vec![] };
        let method = v["method"].as_str().unwrap_or_default().to_owned();
        let id = v["id"].clone();
        self.log.push((conn, method.clone(), v["params"].clone()));
        let ok = |result: Value| vec![json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()];
        match method.as_str() {
            "auth" => {
                match self.auth {
                    AuthMode::Accept { expires_in: Some(e) } => ok(json!({"expires_in": e})),
                    AuthMode::Accept { expires_in: None } => ok(json!(true)),
                    AuthMode::Deny => {
                        vec![json!({"jsonrpc": "2.0", "id": id, "error": {"code": 13004, "message": "invalid credentials"}})
                        .to_string()]
                    }
                    AuthMode::Silent => vec![],
                }
            }
            "eth_subscribe" => {
                self.next_sub += 1;
                let sid = format!("0x{conn}{:03}", self.next_sub);
                self.subs.insert(sid.clone(), v["params"][0].as_str().unwrap_or_default().to_owned());
                let early = (1..=self.notify_before_confirming).map(|seq| {
                    json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sid, "result": {"seq": seq}}})
                        .to_string()
                });
                early.chain(ok(json!(sid))).collect()
            }
            "public/subscribe" => ok(v["params"]["channels"].clone()),
            "eth_unsubscribe" | "public/unsubscribe" => ok(json!(true)),
            "hb" if self.heartbeat_replies => ok(json!("pong")),
            "echo" => ok(v["params"].clone()),
            "fail" => {
                vec![json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "boom"}}).to_string()]
            }
            "slow_once" if conn >= self.answer_slow_from => ok(json!("late but fine")),
            _ => vec![],
        }
    }

    fn methods(&self) -> Vec<(u32, String)> {
        self.log.iter().map(|(c, m, _)| (*c, m.clone())).collect()
    }
}

fn config() -> Config {
    Config::builder("ws://rpc.test/")
        .backoff(Backoff::constant(ms(100), 0.0))
        .max_attempts(None)
        .ping(secs(300), secs(10))
        .build()
        .unwrap()
}

fn settings() -> SessionConfig {
    SessionConfig::default().request_timeout(secs(2)).auth_timeout(secs(1))
}

fn eth() -> JsonRpc {
    JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription")
}

fn with_auth(a: JsonRpc) -> JsonRpc {
    a.auth("auth", json!({"user": "me"}), Some(("key", Secret::new("k3y"))))
}

fn session(adapter: impl Adapter + Send + 'static, seed: u64) -> (Sim<Session>, Rc<RefCell<Brain>>) {
    let mut sim = Sim::session(config(), seed, Box::new(adapter), settings());
    sim.echo = false;
    let brain = Rc::new(RefCell::new(Brain::new()));
    let b = brain.clone();
    sim.responder = Some(Box::new(move |conn, text| b.borrow_mut().answer(conn, text)));
    (sim, brain)
}

fn ready(sim: &mut Sim<Session>) {
    sim.run_until(secs(5), |s| s.client.is_ready());
}

fn call(method: &str, params: Value) -> RequestPayload {
    RequestPayload::call(method, params)
}

fn request(sim: &mut Sim<Session>, method: &str, options: RequestOptions) -> nova_proto::session::RequestId {
    let id = sim.client.request(sim.now, call(method, json!([])), options).unwrap();
    sim.drain();
    id
}

fn subscribe(sim: &mut Sim<Session>, topic: &str) -> SubscriptionId {
    let id = sim.client.subscribe(sim.now, topic, SubscribeOptions::default()).unwrap();
    sim.drain();
    id
}

fn events(sim: &mut Sim<Session>) -> Vec<Event> {
    sim.take_outputs().into_iter().filter_map(Output::into_event).collect()
}

fn responses(events: &[Event]) -> Vec<(u64, Result<String, RequestError>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Response { id, result, .. } => {
                Some((id.0, result.clone().map(|m| m.as_text().unwrap_or_default().to_owned())))
            }
            _ => None,
        })
        .collect()
}

fn notify(sim: &mut Sim<Session>, server_id: &str, seq: u64) {
    let n = json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": server_id, "result": {"seq": seq}}});
    sim.server_send(ServerMessage::text(n.to_string()));
}

#[test]
fn auth_goes_first_then_restore_then_ready_then_queued_requests() {
    let (mut sim, brain) = session(with_auth(eth()), 1);
    let a = subscribe(&mut sim, "newHeads");
    let b = subscribe(&mut sim, "logs");
    let q = request(&mut sim, "echo", RequestOptions::default());
    assert_eq!(sim.client.subscriptions().get(a).unwrap().state, SubState::Pending);
    sim.connect();
    sim.run_until(secs(1), |s| s.client.readiness() == Readiness::Authenticating);
    assert!(!sim.client.is_ready());
    ready(&mut sim);
    sim.run_for(ms(50));
    let methods: Vec<String> = brain.borrow().methods().into_iter().map(|(_, m)| m).collect();
    assert_eq!(methods, ["auth", "eth_subscribe", "eth_subscribe", "echo"]);
    // The secret went on the wire, and nowhere else.
    assert_eq!(brain.borrow().log[0].2, json!({"user": "me", "key": "k3y"}));
    let ev = events(&mut sim);
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            Event::Opened(_) => "opened",
            Event::Subscribed { .. } => "subscribed",
            Event::Ready { restored: 2, failed: 0 } => "ready",
            Event::Response { .. } => "response",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["opened", "subscribed", "subscribed", "ready", "response"]);
    assert_eq!(responses(&ev)[0].0, q.0);
    assert!([a, b].iter().all(|id| sim.client.subscriptions().get(*id).unwrap().state == SubState::Active));
    let st = *sim.client.session_stats();
    assert_eq!((st.auth_attempts, st.subscriptions_confirmed, st.requests_completed), (1, 2, 1));
}

#[test]
fn silent_auth_times_out_as_a_retryable_failure_and_the_next_connection_succeeds() {
    let (mut sim, brain) = session(with_auth(eth()), 2);
    brain.borrow_mut().auth = AuthMode::Silent;
    sim.connect();
    sim.run_until(secs(3), |s| s.client.stats().disconnects == 1);
    let ev = events(&mut sim);
    assert!(ev.iter().any(|e| matches!(e, Event::AuthFailed { retry: true, .. })), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Auth)), reconnect: Some(_) }
    )));
    assert!(!ev.iter().any(|e| matches!(e, Event::Ready { .. })), "never ready without auth");
    brain.borrow_mut().auth = AuthMode::Accept { expires_in: None };
    ready(&mut sim);
    assert_eq!(sim.client.stats().opens, 2);
}

#[test]
fn auth_refused_for_good_closes_the_session() {
    let (mut sim, brain) = session(with_auth(eth()), 3);
    brain.borrow_mut().auth = AuthMode::Deny;
    let q = request(&mut sim, "echo", RequestOptions::default());
    sim.connect();
    sim.run_until(secs(5), |s| s.client.is_closed());
    let ev = events(&mut sim);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::AuthFailed { retry: false, reason } if reason.contains("invalid credentials")))
    );
    assert_eq!(responses(&ev), [(q.0, Err(RequestError::Closed))]);
    let Some(Event::Closed(closed)) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(closed.termination, Termination::AuthFailed);
}

#[test]
fn credentials_are_renewed_before_they_expire_on_the_same_connection() {
    let (mut sim, brain) = session(with_auth(eth()), 4);
    brain.borrow_mut().auth = AuthMode::Accept { expires_in: Some(60) };
    sim.connect();
    ready(&mut sim);
    sim.run_for(secs(29));
    assert_eq!(brain.borrow().methods().iter().filter(|(_, m)| m == "auth").count(), 1);
    sim.run_for(secs(2));
    // 60 s of credentials, renewed 30 s (the default lead) before expiry.
    assert_eq!(brain.borrow().methods().iter().filter(|(_, m)| m == "auth").count(), 2);
    sim.run_for(ms(100));
    assert_eq!((sim.client.session_stats().reauths, sim.client.stats().opens), (1, 1));
    assert!(sim.client.is_ready());
}

#[test]
fn requests_time_out_get_cancelled_and_late_answers_are_dropped() {
    let (mut sim, _brain) = session(eth(), 5);
    sim.connect();
    ready(&mut sim);
    let slow = request(&mut sim, "slow", RequestOptions::default().timeout(ms(500)));
    let cancelled = request(&mut sim, "slow", RequestOptions::default());
    assert!(sim.client.cancel(sim.now, cancelled));
    assert!(!sim.client.cancel(sim.now, cancelled), "cancelled once");
    sim.run_for(secs(1));
    // The server answers the cancelled request after all: dropped, counted.
    let late = json!({"jsonrpc": "2.0", "id": cancelled.0, "result": 1});
    sim.server_send(ServerMessage::text(late.to_string()));
    sim.run_for(ms(50));
    let ev = events(&mut sim);
    assert_eq!(responses(&ev), [(cancelled.0, Err(RequestError::Cancelled)), (slow.0, Err(RequestError::Timeout))]);
    let st = *sim.client.session_stats();
    assert_eq!((st.requests_timed_out, st.requests_cancelled, st.late_responses), (1, 1, 1));
    assert_eq!(sim.client.pending_requests(), 0);
}

#[test]
fn a_drop_fails_requests_in_flight_and_resends_idempotent_ones_after_ready() {
    let (mut sim, brain) = session(with_auth(eth()), 6);
    sim.connect();
    ready(&mut sim);
    let once = request(&mut sim, "slow_once", RequestOptions::default().timeout(secs(5)));
    let again = request(&mut sim, "slow_once", RequestOptions::default().timeout(secs(5)).idempotent(true));
    sim.run_for(ms(50));
    brain.borrow_mut().answer_slow_from = 2;
    sim.server_reset();
    sim.reopen(secs(2));
    ready(&mut sim);
    sim.run_for(ms(50));
    let ev = events(&mut sim);
    assert_eq!(
        responses(&ev),
        [
            (once.0, Err(RequestError::ConnectionLost)),
            (again.0, Ok(format!(r#"{{"id":{},"jsonrpc":"2.0","result":"late but fine"}}"#, again.0)))
        ]
    );
    // On the second connection: auth first, then the re-sent request.
    let second: Vec<String> = brain.borrow().methods().into_iter().filter(|(c, _)| *c == 2).map(|(_, m)| m).collect();
    assert_eq!(second, ["auth", "slow_once"]);
    assert_eq!(sim.client.session_stats().requests_resent, 1);
}

#[test]
fn an_idempotent_request_is_still_bounded_by_its_first_deadline() {
    let (mut sim, _brain) = session(eth(), 7);
    sim.connect();
    ready(&mut sim);
    let r = request(&mut sim, "slow", RequestOptions::default().timeout(secs(1)).idempotent(true));
    sim.server_stall();
    sim.server_reset();
    sim.upgrades.extend(std::iter::repeat_n(sim::Upgrade::RefuseTcp, 30));
    sim.run_for(secs(2));
    let ev = events(&mut sim);
    assert_eq!(responses(&ev), [(r.0, Err(RequestError::Timeout))]);
    assert_eq!(sim.client.deadlines().count(), 0, "nothing left pending");
}

#[test]
fn subscribe_and_unsubscribe_are_confirmed_and_data_routes_to_the_handle() {
    let (mut sim, brain) = session(eth(), 8);
    sim.connect();
    ready(&mut sim);
    events(&mut sim);
    let a = subscribe(&mut sim, "newHeads");
    sim.run_for(ms(50));
    let server_id = brain.borrow().subs.iter().find(|(_, t)| *t == "newHeads").map(|(k, _)| k.clone()).unwrap();
    assert_eq!(sim.client.subscriptions().get(a).unwrap().server_id.as_ref().map(|s| s.as_str()), Some(&*server_id));
    notify(&mut sim, &server_id, 1);
    sim.run_for(ms(50));
    sim.client.unsubscribe(sim.now, a).unwrap();
    sim.drain();
    sim.run_for(ms(50));
    let ev = events(&mut sim);
    assert!(matches!(ev[0], Event::Subscribed { id, .. } if id == a));
    assert!(matches!(&ev[1], Event::Data { subscription, .. } if *subscription == a));
    assert!(matches!(ev[2], Event::Unsubscribed { id } if id == a));
    assert_eq!(brain.borrow().log.last().unwrap().2, json!([server_id]));
    assert!(sim.client.subscriptions().is_empty());
}

#[test]
fn restore_after_reconnect_is_batched_per_the_adapters_limit() {
    let adapter = JsonRpc::new().subscriptions("public/subscribe", "public/unsubscribe", "subscription").channels(100);
    let (mut sim, brain) = session(adapter, 9);
    let ids: Vec<SubscriptionId> = (0..250).map(|i| subscribe(&mut sim, &format!("trades.{i}"))).collect();
    sim.connect();
    ready(&mut sim);
    sim.server_reset();
    sim.reopen(secs(2));
    ready(&mut sim);
    let per_conn = |c| brain.borrow().log.iter().filter(|(conn, m, _)| *conn == c && m == "public/subscribe").count();
    assert_eq!((per_conn(1), per_conn(2)), (3, 3));
    let sizes: Vec<usize> = brain
        .borrow()
        .log
        .iter()
        .filter(|(c, _, _)| *c == 2)
        .map(|(_, _, p)| p["channels"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    let readies: Vec<Event> = events(&mut sim).into_iter().filter(|e| matches!(e, Event::Ready { .. })).collect();
    assert_eq!(readies, [Event::Ready { restored: 250, failed: 0 }, Event::Ready { restored: 250, failed: 0 }]);
    assert!(ids.iter().all(|id| sim.client.subscriptions().get(*id).unwrap().state == SubState::Active));
    // Channel data routes by topic.
    let n = json!({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": "trades.7", "data": {}}});
    sim.server_send(ServerMessage::text(n.to_string()));
    sim.run_for(ms(50));
    assert!(events(&mut sim).iter().any(|e| matches!(e, Event::Data { subscription, .. } if *subscription == ids[7])));
}

#[test]
fn subscribe_many_on_a_ready_session_goes_in_batches_and_is_all_or_nothing() {
    let adapter = JsonRpc::new().subscriptions("public/subscribe", "public/unsubscribe", "subscription").channels(10);
    let (mut sim, brain) = session(adapter, 10);
    sim.connect();
    ready(&mut sim);
    let topics: Vec<String> = (0..23).map(|i| format!("book.{i}")).collect();
    let ids = sim.client.subscribe_many(sim.now, &topics, SubscribeOptions::default()).unwrap();
    sim.drain();
    sim.run_for(ms(100));
    let sizes: Vec<usize> = brain
        .borrow()
        .log
        .iter()
        .filter(|(_, m, _)| m == "public/subscribe")
        .map(|(_, _, p)| p["channels"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [10, 10, 3], "23 topics in three requests, not 23");
    assert!(ids.iter().all(|id| sim.client.subscriptions().get(*id).unwrap().state == SubState::Active));
    let topic_of = |id: &SubscriptionId| sim.client.subscriptions().get(*id).unwrap().topic.as_str().to_owned();
    assert_eq!(ids.iter().map(topic_of).collect::<Vec<_>>(), topics, "handles in the order given");

    // A duplicate (here, of a held topic) refuses the whole call.
    let before = sim.client.subscriptions().len();
    let err = sim.client.subscribe_many(sim.now, ["new.1", "book.3", "new.2"], SubscribeOptions::default());
    assert!(matches!(err, Err(SubscribeError::Duplicate(_))), "{err:?}");
    assert_eq!(sim.client.subscriptions().len(), before, "nothing held from a refused call");
    assert!(sim.client.subscriptions().find(&"new.1".into()).is_none());
}

#[test]
fn notifications_before_the_confirmation_are_delivered_after_it_in_order() {
    let (mut sim, brain) = session(eth(), 11);
    brain.borrow_mut().notify_before_confirming = 3;
    sim.connect();
    ready(&mut sim);
    events(&mut sim);
    let a = subscribe(&mut sim, "newHeads");
    sim.run_for(ms(50));
    let server_id = sim.client.subscriptions().get(a).unwrap().server_id.clone().unwrap();
    notify(&mut sim, server_id.as_str(), 4);
    sim.run_for(ms(50));
    let seen: Vec<String> = events(&mut sim)
        .into_iter()
        .filter_map(|e| match e {
            Event::Subscribed { id, .. } if id == a => Some("subscribed".to_owned()),
            Event::Data { subscription, message } if subscription == a => {
                let v: Value = serde_json::from_slice(message.as_bytes()).unwrap();
                Some(format!("seq {}", v["params"]["result"]["seq"]))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        ["subscribed", "seq 1", "seq 2", "seq 3", "seq 4"],
        "nothing lost, nothing before the confirmation"
    );
    assert_eq!(sim.client.session_stats().data_unrouted, 0);
}

#[test]
fn early_data_no_subscription_claims_is_dropped_as_unrouted_and_bounded() {
    let (mut sim, brain) = session(eth(), 12);
    sim.connect();
    ready(&mut sim);
    // A subscribe in flight, then data for an id that never gets confirmed.
    brain.borrow_mut().notify_before_confirming = 0;
    let _a = sim.client.subscribe(sim.now, "newHeads", SubscribeOptions::default()).unwrap();
    for seq in 0..100 {
        notify(&mut sim, "0xstranger", seq);
    }
    sim.drain();
    sim.run_for(ms(50));
    // 64 kept at most while the subscribe was in flight; all dropped once answered.
    assert_eq!(sim.client.session_stats().data_unrouted, 100);
    assert_eq!(sim.client.session_stats().data_delivered, 0);
}

#[test]
fn server_ids_are_remapped_after_a_reconnect_and_old_ids_route_nowhere() {
    let (mut sim, brain) = session(eth(), 10);
    sim.connect();
    ready(&mut sim);
    let a = subscribe(&mut sim, "newHeads");
    sim.run_for(ms(50));
    let old = sim.client.subscriptions().get(a).unwrap().server_id.clone().unwrap();
    sim.server_reset();
    sim.reopen(secs(2));
    ready(&mut sim);
    let new = sim.client.subscriptions().get(a).unwrap().server_id.clone().unwrap();
    assert_ne!(old, new);
    events(&mut sim);
    notify(&mut sim, old.as_str(), 1);
    notify(&mut sim, new.as_str(), 2);
    sim.run_for(ms(50));
    let data: Vec<SubscriptionId> = events(&mut sim)
        .into_iter()
        .filter_map(|e| match e {
            Event::Data { subscription, .. } => Some(subscription),
            _ => None,
        })
        .collect();
    assert_eq!(data, [a]);
    assert_eq!(sim.client.session_stats().data_unrouted, 1);
    assert_eq!(brain.borrow().subs.len(), 2);
}

#[test]
fn malformed_json_is_an_event_with_the_message_and_the_session_goes_on() {
    let (mut sim, _brain) = session(eth(), 11);
    sim.connect();
    ready(&mut sim);
    events(&mut sim);
    sim.server_send(ServerMessage::text("{\"id\": 1, \"result\": "));
    let r = request(&mut sim, "echo", RequestOptions::default());
    sim.run_for(ms(50));
    let ev = events(&mut sim);
    let Event::Malformed { error, message } = &ev[0] else { panic!("{ev:?}") };
    assert!(error.reason.contains("EOF"), "{error}");
    assert_eq!(message.as_text(), Some("{\"id\": 1, \"result\": "));
    assert!(matches!(&ev[1], Event::Response { id, result: Ok(_), .. } if *id == r));
    assert_eq!((sim.client.session_stats().malformed, sim.client.stats().opens), (1, 1));
}

#[test]
fn service_errors_fail_requests_and_unsolicited_ones_follow_the_policy() {
    let (mut sim, _brain) = session(eth().errors(ErrorPolicy::AlwaysReconnect), 12);
    sim.connect();
    ready(&mut sim);
    let r = request(&mut sim, "fail", RequestOptions::default());
    sim.run_for(ms(50));
    assert_eq!(
        responses(&events(&mut sim)),
        [(r.0, Err(RequestError::Service(ServiceError::new(Some(-32000), "boom"))))]
    );
    let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": 429, "message": "slow down", "data": {"retry_after": 3}}});
    sim.server_send(ServerMessage::text(e.to_string()));
    sim.run_for(ms(50));
    let ev = events(&mut sim);
    assert!(matches!(&ev[0], Event::ServiceError { strategy: Strategy::RetryAfter(d), .. } if *d == secs(3)), "{ev:?}");
    let Some(Event::Disconnected { cause: Disconnect::Failed(Error::Aborted(_)), reconnect: Some(rc) }) = ev.get(1)
    else {
        panic!("{ev:?}")
    };
    assert_eq!(rc.delay, secs(3), "the service's wait, not the backoff");
}

#[test]
fn a_service_error_classified_stop_ends_the_session() {
    let (mut sim, _brain) = session(eth().errors(ErrorPolicy::FailFast), 13);
    sim.connect();
    ready(&mut sim);
    sim.server_send(ServerMessage::text(
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": 1, "message": "gone"}}).to_string(),
    ));
    sim.run_until(secs(10), |s| s.client.is_closed());
    let ev = events(&mut sim);
    let Some(Event::Closed(closed)) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(closed.termination, Termination::Stopped);
}

#[test]
fn missed_app_heartbeats_abort_the_connection_and_it_reconnects() {
    let (mut sim, brain) = session(eth().heartbeat("hb", HeartbeatSpec::new(secs(1), 2)), 14);
    sim.connect();
    ready(&mut sim);
    sim.run_for(ms(3500));
    assert_eq!(brain.borrow().methods().iter().filter(|(_, m)| m == "hb").count(), 3);
    assert!(events(&mut sim).iter().all(|e| !matches!(e, Event::HeartbeatMissed { .. })));
    // The server stops answering heartbeats (but still answers protocol pings).
    brain.borrow_mut().heartbeat_replies = false;
    sim.run_until(secs(5), |s| s.client.stats().disconnects == 1);
    let ev = events(&mut sim);
    let missed: Vec<u32> = ev
        .iter()
        .filter_map(|e| match e {
            Event::HeartbeatMissed { missed, limit: 2 } => Some(*missed),
            _ => None,
        })
        .collect();
    assert_eq!(missed, [1, 2]);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected { cause: Disconnect::Failed(Error::Timeout(Timeout::Heartbeat)), reconnect: Some(_) }
    )));
    brain.borrow_mut().heartbeat_replies = true;
    sim.reopen(secs(2));
    ready(&mut sim);
}

#[test]
fn server_heartbeats_are_answered_at_once() {
    let (mut sim, brain) = session(eth().server_heartbeat("heartbeat", "public/test"), 15);
    sim.connect();
    ready(&mut sim);
    events(&mut sim);
    let hb = json!({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}});
    sim.server_send(ServerMessage::text(hb.to_string()));
    sim.run_for(ms(20));
    assert_eq!(brain.borrow().methods().last().map(|(_, m)| m.clone()).as_deref(), Some("public/test"));
    assert_eq!(sim.client.session_stats().server_heartbeats, 1);
    assert!(events(&mut sim).is_empty());
}

#[test]
fn requests_before_ready_are_bounded_and_may_opt_to_go_first() {
    let settings = settings().max_requests(10, 2);
    let mut sim = Sim::session(config(), 16, Box::new(with_auth(eth())), settings);
    sim.echo = false;
    let brain = Rc::new(RefCell::new(Brain::new()));
    let b = brain.clone();
    sim.responder = Some(Box::new(move |conn, text| b.borrow_mut().answer(conn, text)));
    request(&mut sim, "echo", RequestOptions::default());
    request(&mut sim, "echo", RequestOptions::default());
    let full = sim.client.request(sim.now, call("echo", json!([])), RequestOptions::default());
    assert_eq!(full, Err(RequestError::QueueFull { max: 2 }));
    brain.borrow_mut().auth = AuthMode::Silent;
    sim.connect();
    sim.run_until(secs(1), |s| s.client.readiness() == Readiness::Authenticating);
    let early = request(&mut sim, "echo", RequestOptions::default().before_ready(true));
    sim.run_for(ms(50));
    assert!(responses(&events(&mut sim)).iter().any(|(id, r)| *id == early.0 && r.is_ok()));
    let methods: Vec<String> = brain.borrow().methods().into_iter().map(|(_, m)| m).collect();
    assert_eq!(methods, ["auth", "echo"], "only the early request went before auth answered");
}
