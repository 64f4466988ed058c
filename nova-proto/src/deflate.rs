//! permessage-deflate (RFC 7692): the offer, the checks on the server's answer,
//! and the per-connection compressor and decompressor.
//!
//! Backend: `flate2` on its pure-Rust `zlib-rs` backend (see
//! `nova-proto/Cargo.toml` for why not the default `miniz_oxide`). Two choices
//! follow from RFC 7692 and zlib's behaviour:
//!
//! - **Inflating** always uses a 15-bit window, which decodes any server window
//!   from 8 to 15 bits: a smaller window only limits how far back the server's
//!   references reach, and zlib-based servers asked for 8 really use 9. So every
//!   `server_max_window_bits` answer is honoured.
//! - **Compressing** uses the window the server allows (`client_max_window_bits`,
//!   15 when it says nothing). zlib cannot compress raw DEFLATE with a 256-byte
//!   window, so when the server demands 8 every message goes out uncompressed
//!   (RSV1 clear), which RFC 7692 always allows.
//!
//! Memory: the compressor (about 256 KiB with a 15-bit window) and the
//! decompressor (about 40 KiB) are allocated the first time a message needs
//! them, not when the connection opens, so a connection that only receives
//! small messages never pays for a compressor. Both belong to one connection
//! and are dropped with it: nothing of a window survives a reconnect.

use std::fmt::{self, Write as _};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{HandshakeError, NegotiationError, ProtocolError};

/// The extension token.
pub(crate) const NAME: &str = "permessage-deflate";

/// What RFC 7692 §7.2.1 strips from the end of every compressed message and
/// §7.2.2 appends before inflating: the empty stored block of a sync flush.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Smallest step the inflated-message buffer grows by.
const INFLATE_MIN_STEP: usize = 4096;

/// How to offer permessage-deflate; set it with
/// [`ConfigBuilder::deflate`](crate::ConfigBuilder::deflate).
///
/// The defaults offer `permessage-deflate; client_max_window_bits`: the server
/// chooses its own window and context takeover, and may limit ours.
///
/// ```
/// use nova_proto::{Config, DeflateConfig};
///
/// let deflate = DeflateConfig {
///     server_max_window_bits: Some(10), // ask the server for a 1 KiB window
///     server_no_context_takeover: true, // and a fresh one for each message
///     ..DeflateConfig::default()
/// };
/// let config = Config::builder("wss://h.example/").deflate(Some(deflate)).build()?;
/// assert!(config.request_head().contains(
///     "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10; \
///      server_no_context_takeover\r\n"
/// ));
/// # Ok::<(), nova_proto::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Ask the server to compress with a window of at most 2^n bytes (9–15).
    /// The server must then answer with a value no larger, or the handshake
    /// fails. Saves the server memory; we inflate with a 32 KiB window anyway.
    /// 8 is refused: zlib-based servers cannot compress raw deflate with a
    /// 256-byte window.
    pub server_max_window_bits: Option<u8>,
    /// Offer `client_max_window_bits` (without a value): the server may then
    /// limit the window we compress with, to save its own memory. On by
    /// default; we compress with any window from 9 to 15 bits (a server that
    /// demands 8 gets our messages uncompressed).
    pub client_max_window_bits: bool,
    /// Ask the server to compress each message on its own (no shared window):
    /// worse compression, but no 32 KiB window kept between messages on either
    /// side. The server must agree, or the handshake fails.
    pub server_no_context_takeover: bool,
    /// Compress each of our messages on its own, and say so in the offer.
    /// The server may also demand it; then it applies whatever this says.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this many bytes go out uncompressed (RSV1 clear):
    /// below it the deflate block overhead and the CPU are not worth it.
    pub threshold: usize,
    /// Compression level, 0 (store) to 9 (smallest); 6, zlib's default, is
    /// the default. Level 1 compresses 170-byte JSON about 9× faster for 15%
    /// more bytes (`examples/deflate_bench.rs`); it changes only what we send.
    pub level: u8,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            server_max_window_bits: None,
            client_max_window_bits: true,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            threshold: DEFAULT_THRESHOLD,
            level: 6,
        }
    }
}

