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
