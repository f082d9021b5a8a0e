//! A reusable batch buffer.

use std::time::Duration;

use super::{Element, Layout, SampleShape};
use crate::{Error, Result};

/// One batch of augmented samples: `f32` values (or `u8` pixels) and `i64` labels, ready to be
/// wrapped as tensors. The buffers are allocated once per loader and refilled for every batch.
///
/// The pixels hold [`len`](Self::len) samples one after the other, each made of
/// `sample_shape.views` views one after the other (ten-crop evaluation has 10), each view
/// `channels x height x width` in [`Layout::Nchw`] or `height x width x channels` in
/// [`Layout::Nhwc`]. [`shape`](Self::shape) gives them as one 4-d tensor of
/// `len * views` images.
#[derive(Debug)]
pub struct Batch {
    /// Position of this batch in its epoch plan.
    pub position: usize,
    /// Epoch the batch belongs to.
    pub epoch: u64,
    /// Output shape of one sample.
    pub sample_shape: SampleShape,
    /// Memory order of each view.
    pub layout: Layout,
    /// Element type of the values: [`pixels`](Self::pixels) for f32, [`bytes`](Self::bytes)
    /// for u8.
    pub element: Element,
    /// Record index of each sample, in batch order.
    pub indices: Vec<u32>,
    /// Label of each sample, in batch order.
    pub labels: Vec<i64>,
    /// How long the consumer waited for this batch after asking for it.
    pub waited: Duration,
    /// How long the loader took to decode and augment this batch.
    pub fill_time: Duration,
    pixels: Vec<f32>,
    bytes: Vec<u8>,
}

impl Batch {
    /// Allocates a batch for up to `capacity` samples of `sample_shape`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the size when the memory cannot be allocated (a huge
    /// crop or batch size), instead of aborting the process.
    pub fn with_capacity(
        capacity: usize,
        sample_shape: SampleShape,
        layout: Layout,
        element: Element,
    ) -> Result<Self> {
        let values = capacity.checked_mul(sample_shape.len());
        let too_large = || {
            let size = |bytes: usize| format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30));
            let width = match element {
                Element::F32 => 4,
                Element::U8 => 1,
            };
            Error::InvalidArgument(format!(
                "cannot allocate a batch of {capacity} samples of {}x{}x{}x{} values ({})",
                sample_shape.views,
                sample_shape.channels,
                sample_shape.height,
                sample_shape.width,
                values.map_or("more than the address space".into(), |v| size(v * width)),
            ))
        };
        let values = values.ok_or_else(too_large)?;
        let (pixels, bytes) = match element {
            Element::F32 => (zeroed(values).ok_or_else(too_large)?, Vec::new()),
            Element::U8 => (Vec::new(), zeroed(values).ok_or_else(too_large)?),
        };
        Ok(Batch {
            position: 0,
            epoch: 0,
            sample_shape,
            layout,
            element,
            indices: Vec::with_capacity(capacity),
            labels: Vec::with_capacity(capacity),
            waited: Duration::ZERO,
            fill_time: Duration::ZERO,
            pixels,
            bytes,
        })
    }

    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns whether the batch contains no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of `f32` values in one sample (all its views).
    pub fn sample_len(&self) -> usize {
        self.sample_shape.len()
    }

    /// Shape of the filled part as `len * views` images: `[N, C, H, W]` for
    /// [`Layout::Nchw`], `[N, H, W, C]` for [`Layout::Nhwc`].
    pub fn shape(&self) -> [usize; 4] {
        let SampleShape { views, channels, height, width } = self.sample_shape;
        let images = self.len() * views;
        match self.layout {
            Layout::Nchw => [images, channels, height, width],
            Layout::Nhwc => [images, height, width, channels],
        }
    }

    /// Returns the filled values of an [`Element::F32`] batch (empty for a u8 batch).
    pub fn pixels(&self) -> &[f32] {
        let len = (self.len() * self.sample_len()).min(self.pixels.len());
        &self.pixels[..len]
    }

    /// Returns the filled pixels of an [`Element::U8`] batch (empty for an f32 batch).
    pub fn bytes(&self) -> &[u8] {
        let len = (self.len() * self.sample_len()).min(self.bytes.len());
        &self.bytes[..len]
    }

    /// Room for `n` samples' values in the batch's element type, to be filled by the loader.
    pub(crate) fn values_mut(&mut self, n: usize) -> Values<'_> {
        let len = n * self.sample_len();
        match self.element {
            Element::F32 => Values::F32(&mut self.pixels[..len]),
            Element::U8 => Values::U8(&mut self.bytes[..len]),
        }
    }
}

/// The writable values of a batch.
pub(crate) enum Values<'a> {
    F32(&'a mut [f32]),
    U8(&'a mut [u8]),
}

/// Returns `len` zeroed values, or `None` when the allocation fails.
///
/// The fallible reservation only proves the size can be allocated. The values themselves come
/// from `vec!`, whose zeroed allocation leaves the pages untouched until a batch is filled, so
/// a loader built only to check its settings costs no resident memory.
fn zeroed<T: Clone + Default>(len: usize) -> Option<Vec<T>> {
    Vec::<T>::new().try_reserve_exact(len).ok()?;
    Some(vec![T::default(); len])
}