/// Default [`DeflateConfig::threshold`]. Below 64 bytes a message saves a few
/// bytes at best (a sync-flushed block costs about 6), while it still pays the
/// compressor's per-message cost (about 0.7 µs at level 1, 6 µs at level 6,
/// `examples/deflate_bench.rs`); order-book updates of ~170 bytes already
/// shrink to 26–30% with context takeover.
pub const DEFAULT_THRESHOLD: usize = 64;

impl DeflateConfig {
    /// The extension offer, as written in `Sec-WebSocket-Extensions`.
    pub fn offer(&self) -> String {
        let mut offer = String::from(NAME);
        // `write!` into a String cannot fail.
        if self.client_max_window_bits {
            offer.push_str("; client_max_window_bits");
        }
        if let Some(bits) = self.server_max_window_bits {
            let _ = write!(offer, "; server_max_window_bits={bits}");
        }
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        offer
    }

    /// Why this configuration cannot be offered, if it cannot.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.server_max_window_bits.is_some_and(|b| !(9..=15).contains(&b)) {
            return Err("server_max_window_bits must be 9 to 15 (zlib cannot compress raw deflate with 8)");
        }
        if self.level > 9 {
            return Err("level must be 0 to 9");
        }
        Ok(())
    }
}

/// What the server agreed to: the parameters in force on a connection, in
/// [`Opened::deflate`](crate::Opened::deflate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server resets its window for every message.
    pub server_no_context_takeover: bool,
    /// We reset our window for every message.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with (15 when it said nothing).
    pub server_max_window_bits: u8,
    /// The largest window we may compress with (15 when the server said
    /// nothing). At 8 this client sends everything uncompressed: zlib cannot
    /// compress raw DEFLATE with a 256-byte window.
    pub client_max_window_bits: u8,
}

/// What a bare `permessage-deflate` answer agrees to: both windows 15 bits,
/// context takeover on both sides.
impl Default for DeflateParams {
    fn default() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// Whether our messages can be compressed at all under these parameters.
    pub fn compresses_outgoing(&self) -> bool {
        (9..=15).contains(&self.client_max_window_bits)
    }
}

impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{NAME}; server_max_window_bits={}; client_max_window_bits={}",
            self.server_max_window_bits, self.client_max_window_bits
        )?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        Ok(())
    }
}

/// Checks every `Sec-WebSocket-Extensions` value of the response against the
/// offer (RFC 7692 §7.1 from the client's side) and returns what was agreed.
///
/// Only `permessage-deflate`, and only when offered, may appear, at most once,
/// with known parameters, each at most once and with a valid value; the
/// answer must accept what the offer asked of the server.
pub(crate) fn negotiate<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    offer: Option<&DeflateConfig>,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let mut agreed = None;
    for value in values {
        let value = std::str::from_utf8(value).map_err(|_| NegotiationError::Malformed)?.trim();
        for element in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(element, ';').map(str::trim);
            let name = parts.next().unwrap_or("");
            // Empty list elements ("a, , b") are allowed by HTTP's list syntax.
            if name.is_empty() {
                if parts.any(|p| !p.is_empty()) {
                    return Err(NegotiationError::Malformed.into());
                }
                continue;
            }
            let Some(offer) = offer.filter(|_| name.eq_ignore_ascii_case(NAME)) else {
                return Err(HandshakeError::UnofferedExtension(name.to_owned()));
            };
            if agreed.is_some() {
                return Err(NegotiationError::DuplicateExtension.into());
            }
            agreed = Some(accept(parts, offer)?);
        }
    }
    Ok(agreed)
}

