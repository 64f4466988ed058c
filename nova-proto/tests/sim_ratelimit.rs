//! The session's rate limits in the deterministic simulation: a `Session`
//! with the JSON-RPC adapter against a scripted server, on the virtual clock,
//! so every instant an operation goes out is exact.
#![allow(missing_docs)]

mod sim;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nova_proto::limits::{Bucket, OpClass, RateLimits};
use nova_proto::session::json::JsonRpc;
use nova_proto::session::{
    Adapter, HeartbeatSpec, RequestError, RequestOptions, RequestPayload, Secret, SessionConfig, SubscribeError,
    SubscribeOptions,
};
use nova_proto::{Backoff, Config, Event, Output, SendError, Session, UnsentReason};
use serde_json::{Value, json};
use sim::{Record, ServerMessage, Sim, ms, secs};

/// The scripted JSON-RPC server: answers `auth`, `eth_subscribe`, `hb`,
/// `echo`; `busy` is refused with a retry-after of one second. Logs every
/// call with the connection it came on.
#[derive(Default)]
pub struct Brain {
    pub log: Vec<(u32, String)>,
    next_sub: u32,
}

impl Brain {
    fn answer(&mut self, conn: u32, text: &str) -> Vec<String> {
        let Ok(v) = serde_json::from_str::<Value>(text) else { return vec![] };
        let method = v["method"].as_str().unwrap_or_default().to_owned();
        let id = v["id"].clone();
        self.log.push((conn, method.clone()));
        let ok = |result: Value| vec![json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()];
        match method.as_str() {
            "auth" | "eth_unsubscribe" => ok(json!(true)),
            "eth_subscribe" => {
                self.next_sub += 1;
                ok(json!(format!("0x{conn}{:03}", self.next_sub)))
            }
            "hb" => ok(json!("pong")),
            "echo" => ok(v["params"].clone()),
            "busy" => vec![
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": 429, "message": "busy", "data": {"retry_after": 1}}})
                    .to_string(),
            ],
            _ => vec![],
        }
    }

