//! Socket Mode envelopes and their acknowledgements, and the
//! `apps.connections.open` step (HTTP, done by the application).

use std::fmt;

use nova_proto::session::{EncodeError, SecretError};
use nova_proto::{Message, Secret};
use serde_json::{Value, json};

/// One delivery from Slack that must be acknowledged within 3 seconds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// The id to acknowledge.
    pub envelope_id: String,
    /// `events_api`, `interactive`, `slash_commands`, or a newer type.
    pub kind: String,
    /// Whether the acknowledgement may carry a response payload.
    pub accepts_response_payload: bool,
    /// 0 on first delivery, 1..3 on redeliveries.
    pub retry_attempt: u64,
    /// Why it was redelivered (`timeout`, ...), empty on first delivery.
    pub retry_reason: String,
    /// The payload (an Events API callback, an interaction, a command).
    pub payload: Value,
}

impl Envelope {
    /// The envelope in `message`, if it is one.
    pub fn parse(message: &Message) -> Option<Envelope> {
        let v: Value = serde_json::from_slice(message.as_bytes()).ok()?;
        Envelope::from_value(&v)
    }

    pub(crate) fn from_value(v: &Value) -> Option<Envelope> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Some(Envelope {
            envelope_id: v.get("envelope_id")?.as_str()?.to_owned(),
            kind: s("type"),
            accepts_response_payload: v.get("accepts_response_payload").and_then(Value::as_bool).unwrap_or(false),
            retry_attempt: v.get("retry_attempt").and_then(Value::as_u64).unwrap_or(0),
            retry_reason: s("retry_reason"),
            payload: v.get("payload").cloned().unwrap_or(Value::Null),
        })
    }

    /// The bare acknowledgement, `{"envelope_id": ...}`. The adapter sends
    /// it by itself; with [`Slack::manual_ack`](super::Slack::manual_ack)
    /// the application sends it (with `Session::send`) before doing any
    /// slow work.
    pub fn ack(&self) -> Message {
        ack(&self.envelope_id)
    }

    /// An acknowledgement carrying a response (slash-command reply,
    /// `view_submission` response action), for applications that
    /// acknowledge themselves ([`Slack::manual_ack`](super::Slack::manual_ack)).
    ///
    /// # Errors
    ///
    /// [`EncodeError::Invalid`] when this envelope does not accept a response payload.
    pub fn ack_with(&self, payload: Value) -> Result<Message, EncodeError> {
        if !self.accepts_response_payload {
            return Err(EncodeError::Invalid("this envelope does not accept a response payload".into()));
        }
        Ok(Message::text(json!({"envelope_id": self.envelope_id, "payload": payload}).to_string()))
    }

    /// The Events API event id, for de-duplication across sockets.
    pub fn event_id(&self) -> Option<&str> {
        self.payload.get("event_id").and_then(Value::as_str)
    }

    /// Whether this is Slack's `app_rate_limited` notice (more than 30 000
    /// events an hour): acknowledge it like any envelope.
    pub fn is_app_rate_limited(&self) -> bool {
        self.payload.get("type").and_then(Value::as_str) == Some("app_rate_limited")
    }
}

pub(crate) fn ack(envelope_id: &str) -> Message {
    Message::text(json!({ "envelope_id": envelope_id }).to_string())
}

/// The app-level token (`xapp-...`) that opens Socket Mode connections.
#[derive(Clone)]
pub struct AppToken(Secret);

impl fmt::Debug for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppToken(***)")
    }
}

/// The environment variable holding the app-level token.
pub const APP_TOKEN_VAR: &str = "SLACK_APP_TOKEN";

/// The Web API method that hands out a WebSocket URL.
pub const CONNECTIONS_OPEN_URL: &str = "https://slack.com/api/apps.connections.open";

impl AppToken {
    /// Wraps an app-level token.
    pub fn new(token: Secret) -> AppToken {
        AppToken(token)
    }