/// One `permessage-deflate` element of the response.
fn accept<'a>(params: impl Iterator<Item = &'a str>, offer: &DeflateConfig) -> Result<DeflateParams, NegotiationError> {
    let mut server_no_context_takeover = false;
    let mut client_no_context_takeover = false;
    let mut server_bits = None;
    let mut client_bits = None;
    for param in params {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim()))),
            None => (param, None),
        };
        let flag = |seen: &mut bool| {
            if std::mem::replace(seen, true) {
                return Err(NegotiationError::DuplicateParameter(key.to_owned()));
            }
            match value {
                None => Ok(()),
                Some(v) => Err(NegotiationError::InvalidValue { param: key.to_owned(), value: v.to_owned() }),
            }
        };
        let bits = |slot: &mut Option<u8>| {
            if slot.is_some() {
                return Err(NegotiationError::DuplicateParameter(key.to_owned()));
            }
            *slot = Some(window_bits(key, value)?);
            Ok(())
        };
        match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => flag(&mut server_no_context_takeover)?,
            "client_no_context_takeover" => flag(&mut client_no_context_takeover)?,
            "server_max_window_bits" => bits(&mut server_bits)?,
            "client_max_window_bits" => bits(&mut client_bits)?,
            _ => return Err(NegotiationError::UnknownParameter(key.to_owned())),
        }
    }
    // §7.1.1.1: a server accepts server_no_context_takeover by repeating it.
    if offer.server_no_context_takeover && !server_no_context_takeover {
        return Err(NegotiationError::MissingServerNoContextTakeover);
    }
    // §7.1.2.1: an offered server_max_window_bits is accepted with a value no
    // larger. Unasked, any 8..=15 is fine: we inflate with a 15-bit window.
    if let Some(offered) = offer.server_max_window_bits {
        match server_bits {
            None => return Err(NegotiationError::MissingServerMaxWindowBits { offered }),
            Some(got) if got > offered => return Err(NegotiationError::ServerWindowTooLarge { offered, got }),
            Some(_) => {}
        }
    }
    // §7.1.2.2: client_max_window_bits only when offered.
    if client_bits.is_some() && !offer.client_max_window_bits {
        return Err(NegotiationError::UnofferedClientMaxWindowBits);
    }
    Ok(DeflateParams {
        server_no_context_takeover,
        // Declared in the offer, it holds whether or not the server repeats it.
        client_no_context_takeover: client_no_context_takeover || offer.client_no_context_takeover,
        server_max_window_bits: server_bits.unwrap_or(15),
        client_max_window_bits: client_bits.unwrap_or(15),
    })
}

/// A window-bits value: a decimal 8..=15 without leading zeros (§7.1.2), in
/// a response always present.
fn window_bits(key: &str, value: Option<&str>) -> Result<u8, NegotiationError> {
    let invalid = || NegotiationError::InvalidValue { param: key.to_owned(), value: value.unwrap_or("").to_owned() };
    let v = value.ok_or_else(invalid)?;
    if v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match v.parse::<u8>() {
        Ok(bits @ 8..=15) => Ok(bits),
        _ => Err(invalid()),
    }
}

/// RFC 6455 §9.1 allows a parameter value as a quoted string.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

/// The per-connection codec: compressor, decompressor and the agreed parameters.
pub(crate) struct Codec {
    params: DeflateParams,
    threshold: usize,
    level: u8,
    /// Allocated on the first message compressed.
    compress: Option<Compress>,
    /// Allocated on the first compressed message received.
    decompress: Option<Decompress>,
    /// The server ended its DEFLATE stream (a final block) inside the message
    /// being received: the rest of that message is not inflated.
    stream_ended: bool,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("params", &self.params)
            .field("threshold", &self.threshold)
            .field("compressor", &self.compress.is_some())
            .field("decompressor", &self.decompress.is_some())
            .finish()
    }
}

impl Codec {
    pub(crate) fn new(params: DeflateParams, config: &DeflateConfig) -> Codec {
        Codec {
            params,
            threshold: config.threshold,
            level: config.level,
            compress: None,
            decompress: None,
            stream_ended: false,
        }
    }

    /// The message compressed (trailing `00 00 ff ff` removed), or `None` when
    /// it goes out as it is: below the threshold, a window we cannot compress
    /// with, or, without context takeover, no gain. With context takeover a
    /// message that did not shrink still goes out compressed: it is in both
    /// windows now and makes the next ones smaller (sending it plain would
    /// mean resetting our window and losing that).
    pub(crate) fn compress(&mut self, data: &[u8]) -> Option<Bytes> {
        if data.len() < self.threshold || !self.params.compresses_outgoing() {
            return None;
        }
        let compressed = self.deflate_message(data);
        let compressed = match compressed {
            Some(c) if self.params.client_no_context_takeover && c.len() >= data.len() => None,
            other => other,
        };
        if compressed.is_none() {
            // Sent plain, so the server's window never sees it: ours must
            // forget it too (a no-op without context takeover).
            if let Some(c) = self.compress.as_mut() {
                c.reset();
            }
        }
        compressed.map(Bytes::from)
    }

