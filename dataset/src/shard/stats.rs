//! Exact per-channel pixel statistics and class counts of a split.

use rayon::prelude::*;

/// Records summed per rayon task; bounds the per-task `u64` sums far below overflow.
const RECORDS_PER_TASK: usize = 256;

/// Per-channel mean and population standard deviation of `u8` HWC pixels, in 0..255 units.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStats {
    /// Mean pixel value per channel.
    pub mean: Vec<f64>,
    /// Population standard deviation per channel (divided by the pixel count).
    pub std: Vec<f64>,
}

/// Integer sums of values and squared values for each channel.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChannelSums {
    sum: Vec<u128>,
    sum_sq: Vec<u128>,
}

impl ChannelSums {
    fn zero(channels: usize) -> Self {
        ChannelSums { sum: vec![0; channels], sum_sq: vec![0; channels] }
    }

    fn add(mut self, other: ChannelSums) -> Self {
        for c in 0..self.sum.len() {
            self.sum[c] += other.sum[c];
            self.sum_sq[c] += other.sum_sq[c];
        }
        self
    }
}

/// Computes the per-channel statistics of `pixels` (records of `record_len` bytes, each a
/// whole number of pixels of `channels` interleaved values) over every pixel.
///
/// Sums are exact integers, so the result does not depend on the rayon thread count. The mean
/// is `sum / n` and the variance `(n * sum_sq - sum^2) / n^2`, each rounded once to `f64`. An
/// empty input gives zeros.
///
/// # Panics
///
/// When `channels` is 0 or does not divide `record_len`.
pub fn channel_stats(pixels: &[u8], channels: usize, record_len: usize) -> ChannelStats {
    assert!(channels > 0, "a pixel needs at least one channel");
    assert!(
        record_len.is_multiple_of(channels),
        "record length {record_len} is not a multiple of {channels}"
    );

    // Tasks split on record boundaries so that every chunk contains whole pixels.
    let task_len = record_len.max(channels) * RECORDS_PER_TASK;
    let sums = pixels
        .par_chunks(task_len)
        .map(|chunk| sum_chunk(chunk, channels))
        .reduce(|| ChannelSums::zero(channels), ChannelSums::add);

    let n = (pixels.len() / channels) as u128;
    let mut stats = ChannelStats { mean: vec![0.0; channels], std: vec![0.0; channels] };
    if n == 0 {
        return stats;
    }

    for c in 0..channels {
        let (sum, sum_sq) = (sums.sum[c], sums.sum_sq[c]);
        stats.mean[c] = sum as f64 / n as f64;

        // `n * sum_sq >= sum^2` (Cauchy-Schwarz), and both stay below 2^128 for any split
        // smaller than 2^56 pixels per channel; beyond that fall back to floating point.
        let variance = match (n.checked_mul(sum_sq), sum.checked_mul(sum)) {
            (Some(a), Some(b)) => (a - b) as f64 / (n as f64 * n as f64),
            _ => (sum_sq as f64 / n as f64 - stats.mean[c] * stats.mean[c]).max(0.0),
        };
        stats.std[c] = variance.sqrt();
    }
    stats
}

fn sum_chunk(chunk: &[u8], channels: usize) -> ChannelSums {
    // At most 256 records of at most 1 GiB each: 2^38 values of at most 255^2 < 2^16 fit u64.
    let mut sum = vec![0u64; channels];
    let mut sum_sq = vec![0u64; channels];

    for pixel in chunk.chunks_exact(channels) {
        for (c, &value) in pixel.iter().enumerate() {
            let value = u64::from(value);
            sum[c] += value;
            sum_sq[c] += value * value;
        }
    }

    ChannelSums {
        sum: sum.into_iter().map(u128::from).collect(),
        sum_sq: sum_sq.into_iter().map(u128::from).collect(),
    }
}

/// Counts the labels per class; `labels` must all be below `classes`.
pub fn class_counts(labels: &[u32], classes: usize) -> Vec<u64> {
    let mut counts = vec![0u64; classes];
    for &label in labels {
        if let Some(count) = counts.get_mut(label as usize) {
            *count += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(pixels: &[u8], channels: usize) -> (Vec<f64>, Vec<f64>) {
        let n = (pixels.len() / channels) as f64;
        let mut mean = vec![0.0; channels];
        let mut std = vec![0.0; channels];
        for c in 0..channels {
            let values: Vec<f64> =
                pixels.iter().skip(c).step_by(channels).map(|&v| v as f64).collect();
            mean[c] = values.iter().sum::<f64>() / n;
            std[c] = (values.iter().map(|v| (v - mean[c]).powi(2)).sum::<f64>() / n).sqrt();
        }
        (mean, std)
    }

    #[test]
    fn matches_two_pass_reference() {
        let pixels: Vec<u8> = (0..3 * 5 * 7 * 600).map(|i: usize| (i * 31 % 256) as u8).collect();

        let stats = channel_stats(&pixels, 3, 5 * 7 * 3);
        let (mean, std) = naive(&pixels, 3);

        for c in 0..3 {
            assert!((stats.mean[c] - mean[c]).abs() < 1e-9, "channel {c}");
            assert!((stats.std[c] - std[c]).abs() < 1e-9, "channel {c}");
        }
    }

    #[test]
    fn known_values() {
        // Channel 0 has the values 0 and 255, channel 1 has 10 and 10.
        let stats = channel_stats(&[0, 10, 255, 10], 2, 2);

        assert_eq!(stats.mean, vec![127.5, 10.0]);
        assert_eq!(stats.std, vec![127.5, 0.0]);
    }

    #[test]
    fn same_bits_with_one_and_two_threads() {
        let pixels: Vec<u8> = (0..28 * 28 * 2000).map(|i: usize| (i * 7919 % 251) as u8).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| channel_stats(&pixels, 1, 28 * 28))
        };

        let one_thread = run(1);
        let two_threads = run(2);

        assert_eq!(one_thread.mean[0].to_bits(), two_threads.mean[0].to_bits());
        assert_eq!(one_thread.std[0].to_bits(), two_threads.std[0].to_bits());
    }

    #[test]
    fn empty_input_gives_zeros() {
        let stats = channel_stats(&[], 3, 12);

        assert_eq!(stats.mean, vec![0.0; 3]);
        assert_eq!(stats.std, vec![0.0; 3]);
    }

    #[test]
    fn class_counts_by_label() {
        assert_eq!(class_counts(&[0, 2, 2, 1, 2], 4), vec![1, 1, 3, 0]);
    }
}
