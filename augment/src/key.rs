//! Sample keys: every random choice of an op is a pure function of one key and the op position.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The identity of one sample in one epoch, from which all of its random choices follow.
///
/// `SampleKey::rng(op)` seeds a ChaCha8 generator with the 32 bytes
/// `seed.to_le_bytes() ++ epoch.to_le_bytes() ++ index.to_le_bytes() ++ op.to_le_bytes()`.
/// Distinct `(seed, epoch, index, op)` tuples therefore give distinct, independent streams, and
/// the same tuple gives the same stream on every machine, thread count and batch size. No op in
/// this crate reads a global or thread-local generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleKey {
    /// The run's seed.
    pub seed: u64,
    /// The epoch, counted from 0.
    pub epoch: u64,
    /// The sample's index in its dataset split (not its position in a shuffled order, so that
    /// the shuffle and the augmentation stay independent).
    pub index: u64,
}

impl SampleKey {
    /// Creates a key from its three parts.
    pub fn new(seed: u64, epoch: u64, index: u64) -> Self {
        Self { seed, epoch, index }
    }

    /// Returns the generator for the op at position `op` of a recipe.
    ///
    /// The 32-byte ChaCha8 seed is the little-endian bytes of `seed`, `epoch`, `index` and `op`,
    /// in that order.
    pub fn rng(self, op: u64) -> ChaCha8Rng {
        let mut bytes = [0u8; 32];
        bytes[0..8].copy_from_slice(&self.seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.index.to_le_bytes());
        bytes[24..32].copy_from_slice(&op.to_le_bytes());
        ChaCha8Rng::from_seed(bytes)
    }
}

/// Draws an integer uniformly from `0..=max`.
///
/// Uses Lemire's multiply-and-reject method on `next_u64` values, written out here rather than
/// taken from `rand`, so that the drawn values depend only on the generator's stream and not on
/// the sampling code of a `rand` release.
pub fn uniform_inclusive<R: RngCore + ?Sized>(rng: &mut R, max: u64) -> u64 {
    if max == u64::MAX {
        return rng.next_u64();
    }
    let range = max + 1;

    let mut product = u128::from(rng.next_u64()) * u128::from(range);
    let mut low = product as u64;

    // Values of `low` below `2^64 mod range` belong to an over-represented bucket: reject them.
    if low < range {
        let threshold = range.wrapping_neg() % range;
        while low < threshold {
            product = u128::from(rng.next_u64()) * u128::from(range);
            low = product as u64;
        }
    }
    (product >> 64) as u64
}

/// Draws `true` with probability `probability`, which must lie in `[0, 1]`.
///
/// Compares one uniform value from `[0, 1)` (the top 53 bits of `next_u64`) against
/// `probability`, so 0 never gives `true` and 1 always does.
pub fn bernoulli<R: RngCore + ?Sized>(rng: &mut R, probability: f64) -> bool {
    let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    unit < probability
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_same_key_same_stream() {
        let key = SampleKey::new(7, 3, 11);

        let first: Vec<u64> = (0..4).map(|_| key.rng(0).next_u64()).collect();
        let mut a = key.rng(2);
        let mut b = key.rng(2);

        assert!(first.iter().all(|&v| v == first[0]));
        for _ in 0..16 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn rng_each_part_changes_stream() {
        let base = SampleKey::new(7, 3, 11);
        let reference = base.rng(0).next_u64();

        assert_ne!(SampleKey::new(8, 3, 11).rng(0).next_u64(), reference);
        assert_ne!(SampleKey::new(7, 4, 11).rng(0).next_u64(), reference);
        assert_ne!(SampleKey::new(7, 3, 12).rng(0).next_u64(), reference);
        assert_ne!(base.rng(1).next_u64(), reference);
    }

    #[test]
    fn rng_seed_is_little_endian_parts() {
        let key = SampleKey::new(0x0102_0304_0506_0708, 9, 10);
        let mut bytes = [0u8; 32];
        bytes[0..8].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
        bytes[8] = 9;
        bytes[16] = 10;
        bytes[24] = 5;

        let mut expected = ChaCha8Rng::from_seed(bytes);

        assert_eq!(key.rng(5).next_u64(), expected.next_u64());
    }

    #[test]
    fn uniform_inclusive_stays_in_range() {
        let mut rng = SampleKey::new(1, 0, 0).rng(0);

        for max in [0u64, 1, 2, 7, 8, 1000, u64::MAX / 3, u64::MAX] {
            for _ in 0..200 {
                assert!(uniform_inclusive(&mut rng, max) <= max);
            }
        }
        assert_eq!(uniform_inclusive(&mut rng, 0), 0);
    }

    #[test]
    fn uniform_inclusive_hits_every_value() {
        let mut rng = SampleKey::new(2, 0, 0).rng(0);
        let mut counts = [0u32; 5];

        for _ in 0..5000 {
            counts[uniform_inclusive(&mut rng, 4) as usize] += 1;
        }

        // Each count is binomial(5000, 0.2): mean 1000, standard deviation about 28.
        for (value, &count) in counts.iter().enumerate() {
            assert!((850..=1150).contains(&count), "value {value} drawn {count} times");
        }
    }

    #[test]
    fn bernoulli_extremes() {
        let mut rng = SampleKey::new(3, 0, 0).rng(0);

        for _ in 0..1000 {
            assert!(!bernoulli(&mut rng, 0.0));
            assert!(bernoulli(&mut rng, 1.0));
        }
    }
}