    /// One message through the compressor with a sync flush, the tail removed;
    /// `None` if the compressor failed. Resets the window afterwards when
    /// client_no_context_takeover is in force.
    fn deflate_message(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let (level, bits) = (self.level, self.params.client_max_window_bits);
        if !(9..=15).contains(&bits) {
            // `new_with_window_bits` would panic; `compress` never gets here.
            return None;
        }
        // The window the server allows, so our back-references stay inside it.
        let c = self
            .compress
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(u32::from(level)), false, bits));
        // Deflate rarely expands by more than a few bytes per 16 KiB block.
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut consumed = 0;
        let ok = loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(64));
            }
            let before = c.total_in();
            if c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync).is_err() {
                break false;
            }
            consumed += (c.total_in() - before) as usize;
            // A sync flush is complete once all input is taken and the output
            // was not filled to the brim.
            if consumed == data.len() && out.len() < out.capacity() {
                break out.ends_with(&TAIL);
            }
        };
        if self.params.client_no_context_takeover {
            c.reset();
        }
        if !ok {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        Some(out)
    }

    /// Inflates one frame's payload of a compressed message into `out`, then,
    /// on the last frame, the tail of §7.2.2. `out` never grows past
    /// `max + 1` bytes: the inflater writes into bounded spare capacity, and
    /// the limit is checked after every step, so a bomb fails after producing
    /// at most one step beyond the limit.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::MessageTooLarge`] past `max` (1009),
    /// [`ProtocolError::InvalidCompressedData`] for a stream that is not
    /// DEFLATE (1007).
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ProtocolError> {
        let d = self.decompress.get_or_insert_with(|| Decompress::new(false));
        if !self.stream_ended {
            self.stream_ended = inflate_into(d, payload, out, max)?;
        }
        if fin && !self.stream_ended {
            self.stream_ended = inflate_into(d, &TAIL, out, max)?;
        }
        if self.stream_ended {
            // The server closed its DEFLATE stream with a final block (BFINAL,
            // RFC 7692 §7.2.3.4): the next message starts a new one. Bytes after
            // the final block carry nothing and are ignored, as zlib-based
            // peers do.
            d.reset(false);
        }
        if fin {
            self.stream_ended = false;
            if self.params.server_no_context_takeover {
                d.reset(false);
            }
        }
        Ok(())
    }
}