    /// From `SLACK_APP_TOKEN`.
    ///
    /// # Errors
    ///
    /// [`SecretError`] when the variable is missing or empty.
    pub fn from_env() -> Result<AppToken, SecretError> {
        Secret::from_env(APP_TOKEN_VAR).map(AppToken)
    }

    /// Whether it looks like an app-level token (a bot token, `xoxb-`, is
    /// refused by `apps.connections.open`).
    pub fn is_app_level(&self) -> bool {
        self.0.expose().starts_with("xapp-")
    }

    /// The `Authorization` header value for `POST` [`CONNECTIONS_OPEN_URL`]
    /// (the token must not be sent as a form field).
    pub fn authorization(&self) -> Secret {
        Secret::new(format!("Bearer {}", self.0.expose()))
    }
}

/// What `apps.connections.open` answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionsOpenError {
    /// Retrying cannot help (`invalid_auth`, `not_authed`, `account_inactive`,
    /// `user_removed_from_team`, `team_disabled`).
    #[error("apps.connections.open failed for good: {0}")]
    Fatal(String),
    /// Rate limited (HTTP 429): wait for `Retry-After` (default 30 s) and retry.
    #[error("apps.connections.open is rate limited")]
    RateLimited,
    /// Another error; retrying with backoff may help.
    #[error("apps.connections.open failed: {0}")]
    Other(String),
}

/// The WebSocket URL from an `apps.connections.open` response body.
///
/// # Errors
///
/// [`ConnectionsOpenError`] saying whether to stop, wait or retry.
pub fn connections_open_url(body: &str) -> Result<String, ConnectionsOpenError> {
    let v: Value = serde_json::from_str(body).map_err(|e| ConnectionsOpenError::Other(e.to_string()))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        if let Some(url) = v.get("url").and_then(Value::as_str) {
            return Ok(url.to_owned());
        }
    }
    let error = v.get("error").and_then(Value::as_str).unwrap_or("no url in the response").to_owned();
    match error.as_str() {
        "not_authed" | "invalid_auth" | "account_inactive" | "user_removed_from_team" | "team_disabled" => {
            Err(ConnectionsOpenError::Fatal(error))
        }
        "ratelimited" => Err(ConnectionsOpenError::RateLimited),
        _ => Err(ConnectionsOpenError::Other(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_parse_and_ack() {
        let m = Message::text(
            r#"{"envelope_id":"env-3","type":"slash_commands","accepts_response_payload":true,"payload":{"text":"prod"}}"#,
        );
        let e = Envelope::parse(&m).unwrap();
        assert_eq!(e.ack().as_text(), Some(r#"{"envelope_id":"env-3"}"#));
        let with = e.ack_with(json!({"text": "Deploy queued"})).unwrap();
        assert_eq!(serde_json::from_str::<Value>(with.as_text().unwrap()).unwrap()["payload"]["text"], "Deploy queued");
        let m = Message::text(
            r#"{"envelope_id":"env-1","type":"events_api","accepts_response_payload":false,"payload":{"type":"app_rate_limited"}}"#,
        );
        let e = Envelope::parse(&m).unwrap();
        assert!(e.ack_with(json!({})).is_err());
        assert!(e.is_app_rate_limited());
    }

    #[test]
    fn connections_open_answers() {
        assert_eq!(
            connections_open_url(r#"{"ok":true,"url":"wss://x/link/?ticket=T"}"#).unwrap(),
            "wss://x/link/?ticket=T"
        );
        assert!(matches!(
            connections_open_url(r#"{"ok":false,"error":"invalid_auth"}"#),
            Err(ConnectionsOpenError::Fatal(_))
        ));
        assert_eq!(
            connections_open_url(r#"{"ok":false,"error":"ratelimited"}"#),
            Err(ConnectionsOpenError::RateLimited)
        );
        let t = AppToken::new(Secret::new("xapp-1-secret"));
        assert!(t.is_app_level());
        assert!(!format!("{t:?} {:?}", t.authorization()).contains("secret"));
    }
}
