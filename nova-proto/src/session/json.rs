//! JSON codec helpers (serde_json) and [`JsonRpc`], a ready JSON-RPC 2.0 adapter.
//!
//! Nothing is parsed unless an adapter asks: [`parse`] is called from
//! [`Adapter::classify`], once per message, and malformed JSON becomes an
//! [`Inbound::Malformed`] (the message is handed to the application with
//! the error), never a panic or a dropped connection.
//!
//! Binary codecs plug in the same way: the adapter sees whole [`Message`]s,
//! so a MessagePack service decodes `Message::Binary` payloads in its own
//! `classify`; the optional `msgpack` feature has the same helpers for it
//! (`session::msgpack`: `decode`, `encode`, `classify`).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::message::Message;
use crate::session::adapter::{Adapter, ErrorPolicy, Strategy, SubscriptionRef};
use crate::session::auth::Secret;
use crate::session::heartbeat::HeartbeatSpec;
use crate::session::inbound::{AuthDenied, AuthGranted, DecodeError, EncodeError, Inbound, Route, ServiceError};
use crate::session::requests::{RequestId, RequestPayload};
use crate::session::subscriptions::{ServerSubId, Topic};

/// Parses a message's payload (text or binary) as JSON.
///
/// # Errors
///
/// [`DecodeError`] with serde_json's description (line and column).
pub fn parse(message: &Message) -> Result<Value, DecodeError> {
    serde_json::from_slice(message.as_bytes()).map_err(|e| DecodeError::new(e.to_string()))
}

/// Serializes `value` into a text message.
///
/// # Errors
///
/// [`EncodeError::Invalid`] when serde_json refuses the value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message, EncodeError> {
    serde_json::to_string(value).map(Message::text).map_err(|e| EncodeError::Invalid(e.to_string()))
}

/// A JSON-RPC `error` object as a [`ServiceError`].
pub fn service_error(error: &Value) -> ServiceError {
    let code = error.get("code").and_then(Value::as_i64);
    let message = match error.get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => error.to_string(),
    };
    let mut e = ServiceError::new(code, message);
    if let Some(secs) = error.pointer("/data/retry_after").and_then(Value::as_f64) {
        if secs.is_finite() && secs >= 0.0 {
            e = e.with_retry_after(Duration::from_secs_f64(secs.min(86_400.0)));
        }
    }
    e
}

/// How subscriptions look on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// Ethereum's `eth_subscribe`: one topic per request, its JSON text the
    /// params (`["newHeads"]`; a plain name becomes `["name"]`); the result
    /// is the server's subscription id; notifications carry
    /// `params.subscription` and `params.result`; unsubscribe takes `[id]`.
    Positional,
    /// Channel lists (Deribit style): params `{"channels": [...]}`, several
    /// per request; notifications carry `params.channel` and `params.data`.
    Channels { max_per_request: usize },
}

/// The authentication call: method, params, and the secret with its key.
#[derive(Debug, Clone)]
struct AuthCall {
    method: String,
    params: Value,
    secret: Option<(String, Secret)>,
}

/// The id of the answer to a server heartbeat: recognised and ignored.
const HEARTBEAT_REPLY_ID: &str = "heartbeat";

/// A JSON-RPC 2.0 adapter, configured by builder methods.
///
/// - Requests: [`RequestPayload::Call`] becomes
///   `{"jsonrpc":"2.0","id":N,"method":..,"params":..}`; responses are matched
///   by `id`; an `error` object fails the request with a [`ServiceError`].
/// - Subscriptions ([`subscriptions`](Self::subscriptions)): Ethereum's
///   `eth_subscribe` shape by default, or channel lists ([`channels`](Self::channels)).
/// - Authentication ([`auth`](Self::auth)): one call on every open; a result
///   with `expires_in` (seconds) schedules the renewal.
/// - Heartbeats: a client call at an interval ([`heartbeat`](Self::heartbeat));
///   server heartbeat notifications answered ([`server_heartbeat`](Self::server_heartbeat)).
/// - Errors without an id go to the [`ErrorPolicy`] ([`errors`](Self::errors)).
///
/// Its `Debug` shows the configuration; the secret prints as `Secret(***)`.
#[derive(Debug, Clone)]
pub struct JsonRpc {
    subscribe: Option<(String, String, String)>,
    shape: Shape,
    auth: Option<AuthCall>,
    heartbeat: Option<(String, HeartbeatSpec)>,
    server_heartbeat: Option<(String, String)>,
    errors: ErrorPolicy,
    sequence: Option<String>,
}

impl Default for JsonRpc {
    fn default() -> JsonRpc {
        JsonRpc::new()
    }
}

impl JsonRpc {
    /// Requests only: no subscriptions, authentication or heartbeats.
    pub fn new() -> JsonRpc {
        JsonRpc {
            subscribe: None,
            shape: Shape::Positional,
            auth: None,
            heartbeat: None,
            server_heartbeat: None,
            errors: ErrorPolicy::LogAndContinue,
            sequence: None,
        }
    }

