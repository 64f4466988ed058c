//! RFC 6455 §5 framing, for either role: pure functions on byte slices.
//!
//! [`Header::decode`] reads a frame header without judging it (a client and a
//! server reject different things, so role rules live with the caller);
//! [`Header::encode`] writes one; [`apply_mask`] masks or unmasks a payload in
//! place. The client connection uses these, and so can a test server.

mod header;
mod mask;

pub use header::{Header, HeaderError, MAX_HEADER_LEN};
pub use mask::{apply_mask, extend_masked};

/// A frame opcode (RFC 6455 §5.2). Reserved values are kept so they can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: first (or only) frame of a text message.
    Text,
    /// 0x2: first (or only) frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
    /// 0x3–0x7 and 0xB–0xF: reserved; receiving one is a protocol error.
    Reserved(u8),
}

impl Opcode {
    /// The opcode of the low four bits of `bits`.
    pub fn from_bits(bits: u8) -> Opcode {
        match bits & 0x0F {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    /// The four-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(bits) => bits & 0x0F,
        }
    }

    /// Whether this is a control opcode (0x8–0xF, reserved ones included).
    pub fn is_control(self) -> bool {
        self.bits() & 0x08 != 0
    }
}
