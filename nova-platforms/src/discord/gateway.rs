//! Gateway payloads: opcodes, commands with the 4096-byte cap, dispatch
//! parsing, and the session facts the adapter shares with the application.

use std::sync::{Arc, Mutex};

use nova_proto::Message;
use nova_proto::session::EncodeError;
use serde_json::{Value, json};

/// Dispatch (an event, with `t` and `s`).
pub const OP_DISPATCH: u64 = 0;
/// Heartbeat (either direction).
pub const OP_HEARTBEAT: u64 = 1;
/// Identify.
pub const OP_IDENTIFY: u64 = 2;
/// Presence update.
pub const OP_PRESENCE_UPDATE: u64 = 3;
/// Resume.
pub const OP_RESUME: u64 = 6;
/// Reconnect (server asks).
pub const OP_RECONNECT: u64 = 7;
/// Request guild members.
pub const OP_REQUEST_GUILD_MEMBERS: u64 = 8;
/// Invalid session.
pub const OP_INVALID_SESSION: u64 = 9;
/// Hello.
pub const OP_HELLO: u64 = 10;
/// Heartbeat ACK.
pub const OP_HEARTBEAT_ACK: u64 = 11;

/// The largest payload the Gateway accepts (bigger ones close with 4002).
pub const MAX_PAYLOAD: usize = 4096;

/// A gateway command `{"op": op, "d": d}`, refused when over 4096 bytes.
/// Send it with `Session::send` (commands have no response).
///
/// # Errors
///
/// [`EncodeError::Invalid`] when the payload is too large.
pub fn command(op: u64, d: Value) -> Result<Message, EncodeError> {
    let text = json!({ "op": op, "d": d }).to_string();
    if text.len() > MAX_PAYLOAD {
        return Err(EncodeError::Invalid(format!("{} bytes exceed the Gateway's {MAX_PAYLOAD}", text.len())));
    }
    Ok(Message::text(text))
}

/// A dispatch's event name, sequence number and data, if `message` is one.
pub fn dispatch(message: &Message) -> Option<(String, Option<u64>, Value)> {
    let mut v: Value = serde_json::from_slice(message.as_bytes()).ok()?;
    if v.get("op")?.as_u64()? != OP_DISPATCH {
        return None;
    }
    let name = v.get("t")?.as_str()?.to_owned();
    let seq = v.get("s").and_then(Value::as_u64);
    Some((name, seq, v.get_mut("d").map(Value::take).unwrap_or(Value::Null)))
}

#[derive(Debug, Default, Clone)]
struct Facts {
    session_id: Option<String>,
    seq: Option<u64>,
    resume_gateway_url: Option<String>,
    ready: Option<Value>,
    readies: u64,
    resumes: u64,
}

/// The Gateway session as the adapter knows it, readable by the application
/// while the adapter sits inside a `Session` (e.g. to point the next
/// connection at `resume_gateway_url` with `Session::set_config`, or to read
/// the READY payload, which the session consumes as the answer to Identify).
#[derive(Debug, Clone, Default)]
pub struct GatewayInfo(Arc<Mutex<Facts>>);

impl GatewayInfo {
    fn read<T>(&self, f: impl FnOnce(&Facts) -> T) -> T {
        f(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn write(&self, f: impl FnOnce(&mut Facts)) {
        f(&mut self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The resumable session's id.
    pub fn session_id(&self) -> Option<String> {
        self.read(|f| f.session_id.clone())
    }

    /// The last non-null sequence number received.
    pub fn seq(&self) -> Option<u64> {
        self.read(|f| f.seq)
    }

    /// Where to resume (from READY).
    pub fn resume_gateway_url(&self) -> Option<String> {
        self.read(|f| f.resume_gateway_url.clone())
    }

    /// The last READY dispatch's `d`.
    pub fn ready(&self) -> Option<Value> {
        self.read(|f| f.ready.clone())
    }

    /// Sessions started: READY answers to Identify.
    pub fn readies(&self) -> u64 {
        self.read(|f| f.readies)
    }

    /// Sessions resumed: RESUMED answers to Resume (nothing missed, no new
    /// Identify spent).
    pub fn resumes(&self) -> u64 {
        self.read(|f| f.resumes)
    }

    pub(crate) fn set_resumed(&self) {
        self.write(|f| f.resumes += 1);
    }

    pub(crate) fn set_seq(&self, seq: u64) {
        self.write(|f| f.seq = Some(seq));
    }

    pub(crate) fn set_ready(&self, d: Value) {
        self.write(|f| {
            f.session_id = d.get("session_id").and_then(Value::as_str).map(str::to_owned);
            f.resume_gateway_url = d.get("resume_gateway_url").and_then(Value::as_str).map(str::to_owned);
            f.ready = Some(d);
            f.readies += 1;
        });
    }

    /// Forgets the session: the next connection identifies.
    pub(crate) fn invalidate(&self) {
        self.write(|f| {
            f.session_id = None;
            f.seq = None;
        });
    }

    pub(crate) fn resumable(&self) -> Option<(String, u64)> {
        self.read(|f| Some((f.session_id.clone()?, f.seq.unwrap_or(0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_capped_and_dispatches_parsed() {
        assert!(command(OP_PRESENCE_UPDATE, json!({"status": "online"})).is_ok());
        assert!(command(OP_PRESENCE_UPDATE, json!("x".repeat(MAX_PAYLOAD))).is_err());
        let m = Message::text(r#"{"op":0,"t":"MESSAGE_CREATE","s":2,"d":{"content":"hi"}}"#);
        let (t, s, d) = dispatch(&m).unwrap();
        assert_eq!((t.as_str(), s, &d["content"]), ("MESSAGE_CREATE", Some(2), &json!("hi")));
        assert!(dispatch(&Message::text(r#"{"op":11}"#)).is_none());
    }
}