    /// Subscriptions with these method names (`eth_subscribe`,
    /// `eth_unsubscribe`, and the notifications' `eth_subscription`).
    pub fn subscriptions(mut self, subscribe: &str, unsubscribe: &str, notification: &str) -> JsonRpc {
        self.subscribe = Some((subscribe.to_owned(), unsubscribe.to_owned(), notification.to_owned()));
        self
    }

    /// Channel-list subscriptions, up to `max_per_request` per request.
    pub fn channels(mut self, max_per_request: usize) -> JsonRpc {
        self.shape = Shape::Channels { max_per_request: max_per_request.max(1) };
        self
    }

    /// Authenticates on every open with `method` and `params` (an object
    /// when `secret` is given: the secret is inserted under its key when the
    /// message is built, so it never sits in `params`).
    pub fn auth(mut self, method: &str, params: Value, secret: Option<(&str, Secret)>) -> JsonRpc {
        self.auth =
            Some(AuthCall { method: method.to_owned(), params, secret: secret.map(|(k, s)| (k.to_owned(), s)) });
        self
    }

    /// Calls `method` (no params) as an application heartbeat; its response
    /// is the reply.
    pub fn heartbeat(mut self, method: &str, spec: HeartbeatSpec) -> JsonRpc {
        self.heartbeat = Some((method.to_owned(), spec));
        self
    }

    /// Answers each `notification` from the server by calling `reply`.
    pub fn server_heartbeat(mut self, notification: &str, reply: &str) -> JsonRpc {
        self.server_heartbeat = Some((notification.to_owned(), reply.to_owned()));
        self
    }

    /// The strategy for errors without an id.
    pub fn errors(mut self, policy: ErrorPolicy) -> JsonRpc {
        self.errors = policy;
        self
    }

    /// Reads a sequence number from this field of each notification's
    /// `result` (or `data`), so duplicates are dropped.
    pub fn sequence_field(mut self, field: &str) -> JsonRpc {
        self.sequence = Some(field.to_owned());
        self
    }

    fn call(id: RequestId, method: &str, params: Value) -> Result<Message, EncodeError> {
        encode(&json!({ "jsonrpc": "2.0", "id": id.0, "method": method, "params": params }))
    }

    fn notification(&self, method: &str, params: Option<&Value>) -> Inbound {
        if let Some((notification, reply)) = &self.server_heartbeat {
            if method == notification {
                let reply = encode(&json!({ "jsonrpc": "2.0", "id": HEARTBEAT_REPLY_ID, "method": reply })).ok();
                return Inbound::Heartbeat { reply };
            }
        }
        let Some((_, _, data_method)) = &self.subscribe else { return Inbound::Other };
        if method != data_method {
            return Inbound::Other;
        }
        let Some(params) = params else { return Inbound::Malformed(DecodeError::new("notification without params")) };
        let route = match (params.get("subscription"), params.get("channel").and_then(Value::as_str)) {
            (Some(Value::String(s)), _) => Route::Server(ServerSubId::new(s.as_str())),
            (Some(Value::Number(n)), _) => Route::Server(ServerSubId::new(n.to_string())),
            (_, Some(channel)) => Route::Topic(Topic::new(channel)),
            _ => return Inbound::Malformed(DecodeError::new("notification without subscription or channel")),
        };
        let seq = self.sequence.as_ref().and_then(|field| {
            let body = params.get("result").or_else(|| params.get("data"))?;
            body.get(field)?.as_u64()
        });
        Inbound::Data { route, seq }
    }
}

fn request_id(id: &Value) -> Option<RequestId> {
    match id {
        Value::Number(n) => n.as_u64().map(RequestId),
        Value::String(s) => s.parse().ok().map(RequestId),
        _ => None,
    }
}