/// Inflates all of `input` into `out`; whether the DEFLATE stream ended.
fn inflate_into(d: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<bool, ProtocolError> {
    loop {
        if out.len() == out.capacity() {
            if out.len() > max {
                return Err(ProtocolError::MessageTooLarge { len: out.len() as u64, max });
            }
            // Doubling, but never past one byte over the limit: that byte is
            // how the limit is detected.
            let step = out.len().max(INFLATE_MIN_STEP).min(max.saturating_add(1) - out.len());
            out.reserve_exact(step);
        }
        let (in_before, out_before) = (d.total_in(), out.len());
        let status =
            d.decompress_vec(input, out, FlushDecompress::None).map_err(|_| ProtocolError::InvalidCompressedData)?;
        let consumed = (d.total_in() - in_before) as usize;
        input = &input[consumed..];
        if out.len() > max {
            return Err(ProtocolError::MessageTooLarge { len: out.len() as u64, max });
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        let room = out.len() < out.capacity();
        if input.is_empty() && room {
            // All input taken and room left over: nothing more is pending.
            return Ok(false);
        }
        if room && consumed == 0 && out.len() == out_before {
            // Input left, room left, and no progress: the inflater is stuck on
            // data it cannot use. Never loop on it.
            return Err(ProtocolError::InvalidCompressedData);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    fn codec(params: DeflateParams) -> Codec {
        Codec::new(params, &DeflateConfig { threshold: 0, ..DeflateConfig::default() })
    }

    fn inflate_all(c: &mut Codec, frames: &[&[u8]], max: usize) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            c.inflate(f, i + 1 == frames.len(), &mut out, max)?;
        }
        Ok(out)
    }

    fn negotiate_str(response: &str, offer: &DeflateConfig) -> Result<Option<DeflateParams>, NegotiationError> {
        negotiate(std::iter::once(response.as_bytes()), Some(offer)).map_err(|e| match e {
            HandshakeError::Extension(e) => e,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn offer_strings() {
        assert_eq!(DeflateConfig::default().offer(), "permessage-deflate; client_max_window_bits");
        let bare = DeflateConfig { client_max_window_bits: false, ..DeflateConfig::default() };
        assert_eq!(bare.offer(), "permessage-deflate");
        let all = DeflateConfig {
            server_max_window_bits: Some(9),
            client_max_window_bits: true,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        assert_eq!(
            all.offer(),
            "permessage-deflate; client_max_window_bits; server_max_window_bits=9; server_no_context_takeover; \
             client_no_context_takeover"
        );
        assert!(DeflateConfig { server_max_window_bits: Some(8), ..all }.validate().is_err());
        assert!(DeflateConfig { server_max_window_bits: Some(16), ..all }.validate().is_err());
        assert!(DeflateConfig { level: 10, ..all }.validate().is_err());
        assert!(all.validate().is_ok());
    }

    #[test]
    fn acceptable_answers_give_the_agreed_parameters() {
        let plain = DeflateConfig::default();
        assert_eq!(negotiate_str("permessage-deflate", &plain), Ok(Some(params())));
        assert_eq!(negotiate(std::iter::empty(), Some(&plain)), Ok(None), "the server may decline");
        // A server may use a smaller window, or no context takeover, unasked.
        let got = negotiate_str("PerMessage-Deflate ; server_max_window_bits=8; server_no_context_takeover", &plain);
        assert_eq!(
            got,
            Ok(Some(DeflateParams { server_max_window_bits: 8, server_no_context_takeover: true, ..params() }))
        );
        // And may demand client_no_context_takeover even if not offered.
        let got = negotiate_str("permessage-deflate; client_no_context_takeover", &plain).unwrap().unwrap();
        assert!(got.client_no_context_takeover);
        // Offered client_no_context_takeover holds even if not repeated.
        let ours = DeflateConfig { client_no_context_takeover: true, ..plain };
        assert!(negotiate_str("permessage-deflate", &ours).unwrap().unwrap().client_no_context_takeover);
        // Asked-for window: equal or smaller, quoted values allowed.
        let asked = DeflateConfig { server_max_window_bits: Some(12), ..plain };
        for (answer, bits) in [("server_max_window_bits=12", 12), ("server_max_window_bits=\"9\"", 9)] {
            let got = negotiate_str(&format!("permessage-deflate; {answer}"), &asked).unwrap().unwrap();
            assert_eq!(got.server_max_window_bits, bits);
        }
        // Offered client_max_window_bits: the server may limit us (then we
        // stop compressing) or not.
        let cmwb = DeflateConfig { client_max_window_bits: true, ..plain };
        let got = negotiate_str("permessage-deflate; client_max_window_bits=10", &cmwb).unwrap().unwrap();
        assert_eq!((got.client_max_window_bits, got.compresses_outgoing()), (10, true));
        let got = negotiate_str("permessage-deflate; client_max_window_bits=8", &cmwb).unwrap().unwrap();
        assert_eq!((got.client_max_window_bits, got.compresses_outgoing()), (8, false));
        let got = negotiate_str("permessage-deflate", &cmwb).unwrap().unwrap();
        assert_eq!((got.client_max_window_bits, got.compresses_outgoing()), (15, true));
        // Empty list elements and several header lines.
        let got = negotiate(["", " , permessage-deflate ,"].iter().map(|s| s.as_bytes()), Some(&plain));
        assert_eq!(got, Ok(Some(params())));
    }

    #[test]
    fn unacceptable_answers_fail_with_their_own_error() {
        use NegotiationError as N;
        let plain = DeflateConfig { client_max_window_bits: false, ..DeflateConfig::default() };
        let asked = DeflateConfig { server_max_window_bits: Some(10), server_no_context_takeover: true, ..plain };
        let cases: Vec<(&str, &DeflateConfig, NegotiationError)> = vec![
            ("permessage-deflate, permessage-deflate", &plain, N::DuplicateExtension),
            ("permessage-deflate; foo", &plain, N::UnknownParameter("foo".into())),
            ("permessage-deflate; foo=1", &plain, N::UnknownParameter("foo".into())),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                &plain,
                N::DuplicateParameter("server_no_context_takeover".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
                &plain,
                N::DuplicateParameter("server_max_window_bits".into()),
            ),
            (
                "permessage-deflate; client_no_context_takeover=1",
                &plain,
                N::InvalidValue { param: "client_no_context_takeover".into(), value: "1".into() },
            ),
            (
                "permessage-deflate; server_max_window_bits",
                &plain,
                N::InvalidValue { param: "server_max_window_bits".into(), value: "".into() },
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                &plain,
                N::InvalidValue { param: "server_max_window_bits".into(), value: "7".into() },
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                &plain,
                N::InvalidValue { param: "server_max_window_bits".into(), value: "16".into() },
            ),
            (
                "permessage-deflate; server_max_window_bits=09",
                &plain,
                N::InvalidValue { param: "server_max_window_bits".into(), value: "09".into() },
            ),
            (
                "permessage-deflate; server_max_window_bits=1a",
                &plain,
                N::InvalidValue { param: "server_max_window_bits".into(), value: "1a".into() },
            ),
            ("permessage-deflate; client_max_window_bits=15", &plain, N::UnofferedClientMaxWindowBits),
            ("permessage-deflate; server_max_window_bits=10", &asked, N::MissingServerNoContextTakeover),
            ("permessage-deflate; server_no_context_takeover", &asked, N::MissingServerMaxWindowBits { offered: 10 }),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                &asked,
                N::ServerWindowTooLarge { offered: 10, got: 11 },
            ),
        ];
        for (answer, offer, expected) in cases {
            assert_eq!(negotiate_str(answer, offer), Err(expected), "{answer}");
        }
        // Not offered at all, or another extension: unasked for.
        assert_eq!(
            negotiate(std::iter::once(&b"permessage-deflate"[..]), None),
            Err(HandshakeError::UnofferedExtension("permessage-deflate".into()))
        );
        assert_eq!(
            negotiate(std::iter::once(&b"x-webkit-deflate-frame"[..]), Some(&plain)),
            Err(HandshakeError::UnofferedExtension("x-webkit-deflate-frame".into()))
        );
        assert_eq!(negotiate(std::iter::once(&b"\xff"[..]), Some(&plain)), Err(N::Malformed.into()));
    }

    /// RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello" alone, then twice with a shared window.
    #[test]
    fn rfc_7692_examples() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
        // `deflate_message`: `compress` would send a 5-byte "Hello" plain (7 > 5).
        let mut c = codec(params());
        assert_eq!(c.deflate_message(b"Hello").as_deref(), Some(&hello[..]));
        assert_eq!(c.deflate_message(b"Hello").as_deref(), Some(&again[..]), "shared window: a back-reference");
        let mut c = codec(DeflateParams { client_no_context_takeover: true, ..params() });
        assert_eq!(c.deflate_message(b"Hello").as_deref(), Some(&hello[..]));
        assert_eq!(c.deflate_message(b"Hello").as_deref(), Some(&hello[..]), "no takeover: the same bytes again");
        let no_takeover = DeflateParams { client_no_context_takeover: true, ..params() };
        assert_eq!(codec(no_takeover).compress(b"Hello"), None, "no gain and no window to build: sent plain");
        assert!(codec(params()).compress(b"Hello").is_some(), "it builds the shared window");

        let mut d = codec(params());
        assert_eq!(inflate_all(&mut d, &[&hello], 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut d, &[&again], 100).unwrap(), b"Hello");
        // §7.2.3.3 (no compression, a stored block) and §7.2.3.4 (BFINAL set).
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate_all(&mut codec(params()), &[&stored], 100).unwrap(), b"Hello");
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut d = codec(params());
        assert_eq!(inflate_all(&mut d, &[&bfinal], 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut d, &[&hello], 100).unwrap(), b"Hello", "a new stream after BFINAL");
        // §7.2.3.1's fragmented form: the same compressed bytes in two frames.
        let split = [&[0xf2, 0x48, 0xcd][..], &[0xc9, 0xc9, 0x07, 0x00][..]];
        assert_eq!(inflate_all(&mut codec(params()), &split, 100).unwrap(), b"Hello");
    }

    #[test]
    fn server_no_context_takeover_resets_the_inflater_per_message() {
        let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut d = codec(DeflateParams { server_no_context_takeover: true, ..params() });
        assert_eq!(inflate_all(&mut d, &[&hello], 100).unwrap(), b"Hello");
        // The back-reference into the previous message finds a fresh window:
        // "invalid distance too far back".
        let got = inflate_all(&mut d, &[&again], 100);
        assert_eq!(got, Err(ProtocolError::InvalidCompressedData));
        let mut d = codec(params());
        assert_eq!(inflate_all(&mut d, &[&hello], 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut d, &[&again], 100).unwrap(), b"Hello", "the window was kept");
    }

    #[test]
    fn round_trips_with_and_without_takeover() {
        for takeover in [false, true] {
            let p = DeflateParams {
                client_no_context_takeover: !takeover,
                server_no_context_takeover: !takeover,
                ..params()
            };
            let (mut tx, mut rx) = (codec(p), codec(p));
            for i in 0..50 {
                let msg = format!(
                    r#"{{"channel":"book.BTC-PERP","seq":{i},"bids":[[6{i}.5,{}],[6{i}.0,1.25],[60.5,0.5]],"asks":[[7{i}.5,2],[71.0,{}]]}}"#,
                    i * 7,
                    i + 3
                );
                let wire = tx.compress(msg.as_bytes()).expect("compressible");
                assert!(wire.len() < msg.len());
                assert_eq!(inflate_all(&mut rx, &[&wire], 1 << 20).unwrap(), msg.as_bytes());
            }
        }
    }

    #[test]
    fn small_incompressible_or_limited_messages_go_out_plain() {
        let mut c = Codec::new(params(), &DeflateConfig { threshold: 100, ..DeflateConfig::default() });
        assert_eq!(c.compress(&[b'a'; 99]), None, "below the threshold");
        assert!(c.compress(&[b'a'; 100]).is_some());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(c.compress(&noise).is_some(), "with takeover, even noise goes into the window");
        let mut c = codec(DeflateParams { client_no_context_takeover: true, ..params() });
        assert_eq!(c.compress(&noise), None, "no gain, no window: plain");
        let mut limited = codec(DeflateParams { client_max_window_bits: 8, ..params() });
        assert_eq!(limited.compress(&[b'a'; 1000]), None, "a window zlib cannot compress with");
        assert!(limited.compress.is_none(), "no compressor allocated for nothing");
    }

    #[test]
    fn the_servers_client_window_limit_is_honoured() {
        // Text that repeats at a distance of ~2 KiB: a 15-bit window finds the
        // repeats, a 9-bit (512-byte) one must not reach back that far.
        let mut x = 1u64;
        let block: Vec<u8> = (0..2000)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                b'a' + (x >> 60) as u8
            })
            .collect();
        let data = block.repeat(4);
        for bits in 9..=15u8 {
            let mut c = codec(DeflateParams { client_max_window_bits: bits, ..params() });
            let wire = c.compress(&data).expect("compressible");
            // A server inflating with exactly that window reads it.
            let mut inflater = Decompress::new_with_window_bits(false, bits);
            let mut out = Vec::with_capacity(data.len() + 1);
            let input = [&wire[..], &TAIL].concat();
            inflater.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap_or_else(|e| panic!("{bits}: {e}"));
            assert_eq!(out, data, "window {bits}");
        }
        let small = codec(DeflateParams { client_max_window_bits: 9, ..params() }).compress(&data).unwrap();
        let large = codec(params()).compress(&data).unwrap();
        assert!(large.len() * 2 < small.len(), "{} vs {}", large.len(), small.len());
    }

    #[test]
    fn a_bomb_fails_at_the_limit_without_growing_past_it() {
        // 32 MiB of zeros compress to about 32 KiB; sent in one frame.
        let zeros = vec![0u8; 32 << 20];
        let bomb = codec(params()).compress(&zeros).unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let max = 1 << 20;
        let mut out = Vec::new();
        let e = codec(params()).inflate(&bomb, true, &mut out, max).unwrap_err();
        assert!(matches!(e, ProtocolError::MessageTooLarge { max: m, .. } if m == max), "{e:?}");
        assert_eq!(e.close_code().0, 1009);
        assert!(out.capacity() <= max + 1, "buffer grew to {}", out.capacity());
        // Exactly at the limit is fine.
        let exact = codec(params()).compress(&zeros[..max]).unwrap();
        assert_eq!(inflate_all(&mut codec(params()), &[&exact], max).unwrap().len(), max);
    }

    #[test]
    fn garbage_is_invalid_compressed_data() {
        for garbage in [&[0xff, 0xff, 0xff][..], &[0x07], &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x42]] {
            let e = inflate_all(&mut codec(params()), &[garbage], 100).unwrap_err();
            assert_eq!(e, ProtocolError::InvalidCompressedData, "{garbage:x?}");
            assert_eq!(e.close_code().0, 1007);
        }
    }
}
