//! HTTP CONNECT (RFC 9110 §9.3.6): one request, one reply head.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::handshake::{Progress, ProxyHandshake};
use super::{ProxyAuth, ProxyError};

/// The most reply headers parsed; a CONNECT reply has a handful.
const MAX_HEADERS: usize = 32;

#[derive(Debug)]
pub(super) struct HttpConnect {
    /// The request, until `poll_transmit` takes it.
    request: Vec<u8>,
    /// The reply head so far; at most `MAX_HTTP_REPLY` bytes.
    reply: Vec<u8>,
    /// Credentials were sent: a 407 means they were refused, not missing.
    sent_auth: bool,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Done,
    Failed,
}

impl HttpConnect {
    pub(super) fn new(host: &str, port: u16, auth: Option<&ProxyAuth>) -> HttpConnect {
        // An IPv6 literal is bracketed in an authority (RFC 9110 §7.2, RFC 3986).
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        // `write!` into a String cannot fail.
        let mut request = String::with_capacity(96 + authority.len() * 2);
        let _ = write!(request, "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(auth) = auth {
            let credentials = format!("{}:{}", auth.username, auth.password.expose());
            let _ = write!(request, "Proxy-Authorization: Basic {}\r\n", BASE64.encode(credentials));
        }
        request.push_str("\r\n");
        HttpConnect {
            request: request.into_bytes(),
            reply: Vec::new(),
            sent_auth: auth.is_some(),
            state: State::Waiting,
        }
    }

    pub(super) fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.request.len();
        out.append(&mut self.request);
        n
    }

    /// The head ends with an empty line: LF LF at the shortest (bare LFs are
    /// tolerated, as httparse does). Unless the last byte read is CR or LF,
    /// that needs at least 2 more bytes; after one, 1 more may end it.
    pub(super) fn max_read(&self) -> usize {
        match (&self.state, self.reply.last()) {
            (State::Done | State::Failed, _) => 0,
            (State::Waiting, Some(b'\r' | b'\n')) => 1,
            (State::Waiting, _) => 2,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub(super) fn handle_input(&mut self, bytes: &[u8]) -> Progress {
        match self.state {
            State::Waiting => {}
            State::Done => return Progress::Done { used: 0 },
            State::Failed => return Progress::Failed(ProxyError::BadReply("the handshake already failed".into())),
        }
        let max = ProxyHandshake::MAX_HTTP_REPLY;
        let before = self.reply.len();
        // Never hold more than the limit (plus the byte that proves it crossed).
        let take = bytes.len().min(max + 1 - before);
        self.reply.extend_from_slice(&bytes[..take]);
        // An end can straddle the previous input: look back 2 bytes.
        let Some(end) = head_end(&self.reply, before.saturating_sub(2)) else {
            if self.reply.len() > max {
                return self.fail(ProxyError::BadReply(format!("reply head exceeds {max} bytes")));
            }
            return Progress::NeedMore;
        };
        let used = end - before;
        self.reply.truncate(end);
        match self.check() {
            Ok(()) => {
                self.state = State::Done;
                self.reply = Vec::new();
                Progress::Done { used }
            }
            Err(e) => self.fail(e),
        }
    }

    fn check(&self) -> Result<(), ProxyError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.reply) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ProxyError::BadReply("incomplete reply head".into())),
            Err(e) => return Err(ProxyError::BadReply(format!("malformed reply: {e}"))),
        }
        let status = response.code.unwrap_or(0);
        match status {
            // Any 2xx opens the tunnel (RFC 9110 §15.3); it has no body.
            200..=299 => Ok(()),
            407 if self.sent_auth => Err(ProxyError::AuthFailed),
            407 => Err(ProxyError::AuthRequired),
            _ => Err(ProxyError::Refused { status, reason: response.reason.unwrap_or("").to_owned() }),
        }
    }

    fn fail(&mut self, error: ProxyError) -> Progress {
        self.state = State::Failed;
        self.reply = Vec::new();
        Progress::Failed(error)
    }
}

