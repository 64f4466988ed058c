//! A mock Ethereum node (feature `testing`) on nova-testkit, following the
//! protocol notes' scenarios: `eth_subscribe` answered with a hex id that is
//! different on every connection (so restored subscriptions get new ids),
//! the first `newHeads` notification in the same write as the subscribe
//! answer, a new head every tick, batches answered as one array in reverse
//! order, an unparsable request answered with an `id: null` error,
//! `eth_getLogs` serving a `removed: true` entry, `eth_getBlockByNumber` for
//! any block produced so far, and `-32005` for every request past a
//! per-connection budget. Dropping the socket and closing with 1009 come
//! from nova-testkit's `Behavior`.
//!
//! The chain is one for all connections and does not wait for them: the
//! head is block 0x1312d00 plus one block per `tick` since the first
//! connection opened, so blocks keep coming while no client is connected
//! and a client that reconnects finds the head moved on (the gap to
//! backfill). Each connection sends every head it has not sent yet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, Handler};
use serde_json::{Value, json};

use crate::testing_util::{json_of, lock, text};

/// The first block, when the first connection opens.
const GENESIS: u64 = 20_000_000;
/// Heads one connection sends at once when it fell behind (its ticks wait
/// while the client does not read).
const MAX_HEADS_PER_TICK: u64 = 64;

#[derive(Debug, Default)]
struct State {
    connections: u32,
    /// When the chain started (the first connection's first event).
    started: Option<Instant>,
    budget: Option<u32>,
    received: Vec<(u32, Value)>,
}

impl State {
    /// The head at `now`: one block per `tick` since the chain started.
    fn head(&mut self, now: Instant, tick: Duration) -> u64 {
        let started = *self.started.get_or_insert(now);
        let elapsed = now.saturating_duration_since(started).as_nanos();
        GENESIS + u64::try_from(elapsed / tick.as_nanos().max(1)).unwrap_or(u64::MAX - GENESIS)
    }
}

/// The mock node's shared state and configuration.
#[derive(Debug, Clone)]
pub struct MockEthereum {
    state: Arc<Mutex<State>>,
    tick: Duration,
}

impl Default for MockEthereum {
    fn default() -> MockEthereum {
        MockEthereum::new()
    }
}

impl MockEthereum {
    /// A node at block 0x1312d00 when the first connection opens, with a
    /// block every 20 ms from then on.
    pub fn new() -> MockEthereum {
        MockEthereum { state: Arc::new(Mutex::new(State::default())), tick: Duration::from_millis(20) }
    }

    /// Answers `-32005` to every request past `n` on a connection.
    pub fn request_budget(self, n: u32) -> MockEthereum {
        lock(&self.state).budget = Some(n);
        self
    }

    /// How often a new head is produced (whether or not a client is connected).
    pub fn tick(mut self, tick: Duration) -> MockEthereum {
        self.tick = tick;
        self
    }

    /// The per-connection behaviour to give a nova-testkit `MockServer`.
    pub fn behavior(&self) -> Behavior {
        let (state, tick) = (Arc::clone(&self.state), self.tick);
        Behavior::accept().handler(Some(self.tick), move || {
            let conn = {
                let mut s = lock(&state);
                s.connections += 1;
                s.connections
            };
            Box::new(Conn {
                state: Arc::clone(&state),
                tick,
                conn,
                subs: BTreeMap::new(),
                next_sub: 0,
                requests: 0,
                sent_head: None,
            })
        })
    }

    /// Every request received: (connection number from 1, request).
    pub fn received(&self) -> Vec<(u32, Value)> {
        lock(&self.state).received.clone()
    }
}

struct Conn {
    state: Arc<Mutex<State>>,
    tick: Duration,
    conn: u32,
    /// Server id → kind (`newHeads`, `logs`, ...).
    subs: BTreeMap<String, String>,
    next_sub: u64,
    requests: u32,
    /// The last head sent to this connection's `newHeads` subscriptions.
    sent_head: Option<u64>,
}

/// Block `number`'s header (its hash is derived from the number).
fn block(number: u64) -> Value {
    json!({"number": format!("{number:#x}"), "hash": format!("0x{number:064x}"),
        "parentHash": format!("0x{:064x}", number.saturating_sub(1)), "timestamp": format!("{:#x}", 1_700_000_000 + number)})
}

