//! A mock Discord Gateway (feature `testing`) on nova-testkit, following the
//! protocol notes' scenarios: Hello on open, Identify → READY (session id,
//! resume URL), a dispatch with a sequence number every tick, op 1 → op 11
//! (or no ACK when told, for zombie tests: on every connection, or on one
//! with [`MockDiscord::behavior_without_acks`]), Resume of a known session →
//! the missed dispatches then RESUMED, an unknown session or a wrong token
//! → op 9 `false`. Close codes (4004, 4000, ...) come from nova-testkit's
//! `Behavior::close_after` on a connection of its own. A payload other than
//! a heartbeat before Identify/Resume, which the real Gateway closes with
//! 4003, is recorded ([`MockDiscord::unauthenticated`]; a handler cannot
//! close the connection itself).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, Handler};
use serde_json::{Value, json};

use crate::testing_util::{json_of, lock, text};

/// Dispatches kept per session for resuming (older ones are gone, as on the
/// real Gateway after a while).
const MAX_KEPT: usize = 256;

#[derive(Debug, Default)]
struct State {
    token: String,
    interval_ms: u64,
    ack: bool,
    dispatch: bool,
    sessions: BTreeMap<String, Vec<(u64, Value)>>,
    next_session: u32,
    received: Vec<(u32, Value)>,
    unauthenticated: Vec<(u32, Value)>,
    connections: u32,
}

/// The mock Gateway's shared state and configuration.
#[derive(Debug, Clone)]
pub struct MockDiscord {
    state: Arc<Mutex<State>>,
    tick: Duration,
}

impl MockDiscord {
    /// A Gateway accepting `token`, with a 41.25 s heartbeat interval.
    pub fn new(token: &str) -> MockDiscord {
        let state =
            State { token: token.to_owned(), interval_ms: 41_250, ack: true, dispatch: true, ..State::default() };
        MockDiscord { state: Arc::new(Mutex::new(state)), tick: Duration::from_millis(20) }
    }

    /// The `heartbeat_interval` announced in Hello.
    pub fn heartbeat_interval(self, interval: Duration) -> MockDiscord {
        lock(&self.state).interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Whether heartbeats are acknowledged (off: the client must see a zombie).
    pub fn acknowledge_heartbeats(self, ack: bool) -> MockDiscord {
        lock(&self.state).ack = ack;
        self
    }

    /// How often a `MESSAGE_CREATE` is dispatched to ready connections.
    pub fn tick(mut self, tick: Duration) -> MockDiscord {
        self.tick = tick;
        self
    }

    /// The per-connection behaviour to give a nova-testkit `MockServer`.
    pub fn behavior(&self) -> Behavior {
        self.behavior_acking(None)
    }

    /// The behaviour of a connection that never acknowledges heartbeats
    /// (op 1 gets no op 11), whatever [`acknowledge_heartbeats`](Self::acknowledge_heartbeats)
    /// says; everything else as [`behavior`](Self::behavior). Give it to one
    /// connection of a `MockServer`: the client must find the zombie, and
    /// resume on the next connection.
    pub fn behavior_without_acks(&self) -> Behavior {
        self.behavior_acking(Some(false))
    }

    fn behavior_acking(&self, ack: Option<bool>) -> Behavior {
        let state = Arc::clone(&self.state);
        Behavior::accept().handler(Some(self.tick), move || {
            let conn = {
                let mut s = lock(&state);
                s.connections += 1;
                s.connections
            };
            Box::new(Conn { state: Arc::clone(&state), conn, session: None, seq: 0, authenticating: false, ack })
        })
    }

    /// Every payload received: (connection number from 1, payload).
    pub fn received(&self) -> Vec<(u32, Value)> {
        lock(&self.state).received.clone()
    }

    /// Payloads other than heartbeats received before the connection's
    /// Identify or Resume (the real Gateway closes with 4003 "Not
    /// authenticated"): (connection number, payload).
    pub fn unauthenticated(&self) -> Vec<(u32, Value)> {
        lock(&self.state).unauthenticated.clone()
    }
}

struct Conn {
    state: Arc<Mutex<State>>,
    conn: u32,
    session: Option<String>,
    seq: u64,
    /// Identify or Resume arrived on this connection.
    authenticating: bool,
    /// Whether heartbeats are acknowledged here; `None`: as the state says.
    ack: Option<bool>,
}

impl Conn {
    fn dispatch(&mut self, t: &str, d: Value, out: &mut Vec<Message>) {
        self.seq += 1;
        let v = json!({"op": 0, "t": t, "s": self.seq, "d": d});
        if let Some(session) = &self.session {
            let mut s = lock(&self.state);
            let kept = s.sessions.entry(session.clone()).or_default();
            if kept.len() == MAX_KEPT {
                kept.remove(0);
            }
            kept.push((self.seq, v.clone()));
        }
        out.push(text(&v));
    }
}

impl Handler for Conn {
    fn on_open(&mut self, _now: Instant, out: &mut Vec<Message>) {
        let interval = lock(&self.state).interval_ms;
        out.push(text(&json!({"op": 10, "d": {"heartbeat_interval": interval}, "s": null, "t": null})));
    }

    fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(payload) = json_of(message) else { return };
        let op = payload.get("op").and_then(Value::as_u64);
        {
            let mut s = lock(&self.state);
            s.received.push((self.conn, payload.clone()));
            match op {
                Some(2 | 6) => self.authenticating = true,
                Some(1) => {}
                _ if !self.authenticating => s.unauthenticated.push((self.conn, payload.clone())),
                _ => {}
            }
        }
        let d = payload.get("d").cloned().unwrap_or(Value::Null);
        let token_ok = |s: &State| d.get("token").and_then(Value::as_str) == Some(s.token.as_str());
        match op {
            Some(1) if self.ack.unwrap_or_else(|| lock(&self.state).ack) => {
                out.push(text(&json!({"op": 11, "d": null, "s": null, "t": null})))
            }
            Some(2) => {
                let id = {
                    let mut s = lock(&self.state);
                    if !token_ok(&s) {
                        drop(s);
                        out.push(text(&json!({"op": 9, "d": false, "s": null, "t": null})));
                        return;
                    }
                    s.next_session += 1;
                    let id = format!("sess-{}", s.next_session);
                    s.sessions.insert(id.clone(), Vec::new());
                    id
                };
                self.session = Some(id.clone());
                self.seq = 0;
                let ready = json!({"v": 10, "session_id": id, "resume_gateway_url": "ws://127.0.0.1/resume",
                    "user": {"id": "42"}, "guilds": [], "application": {"id": "7"}});
                self.dispatch("READY", ready, out);
            }
            Some(6) => {
                let session = d.get("session_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let after = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
                let missed = {
                    let s = lock(&self.state);
                    if token_ok(&s) { s.sessions.get(&session).cloned() } else { None }
                };
                let Some(missed) = missed else {
                    out.push(text(&json!({"op": 9, "d": false, "s": null, "t": null})));
                    return;
                };
                self.seq = missed.last().map_or(after, |(s, _)| *s).max(after);
                out.extend(missed.iter().filter(|(s, _)| *s > after).map(|(_, v)| text(v)));
                self.session = Some(session);
                self.dispatch("RESUMED", json!({}), out);
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, _now: Instant, out: &mut Vec<Message>) {
        if self.session.is_some() && lock(&self.state).dispatch {
            let n = self.seq + 1;
            self.dispatch("MESSAGE_CREATE", json!({"id": n.to_string(), "channel_id": "55", "content": "hi"}), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use nova_testkit::MockServer;

    use super::*;
    use crate::testing_util::client::{connect, next, next_where, send};

    #[test]
    fn hello_identify_ready_heartbeat_ack_then_resume_replays_missed_events() {
        let mock = MockDiscord::new("TOKEN").tick(Duration::from_millis(5));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let mut ws = connect(&server.url("/?v=10&encoding=json"));
        assert_eq!(next(&mut ws)["op"], 10);
        send(&mut ws, json!({"op": 2, "d": {"token": "TOKEN", "intents": 513, "properties": {}}}));
        let ready = next_where(&mut ws, |v| v["t"] == "READY");
        let session = ready["d"]["session_id"].as_str().unwrap().to_owned();
        send(&mut ws, json!({"op": 1, "d": 1}));
        next_where(&mut ws, |v| v["op"] == 11);
        let seen = next_where(&mut ws, |v| v["t"] == "MESSAGE_CREATE")["s"].as_u64().unwrap();
        // Let a few more dispatches happen, then resume from `seen`.
        next_where(&mut ws, |v| v["s"].as_u64().is_some_and(|s| s >= seen + 3));
        drop(ws);
        let mut ws = connect(&server.url("/?v=10&encoding=json"));
        assert_eq!(next(&mut ws)["op"], 10);
        send(&mut ws, json!({"op": 6, "d": {"token": "TOKEN", "session_id": session, "seq": seen}}));
        let replayed = next(&mut ws);
        assert_eq!(replayed["s"], seen + 1, "missed events first, in order");
        next_where(&mut ws, |v| v["t"] == "RESUMED");
        send(&mut ws, json!({"op": 6, "d": {"token": "TOKEN", "session_id": "nope", "seq": 1}}));
        assert_eq!(next_where(&mut ws, |v| v["op"] == 9)["d"], false);
        server.shutdown();
    }

    #[test]
    fn a_wrong_token_gets_invalid_session_and_acks_can_be_withheld() {
        let mock = MockDiscord::new("TOKEN").acknowledge_heartbeats(false);
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let mut ws = connect(&server.url("/"));
        next(&mut ws);
        send(&mut ws, json!({"op": 2, "d": {"token": "WRONG", "intents": 0, "properties": {}}}));
        assert_eq!(next(&mut ws), json!({"op": 9, "d": false, "s": null, "t": null}));
        send(&mut ws, json!({"op": 1, "d": null}));
        send(&mut ws, json!({"op": 2, "d": {"token": "TOKEN", "intents": 0, "properties": {}}}));
        // The next frame is READY: the heartbeat got no ACK.
        assert_eq!(next(&mut ws)["t"], "READY");
        assert_eq!(mock.received().len(), 3);
        assert!(mock.unauthenticated().is_empty(), "heartbeats may come first");
        send(&mut ws, json!({"op": 3, "d": {"status": "online"}}));
        let mut ws = connect(&server.url("/"));
        next(&mut ws);
        send(&mut ws, json!({"op": 3, "d": {"status": "online"}}));
        for _ in 0..500 {
            if mock.received().len() >= 5 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(mock.unauthenticated(), [(2, json!({"op": 3, "d": {"status": "online"}}))]);
        server.shutdown();
    }

    #[test]
    fn a_connection_without_acks_leaves_the_others_acknowledged() {
        let mock = MockDiscord::new("TOKEN");
        let server = MockServer::builder().connection(mock.behavior_without_acks()).otherwise(mock.behavior()).start();
        let server = server.expect("mock starts");
        let mut zombie = connect(&server.url("/"));
        next(&mut zombie);
        send(&mut zombie, json!({"op": 1, "d": null}));
        send(&mut zombie, json!({"op": 2, "d": {"token": "TOKEN", "intents": 0, "properties": {}}}));
        assert_eq!(next(&mut zombie)["t"], "READY", "the heartbeat got no ACK");
        let mut ws = connect(&server.url("/"));
        next(&mut ws);
        send(&mut ws, json!({"op": 1, "d": null}));
        assert_eq!(next(&mut ws)["op"], 11, "the next connection acknowledges");
        server.shutdown();
    }
}