/// Where the head ends (just past its empty line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from.max(1)..buf.len()).find_map(|i| {
        let blank_line =
            buf[i] == b'\n' && (buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'));
        blank_line.then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Proxy, ProxyHandshake};
    use super::*;

    fn handshake(proxy: &str, host: &str, port: u16) -> (ProxyHandshake, Vec<u8>) {
        let mut hs = ProxyHandshake::new(&Proxy::http(proxy).unwrap(), host, port).unwrap();
        let mut out = Vec::new();
        let _ = hs.poll_transmit(&mut out);
        (hs, out)
    }

    /// Feeds `reply` as a driver does, at most `max_read` (and `chunk`) at a time.
    fn feed(hs: &mut ProxyHandshake, reply: &[u8], chunk: usize) -> (Progress, usize) {
        let mut fed = 0;
        loop {
            let n = hs.max_read().min(chunk).min(reply.len() - fed);
            if n == 0 {
                return (Progress::NeedMore, fed);
            }
            match hs.handle_input(&reply[fed..fed + n]) {
                Progress::NeedMore => fed += n,
                Progress::Done { used } => return (Progress::Done { used }, fed + used),
                failed => return (failed, fed + n),
            }
        }
    }

    #[test]
    fn request_is_byte_exact_with_and_without_credentials() {
        let (_, out) = handshake("h:1", "example.com", 443);
        assert_eq!(out, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        let (_, out) = handshake("h:1", "::1", 8443);
        assert_eq!(out, b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
        // "us@er" and "p:ss wörd" percent-encoded in the URL, decoded for Basic.
        let (_, out) = handshake("http://us%40er:p%3Ass%20w%C3%B6rd@h:1", "e", 80);
        let expected = format!("Proxy-Authorization: Basic {}\r\n\r\n", BASE64.encode("us@er:p:ss wörd"));
        assert!(String::from_utf8(out).unwrap().ends_with(&expected));
    }

    #[test]
    fn success_reads_exactly_the_head_one_byte_or_more_at_a_time() {
        let reply = b"HTTP/1.0 200 Connection established\r\nProxy-Agent: x\r\n\r\n\x16\x03\x01";
        let head = reply.len() - 3;
        for chunk in [1, 2, 3, 64] {
            let (mut hs, _) = handshake("h:1", "e", 443);
            let (progress, read) = feed(&mut hs, reply, chunk);
            assert!(matches!(progress, Progress::Done { .. }), "{progress:?}");
            assert_eq!(read, head, "chunk {chunk}: no byte of the tunnel is read");
            assert!(hs.is_done() && hs.max_read() == 0);
        }
        // A driver that reads more anyway learns where the tunnel starts.
        let (mut hs, _) = handshake("h:1", "e", 443);
        assert_eq!(hs.handle_input(reply), Progress::Done { used: head });
        // Bare LFs are tolerated.
        let (mut hs, _) = handshake("h:1", "e", 443);
        assert_eq!(feed(&mut hs, b"HTTP/1.1 204 OK\n\n", 1).0, Progress::Done { used: 1 });
    }

    #[test]
    fn failures_are_typed() {
        let cases: [(&str, &[u8], ProxyError); 5] = [
            ("h:1", b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", ProxyError::AuthRequired),
            ("http://u:p@h:1", b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", ProxyError::AuthFailed),
            (
                "h:1",
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                ProxyError::Refused { status: 403, reason: "Forbidden".into() },
            ),
            (
                "h:1",
                b"HTTP/1.1 502 Bad Gateway\r\n\r\n",
                ProxyError::Refused { status: 502, reason: "Bad Gateway".into() },
            ),
            ("h:1", b"SSH-2.0-OpenSSH\r\n\r\n", ProxyError::BadReply("malformed reply: invalid HTTP version".into())),
        ];
        for (proxy, reply, expected) in cases {
            for chunk in [1, 1000] {
                let (mut hs, _) = handshake(proxy, "e", 443);
                assert_eq!(feed(&mut hs, reply, chunk).0, Progress::Failed(expected.clone()), "{proxy} {chunk}");
                assert_eq!(hs.max_read(), 0);
            }
        }
    }

    #[test]
    fn oversized_heads_are_refused_without_growing() {
        let (mut hs, _) = handshake("h:1", "e", 443);
        let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
        reply.resize(3 * ProxyHandshake::MAX_HTTP_REPLY, b'a');
        let Progress::Failed(ProxyError::BadReply(why)) = hs.handle_input(&reply) else { panic!() };
        assert!(why.contains("exceeds 8192"), "{why}");
        // Fed in small reads the limit holds too.
        let (mut hs, _) = handshake("h:1", "e", 443);
        assert!(matches!(feed(&mut hs, &reply, 7).0, Progress::Failed(ProxyError::BadReply(_))));
        assert_eq!(hs.handle_eof(), ProxyError::Closed);
    }
}
