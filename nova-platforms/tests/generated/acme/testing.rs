//! A mock Acme server on nova-testkit (feature `testing`), speaking the
//! protocol of the module docs: auth checked against one key, `private.*`
//! topics refused before auth, topics containing `INVALID` refused, data
//! pushed for every subscribed topic on each tick (numbered per topic and
//! connection from 1), pongs (unless told to ignore pings), a `time`
//! request, and a first connection dropped after a while when asked.
//!
//! **Change:** mirror the platform's real answers here as you learn them
//! (from its docs or recorded sessions), so the tests keep checking the
//! adapter against what the platform actually sends.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, Handler, MockServer};
use serde_json::{Value, json};

use super::{AUTH_REQUIRED, INVALID_CREDENTIALS, UNKNOWN_TOPIC};

/// Error code of the mock for an op it does not know.
pub const UNKNOWN_OP: i64 = 4000;

#[derive(Debug)]
struct State {
    api_key: String,
    api_secret: String,
    ignore_pings: bool,
    connections: u32,
    received: Vec<(u32, Value)>,
}

/// The mock server's configuration and what it saw, shared by all its
/// connections.
#[derive(Debug, Clone)]
pub struct MockAcme {
    state: Arc<Mutex<State>>,
    tick: Duration,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread poisons the lock; the mock only records and answers.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockAcme {
    /// A mock that accepts one API key and secret.
    pub fn new(api_key: &str, api_secret: &str) -> MockAcme {
        let state = State {
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            ignore_pings: false,
            connections: 0,
            received: Vec::new(),
        };
        MockAcme { state: Arc::new(Mutex::new(state)), tick: Duration::from_millis(20) }
    }

    /// How often data is pushed (default 20 ms).
    pub fn tick(mut self, tick: Duration) -> MockAcme {
        self.tick = tick;
        self
    }

    /// The push interval.
    pub fn tick_interval(&self) -> Duration {
        self.tick
    }

    /// Leaves pings unanswered (a connection the heartbeat finds dead).
    pub fn ignore_pings(self) -> MockAcme {
        lock(&self.state).ignore_pings = true;
        self
    }

    /// The server side of one new connection (connections are numbered from 1).
    pub fn connection(&self) -> Box<dyn Handler> {
        let conn = {
            let mut state = lock(&self.state);
            state.connections += 1;
            state.connections
        };
        Box::new(Conn { state: Arc::clone(&self.state), conn, authed: false, topics: BTreeMap::new() })
    }

    /// The per-connection behaviour to give a nova-testkit [`MockServer`].
    pub fn behavior(&self) -> Behavior {
        let mock = self.clone();
        Behavior::accept().handler(Some(self.tick), move || mock.connection())
    }

    /// Starts a [`MockServer`] on 127.0.0.1 that runs for at most 30 s;
    /// with `drop_first_after`, its first connection is dropped (no close
    /// frame) that long after it opened.
    ///
    /// # Errors
    ///
    /// The server's socket could not be opened.
    pub fn serve(&self, drop_first_after: Option<Duration>) -> io::Result<MockServer> {
        let first = match drop_first_after {
            Some(after) => self.behavior().drop_after(after),
            None => self.behavior(),
        };
        MockServer::builder().lifetime(Duration::from_secs(30)).connection(first).otherwise(self.behavior()).start()
    }

    /// Every request received: (connection number, request).
    pub fn received(&self) -> Vec<(u32, Value)> {
        lock(&self.state).received.clone()
    }

    /// The ops received on connection `conn`, pings left out.
    pub fn ops(&self, conn: u32) -> Vec<String> {
        let received = self.received().into_iter().filter(|(c, _)| *c == conn);
        received.filter_map(|(_, v)| v["op"].as_str().map(str::to_owned)).filter(|op| op != "ping").collect()
    }

    /// Connections opened so far.
    pub fn connections(&self) -> u32 {
        lock(&self.state).connections
    }
}

/// One connection of the mock.
struct Conn {
    state: Arc<Mutex<State>>,
    conn: u32,
    authed: bool,
    /// Subscribed topics and the last number pushed for each.
    topics: BTreeMap<String, u64>,
}

fn ok(op: &str, req_id: &Value) -> Value {
    json!({"op": op, "req_id": req_id, "success": true})
}

fn refused(op: &str, req_id: &Value, code: i64, msg: &str) -> Value {
    json!({"op": op, "req_id": req_id, "success": false, "code": code, "msg": msg})
}

impl Conn {
    fn subscribe(&mut self, topics: &[String]) -> Result<(), (i64, String)> {
        if !self.authed && topics.iter().any(|t| t.starts_with("private.")) {
            return Err((AUTH_REQUIRED, "authenticate first".to_owned()));
        }
        // One bad topic fails the whole request, as on many platforms.
        if let Some(bad) = topics.iter().find(|t| t.contains("INVALID")) {
            return Err((UNKNOWN_TOPIC, format!("unknown topic {bad}")));
        }
        for topic in topics {
            self.topics.entry(topic.clone()).or_insert(0);
        }
        Ok(())
    }
}

impl Handler for Conn {
    fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Ok(request) = serde_json::from_slice::<Value>(message.as_bytes()) else { return };
        let ignore_pings = {
            let mut state = lock(&self.state);
            state.received.push((self.conn, request.clone()));
            state.ignore_pings
        };
        let req_id = request.get("req_id").cloned().unwrap_or(Value::Null);
        let args: Vec<String> = request
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let op = request.get("op").and_then(Value::as_str).unwrap_or_default();
        let reply = match op {
            "ping" if ignore_pings => return,
            "ping" => json!({"op": "pong", "req_id": req_id}),
            "auth" => {
                let state = lock(&self.state);
                self.authed = args == [state.api_key.clone(), state.api_secret.clone()];
                drop(state);
                if self.authed {
                    ok(op, &req_id)
                } else {
                    refused(op, &req_id, INVALID_CREDENTIALS, "invalid api key or secret")
                }
            }
            "subscribe" => match self.subscribe(&args) {
                Ok(()) => ok(op, &req_id),
                Err((code, msg)) => refused(op, &req_id, code, &msg),
            },
            "unsubscribe" => {
                for topic in &args {
                    self.topics.remove(topic);
                }
                ok(op, &req_id)
            }
            "time" => json!({"op": op, "req_id": req_id, "success": true, "data": {"time": 1_700_000_000_000u64}}),
            _ => refused(op, &req_id, UNKNOWN_OP, "unknown op"),
        };
        out.push(Message::text(reply.to_string()));
    }

    fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
        for (topic, seq) in &mut self.topics {
            *seq += 1;
            let data = json!({"topic": topic, "seq": *seq, "data": {"price": 100 + *seq}});
            out.push(Message::text(data.to_string()));
        }
    }
}
