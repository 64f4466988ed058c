//! The Deribit adapter: JSON-RPC 2.0 (nova-proto's [`JsonRpc`] does the
//! correlation and channel routing) plus Deribit's auth grants, heartbeats,
//! subscribe-result checks and rate-limit handling.

use std::time::Duration;

use nova_proto::Message;
use nova_proto::limits::{OpClass, RateLimits};
use nova_proto::session::json::{JsonRpc, encode, parse, service_error};
use nova_proto::session::{
    Adapter, AuthDenied, AuthGranted, EncodeError, HeartbeatSpec, Inbound, RequestId, RequestPayload, Secret,
    ServiceError, Strategy, SubscriptionRef, Topic,
};
use serde_json::{Map, Value, json};

use super::auth::Credentials;
use super::policy::{
    CREDITS_PER_REQUEST, INVALID_CREDENTIALS, SYSTEM_MAINTENANCE, TOO_MANY_REQUESTS, UNAUTHORIZED, rate_limits,
};
use crate::common::{RateLimitAction, Recent};

/// The id of the `public/test` answer to a server `test_request`: its
/// response is recognised (and ignored) by [`JsonRpc`].
const TEST_REPLY_ID: &str = "heartbeat";
/// Subscribe requests remembered for checking their results.
const MAX_TRACKED_SUBSCRIBES: usize = 256;

/// Tokens granted on the current connection (or session, for `session:` scope).
#[derive(Debug, Clone)]
struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
}

/// The Deribit adapter for a [`Session`](nova_proto::Session).
///
/// - Anonymous by default; [`credentials`](Self::credentials) authenticates
///   every connection with `public/auth` (tokens are connection-scoped: a
///   reconnect always does a full grant; expiring tokens are renewed on the
///   same connection with the `refresh_token` grant).
/// - Subscriptions are channel names ([`ticker`](super::ticker), [`trades`](super::trades), ...), up to
///   500 per request, `private/subscribe` when any is a `user.*` channel.
///   A subscribe answered without any of the requested channels fails.
/// - Heartbeats: `public/set_heartbeat` on every connection right after
///   the authentication (at once when anonymous), ahead of the restored
///   subscriptions; then `public/test` every interval; any inbound message
///   proves liveness, two silent intervals end the connection. Server `test_request`s are
///   answered with `public/test` at once.
/// - `private/*` requests get the connection's `access_token`.
/// - 10028 `too_many_requests` follows the [`RateLimitAction`] (default:
///   reconnect after 5 s, the time the credit pool takes to refill).
///
/// `Debug` never shows secrets or tokens.
#[derive(Debug, Clone)]
pub struct Deribit {
    rpc: JsonRpc,
    credentials: Option<Credentials>,
    scope: Option<String>,
    heartbeat: Option<Duration>,
    rate_limit: RateLimitAction,
    max_channels: usize,
    tokens: Option<Tokens>,
    grants: u64,
    subscribes: Recent<(RequestId, Vec<Topic>)>,
}

impl Default for Deribit {
    fn default() -> Deribit {
        Deribit::new()
    }
}

impl Deribit {
    /// An anonymous adapter with server heartbeats every 30 s.
    pub fn new() -> Deribit {
        Deribit {
            rpc: JsonRpc::new().subscriptions("public/subscribe", "public/unsubscribe", "subscription").channels(500),
            credentials: None,
            scope: None,
            heartbeat: Some(Duration::from_secs(30)),
            rate_limit: RateLimitAction::Reconnect(Duration::from_secs(5)),
            max_channels: 500,
            tokens: None,
            grants: 0,
            subscribes: Recent::new(MAX_TRACKED_SUBSCRIBES),
        }
    }

    /// Authenticates every connection with `credentials`.
    pub fn credentials(mut self, credentials: Credentials) -> Deribit {
        self.credentials = Some(credentials);
        self
    }

