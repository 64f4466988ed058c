//! Frame header: decode from a prefix of a byte slice, encode into a `Vec`.

use super::Opcode;

/// The longest header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: this is the last frame of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the three low bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// A header that cannot be a frame header at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The 64-bit length has its most significant bit set (RFC 6455 §5.2).
    #[error("64-bit payload length has the most significant bit set")]
    LengthMsbSet,
}

impl Header {
    /// Decodes the header at the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, and
    /// `Ok(Some((header, header_len)))` otherwise. Reads at most
    /// [`MAX_HEADER_LEN`] bytes and allocates nothing.
    ///
    /// # Errors
    ///
    /// [`HeaderError::LengthMsbSet`] when the 64-bit length is out of range.
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        let (payload_len, len_end) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(HeaderError::LengthMsbSet);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        let (mask, header_len) = if masked {
            match buf.get(len_end..len_end + 4) {
                Some(m) => (Some([m[0], m[1], m[2], m[3]]), len_end + 4),
                None => return Ok(None),
            }
        } else {
            (None, len_end)
        };
        let header =
            Header { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x07, opcode: Opcode::from_bits(b0), mask, payload_len };
        Ok(Some((header, header_len)))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header to `out`, using the shortest length encoding.
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) {
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = b0;
        let mut n = match self.payload_len {
            len @ 0..=125 => {
                bytes[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(mask) = self.mask {
            bytes[n..n + 4].copy_from_slice(&mask);
            n += 4;
        }
        out.extend_from_slice(&bytes[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(header: Header) {
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out.len(), header.encoded_len());
        // Every strict prefix is incomplete, the whole is exact.
        for cut in 0..out.len() {
            assert_eq!(Header::decode(&out[..cut]), Ok(None), "cut {cut} of {header:?}");
        }
        out.extend_from_slice(b"trailing payload");
        assert_eq!(Header::decode(&out), Ok(Some((header, header.encoded_len()))));
    }

    #[test]
    fn lengths_at_encoding_boundaries_roundtrip() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 70_000, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                roundtrip(Header { fin: true, rsv: 0, opcode: Opcode::Binary, mask, payload_len: len });
            }
        }
        roundtrip(Header { fin: false, rsv: 0b101, opcode: Opcode::Reserved(0xB), mask: None, payload_len: 3 });
    }

    #[test]
    fn shortest_length_form_is_used() {
        let mut out = Vec::new();
        Header { fin: true, rsv: 0, opcode: Opcode::Text, mask: None, payload_len: 125 }.encode(&mut out);
        assert_eq!(out, [0x81, 125]);
        out.clear();
        Header { fin: true, rsv: 0, opcode: Opcode::Text, mask: None, payload_len: 126 }.encode(&mut out);
        assert_eq!(out, [0x81, 126, 0, 126]);
        out.clear();
        Header { fin: false, rsv: 0, opcode: Opcode::Binary, mask: Some([9; 4]), payload_len: 65_536 }.encode(&mut out);
        assert_eq!(out, [0x02, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9]);
    }

    #[test]
    fn msb_of_64_bit_length_is_rejected() {
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(Header::decode(&buf), Err(HeaderError::LengthMsbSet));
    }

    #[test]
    fn flags_and_opcodes_are_read_not_judged() {
        let (h, n) = Header::decode(&[0b0111_0011, 0]).unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(!h.fin);
        assert_eq!(h.rsv, 0b111);
        assert_eq!(h.opcode, Opcode::Reserved(3));
        assert!(Opcode::Reserved(0xB).is_control());
        assert!(!Opcode::Reserved(0x3).is_control());
    }
}
