//! A small JSON-RPC 2.0 service for the mock server, to test behaviour-layer
//! clients (requests, subscriptions, authentication, heartbeats) against.
//!
//! [`JsonRpcService`] is a [`Handler`] factory: [`JsonRpcService::behavior`]
//! gives a [`Behavior`] whose connections each run it, and the builder
//! methods of `Behavior` add the faults (drops, silence) on top. State
//! shared across connections (the connection count, each topic's sequence)
//! lives in the service, so a reconnecting client sees one service.
//!
//! Methods (every answer carries the request's `id`):
//!
//! | method | answer |
//! |---|---|
//! | the auth method ([`auth`](JsonRpcService::auth), `auth` by default) | `{"expires_in": null}` when `params.token` is the token, else error `-32001` |
//! | `echo` | `result` = `params` |
//! | `fail` | error `-32000` `"failed on purpose"` |
//! | `never` | no answer, ever |
//! | `delay` | `params` = `[ms, value]`: `result` = `value`, `ms` later (on a tick) |
//! | `hold` | no answer on the first connection; `result` = `params` on later ones |
//! | `ping` | `result` = `"pong"` (an application heartbeat's answer) |
//! | `busy` | `params` = `[seconds]`: error `-32005` `"too many requests"` with `data.retry_after` = `seconds` (a rate limit's retry-after) |
//! | `eth_subscribe` | `params` = `[topic]`: `result` = a server id new on every connection (`"0x<connection><n>"`); a notification per tick follows |
//! | `eth_unsubscribe` | `params` = `[server id]`: `result` = whether it was subscribed |
//! | anything else | error `-32601` |
//!
//! With authentication required, every method but the auth method, `echo`
//! and `ping` answers error `-32002` (`"not authenticated"`) until the
//! connection authenticated.
//!
//! Notifications: `{"jsonrpc":"2.0","method":"eth_subscription","params":
//! {"subscription": <server id>, "result": {"topic": .., "seq": n,
//! "connection": c}}}`, one per subscription per tick; `seq` counts up per
//! topic across connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nova_proto::Message;
use serde_json::{Value, json};

use crate::behavior::{Behavior, Handler};

/// Most answers a connection holds back for `delay` at once; more are
/// refused with an error (the mock server stays bounded).
const MAX_DELAYED: usize = 1024;
/// Most subscriptions per connection.
const MAX_SUBSCRIPTIONS: usize = 1024;
/// The longest `delay` honoured.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A JSON-RPC 2.0 service (see the [module docs](self)); cheap to clone,
/// clones share their state.
#[derive(Debug, Clone)]
pub struct JsonRpcService {
    auth: Option<(String, String)>,
    tick: Duration,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    connections: AtomicU32,
    /// Each topic's last sequence number, across connections.
    seqs: Mutex<HashMap<String, u64>>,
}

impl Default for JsonRpcService {
    fn default() -> JsonRpcService {
        JsonRpcService::new()
    }
}

impl JsonRpcService {
    /// No authentication; a notification per subscription every 20 ms.
    pub fn new() -> JsonRpcService {
        JsonRpcService { auth: None, tick: Duration::from_millis(20), shared: Arc::default() }
    }

    /// Requires authentication with `method` and `params.token` = `token`.
    pub fn auth(mut self, method: &str, token: &str) -> JsonRpcService {
        self.auth = Some((method.to_owned(), token.to_owned()));
        self
    }

    /// The interval of notifications (and of `delay`'s resolution).
    pub fn tick(mut self, tick: Duration) -> JsonRpcService {
        self.tick = tick.max(Duration::from_millis(1));
        self
    }

    /// Connections opened so far (across every behaviour sharing this service).
    pub fn connections(&self) -> u32 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// A behaviour whose connections run this service.
    pub fn behavior(&self) -> Behavior {
        let service = self.clone();
        Behavior::accept().handler(Some(self.tick), move || Box::new(service.connection()))
    }

    /// The handler of one new connection.
    fn connection(&self) -> Connection {
        let number = self.shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        Connection {
            service: self.clone(),
            number,
            authenticated: self.auth.is_none(),
            next_sub: 0,
            subs: BTreeMap::new(),
            delayed: Vec::new(),
        }
    }
}

/// One connection's state.
struct Connection {
    service: JsonRpcService,
    number: u32,
    authenticated: bool,
    next_sub: u32,
    /// Server id → topic.
    subs: BTreeMap<String, String>,
    /// Answers due later: (when, message).
    delayed: Vec<(Instant, Message)>,
}

