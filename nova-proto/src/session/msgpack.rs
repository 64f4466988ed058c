//! MessagePack codec helpers (feature `msgpack`, on rmp-serde), the binary
//! twin of [`json`](super::json)'s helpers.
//!
//! A session never parses on its own: a MessagePack service's
//! [`Adapter::classify`](crate::session::Adapter::classify) calls
//! [`decode`] (or [`classify`], which maps a decode error to
//! [`Inbound::Malformed`]) once per message, and its `encode_*` methods
//! build messages with [`encode`]. The types are the application's serde
//! types, the same ones a JSON service would use.
//!
//! Peer bytes never panic and never make the decoder allocate what a length
//! prefix merely announces: [`decode`] reads from the message's own bytes
//! (`rmp_serde::from_slice`), so a string, binary or array claiming more
//! than the message holds fails as truncated, and nesting is bounded by
//! rmp-serde's depth limit (1024) rather than by the stack.
//!
//! ```
//! use nova_proto::session::msgpack;
//! use nova_proto::session::{Inbound, RequestId};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Reply { id: u64, ok: bool }
//!
//! let message = msgpack::encode(&Reply { id: 7, ok: true })?;
//! assert!(message.as_text().is_none(), "a binary message");
//! assert_eq!(msgpack::decode::<Reply>(&message)?, Reply { id: 7, ok: true });
//!
//! // In an adapter's `classify`: garbage is reported, not dropped or panicked on.
//! let inbound = msgpack::classify(&nova_proto::Message::binary(vec![0xc1]), |r: Reply| {
//!     Inbound::Response { id: RequestId(r.id), result: Ok(()) }
//! });
//! assert!(matches!(inbound, Inbound::Malformed(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::Message;
use crate::session::inbound::{DecodeError, EncodeError, Inbound};

/// Decodes a message's payload (binary, or text for services that send
/// MessagePack in text frames) as MessagePack into `T`. Allocates what `T`
/// holds, never more than the payload's own bytes can fill.
///
/// # Errors
///
/// [`DecodeError`] with rmp-serde's description: invalid or truncated
/// MessagePack, nesting past the depth limit, or data that does not fit `T`.
pub fn decode<T: DeserializeOwned>(message: &Message) -> Result<T, DecodeError> {
    rmp_serde::from_slice(message.as_bytes()).map_err(|e| DecodeError::new(format!("MessagePack: {e}")))
}

/// Serializes `value` into a binary message. Structs are encoded as maps
/// with their field names (`rmp_serde::to_vec_named`), as services that
/// speak MessagePack to other languages expect, not as positional arrays.
///
/// # Errors
///
/// [`EncodeError::Invalid`] when rmp-serde refuses the value (a map key it
/// cannot encode, a serializer error of the type itself).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message, EncodeError> {
    rmp_serde::to_vec_named(value).map(Message::binary).map_err(|e| EncodeError::Invalid(e.to_string()))
}

/// Decodes `message` into `T` and classifies it with `then`; a message
/// that does not decode is [`Inbound::Malformed`] (the session hands it to
/// the application whole, with the error), so an adapter's `classify` is
/// one call.
pub fn classify<T: DeserializeOwned>(message: &Message, then: impl FnOnce(T) -> Inbound) -> Inbound {
    match decode(message) {
        Ok(value) => then(value),
        Err(error) => Inbound::Malformed(error),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::session::requests::RequestId;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Tick {
        channel: String,
        seq: u64,
        price: f64,
        sizes: Vec<u32>,
        tags: BTreeMap<String, Option<i64>>,
        raw: Vec<u8>,
    }

    fn tick() -> Tick {
        Tick {
            channel: "trades.BTC-PERP".into(),
            seq: u64::MAX - 1,
            price: 64_250.5,
            sizes: vec![0, 1, 65_536, u32::MAX],
            tags: BTreeMap::from([("maker".into(), Some(-3)), ("taker".into(), None)]),
            raw: vec![0, 0xff, 0x80],
        }
    }

    #[test]
    fn values_round_trip_as_binary_messages_with_named_fields() {
        let message = encode(&tick()).unwrap();
        assert!(message.as_text().is_none());
        assert_eq!(decode::<Tick>(&message).unwrap(), tick());
        // Named: the field names are on the wire (a fixstr "channel").
        let bytes = message.as_bytes();
        assert!(bytes.windows(8).any(|w| w == b"\xa7channel"), "{bytes:02x?}");
        // A text frame carrying MessagePack decodes the same way (a
        // positive fixint is an ASCII byte).
        assert_eq!(decode::<u8>(&Message::text("\u{7}")), Ok(7));
    }

    #[test]
    fn malformed_bytes_are_typed_errors_never_panics() {
        let cases: &[(&str, Vec<u8>)] = &[
            ("empty", vec![]),
            ("reserved marker 0xc1", vec![0xc1]),
            ("truncated array", vec![0x92, 0x01]),
            ("truncated str8", vec![0xd9, 0x10, b'a']),
            // An array32 announcing 4 billion elements: fails on the missing
            // bytes, not by reserving room for them.
            ("huge announced array", vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]),
            ("huge announced bin", vec![0xc6, 0xff, 0xff, 0xff, 0xff]),
            // Nested far past the depth limit: an error, not a stack overflow.
            ("deep nesting", vec![0x91; 100_000]),
            ("wrong type", encode(&"a string").unwrap().as_bytes().to_vec()),
        ];
        for (what, bytes) in cases {
            let message = Message::binary(bytes.clone());
            let error = decode::<Tick>(&message).expect_err(what);
            assert!(error.reason.starts_with("MessagePack: "), "{what}: {error}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed xorshift stream: the same inputs on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let len = (next() % 48) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            let message = Message::binary(bytes);
            let _ = decode::<Tick>(&message);
            let _ = decode::<Vec<Option<String>>>(&message);
            let _ = decode::<BTreeMap<String, u64>>(&message);
        }
    }

    #[test]
    fn classify_maps_decode_errors_to_malformed() {
        #[derive(Deserialize)]
        struct Answer {
            id: u64,
        }
        let answer = |a: Answer| Inbound::Response { id: RequestId(a.id), result: Ok(()) };
        let good = encode(&BTreeMap::from([("id", 9_u64)])).unwrap();
        assert_eq!(classify(&good, answer), Inbound::Response { id: RequestId(9), result: Ok(()) });
        let bad = Message::binary(vec![0x81, 0xa2, b'i']);
        assert!(matches!(classify(&bad, answer), Inbound::Malformed(DecodeError { .. })));
    }
}
