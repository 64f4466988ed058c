//! The Bybit v5 adapter: `op`-based JSON on the stream and order-entry sockets.

use std::time::Duration;

use nova_proto::Message;
use nova_proto::limits::RateLimits;
use nova_proto::session::json::{encode, parse};
use nova_proto::session::{
    Adapter, AuthDenied, AuthGranted, EncodeError, HeartbeatSpec, Inbound, RequestId, RequestPayload, Route,
    ServiceError, Strategy, SubscriptionRef, Topic,
};
use serde_json::{Map, Value, json};

use super::auth::Credentials;
use super::policy::{INTERNAL_ERROR, INVALID_SIGNATURE, TRADE_SERVICE_RESTARTING, is_rate_limit, rate_limits};
use super::topics::Stream;
use crate::common::{RateLimitAction, Recent};

/// The total length of all topic args one public connection may hold.
pub const MAX_ARGS_CHARS: usize = 21_000;
/// Requests awaiting an acknowledgement, for matching acks without `req_id`.
const MAX_PENDING: usize = 256;

/// What an outstanding request was, for the per-op FIFO fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Auth,
    Subscribe,
    Unsubscribe,
}

impl Op {
    fn parse(op: &str) -> Option<Op> {
        match op {
            "auth" => Some(Op::Auth),
            "subscribe" => Some(Op::Subscribe),
            "unsubscribe" => Some(Op::Unsubscribe),
            _ => None,
        }
    }
}

/// The Bybit adapter for one socket ([`Stream`]).
///
/// - Auth (private and trade sockets) with a fresh `expires` and signature on
///   every connection, before any subscription.
/// - Subscriptions are topic strings, batched to
///   [`max_topics_per_request`](Self::max_topics_per_request) args (spot: 10);
///   a subscribe that would take the connection's args past 21 000 characters
///   is refused at once. `already subscribed` counts as success.
/// - Acks are matched by `req_id`, or in order per op when it is not echoed.
/// - Heartbeat: `{"op":"ping"}` every 20 s; both pong shapes are replies;
///   a ping unanswered by the next one ends the connection.
/// - Order-entry replies (`retCode`) answer requests by `reqId`; 10019 ends
///   the connection (open a new one); rate-limit codes follow the
///   [`RateLimitAction`] (default: reconnect after 1 s).
#[derive(Debug, Clone)]
pub struct Bybit {
    stream: Stream,
    credentials: Option<Credentials>,
    max_topics: usize,
    ping_interval: Duration,
    rate_limit: RateLimitAction,
    args_chars: usize,
    pending: Recent<(Op, RequestId)>,
}

impl Bybit {
    /// An adapter for `stream` (no credentials: public sockets).
    pub fn new(stream: Stream) -> Bybit {
        Bybit {
            stream,
            credentials: None,
            max_topics: 10,
            ping_interval: Duration::from_secs(20),
            rate_limit: RateLimitAction::Reconnect(Duration::from_secs(1)),
            args_chars: 0,
            pending: Recent::new(MAX_PENDING),
        }
    }

    /// Authenticates every connection (private and trade sockets).
    pub fn credentials(mut self, credentials: Credentials) -> Bybit {
        self.credentials = Some(credentials);
        self
    }

    /// Topics per subscribe request (default 10, spot's limit). Smaller
    /// batches also limit the damage of one unknown topic, which fails its
    /// whole batch.
    pub fn max_topics_per_request(mut self, max: usize) -> Bybit {
        self.max_topics = if self.stream == Stream::Spot { max.clamp(1, 10) } else { max.max(1) };
        self
    }

    /// The JSON ping interval (Bybit recommends 20 s).
    pub fn ping_interval(mut self, interval: Duration) -> Bybit {
        self.ping_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// What a rate-limit `retCode` does.
    pub fn on_rate_limit(mut self, action: RateLimitAction) -> Bybit {
        self.rate_limit = action;
        self
    }

    /// The socket this adapter speaks to.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// The id of an acknowledgement: its echoed `req_id`/`reqId`, else the
    /// oldest outstanding request of the same op.
    fn ack_id(&mut self, object: &Map<String, Value>, op: Option<Op>) -> Option<RequestId> {
        let echoed = object.get("req_id").or_else(|| object.get("reqId")).and_then(|v| match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        });
        match echoed {
            Some(id) => {
                let _ = self.pending.take(|(_, p)| p.0 == id);
                Some(RequestId(id))
            }
            None => op.and_then(|op| self.pending.take(|(o, _)| *o == op)).map(|(_, id)| id),
        }
    }

    fn request(&self, id: RequestId, op: &str, args: Value) -> Result<Message, EncodeError> {
        let key = if self.stream == Stream::Trade { "reqId" } else { "req_id" };
        encode(&json!({ key: id.0.to_string(), "op": op, "args": args }))
    }
}

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

