//! The server side of one WebSocket connection, sans-IO: reads the upgrade
//! request, answers it as told, decodes the client's frames (checking that each
//! is masked, as RFC 6455 §5.1 requires of clients) and encodes server frames.
//!
//! The mock server and the in-memory simulation both drive it; neither holds
//! any protocol logic of its own.

use std::fmt;

use bytes::Bytes;
use nova_proto::frame::{Header, Opcode, apply_mask};
use nova_proto::{Message, Text, accept_key};

/// The client's upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request target (path and query).
    pub path: String,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The subprotocols the client offered.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
            .flat_map(|(_, v)| v.split(',').map(str::trim))
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// A frame the client sent, as it was on the wire (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The opcode.
    pub opcode: Opcode,
    /// FIN.
    pub fin: bool,
    /// RSV1-3.
    pub rsv: u8,
    /// Whether the frame was masked (it must be).
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Bytes,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{} {} bytes", self.opcode, if self.fin { "" } else { " (more)" }, self.payload.len())?;
        if !self.masked {
            f.write_str(" UNMASKED")?;
        }
        Ok(())
    }
}

/// What the peer made of the client's bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerEvent {
    /// The upgrade request is complete.
    Request(Request),
    /// The upgrade request is not one (the connection should be closed).
    BadRequest(String),
    /// A frame, recorded as it came.
    Frame(Frame),
    /// A complete data message.
    Message(Message),
    /// A ping (the caller decides whether to answer).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: its code and reason, if it had a code.
    Close(Option<(u16, String)>),
    /// The client broke RFC 6455 (an unmasked frame, bad UTF-8, bad sequencing).
    Violation(String),
}

/// Most bytes an upgrade request may take; more is a bad request.
const MAX_REQUEST: usize = 64 * 1024;
/// Most bytes of one message the peer reassembles; more is a violation.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Debug)]
enum Phase {
    Request(Vec<u8>),
    Open { rx: Vec<u8>, fragmented: Option<(bool, Vec<u8>)> },
    Done,
}

/// The server end of one connection.
#[derive(Debug)]
pub(crate) struct Peer {
    phase: Phase,
}

impl Peer {
    pub(crate) fn new() -> Peer {
        Peer { phase: Phase::Request(Vec::new()) }
    }

    /// Whether the upgrade happened (frames are being decoded).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    /// The upgrade was answered with 101: from now on bytes are frames. Bytes the
    /// client sent after its request (rare, but legal to buffer) are kept.
    pub(crate) fn open(&mut self) {
        if let Phase::Request(buf) = &mut self.phase {
            let rest = std::mem::take(buf);
            self.phase = Phase::Open { rx: rest, fragmented: None };
        }
    }

    /// Nothing more is read (after a refusal or a violation).
    pub(crate) fn finish(&mut self) {
        self.phase = Phase::Done;
    }

    /// Takes the client's bytes.
    pub(crate) fn receive(&mut self, bytes: &[u8], events: &mut Vec<PeerEvent>) {
        match &mut self.phase {
            Phase::Request(buf) => {
                buf.extend_from_slice(bytes);
                match parse_request(buf) {
                    Ok(None) if buf.len() > MAX_REQUEST => {
                        events.push(PeerEvent::BadRequest(format!("request head over {MAX_REQUEST} bytes")));
                        self.phase = Phase::Done;
                    }
                    Ok(None) => {}
                    Ok(Some((request, len))) => {
                        buf.drain(..len);
                        events.push(PeerEvent::Request(request));
                    }
                    Err(e) => {
                        events.push(PeerEvent::BadRequest(e));
                        self.phase = Phase::Done;
                    }
                }
            }
            Phase::Open { rx, .. } => {
                rx.extend_from_slice(bytes);
                self.decode(events);
            }
            Phase::Done => {}
        }
    }

