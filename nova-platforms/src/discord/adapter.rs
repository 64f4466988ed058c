//! The Discord Gateway adapter: Identify or Resume after Hello on every
//! connection, heartbeats on the interval from Hello (first one jittered),
//! zombie detection, and the Gateway's reconnect opcodes.

use std::fmt;
use std::time::Duration;

use nova_proto::limits::{OpClass, RateLimits};
use nova_proto::session::json::parse;
use nova_proto::session::{
    Adapter, AuthDenied, AuthGranted, EncodeError, HeartbeatSpec, Inbound, RequestId, RequestPayload, Secret,
    SecretError, ServiceError, Strategy,
};
use nova_proto::{Disconnect, Message};
use serde_json::{Value, json};

use super::gateway::{
    GatewayInfo, OP_DISPATCH, OP_HEARTBEAT, OP_HEARTBEAT_ACK, OP_HELLO, OP_IDENTIFY, OP_INVALID_SESSION, OP_RECONNECT,
    OP_RESUME,
};
use super::policy::{NEW_SESSION_CLOSE_CODES, rate_limits};

/// The environment variable holding the bot token.
pub const TOKEN_VAR: &str = "DISCORD_TOKEN";

/// Codes the adapter gives the Gateway's reconnect requests, so its
/// [`classify_error`](Adapter::classify_error) recognises them.
const RECONNECT_REQUESTED: i64 = 7;
const SESSION_INVALIDATED: i64 = 9;

/// The Discord Gateway adapter.
///
/// - Nothing is sent before Hello (op 10). Then Identify (token, intents,
///   properties, optional shard) on a new session; Resume (session id, last
///   sequence number) on every connection after a drop, op 7 or a zombie,
///   while the session is resumable. READY or RESUMED is the answer; op 9
///   during Resume makes the next connection identify. A connection that
///   gets no Hello within the session's auth timeout is dropped and retried.
/// - Heartbeats start at Hello: the first after `interval × jitter`, then
///   one every interval, `d` = last sequence number; a heartbeat with no ACK
///   since the previous one ends the connection as a zombie, and the next
///   one resumes. Server op 1 is answered at once.
/// - Dispatches other than READY/RESUMED reach the application as plain
///   messages ([`dispatch`](super::dispatch) parses them).
/// - [`info`](Self::info) shares the session id, sequence number, resume URL
///   and READY payload with the application.
///
/// The token never appears in `Debug`.
#[derive(Clone)]
pub struct Discord {
    token: Secret,
    intents: u64,
    properties: Value,
    shard: Option<[u32; 2]>,
    rng: u64,
    info: GatewayInfo,
    interval: Option<Duration>,
    awaiting_ready: bool,
}