    fn count(&self, method: &str) -> usize {
        self.log.iter().filter(|(_, m)| m == method).count()
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

fn eth() -> JsonRpc {
    JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription")
}

fn with_auth(a: JsonRpc) -> JsonRpc {
    a.auth("auth", json!({"user": "me"}), Some(("key", Secret::new("k3y"))))
}

fn session(
    adapter: impl Adapter + Send + 'static,
    settings: SessionConfig,
    seed: u64,
) -> (Sim<Session>, Rc<RefCell<Brain>>) {
    let mut sim = Sim::session(config(), seed, Box::new(adapter), settings);
    sim.echo = false;
    let brain = Rc::new(RefCell::new(Brain::default()));
    let b = brain.clone();
    sim.responder = Some(Box::new(move |conn, text| b.borrow_mut().answer(conn, text)));
    (sim, brain)
}

fn call(method: &str) -> RequestPayload {
    RequestPayload::call(method, json!([]))
}

/// FNV-1a over the wire and the clock: every byte the client wrote and
/// read, every transport event and every deadline, with their times.
/// Outputs are left out: their `Instant`s differ from run to run.
fn wire_digest(transcript: &[(Duration, Record)]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (at, record) in transcript {
        let line = match record {
            Record::Output(_) => continue,
            other => format!("{at:?} {other:?}"),
        };
        feed(line.as_bytes());
    }
    hash
}

/// Auth, restored subscriptions, app heartbeats, requests (one idempotent
/// across a drop), raw sends, a service error with a retry-after, a
/// server-side drop and the reconnect: everything the limiter touches.
fn busy_life(settings: SessionConfig) -> Sim<Session> {
    let adapter = with_auth(eth()).heartbeat("hb", HeartbeatSpec::new(secs(1), 3));
    let (mut sim, _brain) = session(adapter, settings, 7);
    for topic in ["newHeads", "logs", "pending"] {
        sim.client.subscribe(sim.now, topic, Default::default()).unwrap();
    }
    sim.connect();
    sim.run_until(secs(5), |s| s.client.is_ready());
    for _ in 0..6 {
        sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    }
    sim.client.request(sim.now, call("silent"), RequestOptions::default().idempotent(true)).unwrap();
    sim.send("raw one").unwrap();
    sim.drain();
    sim.run_for(ms(1500));
    sim.client.request(sim.now, call("busy"), RequestOptions::default()).unwrap();
    sim.drain();
    sim.run_for(ms(300));
    sim.send("raw two").unwrap();
    sim.server_hang_up();
    sim.run_until(secs(5), |s| s.client.stats().opens == 2 && s.client.is_ready());
    sim.run_for(secs(3));
    sim
}

#[test]
fn without_limits_the_wire_is_byte_identical_to_a_session_without_a_limiter() {
    // The digest was taken from the same scenario on the session as it was
    // before the limiter was wired in (commit b76619b).
    let sim = busy_life(SessionConfig::default());
    assert_eq!(wire_digest(&sim.transcript), GOLDEN, "{}", sim.tail(40));
    let again = busy_life(SessionConfig::default());
    assert_eq!(sim.transcript.len(), again.transcript.len());
}

const GOLDEN: u64 = 10_225_329_577_328_993_293;

// ---- with limits ----

/// Runs the simulation to `until` (from now), noting each instant `count`
/// changes: (time since `from`, new value).
fn timeline(
    sim: &mut Sim<Session>,
    from: Instant,
    until: Duration,
    count: impl Fn(&Sim<Session>) -> u64,
) -> Vec<(Duration, u64)> {
    let limit = sim.now + until;
    let mut last = count(sim);
    let mut out = vec![(sim.now - from, last)];
    while sim.step(limit) {
        let n = count(sim);
        if n != last {
            out.push((sim.now - from, n));
            last = n;
        }
    }
    out
}

fn requests_sent(s: &Sim<Session>) -> u64 {
    s.client.session_stats().requests_sent
}

fn ready(sim: &mut Sim<Session>) {
    sim.connect();
    sim.run_until(secs(5), |s| s.client.is_ready());
    let _ = sim.take_outputs();
}

fn limited(limits: RateLimits) -> SessionConfig {
    SessionConfig::default().request_timeout(secs(60)).rate_limits(limits)
}

fn response_errors(outputs: Vec<Output>) -> Vec<RequestError> {
    outputs
        .into_iter()
        .filter_map(Output::into_event)
        .filter_map(|e| match e {
            Event::Response { result: Err(e), .. } => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn a_burst_of_20_requests_goes_5_at_once_then_one_every_200_ms() {
    let (mut sim, brain) = session(eth(), limited(RateLimits::per_second(5).unwrap()), 1);
    ready(&mut sim);
    let t0 = sim.now;
    let ids: Vec<u64> =
        (0..20).map(|_| sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap().0).collect();
    assert_eq!((requests_sent(&sim), sim.client.rate_queued()), (5, 15), "the burst of the bucket, at once");
    assert_eq!(sim.client.poll_timeout(), Some(t0 + ms(200)), "the queue's exact deadline is the session's");
    sim.drain();
    let got = timeline(&mut sim, t0, secs(10), requests_sent);
    let want: Vec<(Duration, u64)> =
        std::iter::once((Duration::ZERO, 5)).chain((1..=15).map(|k| (ms(200 * k), 5 + k))).collect();
    assert_eq!(got, want);
    // In order, and every one answered.
    assert_eq!(brain.borrow().count("echo"), 20);
    let answered: Vec<u64> = sim
        .take_outputs()
        .into_iter()
        .filter_map(Output::into_event)
        .filter_map(|e| match e {
            Event::Response { id, result: Ok(_), .. } => Some(id.0),
            _ => None,
        })
        .collect();
    assert_eq!(answered, ids);
    assert_eq!(sim.client.rate_queued(), 0);
}

#[test]
fn subscriptions_have_their_own_bucket_and_do_not_hold_requests_back() {
    let limits = RateLimits::per_second(100).unwrap().class(OpClass::Subscribe, Bucket::per_second(1).unwrap());
    let (mut sim, brain) = session(eth(), limited(limits), 2);
    ready(&mut sim);
    let t0 = sim.now;
    for topic in ["a", "b", "c"] {
        sim.client.subscribe(sim.now, topic, SubscribeOptions::default()).unwrap();
    }
    for _ in 0..3 {
        sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    }
    assert_eq!(requests_sent(&sim), 3, "requests overtake the subscriptions their class holds back");
    sim.drain();
    let subs = timeline(&mut sim, t0, secs(5), |s| s.client.session_stats().subscribe_requests);
    assert_eq!(subs, [(Duration::ZERO, 1), (secs(1), 2), (secs(2), 3)]);
    let log: Vec<String> = brain.borrow().log.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(log, ["eth_subscribe", "echo", "echo", "echo", "eth_subscribe", "eth_subscribe"]);
    assert_eq!(sim.client.subscriptions().len(), 3);
}

#[test]
fn a_retry_after_from_the_server_pauses_everything_for_exactly_that_long() {
    let (mut sim, brain) = session(eth(), limited(RateLimits::per_second(100).unwrap()), 3);
    ready(&mut sim);
    // A service error outside any request, with a retry-after; the
    // adapter's policy continues on the same connection.
    let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": 429, "message": "slow down", "data": {"retry_after": 3}}});
    sim.server_send(ServerMessage::text(e.to_string()));
    sim.run_until(secs(1), |s| s.client.session_stats().service_errors == 1);
    let t_err = sim.now;
    assert_eq!(sim.client.rate_limiter().and_then(|l| l.paused_until()), Some(t_err + secs(3)));
    sim.run_for(ms(500));
    for _ in 0..3 {
        sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    }
    sim.send("raw").unwrap();
    sim.client.subscribe(sim.now, "a", SubscribeOptions::default()).unwrap();
    sim.drain();
    let got = timeline(&mut sim, t_err, secs(5), |s| {
        s.client.session_stats().requests_sent + s.client.session_stats().subscribe_requests
    });
    assert_eq!(got, [(ms(500), 0), (secs(3), 4)], "nothing before the server's instant, everything at it");
    assert_eq!(sim.client.stats().opens, 1, "the connection stayed");
    assert_eq!(brain.borrow().count("echo"), 3);

    // A request refused with a retry-after pauses the queue too.
    let t1 = sim.now;
    sim.client.request(sim.now, call("busy"), RequestOptions::default()).unwrap();
    sim.drain();
    sim.run_until(secs(1), |s| s.client.rate_limiter().and_then(|l| l.paused_until()).is_some_and(|p| p > t1));
    let t_busy = sim.now;
    sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    sim.drain();
    let sent = requests_sent(&sim);
    let got = timeline(&mut sim, t_busy, secs(3), requests_sent);
    assert_eq!(got, [(Duration::ZERO, sent), (secs(1), sent + 1)]);
}

#[test]
fn a_full_rate_queue_is_a_typed_error_and_takes_nothing() {
    let (mut sim, _brain) = session(eth(), limited(RateLimits::per_second(1).unwrap().max_queued(3)), 4);
    ready(&mut sim);
    let t0 = sim.now;
    for _ in 0..4 {
        sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    }
    assert_eq!((requests_sent(&sim), sim.client.rate_queued(), sim.client.pending_requests()), (1, 3, 4));
    let refused = sim.client.request(sim.now, call("echo"), RequestOptions::default());
    assert_eq!(refused, Err(RequestError::RateLimited { until: t0 + secs(1) }));
    assert_eq!(sim.client.pending_requests(), 4, "a refused request is not held");
    match sim.client.send(sim.now, "raw") {
        Err(SendError::RateLimited { message, until }) => {
            assert_eq!((message.as_text(), until), (Some("raw"), t0 + secs(1)), "the message is handed back");
        }
        other => panic!("{other:?}"),
    }
    let sub = sim.client.subscribe(sim.now, "a", SubscribeOptions::default());
    assert!(matches!(sub, Err(SubscribeError::Failed(RequestError::RateLimited { .. }))), "{sub:?}");
    assert!(sim.client.subscriptions().is_empty(), "a refused subscription is not held");
    // Room comes exactly when the queue said.
    sim.run_for(secs(1));
    assert!(sim.client.request(sim.now, call("echo"), RequestOptions::default()).is_ok());
}

#[test]
fn heartbeats_never_wait_behind_a_backlog_or_a_pause() {
    let adapter = eth().heartbeat("hb", HeartbeatSpec::new(secs(1), 2));
    let (mut sim, brain) = session(adapter, limited(RateLimits::per_second(2).unwrap()), 5);
    ready(&mut sim);
    // 40 requests at 2 a second: a backlog of 20 seconds.
    for _ in 0..40 {
        sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    }
    sim.drain();
    sim.run_for(ms(5500));
    assert_eq!(brain.borrow().count("hb"), 5, "one a second, as without limits");
    // The server pauses the queue for 10 s: heartbeats still go.
    let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": 429, "message": "slow down", "data": {"retry_after": 10}}});
    sim.server_send(ServerMessage::text(e.to_string()));
    sim.run_for(secs(1));
    let sent = requests_sent(&sim);
    sim.run_for(secs(5));
    assert_eq!(requests_sent(&sim), sent, "the pause holds the requests");
    assert_eq!(brain.borrow().count("hb"), 11);
    let outputs = sim.take_outputs();
    assert!(!outputs.iter().any(|o| matches!(o.as_event(), Some(Event::HeartbeatMissed { .. }))));
    assert_eq!((sim.client.stats().opens, sim.client.session_stats().heartbeats_missed), (1, 0));
}

#[test]
fn auth_goes_before_the_restored_subscriptions_which_keep_their_order() {
    let limits = RateLimits::per_second(2).unwrap();
    let (mut sim, brain) = session(with_auth(eth()), limited(limits), 6);
    for topic in ["a", "b", "c", "d"] {
        sim.client.subscribe(sim.now, topic, SubscribeOptions::default()).unwrap();
    }
    sim.connect();
    sim.run_until(secs(5), |s| s.client.is_ready());
    let log: Vec<String> = brain.borrow().log.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(log, ["auth", "eth_subscribe", "eth_subscribe", "eth_subscribe", "eth_subscribe"]);
    let topics: Vec<String> = sim.client.subscriptions().iter().map(|(_, s)| s.topic.to_string()).collect();
    assert_eq!(topics, ["a", "b", "c", "d"]);
    // Two tokens: auth and the first batch at once, then one every 500 ms.
    assert!(sim.elapsed() >= ms(1500), "{:?}", sim.elapsed());
}

#[test]
fn on_a_drop_held_requests_wait_for_the_next_connection_and_held_sends_are_handed_back() {
    let (mut sim, brain) = session(eth(), limited(RateLimits::per_second(1).unwrap()), 8);
    ready(&mut sim);
    let first = sim.client.request(sim.now, call("silent"), RequestOptions::default()).unwrap();
    let held = sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
    sim.send("raw").unwrap();
    assert_eq!((requests_sent(&sim), sim.client.rate_queued()), (1, 2));
    sim.run_for(ms(100));
    sim.server_hang_up();
    sim.run_until(secs(5), |s| s.client.stats().disconnects == 1);
    let outputs = sim.take_outputs();
    // The request that went out is lost with the connection; the one held
    // back never left and is not.
    let errors: Vec<(u64, RequestError)> = outputs
        .iter()
        .filter_map(|o| match o.as_event() {
            Some(Event::Response { id, result: Err(e), .. }) => Some((id.0, e.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(errors, [(first.0, RequestError::ConnectionLost)]);
    let unsent: Vec<(Option<&str>, UnsentReason)> = outputs
        .iter()
        .filter_map(|o| match o.as_event() {
            Some(Event::Unsent { message, reason }) => Some((message.as_text(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(unsent, [(Some("raw"), UnsentReason::Disconnected)]);
    assert_eq!(sim.client.rate_queued(), 0);
    sim.run_until(secs(5), |s| s.client.stats().opens == 2 && s.client.is_ready());
    sim.run_for(ms(100));
    let answered = response_errors(sim.take_outputs());
    assert!(answered.is_empty(), "{answered:?}");
    assert_eq!(brain.borrow().log.iter().filter(|(c, m)| *c == 2 && m == "echo").count(), 1, "{}", held.0);
}

/// JSON-RPC with a service's published limit of 5 requests a second.
struct Published(JsonRpc);

impl Adapter for Published {
    fn classify(&mut self, message: &nova_proto::Message) -> nova_proto::session::Inbound {
        self.0.classify(message)
    }
    fn encode_request(
        &mut self,
        id: nova_proto::session::RequestId,
        payload: &RequestPayload,
    ) -> Result<nova_proto::Message, nova_proto::session::EncodeError> {
        self.0.encode_request(id, payload)
    }
    fn rate_limits(&self) -> RateLimits {
        RateLimits::per_second(5).unwrap()
    }
}

#[test]
fn the_adapters_published_limits_apply_unless_the_settings_set_their_own() {
    let burst = |settings: SessionConfig| {
        let (mut sim, _) = session(Published(eth()), settings, 9);
        ready(&mut sim);
        for _ in 0..20 {
            sim.client.request(sim.now, call("echo"), RequestOptions::default()).unwrap();
        }
        (requests_sent(&sim), sim.client.rate_queued(), sim.client.rate_limiter().is_some())
    };
    let defaults = SessionConfig::default().request_timeout(secs(60));
    assert_eq!(burst(defaults.clone()), (5, 15, true), "the adapter's 5 a second by default");
    assert_eq!(burst(defaults.clone().rate_limits(RateLimits::none())), (20, 0, false), "none set: off");
    let own = RateLimits::per_second(2).unwrap();
    assert_eq!(burst(defaults.rate_limits(own)), (2, 18, true), "the settings' own replace the adapter's");
}