impl Adapter for JsonRpc {
    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(v) => v,
            Err(e) => return Inbound::Malformed(e),
        };
        let Some(object) = value.as_object() else { return Inbound::Other };
        if let Some(method) = object.get("method").and_then(Value::as_str) {
            return self.notification(method, object.get("params"));
        }
        let result = match (object.get("error"), object.contains_key("result")) {
            (Some(error), _) if !error.is_null() => Err(service_error(error)),
            (_, true) => Ok(()),
            _ => return Inbound::Other,
        };
        match object.get("id") {
            Some(Value::String(s)) if s == HEARTBEAT_REPLY_ID => Inbound::Ignore,
            Some(id) if !id.is_null() => match request_id(id) {
                Some(id) => Inbound::Response { id, result },
                None => Inbound::Malformed(DecodeError::new(format!("response id {id} is not one of ours"))),
            },
            _ => match result {
                Err(error) => Inbound::Error(error),
                Ok(()) => Inbound::Other,
            },
        }
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let AuthCall { method, params, secret } = self.auth.as_ref()?;
        let mut params = params.clone();
        if let Some((key, secret)) = secret {
            if !params.is_object() {
                params = Value::Object(Map::new());
            }
            if let Some(map) = params.as_object_mut() {
                map.insert(key.clone(), Value::String(secret.expose().to_owned()));
            }
        }
        JsonRpc::call(id, method, params).ok()
    }

    fn auth_result(&mut self, response: &Message, result: Result<(), ServiceError>) -> Result<AuthGranted, AuthDenied> {
        match result {
            Ok(()) => {
                let expires_in = parse(response)
                    .ok()
                    .and_then(|v| v.pointer("/result/expires_in").and_then(Value::as_f64))
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(365.0 * 86_400.0)));
                Ok(AuthGranted { expires_in })
            }
            Err(e) => Err(AuthDenied { retry: false, reason: e.to_string() }),
        }
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        match payload {
            RequestPayload::Call { method, params } => JsonRpc::call(id, method, params.clone()),
            RequestPayload::Message(_) => Err(EncodeError::Unsupported("raw messages as JSON-RPC requests")),
        }
    }

    fn encode_subscribe(&mut self, id: RequestId, topics: &[Topic]) -> Result<Message, EncodeError> {
        let Some((method, _, _)) = &self.subscribe else { return Err(EncodeError::Unsupported("subscriptions")) };
        let params = match self.shape {
            Shape::Positional => {
                let [topic] = topics else { return Err(EncodeError::Invalid("one topic per eth_subscribe".into())) };
                match serde_json::from_str::<Value>(topic.as_str()) {
                    Ok(v @ Value::Array(_)) => v,
                    _ => json!([topic.as_str()]),
                }
            }
            Shape::Channels { .. } => json!({ "channels": topics.iter().map(Topic::as_str).collect::<Vec<_>>() }),
        };
        JsonRpc::call(id, method, params)
    }

    fn encode_unsubscribe(&mut self, id: RequestId, subs: &[SubscriptionRef]) -> Result<Message, EncodeError> {
        let Some((_, method, _)) = &self.subscribe else { return Err(EncodeError::Unsupported("subscriptions")) };
        let params = match self.shape {
            Shape::Positional => {
                let ids: Vec<&str> =
                    subs.iter().map(|s| s.server_id.as_ref().map_or(s.topic.as_str(), ServerSubId::as_str)).collect();
                json!(ids)
            }
            Shape::Channels { .. } => json!({ "channels": subs.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>() }),
        };
        JsonRpc::call(id, method, params)
    }

    fn max_topics_per_request(&self) -> usize {
        match self.shape {
            Shape::Positional => 1,
            Shape::Channels { max_per_request } => max_per_request,
        }
    }

    fn server_ids(&mut self, topics: &[Topic], response: &Message) -> Vec<(Topic, ServerSubId)> {
        if self.shape != Shape::Positional {
            return Vec::new();
        }
        let Ok(value) = parse(response) else { return Vec::new() };
        let id = match value.get("result") {
            Some(Value::String(s)) => ServerSubId::new(s.as_str()),
            Some(Value::Number(n)) => ServerSubId::new(n.to_string()),
            _ => return Vec::new(),
        };
        topics.first().map(|t| vec![(t.clone(), id)]).unwrap_or_default()
    }

    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        self.heartbeat.as_ref().map(|(_, spec)| *spec)
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        let (method, _) = self.heartbeat.as_ref()?;
        encode(&json!({ "jsonrpc": "2.0", "id": id.0, "method": method })).ok()
    }

    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        self.errors.strategy(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_responses_errors_notifications_and_garbage() {
        let mut a = JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription");
        let m = |s: &'static str| Message::text(s);
        assert_eq!(
            a.classify(&m(r#"{"jsonrpc":"2.0","id":7,"result":"0x1"}"#)),
            Inbound::Response { id: RequestId(7), result: Ok(()) }
        );
        assert_eq!(
            a.classify(&m(r#"{"jsonrpc":"2.0","id":"8","error":{"code":-32000,"message":"nope"}}"#)),
            Inbound::Response { id: RequestId(8), result: Err(ServiceError::new(Some(-32000), "nope")) }
        );
        assert_eq!(
            a.classify(&m(
                r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xa","result":{}}}"#
            )),
            Inbound::Data { route: Route::Server("0xa".into()), seq: None }
        );
        assert_eq!(
            a.classify(&m(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#)),
            Inbound::Error(ServiceError::new(Some(-1), "x"))
        );
        assert!(matches!(a.classify(&m(r#"{"id":1,"result":"#)), Inbound::Malformed(_)));
        assert_eq!(a.classify(&m("[1,2]")), Inbound::Other);
    }

    #[test]
    fn secrets_go_on_the_wire_only() {
        let mut a =
            JsonRpc::new().auth("public/auth", json!({"client_id": "me"}), Some(("client_secret", Secret::new("s3"))));
        let text = a.auth_message(RequestId(1)).unwrap();
        let v = parse(&text).unwrap();
        assert_eq!(v["params"], json!({"client_id": "me", "client_secret": "s3"}));
        assert!(!format!("{a:?}").contains("s3"));
    }
}
