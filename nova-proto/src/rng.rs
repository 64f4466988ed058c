//! The client's one source of randomness: ChaCha8 seeded by the caller.
//!
//! The block function is written here rather than taken from `rand_chacha`,
//! whose generator buffers four blocks (256 bytes) in every session: a
//! session needs four bytes per frame, and one of thousands of idle sessions
//! should not carry a quarter kilobyte for them. The stream is the same as
//! `rand_chacha::ChaCha8Rng`'s, word for word (checked in the tests against
//! that crate), so seeds, recorded transcripts and fuzz cases keep their
//! meaning.

/// ChaCha8 with a 64-bit block counter and a zero stream id (words 14 and
/// 15), as `rand_chacha` lays it out; one block of output buffered.
///
/// Masks, handshake keys and backoff jitter all come from here, so the same
/// seed and the same inputs give the same bytes. ChaCha8 is named explicitly
/// (not a "standard" generator whose algorithm may change between releases).
#[derive(Clone)]
pub(crate) struct Rng {
    key: [u32; 8],
    /// The block `block` will be refilled with.
    counter: u64,
    block: [u32; 16],
    /// The next unused word of `block`; 16 when it is spent.
    index: u8,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the buffered output predict every later mask.
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

impl Rng {
    pub(crate) fn new(seed: [u8; 32]) -> Rng {
        let mut key = [0u32; 8];
        for (word, bytes) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Rng { key, counter: 0, block: [0; 16], index: 16 }
    }

    /// A masking key for one frame.
    pub(crate) fn mask(&mut self) -> [u8; 4] {
        self.next_u32().to_le_bytes()
    }

    /// 16 bytes for a `Sec-WebSocket-Key`.
    pub(crate) fn nonce(&mut self) -> [u8; 16] {
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_exact_mut(4) {
            chunk.copy_from_slice(&self.next_u32().to_le_bytes());
        }
        nonce
    }

    /// A uniform draw from `0.0..1.0` (53 random bits).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 16 {
            self.block = chacha8_block(&self.key, self.counter);
            self.counter = self.counter.wrapping_add(1);
            self.index = 0;
        }
        let word = self.block[usize::from(self.index)];
        self.index += 1;
        word
    }

    /// Two words, the first the low half (as `rand_core` reads a block).
    fn next_u64(&mut self) -> u64 {
        let low = self.next_u32();
        let high = self.next_u32();
        (u64::from(high) << 32) | u64::from(low)
    }
}

/// One ChaCha block, 8 rounds (RFC 8439 §2.3 with 4 double rounds instead of
/// 10, a 64-bit counter in words 12–13 and zeros in words 14–15).
fn chacha8_block(key: &[u32; 8], counter: u64) -> [u32; 16] {
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&SIGMA);
    input[4..12].copy_from_slice(key);
    #[allow(clippy::cast_possible_truncation)] // the two halves of the counter
    {
        input[12] = counter as u32;
        input[13] = (counter >> 32) as u32;
    }
    let mut x = input;
    for _ in 0..4 {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for (out, word) in x.iter_mut().zip(input) {
        *out = out.wrapping_add(word);
    }
    x
}

#[inline(always)]
fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng as _, SeedableRng};

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let mut a = Rng::new([7; 32]);
        let mut b = Rng::new([7; 32]);
        let mut c = Rng::new([8; 32]);
        let run = |r: &mut Rng| (r.mask(), r.nonce(), r.unit().to_bits());
        let (ra, rb, rc) = (run(&mut a), run(&mut b), run(&mut c));
        assert_eq!(ra, rb);
        assert_ne!(ra, rc);
    }

    #[test]
    fn unit_stays_in_range() {
        let mut r = Rng::new([1; 32]);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn stream_is_pinned_to_chacha8() {
        // Guards the determinism promise across dependency upgrades: if this
        // changes, recorded transcripts and fuzz seeds change too. The value is
        // word 0 of the ChaCha8 block for an all-zero key, counter and nonce,
        // checked against an independent implementation of the block function.
        let mut r = Rng::new([0; 32]);
        assert_eq!(r.mask(), [62, 0, 239, 47]);
    }

    #[test]
    fn the_stream_is_rand_chachas_word_for_word() {
        // Mixed draws of every width, across many block boundaries (the odd
        // widths make u64 draws straddle blocks), from several seeds.
        for s in 0..8u8 {
            let seed = [s.wrapping_mul(37).wrapping_add(1); 32];
            let mut ours = Rng::new(seed);
            let mut theirs = ChaCha8Rng::from_seed(seed);
            for i in 0..5_000u32 {
                match i % 5 {
                    0 | 3 => assert_eq!(ours.mask(), theirs.next_u32().to_le_bytes()),
                    1 => {
                        let mut nonce = [0u8; 16];
                        theirs.fill_bytes(&mut nonce);
                        assert_eq!(ours.nonce(), nonce);
                    }
                    _ => assert_eq!(ours.next_u64(), theirs.next_u64(), "draw {i} of seed {s}"),
                }
            }
        }
    }
}
