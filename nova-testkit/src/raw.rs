//! A raw server side for tests that must control every byte: what the
//! [`MockServer`](crate::MockServer) cannot script, such as a reset right
//! after a close frame, a peer that never reads, a slow reader, or a
//! malformed frame at an exact offset.
//!
//! The byte builders ([`upgrade_response`], [`server_frame`],
//! [`close_frame`]) work with any runtime's IO; [`accept_upgrade`] and
//! [`read_client_frame`] use blocking `std::io` (a test's own thread).
//!
//! ```no_run
//! use std::io::Write;
//! use std::net::TcpListener;
//! use nova_testkit::raw;
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let (mut tcp, _) = listener.accept()?;
//! raw::accept_upgrade(&mut tcp)?;
//! tcp.write_all(&raw::server_frame(0x1, b"hello"))?;
//! tcp.write_all(&raw::close_frame(1000, "bye"))?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::time::Duration;

use nova_proto::accept_key;

/// The longest upgrade request [`accept_upgrade`] reads before refusing it.
pub const MAX_REQUEST_HEAD: usize = 16 << 10;

/// The largest client frame payload [`read_client_frame`] accepts: a test
/// helper must not allocate whatever a length field claims.
pub const MAX_FRAME_PAYLOAD: u64 = 64 << 20;

/// A frame the client sent, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The opcode (the low four bits of the first byte).
    pub opcode: u8,
    /// FIN.
    pub fin: bool,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

/// The `101 Switching Protocols` answer to a complete upgrade request head
/// (up to and including the blank line), or `None` when it carries no
/// `Sec-WebSocket-Key`.
pub fn upgrade_response(request_head: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(request_head).ok()?;
    let key = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim())
    })?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    Some(answer.into_bytes())
}

/// Reads the upgrade request byte by byte (nothing after it is consumed)
/// and answers 101. Returns the request head.
///
/// # Errors
///
/// The stream's errors; `InvalidData` for a head over [`MAX_REQUEST_HEAD`]
/// or without a `Sec-WebSocket-Key`.
pub fn accept_upgrade<S: Read + Write>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "upgrade request head too long"));
        }
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let answer = upgrade_response(&head)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key in the upgrade request"))?;
    stream.write_all(&answer)?;
    Ok(head)
}

/// An unmasked server frame with FIN set. Any opcode goes, reserved ones
/// included: that is what a raw peer is for.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | (opcode & 0x0f));
    let n = payload.len();
    if n < 126 {
        frame.push(n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        frame.push(126);
        frame.extend_from_slice(&n.to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(n as u64).to_be_bytes());
    }
    frame.extend_from_slice(payload);
    frame
}

/// A server close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    server_frame(0x8, &payload)
}

/// Reads one client frame and unmasks it; `Ok(None)` when the stream ended
/// before its first byte. With `pace`, the payload is read `chunk` bytes at
/// a time with a pause after each (a slow reader).
///
/// # Errors
///
/// The stream's errors (an end inside a frame is `UnexpectedEof`);
/// `InvalidData` for a payload over [`MAX_FRAME_PAYLOAD`].
pub fn read_client_frame<S: Read>(stream: &mut S, pace: Option<(usize, Duration)>) -> io::Result<Option<RawFrame>> {
    let mut head = [0u8; 2];
    match stream.read(&mut head[..1])? {
        0 => return Ok(None),
        _ => stream.read_exact(&mut head[1..])?,
    }
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        stream.read_exact(&mut ext)?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        stream.read_exact(&mut ext)?;
        len = u64::from_be_bytes(ext);
    }
    if len > MAX_FRAME_PAYLOAD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("client frame of {len} bytes")));
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        stream.read_exact(&mut mask)?;
    }
    // Bounded by MAX_FRAME_PAYLOAD just above.
    let mut payload = vec![0u8; len as usize];
    match pace {
        Some((chunk, pause)) => {
            for part in payload.chunks_mut(chunk.max(1)) {
                stream.read_exact(part)?;
                std::thread::sleep(pause);
            }
        }
        None => stream.read_exact(&mut payload)?,
    }
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(RawFrame { opcode: head[0] & 0x0f, fin: head[0] & 0x80 != 0, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_is_answered_with_the_rfc_accept_value() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let answer = String::from_utf8(upgrade_response(request).unwrap()).unwrap();
        // RFC 6455 §1.3's example.
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{answer}");
        assert!(upgrade_response(b"GET / HTTP/1.1\r\n\r\n").is_none());
    }

    #[test]
    fn server_frames_use_the_shortest_length_form() {
        assert_eq!(server_frame(1, b"hi"), [0x81, 2, b'h', b'i']);
        assert_eq!(&server_frame(2, &[0; 126])[..4], [0x82, 126, 0, 126]);
        assert_eq!(&server_frame(2, &[0; 65536])[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(close_frame(1000, "ok"), [0x88, 4, 0x03, 0xe8, b'o', b'k']);
    }

    #[test]
    fn client_frames_are_unmasked_and_hostile_lengths_refused() {
        let mut wire: &[u8] = &[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let frame = read_client_frame(&mut wire, None).unwrap().unwrap();
        assert_eq!(frame, RawFrame { opcode: 1, fin: true, payload: b"hi".to_vec() });
        assert_eq!(read_client_frame(&mut wire, None).unwrap(), None);

        let mut huge: &[u8] = &[0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let error = read_client_frame(&mut huge, None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);

        let mut cut: &[u8] = &[0x81, 0x85, 1, 2, 3, 4, 0];
        assert_eq!(read_client_frame(&mut cut, None).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn accept_upgrade_consumes_only_the_head() {
        struct Duplex {
            input: io::Cursor<Vec<u8>>,
            output: Vec<u8>,
        }
        impl Read for Duplex {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.input.read(buf)
            }
        }
        impl Write for Duplex {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.output.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut input = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
        input.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0]);
        let mut duplex = Duplex { input: io::Cursor::new(input), output: Vec::new() };
        accept_upgrade(&mut duplex).unwrap();
        assert!(duplex.output.starts_with(b"HTTP/1.1 101 "));
        let ping = read_client_frame(&mut duplex, None).unwrap().unwrap();
        assert_eq!((ping.opcode, ping.payload.len()), (9, 0));
    }
}
