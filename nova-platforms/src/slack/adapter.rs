//! The Slack Socket Mode adapter: envelopes acknowledged at once and
//! delivered once, `disconnect` reasons turned into reconnect decisions.

use std::time::Duration;

use nova_proto::Message;
use nova_proto::session::json::parse;
use nova_proto::session::{Adapter, EncodeError, Inbound, RequestId, RequestPayload, ServiceError, Strategy};
use serde_json::Value;

use super::envelope::{Envelope, ack};
use crate::common::Recent;

/// Envelope and event ids remembered for de-duplication.
const MAX_SEEN: usize = 4096;

/// `disconnect` reasons, as [`ServiceError`] messages.
pub const LINK_DISABLED: &str = "link_disabled";
/// Routine rotation: reconnect at once.
pub const REFRESH_REQUESTED: &str = "refresh_requested";
/// This socket closes soon.
pub const WARNING: &str = "warning";
/// The app holds too many sockets.
pub const TOO_MANY_WEBSOCKETS: &str = "too_many_websockets";

/// The Slack Socket Mode adapter.
///
/// - `hello` opens the connection for acknowledgements (nothing to send:
///   the URL's ticket is the authorization).
/// - Every envelope is acknowledged by the adapter (`{"envelope_id": ...}`)
///   as it arrives, before the application sees it, so the 3 s deadline
///   never depends on the application; the envelope then reaches the
///   application as a plain message ([`Envelope::parse`]).
///   With [`manual_ack`](Self::manual_ack) the application acknowledges
///   first deliveries itself, with [`Envelope::ack`] or
///   [`Envelope::ack_with`] a response payload (slash-command replies,
///   `view_submission` response actions).
/// - A redelivery of an envelope or Events API event already delivered
///   (the last 4096 ids, across reconnects) is acknowledged by the adapter
///   in both modes and not delivered again.
/// - `disconnect`: `link_disabled` stops the session; `refresh_requested`
///   reconnects at once (no backoff); `too_many_websockets` waits
///   ([`too_many_websockets_wait`](Self::too_many_websockets_wait), 60 s);
///   `warning` is reported and the connection stays (opening a second
///   session before the old one closes is the application's choice); any
///   other reason reconnects with backoff.
///
/// Every reconnect needs a fresh URL from `apps.connections.open`: set it
/// with `Session::set_config` when `Event::Disconnected` arrives.
#[derive(Debug, Clone)]
pub struct Slack {
    seen: Recent<String>,
    too_many_wait: Duration,
    auto_ack: bool,
}

impl Default for Slack {
    fn default() -> Slack {
        Slack::new()
    }
}

impl Slack {
    /// The adapter, acknowledging every envelope itself.
    pub fn new() -> Slack {
        Slack { seen: Recent::new(MAX_SEEN), too_many_wait: Duration::from_secs(60), auto_ack: true }
    }

    /// Leaves acknowledging first deliveries to the application, for apps
    /// that put a response payload in the acknowledgement
    /// ([`Envelope::ack_with`]); it must send one for every envelope within
    /// 3 s. Redeliveries are still acknowledged by the adapter.
    pub fn manual_ack(mut self) -> Slack {
        self.auto_ack = false;
        self
    }

    /// How long to wait after `too_many_websockets` (Slack gives no figure).
    pub fn too_many_websockets_wait(mut self, wait: Duration) -> Slack {
        self.too_many_wait = wait;
        self
    }

    fn duplicate(&mut self, envelope: &Envelope) -> bool {
        let keys: Vec<String> = std::iter::once(format!("env:{}", envelope.envelope_id))
            .chain(envelope.event_id().map(|e| format!("event:{e}")))
            .collect();
        let seen = keys.iter().any(|k| self.seen.take(|s| s == k).inspect(|k| self.seen.push(k.clone())).is_some());
        if !seen {
            keys.into_iter().for_each(|k| self.seen.push(k));
        }
        seen
    }
}

impl Adapter for Slack {
    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(v) => v,
            Err(e) => return Inbound::Malformed(e),
        };
        match value.get("type").and_then(Value::as_str) {
            Some("hello") => return Inbound::Ignore,
            Some("disconnect") => {
                let reason = value.get("reason").and_then(Value::as_str).unwrap_or("unknown");
                return Inbound::Error(ServiceError::new(None, reason));
            }
            _ => {}
        }
        let Some(envelope) = Envelope::from_value(&value) else { return Inbound::Other };
        // A redelivery is acknowledged again (Slack asked) but delivered once.
        let first = !self.duplicate(&envelope);
        if first && !self.auto_ack {
            return Inbound::Other;
        }
        Inbound::Reply { reply: ack(&envelope.envelope_id), deliver: first }
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        let _ = (id, payload);
        Err(EncodeError::Unsupported("requests: Socket Mode only acknowledges (Web API calls go over HTTPS)"))
    }

    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        match error.message.as_str() {
            LINK_DISABLED => Strategy::Stop,
            REFRESH_REQUESTED => Strategy::RetryAfter(Duration::ZERO),
            TOO_MANY_WEBSOCKETS => Strategy::RetryAfter(self.too_many_wait),
            WARNING => Strategy::Continue,
            _ => Strategy::Reconnect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Message {
        Message::text(s.to_owned())
    }

    #[test]
    fn classification() {
        let mut s = Slack::new();
        assert_eq!(s.classify(&m(r#"{"type":"hello","num_connections":1}"#)), Inbound::Ignore);
        let env = r#"{"envelope_id":"env-1","type":"events_api","retry_attempt":0,"payload":{"event_id":"Ev-1"}}"#;
        assert_eq!(s.classify(&m(env)), Inbound::Reply { reply: ack("env-1"), deliver: true });
        let again = r#"{"envelope_id":"env-1","type":"events_api","retry_attempt":1,"retry_reason":"timeout","payload":{"event_id":"Ev-1"}}"#;
        assert_eq!(s.classify(&m(again)), Inbound::Reply { reply: ack("env-1"), deliver: false });
        // The same event on another envelope (another socket's retry) too.
        let other = r#"{"envelope_id":"env-9","type":"events_api","retry_attempt":2,"payload":{"event_id":"Ev-1"}}"#;
        assert_eq!(s.classify(&m(other)), Inbound::Reply { reply: ack("env-9"), deliver: false });
        // Manual mode: first deliveries are the application's to acknowledge.
        let mut manual = Slack::new().manual_ack();
        assert_eq!(manual.classify(&m(env)), Inbound::Other);
        assert_eq!(manual.classify(&m(again)), Inbound::Reply { reply: ack("env-1"), deliver: false });
        let Inbound::Error(e) = s.classify(&m(r#"{"type":"disconnect","reason":"link_disabled"}"#)) else { panic!() };
        assert_eq!(s.classify_error(&e), Strategy::Stop);
        assert!(matches!(s.classify(&m("{")), Inbound::Malformed(_)));
    }
}