    /// Requests a token scope (`"session:bot1"`, `"connection"`, ...). With a
    /// `session:` scope the refresh token survives a reconnect and the next
    /// connection authenticates with it (no new session is created).
    pub fn scope(mut self, scope: impl Into<String>) -> Deribit {
        self.scope = Some(scope.into());
        self
    }

    /// The server heartbeat interval (`public/set_heartbeat`, at least 10 s);
    /// `None` turns heartbeats off.
    pub fn heartbeat_interval(mut self, interval: Option<Duration>) -> Deribit {
        self.heartbeat = interval.map(|i| i.max(Duration::from_secs(10)));
        self
    }

    /// What a 10028 `too_many_requests` answer does.
    pub fn on_rate_limit(mut self, action: RateLimitAction) -> Deribit {
        self.rate_limit = action;
        self
    }

    /// Channels per subscribe request (Deribit allows 500).
    pub fn max_channels_per_request(mut self, max: usize) -> Deribit {
        self.max_channels = max.clamp(1, 500);
        self.rpc = self.rpc.channels(self.max_channels);
        self
    }

    fn session_scoped(&self) -> bool {
        self.scope.as_deref().is_some_and(|s| s.split(' ').any(|p| p.starts_with("session:")))
    }

    fn with_token(&self, mut params: Value) -> Value {
        if let Some(tokens) = &self.tokens {
            if !params.is_object() {
                params = Value::Object(Map::new());
            }
            if let Some(map) = params.as_object_mut() {
                map.entry("access_token").or_insert_with(|| Value::String(tokens.access.expose().to_owned()));
            }
        }
        params
    }

    /// Checks a subscribe result: fails it when none of the channels asked
    /// for was accepted (Deribit leaves rejected names out of the list).
    fn check_subscribe(&mut self, id: RequestId, value: &Value) -> Option<Inbound> {
        let (_, topics) = self.subscribes.take(|(i, _)| *i == id)?;
        let accepted: Vec<&str> = value.get("result")?.as_array()?.iter().filter_map(Value::as_str).collect();
        let rejected: Vec<&str> = topics.iter().map(Topic::as_str).filter(|t| !accepted.contains(t)).collect();
        if rejected.len() == topics.len() && !topics.is_empty() {
            let message = format!("channels not accepted: {}", rejected.join(", "));
            return Some(Inbound::Response { id, result: Err(ServiceError::new(None, message)) });
        }
        None
    }
}

fn request_id(value: &Value) -> Option<RequestId> {
    match value.get("id")? {
        Value::Number(n) => n.as_u64().map(RequestId),
        Value::String(s) => s.parse().ok().map(RequestId),
        _ => None,
    }
}