fn head(sub: &str, number: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": block(number)}})
}

impl Conn {
    /// The answer to one request, plus notifications to send right after it.
    fn answer(&mut self, now: Instant, request: &Value) -> (Value, Vec<Value>) {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
        let params = request.get("params").cloned().unwrap_or(json!([]));
        self.requests += 1;
        let (budget, latest) = {
            let mut s = lock(&self.state);
            (s.budget, s.head(now, self.tick))
        };
        let error =
            |code: i64, message: &str| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
        if budget.is_some_and(|b| self.requests > b) {
            return (error(-32005, "daily request count exceeded, request rate limited"), Vec::new());
        }
        let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
        match method {
            "eth_chainId" => (ok(json!("0x1")), Vec::new()),
            "eth_blockNumber" => (ok(json!(format!("{latest:#x}"))), Vec::new()),
            "eth_getBlockByNumber" => {
                let number = match params.get(0) {
                    Some(Value::String(tag)) if tag == "latest" => Some(latest),
                    Some(n) => crate::ethereum::quantity(n),
                    None => None,
                };
                match number {
                    // A block not produced yet is `null`, as on geth.
                    Some(n) if n > latest => (ok(Value::Null), Vec::new()),
                    Some(n) => (ok(block(n)), Vec::new()),
                    None => (error(-32602, "invalid argument 0: hex string without 0x prefix"), Vec::new()),
                }
            }
            "eth_subscribe" => {
                let kind = params.get(0).and_then(Value::as_str).unwrap_or_default().to_owned();
                if !["newHeads", "logs", "newPendingTransactions", "syncing"].contains(&kind.as_str()) {
                    return (error(-32602, "invalid argument 0: unknown subscription"), Vec::new());
                }
                self.next_sub += 1;
                // Differs per connection, and trimmed of leading zeros like geth's.
                let sub = format!("{:#x}", (u64::from(self.conn) << 32) | self.next_sub);
                self.subs.insert(sub.clone(), kind.clone());
                let first = if kind == "newHeads" {
                    self.sent_head = Some(latest);
                    vec![head(&sub, latest)]
                } else {
                    Vec::new()
                };
                (ok(json!(sub)), first)
            }
            "eth_unsubscribe" => {
                let sub = params.get(0).and_then(Value::as_str).unwrap_or_default();
                (ok(json!(self.subs.remove(sub).is_some())), Vec::new())
            }
            "eth_getLogs" => (
                ok(json!([
                    {"blockNumber": format!("{:#x}", latest - 1), "logIndex": "0x0", "transactionHash": "0x01", "removed": false},
                    {"blockNumber": format!("{:#x}", latest - 1), "logIndex": "0x0", "transactionHash": "0x01", "removed": true},
                ])),
                Vec::new(),
            ),
            _ => (error(-32601, "the method does not exist/is not available"), Vec::new()),
        }
    }
}

impl Handler for Conn {
    fn on_open(&mut self, now: Instant, _out: &mut Vec<Message>) {
        // The chain starts with the first connection.
        lock(&self.state).head(now, self.tick);
    }

    fn on_message(&mut self, now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(request) = json_of(message) else {
            out.push(text(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}})));
            return;
        };
        lock(&self.state).received.push((self.conn, request.clone()));
        if let Some(batch) = request.as_array() {
            // Answered as one array, in any order (here: reversed).
            let answers: Vec<Value> = batch.iter().rev().map(|r| self.answer(now, r).0).collect();
            out.push(text(&json!(answers)));
            return;
        }
        let (answer, then) = self.answer(now, &request);
        // The answer and the first notification in one write.
        let mut joined = vec![answer];
        joined.extend(then);
        out.extend(joined.iter().map(text));
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Message>) {
        let latest = lock(&self.state).head(now, self.tick);
        let Some(sent) = self.sent_head else { return };
        // Every head since the last one sent (a tick may come late).
        let from = (sent + 1).max(latest.saturating_sub(MAX_HEADS_PER_TICK - 1));
        for number in from..=latest {
            for (sub, kind) in &self.subs {
                if kind == "newHeads" {
                    out.push(text(&head(sub, number)));
                }
            }
        }
        self.sent_head = Some(sent.max(latest));
    }
}

