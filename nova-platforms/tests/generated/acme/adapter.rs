//! The Acme adapter: requests, authentication, subscriptions, the
//! application heartbeat and error classification, for the JSON protocol
//! in the module docs.

use std::time::Duration;

use nova_proto::Message;
use nova_proto::session::json::{encode, parse};
use nova_proto::session::{
    Adapter, AuthDenied, AuthGranted, EncodeError, HeartbeatSpec, Inbound, RequestId, RequestPayload, Route, Secret,
    SecretError, ServiceError, Strategy, SubscriptionRef, Topic,
};
use serde_json::{Map, Value, json};

use super::{API_KEY_VAR, API_SECRET_VAR, INVALID_CREDENTIALS, RATE_LIMITED, SERVICE_RESTARTING};

/// An API key and its secret. The secret never appears in `Debug` output.
#[derive(Debug, Clone)]
pub struct Credentials {
    api_key: String,
    api_secret: Secret,
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(api_key: impl Into<String>, api_secret: Secret) -> Credentials {
        Credentials { api_key: api_key.into(), api_secret }
    }

    /// Credentials from `ACME_API_KEY` and `ACME_API_SECRET`.
    ///
    /// # Errors
    ///
    /// [`SecretError`] when either variable is unset, empty or not Unicode.
    pub fn from_env() -> Result<Credentials, SecretError> {
        let api_key = Secret::from_env(API_KEY_VAR)?.expose().to_owned();
        Ok(Credentials { api_key, api_secret: Secret::from_env(API_SECRET_VAR)? })
    }

    /// The `args` of the auth request.
    ///
    /// **Change:** most platforms never send the secret itself: they want a
    /// signature, e.g. HMAC-SHA256 of a fresh timestamp (and the key), with
    /// the timestamp from a clock the caller injects (adapters never read a
    /// clock). nova-platforms' `bybit/auth.rs` is an example.
    fn auth_args(&self) -> Value {
        json!([self.api_key, self.api_secret.expose()])
    }
}

/// The Acme adapter.
///
/// - Auth (when given [`Credentials`]) first on every connection; the
///   session restores subscriptions only once it is accepted.
/// - Subscriptions are topic strings, at most
///   [`max_topics_per_request`](Self::max_topics_per_request) per request;
///   data names its topic.
/// - Every request carries a `req_id`, echoed in its answer.
/// - Heartbeat: `{"op":"ping"}` every 15 s, answered by `{"op":"pong"}`;
///   two unanswered pings end the connection as dead.
/// - Errors: [`RATE_LIMITED`] reconnects after a wait,
///   [`SERVICE_RESTARTING`] reconnects, others are reported.
#[derive(Debug, Clone)]
pub struct Acme {
    credentials: Option<Credentials>,
    max_topics: usize,
    ping_interval: Duration,
    rate_limit_wait: Duration,
}

impl Default for Acme {
    fn default() -> Acme {
        Acme::new()
    }
}

impl Acme {
    /// An adapter without credentials (public data only).
    pub fn new() -> Acme {
        Acme {
            credentials: None,
            max_topics: 10,
            ping_interval: Duration::from_secs(15),
            rate_limit_wait: Duration::from_secs(1),
        }
    }

    /// Authenticates every connection.
    pub fn credentials(mut self, credentials: Credentials) -> Acme {
        self.credentials = Some(credentials);
        self
    }

    /// Topics per subscribe request (default 10); restores are batched to it.
    ///
    /// **Change:** the default to the platform's limit of topics (`args`)
    /// per request.
    pub fn max_topics_per_request(mut self, max: usize) -> Acme {
        self.max_topics = max.max(1);
        self
    }

