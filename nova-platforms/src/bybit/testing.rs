//! A mock Bybit v5 stream socket (feature `testing`) on nova-testkit,
//! following the protocol notes' scenarios: `op: auth` verified with the
//! recipe (expired `expires` → `Params Error`), private subscribe refused
//! before auth, the public or private pong shape, the spot limit of 10 args,
//! a whole batch failing on one unknown topic (`INVALID` in its name),
//! `already subscribed` for duplicates, `req_id` left out of every other ack
//! when asked, and data pushed for each subscribed topic every tick.
//!
//! `orderbook.<depth>.<symbol>` topics carry a book (up to 5 levels a side,
//! prices in steps of 0.01 around a price derived from the symbol): a
//! `snapshot` on the first tick after the subscribe, then a `delta` every
//! tick (the best levels move by one step, a level leaves with size `"0"`
//! and another enters, or the best bid's size changes), with `u` counting up
//! by one per message from a start that differs per connection, and `seq`
//! increasing. Each connection's books start afresh (a new snapshot after a
//! resubscribe). Other topics get `{"s": topic}` snapshots.
//!
//! The trade socket ([`Stream::Trade`]) answers in its camelCase shape:
//! `auth` with `retCode`, and every `order.*` op with `retCode: 0` and an
//! `orderId`, `reqId` echoed. [`MockBybit::ret_code_on`] answers an op with
//! an error code instead (10429 frequency protection, 10001 params error);
//! [`MockBybit::behavior_without_pongs`] is a connection that leaves
//! `op: ping` unanswered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::{Message, Secret};
use nova_testkit::{Behavior, Handler};
use serde_json::{Value, json};

use super::auth::signature;
use super::topics::Stream;
use crate::common::WallClock;
use crate::testing_util::{json_of, lock, text};

#[derive(Debug)]
struct State {
    api_key: String,
    secret: Secret,
    clock: WallClock,
    omit_req_id: bool,
    connections: u32,
    received: Vec<(u32, Value)>,
    /// Op → the `retCode` and `retMsg` every request of it gets.
    ret_codes: BTreeMap<String, (i64, String)>,
}

/// The mock server's shared state and configuration.
#[derive(Debug, Clone)]
pub struct MockBybit {
    stream: Stream,
    state: Arc<Mutex<State>>,
    tick: Duration,
}

impl MockBybit {
    /// A mock of `stream` knowing one API key; `clock` is the server's clock
    /// that `expires` is checked against.
    pub fn new(stream: Stream, api_key: &str, api_secret: Secret, clock: WallClock) -> MockBybit {
        let state = State {
            api_key: api_key.to_owned(),
            secret: api_secret,
            clock,
            omit_req_id: false,
            connections: 0,
            received: Vec::new(),
            ret_codes: BTreeMap::new(),
        };
        MockBybit { stream, state: Arc::new(Mutex::new(state)), tick: Duration::from_millis(20) }
    }

    /// Leaves `req_id` out of every other acknowledgement.
    pub fn omit_req_id(self) -> MockBybit {
        lock(&self.state).omit_req_id = true;
        self
    }

    /// How often data is pushed.
    pub fn tick(mut self, tick: Duration) -> MockBybit {
        self.tick = tick;
        self
    }

    /// Answers every request with `op` (`"order.create"`, ...) with the
    /// trade socket's error envelope: `retCode` `code` (10429 system
    /// frequency protection, 10001 params error, ...) and `retMsg`
    /// `message`, `reqId` echoed, on every connection. The connection stays open.
    pub fn ret_code_on(self, op: &str, code: i64, message: &str) -> MockBybit {
        lock(&self.state).ret_codes.insert(op.to_owned(), (code, message.to_owned()));
        self
    }

    /// The per-connection behaviour to give a nova-testkit `MockServer`.
    pub fn behavior(&self) -> Behavior {
        self.behavior_answering_pings(true)
    }

    /// The behaviour of a connection that answers everything but `op: ping`
    /// (protocol pings are still answered): a socket that looks alive to
    /// the WebSocket layer while Bybit no longer serves it. Give it to one
    /// connection of a `MockServer`.
    pub fn behavior_without_pongs(&self) -> Behavior {
        self.behavior_answering_pings(false)
    }