#[cfg(test)]
mod tests {
    use nova_testkit::MockServer;

    use super::*;
    use crate::testing_util::client::{connect, next, next_where, send};

    #[test]
    fn subscription_ids_change_per_connection_and_heads_flow() {
        let mock = MockEthereum::new().tick(Duration::from_millis(5));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let mut ids = Vec::new();
        for _ in 0..2 {
            let mut ws = connect(&server.url("/"));
            send(&mut ws, json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}));
            let answer = next(&mut ws);
            let sub = answer["result"].as_str().unwrap().to_owned();
            let first = next(&mut ws);
            assert_eq!(first["params"]["subscription"], sub.as_str(), "the first head right behind the answer");
            next_where(&mut ws, |v| v["params"]["result"]["number"] != first["params"]["result"]["number"]);
            ids.push(sub);
        }
        assert_ne!(ids[0], ids[1]);
        server.shutdown();
    }

    #[test]
    fn the_chain_moves_on_while_no_client_is_connected_and_missed_blocks_are_served() {
        let mock = MockEthereum::new().tick(Duration::from_millis(20));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let number = |v: &Value| crate::ethereum::quantity(&v["params"]["result"]["number"]).expect("a head");
        let subscribe = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]});

        let mut ws = connect(&server.url("/"));
        send(&mut ws, subscribe.clone());
        assert!(next(&mut ws)["result"].is_string());
        let first = number(&next(&mut ws));
        let second = next(&mut ws);
        assert_eq!(number(&second), first + 1, "every head in order");
        let last = next(&mut ws);
        let last_seen = number(&last);
        drop(ws);

        // About 15 blocks while nobody is connected.
        std::thread::sleep(Duration::from_millis(300));
        let mut ws = connect(&server.url("/"));
        send(&mut ws, subscribe);
        assert!(next(&mut ws)["result"].is_string());
        let resumed = number(&next(&mut ws));
        assert!(resumed >= last_seen + 5, "the head moved on while disconnected: {last_seen} then {resumed}");

        let get = |id: u64, n: Value| json!({"jsonrpc": "2.0", "id": id, "method": "eth_getBlockByNumber", "params": [n, false]});
        send(&mut ws, get(2, json!(format!("{:#x}", last_seen + 1))));
        let missed = next_where(&mut ws, |v| v["id"] == 2)["result"].clone();
        assert_eq!(missed["number"], json!(format!("{:#x}", last_seen + 1)));
        assert_eq!(
            missed["parentHash"], last["params"]["result"]["hash"],
            "the missed block follows the last one seen"
        );
        send(&mut ws, get(3, json!(format!("{:#x}", resumed + 10_000))));
        assert_eq!(next_where(&mut ws, |v| v["id"] == 3)["result"], Value::Null, "a future block is null");
        send(&mut ws, get(4, json!("latest")));
        let latest = next_where(&mut ws, |v| v["id"] == 4)["result"]["number"].clone();
        assert!(crate::ethereum::quantity(&latest).is_some_and(|n| n >= resumed));
        server.shutdown();
    }

    #[test]
    fn batches_null_id_errors_removed_logs_and_rate_limits() {
        let mock = MockEthereum::new().request_budget(3).tick(Duration::from_secs(60));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let mut ws = connect(&server.url("/"));
        ws.send(tungstenite::Message::text("{oops")).unwrap();
        assert_eq!(
            next(&mut ws),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}})
        );
        send(
            &mut ws,
            json!([{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}]),
        );
        let batch = next(&mut ws);
        assert_eq!((batch[0]["id"].as_u64(), batch[1]["id"].as_u64()), (Some(2), Some(1)));
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 3, "method": "eth_getLogs", "params": [{}]}));
        assert_eq!(next(&mut ws)["result"][1]["removed"], true);
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 4, "method": "eth_chainId", "params": []}));
        assert_eq!(next(&mut ws)["error"]["code"], -32005);
        assert_eq!(mock.received().len(), 3);
        server.shutdown();
    }
}