    /// The interval of the JSON ping (default 15 s).
    ///
    /// **Change:** the default to what the platform asks for (and the
    /// missed-ping limit in [`Adapter::heartbeat`] below).
    pub fn ping_interval(mut self, interval: Duration) -> Acme {
        self.ping_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// How long to wait before reconnecting after [`RATE_LIMITED`] (default 1 s).
    pub fn rate_limit_wait(mut self, wait: Duration) -> Acme {
        self.rate_limit_wait = wait;
        self
    }

    /// One request: `{"op":op,"args":args,"req_id":"id"}`.
    ///
    /// **Change:** the request envelope (field names, whether the id is a
    /// string or a number).
    fn request(&self, id: RequestId, op: &str, args: Option<Value>) -> Result<Message, EncodeError> {
        let mut request = json!({ "op": op, "req_id": id.0.to_string() });
        if let Some(args) = args {
            request["args"] = args;
        }
        encode(&request)
    }
}

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// The echoed `req_id` of an answer.
///
/// **Change:** where the platform echoes the request's id. Platforms that
/// do not echo it need the requests in flight matched in order instead
/// (nova-platforms' `bybit/adapter.rs` does both).
fn request_id(object: &Map<String, Value>) -> Option<RequestId> {
    match object.get("req_id")? {
        Value::String(s) => s.parse().ok().map(RequestId),
        Value::Number(n) => n.as_u64().map(RequestId),
        _ => None,
    }
}

/// The error an answer or an error message carries, if any.
///
/// **Change:** the platform's error fields.
fn service_error(object: &Map<String, Value>) -> Option<ServiceError> {
    let code = object.get("code").and_then(Value::as_i64)?;
    Some(ServiceError::new(Some(code), text(object, "msg").unwrap_or_default()))
}

impl Adapter for Acme {
    /// **Change:** the order of these checks follows the platform's message
    /// shapes: data first (it is most of the traffic), then heartbeat
    /// replies, answers and errors.
    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(value) => value,
            Err(e) => return Inbound::Malformed(e),
        };
        let Some(object) = value.as_object() else { return Inbound::Other };
        // 1. Data, named by its topic. (**Change:** if the platform numbers
        // each topic's messages across connections, return `seq: Some(n)`
        // and the session drops duplicates.)
        if let Some(topic) = text(object, "topic") {
            return Inbound::Data { route: Route::Topic(Topic::new(topic)), seq: None };
        }
        let op = text(object, "op");
        // 2. The answer to our ping.
        if op == Some("pong") {
            return Inbound::HeartbeatReply;
        }
        // 3. Answers to requests (auth, subscribe, unsubscribe, calls).
        if let Some(id) = request_id(object) {
            let result = match object.get("success").and_then(Value::as_bool) {
                Some(true) => Ok(()),
                _ => Err(service_error(object).unwrap_or_else(|| ServiceError::new(None, "request failed"))),
            };
            return Inbound::Response { id, result };
        }
        // 4. Errors outside any request.
        if let Some(error) = service_error(object) {
            return Inbound::Error(match error.code {
                Some(RATE_LIMITED) => error.with_retry_after(self.rate_limit_wait),
                _ => error,
            });
        }
        Inbound::Other
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let args = self.credentials.as_ref()?.auth_args();
        self.request(id, "auth", Some(args)).ok()
    }

    /// **Change:** if the platform's tokens expire, return their lifetime in
    /// `expires_in`: the session re-authenticates before they run out.
    fn auth_result(&mut self, response: &Message, result: Result<(), ServiceError>) -> Result<AuthGranted, AuthDenied> {
        let _ = response;
        match result {
            Ok(()) => Ok(AuthGranted { expires_in: None }),
            // Wrong credentials stay wrong; anything else may pass next time.
            Err(e) => Err(AuthDenied { retry: e.code != Some(INVALID_CREDENTIALS), reason: e.to_string() }),
        }
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        match payload {
            RequestPayload::Call { method, params } => {
                let args = if params.is_array() { params.clone() } else { json!([params]) };
                self.request(id, method, Some(args))
            }
            RequestPayload::Message(_) => Err(EncodeError::Unsupported("raw messages as requests (use send)")),
            _ => Err(EncodeError::Unsupported("this payload")),
        }
    }

    fn encode_subscribe(&mut self, id: RequestId, topics: &[Topic]) -> Result<Message, EncodeError> {
        self.request(id, "subscribe", Some(json!(topics.iter().map(Topic::as_str).collect::<Vec<_>>())))
    }

    fn encode_unsubscribe(&mut self, id: RequestId, subs: &[SubscriptionRef]) -> Result<Message, EncodeError> {
        self.request(id, "unsubscribe", Some(json!(subs.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>())))
    }

    fn max_topics_per_request(&self) -> usize {
        self.max_topics
    }

    /// **Change:** `None` if the platform has no application heartbeat (the
    /// profile's WebSocket pings then keep the connection checked).
    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        Some(HeartbeatSpec::new(self.ping_interval, 2))
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        self.request(id, "ping", None).ok()
    }

    /// **Change:** the platform's codes that call for a reconnect, a wait
    /// or the end of the session ([`Strategy::Stop`]).
    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        match error.code {
            Some(RATE_LIMITED) => Strategy::RetryAfter(error.retry_after.unwrap_or(self.rate_limit_wait)),
            Some(SERVICE_RESTARTING) => Strategy::Reconnect,
            _ => Strategy::Continue,
        }
    }
}
