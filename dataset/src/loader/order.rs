//! Epoch orderings, the rank split, and a measure of how well an order mixes classes.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::EpochPlan;
use crate::{Error, Result};

/// The order in which a shuffled epoch visits the stored records.
///
/// Records are stored in shard order, so consecutive indices are consecutive bytes on disk.
/// `Shuffle` visits them in a uniform random permutation, which mixes classes best but reads
/// each record from anywhere in the data set. That costs a seek per record when the data set
/// does not fit in the page cache and the storage favours sequential reads. `Blocks` trades
/// some mixing for sequential reads.
///
/// In JSON: `{"kind": "shuffle"}` or `{"kind": "blocks", "block": 256, "window": 64}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Order {
    /// A uniform random permutation of all records (Fisher-Yates).
    #[default]
    Shuffle,
    /// A page-aware quasi-random order with bounded memory.
    ///
    /// The stored order is cut into runs of `block` consecutive records (the last run may be
    /// shorter) and the runs are shuffled. A sliding window then keeps `window` runs open. Each
    /// next record is drawn uniformly from the records left in the open runs, and when a run is
    /// used up, the next run in the shuffled run order opens. This is a shuffle buffer
    /// like those of tf.data and WebDataset, but its unit is a run, so at most `window` runs are
    /// open at any time.
    ///
    /// Memory bound: the open runs hold at most `window * block` records, in `window`
    /// contiguous byte ranges of the shards. Only the pages of those records need to stay
    /// cached for every run to be read from storage once per epoch, sequentially. The plan
    /// itself still stores 4 bytes per record, as for `Shuffle`.
    ///
    /// Trade-off: a batch of `b` records draws from at most `window * block` records of
    /// `window` runs, and a run of a class-sorted split often contains one class. Small windows
    /// therefore give batches with few classes; use [`class_mix`] to measure it. With
    /// `window = 1` each run is read whole, with its records shuffled. When `window * block`
    /// covers the split, the order is a uniform random permutation, though not the one
    /// `Shuffle` draws.
    Blocks {
        /// Records per run, at least 1.
        block: usize,
        /// Runs open at once, at least 1.
        window: usize,
    },
}

