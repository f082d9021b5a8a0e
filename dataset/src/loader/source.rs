//! The loader's input: records of raw pixels or JPEG files, with labels.

use crate::shard::{Encoding, Split};
use crate::{Error, Result};

/// One stored record as the loader reads it: its payload and its decoded shape.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// u8 HWC pixels for [`Encoding::Raw`], the JPEG file for [`Encoding::Jpeg`].
    pub bytes: &'a [u8],
    /// Height of the decoded image, in pixels.
    pub height: usize,
    /// Width of the decoded image, in pixels.
    pub width: usize,
    /// Channels of the decoded image.
    pub channels: usize,
    /// Encoding of the pixels in `bytes`.
    pub encoding: Encoding,
}

/// Random-access records of one split, with labels.
pub trait SampleSource: Sync {
    /// Number of records.
    fn len(&self) -> usize;

    /// Returns whether there is no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `index`. Callers keep `index < len()`.
    ///
    /// # Errors
    ///
    /// A source may check the record (a checksum, its size) and fail with an error that names
    /// the record.
    fn record(&self, index: usize) -> Result<Record<'_>>;

    /// Label of record `index`.
    fn label(&self, index: usize) -> u32;

    /// Returns the shape `(height, width, channels)` every record has, or `None` when records
    /// differ (the default). A loader then accepts only augmentations whose output shape does
    /// not depend on the input's.
    fn fixed_shape(&self) -> Option<(usize, usize, usize)> {
        None
    }

    /// Names record `index` in error messages (its file and place where the source has them).
    fn describe(&self, index: usize) -> String {
        format!("record {index}")
    }
}

/// A shard split serves its records as stored: fixed-layout raw records, and variable-layout
/// raw or JPEG records, each with its own shape.
///
/// Raw records are served without their checksum check, which would cost more than the
/// augmentation of a small image (`shardify verify` checks them all). JPEG records are checked
/// (CRC-32C, a few microseconds against a decode of a millisecond or more), so that a damaged
/// file is reported with its shard and record instead of decoding to wrong pixels.
impl SampleSource for Split {
    fn len(&self) -> usize {
        Split::len(self)
    }

    fn record(&self, index: usize) -> Result<Record<'_>> {
        let meta = self.meta(index);
        let bytes = match meta.encoding {
            Encoding::Raw => Split::record(self, index),
            Encoding::Jpeg => self.checked_record(index)?,
        };
        let record = Record {
            bytes,
            height: meta.height as usize,
            width: meta.width as usize,
            channels: usize::from(meta.channels),
            encoding: meta.encoding,
        };
        if record.encoding == Encoding::Raw
            && record.bytes.len() != record.height * record.width * record.channels
        {
            return Err(Error::InvalidArgument(format!(
                "{}: {} bytes for a {}x{}x{} raw image",
                self.describe_record(index),
                record.bytes.len(),
                record.height,
                record.width,
                record.channels
            )));
        }
        Ok(record)
    }

    fn label(&self, index: usize) -> u32 {
        Split::label(self, index)
    }

    fn describe(&self, index: usize) -> String {
        self.describe_record(index)
    }

    fn fixed_shape(&self) -> Option<(usize, usize, usize)> {
        Split::fixed_shape(self).ok()
    }
}

/// The records of another source at chosen indices, in the order given: a training subset,
/// or the folds of a cross-validation split. Record `i` of the subset is record
/// `indices[i]` of the source, and errors name the source's record.
#[derive(Clone, Debug)]
pub struct Subset<'a, S: SampleSource> {
    source: &'a S,
    indices: Vec<usize>,
}

impl<'a, S: SampleSource> Subset<'a, S> {
    /// Selects `indices` of `source`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the first index past the source's end.
    pub fn new(source: &'a S, indices: Vec<usize>) -> Result<Self> {
        if let Some(&index) = indices.iter().find(|&&index| index >= source.len()) {
            return Err(Error::InvalidArgument(format!(
                "subset index {index} is past the end of a source of {} records",
                source.len()
            )));
        }
        Ok(Subset { source, indices })
    }

    /// Returns the source's index of every record of the subset.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Returns the source the subset selects from.
    pub fn source(&self) -> &'a S {
        self.source
    }
}

impl<S: SampleSource> SampleSource for Subset<'_, S> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn record(&self, index: usize) -> Result<Record<'_>> {
        self.source.record(self.indices[index])
    }

    fn label(&self, index: usize) -> u32 {
        self.source.label(self.indices[index])
    }

    fn fixed_shape(&self) -> Option<(usize, usize, usize)> {
        self.source.fixed_shape()
    }

    fn describe(&self, index: usize) -> String {
        self.source.describe(self.indices[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Numbers(usize);

    impl SampleSource for Numbers {
        fn len(&self) -> usize {
            self.0
        }

        fn record(&self, _index: usize) -> Result<Record<'_>> {
            Ok(Record { bytes: &[], height: 0, width: 0, channels: 1, encoding: Encoding::Raw })
        }

        fn label(&self, index: usize) -> u32 {
            index as u32 * 10
        }
    }

    #[test]
    fn subset_maps_labels_and_names_through_its_indices() {
        let source = Numbers(5);
        let subset = Subset::new(&source, vec![4, 0, 2]).unwrap();
        assert_eq!(subset.len(), 3);
        let labels: Vec<u32> = (0..3).map(|i| subset.label(i)).collect();
        assert_eq!(labels, [40, 0, 20]);
        assert_eq!(subset.describe(0), "record 4");
    }

    #[test]
    fn subset_rejects_an_index_past_the_end() {
        let source = Numbers(5);
        let error = Subset::new(&source, vec![1, 5]).unwrap_err().to_string();
        assert!(error.contains("subset index 5"), "{error}");
        assert!(error.contains("5 records"), "{error}");
    }
}
