//! Per-epoch sample order, split across ranks.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Order, RankSplit};
use crate::{Error, Result};

/// The ordering and rank split of an epoch's records.
///
/// The default is the training setting for one rank: shuffled, seed 0, batches of 1, keeping the
/// short last batch, [`Order::Shuffle`] and [`RankSplit::Pad`].
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
    /// Order of a shuffled epoch. It is ignored when `shuffle` is false, but still validated.
    #[serde(default)]
    pub order: Order,
    /// Split of an epoch that does not divide by `world_size` into equal shares.
    #[serde(default)]
    pub rank_split: RankSplit,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            seed: 0,
            shuffle: true,
            batch_size: 1,
            drop_last: false,
            rank: 0,
            world_size: 1,
            order: Order::Shuffle,
            rank_split: RankSplit::Pad,
        }
    }
}

impl PlanOptions {
    /// Options for one rank, in stored order, keeping the short last batch: the evaluation
    /// setting.
    pub fn sequential(batch_size: usize) -> Self {
        PlanOptions { shuffle: false, batch_size, ..PlanOptions::default() }
    }
}

/// The record indices one rank visits in one epoch, in order, cut into batches.
///
/// The permutation follows [`PlanOptions::order`], driven by ChaCha8 seeded with (seed, epoch),
/// so it depends on nothing else. For `world_size > 1` the permutation is first padded or cut
/// to a multiple of `world_size` as [`PlanOptions::rank_split`] sets, then rank `r` takes
/// positions `r, r + world_size, ...`. Every rank gets the same number of samples and so the
/// same number of batches. The union over ranks is the whole epoch under [`RankSplit::Pad`],
/// and the epoch minus its last `len % world_size` permuted records under [`RankSplit::Drop`].
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
    /// `0..world_size`, a zero block or window size of [`Order::Blocks`], or more than
    /// `u32::MAX` records.
    pub fn new(len: usize, epoch: u64, options: &PlanOptions) -> Result<Self> {
        let PlanOptions {
            seed,
            shuffle,
            batch_size,
            drop_last,
            rank,
            world_size,
            order,
            rank_split,
        } = *options;
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        if world_size == 0 || rank >= world_size {
            return Err(Error::InvalidArgument(format!(
                "rank {rank} is outside 0..{world_size} (world size)"
            )));
        }
        order.validate()?;
        let len32 = u32::try_from(len).map_err(|_| {
            Error::InvalidArgument(format!("{len} records exceed the loader limit of {}", u32::MAX))
        })?;

        let permutation = if shuffle {
            order.permutation(len32, &mut plan_rng(seed, epoch))
        } else {
            (0..len32).collect()
        };
        let indices = rank_split.share(permutation, rank, world_size);

        let batches =
            if drop_last { indices.len() / batch_size } else { indices.len().div_ceil(batch_size) };
        Ok(EpochPlan { indices, batch_size, batches })
    }

    /// Record indices this rank visits in order, including those of a dropped short last batch.
    pub fn indices(&self) -> &[u32] {
        &self.indices
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
        PlanOptions { seed: 7, batch_size, rank, world_size, ..PlanOptions::default() }
    }

    fn blocks(batch_size: usize, block: usize, window: usize) -> PlanOptions {
        PlanOptions { order: Order::Blocks { block, window }, ..train(batch_size, 0, 1) }
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
    fn shuffle_order_unchanged_by_default() {
        // The default order must keep the permutation of plans made before `order` existed, so
        // that runs resume with the same batches: a plain Fisher-Yates shuffle of 0..len.
        let plan = EpochPlan::new(100, 4, &train(8, 0, 1)).unwrap();
        let mut expected: Vec<u32> = (0..100).collect();
        rand::seq::SliceRandom::shuffle(expected.as_mut_slice(), &mut plan_rng(7, 4));
        assert_eq!(plan.indices(), expected.as_slice());
    }

    #[test]
    fn blocks_plan_deterministic_per_epoch() {
        for (len, block, window) in [(1000, 16, 4), (1000, 1, 1), (37, 100, 1), (500, 7, 500)] {
            let a = EpochPlan::new(len, 0, &blocks(8, block, window)).unwrap();
            let again = EpochPlan::new(len, 0, &blocks(8, block, window)).unwrap();
            let b = EpochPlan::new(len, 1, &blocks(8, block, window)).unwrap();
            let label = format!("len {len} block {block} window {window}");
            assert_eq!(a.indices, again.indices, "{label}");
            assert_ne!(a.indices, b.indices, "{label}");

            let mut sorted = a.indices.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..len as u32).collect::<Vec<u32>>(), "{label}");
        }
    }

    #[test]
    fn blocks_ignored_without_shuffle() {
        let options = PlanOptions { shuffle: false, ..blocks(4, 3, 2) };
        let plan = EpochPlan::new(10, 0, &options).unwrap();
        assert_eq!(plan.indices(), (0..10).collect::<Vec<u32>>().as_slice());
    }

    #[test]
    fn rank_splits_equal_batches_and_union() {
        for len in [0usize, 1, 2, 3, 7, 100, 101, 1003] {
            for order in [Order::Shuffle, Order::Blocks { block: 8, window: 3 }] {
                for rank_split in [RankSplit::Pad, RankSplit::Drop] {
                    let options = |rank, world_size| PlanOptions {
                        order,
                        rank_split,
                        ..train(8, rank, world_size)
                    };
                    let single = EpochPlan::new(len, 2, &options(0, 1)).unwrap();
                    for world in 1..=4 {
                        let label = format!("len {len} {order:?} {rank_split:?} world {world}");
                        let plans: Vec<EpochPlan> = (0..world)
                            .map(|r| EpochPlan::new(len, 2, &options(r, world)).unwrap())
                            .collect();
                        let counts: Vec<usize> = plans.iter().map(EpochPlan::batches).collect();
                        assert!(counts.iter().all(|&c| c == counts[0]), "{label}: {counts:?}");
                        let sizes: Vec<usize> = plans.iter().map(|p| p.indices.len()).collect();
                        assert!(sizes.iter().all(|&s| s == sizes[0]), "{label}: {sizes:?}");

                        let mut union: Vec<u32> =
                            plans.iter().flat_map(|p| p.indices.clone()).collect();
                        let visits = union.len();
                        union.sort_unstable();
                        union.dedup();
                        let kept_len = match rank_split {
                            RankSplit::Pad => len,
                            RankSplit::Drop => len - len % world,
                        };
                        let mut expected = single.indices[..kept_len].to_vec();
                        expected.sort_unstable();
                        assert_eq!(union, expected, "{label}");
                        match rank_split {
                            RankSplit::Pad => {
                                assert_eq!(visits, len.div_ceil(world) * world, "{label}")
                            }
                            RankSplit::Drop => assert_eq!(visits, kept_len, "{label}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_options() {
        assert!(EpochPlan::new(10, 0, &train(0, 0, 1)).is_err());
        assert!(EpochPlan::new(10, 0, &train(4, 2, 2)).is_err());
        assert!(EpochPlan::new(10, 0, &train(4, 0, 0)).is_err());
        assert!(EpochPlan::new(10, 0, &blocks(4, 0, 2)).is_err());
        assert!(EpochPlan::new(10, 0, &blocks(4, 2, 0)).is_err());
    }

    #[test]
    fn options_default_fields_from_json() {
        let json = r#"{"seed": 1, "shuffle": true, "batch_size": 2, "drop_last": false,
                       "rank": 0, "world_size": 1}"#;
        let options: PlanOptions = serde_json::from_str(json).unwrap();
        assert_eq!(options.order, Order::Shuffle);
        assert_eq!(options.rank_split, RankSplit::Pad);

        let json = r#"{"seed": 1, "shuffle": true, "batch_size": 2, "drop_last": false,
                       "rank": 0, "world_size": 1, "rank_split": "drop",
                       "order": {"kind": "blocks", "block": 64, "window": 8}}"#;
        let options: PlanOptions = serde_json::from_str(json).unwrap();
        assert_eq!(options.order, Order::Blocks { block: 64, window: 8 });
        assert_eq!(options.rank_split, RankSplit::Drop);
    }
}
