//! Property tests of the behaviour layer, in the simulation:
//!
//! - a session with the [`Raw`] adapter is a bare client: same bytes, same
//!   outputs, same deadlines, for random workloads with drops and closes;
//! - across random drops, reconnects and server replies (JSON-RPC with
//!   authentication), every subscription the user holds is active once the
//!   session is ready again, no request is left pending without a deadline
//!   (each gets exactly one response), and no message is delivered twice for
//!   the same server sequence.
#![allow(missing_docs)]

mod sim;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use nova_proto::session::json::{self, JsonRpc};
use nova_proto::session::{Raw, RequestOptions, RequestPayload, SessionConfig, SubState, SubscriptionId};
use nova_proto::{Backoff, Config, Event, Output, Session};
use proptest::prelude::*;
use serde_json::{Value, json};
use sim::{Core, ServerMessage, Sim, ms, secs};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config() -> Config {
    Config::builder("ws://model.test/")
        .backoff(Backoff::exponential(ms(50), ms(400), 0.2))
        .max_attempts(None)
        .ping(secs(2), secs(1))
        .build()
        .unwrap()
}

// ---- Raw session = bare client ----

#[derive(Debug, Clone)]
enum RawOp {
    ServerSend(usize),
    ClientSend(usize),
    ServerReset,
    ServerClose,
    ServerStall,
    Advance(u64),
    ClientClose,
}

fn raw_op() -> impl Strategy<Value = RawOp> {
    prop_oneof![
        8 => (0usize..200).prop_map(RawOp::ServerSend),
        6 => (0usize..200).prop_map(RawOp::ClientSend),
        1 => Just(RawOp::ServerReset),
        1 => Just(RawOp::ServerClose),
        1 => Just(RawOp::ServerStall),
        6 => (0u64..5000).prop_map(RawOp::Advance),
        1 => Just(RawOp::ClientClose),
    ]
}

fn run_raw<C: Core>(mut sim: Sim<C>, ops: &[RawOp]) -> String {
    sim.connect();
    // The server end that started a close handshake: it sends nothing more.
    let mut closing = None;
    for op in ops {
        match op {
            RawOp::ServerSend(n)
                if sim.has_server()
                    && !sim.server().hung_up
                    && sim.current_id() != closing
                    && sim.server().error.is_none()
                    && sim.client.state() == nova_proto::State::Open =>
            {
                sim.server_send(ServerMessage::text("x".repeat(*n)));
            }
            RawOp::ClientSend(n) => {
                let _ = sim.send("y".repeat(*n));
            }
            RawOp::ServerReset if sim.has_server() => sim.server_reset(),
            RawOp::ServerClose
                if sim.has_server() && sim.client.state() == nova_proto::State::Open && sim.current_id() != closing =>
            {
                closing = sim.current_id();
                sim.server_close(1001, "away")
            }
            RawOp::ServerStall if sim.has_server() => sim.server_stall(),
            RawOp::Advance(n) => sim.run_for(ms(*n)),
            RawOp::ClientClose if sim.client.state() != nova_proto::State::Closed => sim.close(1000, "bye"),
            _ => {}
        }
        sim.run_for(ms(20));
    }
    sim.run_for(secs(3));
    sim.transcript_text()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    #[test]
    fn a_raw_session_is_a_bare_client(ops in prop::collection::vec(raw_op(), 1..40), seed in any::<u64>()) {
        let client = run_raw(Sim::new(config(), seed), &ops);
        let session = run_raw(Sim::session(config(), seed, Box::new(Raw), SessionConfig::default()), &ops);
        prop_assert!(client == session, "transcripts differ");
    }
}

// ---- the behaviour layer across drops ----

/// A JSON-RPC server: authentication, `eth_subscribe` with fresh ids per
/// connection, `echo` answered, `slow` never.
#[derive(Default)]
struct Server {
    next_sub: u32,
    /// Server id -> (connection, topic).
    subs: HashMap<String, (u32, String)>,
}

impl Server {
    fn answer(&mut self, conn: u32, text: &str) -> Vec<String> {
        let Ok(v) = serde_json::from_str::<Value>(text) else { return vec![] };
        let id = v["id"].clone();
        let ok = |result: Value| vec![json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()];
        match v["method"].as_str().unwrap_or_default() {
            "auth" => ok(json!(true)),
            "eth_subscribe" => {
                self.next_sub += 1;
                let sid = format!("0x{:x}", self.next_sub);
                self.subs.insert(sid.clone(), (conn, v["params"][0].as_str().unwrap_or_default().to_owned()));
                ok(json!(sid))
            }
            "eth_unsubscribe" => {
                if let Some(sid) = v["params"][0].as_str() {
                    self.subs.remove(sid);
                }
                ok(json!(true))
            }
            "echo" => ok(v["params"].clone()),
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(u8),
    Unsubscribe(u8),
    Request {
        slow: bool,
        idempotent: bool,
    },
    /// Every live subscription gets its next message; with `replay`, the
    /// previous one again first (a server replaying after a reconnect).
    Publish {
        replay: bool,
    },
    Drop,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8).prop_map(Op::Subscribe),
        2 => (0u8..8).prop_map(Op::Unsubscribe),
        4 => (any::<bool>(), any::<bool>()).prop_map(|(slow, idempotent)| Op::Request { slow, idempotent }),
        5 => any::<bool>().prop_map(|replay| Op::Publish { replay }),
        2 => Just(Op::Drop),
        4 => (0u64..1500).prop_map(Op::Advance),
    ]
}