impl Adapter for Deribit {
    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(v) => v,
            Err(e) => return Inbound::Malformed(e),
        };
        if value.get("method").and_then(Value::as_str) == Some("heartbeat") {
            let test_request = value.pointer("/params/type").and_then(Value::as_str) == Some("test_request");
            let reply = test_request
                .then(|| encode(&json!({"jsonrpc": "2.0", "id": TEST_REPLY_ID, "method": "public/test", "params": {}})))
                .and_then(Result::ok);
            return Inbound::Heartbeat { reply };
        }
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            let e = service_error(error);
            if e.code == Some(TOO_MANY_REQUESTS) {
                if let RateLimitAction::Reconnect(wait) = self.rate_limit {
                    // The server ends the session itself: back off before the next one.
                    return Inbound::Error(e.with_retry_after(wait));
                }
            }
        } else if let Some(id) = request_id(&value) {
            if let Some(verdict) = self.check_subscribe(id, &value) {
                return verdict;
            }
        }
        self.rpc.classify(message)
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let credentials = self.credentials.as_ref()?;
        let mut params = match self.tokens.as_ref().and_then(|t| t.refresh.as_ref()) {
            Some(refresh) => json!({"grant_type": "refresh_token", "refresh_token": refresh.expose()}),
            None => {
                self.grants += 1;
                credentials.grant(self.grants)
            }
        };
        if let (Some(scope), Some(map)) = (&self.scope, params.as_object_mut()) {
            map.insert("scope".into(), Value::String(scope.clone()));
        }
        encode(&json!({"jsonrpc": "2.0", "id": id.0, "method": "public/auth", "params": params})).ok()
    }

    fn auth_result(&mut self, response: &Message, result: Result<(), ServiceError>) -> Result<AuthGranted, AuthDenied> {
        let refreshing = self.tokens.as_ref().is_some_and(|t| t.refresh.is_some());
        match result {
            Ok(()) => {
                let value = parse(response).unwrap_or(Value::Null);
                let text = |p: &str| value.pointer(p).and_then(Value::as_str).map(Secret::new);
                let Some(access) = text("/result/access_token") else {
                    self.tokens = None;
                    return Err(AuthDenied { retry: true, reason: "auth result without access_token".into() });
                };
                self.tokens = Some(Tokens { access, refresh: text("/result/refresh_token") });
                let expires_in = value
                    .pointer("/result/expires_in")
                    .and_then(Value::as_f64)
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(365.0 * 86_400.0)));
                Ok(AuthGranted { expires_in })
            }
            Err(e) => {
                self.tokens = None;
                // A refused refresh is retried with a full grant on a new
                // connection; a refused full grant (bad key, bad signature)
                // would fail the same way again.
                let retry = refreshing || !matches!(e.code, Some(INVALID_CREDENTIALS | UNAUTHORIZED));
                Err(AuthDenied { retry, reason: e.to_string() })
            }
        }
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        match payload {
            RequestPayload::Call { method, params } if method.starts_with("private/") => {
                let payload = RequestPayload::call(method.clone(), self.with_token(params.clone()));
                self.rpc.encode_request(id, &payload)
            }
            other => self.rpc.encode_request(id, other),
        }
    }

    fn encode_subscribe(&mut self, id: RequestId, topics: &[Topic]) -> Result<Message, EncodeError> {
        let private = topics.iter().any(|t| t.as_str().starts_with("user."));
        let channels: Vec<&str> = topics.iter().map(Topic::as_str).collect();
        let (method, params) = if private {
            ("private/subscribe", self.with_token(json!({ "channels": channels })))
        } else {
            ("public/subscribe", json!({ "channels": channels }))
        };
        self.subscribes.push((id, topics.to_vec()));
        encode(&json!({"jsonrpc": "2.0", "id": id.0, "method": method, "params": params}))
    }

    /// Deribit answers a subscribe with the channels it took and leaves the
    /// rejected names out (a batch refused whole is an error response).
    fn refused_topics(&mut self, topics: &[Topic], response: &Message) -> Vec<(Topic, ServiceError)> {
        let Ok(value) = parse(response) else { return Vec::new() };
        let Some(accepted) = value.get("result").and_then(Value::as_array) else { return Vec::new() };
        let accepted: Vec<&str> = accepted.iter().filter_map(Value::as_str).collect();
        topics
            .iter()
            .filter(|t| !accepted.contains(&t.as_str()))
            .map(|t| (t.clone(), ServiceError::new(None, format!("channel not accepted: {}", t.as_str()))))
            .collect()
    }

    fn encode_unsubscribe(&mut self, id: RequestId, subs: &[SubscriptionRef]) -> Result<Message, EncodeError> {
        let private = subs.iter().any(|s| s.topic.as_str().starts_with("user."));
        let channels: Vec<&str> = subs.iter().map(|s| s.topic.as_str()).collect();
        let (method, params) = if private {
            ("private/unsubscribe", self.with_token(json!({ "channels": channels })))
        } else {
            ("public/unsubscribe", json!({ "channels": channels }))
        };
        encode(&json!({"jsonrpc": "2.0", "id": id.0, "method": method, "params": params}))
    }

    fn max_topics_per_request(&self) -> usize {
        self.max_channels
    }

    fn setup_message(&mut self, id: RequestId) -> Option<Message> {
        // Server heartbeats are per connection: enabled on each one.
        let interval = self.heartbeat?;
        let params = json!({ "interval": interval.as_secs() });
        encode(&json!({"jsonrpc": "2.0", "id": id.0, "method": "public/set_heartbeat", "params": params})).ok()
    }

    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        let interval = self.heartbeat?;
        Some(HeartbeatSpec { interval, missed_limit: 2, any_traffic: true })
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        self.heartbeat?;
        encode(&json!({"jsonrpc": "2.0", "id": id.0, "method": "public/test", "params": {}})).ok()
    }

    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        match error.code {
            Some(TOO_MANY_REQUESTS) => self.rate_limit.strategy(),
            // Reported; the connection stays (orders wait for the platform).
            Some(SYSTEM_MAINTENANCE) => Strategy::Continue,
            _ => self.rpc.classify_error(error),
        }
    }

    fn on_disconnect(&mut self, cause: &nova_proto::Disconnect) {
        let _ = cause;
        self.subscribes.clear();
        // Connection-scoped tokens die with the socket.
        if !self.session_scoped() {
            self.tokens = None;
        }
    }

    fn rate_limits(&self) -> RateLimits {
        rate_limits()
    }

    /// Every request costs [`CREDITS_PER_REQUEST`], but heartbeats (the
    /// `public/test` beat and the answers to `test_request`) cost nothing
    /// here: Deribit closes a connection whose answer to `test_request` is
    /// late, so the limiter must never hold one back. Two free calls per
    /// heartbeat interval leave the credit count slightly optimistic.
    fn cost(&self, class: OpClass, message: &Message) -> u32 {
        let _ = message;
        match class {
            OpClass::Heartbeat => 0,
            _ => CREDITS_PER_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use nova_proto::session::Route;

    use super::*;
    use crate::common::WallClock;

    fn m(s: &str) -> Message {
        Message::text(s.to_owned())
    }

    #[test]
    fn classification_order() {
        let mut d = Deribit::new();
        assert_eq!(
            d.classify(&m(r#"{"jsonrpc":"2.0","id":41,"result":1700000000123,"usIn":1}"#)),
            Inbound::Response { id: RequestId(41), result: Ok(()) }
        );
        assert_eq!(
            d.classify(&m(
                r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{}}}"#
            )),
            Inbound::Data { route: Route::Topic("ticker.BTC-PERPETUAL.100ms".into()), seq: None }
        );
        assert_eq!(
            d.classify(&m(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}"#)),
            Inbound::Heartbeat { reply: None }
        );
        let Inbound::Heartbeat { reply: Some(reply) } =
            d.classify(&m(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#))
        else {
            panic!("test_request needs an answer")
        };
        assert_eq!(parse(&reply).unwrap()["method"], "public/test");
        assert_eq!(d.classify(&m(r#"{"jsonrpc":"2.0","id":"heartbeat","result":{"version":"1"}}"#)), Inbound::Ignore);
        assert_eq!(d.classify(&m(r#"{"jsonrpc":"2.0","method":"something_new"}"#)), Inbound::Other);
        assert!(matches!(d.classify(&m("{nope")), Inbound::Malformed(_)));
        assert!(matches!(d.classify(&Message::binary(vec![0xff, 0])), Inbound::Malformed(_)));
    }

    #[test]
    fn the_credit_limits_apply_by_default_and_never_hold_a_heartbeat() {
        let d = Deribit::new();
        assert_eq!(d.rate_limits(), rate_limits());
        let call = m(r#"{"jsonrpc":"2.0","id":1,"method":"public/get_time"}"#);
        assert_eq!(d.cost(OpClass::Request, &call), CREDITS_PER_REQUEST);
        assert_eq!(d.cost(OpClass::Subscribe, &call), CREDITS_PER_REQUEST);
        assert_eq!(d.cost(OpClass::Heartbeat, &call), 0, "a late answer to test_request costs the connection");
    }

    #[test]
    fn too_many_requests_becomes_retry_after() {
        let mut d = Deribit::new();
        let Inbound::Error(e) =
            d.classify(&m(r#"{"jsonrpc":"2.0","id":5,"error":{"code":10028,"message":"too_many_requests"}}"#))
        else {
            panic!()
        };
        assert_eq!(d.classify_error(&e), Strategy::RetryAfter(Duration::from_secs(5)));
        let mut d = Deribit::new().on_rate_limit(RateLimitAction::FailRequest);
        assert!(matches!(
            d.classify(&m(r#"{"jsonrpc":"2.0","id":5,"error":{"code":10028,"message":"too_many_requests"}}"#)),
            Inbound::Response { id: RequestId(5), result: Err(_) }
        ));
    }

    #[test]
    fn refresh_on_renewal_full_grant_after_reconnect_and_tokens_never_printed() {
        let creds = Credentials::client_signature("KEY", Secret::new("s3cr3t"), WallClock::fixed(1_700_000_000_000));
        let mut d = Deribit::new().credentials(creds);
        let first = parse(&d.auth_message(RequestId(1)).unwrap()).unwrap();
        assert_eq!(first["params"]["grant_type"], "client_signature");
        let granted = d.auth_result(
            &m(r#"{"jsonrpc":"2.0","id":1,"result":{"access_token":"AT1","refresh_token":"RT1","expires_in":900}}"#),
            Ok(()),
        );
        assert_eq!(granted, Ok(AuthGranted { expires_in: Some(Duration::from_secs(900)) }));
        let renewal = parse(&d.auth_message(RequestId(2)).unwrap()).unwrap();
        assert_eq!(renewal["params"], json!({"grant_type": "refresh_token", "refresh_token": "RT1"}));
        let debug = format!("{d:?}");
        assert!(!debug.contains("AT1") && !debug.contains("RT1") && !debug.contains("s3cr3t"), "{debug}");
        d.on_disconnect(&nova_proto::Disconnect::Failed(nova_proto::Error::Transport(nova_proto::TransportDown::Eof)));
        let again = parse(&d.auth_message(RequestId(3)).unwrap()).unwrap();
        assert_eq!(again["params"]["grant_type"], "client_signature");
        assert_ne!(again["params"]["nonce"], first["params"]["nonce"]);
    }

    #[test]
    fn private_calls_carry_the_token_and_bad_keys_stop() {
        let mut d = Deribit::new().credentials(Credentials::client_credentials("K", Secret::new("S")));
        let _ = d.auth_message(RequestId(1));
        let _ = d.auth_result(&m(r#"{"id":1,"result":{"access_token":"AT"}}"#), Ok(()));
        let msg = d.encode_request(RequestId(2), &RequestPayload::call("private/get_positions", json!({}))).unwrap();
        assert_eq!(parse(&msg).unwrap()["params"]["access_token"], "AT");
        let sub = d.encode_subscribe(RequestId(3), &["user.orders.BTC-PERPETUAL.raw".into()]).unwrap();
        assert_eq!(parse(&sub).unwrap()["method"], "private/subscribe");
        let denied = d.auth_result(&m("{}"), Err(ServiceError::new(Some(13004), "invalid_credentials")));
        assert!(matches!(denied, Err(AuthDenied { retry: false, .. })));
    }

    #[test]
    fn subscribe_with_no_accepted_channel_fails() {
        let mut d = Deribit::new();
        let _ = d.encode_subscribe(RequestId(7), &["ticker.NOPE.100ms".into()]).unwrap();
        assert!(matches!(
            d.classify(&m(r#"{"jsonrpc":"2.0","id":7,"result":[]}"#)),
            Inbound::Response { id: RequestId(7), result: Err(_) }
        ));
    }
}
