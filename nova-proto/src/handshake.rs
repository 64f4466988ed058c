//! The opening handshake (RFC 6455 §4.1): the upgrade request and the checks on
//! the server's response.
//!
//! The request head is assembled once, when the [`Config`](crate::Config) is
//! built; each connection only adds a fresh `Sec-WebSocket-Key`. The response is
//! read with `httparse`, which reports exactly where the head ends, so frame
//! bytes that arrive in the same read are handed on, not lost.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use crate::deflate::{self, DeflateConfig, DeflateParams};
use crate::error::{HandshakeError, Rejection};

/// The GUID of RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most response headers read. A real 101 has a handful; more than this is
/// treated as malformed rather than given unbounded stack or heap.
const MAX_RESPONSE_HEADERS: usize = 64;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key ++ GUID)).
///
/// Public so test servers (and the testkit) can answer a client's request.
///
/// ```
/// // RFC 6455 §1.3's example.
/// assert_eq!(nova_proto::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key` from 16 random bytes, and the accept value the
/// server must answer with.
pub(crate) fn new_key(nonce: [u8; 16]) -> (String, String) {
    let key = BASE64.encode(nonce);
    let accept = accept_key(key.as_bytes());
    (key, accept)
}

/// Appends the upgrade request: the prepared head, the key line, the blank line.
pub(crate) fn write_request(out: &mut Vec<u8>, head: &str, key: &str) {
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"Sec-WebSocket-Key: ");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Response headers, in the order the server sent them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values as text (lossy for the rare non-UTF-8 byte), not byte lists.
        f.debug_map().entries(self.entries.iter().map(|(n, v)| (n, String::from_utf8_lossy(v)))).finish()
    }
}

impl Headers {
    /// The first value of the header `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn from_httparse(headers: &[httparse::Header<'_>]) -> Headers {
        Headers { entries: headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect() }
    }
}

/// What the client offered, to check the answer against.
pub(crate) struct Offer<'a> {
    pub(crate) accept: &'a str,
    pub(crate) subprotocols: &'a [String],
    pub(crate) require_subprotocol: bool,
    /// The permessage-deflate offer, when one was made.
    pub(crate) deflate: Option<&'a DeflateConfig>,
}

/// A successful upgrade.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) subprotocol: Option<String>,
    pub(crate) headers: Headers,
    /// The agreed permessage-deflate parameters, if the server accepted the offer.
    pub(crate) deflate: Option<DeflateParams>,
}

/// Collects the response head across reads, bounded by `max` bytes in all:
/// interim responses skipped on the way count toward the bound.
#[derive(Debug, Default)]
pub(crate) struct ResponseReader {
    buf: Vec<u8>,
    /// Bytes of interim (1xx) responses already skipped.
    skipped: usize,
}

/// A complete response head and where the bytes after it start.
#[derive(Debug)]
pub(crate) struct Complete<'a> {
    pub(crate) result: Result<Accepted, HandshakeError>,
    /// Bytes after the head: the first frames. Must not be lost.
    pub(crate) rest: &'a [u8],
}

impl ResponseReader {
    /// Takes the next chunk. Returns `None` while the head is incomplete.
    ///
    /// Parsing only runs when a chunk brings a `\n`, so a head fed one byte at a
    /// time costs one parse per line, not per byte. When the first chunk holds
    /// the whole head nothing is copied. Holds at most `max` bytes plus one chunk.
    pub(crate) fn feed<'a>(&'a mut self, chunk: &'a [u8], max: usize, offer: &Offer<'_>) -> Option<Complete<'a>> {
        if self.buf.is_empty() && chunk.contains(&b'\n') {
            match parse(chunk, offer) {
                Parsed::Done { head_len, result } => {
                    return Some(finish(chunk, self.skipped + head_len, head_len, result, max));
                }
                // An interim response (100 Continue, 103 Early Hints) before the
                // 101: skipped, as HTTP requires (RFC 9110 §15.2).
                Parsed::Interim { head_len } => {
                    self.skipped += head_len;
                    self.buf.extend_from_slice(&chunk[head_len..]);
                    return self.reparse(max, offer);
                }
                Parsed::Partial => {}
            }
        }
        let newline = chunk.contains(&b'\n');
        self.buf.extend_from_slice(chunk);
        if newline {
            return self.reparse(max, offer);
        }
        if self.skipped + self.buf.len() > max {
            return Some(too_large(max));
        }
        None
    }

    /// Parses what is buffered, skipping interim responses.
    fn reparse(&mut self, max: usize, offer: &Offer<'_>) -> Option<Complete<'_>> {
        loop {
            if self.skipped > max {
                return Some(too_large(max));
            }
            match parse(&self.buf, offer) {
                Parsed::Interim { head_len } => {
                    self.skipped += head_len;
                    self.buf.drain(..head_len);
                }
                Parsed::Done { head_len, result } => {
                    return Some(finish(&self.buf, self.skipped + head_len, head_len, result, max));
                }
                Parsed::Partial if self.skipped + self.buf.len() > max => return Some(too_large(max)),
                Parsed::Partial => return None,
            }
        }
    }
}