    fn decode(&mut self, events: &mut Vec<PeerEvent>) {
        loop {
            let Phase::Open { rx, fragmented } = &mut self.phase else { return };
            let (header, header_len) = match Header::decode(rx) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => return self.violation(events, e.to_string()),
            };
            let total = header_len as u64 + header.payload_len;
            if header.payload_len > MAX_MESSAGE as u64 {
                return self.violation(events, format!("frame of {} bytes", header.payload_len));
            }
            if (rx.len() as u64) < total {
                return;
            }
            let mut payload = rx[header_len..total as usize].to_vec();
            rx.drain(..total as usize);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask, 0);
            }
            let payload = Bytes::from(payload);
            let frame = Frame {
                opcode: header.opcode,
                fin: header.fin,
                rsv: header.rsv,
                masked: header.mask.is_some(),
                payload: payload.clone(),
            };
            events.push(PeerEvent::Frame(frame));
            if header.mask.is_none() {
                return self.violation(events, "unmasked frame from the client".into());
            }
            if header.rsv != 0 {
                return self.violation(events, format!("reserved bits {:#05b}", header.rsv));
            }
            match header.opcode {
                Opcode::Ping => events.push(PeerEvent::Ping(payload)),
                Opcode::Pong => events.push(PeerEvent::Pong(payload)),
                Opcode::Close => {
                    let close = match payload.len() {
                        0 => None,
                        1 => return self.violation(events, "close frame of 1 byte".into()),
                        _ => {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()))
                        }
                    };
                    events.push(PeerEvent::Close(close));
                    self.phase = Phase::Done;
                    return;
                }
                Opcode::Text | Opcode::Binary => {
                    if fragmented.is_some() {
                        return self.violation(events, "new message before the last one ended".into());
                    }
                    let text = header.opcode == Opcode::Text;
                    if header.fin {
                        match finish_message(text, payload.to_vec()) {
                            Ok(m) => events.push(PeerEvent::Message(m)),
                            Err(e) => return self.violation(events, e),
                        }
                    } else {
                        *fragmented = Some((text, payload.to_vec()));
                    }
                }
                Opcode::Continuation => {
                    let Some((text, buf)) = fragmented else {
                        return self.violation(events, "continuation without a message".into());
                    };
                    buf.extend_from_slice(&payload);
                    if buf.len() > MAX_MESSAGE {
                        return self.violation(events, "message over 64 MiB".into());
                    }
                    if header.fin {
                        let (text, buf) = (*text, std::mem::take(buf));
                        *fragmented = None;
                        match finish_message(text, buf) {
                            Ok(m) => events.push(PeerEvent::Message(m)),
                            Err(e) => return self.violation(events, e),
                        }
                    }
                }
                Opcode::Reserved(bits) => return self.violation(events, format!("reserved opcode {bits:#x}")),
            }
        }
    }

    fn violation(&mut self, events: &mut Vec<PeerEvent>, what: String) {
        events.push(PeerEvent::Violation(what));
        self.phase = Phase::Done;
    }
}

fn finish_message(text: bool, payload: Vec<u8>) -> Result<Message, String> {
    if !text {
        return Ok(Message::binary(payload));
    }
    Text::from_utf8(Bytes::from(payload)).map(Message::Text).map_err(|_| "text message is not UTF-8".to_owned())
}

/// Parses a complete request head; `Ok(None)` while incomplete.
fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            if request.method != Some("GET") {
                return Err(format!("method {:?}, not GET", request.method.unwrap_or("")));
            }
            let headers = request
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            Ok(Some((Request { path: request.path.unwrap_or("/").to_owned(), headers }, len)))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Appends an unmasked server frame.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: Opcode, fin: bool, payload: &[u8]) {
    Header { fin, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 }.encode(out);
    out.extend_from_slice(payload);
}

/// Appends a message as one server frame.
pub(crate) fn encode_message(out: &mut Vec<u8>, message: &Message) {
    let opcode = if message.is_text() { Opcode::Text } else { Opcode::Binary };
    encode(out, opcode, true, message.as_bytes());
}

/// Appends a close frame (`None`: an empty one).
pub(crate) fn encode_close(out: &mut Vec<u8>, close: Option<(u16, &str)>) {
    let mut payload = Vec::new();
    if let Some((code, reason)) = close {
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
    }
    encode(out, Opcode::Close, true, &payload);
}