#[derive(Default)]
struct Seen {
    held: BTreeMap<u8, SubscriptionId>,
    responses: BTreeMap<u64, usize>,
    issued: BTreeSet<u64>,
    delivered: BTreeSet<(SubscriptionId, u64)>,
}

impl Seen {
    fn take(&mut self, sim: &mut Sim<Session>) -> Result<(), TestCaseError> {
        for output in sim.take_outputs() {
            let Output::Event(e) = output else { continue };
            match *e {
                Event::Response { id, .. } => *self.responses.entry(id.0).or_default() += 1,
                Event::SubscriptionFailed { id, .. } | Event::Unsubscribed { id } => {
                    self.held.retain(|_, held| *held != id);
                }
                Event::Data { subscription, message } => {
                    let v = json::parse(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let seq = v["params"]["result"]["seq"].as_u64().unwrap_or_default();
                    prop_assert!(
                        self.delivered.insert((subscription, seq)),
                        "{subscription} seq {seq} delivered twice"
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn run(ops: &[Op], seed: u64) -> Result<(), TestCaseError> {
    let adapter = JsonRpc::new()
        .subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription")
        .auth("auth", json!({}), None)
        .sequence_field("seq");
    let settings = SessionConfig::default().request_timeout(secs(1)).auth_timeout(secs(1));
    let mut sim = Sim::session(config(), seed, Box::new(adapter), settings);
    sim.echo = false;
    let server = Rc::new(RefCell::new(Server::default()));
    let s = server.clone();
    sim.responder = Some(Box::new(move |conn, text| s.borrow_mut().answer(conn, text)));
    let mut seen = Seen::default();
    let mut seq: HashMap<String, u64> = HashMap::new();
    sim.connect();
    for op in ops {
        match op {
            Op::Subscribe(k) => {
                if let Ok(id) = sim.client.subscribe(sim.now, format!("t{k}"), Default::default()) {
                    seen.held.insert(*k, id);
                }
                sim.drain();
            }
            Op::Unsubscribe(k) => {
                if let Some(id) = seen.held.remove(k) {
                    sim.client.unsubscribe(sim.now, id).unwrap();
                    sim.drain();
                }
            }
            Op::Request { slow, idempotent } => {
                let payload = RequestPayload::call(if *slow { "slow" } else { "echo" }, json!([1]));
                let options = RequestOptions::default().idempotent(*idempotent);
                if let Ok(id) = sim.client.request(sim.now, payload, options) {
                    seen.issued.insert(id.0);
                }
                sim.drain();
            }
            Op::Publish { replay } => {
                if let Some(conn) =
                    sim.current_id().filter(|_| sim.servers.last().is_some_and(|s| s.request_head.is_some()))
                {
                    let live: Vec<(String, String)> = server
                        .borrow()
                        .subs
                        .iter()
                        .filter(|(_, (c, _))| *c == conn)
                        .map(|(sid, (_, topic))| (sid.clone(), topic.clone()))
                        .collect();
                    for (sid, topic) in live {
                        let n = seq.entry(topic).or_default();
                        let mut send = |n: u64| {
                            let m = json!({"jsonrpc": "2.0", "method": "eth_subscription",
                                "params": {"subscription": sid, "result": {"seq": n}}});
                            sim.server_send(ServerMessage::text(m.to_string()));
                        };
                        if *replay && *n > 0 {
                            send(*n);
                        }
                        *n += 1;
                        send(*n);
                    }
                }
            }
            Op::Drop if sim.has_server() => sim.server_reset(),
            Op::Drop => {}
            Op::Advance(n) => sim.run_for(ms(*n)),
        }
        sim.run_for(ms(10));
        seen.take(&mut sim)?;
        // Every pending entry has a deadline within the longest timeout.
        let horizon = sim.now + secs(1);
        prop_assert!(sim.client.deadlines().all(|(_, at)| at <= horizon));
    }
    // The network calms down: the session gets ready again and settles.
    sim.run_until(secs(30), |s| s.client.is_ready());
    sim.run_for(secs(3));
    seen.take(&mut sim)?;
    prop_assert!(sim.client.is_ready());
    let subs = sim.client.subscriptions();
    let held: BTreeSet<SubscriptionId> = seen.held.values().copied().collect();
    let registry: BTreeSet<SubscriptionId> = subs.iter().map(|(id, _)| id).collect();
    prop_assert_eq!(&held, &registry);
    for (id, sub) in subs.iter() {
        prop_assert_eq!(sub.state, SubState::Active, "{} not active", id);
    }
    prop_assert_eq!(sim.client.pending_requests(), 0);
    for id in &seen.issued {
        prop_assert_eq!(seen.responses.get(id).copied(), Some(1), "request {} answered once", id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn subscriptions_survive_drops_and_requests_never_hang(ops in prop::collection::vec(op(), 1..60), seed in any::<u64>()) {
        run(&ops, seed)?;
    }
}