/// `total` counts the interim responses skipped before this head.
fn finish(
    bytes: &[u8],
    total: usize,
    head_len: usize,
    result: Result<Accepted, HandshakeError>,
    max: usize,
) -> Complete<'_> {
    if total > max {
        return too_large(max);
    }
    match result {
        Ok(accepted) => Complete { result: Ok(accepted), rest: &bytes[head_len..] },
        Err(e) => Complete { result: Err(e), rest: &[] },
    }
}

fn too_large<'a>(max: usize) -> Complete<'a> {
    Complete { result: Err(HandshakeError::ResponseTooLarge { max }), rest: &[] }
}

enum Parsed {
    Partial,
    /// A complete 1xx response other than 101, to skip.
    Interim {
        head_len: usize,
    },
    Done {
        head_len: usize,
        result: Result<Accepted, HandshakeError>,
    },
}

fn parse(bytes: &[u8], offer: &Offer<'_>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    // RFC 9112 §5.2: a user agent must accept obsolete line folding in responses.
    let parsed = httparse::ParserConfig::default()
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response(&mut response, bytes);
    match parsed {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(head_len)) if matches!(response.code, Some(100 | 102..=199)) => {
            Parsed::Interim { head_len }
        }
        Ok(httparse::Status::Complete(head_len)) => Parsed::Done { head_len, result: check(&response, offer) },
        Err(e) => Parsed::Done { head_len: 0, result: Err(HandshakeError::Malformed(e.to_string())) },
    }
}

/// The checks of RFC 6455 §4.1, client side, steps 1–6 of the response.
fn check(response: &httparse::Response<'_, '_>, offer: &Offer<'_>) -> Result<Accepted, HandshakeError> {
    let status = response.code.unwrap_or(0);
    if status != 101 {
        let headers = Headers::from_httparse(response.headers);
        let retry_after = retry_after(&headers);
        return Err(HandshakeError::Rejected(Box::new(Rejection {
            status,
            reason: response.reason.unwrap_or("").to_owned(),
            retry_after,
            headers,
        })));
    }
    match response.version {
        Some(1) => {}
        v => return Err(HandshakeError::Version(v.unwrap_or(0))),
    }
    let values = |name: &'static str| {
        response.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    if !values("upgrade").any(|v| has_token(v, b"websocket")) {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !values("connection").any(|v| has_token(v, b"upgrade")) {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let accept =
        single(values("sec-websocket-accept"), "Sec-WebSocket-Accept")?.ok_or(HandshakeError::MissingAccept)?;
    if accept.trim_ascii() != offer.accept.as_bytes() {
        return Err(HandshakeError::WrongAccept);
    }
    // An empty value (some proxies send one) means no subprotocol.
    let chosen =
        single(values("sec-websocket-protocol"), "Sec-WebSocket-Protocol")?.filter(|v| !v.trim_ascii().is_empty());
    let subprotocol = match chosen {
        Some(v) => {
            let chosen = String::from_utf8_lossy(v.trim_ascii()).into_owned();
            if !offer.subprotocols.contains(&chosen) {
                return Err(HandshakeError::UnofferedSubprotocol(chosen));
            }
            Some(chosen)
        }
        None if offer.require_subprotocol && !offer.subprotocols.is_empty() => {
            return Err(HandshakeError::MissingSubprotocol);
        }
        None => None,
    };
    // Only permessage-deflate can be offered, and only when configured.
    let deflate = deflate::negotiate(values("sec-websocket-extensions"), offer.deflate)?;
    Ok(Accepted { subprotocol, headers: Headers::from_httparse(response.headers), deflate })
}

/// `Retry-After` as a delay: seconds, or an HTTP date measured against the
/// response's own `Date` header (both are the server's clock, so no local clock
/// is needed; without `Date` a date cannot be used and is ignored).
fn retry_after(headers: &Headers) -> Option<Duration> {
    let value = headers.get_str("retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = httpdate::parse_http_date(headers.get_str("date")?.trim()).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// At most one value; a second is an error.
fn single<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    name: &'static str,
) -> Result<Option<&'a [u8]>, HandshakeError> {
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::DuplicateHeader(name));
    }
    Ok(first)
}