impl Order {
    /// Checks that the block and window sizes are at least 1.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the zero size.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Order::Shuffle => Ok(()),
            Order::Blocks { block, window } => {
                if block == 0 || window == 0 {
                    return Err(Error::InvalidArgument(format!(
                        "invalid order blocks: block {block} and window {window} must both be \
                         at least 1"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Permutes `0..len` with `rng` in this order.
    ///
    /// # Panics
    ///
    /// When a `Blocks` size is zero, which [`Order::validate`] rejects first.
    pub(crate) fn permutation(&self, len: u32, rng: &mut ChaCha8Rng) -> Vec<u32> {
        match *self {
            Order::Shuffle => {
                let mut order: Vec<u32> = (0..len).collect();
                order.shuffle(rng);
                order
            }
            Order::Blocks { block, window } => blocks_permutation(len, block, window, rng),
        }
    }
}

/// Draws the `Blocks` order: shuffled runs of `block` records through a window of `window` runs.
fn blocks_permutation(len: u32, block: usize, window: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    assert!(block > 0, "block {block} must be at least 1");
    assert!(window > 0, "window {window} must be at least 1");
    let len = len as usize;
    let runs_total = len.div_ceil(block);
    let mut runs: Vec<usize> = (0..runs_total).collect();
    runs.shuffle(rng);
    // A run starts below `len`, so only its end can overflow.
    let run_range =
        |run: usize| (run * block) as u32..(run + 1).saturating_mul(block).min(len) as u32;

    // `remaining[run]` counts the records of an open run that are still in `buffer`.
    let mut remaining = vec![0usize; runs_total];
    let mut buffer: Vec<u32> = Vec::with_capacity(block.saturating_mul(window).min(len));
    let mut next_run = runs.iter().copied();
    for run in next_run.by_ref().take(window) {
        remaining[run] = run_range(run).len();
        buffer.extend(run_range(run));
    }

    let mut order = Vec::with_capacity(len);
    while !buffer.is_empty() {
        // The buffer never contains more than `len <= u32::MAX` records, so the draw is a u32 one,
        // which gives the same sequence on 32-bit and 64-bit targets.
        let pick = rng.random_range(0..buffer.len() as u32) as usize;
        let record = buffer.swap_remove(pick);
        order.push(record);
        let run = record as usize / block;
        remaining[run] -= 1;
        if remaining[run] == 0 {
            if let Some(run) = next_run.next() {
                remaining[run] = run_range(run).len();
                buffer.extend(run_range(run));
            }
        }
    }
    order
}

/// Split of an epoch into equal shares per rank when its length does not divide by the world
/// size.
///
/// Both ways give every rank the same number of samples, and so the same number of batches,
/// which collective operations such as all-reduce need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankSplit {
    /// Pads the permuted epoch by repeating its head until its length divides by the world size,
    /// as PyTorch's `DistributedSampler` does. The union over ranks is the whole epoch, and up
    /// to `world_size - 1` records are visited twice.
    #[default]
    Pad,
    /// Drops the last `len % world_size` records of the permuted epoch. The union over ranks is
    /// the epoch minus those at most `world_size - 1` records, which differ from epoch to epoch
    /// when the order is shuffled. With fewer records than ranks every rank gets none.
    Drop,
}

impl RankSplit {
    /// Returns the records of `rank` out of `world_size`: positions `rank, rank + world_size, ...`
    /// of `order` after padding or dropping its tail.
    pub(crate) fn share(&self, order: Vec<u32>, rank: usize, world_size: usize) -> Vec<u32> {
        if world_size == 1 {
            return order;
        }
        let len = order.len();
        let per_rank = match self {
            RankSplit::Pad => len.div_ceil(world_size),
            RankSplit::Drop => len / world_size,
        };
        // Under `Pad`, position `len + k` repeats position `k`. `len` is nonzero whenever
        // `per_rank` is, so the modulo only guards the empty epoch.
        (0..per_rank).map(|k| order[(rank + k * world_size) % len.max(1)]).collect()
    }
}

/// Class mixing of the batches of an [`EpochPlan`], from [`class_mix`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassMix {
    /// Number of batches measured.
    pub batches: usize,
    /// Mean number of distinct classes in a batch.
    pub mean_distinct: f64,
    /// Mean number of distinct classes that a uniform random draw of each batch's size from the
    /// records of the plan's batches would give, computed exactly.
    pub expected_distinct: f64,
    /// Mean share of a batch's samples that belong to its most frequent class, in `0..=1`.
    pub mean_top_share: f64,
}

/// Measures how well `plan` mixes classes within its batches, with `label` giving the class of
/// a record index.
///
/// `expected_distinct` is the reference: the same batches drawn uniformly without replacement
/// from the records of the plan's batches, where repeated records of a padded plan count as
/// separate records. For a batch of `b` out of `N` records, of which `n_c` have class `c`, it
/// is the sum over classes of `1 - C(N - n_c, b) / C(N, b)`, the probability that class `c`
/// appears (hypergeometric). A plan without batches gives zeros.
pub fn class_mix(plan: &EpochPlan, label: impl Fn(u32) -> u32) -> ClassMix {
    let batches = plan.batches();
    if batches == 0 {
        return ClassMix {
            batches,
            mean_distinct: 0.0,
            expected_distinct: 0.0,
            mean_top_share: 0.0,
        };
    }

    let visited = &plan.indices()[..plan.samples()];
    let mut labels: Vec<u32> = visited.iter().map(|&index| label(index)).collect();
    labels.sort_unstable();
    let class_counts = run_lengths(&labels);
    let population = labels.len();

    let mut distinct_sum = 0.0;
    let mut expected_sum = 0.0;
    let mut top_share_sum = 0.0;
    // Batch sizes take at most two values (full and the short last one), so cache by size.
    let mut expected_by_size: Vec<(usize, f64)> = Vec::new();
    let mut batch_labels = Vec::new();
    for batch in 0..batches {
        let indices = plan.batch(batch);
        batch_labels.clear();
        batch_labels.extend(indices.iter().map(|&index| label(index)));
        batch_labels.sort_unstable();
        let counts = run_lengths(&batch_labels);
        let top = counts.iter().copied().max().unwrap_or(0);
        distinct_sum += counts.len() as f64;
        top_share_sum += top as f64 / indices.len().max(1) as f64;

        let size = indices.len();
        let expected = match expected_by_size.iter().find(|(cached, _)| *cached == size) {
            Some(&(_, value)) => value,
            None => {
                let value = expected_distinct(&class_counts, population, size);
                expected_by_size.push((size, value));
                value
            }
        };
        expected_sum += expected;
    }

    let n = batches as f64;
    ClassMix {
        batches,
        mean_distinct: distinct_sum / n,
        expected_distinct: expected_sum / n,
        mean_top_share: top_share_sum / n,
    }
}

/// Lengths of the runs of equal values in sorted `values`.
fn run_lengths(values: &[u32]) -> Vec<usize> {
    values.chunk_by(|a, b| a == b).map(<[u32]>::len).collect()
}

/// Expected number of distinct classes in `batch` draws without replacement from `population`
/// records with the given class counts.
fn expected_distinct(class_counts: &[usize], population: usize, batch: usize) -> f64 {
    class_counts
        .iter()
        .map(|&count| {
            // P(class absent) = C(N - n, b) / C(N, b) = prod_{i < b} (N - n - i) / (N - i).
            let others = population - count;
            if batch > others {
                return 1.0;
            }
            let absent: f64 =
                (0..batch).map(|i| (others - i) as f64 / (population - i) as f64).product();
            1.0 - absent
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::PlanOptions;
    use rand_chacha::rand_core::SeedableRng;

    fn blocks(len: u32, block: usize, window: usize, seed: u64) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Order::Blocks { block, window }.permutation(len, &mut rng)
    }

    #[test]
    fn blocks_is_permutation() {
        for len in [0u32, 1, 2, 7, 64, 100, 1001] {
            for block in [1usize, 3, 8, 64, 2000] {
                for window in [1usize, 2, 5, 1000] {
                    let mut order = blocks(len, block, window, 5);
                    order.sort_unstable();
                    assert_eq!(
                        order,
                        (0..len).collect::<Vec<u32>>(),
                        "len {len} block {block} window {window}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_window_one_reads_whole_runs() {
        let block = 10;
        let order = blocks(95, block, 1, 3);
        // Each run of 10 (the last one of 5) appears as one contiguous stretch of the order.
        let mut runs: Vec<usize> = order.iter().map(|&record| record as usize / block).collect();
        runs.dedup();
        assert_eq!(runs.len(), 10, "runs split apart: {runs:?}");
        assert_ne!(runs, (0..10).collect::<Vec<usize>>(), "runs keep their stored order");
        assert_ne!(order, (0..95).collect::<Vec<u32>>(), "window 1 still shuffles");
    }

    #[test]
    fn blocks_keeps_at_most_window_runs_open() {
        let (len, block, window) = (1000u32, 16usize, 4usize);
        let order = blocks(len, block, window, 9);
        let runs = (len as usize).div_ceil(block);
        let mut first = vec![usize::MAX; runs];
        let mut last = vec![0usize; runs];
        for (position, &record) in order.iter().enumerate() {
            let run = record as usize / block;
            first[run] = first[run].min(position);
            last[run] = position;
        }
        for position in 0..order.len() {
            let open = (0..runs).filter(|&r| first[r] <= position && position <= last[r]).count();
            assert!(open <= window, "position {position}: {open} runs open, window {window}");
        }
    }

    #[test]
    fn blocks_same_key_same_order() {
        assert_eq!(blocks(500, 16, 4, 21), blocks(500, 16, 4, 21));
        assert_ne!(blocks(500, 16, 4, 21), blocks(500, 16, 4, 22));
    }

    #[test]
    fn blocks_rejects_zero_sizes() {
        assert!(Order::Blocks { block: 0, window: 4 }.validate().is_err());
        assert!(Order::Blocks { block: 4, window: 0 }.validate().is_err());
        assert!(Order::Blocks { block: 1, window: 1 }.validate().is_ok());
    }

    #[test]
    fn order_serde_tags() {
        let json = serde_json::to_string(&Order::Blocks { block: 8, window: 2 }).unwrap();
        assert_eq!(json, r#"{"kind":"blocks","block":8,"window":2}"#);
        let parsed: Order = serde_json::from_str(r#"{"kind":"shuffle"}"#).unwrap();
        assert_eq!(parsed, Order::Shuffle);
        let split: RankSplit = serde_json::from_str(r#""drop""#).unwrap();
        assert_eq!(split, RankSplit::Drop);
    }

    #[test]
    fn share_drop_truncates_tail() {
        let order: Vec<u32> = (0..10).collect();
        assert_eq!(RankSplit::Drop.share(order.clone(), 0, 3), vec![0, 3, 6]);
        assert_eq!(RankSplit::Drop.share(order.clone(), 2, 3), vec![2, 5, 8]);
        assert_eq!(RankSplit::Pad.share(order.clone(), 2, 3), vec![2, 5, 8, 1]);
        assert!(RankSplit::Drop.share(vec![0, 1], 1, 3).is_empty());
    }

    /// Exact expectation by enumerating every batch of `size` positions out of `labels`.
    fn brute_force_distinct(labels: &[u32], size: usize) -> f64 {
        let n = labels.len();
        let (mut total, mut subsets) = (0usize, 0usize);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != size {
                continue;
            }
            let mut chosen: Vec<u32> =
                (0..n).filter(|&i| mask & (1 << i) != 0).map(|i| labels[i]).collect();
            chosen.sort_unstable();
            chosen.dedup();
            total += chosen.len();
            subsets += 1;
        }
        total as f64 / subsets as f64
    }

    #[test]
    fn expected_distinct_matches_brute_force() {
        let labels = [0u32, 0, 0, 1, 1, 2, 3, 3, 3, 3];
        let counts = run_lengths(&labels);
        for size in 0..=labels.len() {
            let exact = expected_distinct(&counts, labels.len(), size);
            let brute = brute_force_distinct(&labels, size);
            assert!((exact - brute).abs() < 1e-12, "size {size}: {exact} vs {brute}");
        }
    }

    fn sorted_plan(order: Order) -> EpochPlan {
        let options = PlanOptions { seed: 3, batch_size: 32, order, ..PlanOptions::default() };
        EpochPlan::new(10_000, 0, &options).unwrap()
    }

    /// 100 classes of 100 records each, stored sorted by class.
    fn sorted_label(index: u32) -> u32 {
        index / 100
    }

    #[test]
    fn class_mix_shuffle_near_expected() {
        let mix = class_mix(&sorted_plan(Order::Shuffle), sorted_label);
        assert_eq!(mix.batches, 313);
        // 32 draws from 100 equal classes give 27.5 classes on average, with a standard
        // deviation of 1.7 per batch, so the mean of 313 batches has a standard error of about
        // 0.1 and the tolerance is five of those. The seed is fixed, so the test is stable.
        assert!(
            (mix.mean_distinct - mix.expected_distinct).abs() < 0.5,
            "mean {} expected {}",
            mix.mean_distinct,
            mix.expected_distinct
        );
        assert!(mix.expected_distinct > 25.0, "expected {}", mix.expected_distinct);
        assert!(mix.mean_top_share < 0.2, "top share {}", mix.mean_top_share);
    }

    #[test]
    fn class_mix_blocks_window_one_is_poor() {
        let order = Order::Blocks { block: 50, window: 1 };
        let mix = class_mix(&sorted_plan(order), sorted_label);
        // A run of 50 contains one class and a batch of 32 spans at most two runs.
        assert!(mix.mean_distinct <= 2.0, "mean {}", mix.mean_distinct);
        assert!(
            mix.mean_distinct < mix.expected_distinct / 5.0,
            "mean {} expected {}",
            mix.mean_distinct,
            mix.expected_distinct
        );
        assert!(mix.mean_top_share > 0.7, "top share {}", mix.mean_top_share);
    }

    #[test]
    fn class_mix_empty_plan_is_zero() {
        let options = PlanOptions { batch_size: 4, drop_last: true, ..PlanOptions::default() };
        let plan = EpochPlan::new(3, 0, &options).unwrap();
        let mix = class_mix(&plan, sorted_label);
        assert_eq!(mix.batches, 0);
        assert_eq!(mix.mean_distinct, 0.0);
    }
}
