//! Application messages, checked text, and close codes.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A complete WebSocket data message: what the application sends and receives.
///
/// Control frames (ping, pong, close) are not messages; they have their own
/// commands ([`Client::ping`](crate::Client::ping), [`Client::close`](crate::Client::close))
/// and events. Payloads are [`Bytes`], so cloning a message never copies it.
///
/// A received message that arrived in one frame is a slice of the client's
/// receive buffer, not a copy: holding it keeps that buffer's allocation alive.
/// To keep a message for long (minutes, in a cache), keep a copy
/// (`Bytes::copy_from_slice(message.as_bytes())`) so the buffer can be reused.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message; its payload is valid UTF-8.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message. Does not copy a `&'static str` or a `String`.
    pub fn text(text: impl Into<Text>) -> Message {
        Message::Text(text.into())
    }

    /// A binary message. Does not copy a `Vec<u8>`, `Bytes` or `&'static [u8]`.
    pub fn binary(payload: impl Into<Bytes>) -> Message {
        Message::Binary(payload.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// The payload, without copying.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(text) => text.into_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text.as_str()),
            Message::Binary(_) => None,
        }
    }

    /// The payload, if this is a binary message.
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Message::Text(_) => None,
            Message::Binary(bytes) => Some(bytes),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long payloads are abbreviated: a 16 MiB message in a log line helps nobody.
        const SHOWN: usize = 64;
        match self {
            Message::Text(text) => {
                let s = text.as_str();
                if s.len() <= SHOWN {
                    write!(f, "Text({s:?})")
                } else {
                    let cut = (0..=SHOWN).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    write!(f, "Text({:?}.. {} bytes)", &s[..cut], s.len())
                }
            }
            Message::Binary(bytes) if bytes.len() <= SHOWN => write!(f, "Binary({bytes:?})"),
            Message::Binary(bytes) => {
                write!(f, "Binary({:?}.. {} bytes)", &bytes[..SHOWN], bytes.len())
            }
        }
    }
}

impl From<Text> for Message {
    fn from(text: Text) -> Message {
        Message::Text(text)
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::Text(text.into())
    }
}

impl From<&'static str> for Message {
    fn from(text: &'static str) -> Message {
        Message::Text(text.into())
    }
}

impl From<Bytes> for Message {
    fn from(payload: Bytes) -> Message {
        Message::Binary(payload)
    }
}

impl From<Vec<u8>> for Message {
    fn from(payload: Vec<u8>) -> Message {
        Message::Binary(payload.into())
    }
}

/// UTF-8 text held in [`Bytes`]. The check is done once, when the value is made.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text(Bytes);

impl Text {
    /// Checks `bytes` and wraps them without copying.
    ///
    /// # Errors
    ///
    /// Returns the bytes back with the UTF-8 error when they are not valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, (Bytes, std::str::Utf8Error)> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Text(bytes)),
            Err(e) => Err((bytes, e)),
        }
    }

    /// Wraps bytes the caller has already checked.
    pub(crate) fn from_checked(bytes: Bytes) -> Text {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Text(bytes)
    }

    /// The text. Does not re-check or copy.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor guarantees UTF-8: `from_utf8` checks, `From<String>`
        // and `From<&str>` start from `str`, and `from_checked` is crate-private and
        // only called on bytes the incremental validator accepted (debug-asserted).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The UTF-8 bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A close status code (RFC 6455 §7.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the endpoint saw a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame. Reported locally, never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was not consistent with its type (invalid UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway got an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed. Reported locally, never sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a close frame on the wire: 1000–1003,
    /// 1007–1014 and the application range 3000–4999. Receiving any other code is
    /// a protocol error (1002).
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1000 => "normal",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status",
            1006 => "abnormal",
            1007 => "invalid payload",
            1008 => "policy violation",
            1009 => "too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "tls handshake",
            _ => return write!(f, "{}", self.0),
        };
        write!(f, "{} ({name})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> CloseCode {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

/// The payload of a close frame: a status code and a UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_close_codes_follow_rfc_and_iana() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn text_rejects_invalid_utf8_and_gives_bytes_back() {
        let bad = Bytes::from_static(b"ok\xff");
        let (back, err) = Text::from_utf8(bad.clone()).unwrap_err();
        assert_eq!(back, bad);
        assert_eq!(err.valid_up_to(), 2);
        assert_eq!(Text::from_utf8(Bytes::from_static("é".as_bytes())).unwrap(), "é");
    }

    #[test]
    fn message_debug_abbreviates_long_payloads() {
        let long = Message::text("é".repeat(100));
        let shown = format!("{long:?}");
        assert!(shown.ends_with(".. 200 bytes)"), "{shown}");
        assert!(shown.len() < 120);
        assert_eq!(format!("{:?}", Message::text("hi")), "Text(\"hi\")");
    }
}