/// Whether a comma-separated header value contains `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn offer<'a>(subprotocols: &'a [String]) -> Offer<'a> {
        Offer { accept: ACCEPT, subprotocols, require_subprotocol: false, deflate: None }
    }

    fn response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
    }

    fn feed_all(bytes: &[u8], chunk: usize, offer: &Offer<'_>) -> (Result<Accepted, HandshakeError>, Vec<u8>) {
        let mut reader = ResponseReader::default();
        for piece in bytes.chunks(chunk) {
            if let Some(done) = reader.feed(piece, 16 * 1024, offer) {
                let rest = done.rest.to_vec();
                return (done.result, rest);
            }
        }
        panic!("head never completed");
    }

    #[test]
    fn rfc_example_key_gives_rfc_accept() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), ACCEPT);
    }

    #[test]
    fn response_fed_one_byte_at_a_time_keeps_trailing_frame_bytes() {
        let mut bytes = response("").into_bytes();
        bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        for chunk in [1, 2, 3, 7, bytes.len()] {
            let (result, rest) = feed_all(&bytes, chunk, &offer(&[]));
            assert!(result.is_ok(), "chunk {chunk}: {result:?}");
            // The reader stops at the chunk that completes the head; the tail of
            // that chunk is all that follows, and nothing of it is lost.
            let head_len = bytes.len() - 4;
            let completed_at = head_len.div_ceil(chunk) * chunk;
            assert_eq!(rest, bytes[head_len..completed_at.min(bytes.len())], "chunk {chunk}");
        }
    }

    #[test]
    fn token_matching_is_case_insensitive_and_list_aware() {
        let ok = "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n\
                  sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\n\r\n";
        assert!(feed_all(ok.as_bytes(), 5, &offer(&[])).0.is_ok());
    }

    #[test]
    fn each_missing_or_wrong_header_has_its_own_error() {
        let cases: Vec<(String, HandshakeError)> = vec![
            (
                "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n".into(),
                HandshakeError::MissingUpgrade,
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n".into(),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(),
                HandshakeError::MissingAccept,
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n"
                    .into(),
                HandshakeError::WrongAccept,
            ),
            ("HTTP/1.0 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(), HandshakeError::Version(0)),
            (
                response(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
                HandshakeError::DuplicateHeader("Sec-WebSocket-Accept"),
            ),
            (response("Sec-WebSocket-Protocol: chat\r\n"), HandshakeError::UnofferedSubprotocol("chat".into())),
            (
                response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                HandshakeError::UnofferedExtension("permessage-deflate".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(feed_all(text.as_bytes(), 4, &offer(&[])).0.unwrap_err(), expected, "{text}");
        }
    }

    #[test]
    fn subprotocol_must_be_one_offered_and_can_be_required() {
        let offered = vec!["v2.json".to_owned(), "v1.json".to_owned()];
        let ok = feed_all(response("Sec-WebSocket-Protocol: v1.json\r\n").as_bytes(), 9, &offer(&offered)).0.unwrap();
        assert_eq!(ok.subprotocol.as_deref(), Some("v1.json"));
        let none = feed_all(response("").as_bytes(), 9, &offer(&offered)).0.unwrap();
        assert_eq!(none.subprotocol, None);
        let strict = Offer { require_subprotocol: true, ..offer(&offered) };
        assert_eq!(feed_all(response("").as_bytes(), 9, &strict).0.unwrap_err(), HandshakeError::MissingSubprotocol);
        let both = response("Sec-WebSocket-Protocol: v1.json, v2.json\r\n");
        assert!(matches!(
            feed_all(both.as_bytes(), 9, &offer(&offered)).0,
            Err(HandshakeError::UnofferedSubprotocol(_))
        ));
    }

    #[test]
    fn deflate_answer_is_checked_against_the_offer() {
        let ours = DeflateConfig { server_max_window_bits: Some(12), ..DeflateConfig::default() };
        let with = |deflate| Offer { deflate, ..offer(&[]) };
        let ok = response("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n");
        let accepted = feed_all(ok.as_bytes(), 7, &with(Some(&ours))).0.unwrap();
        let params = accepted.deflate.unwrap();
        assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (10, 15));
        // The server may decline: no header, no compression.
        assert_eq!(feed_all(response("").as_bytes(), 7, &with(Some(&ours))).0.unwrap().deflate, None);
        // Not offered: refused as before.
        assert_eq!(
            feed_all(ok.as_bytes(), 7, &with(None)).0.unwrap_err(),
            HandshakeError::UnofferedExtension("permessage-deflate".into())
        );
        let big = response("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=13\r\n");
        let e = feed_all(big.as_bytes(), 7, &with(Some(&ours))).0.unwrap_err();
        assert_eq!(
            e,
            HandshakeError::Extension(crate::NegotiationError::ServerWindowTooLarge { offered: 12, got: 13 })
        );
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string).as_deref(),
            Some("server_max_window_bits=13 exceeds the 12 offered")
        );
        // Split over two header lines, accepted twice: a duplicate.
        let twice = response(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
        );
        assert_eq!(
            feed_all(twice.as_bytes(), 7, &with(Some(&ours))).0.unwrap_err(),
            HandshakeError::Extension(crate::NegotiationError::DuplicateExtension)
        );
    }

    #[test]
    fn rejection_keeps_status_reason_headers_and_retry_after() {
        let text = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy";
        let err = feed_all(text.as_bytes(), 3, &offer(&[])).0.unwrap_err();
        let HandshakeError::Rejected(r) = err else { panic!("{err:?}") };
        assert_eq!((r.status, r.reason.as_str()), (503, "Service Unavailable"));
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(r.headers.get_str("content-length"), Some("4"));
    }

    #[test]
    fn interim_responses_obs_fold_and_empty_subprotocol_are_tolerated() {
        let interim =
            format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n{}", response(""));
        let mut bytes = interim.into_bytes();
        bytes.extend_from_slice(&[0x81, 0x00]);
        for chunk in [1, 7, bytes.len()] {
            let (result, rest) = feed_all(&bytes, chunk, &offer(&[]));
            assert!(result.is_ok(), "chunk {chunk}: {result:?}");
            if chunk == bytes.len() {
                assert_eq!(rest, [0x81, 0x00]);
            }
        }
        let folded = response("X-Folded: one\r\n two\r\n");
        assert!(feed_all(folded.as_bytes(), 5, &offer(&[])).0.is_ok());
        let offered = vec!["chat".to_owned()];
        let empty = feed_all(response("Sec-WebSocket-Protocol: \r\n").as_bytes(), 5, &offer(&offered)).0.unwrap();
        assert_eq!(empty.subprotocol, None);
    }

    #[test]
    fn interim_responses_count_toward_the_size_bound() {
        // Endless 100 Continue heads, each small: the total is bounded.
        let mut reader = ResponseReader::default();
        let mut outcome = None;
        for _ in 0..200 {
            if let Some(done) = reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n", 1024, &offer(&[])) {
                outcome = Some(done.result.unwrap_err());
                break;
            }
        }
        assert_eq!(outcome, Some(HandshakeError::ResponseTooLarge { max: 1024 }));
    }

    #[test]
    fn retry_after_as_a_date_is_measured_against_the_servers_date() {
        let text = "HTTP/1.1 503 Busy\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                    Retry-After: Sun, 06 Nov 1994 08:50:07 GMT\r\n\r\n";
        let HandshakeError::Rejected(r) = feed_all(text.as_bytes(), 9, &offer(&[])).0.unwrap_err() else { panic!() };
        assert_eq!(r.retry_after, Some(Duration::from_secs(30)));
        let no_date = "HTTP/1.1 503 Busy\r\nRetry-After: Sun, 06 Nov 1994 08:50:07 GMT\r\n\r\n";
        let HandshakeError::Rejected(r) = feed_all(no_date.as_bytes(), 9, &offer(&[])).0.unwrap_err() else { panic!() };
        assert_eq!(r.retry_after, None);
    }

    #[test]
    fn oversized_or_garbage_heads_fail_instead_of_growing() {
        let mut reader = ResponseReader::default();
        let mut outcome = None;
        for _ in 0..100 {
            if let Some(done) = reader.feed(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 1024, &offer(&[])) {
                outcome = Some(done.result.unwrap_err());
                break;
            }
        }
        // The status line itself is garbage here, which httparse reports first.
        assert!(matches!(outcome, Some(HandshakeError::Malformed(_))), "{outcome:?}");

        let mut reader = ResponseReader::default();
        let mut big = b"HTTP/1.1 101 OK\r\n".to_vec();
        let mut result = None;
        for _ in 0..100 {
            if let Some(done) = reader.feed(&big, 1024, &offer(&[])) {
                result = Some(done.result.unwrap_err());
                break;
            }
            big = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec();
        }
        assert_eq!(result, Some(HandshakeError::ResponseTooLarge { max: 1024 }));

        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let text = format!("HTTP/1.1 101 OK\r\n{many}\r\n");
        assert!(matches!(feed_all(text.as_bytes(), 64, &offer(&[])).0, Err(HandshakeError::Malformed(_))));
    }

    #[test]
    fn request_ends_with_key_line_and_blank_line() {
        let mut out = Vec::new();
        write_request(&mut out, "GET / HTTP/1.1\r\nHost: h\r\n", "k==");
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k==\r\n\r\n");
        let (key, accept) = new_key(*b"the sample nonce");
        assert_eq!((key.as_str(), accept.as_str()), ("dGhlIHNhbXBsZSBub25jZQ==", ACCEPT));
    }
}