impl fmt::Debug for Discord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discord")
            .field("token", &self.token)
            .field("intents", &self.intents)
            .field("shard", &self.shard)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Discord {
    /// A bot with `token` (bare, without `Bot `) and `intents`.
    pub fn new(token: Secret, intents: u64) -> Discord {
        Discord {
            token,
            intents,
            properties: json!({"os": std::env::consts::OS, "browser": "nova", "device": "nova"}),
            shard: None,
            rng: 0x9e37_79b9_7f4a_7c15,
            info: GatewayInfo::default(),
            interval: None,
            awaiting_ready: false,
        }
    }

    /// The token from `DISCORD_TOKEN`.
    ///
    /// # Errors
    ///
    /// [`SecretError`] when the variable is missing or empty.
    pub fn from_env(intents: u64) -> Result<Discord, SecretError> {
        Ok(Discord::new(Secret::from_env(TOKEN_VAR)?, intents))
    }

    /// Identifies as shard `id` of `count` (also seeds the heartbeat jitter,
    /// so shards started together do not beat together).
    pub fn shard(mut self, id: u32, count: u32) -> Discord {
        self.shard = Some([id, count]);
        self.rng ^= u64::from(id).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self
    }

    /// Seeds the first-heartbeat jitter (deterministic: the adapter has no
    /// random source of its own).
    pub fn jitter_seed(mut self, seed: u64) -> Discord {
        self.rng = seed;
        self
    }

    /// The session facts shared with the application.
    pub fn info(&self) -> GatewayInfo {
        self.info.clone()
    }

    /// A uniform draw in `[0, 1)` (splitmix64).
    fn unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn encode(value: &Value) -> Option<Message> {
    Some(Message::text(value.to_string()))
}

impl Adapter for Discord {
    fn classify(&mut self, message: &Message) -> Inbound {
        let value = match parse(message) {
            Ok(v) => v,
            Err(e) => return Inbound::Malformed(e),
        };
        let Some(op) = value.get("op").and_then(Value::as_u64) else { return Inbound::Other };
        match op {
            OP_DISPATCH => {
                // Only non-null sequence numbers advance the stored one.
                if let Some(s) = value.get("s").and_then(Value::as_u64) {
                    self.info.set_seq(s);
                }
                match value.get("t").and_then(Value::as_str) {
                    Some("READY") => {
                        self.info.set_ready(value.get("d").cloned().unwrap_or(Value::Null));
                        self.awaiting_ready = false;
                        Inbound::Auth(Ok(AuthGranted { expires_in: None }))
                    }
                    Some("RESUMED") => {
                        self.info.set_resumed();
                        self.awaiting_ready = false;
                        Inbound::Auth(Ok(AuthGranted { expires_in: None }))
                    }
                    _ => Inbound::Other,
                }
            }
            OP_HEARTBEAT => Inbound::Heartbeat { reply: encode(&json!({"op": OP_HEARTBEAT, "d": self.info.seq()})) },
            OP_HEARTBEAT_ACK => Inbound::HeartbeatReply,
            OP_HELLO => {
                let ms = value.pointer("/d/heartbeat_interval").and_then(Value::as_u64).filter(|ms| *ms > 0);
                let Some(ms) = ms else {
                    return Inbound::Malformed(nova_proto::session::DecodeError::new(
                        "Hello without heartbeat_interval",
                    ));
                };
                let interval = Duration::from_millis(ms);
                self.interval = Some(interval);
                // Identify or Resume goes now; the first beat after
                // `interval × jitter`, the next ones every interval.
                Inbound::Greeting { first_beat: Some(interval.mul_f64(self.unit())) }
            }
            OP_RECONNECT => {
                Inbound::Error(ServiceError::new(Some(RECONNECT_REQUESTED), "the Gateway asked to reconnect"))
            }
            OP_INVALID_SESSION => {
                let resumable = value.get("d").and_then(Value::as_bool).unwrap_or(false);
                if !resumable {
                    self.info.invalidate();
                }
                if self.awaiting_ready {
                    self.awaiting_ready = false;
                    // Retry on a new connection: it resumes or identifies.
                    return Inbound::Auth(Err(AuthDenied { retry: true, reason: "invalid session".into() }));
                }
                let wait = Duration::from_secs(1).mul_f64(1.0 + 4.0 * self.unit());
                Inbound::Error(
                    ServiceError::new(Some(SESSION_INVALIDATED), "the Gateway invalidated the session")
                        .with_retry_after(wait),
                )
            }
            _ => Inbound::Other,
        }
    }

    fn auth_after_greeting(&self) -> bool {
        true
    }

    fn auth_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        self.awaiting_ready = true;
        match self.info.resumable() {
            Some((session_id, seq)) => encode(&json!({"op": OP_RESUME, "d": {
                "token": self.token.expose(), "session_id": session_id, "seq": seq,
            }})),
            None => {
                let mut d =
                    json!({"token": self.token.expose(), "intents": self.intents, "properties": self.properties});
                if let Some(shard) = self.shard {
                    d["shard"] = json!(shard);
                }
                encode(&json!({"op": OP_IDENTIFY, "d": d}))
            }
        }
    }

    fn auth_result(&mut self, response: &Message, result: Result<(), ServiceError>) -> Result<AuthGranted, AuthDenied> {
        // READY and RESUMED come as `Inbound::Auth`; this only sees errors.
        let _ = response;
        result.map(|()| AuthGranted::default()).map_err(|e| AuthDenied { retry: true, reason: e.to_string() })
    }

    fn encode_request(&mut self, id: RequestId, payload: &RequestPayload) -> Result<Message, EncodeError> {
        let _ = (id, payload);
        Err(EncodeError::Unsupported("requests: gateway commands have no response (send discord::command)"))
    }

    fn heartbeat(&self) -> Option<HeartbeatSpec> {
        let interval = self.interval?;
        Some(HeartbeatSpec { interval, missed_limit: 1, any_traffic: false })
    }

    fn heartbeat_message(&mut self, id: RequestId) -> Option<Message> {
        let _ = id;
        encode(&json!({"op": OP_HEARTBEAT, "d": self.info.seq()}))
    }

    fn classify_error(&mut self, error: &ServiceError) -> Strategy {
        match (error.code, error.retry_after) {
            (Some(SESSION_INVALIDATED), Some(wait)) => Strategy::RetryAfter(wait),
            (Some(RECONNECT_REQUESTED | SESSION_INVALIDATED), _) => Strategy::Reconnect,
            _ => Strategy::Continue,
        }
    }

    fn on_disconnect(&mut self, cause: &Disconnect) {
        // Per-connection heartbeat state must not leak into the next socket.
        self.interval = None;
        self.awaiting_ready = false;
        // 4003, 4007, 4009: the session is gone; the next connection
        // identifies (a Resume would only earn op 9). Any other close, or
        // none at all, keeps it resumable.
        if let Disconnect::ServerClosed { code, .. } = cause {
            if NEW_SESSION_CLOSE_CODES.contains(&u16::from(*code)) {
                self.info.invalidate();
            }
        }
    }

    fn rate_limits(&self) -> RateLimits {
        rate_limits()
    }

    /// One event each against the Gateway's 120 a minute, but heartbeats
    /// are free (the preset leaves room for them): a beat held back by the
    /// limiter would look like a zombie connection. A Resume is free too:
    /// the identify concurrency limit is about Identify only.
    fn cost(&self, class: OpClass, message: &Message) -> u32 {
        match class {
            OpClass::Heartbeat => 0,
            OpClass::Auth if parse(message).ok().and_then(|v| v.get("op").and_then(Value::as_u64)) == Some(6) => 0,
            _ => 1,
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
    fn identify_then_resume_with_the_last_non_null_seq() {
        let mut d = Discord::new(Secret::new("TOKEN"), 513);
        let identify = parse(&d.auth_message(RequestId(1)).unwrap()).unwrap();
        assert_eq!(identify["op"], 2);
        assert_eq!(identify["d"]["token"], "TOKEN");
        assert_eq!(identify["d"]["intents"], 513);
        let ready = r#"{"op":0,"t":"READY","s":1,"d":{"session_id":"sess-abc","resume_gateway_url":"wss://resume-1.discord.gg"}}"#;
        assert!(matches!(d.classify(&m(ready)), Inbound::Auth(Ok(_))));
        assert_eq!(d.classify(&m(r#"{"op":0,"t":"MESSAGE_CREATE","s":2,"d":{}}"#)), Inbound::Other);
        assert_eq!(d.classify(&m(r#"{"op":11,"d":null,"s":null,"t":null}"#)), Inbound::HeartbeatReply);
        assert_eq!(d.info().seq(), Some(2));
        assert_eq!((d.info().readies(), d.info().resumes()), (1, 0));
        d.on_disconnect(&Disconnect::ServerClosed { code: 4000.into(), reason: "Unknown error".into() });
        let resume = parse(&d.auth_message(RequestId(2)).unwrap()).unwrap();
        assert_eq!(resume, json!({"op": 6, "d": {"token": "TOKEN", "session_id": "sess-abc", "seq": 2}}));
        assert_eq!(d.info().resume_gateway_url().as_deref(), Some("wss://resume-1.discord.gg"));
        assert!(matches!(d.classify(&m(r#"{"op":0,"t":"RESUMED","s":3,"d":{}}"#)), Inbound::Auth(Ok(_))));
        assert_eq!((d.info().readies(), d.info().resumes()), (1, 1), "resumed, not a new session");
        assert!(!format!("{d:?}").contains("TOKEN"));
        for code in NEW_SESSION_CLOSE_CODES {
            d.on_disconnect(&Disconnect::ServerClosed { code: code.into(), reason: String::new() });
            assert_eq!(parse(&d.auth_message(RequestId(3)).unwrap()).unwrap()["op"], 2, "Identify after {code}");
            d.classify(&m(ready));
        }
    }

    #[test]
    fn the_gateway_limits_apply_by_default_and_never_hold_a_heartbeat_or_a_resume() {
        let mut d = Discord::new(Secret::new("T"), 0);
        assert_eq!(d.rate_limits(), rate_limits());
        let identify = d.auth_message(RequestId(1)).unwrap();
        assert_eq!(d.cost(OpClass::Auth, &identify), 1, "Identify counts against the concurrency limit");
        d.classify(&m(r#"{"op":0,"t":"READY","s":1,"d":{"session_id":"s","resume_gateway_url":"wss://r"}}"#));
        d.on_disconnect(&Disconnect::ServerClosed { code: 4000.into(), reason: String::new() });
        let resume = d.auth_message(RequestId(2)).unwrap();
        assert_eq!(parse(&resume).unwrap()["op"], 6);
        assert_eq!(d.cost(OpClass::Auth, &resume), 0, "a Resume is not an Identify");
        assert_eq!(d.cost(OpClass::Heartbeat, &m(r#"{"op":1,"d":1}"#)), 0);
        assert_eq!(d.cost(OpClass::Message, &m(r#"{"op":3,"d":{}}"#)), 1);
    }

    #[test]
    fn hello_is_the_greeting_with_a_jittered_first_beat_within_the_interval() {
        assert!(Discord::new(Secret::new("T"), 0).auth_after_greeting());
        for seed in 0..50 {
            let mut d = Discord::new(Secret::new("T"), 0).jitter_seed(seed);
            assert_eq!(d.heartbeat(), None, "no heartbeat before Hello");
            let Inbound::Greeting { first_beat: Some(first) } =
                d.classify(&m(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#))
            else {
                panic!("Hello is the greeting")
            };
            assert!(first < Duration::from_millis(41_250), "{first:?}");
            assert_eq!(d.heartbeat().unwrap().interval, Duration::from_millis(41_250));
        }
    }

    #[test]
    fn reconnect_and_invalid_session_opcodes() {
        let mut d = Discord::new(Secret::new("T"), 0);
        let Inbound::Error(e) = d.classify(&m(r#"{"op":7,"d":null}"#)) else { panic!() };
        assert_eq!(d.classify_error(&e), Strategy::Reconnect);
        let Inbound::Error(e) = d.classify(&m(r#"{"op":9,"d":false}"#)) else { panic!() };
        assert!(
            matches!(d.classify_error(&e), Strategy::RetryAfter(w) if w >= Duration::from_secs(1) && w <= Duration::from_secs(5))
        );
        let _ = d.auth_message(RequestId(1));
        assert!(matches!(d.classify(&m(r#"{"op":9,"d":false}"#)), Inbound::Auth(Err(AuthDenied { retry: true, .. }))));
        assert!(matches!(d.classify(&m(r#"{"op":10,"d":{}}"#)), Inbound::Malformed(_)));
        assert!(matches!(d.classify(&m("not json")), Inbound::Malformed(_)));
    }
}