impl Adapter for Bybit {
    fn rate_limits(&self) -> RateLimits {
        rate_limits()
    }

    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(v) => v,
            Err(e) => return Inbound::Malformed(e),
        };
        let Some(object) = value.as_object() else { return Inbound::Other };
        // 1. Data (private data also has an `id`: the topic decides first).
        if let Some(topic) = text(object, "topic") {
            return Inbound::Data { route: Route::Topic(Topic::new(topic)), seq: None };
        }
        let op = text(object, "op");
        // 2. Pongs, public (`ret_msg: pong`, `op` stays `ping`) and private (`op: pong`).
        if op == Some("pong") || text(object, "ret_msg") == Some("pong") {
            return Inbound::HeartbeatReply;
        }
        // 3. Order-entry replies.
        if let Some(code) = object.get("retCode").and_then(Value::as_i64) {
            let error = ServiceError::new(Some(code), text(object, "retMsg").unwrap_or_default());
            if code != 0 && is_rate_limit(code) {
                if let RateLimitAction::Reconnect(wait) = self.rate_limit {
                    return Inbound::Error(error.with_retry_after(wait));
                }
            }
            if code == TRADE_SERVICE_RESTARTING || code == INTERNAL_ERROR {
                return Inbound::Error(error);
            }
            let result = if code == 0 { Ok(()) } else { Err(error.clone()) };
            return match self.ack_id(object, op.and_then(Op::parse)) {
                Some(id) => Inbound::Response { id, result },
                None if code == 0 => Inbound::Ignore,
                None => Inbound::Error(error),
            };
        }
        // 4 and 5. Auth results and subscribe/unsubscribe acks.
        if let Some(kind) = op.and_then(Op::parse) {
            let ret_msg = text(object, "ret_msg").unwrap_or_default();
            let success = object.get("success").and_then(Value::as_bool).unwrap_or(false);
            let result = if success || (kind == Op::Subscribe && ret_msg.contains("already subscribed")) {
                Ok(())
            } else {
                Err(ServiceError::new(None, ret_msg))
            };
            return match self.ack_id(object, Some(kind)) {
                Some(id) => Inbound::Response { id, result },
                None => Inbound::Ignore,
            };
        }
        Inbound::Other
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let args = self.credentials.as_ref()?.args();
        self.pending.push((Op::Auth, id));
        self.request(id, "auth", args).ok()
    }

    fn auth_result(&mut self, response: &Message, result: Result<(), ServiceError>) -> Result<AuthGranted, AuthDenied> {
        let _ = response;
        match result {
            // Authentication lasts as long as the connection.
            Ok(()) => Ok(AuthGranted { expires_in: None }),
            Err(e) => {
                // An expired `expires` (clock skew) answers "Params Error" and
                // may pass next time; a bad signature will not.
                let retry = e.code != Some(INVALID_SIGNATURE) && !e.message.to_ascii_lowercase().contains("invalid");
                Err(AuthDenied { retry, reason: e.to_string() })
            }
        }
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        match payload {
            RequestPayload::Call { method, params } => {
                let args = if params.is_array() { params.clone() } else { json!([params]) };
                self.request(id, method, args)
            }
            RequestPayload::Message(_) => Err(EncodeError::Unsupported("raw messages as requests (use send)")),
            _ => Err(EncodeError::Unsupported("this payload")),
        }
    }

    fn encode_subscribe(&mut self, id: RequestId, topics: &[Topic]) -> Result<Message, EncodeError> {
        let chars: usize = topics.iter().map(|t| t.as_str().len()).sum();
        if self.args_chars + chars > MAX_ARGS_CHARS {
            return Err(EncodeError::Invalid(format!(
                "the connection's topics would exceed {MAX_ARGS_CHARS} characters of args"
            )));
        }
        self.args_chars += chars;
        self.pending.push((Op::Subscribe, id));
        self.request(id, "subscribe", json!(topics.iter().map(Topic::as_str).collect::<Vec<_>>()))
    }

    fn encode_unsubscribe(&mut self, id: RequestId, subs: &[SubscriptionRef]) -> Result<Message, EncodeError> {
        let chars: usize = subs.iter().map(|s| s.topic.as_str().len()).sum();
        self.args_chars = self.args_chars.saturating_sub(chars);
        self.pending.push((Op::Unsubscribe, id));
        self.request(id, "unsubscribe", json!(subs.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>()))
    }

    fn max_topics_per_request(&self) -> usize {
        self.max_topics
    }

    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        Some(HeartbeatSpec::new(self.ping_interval, 1))
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        let key = if self.stream == Stream::Trade { "reqId" } else { "req_id" };
        encode(&json!({ key: id.0.to_string(), "op": "ping" })).ok()
    }

    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        match error.code {
            Some(code) if is_rate_limit(code) => self.rate_limit.strategy(),
            Some(TRADE_SERVICE_RESTARTING | INTERNAL_ERROR) => Strategy::Reconnect,
            _ => Strategy::Continue,
        }
    }

    fn on_disconnect(&mut self, cause: &nova_proto::Disconnect) {
        let _ = cause;
        // Subscriptions and auth are per connection; they are redone.
        self.args_chars = 0;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Message {
        Message::text(s.to_owned())
    }

    #[test]
    fn classification_order_and_both_pong_shapes() {
        let mut b = Bybit::new(Stream::Linear);
        assert_eq!(
            b.classify(&m(r#"{"id":"msg-77","topic":"order","creationTime":1,"data":[]}"#)),
            Inbound::Data { route: Route::Topic("order".into()), seq: None }
        );
        assert_eq!(
            b.classify(&m(r#"{"success":true,"ret_msg":"pong","conn_id":"c1","req_id":"p1","op":"ping"}"#)),
            Inbound::HeartbeatReply
        );
        assert_eq!(
            b.classify(&m(r#"{"req_id":"p1","op":"pong","args":["1"],"conn_id":"c3"}"#)),
            Inbound::HeartbeatReply
        );
        assert_eq!(
            b.classify(&m(r#"{"success":true,"ret_msg":"","op":"subscribe","conn_id":"c","req_id":"4"}"#)),
            Inbound::Response { id: RequestId(4), result: Ok(()) }
        );
        assert_eq!(b.classify(&m(r#"{"something":"new"}"#)), Inbound::Other);
        assert!(matches!(b.classify(&m("nope")), Inbound::Malformed(_)));
    }

    #[test]
    fn acks_without_req_id_match_in_order_per_op() {
        let mut b = Bybit::new(Stream::Spot);
        let _ = b.encode_subscribe(RequestId(3), &["tickers.BTCUSDT".into()]);
        let _ = b.encode_unsubscribe(RequestId(4), &[SubscriptionRef { topic: "x".into(), server_id: None }]);
        let _ = b.encode_subscribe(RequestId(5), &["tickers.ETHUSDT".into()]);
        assert_eq!(
            b.classify(&m(r#"{"success":true,"ret_msg":"subscribe","op":"subscribe","conn_id":"c"}"#)),
            Inbound::Response { id: RequestId(3), result: Ok(()) }
        );
        assert_eq!(
            b.classify(&m(r#"{"success":false,"ret_msg":"error:already subscribed,topic:x","op":"subscribe"}"#)),
            Inbound::Response { id: RequestId(5), result: Ok(()) }
        );
        assert!(matches!(
            b.classify(&m(r#"{"success":false,"ret_msg":"error:handler not found","op":"unsubscribe"}"#)),
            Inbound::Response { id: RequestId(4), result: Err(_) }
        ));
    }

    #[test]
    fn trade_replies_and_rate_limits() {
        let mut b = Bybit::new(Stream::Trade);
        assert_eq!(
            b.classify(&m(r#"{"reqId":"9","retCode":0,"retMsg":"OK","op":"order.create","data":{}}"#)),
            Inbound::Response { id: RequestId(9), result: Ok(()) }
        );
        let Inbound::Error(e) = b.classify(&m(r#"{"reqId":"10","retCode":10429,"retMsg":"freq","op":"order.create"}"#))
        else {
            panic!()
        };
        assert_eq!(b.classify_error(&e), Strategy::RetryAfter(Duration::from_secs(1)));
        let Inbound::Error(e) = b.classify(&m(r#"{"reqId":"11","retCode":10019,"retMsg":"restarting"}"#)) else {
            panic!()
        };
        assert_eq!(b.classify_error(&e), Strategy::Reconnect);
        let msg = b.encode_request(RequestId(12), &super::super::order("order.create", json!({"symbol":"BTCUSDT"})));
        let v = parse(&msg.unwrap()).unwrap();
        assert_eq!(v, json!({"reqId": "12", "op": "order.create", "args": [{"symbol": "BTCUSDT"}]}));
    }

    #[test]
    fn the_args_budget_is_enforced_and_reset_per_connection() {
        let mut b = Bybit::new(Stream::Linear);
        let long = Topic::new("x".repeat(MAX_ARGS_CHARS - 5));
        assert!(b.encode_subscribe(RequestId(1), &[long]).is_ok());
        assert!(b.encode_subscribe(RequestId(2), &["tickers.BTCUSDT".into()]).is_err());
        b.on_disconnect(&nova_proto::Disconnect::Failed(nova_proto::Error::Transport(nova_proto::TransportDown::Eof)));
        assert!(b.encode_subscribe(RequestId(3), &["tickers.BTCUSDT".into()]).is_ok());
    }
}
