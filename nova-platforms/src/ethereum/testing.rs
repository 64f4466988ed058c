//! A mock Ethereum node (feature `testing`) on nova-testkit, following the
//! protocol notes' scenarios: `eth_subscribe` answered with a hex id that is
//! different on every connection (so restored subscriptions get new ids),
//! the first `newHeads` notification in the same write as the subscribe
//! answer, a new head every tick, batches answered as one array in reverse
//! order, an unparsable request answered with an `id: null` error,
//! `eth_getLogs` serving a `removed: true` entry, and `-32005` for every
//! request past a per-connection budget. Dropping the socket and closing
//! with 1009 come from nova-testkit's `Behavior`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, Handler};
use serde_json::{Value, json};

use crate::testing_util::{json_of, lock, text};

#[derive(Debug, Default)]
struct State {
    connections: u32,
    block: u64,
    budget: Option<u32>,
    received: Vec<(u32, Value)>,
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
    /// A node at block 0x1312d00.
    pub fn new() -> MockEthereum {
        let state = State { block: 20_000_000, ..State::default() };
        MockEthereum { state: Arc::new(Mutex::new(state)), tick: Duration::from_millis(20) }
    }

    /// Answers `-32005` to every request past `n` on a connection.
    pub fn request_budget(self, n: u32) -> MockEthereum {
        lock(&self.state).budget = Some(n);
        self
    }

    /// How often a new head is produced.
    pub fn tick(mut self, tick: Duration) -> MockEthereum {
        self.tick = tick;
        self
    }

    /// The per-connection behaviour to give a nova-testkit `MockServer`.
    pub fn behavior(&self) -> Behavior {
        let state = Arc::clone(&self.state);
        Behavior::accept().handler(Some(self.tick), move || {
            let conn = {
                let mut s = lock(&state);
                s.connections += 1;
                s.connections
            };
            Box::new(Conn { state: Arc::clone(&state), conn, subs: BTreeMap::new(), next_sub: 0, requests: 0 })
        })
    }

    /// Every request received: (connection number from 1, request).
    pub fn received(&self) -> Vec<(u32, Value)> {
        lock(&self.state).received.clone()
    }
}

struct Conn {
    state: Arc<Mutex<State>>,
    conn: u32,
    /// Server id → kind (`newHeads`, `logs`, ...).
    subs: BTreeMap<String, String>,
    next_sub: u64,
    requests: u32,
}

fn head(sub: &str, number: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub,
        "result": {"number": format!("{number:#x}"), "hash": format!("0x{number:064x}"), "parentHash": format!("0x{:064x}", number - 1)}}})
}

impl Conn {
    /// The answer to one request, plus notifications to send right after it.
    fn answer(&mut self, request: &Value) -> (Value, Vec<Value>) {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
        let params = request.get("params").cloned().unwrap_or(json!([]));
        self.requests += 1;
        let (budget, block) = {
            let s = lock(&self.state);
            (s.budget, s.block)
        };
        let error =
            |code: i64, message: &str| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
        if budget.is_some_and(|b| self.requests > b) {
            return (error(-32005, "daily request count exceeded, request rate limited"), Vec::new());
        }
        let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
        match method {
            "eth_chainId" => (ok(json!("0x1")), Vec::new()),
            "eth_blockNumber" => (ok(json!(format!("{block:#x}"))), Vec::new()),
            "eth_subscribe" => {
                let kind = params.get(0).and_then(Value::as_str).unwrap_or_default().to_owned();
                if !["newHeads", "logs", "newPendingTransactions", "syncing"].contains(&kind.as_str()) {
                    return (error(-32602, "invalid argument 0: unknown subscription"), Vec::new());
                }
                self.next_sub += 1;
                // Differs per connection, and trimmed of leading zeros like geth's.
                let sub = format!("{:#x}", (u64::from(self.conn) << 32) | self.next_sub);
                self.subs.insert(sub.clone(), kind.clone());
                let first = if kind == "newHeads" { vec![head(&sub, block)] } else { Vec::new() };
                (ok(json!(sub)), first)
            }
            "eth_unsubscribe" => {
                let sub = params.get(0).and_then(Value::as_str).unwrap_or_default();
                (ok(json!(self.subs.remove(sub).is_some())), Vec::new())
            }
            "eth_getLogs" => (
                ok(json!([
                    {"blockNumber": format!("{:#x}", block - 1), "logIndex": "0x0", "transactionHash": "0x01", "removed": false},
                    {"blockNumber": format!("{:#x}", block - 1), "logIndex": "0x0", "transactionHash": "0x01", "removed": true},
                ])),
                Vec::new(),
            ),
            _ => (error(-32601, "the method does not exist/is not available"), Vec::new()),
        }
    }
}

impl Handler for Conn {
    fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(request) = json_of(message) else {
            out.push(text(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}})));
            return;
        };
        lock(&self.state).received.push((self.conn, request.clone()));
        if let Some(batch) = request.as_array() {
            // Answered as one array, in any order (here: reversed).
            let answers: Vec<Value> = batch.iter().rev().map(|r| self.answer(r).0).collect();
            out.push(text(&json!(answers)));
            return;
        }
        let (answer, then) = self.answer(&request);
        // The answer and the first notification in one write.
        let mut joined = vec![answer];
        joined.extend(then);
        out.extend(joined.iter().map(text));
    }

    fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
        let block = {
            let mut s = lock(&self.state);
            s.block += 1;
            s.block
        };
        for (sub, kind) in &self.subs {
            if kind == "newHeads" {
                out.push(text(&head(sub, block)));
            }
        }
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