fn answer(id: &Value, result: Value) -> Message {
    Message::text(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
}

fn error(id: &Value, code: i64, message: &str) -> Message {
    Message::text(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string())
}

impl Connection {
    fn call(&mut self, now: Instant, id: &Value, method: &str, params: &Value) -> Option<Message> {
        if let Some((auth, token)) = &self.service.auth {
            if method == auth {
                let ok = params.get("token").and_then(Value::as_str) == Some(token.as_str());
                self.authenticated |= ok;
                return Some(if ok {
                    answer(id, json!({"expires_in": null}))
                } else {
                    error(id, -32001, "invalid token")
                });
            }
        }
        if !self.authenticated && !matches!(method, "echo" | "ping") {
            return Some(error(id, -32002, "not authenticated"));
        }
        Some(match method {
            "echo" => answer(id, params.clone()),
            "fail" => error(id, -32000, "failed on purpose"),
            "never" => return None,
            "ping" => answer(id, json!("pong")),
            "busy" => {
                let secs = params.get(0).and_then(Value::as_f64).unwrap_or(1.0);
                let error = json!({"code": -32005, "message": "too many requests", "data": {"retry_after": secs}});
                Message::text(json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string())
            }
            "hold" if self.number == 1 => return None,
            "hold" => answer(id, params.clone()),
            "delay" => {
                let ms = params.get(0).and_then(Value::as_u64).unwrap_or(0);
                let value = params.get(1).cloned().unwrap_or(Value::Null);
                if self.delayed.len() >= MAX_DELAYED {
                    return Some(error(id, -32003, "too many delayed answers"));
                }
                let at = now + Duration::from_millis(ms).min(MAX_DELAY);
                self.delayed.push((at, answer(id, value)));
                return None;
            }
            "eth_subscribe" => {
                let Some(topic) = params.get(0).and_then(Value::as_str) else {
                    return Some(error(id, -32602, "params must be [topic]"));
                };
                if self.subs.len() >= MAX_SUBSCRIPTIONS {
                    return Some(error(id, -32003, "too many subscriptions"));
                }
                self.next_sub += 1;
                let sid = format!("0x{}{:03}", self.number, self.next_sub);
                self.subs.insert(sid.clone(), topic.to_owned());
                answer(id, json!(sid))
            }
            "eth_unsubscribe" => {
                let sid = params.get(0).and_then(Value::as_str).unwrap_or_default();
                answer(id, json!(self.subs.remove(sid).is_some()))
            }
            _ => error(id, -32601, "method not found"),
        })
    }
}

impl Handler for Connection {
    fn on_message(&mut self, now: Instant, message: &Message, out: &mut Vec<Message>) {
        let Some(text) = message.as_text() else { return };
        let Ok(call) = serde_json::from_str::<Value>(text) else {
            out.push(error(&Value::Null, -32700, "parse error"));
            return;
        };
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        let method = call.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        let params = call.get("params").cloned().unwrap_or(Value::Null);
        if let Some(reply) = self.call(now, &id, &method, &params) {
            out.push(reply);
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Message>) {
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.delayed).into_iter().partition(|(at, _)| *at <= now);
        self.delayed = later;
        out.extend(due.into_iter().map(|(_, m)| m));
        let mut seqs = self.service.shared.seqs.lock().unwrap_or_else(PoisonError::into_inner);
        for (sid, topic) in &self.subs {
            let seq = seqs.entry(topic.clone()).or_insert(0);
            *seq += 1;
            let params =
                json!({"subscription": sid, "result": {"topic": topic, "seq": *seq, "connection": self.number}});
            out.push(Message::text(
                json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": params}).to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_calls_and_notifies_subscriptions() {
        let service = JsonRpcService::new().auth("auth", "t");
        let mut c = service.connection();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let call = |m: &str, p: Value| Message::text(json!({"jsonrpc":"2.0","id":1,"method":m,"params":p}).to_string());
        c.on_message(t0, &call("eth_subscribe", json!(["a"])), &mut out);
        assert!(out[0].as_text().unwrap().contains("not authenticated"));
        c.on_message(t0, &call("auth", json!({"token": "t"})), &mut out);
        c.on_message(t0, &call("eth_subscribe", json!(["a"])), &mut out);
        assert!(out[2].as_text().unwrap().contains("\"0x1001\""));
        c.on_message(t0, &call("never", json!(null)), &mut out);
        c.on_message(t0, &call("delay", json!([0, 5])), &mut out);
        assert_eq!(out.len(), 3);
        c.on_tick(t0, &mut out);
        assert!(out[3].as_text().unwrap().contains("\"result\":5"));
        assert!(out[4].as_text().unwrap().contains("\"seq\":1"));
        c.on_message(t0, &call("busy", json!([0.5])), &mut out);
        let busy: Value = serde_json::from_str(out[5].as_text().unwrap()).unwrap();
        assert_eq!(busy["error"]["code"], json!(-32005));
        assert_eq!(busy["error"]["data"]["retry_after"], json!(0.5));
        assert_eq!(service.connections(), 1);
    }
}
