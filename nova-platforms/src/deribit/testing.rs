//! A mock Deribit server (feature `testing`) on nova-testkit, following the
//! protocol notes' scenarios: the three auth grants with signature checks
//! (a trailing-newline signature is refused with 13009), connection- and
//! session-scoped tokens, subscribe answering only the valid subset,
//! `.raw` refused on anonymous sockets (13778), `set_heartbeat` followed by
//! `test_request`s, and subscription data pushed every tick.
//!
//! Closing scenarios (drop after subscribe, 10028 then close) combine this
//! handler with nova-testkit's `Behavior` faults (`drop_after_messages`,
//! `close_after`, `go_silent_after`); [`MockDeribit::error_on`] answers a
//! method with a chosen error (10028 `too_many_requests`, say).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_proto::{Message, Secret};
use nova_testkit::{Behavior, Handler};
use serde_json::{Value, json};

use super::auth::signature;
use crate::testing_util::{json_of, lock, text};

#[derive(Debug, Default)]
struct State {
    client_id: String,
    secret: String,
    expires_in: u64,
    next_token: u64,
    connections: u32,
    /// Refresh tokens and session tokens, with the connection they belong
    /// to (`None`: session scope, valid on any connection).
    refresh: Vec<(String, Option<u32>)>,
    access: Vec<(String, Option<u32>)>,
    calls: Vec<(u32, String)>,
    test_requests_unanswered: u32,
    /// Method → the error every call of it gets.
    errors: BTreeMap<String, (i64, String)>,
}

/// The mock server's shared state and configuration.
#[derive(Debug, Clone)]
pub struct MockDeribit {
    state: Arc<Mutex<State>>,
    tick: Duration,
}

impl MockDeribit {
    /// A server knowing one API key.
    pub fn new(client_id: &str, client_secret: &Secret) -> MockDeribit {
        let state = State {
            client_id: client_id.to_owned(),
            secret: client_secret.expose().to_owned(),
            expires_in: 900,
            ..State::default()
        };
        MockDeribit { state: Arc::new(Mutex::new(state)), tick: Duration::from_millis(20) }
    }

    /// The `expires_in` (seconds) of the tokens it grants.
    pub fn expires_in(self, secs: u64) -> MockDeribit {
        lock(&self.state).expires_in = secs;
        self
    }

    /// Answers every call of `method` with the JSON-RPC error `code` and
    /// `message` (10028 `too_many_requests`, 11051 `system_maintenance`, ...)
    /// instead of its result, on every connection. The connection stays open.
    pub fn error_on(self, method: &str, code: i64, message: &str) -> MockDeribit {
        lock(&self.state).errors.insert(method.to_owned(), (code, message.to_owned()));
        self
    }

    /// How often it pushes subscription data and checks heartbeats.
    pub fn tick(mut self, tick: Duration) -> MockDeribit {
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
            Box::new(Conn::new(Arc::clone(&state), conn))
        })
    }

    /// Every call received: (connection number from 1, method).
    pub fn calls(&self) -> Vec<(u32, String)> {
        lock(&self.state).calls.clone()
    }

    /// `test_request`s sent while the previous one was still unanswered.
    pub fn unanswered_test_requests(&self) -> u32 {
        lock(&self.state).test_requests_unanswered
    }
}

struct Conn {
    state: Arc<Mutex<State>>,
    conn: u32,
    authed: bool,
    channels: BTreeSet<String>,
    heartbeat: Option<Duration>,
    last_test_request: Option<Instant>,
    awaiting_test: bool,
    ticks: u64,
}

impl Conn {
    fn new(state: Arc<Mutex<State>>, conn: u32) -> Conn {
        Conn {
            state,
            conn,
            authed: false,
            channels: BTreeSet::new(),
            heartbeat: None,
            last_test_request: None,
            awaiting_test: false,
            ticks: 0,
        }
    }

