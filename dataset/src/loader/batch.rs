//! A reusable batch buffer.

use std::time::Duration;

/// One batch of augmented samples: `f32` NCHW pixels and `i64` labels, ready to be wrapped as
/// tensors. The buffers are allocated once per loader and refilled for every batch.
#[derive(Debug)]
pub struct Batch {
    /// Position of this batch in its epoch plan.
    pub position: usize,
    /// Epoch the batch belongs to.
    pub epoch: u64,
    /// Output shape of one sample: channels, height, width.
    pub sample_shape: [usize; 3],
    /// Record index of each sample, in batch order.
    pub indices: Vec<u32>,
    /// Label of each sample, in batch order.
    pub labels: Vec<i64>,
    /// How long the consumer waited for this batch after asking for it.
    pub waited: Duration,
    pixels: Vec<f32>,
}

impl Batch {
    /// Allocates a batch for up to `capacity` samples of `sample_shape` (C, H, W).
    pub fn with_capacity(capacity: usize, sample_shape: [usize; 3]) -> Self {
        let sample_len = sample_shape.iter().product::<usize>();
        Batch {
            position: 0,
            epoch: 0,
            sample_shape,
            indices: Vec::with_capacity(capacity),
            labels: Vec::with_capacity(capacity),
            waited: Duration::ZERO,
            pixels: vec![0.0; capacity * sample_len],
        }
    }

    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns whether the batch contains no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of `f32` values in one sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// NCHW shape of the filled part.
    pub fn shape(&self) -> [usize; 4] {
        let [c, h, w] = self.sample_shape;
        [self.len(), c, h, w]
    }

    /// Returns the filled pixels, NCHW.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels[..self.len() * self.sample_len()]
    }

    /// Room for `n` samples' pixels, to be filled by the loader.
    pub(crate) fn pixels_mut(&mut self, n: usize) -> &mut [f32] {
        let len = n * self.sample_len();
        &mut self.pixels[..len]
    }
}