    fn behavior_answering_pings(&self, pongs: bool) -> Behavior {
        let (state, stream) = (Arc::clone(&self.state), self.stream);
        Behavior::accept().handler(Some(self.tick), move || {
            let conn = {
                let mut s = lock(&state);
                s.connections += 1;
                s.connections
            };
            Box::new(Conn {
                state: Arc::clone(&state),
                stream,
                conn,
                authed: false,
                topics: BTreeSet::new(),
                books: BTreeMap::new(),
                acks: 0,
                pongs,
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
    stream: Stream,
    conn: u32,
    authed: bool,
    topics: BTreeSet<String>,
    /// Orderbook topic → its book on this connection.
    books: BTreeMap<String, Book>,
    acks: u64,
    /// Whether `op: ping` is answered.
    pongs: bool,
}

/// One orderbook topic's book: levels at `mid ± 1..=levels` steps of 0.01.
struct Book {
    symbol: String,
    levels: i64,
    mid: i64,
    /// The size of the best bid (the other levels' sizes follow from their price).
    best_bid_size: u64,
    u: u64,
    seq: u64,
    /// Whether the snapshot went out.
    snapshot_sent: bool,
}

/// A price in steps of 0.01 as Bybit spells it.
fn price(steps: i64) -> String {
    format!("{}.{:02}", steps / 100, steps % 100)
}

/// A `[price, size]` level; size `"0"` deletes the level.
fn level(steps: i64, size: u64) -> Value {
    let size = if size == 0 { "0".to_owned() } else { format!("{}.{:03}", size / 1000, size % 1000) };
    json!([price(steps), size])
}

impl Book {
    /// The book of `orderbook.<depth>.<symbol>` on connection `conn`.
    fn new(topic: &str, conn: u32) -> Option<Book> {
        let mut parts = topic.strip_prefix("orderbook.")?.splitn(2, '.');
        let depth: i64 = parts.next()?.parse().ok()?;
        let symbol = parts.next()?.to_owned();
        let hash = symbol.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Some(Book {
            levels: depth.clamp(1, 5),
            mid: 100_000 + i64::try_from(hash % 9_000_000).unwrap_or(0),
            best_bid_size: 1_500,
            u: u64::from(conn) * 1_000_000,
            seq: u64::from(conn) * 1_000_000_000,
            snapshot_sent: false,
            symbol,
        })
    }

    fn size(&self, steps_from_mid: i64) -> u64 {
        if steps_from_mid == -1 { self.best_bid_size } else { 250 * u64::try_from(steps_from_mid.abs()).unwrap_or(1) }
    }

    /// The next message for `topic`: the snapshot, then deltas.
    fn next(&mut self, topic: &str) -> Value {
        self.u += 1;
        self.seq += 3;
        let (kind, bids, asks) = if self.snapshot_sent {
            self.delta()
        } else {
            self.snapshot_sent = true;
            let bids = (1..=self.levels).map(|i| level(self.mid - i, self.size(-i))).collect();
            let asks = (1..=self.levels).map(|i| level(self.mid + i, self.size(i))).collect();
            ("snapshot", bids, asks)
        };
        json!({"topic": topic, "type": kind, "ts": 1_700_000_000_100u64 + self.u, "cts": 1_700_000_000_090u64 + self.u,
            "data": {"s": self.symbol, "b": bids, "a": asks, "u": self.u, "seq": self.seq}})
    }

    /// One step: the book moves up or down a step (a level enters on one
    /// side and leaves on the other, per side), or the best bid's size changes.
    fn delta(&mut self) -> (&'static str, Vec<Value>, Vec<Value>) {
        let (old, n) = (self.mid, self.levels);
        match self.u % 4 {
            0 | 1 => {
                // Up a step: bid `old` enters, bid `old - n` leaves; ask `old + 1` leaves, `old + n + 1` enters.
                self.mid += 1;
                let bids = vec![level(old, self.size(-1)), level(old - n, 0)];
                let asks = vec![level(old + 1, 0), level(old + n + 1, self.size(n))];
                ("delta", bids, asks)
            }
            2 => {
                self.mid -= 1;
                let bids = vec![level(old - 1, 0), level(old - n - 1, self.size(-n))];
                let asks = vec![level(old, self.size(1)), level(old + n, 0)];
                ("delta", bids, asks)
            }
            _ => {
                self.best_bid_size += 100;
                ("delta", vec![level(old - 1, self.best_bid_size)], Vec::new())
            }
        }
    }
}

impl Conn {
    fn ack(&mut self, op: &str, req_id: &Value, success: bool, ret_msg: &str) -> Value {
        self.acks += 1;
        let mut v = json!({"success": success, "ret_msg": ret_msg, "op": op, "conn_id": format!("c{}", self.conn)});
        let omit = lock(&self.state).omit_req_id && self.acks % 2 == 0;
        if !req_id.is_null() && !omit {
            v["req_id"] = req_id.clone();
        }
        v
    }

    fn subscribe(&mut self, args: &[String]) -> Result<(), String> {
        if self.stream == Stream::Spot && args.len() > 10 {
            return Err("args size >10".into());
        }
        if self.stream == Stream::Private && !self.authed {
            return Err("request not authorized".into());
        }
        if let Some(bad) = args.iter().find(|t| t.contains("INVALID")) {
            return Err(format!("error:handler not found,topic:{bad}"));
        }
        if let Some(dup) = args.iter().find(|t| self.topics.contains(*t)) {
            return Err(format!("error:already subscribed,topic:{dup}"));
        }
        for topic in args {
            if let Some(book) = Book::new(topic, self.conn) {
                self.books.insert(topic.clone(), book);
            }
        }
        self.topics.extend(args.iter().cloned());
        Ok(())
    }

    /// The trade socket's camelCase envelope.
    fn trade_reply(&self, op: &str, req_id: &Value, code: i64, message: &str, data: Value) -> Value {
        let mut v = json!({"retCode": code, "retMsg": message, "op": op, "data": data, "retExtInfo": {},
            "header": {"X-Bapi-Limit": "10", "Traceid": "t1"}, "connId": format!("c{}", self.conn)});
        if !req_id.is_null() {
            v["reqId"] = req_id.clone();
        }
        v
    }
}

impl Handler for Conn {
    fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(request) = json_of(message) else { return };
        lock(&self.state).received.push((self.conn, request.clone()));
        let req_id = request.get("req_id").or_else(|| request.get("reqId")).cloned().unwrap_or(Value::Null);
        let args: Vec<Value> = request.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
        let op = request.get("op").and_then(Value::as_str).unwrap_or_default();
        let forced = lock(&self.state).ret_codes.get(op).cloned();
        if let Some((code, message)) = forced {
            out.push(text(&self.trade_reply(op, &req_id, code, &message, json!({}))));
            return;
        }
        let reply = match op {
            "ping" if !self.pongs => return,
            "ping" if self.stream == Stream::Private => {
                json!({"req_id": req_id, "op": "pong", "args": ["1700000000000"], "conn_id": format!("c{}", self.conn)})
            }
            "ping" => self.ack("ping", &req_id, true, "pong"),
            "auth" => {
                let s = lock(&self.state);
                let expires = args.get(1).and_then(Value::as_u64).unwrap_or(0);
                let ok_key = args.first().and_then(Value::as_str) == Some(s.api_key.as_str());
                let ok_sig = args.get(2).and_then(Value::as_str) == Some(signature(&s.secret, expires).as_str());
                let fresh = expires >= s.clock.unix_millis();
                drop(s);
                let msg = if !fresh {
                    "Params Error"
                } else if !(ok_key && ok_sig) {
                    "Invalid signature"
                } else {
                    ""
                };
                self.authed = msg.is_empty();
                if self.stream == Stream::Trade {
                    let code = if self.authed { 0 } else { 10004 };
                    // Bybit does not echo `reqId` on the trade socket's auth.
                    self.trade_reply("auth", &Value::Null, code, if self.authed { "OK" } else { msg }, json!({}))
                } else {
                    self.ack("auth", &req_id, self.authed, msg)
                }
            }
            op if self.stream == Stream::Trade && op.starts_with("order.") => {
                if self.authed {
                    self.acks += 1;
                    let data = json!({"orderId": format!("o-{}", self.acks), "orderLinkId": ""});
                    self.trade_reply(op, &req_id, 0, "OK", data)
                } else {
                    self.trade_reply(op, &req_id, 10003, "Invalid apikey", json!({}))
                }
            }
            op @ ("subscribe" | "unsubscribe") => {
                let topics: Vec<String> = args.iter().filter_map(Value::as_str).map(str::to_owned).collect();
                let result = if op == "subscribe" {
                    self.subscribe(&topics)
                } else {
                    topics.iter().for_each(|t| {
                        self.topics.remove(t);
                        self.books.remove(t);
                    });
                    Ok(())
                };
                match result {
                    Ok(()) => self.ack(op, &req_id, true, ""),
                    Err(e) => self.ack(op, &req_id, false, &e),
                }
            }
            other => self.ack(other, &req_id, false, "error:unknown op"),
        };
        out.push(text(&reply));
    }

    fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
        for topic in &self.topics {
            let message = match self.books.get_mut(topic) {
                Some(book) => book.next(topic),
                None => json!({"topic": topic, "type": "snapshot", "ts": 1_700_000_000_100u64, "data": {"s": topic}}),
            };
            out.push(text(&message));
        }
    }
}

#[cfg(test)]
mod tests {
    use nova_testkit::MockServer;

    use super::*;
    use crate::testing_util::client::{connect, next, next_where, send};

    const NOW: u64 = 1_700_000_000_000;

    fn start(stream: Stream) -> (MockBybit, MockServer) {
        let mock = MockBybit::new(stream, "K", Secret::new("bybit_test_secret"), WallClock::fixed(NOW));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        (mock, server)
    }

    #[test]
    fn private_socket_checks_expiry_signature_and_auth_before_subscribe() {
        let (mock, server) = start(Stream::Private);
        let mut ws = connect(&server.url("/v5/private"));
        send(&mut ws, json!({"req_id": "1", "op": "subscribe", "args": ["order"]}));
        assert_eq!(next(&mut ws)["success"], false);
        let late = NOW - 1;
        send(
            &mut ws,
            json!({"req_id": "2", "op": "auth", "args": ["K", late, signature(&Secret::new("bybit_test_secret"), late)]}),
        );
        assert_eq!(next(&mut ws)["ret_msg"], "Params Error");
        let exp = NOW + 5_000;
        send(
            &mut ws,
            json!({"req_id": "3", "op": "auth", "args": ["K", exp, signature(&Secret::new("bybit_test_secret"), exp)]}),
        );
        assert_eq!(next(&mut ws)["success"], true);
        send(&mut ws, json!({"req_id": "4", "op": "subscribe", "args": ["order"]}));
        assert_eq!(next(&mut ws)["success"], true);
        send(&mut ws, json!({"req_id": "5", "op": "ping"}));
        assert_eq!(next_where(&mut ws, |v| v["req_id"] == "5")["op"], "pong", "private pong shape");
        assert_eq!(mock.received().len(), 5);
        server.shutdown();
    }

    #[test]
    fn orderbooks_start_with_a_snapshot_then_deltas_in_sequence() {
        let (_mock, server) = start(Stream::Spot);
        let mut ws = connect(&server.url("/v5/public/spot"));
        send(&mut ws, json!({"req_id": "1", "op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}));
        assert_eq!(next(&mut ws)["success"], true);
        let snapshot = next_where(&mut ws, |v| v.get("topic").is_some());
        assert_eq!((snapshot["type"].as_str(), snapshot["data"]["s"].as_str()), (Some("snapshot"), Some("BTCUSDT")));
        // Price (in hundredths) → size, per side.
        let mut book: [BTreeMap<i64, String>; 2] = Default::default();
        let steps = |p: &Value| {
            let (whole, frac) = p.as_str().unwrap().split_once('.').unwrap();
            whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
        };
        let mut apply = |data: &Value| {
            for (side, key) in [(0, "b"), (1, "a")] {
                for l in data[key].as_array().unwrap() {
                    if l[1] == "0" {
                        assert!(book[side].remove(&steps(&l[0])).is_some(), "only a level in the book is deleted");
                    } else {
                        book[side].insert(steps(&l[0]), l[1].as_str().unwrap().to_owned());
                    }
                }
            }
            let (bid, ask) = (*book[0].keys().next_back().unwrap(), *book[1].keys().next().unwrap());
            assert!(bid < ask, "crossed book: {bid} / {ask}");
            assert_eq!((book[0].len(), book[1].len()), (5, 5), "5 levels a side");
        };
        apply(&snapshot["data"]);
        let first = snapshot["data"]["u"].as_u64().unwrap();
        let mut moved = false;
        for u in first + 1..=first + 8 {
            let delta = next(&mut ws);
            assert_eq!(delta["type"], "delta");
            assert_eq!(delta["data"]["u"].as_u64(), Some(u), "u counts up by one");
            moved |= delta["data"]["b"].as_array().unwrap().iter().any(|l| l[1] == "0");
            apply(&delta["data"]);
        }
        assert!(moved, "levels leave the book");
        server.shutdown();
    }

    #[test]
    fn spot_limits_batches_duplicates_and_public_pongs() {
        let (_mock, server) = start(Stream::Spot);
        let mut ws = connect(&server.url("/v5/public/spot"));
        let eleven: Vec<String> = (0..11).map(|i| format!("tickers.S{i}USDT")).collect();
        send(&mut ws, json!({"req_id": "1", "op": "subscribe", "args": eleven}));
        assert_eq!(next(&mut ws)["ret_msg"], "args size >10");
        send(
            &mut ws,
            json!({"req_id": "2", "op": "subscribe", "args": ["tickers.BTCUSDT", "orderbook.INVALID.BTCUSDT"]}),
        );
        assert!(next(&mut ws)["ret_msg"].as_str().unwrap().contains("handler not found"));
        send(&mut ws, json!({"req_id": "3", "op": "subscribe", "args": ["tickers.BTCUSDT"]}));
        assert_eq!(next(&mut ws)["success"], true, "the failed batch subscribed nothing");
        send(&mut ws, json!({"req_id": "4", "op": "subscribe", "args": ["tickers.BTCUSDT"]}));
        assert!(
            next_where(&mut ws, |v| v["req_id"] == "4")["ret_msg"].as_str().unwrap().contains("already subscribed")
        );
        let data = next_where(&mut ws, |v| v.get("topic").is_some());
        assert_eq!(data["topic"], "tickers.BTCUSDT");
        send(&mut ws, json!({"req_id": "5", "op": "ping"}));
        let pong = next_where(&mut ws, |v| v["req_id"] == "5");
        assert_eq!((pong["op"].as_str(), pong["ret_msg"].as_str()), (Some("ping"), Some("pong")));
        server.shutdown();
    }

    #[test]
    fn trade_socket_envelopes_forced_codes_and_connections_without_pongs() {
        let mock = MockBybit::new(Stream::Trade, "K", Secret::new("bybit_test_secret"), WallClock::fixed(NOW))
            .ret_code_on("order.cancel", 10429, "System frequency protection");
        let server = MockServer::builder().connection(mock.behavior_without_pongs()).start().expect("mock starts");
        let mut ws = connect(&server.url("/v5/trade"));
        let exp = NOW + 5_000;
        send(
            &mut ws,
            json!({"reqId": "1", "op": "auth", "args": ["K", exp, signature(&Secret::new("bybit_test_secret"), exp)]}),
        );
        let auth = next(&mut ws);
        assert_eq!((auth["op"].as_str(), auth["retCode"].as_i64()), (Some("auth"), Some(0)));
        send(&mut ws, json!({"reqId": "2", "op": "order.create", "args": [{"symbol": "BTCUSDT"}]}));
        let created = next(&mut ws);
        assert_eq!((created["reqId"].as_str(), created["retCode"].as_i64()), (Some("2"), Some(0)));
        assert!(created["data"]["orderId"].is_string());
        send(&mut ws, json!({"reqId": "3", "op": "ping"}));
        send(&mut ws, json!({"reqId": "4", "op": "order.cancel", "args": [{"orderId": "o-1"}]}));
        let cancel = next(&mut ws);
        assert_eq!(
            (cancel["reqId"].as_str(), cancel["retCode"].as_i64()),
            (Some("4"), Some(10429)),
            "no pong came first"
        );
        assert_eq!(mock.received().len(), 4);
        server.shutdown();
    }
}