    fn auth(&mut self, params: &Value) -> Result<Value, (i64, &'static str)> {
        let mut s = lock(&self.state);
        let p = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let session_scope = p("scope").split(' ').any(|x| x.starts_with("session:"));
        match p("grant_type").as_str() {
            "client_credentials" => {
                if p("client_id") != s.client_id || p("client_secret") != s.secret {
                    return Err((13004, "invalid_credentials"));
                }
            }
            "client_signature" => {
                let ts = params.get("timestamp").and_then(Value::as_u64).unwrap_or_default();
                let expected = signature(&Secret::new(s.secret.clone()), ts, &p("nonce"), &p("data"));
                if p("client_id") != s.client_id {
                    return Err((13004, "invalid_credentials"));
                }
                if p("signature") != expected {
                    return Err((13009, "unauthorized"));
                }
            }
            "refresh_token" => {
                let token = p("refresh_token");
                let conn = self.conn;
                let valid = s.refresh.iter().any(|(t, c)| *t == token && c.is_none_or(|c| c == conn));
                if !valid {
                    return Err((13009, "unauthorized"));
                }
            }
            _ => return Err((10019, "invalid_grant")),
        }
        s.next_token += 1;
        let n = s.next_token;
        let owner = if session_scope { None } else { Some(self.conn) };
        s.access.push((format!("AT{n}"), owner));
        s.refresh.push((format!("RT{n}"), owner));
        self.authed = true;
        let scope = if session_scope { p("scope") } else { "connection".to_owned() };
        Ok(json!({
            "access_token": format!("AT{n}"), "refresh_token": format!("RT{n}"),
            "expires_in": s.expires_in, "scope": scope, "token_type": "bearer",
        }))
    }

    fn token_valid(&self, params: &Value) -> bool {
        let Some(token) = params.get("access_token").and_then(Value::as_str) else { return self.authed };
        lock(&self.state).access.iter().any(|(t, c)| t == token && c.is_none_or(|c| c == self.conn))
    }

    fn answer(&mut self, method: &str, params: &Value) -> Result<Value, (i64, &'static str)> {
        match method {
            "public/auth" => self.auth(params),
            "public/subscribe" | "private/subscribe" => {
                if method.starts_with("private/") && !self.token_valid(params) {
                    return Err((13009, "unauthorized"));
                }
                let asked: Vec<String> = params
                    .get("channels")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                if !self.authed && asked.iter().any(|c| c.ends_with(".raw")) {
                    return Err((13778, "raw_subscriptions_not_available_for_unauthorized"));
                }
                // Bad names are silently left out of the result.
                let accepted: Vec<String> = asked.into_iter().filter(|c| !c.contains("INVALID")).collect();
                self.channels.extend(accepted.iter().cloned());
                Ok(json!(accepted))
            }
            "public/unsubscribe" | "private/unsubscribe" => {
                let asked = params.get("channels").and_then(Value::as_array).cloned().unwrap_or_default();
                let removed: Vec<&str> =
                    asked.iter().filter_map(Value::as_str).filter(|c| self.channels.remove(*c)).collect();
                Ok(json!(removed))
            }
            "public/set_heartbeat" => {
                let secs = params.get("interval").and_then(Value::as_u64).unwrap_or(0);
                if secs < 10 {
                    return Err((11029, "invalid_arguments"));
                }
                self.heartbeat = Some(Duration::from_secs(secs));
                Ok(json!("ok"))
            }
            "public/disable_heartbeat" => {
                self.heartbeat = None;
                Ok(json!("ok"))
            }
            "public/test" => {
                self.awaiting_test = false;
                Ok(json!({"version": "mock"}))
            }
            "public/get_time" => Ok(json!(1_700_000_000_000u64 + self.ticks)),
            m if m.starts_with("private/") => {
                if self.token_valid(params) && self.authed {
                    Ok(json!("ok"))
                } else {
                    Err((10000, "authorization_required"))
                }
            }
            _ => Err((-32601, "method_not_found")),
        }
    }
}

impl Handler for Conn {
    fn on_message(&mut self, _now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(request) = json_of(message) else {
            out.push(text(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}})));
            return;
        };
        let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        lock(&self.state).calls.push((self.conn, method.clone()));
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let forced = lock(&self.state).errors.get(&method).cloned();
        let reply = match forced {
            Some((code, msg)) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": msg}}),
            None => match self.answer(&method, &params) {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result, "testnet": true}),
                Err((code, msg)) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": msg}}),
            },
        };
        out.push(text(&reply));
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Message>) {
        self.ticks += 1;
        for channel in &self.channels {
            let data = json!({"jsonrpc": "2.0", "method": "subscription",
                "params": {"channel": channel, "data": {"tick": self.ticks, "mark_price": 64_000.5}}});
            out.push(text(&data));
        }
        let Some(interval) = self.heartbeat else { return };
        if self.last_test_request.is_none_or(|t| now.duration_since(t) >= interval) {
            if self.awaiting_test {
                lock(&self.state).test_requests_unanswered += 1;
            }
            self.last_test_request = Some(now);
            self.awaiting_test = true;
            out.push(text(&json!({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})));
        }
    }
}

