//! Per-epoch sample order, split across ranks.

use rand::seq::SliceRandom;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// The ordering and rank split of an epoch's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlanOptions {
    /// Seed of the run; with the epoch it fixes the permutation.
    pub seed: u64,
    /// Shuffle each epoch (training) or keep the stored order (evaluation).
    pub shuffle: bool,
    /// Samples per batch on each rank.
    pub batch_size: usize,
    /// Drop the last batch when it would be smaller than `batch_size`; otherwise it is short.
    pub drop_last: bool,
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks sharing each epoch.
    pub world_size: usize,
}

impl PlanOptions {
    /// Options for one rank, in stored order, keeping the short last batch: the evaluation
    /// setting.
    pub fn sequential(batch_size: usize) -> Self {
        PlanOptions {
            seed: 0,
            shuffle: false,
            batch_size,
            drop_last: false,
            rank: 0,
            world_size: 1,
        }
    }
}

/// The record indices one rank visits in one epoch, in order, cut into batches.
///
/// The permutation is a Fisher-Yates shuffle driven by ChaCha8 seeded with (seed, epoch), so it
/// depends on nothing else. For `world_size > 1` the permutation is first padded by repeating
/// its head until its length divides by `world_size` (as PyTorch's `DistributedSampler` does),
/// then rank `r` takes positions `r, r + world_size, ...`; every rank gets the same number of
/// samples and so the same number of batches, and the union over ranks is the whole epoch.
#[derive(Clone, Debug)]
pub struct EpochPlan {
    indices: Vec<u32>,
    batch_size: usize,
    batches: usize,
}

/// Domain separator of the permutation key, so that it never coincides with a sample key.
const PLAN_STREAM: u64 = u64::MAX;

impl EpochPlan {
    /// Builds the plan of `epoch` over `len` records.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero batch size, a zero world size, a rank outside
    /// `0..world_size`, or more than `u32::MAX` records.
    pub fn new(len: usize, epoch: u64, options: &PlanOptions) -> Result<Self> {
        let PlanOptions { seed, shuffle, batch_size, drop_last, rank, world_size } = *options;
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        if world_size == 0 || rank >= world_size {
            return Err(Error::InvalidArgument(format!(
                "rank {rank} is outside 0..{world_size} (world size)"
            )));
        }
        let len32 = u32::try_from(len).map_err(|_| {
            Error::InvalidArgument(format!("{len} records exceed the loader limit of {}", u32::MAX))
        })?;

        let mut order: Vec<u32> = (0..len32).collect();
        if shuffle {
            order.shuffle(&mut plan_rng(seed, epoch));
        }

        let per_rank = len.div_ceil(world_size);
        let indices: Vec<u32> = if world_size == 1 {
            order
        } else {
            (0..per_rank).map(|k| order[(rank + k * world_size) % len.max(1)]).collect()
        };

        let batches =
            if drop_last { indices.len() / batch_size } else { indices.len().div_ceil(batch_size) };
        Ok(EpochPlan { indices, batch_size, batches })
    }

    /// Number of batches of this rank in the epoch.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Number of samples this rank visits, counting only kept batches.
    pub fn samples(&self) -> usize {
        self.indices.len().min(self.batches * self.batch_size)
    }

    /// Record indices of batch `batch` (short for the last batch unless `drop_last`).
    ///
    /// # Panics
    ///
    /// When `batch >= self.batches()`.
    pub fn batch(&self, batch: usize) -> &[u32] {
        assert!(batch < self.batches, "batch {batch} out of range 0..{}", self.batches);
        let start = batch * self.batch_size;
        let end = (start + self.batch_size).min(self.indices.len());
        &self.indices[start..end]
    }
}

fn plan_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&PLAN_STREAM.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(batch_size: usize, rank: usize, world_size: usize) -> PlanOptions {
        PlanOptions { seed: 7, shuffle: true, batch_size, drop_last: false, rank, world_size }
    }

    #[test]
    fn same_epoch_same_order() {
        let a = EpochPlan::new(1000, 3, &train(32, 0, 1)).unwrap();
        let b = EpochPlan::new(1000, 3, &train(32, 0, 1)).unwrap();
        assert_eq!(a.indices, b.indices);
    }

    #[test]
    fn epochs_differ_and_are_permutations() {
        let a = EpochPlan::new(1000, 0, &train(32, 0, 1)).unwrap();
        let b = EpochPlan::new(1000, 1, &train(32, 0, 1)).unwrap();
        assert_ne!(a.indices, b.indices);

        let mut sorted = a.indices.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn sequential_keeps_order_and_short_batch() {
        let plan = EpochPlan::new(10, 5, &PlanOptions::sequential(4)).unwrap();
        assert_eq!(plan.batches(), 3);
        assert_eq!(plan.batch(0), &[0, 1, 2, 3]);
        assert_eq!(plan.batch(2), &[8, 9]);
    }

    #[test]
    fn drop_last_drops_short_batch() {
        let options = PlanOptions { drop_last: true, ..PlanOptions::sequential(4) };
        let plan = EpochPlan::new(10, 0, &options).unwrap();
        assert_eq!(plan.batches(), 2);
        assert_eq!(plan.samples(), 8);
    }

    #[test]
    fn ranks_get_equal_batches_and_cover_epoch() {
        for len in [1usize, 7, 100, 101, 1003] {
            let single = EpochPlan::new(len, 2, &train(8, 0, 1)).unwrap();
            for world in 1..=4 {
                let plans: Vec<EpochPlan> = (0..world)
                    .map(|r| EpochPlan::new(len, 2, &train(8, r, world)).unwrap())
                    .collect();
                let counts: Vec<usize> = plans.iter().map(EpochPlan::batches).collect();
                assert!(
                    counts.iter().all(|&c| c == counts[0]),
                    "len {len} world {world}: {counts:?}"
                );

                let mut union: Vec<u32> = plans.iter().flat_map(|p| p.indices.clone()).collect();
                union.sort_unstable();
                union.dedup();
                let mut expected = single.indices.clone();
                expected.sort_unstable();
                assert_eq!(union, expected, "len {len} world {world}");
            }
        }
    }

    #[test]
    fn rejects_bad_options() {
        assert!(EpochPlan::new(10, 0, &train(0, 0, 1)).is_err());
        assert!(EpochPlan::new(10, 0, &train(4, 2, 2)).is_err());
        assert!(EpochPlan::new(10, 0, &train(4, 0, 0)).is_err());
    }
}
