//! The Ethereum JSON-RPC adapter: nova-proto's [`JsonRpc`] in the
//! `eth_subscribe` shape (server ids remapped on every connection by the
//! Session), plus rate-limit and quota handling.

use std::time::Duration;

use nova_proto::Message;
use nova_proto::session::json::{JsonRpc, parse, service_error};
use nova_proto::session::{
    Adapter, EncodeError, Inbound, RequestId, RequestPayload, ServerSubId, ServiceError, Strategy, SubscriptionRef,
    Topic,
};
use serde_json::Value;

use crate::common::RateLimitAction;

/// EIP-1474 "limit exceeded".
pub const LIMIT_EXCEEDED: i64 = -32005;
/// Infura's daily quota: `{"code":402,"message":"Payment Required"}`.
pub const PAYMENT_REQUIRED: i64 = 402;
/// HTTP-style "too many requests" some providers put in the error code.
pub const TOO_MANY_REQUESTS: i64 = 429;

/// The Ethereum JSON-RPC adapter (`eth_subscribe` / `eth_subscription`).
///
/// - Requests with positional params, answered by `id`.
/// - One `eth_subscribe` per topic ([`new_heads`](super::new_heads),
///   [`logs`](super::logs), ...); its result is the server's id, which the
///   Session maps to the stable handle. After a reconnect every topic is
///   subscribed again and gets a NEW id: data keeps reaching the same handle,
///   and data for an old id is never misrouted. [`GapTracker`](super::GapTracker)
///   reports what may have been missed.
/// - `-32005`/429 follow the [`RateLimitAction`] (default: reconnect after
///   5 s); Infura's 402 quota error stops the session (the socket is severed
///   until 00:00 UTC anyway).
/// - A JSON array (a batch answer) is handed over as a plain message.
#[derive(Debug, Clone)]
pub struct Ethereum {
    rpc: JsonRpc,
    rate_limit: RateLimitAction,
}

impl Default for Ethereum {
    fn default() -> Ethereum {
        Ethereum::new()
    }
}

impl Ethereum {
    /// The adapter.
    pub fn new() -> Ethereum {
        Ethereum {
            rpc: JsonRpc::new().subscriptions("eth_subscribe", "eth_unsubscribe", "eth_subscription"),
            rate_limit: RateLimitAction::Reconnect(Duration::from_secs(5)),
        }
    }

    /// What a rate-limit error does.
    pub fn on_rate_limit(mut self, action: RateLimitAction) -> Ethereum {
        self.rate_limit = action;
        self
    }
}

impl Adapter for Ethereum {
    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(v) => v,
            Err(e) => return Inbound::Malformed(e),
        };
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            let e = service_error(error);
            match (e.code, self.rate_limit) {
                (Some(LIMIT_EXCEEDED | TOO_MANY_REQUESTS), RateLimitAction::Reconnect(wait)) => {
                    return Inbound::Error(e.with_retry_after(wait));
                }
                (Some(PAYMENT_REQUIRED), _) => return Inbound::Error(e),
                _ => {}
            }
        }
        self.rpc.classify(message)
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        self.rpc.encode_request(id, payload)
    }

    fn encode_subscribe(&mut self, id: RequestId, topics: &[Topic]) -> Result<Message, EncodeError> {
        self.rpc.encode_subscribe(id, topics)
    }

    fn encode_unsubscribe(&mut self, id: RequestId, subs: &[SubscriptionRef]) -> Result<Message, EncodeError> {
        self.rpc.encode_unsubscribe(id, subs)
    }

    fn max_topics_per_request(&self) -> usize {
        1
    }

    fn server_ids(&mut self, topics: &[Topic], response: &Message) -> Vec<(Topic, ServerSubId)> {
        self.rpc.server_ids(topics, response)
    }

    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        match error.code {
            Some(LIMIT_EXCEEDED | TOO_MANY_REQUESTS) => self.rate_limit.strategy(),
            Some(PAYMENT_REQUIRED) => Strategy::Stop,
            _ => Strategy::Continue,
        }
    }
}

/// Whether a JSON-RPC answer is a batch (an array).
pub fn is_batch(message: &Message) -> bool {
    parse(message).is_ok_and(|v| matches!(v, Value::Array(_)))
}

#[cfg(test)]
mod tests {
    use nova_proto::session::Route;

    use super::*;

    fn m(s: &str) -> Message {
        Message::text(s.to_owned())
    }

    #[test]
    fn classification() {
        let mut e = Ethereum::new();
        assert_eq!(
            e.classify(&m(r#"{"jsonrpc":"2.0","id":3,"result":"0x9f3c"}"#)),
            Inbound::Response { id: RequestId(3), result: Ok(()) }
        );
        assert_eq!(
            e.classify(&m(
                r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x9f3c","result":{}}}"#
            )),
            Inbound::Data { route: Route::Server("0x9f3c".into()), seq: None }
        );
        let Inbound::Error(err) = e.classify(&m(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32005,"message":"daily request count exceeded, request rate limited"}}"#)) else { panic!() };
        assert_eq!(e.classify_error(&err), Strategy::RetryAfter(Duration::from_secs(5)));
        let Inbound::Error(err) = e.classify(&m(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":402,"event":-33000,"message":"Payment Required"}}"#,
        )) else {
            panic!()
        };
        assert_eq!(e.classify_error(&err), Strategy::Stop);
        let Inbound::Error(err) =
            e.classify(&m(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#))
        else {
            panic!()
        };
        assert_eq!(e.classify_error(&err), Strategy::Continue);
        assert_eq!(e.classify(&m(r#"[{"jsonrpc":"2.0","id":1,"result":"0x1"}]"#)), Inbound::Other);
        assert!(is_batch(&m("[]")));
        assert!(matches!(e.classify(&m("{")), Inbound::Malformed(_)));
        let mut e = Ethereum::new().on_rate_limit(RateLimitAction::FailRequest);
        assert!(matches!(
            e.classify(&m(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32005,"message":"x"}}"#)),
            Inbound::Response { id: RequestId(7), result: Err(_) }
        ));
    }
}