#[cfg(test)]
mod tests {
    use nova_testkit::MockServer;

    use super::*;
    use crate::testing_util::client::{connect, next, next_where, send};

    fn server() -> (MockDeribit, MockServer) {
        let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(Duration::from_millis(10));
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        (mock, server)
    }

    #[test]
    fn verifies_signatures_and_refuses_the_trailing_newline() {
        let (mock, server) = server();
        let mut ws = connect(&server.url("/ws/api/v2"));
        let secret = Secret::new("deribit_test_secret");
        let good = signature(&secret, 1_700_000_000_000, "n0nce42", "");
        let params = json!({"grant_type": "client_signature", "client_id": "KEY", "timestamp": 1_700_000_000_000u64,
            "nonce": "n0nce42", "data": "hello", "signature": "699cee433b9dc8cc93f4c4776e2e9318e823683bb93741633f210b8782b5ca64"});
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 1, "method": "public/auth", "params": params}));
        assert_eq!(next(&mut ws)["error"]["code"], 13009);
        let params = json!({"grant_type": "client_signature", "client_id": "KEY", "timestamp": 1_700_000_000_000u64,
            "nonce": "n0nce42", "data": "", "signature": good});
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 2, "method": "public/auth", "params": params}));
        let reply = next(&mut ws);
        assert_eq!(reply["id"], 2);
        assert!(reply["result"]["access_token"].is_string());
        assert_eq!(mock.calls(), [(1, "public/auth".to_owned()), (1, "public/auth".to_owned())]);
        server.shutdown();
    }

    #[test]
    fn subscribe_answers_the_valid_subset_and_refuses_anonymous_raw() {
        let (_mock, server) = server();
        let mut ws = connect(&server.url("/ws/api/v2"));
        send(
            &mut ws,
            json!({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
            "params": {"channels": ["trades.BTC-PERPETUAL.raw"]}}),
        );
        assert_eq!(next(&mut ws)["error"]["code"], 13778);
        send(
            &mut ws,
            json!({"jsonrpc": "2.0", "id": 2, "method": "public/subscribe",
            "params": {"channels": ["ticker.BTC-PERPETUAL.100ms", "ticker.INVALID.100ms"]}}),
        );
        let reply = next_where(&mut ws, |v| v["id"] == 2);
        assert_eq!(reply["result"], json!(["ticker.BTC-PERPETUAL.100ms"]));
        let data = next_where(&mut ws, |v| v["method"] == "subscription");
        assert_eq!(data["params"]["channel"], "ticker.BTC-PERPETUAL.100ms");
        server.shutdown();
    }

    #[test]
    fn sends_test_requests_after_set_heartbeat_and_counts_unanswered_ones() {
        let (mock, server) = server();
        let mut ws = connect(&server.url("/ws/api/v2"));
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 1, "method": "public/set_heartbeat", "params": {"interval": 5}}));
        assert_eq!(next(&mut ws)["error"]["code"], 11029, "intervals under 10 s are refused");
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 2, "method": "public/set_heartbeat", "params": {"interval": 10}}));
        assert_eq!(next_where(&mut ws, |v| v["id"] == 2)["result"], "ok");
        let hb = next_where(&mut ws, |v| v["method"] == "heartbeat");
        assert_eq!(hb["params"]["type"], "test_request");
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 3, "method": "public/test", "params": {}}));
        assert_eq!(next_where(&mut ws, |v| v["id"] == 3)["result"]["version"], "mock");
        assert_eq!(mock.unanswered_test_requests(), 0);
        server.shutdown();
    }

    #[test]
    fn error_on_answers_the_method_with_the_error_and_keeps_the_connection() {
        let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret"))
            .tick(Duration::from_millis(10))
            .error_on("public/get_time", 10028, "too_many_requests");
        let server = MockServer::start(mock.behavior()).expect("mock starts");
        let mut ws = connect(&server.url("/ws/api/v2"));
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 1, "method": "public/get_time", "params": {}}));
        let reply = next_where(&mut ws, |v| v["id"] == 1);
        assert_eq!(
            (reply["error"]["code"].as_i64(), reply["error"]["message"].as_str()),
            (Some(10028), Some("too_many_requests"))
        );
        send(&mut ws, json!({"jsonrpc": "2.0", "id": 2, "method": "public/test", "params": {}}));
        assert_eq!(next_where(&mut ws, |v| v["id"] == 2)["result"]["version"], "mock", "other methods still answer");
        server.shutdown();
    }
}