/// The 101 answer to `request`, choosing `subprotocol` and adding `headers`.
pub(crate) fn switching_protocols(
    request: &Request,
    subprotocol: Option<&str>,
    headers: &[(String, String)],
    wrong_key: bool,
) -> Vec<u8> {
    let key = request.header("sec-websocket-key").unwrap_or("");
    let accept = if wrong_key { accept_key(b"not the client's key") } else { accept_key(key.trim().as_bytes()) };
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = subprotocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A refusal: `status` with headers and a short body.
pub(crate) fn refusal(status: u16, headers: &[(String, String)], body: &str) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    head.into_bytes()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nova_proto::frame::extend_masked;

    fn masked(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mask = [1, 2, 3, 4];
        Header { fin, rsv: 0, opcode, mask: Some(mask), payload_len: payload.len() as u64 }.encode(&mut out);
        extend_masked(&mut out, payload, mask);
        out
    }

    fn open_peer() -> Peer {
        let mut p = Peer::new();
        let mut ev = Vec::new();
        p.receive(b"GET /feed?x=1 HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", &mut ev);
        assert!(matches!(&ev[0], PeerEvent::Request(r) if r.path == "/feed?x=1"));
        p.open();
        p
    }

    #[test]
    fn request_is_parsed_across_chunks_and_answered_with_the_right_key() {
        let mut p = Peer::new();
        let mut ev = Vec::new();
        let req =
            b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: a, b\r\n\r\n";
        for b in req.chunks(3) {
            p.receive(b, &mut ev);
        }
        let [PeerEvent::Request(r)] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!(r.subprotocols(), ["a", "b"]);
        let answer = String::from_utf8(switching_protocols(r, Some("b"), &[], false)).unwrap();
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(answer.contains("Sec-WebSocket-Protocol: b\r\n"));
    }

    #[test]
    fn fragmented_messages_with_pings_between_are_reassembled_and_frames_recorded() {
        let mut p = open_peer();
        let mut ev = Vec::new();
        let stream = [
            masked(Opcode::Text, false, b"hel"),
            masked(Opcode::Ping, true, b"p"),
            masked(Opcode::Continuation, true, b"lo"),
        ]
        .concat();
        for b in stream.chunks(2) {
            p.receive(b, &mut ev);
        }
        let messages: Vec<_> =
            ev.iter().filter_map(|e| if let PeerEvent::Message(m) = e { Some(m) } else { None }).collect();
        assert_eq!(messages, [&Message::text("hello")]);
        assert!(ev.contains(&PeerEvent::Ping(Bytes::from_static(b"p"))));
        assert_eq!(ev.iter().filter(|e| matches!(e, PeerEvent::Frame(_))).count(), 3);
    }

    #[test]
    fn an_unmasked_client_frame_is_a_violation_and_is_recorded() {
        let mut p = open_peer();
        let mut ev = Vec::new();
        let mut frame = Vec::new();
        encode(&mut frame, Opcode::Text, true, b"x");
        p.receive(&frame, &mut ev);
        assert!(matches!(&ev[0], PeerEvent::Frame(f) if !f.masked));
        assert!(matches!(&ev[1], PeerEvent::Violation(v) if v.contains("unmasked")));
        assert!(!p.is_open());
    }

    #[test]
    fn close_frames_are_read_with_code_and_reason() {
        let mut p = open_peer();
        let mut ev = Vec::new();
        p.receive(&masked(Opcode::Close, true, b"\x03\xe8bye"), &mut ev);
        assert!(ev.contains(&PeerEvent::Close(Some((1000, "bye".into())))));
    }

    #[test]
    fn garbage_instead_of_a_request_is_a_bad_request() {
        let mut p = Peer::new();
        let mut ev = Vec::new();
        p.receive(b"POST / HTTP/1.1\r\n\r\n", &mut ev);
        assert!(matches!(&ev[0], PeerEvent::BadRequest(_)));
        let refused = String::from_utf8(refusal(503, &[("Retry-After".into(), "2".into())], "busy")).unwrap();
        assert!(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\n"));
        assert!(refused.ends_with("\r\n\r\nbusy"));
    }
}
