//! Shard splits as loader sources.

use super::SampleSource;
use crate::shard::Split;

/// A fixed-layout split serves its raw records as they are stored.
///
/// A variable-layout split has no one shape. It reports the shape `(0, 0, channels)`, so that
/// [`super::Loader::new`] rejects it with a zero-dimension error before any record is read.
/// Call [`Split::fixed_shape`] first for an error that names the split and its layout.
impl SampleSource for Split {
    fn len(&self) -> usize {
        Split::len(self)
    }

    fn shape(&self) -> (usize, usize, usize) {
        let channels = self.schema().channels as usize;
        self.fixed_shape().unwrap_or((0, 0, channels))
    }

    fn image(&self, index: usize) -> &[u8] {
        self.record(index)
    }

    fn label(&self, index: usize) -> u32 {
        Split::label(self, index)
    }
}
