//! The client's one source of randomness: ChaCha8 seeded by the caller.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng};

/// Masks, handshake keys and backoff jitter all come from here, so the same seed
/// and the same inputs give the same bytes. ChaCha8 is named explicitly (not
/// `StdRng`, whose algorithm may change between releases).
#[derive(Debug, Clone)]
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: [u8; 32]) -> Rng {
        Rng(ChaCha8Rng::from_seed(seed))
    }

    /// A masking key for one frame.
    pub(crate) fn mask(&mut self) -> [u8; 4] {
        self.0.next_u32().to_le_bytes()
    }

    /// 16 bytes for a `Sec-WebSocket-Key`.
    pub(crate) fn nonce(&mut self) -> [u8; 16] {
        let mut nonce = [0u8; 16];
        self.0.fill_bytes(&mut nonce);
        nonce
    }

    /// A uniform draw from `0.0..1.0` (53 random bits).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
