//! What goes to stdout (messages) and stderr (status lines), and how times
//! and endpoints are shown.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use nova_proto::{Config, Disconnect, Error, HandshakeError, Message, Timeout};

use crate::BinaryMode;
use crate::pretty::pretty_json;

/// Writes received messages to stdout: one per line, flushed each time (a
/// pipe sees every message as it arrives).
#[derive(Debug)]
pub(crate) struct Printer {
    json: bool,
    binary: BinaryMode,
    /// Reused between messages.
    buf: Vec<u8>,
}

impl Printer {
    /// A printer that pretty-prints JSON text when `json` is set, and shows
    /// binary messages as `binary` says.
    pub(crate) fn new(json: bool, binary: BinaryMode) -> Printer {
        Printer { json, binary, buf: Vec::new() }
    }

    /// Writes `message` and flushes.
    ///
    /// # Errors
    ///
    /// The write's error; [`io::ErrorKind::BrokenPipe`] when the reader of
    /// stdout has gone.
    pub(crate) fn print(&mut self, message: &Message) -> io::Result<()> {
        self.buf.clear();
        self.format(message);
        let mut out = io::stdout().lock();
        out.write_all(&self.buf)?;
        out.flush()
    }

    /// The bytes [`print`](Self::print) writes for `message`.
    fn format(&mut self, message: &Message) {
        match message {
            Message::Text(text) => {
                let text = text.as_str();
                match self.json.then(|| pretty_json(text)).flatten() {
                    Some(pretty) => self.buf.extend_from_slice(pretty.as_bytes()),
                    None => self.buf.extend_from_slice(text.as_bytes()),
                }
                self.buf.push(b'\n');
            }
            Message::Binary(bytes) => match self.binary {
                BinaryMode::Hex => {
                    const DIGITS: &[u8; 16] = b"0123456789abcdef";
                    self.buf.reserve(bytes.len() * 2 + 1);
                    for b in bytes.iter() {
                        self.buf.push(DIGITS[usize::from(b >> 4)]);
                        self.buf.push(DIGITS[usize::from(b & 0xf)]);
                    }
                    self.buf.push(b'\n');
                }
                BinaryMode::Base64 => {
                    base64_into(bytes, &mut self.buf);
                    self.buf.push(b'\n');
                }
                BinaryMode::Raw => self.buf.extend_from_slice(bytes),
            },
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), appended to `out`.
fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| ALPHABET[((n >> shift) & 0x3f) as usize];
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { b'=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { b'=' });
    }
}

/// Status lines on stderr, `nova: ...`, unless quiet. Errors in writing them
/// are ignored: stderr is the last resort.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    quiet: bool,
}

impl Status {
    /// Status lines on stderr, or none when `quiet`.
    pub(crate) fn new(quiet: bool) -> Status {
        Status { quiet }
    }

    /// A status line (suppressed by `--quiet`).
    pub(crate) fn line(&self, line: fmt::Arguments<'_>) {
        if !self.quiet {
            Status::write(line);
        }
    }

    /// A warning: shown even with `--quiet` (it says data was lost).
    pub(crate) fn warn(&self, line: fmt::Arguments<'_>) {
        Status::write(format_args!("warning: {line}"));
    }

    /// Writes a status line (see [`error_line`]).
    fn write(line: fmt::Arguments<'_>) {
        error_line(line);
    }
}

/// Writes `nova: {line}` on stderr. Unlike `eprintln!`, which panics when
/// stderr fails (a closed pipe, a full disk), errors are ignored: stderr is
/// the last resort.
pub(crate) fn error_line(line: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "nova: {line}");
}

/// A disconnect's cause for a status line, with the details that help:
/// the status and `Retry-After` of a refused upgrade, the keepalive timeout
/// of a dead connection.
pub(crate) fn describe(cause: &Disconnect, keepalive_timeout: Option<Duration>) -> String {
    match cause {
        Disconnect::Failed(Error::Timeout(Timeout::Pong)) => {
            let within = keepalive_timeout.map_or_else(String::new, |t| format!(" within {}", human(t)));
            format!("connection dead: no traffic{within} after a ping (pong timed out)")
        }
        Disconnect::Failed(Error::Handshake(HandshakeError::Rejected(rejection))) => {
            let mut text = format!("upgrade refused with {} {}", rejection.status, rejection.reason);
            if let Some(retry_after) = rejection.retry_after {
                text.push_str(&format!(" (Retry-After: {})", human(retry_after)));
            }
            text
        }
        cause => cause.to_string(),
    }
}

/// A duration for humans: `87ms`, `1.2s`, `2m05s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let secs = d.as_secs();
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Where a configuration connects to, without credentials or query string
/// (both may hold secrets): `wss://host:port/path`.
pub(crate) fn shown_endpoint(config: &Config) -> String {
    let endpoint = config.endpoint();
    let scheme = if endpoint.tls { "wss" } else { "ws" };
    let host: &str = &endpoint.host;
    let path = endpoint.resource.split('?').next().unwrap_or("/");
    if host.contains(':') {
        format!("{scheme}://[{host}]:{}{path}", endpoint.port)
    } else {
        format!("{scheme}://{host}:{}{path}", endpoint.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(printer: &mut Printer, message: Message) -> Vec<u8> {
        printer.format(&message);
        std::mem::take(&mut printer.buf)
    }

    #[test]
    fn text_is_printed_unchanged_and_json_only_when_asked() {
        let mut plain = Printer::new(false, BinaryMode::Hex);
        assert_eq!(formatted(&mut plain, Message::text(r#"{"a":1}"#)), b"{\"a\":1}\n");
        let mut json = Printer::new(true, BinaryMode::Hex);
        assert_eq!(formatted(&mut json, Message::text(r#"{"a":1}"#)), b"{\n  \"a\": 1\n}\n");
        assert_eq!(formatted(&mut json, Message::text("not json")), b"not json\n");
    }

    #[test]
    fn binary_modes() {
        let payload = vec![0xde, 0xad, 0xbe, 0xef, 0x00];
        let mut hex = Printer::new(false, BinaryMode::Hex);
        assert_eq!(formatted(&mut hex, Message::binary(payload.clone())), b"deadbeef00\n");
        let mut raw = Printer::new(false, BinaryMode::Raw);
        assert_eq!(formatted(&mut raw, Message::binary(payload.clone())), payload);
        let mut b64 = Printer::new(false, BinaryMode::Base64);
        assert_eq!(formatted(&mut b64, Message::binary(payload)), b"3q2+7wA=\n");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64_into(input.as_bytes(), &mut out);
            assert_eq!(out, expected.as_bytes(), "{input}");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(87)), "87ms");
        assert_eq!(human(Duration::from_millis(1234)), "1.2s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn endpoints_hide_credentials_and_queries() {
        let config = Config::new("wss://user:secret@example.com/ws?token=abc").unwrap();
        assert_eq!(shown_endpoint(&config), "wss://example.com:443/ws");
        let config = Config::new("ws://[::1]:9001/").unwrap();
        assert_eq!(shown_endpoint(&config), "ws://[::1]:9001/");
    }
}
