//! Shard splits as loader sources.

use super::SampleSource;
use crate::shard::Split;

impl SampleSource for Split {
    fn len(&self) -> usize {
        Split::len(self)
    }

    fn shape(&self) -> (usize, usize, usize) {
        let schema = self.schema();
        (schema.height as usize, schema.width as usize, schema.channels as usize)
    }

    fn image(&self, index: usize) -> &[u8] {
        self.record(index)
    }

    fn label(&self, index: usize) -> u32 {
        Split::label(self, index)
    }
}
