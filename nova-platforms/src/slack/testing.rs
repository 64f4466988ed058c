//! A mock Slack Socket Mode socket (feature `testing`) on nova-testkit,
//! following the protocol notes' scenarios: `hello` on open, an
//! `events_api` envelope every tick (up to a count), redelivery with
//! `retry_attempt` + 1 and `retry_reason: "timeout"` when no ack came within
//! the deadline (at most 3 times), a slash command accepting a response
//! payload, and a `disconnect` with a chosen reason after the last envelope.
//! The `apps.connections.open` HTTP step is out of scope (the mock is the
//! WebSocket only); closing the socket comes from nova-testkit's `Behavior`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::Message;
use nova_testkit::{Behavior, Handler};
use serde_json::{Value, json};

use crate::testing_util::{json_of, lock, text};

#[derive(Debug, Default)]
struct State {
    events: u64,
    ack_deadline: Duration,
    disconnect: Option<String>,
    acks: Vec<Value>,
    deliveries: Vec<Value>,
}

/// The mock socket's shared state and configuration.
#[derive(Debug, Clone)]
pub struct MockSlack {
    state: Arc<Mutex<State>>,
    tick: Duration,
}

impl MockSlack {
    /// Sends `events` Events API envelopes (then a slash command), with the
    /// 3 s acknowledgement deadline.
    pub fn new(events: u64) -> MockSlack {
        let state = State { events, ack_deadline: Duration::from_secs(3), ..State::default() };
        MockSlack { state: Arc::new(Mutex::new(state)), tick: Duration::from_millis(20) }
    }

    /// Shortens the acknowledgement deadline (tests).
    pub fn ack_deadline(self, deadline: Duration) -> MockSlack {
        lock(&self.state).ack_deadline = deadline;
        self
    }

    /// Sends `{"type":"disconnect","reason":reason}` after the last envelope.
    pub fn disconnect_with(self, reason: &str) -> MockSlack {
        lock(&self.state).disconnect = Some(reason.to_owned());
        self
    }

    /// How often envelopes are sent.
    pub fn tick(mut self, tick: Duration) -> MockSlack {
        self.tick = tick;
        self
    }

    /// The per-connection behaviour to give a nova-testkit `MockServer`.
    pub fn behavior(&self) -> Behavior {
        let state = Arc::clone(&self.state);
        Behavior::accept().handler(Some(self.tick), move || {
            Box::new(Conn { state: Arc::clone(&state), sent: 0, unacked: BTreeMap::new(), done: false })
        })
    }

    /// Every acknowledgement received.
    pub fn acks(&self) -> Vec<Value> {
        lock(&self.state).acks.clone()
    }

    /// Every envelope sent (first deliveries and redeliveries).
    pub fn deliveries(&self) -> Vec<Value> {
        lock(&self.state).deliveries.clone()
    }
}

struct Conn {
    state: Arc<Mutex<State>>,
    sent: u64,
    /// Envelope id → (envelope, sent at).
    unacked: BTreeMap<String, (Value, Instant)>,
    done: bool,
}

impl Conn {
    fn deliver(&mut self, envelope: Value, now: Instant, out: &mut Vec<Message>) {
        if let Some(id) = envelope["envelope_id"].as_str() {
            self.unacked.insert(id.to_owned(), (envelope.clone(), now));
        }
        lock(&self.state).deliveries.push(envelope.clone());
        out.push(text(&envelope));
    }
}

impl Handler for Conn {
    fn on_open(&mut self, _now: Instant, out: &mut Vec<Message>) {
        out.push(text(&json!({"type": "hello", "num_connections": 1,
            "debug_info": {"host": "mock", "approximate_connection_time": 18060}, "connection_info": {"app_id": "A-1"}})));
    }

    fn on_message(&mut self, _now: Instant, message: &Message, _out: &mut Vec<Message>) {
        let Some(ack) = json_of(message) else { return };
        if let Some(id) = ack.get("envelope_id").and_then(Value::as_str) {
            self.unacked.remove(id);
        }
        lock(&self.state).acks.push(ack);
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Message>) {
        let (events, deadline) = {
            let s = lock(&self.state);
            (s.events, s.ack_deadline)
        };
        // Redeliver what was not acknowledged in time.
        let late: Vec<String> = self
            .unacked
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= deadline)
            .map(|(k, _)| k.clone())
            .collect();
        for id in late {
            let Some((mut envelope, _)) = self.unacked.remove(&id) else { continue };
            let attempt = envelope["retry_attempt"].as_u64().unwrap_or(0) + 1;
            if attempt <= 3 {
                envelope["retry_attempt"] = json!(attempt);
                envelope["retry_reason"] = json!("timeout");
                self.deliver(envelope, now, out);
            }
        }
        if self.sent < events {
            self.sent += 1;
            let n = self.sent;
            let envelope = json!({"envelope_id": format!("env-{n}"), "type": "events_api",
                "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": "",
                "payload": {"type": "event_callback", "event_id": format!("Ev-{n}"), "team_id": "T-9",
                    "event": {"type": "app_mention", "text": "hi", "channel": "C-1"}}});
            self.deliver(envelope, now, out);
        } else if self.sent == events {
            self.sent += 1;
            let command = json!({"envelope_id": "env-cmd", "type": "slash_commands", "accepts_response_payload": true,
                "payload": {"command": "/deploy", "text": "prod", "user_id": "U-1", "trigger_id": "tr-2"}});
            self.deliver(command, now, out);
        } else if !self.done && self.unacked.is_empty() {
            self.done = true;
            if let Some(reason) = lock(&self.state).disconnect.clone() {
                out.push(text(&json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "mock"}})));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nova_testkit::MockServer;

    use super::*;
    use crate::slack::Envelope;
    use crate::testing_util::client::{connect, next, send};

    #[test]
    fn redelivers_unacknowledged_envelopes_then_disconnects() {
        let mock = MockSlack::new(2)
            .ack_deadline(Duration::from_millis(100))
            .disconnect_with("refresh_requested")
            .tick(Duration::from_millis(5));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let mut ws = connect(&server.url("/link/?ticket=T"));
        assert_eq!(next(&mut ws)["type"], "hello");
        let first = next(&mut ws);
        assert_eq!(first["envelope_id"], "env-1");
        send(&mut ws, json!({"envelope_id": "env-1"}));
        // env-2 is not acknowledged: it comes back as a retry.
        let mut retried = None;
        let mut command = None;
        for _ in 0..20 {
            let v = next(&mut ws);
            if v["envelope_id"] == "env-2" && v["retry_attempt"] == 1 {
                assert_eq!(v["retry_reason"], "timeout");
                retried = Some(v.clone());
                send(&mut ws, json!({"envelope_id": "env-2"}));
            }
            if v["type"] == "slash_commands" {
                let e = Envelope::parse(&nova_proto::Message::text(v.to_string())).unwrap();
                let ack = e.ack_with(json!({"text": "Deploy queued"})).unwrap();
                send(&mut ws, serde_json::from_str(ack.as_text().unwrap()).unwrap());
                command = Some(v.clone());
            }
            if v["type"] == "disconnect" {
                assert_eq!(v["reason"], "refresh_requested");
                break;
            }
        }
        assert!(retried.is_some() && command.is_some());
        assert!(mock.acks().iter().any(|a| a["payload"]["text"] == "Deploy queued"));
        server.shutdown();
    }
}
