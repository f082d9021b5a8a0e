//! The contents of a shard set's records: the element type, the encoding, the layout (one
//! shape for every record, or a shape per record) and the per-record shape and flags that each
//! index entry stores.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bit 0 of [`RecordMeta::flags`]: the payload was re-encoded or resized from the source file.
pub const FLAG_REENCODED: u32 = 1;

/// Every flag bit that version 2 defines; readers reject entries with any other bit set.
pub const KNOWN_FLAGS: u32 = FLAG_REENCODED;

/// The element type of a sample's pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// One unsigned byte per channel value, 0..=255 (header code 0).
    U8,
}

impl Dtype {
    /// Returns the code stored in the header.
    pub fn code(self) -> u8 {
        match self {
            Dtype::U8 => 0,
        }
    }

    /// Returns the size of one channel value in bytes.
    pub fn size(self) -> u64 {
        match self {
            Dtype::U8 => 1,
        }
    }
}

/// The encoding of a record's payload. Every record of a shard file has the same encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Uncompressed pixels in HWC order, exactly `height * width * channels` values (code 0).
    Raw,
    /// A baseline or progressive JPEG file that starts with `FF D8` and decodes to the
    /// record's height and width (code 1).
    Jpeg,
}

impl Encoding {
    /// Returns the code stored in the header and in each index entry.
    pub fn code(self) -> u8 {
        match self {
            Encoding::Raw => 0,
            Encoding::Jpeg => 1,
        }
    }

    /// Returns the encoding stored as `code`, or `None` for a code version 2 does not define.
    pub fn from_code(code: u8) -> Option<Encoding> {
        match code {
            0 => Some(Encoding::Raw),
            1 => Some(Encoding::Jpeg),
            _ => None,
        }
    }

    /// Returns the name used in the manifest: `"raw"` or `"jpeg"`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg => "jpeg",
        }
    }
}

/// Whether every record of a set has the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Every record is a raw image of the schema's height, width and channels (IDX, CIFAR).
    /// The header stores that shape.
    Fixed,
    /// Each record has its own height and width, stored in its index entry (photo
    /// collections). The header stores height and width 0.
    Variable,
}

/// The shape and storage of every sample in a shard or shard set.
///
/// Raw pixels are interleaved HWC: the value of channel `c` at row `y`, column `x` sits at
/// `(y * width + x) * channels + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleSchema {
    /// Whether all records share one shape ([`Layout::Fixed`]) or each has its own.
    pub layout: Layout,
    /// Image height in pixels for a fixed layout; 0 for a variable layout.
    pub height: u32,
    /// Image width in pixels for a fixed layout; 0 for a variable layout.
    pub width: u32,
    /// Channels per pixel of every record (1 for grey, 3 for RGB).
    pub channels: u32,
    /// The element type of each channel value.
    pub dtype: Dtype,
    /// The encoding of every record's payload; a fixed layout is always raw.
    pub encoding: Encoding,
}

impl SampleSchema {
    /// Builds the fixed-layout schema of raw `u8` HWC images of one shape.
    pub fn raw_u8(height: u32, width: u32, channels: u32) -> Self {
        SampleSchema {
            layout: Layout::Fixed,
            height,
            width,
            channels,
            dtype: Dtype::U8,
            encoding: Encoding::Raw,
        }
    }

    /// Builds the variable-layout schema of `u8` records with `channels` channels each, stored
    /// with `encoding`. Height and width are 0.
    pub fn variable(channels: u32, encoding: Encoding) -> Self {
        SampleSchema {
            layout: Layout::Variable,
            height: 0,
            width: 0,
            channels,
            dtype: Dtype::U8,
            encoding,
        }
    }

    /// Returns the payload size of every record in bytes for a fixed layout, or `None` for a
    /// variable layout or when the size overflows `u64`.
    pub fn record_len(&self) -> Option<u64> {
        match self.layout {
            Layout::Fixed => u64::from(self.height)
                .checked_mul(u64::from(self.width))?
                .checked_mul(u64::from(self.channels))?
                .checked_mul(self.dtype.size()),
            Layout::Variable => None,
        }
    }

    /// Returns the metadata every record of a fixed layout has, or `None` for a variable
    /// layout or more than 255 channels.
    pub fn fixed_meta(&self) -> Option<RecordMeta> {
        match self.layout {
            Layout::Fixed => Some(RecordMeta {
                height: self.height,
                width: self.width,
                channels: u8::try_from(self.channels).ok()?,
                encoding: Encoding::Raw,
                flags: 0,
            }),
            Layout::Variable => None,
        }
    }
}

impl fmt::Display for SampleSchema {
    /// Formats the schema as `<height>x<width>x<channels> <dtype> <encoding>` for a fixed
    /// layout, such as `32x32x3 u8 raw`, and as `variable-size <channels>-channel <dtype>
    /// <encoding>` for a variable one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = match self.dtype {
            Dtype::U8 => "u8",
        };
        let encoding = self.encoding.name();
        match self.layout {
            Layout::Fixed => {
                write!(f, "{}x{}x{} {dtype} {encoding}", self.height, self.width, self.channels)
            }
            Layout::Variable => {
                write!(f, "variable-size {}-channel {dtype} {encoding}", self.channels)
            }
        }
    }
}

/// The shape, encoding and flags of one record, stored in its index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordMeta {
    /// Image height in pixels (of the decoded image for a JPEG payload).
    pub height: u32,
    /// Image width in pixels (of the decoded image for a JPEG payload).
    pub width: u32,
    /// Channels per pixel; equal to the schema's.
    pub channels: u8,
    /// The payload's encoding; equal to the schema's.
    pub encoding: Encoding,
    /// Flag bits: [`FLAG_REENCODED`] or 0.
    pub flags: u32,
}

impl RecordMeta {
    /// Returns whether the payload was re-encoded or resized from the source file.
    pub fn is_reencoded(&self) -> bool {
        self.flags & FLAG_REENCODED != 0
    }

    /// Returns `height * width * channels`, the payload size of a raw record, or `None` when
    /// it overflows `u64`.
    pub fn raw_len(&self) -> Option<u64> {
        u64::from(self.height)
            .checked_mul(u64::from(self.width))?
            .checked_mul(u64::from(self.channels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_display() {
        assert_eq!(SampleSchema::raw_u8(32, 24, 3).to_string(), "32x24x3 u8 raw");
        assert_eq!(
            SampleSchema::variable(3, Encoding::Jpeg).to_string(),
            "variable-size 3-channel u8 jpeg"
        );
    }

    #[test]
    fn record_len_overflow_is_none() {
        assert_eq!(SampleSchema::raw_u8(28, 28, 1).record_len(), Some(784));
        assert_eq!(SampleSchema::raw_u8(u32::MAX, u32::MAX, u32::MAX).record_len(), None);
    }

    #[test]
    fn variable_schema_has_no_record_len() {
        let schema = SampleSchema::variable(3, Encoding::Raw);

        assert_eq!(schema.record_len(), None);
        assert_eq!(schema.fixed_meta(), None);
        assert_eq!((schema.height, schema.width), (0, 0));
    }

    #[test]
    fn encoding_codes_round_trip() {
        for encoding in [Encoding::Raw, Encoding::Jpeg] {
            assert_eq!(Encoding::from_code(encoding.code()), Some(encoding));
        }
        assert_eq!(Encoding::from_code(2), None);
    }

    #[test]
    fn schema_json_names_layout_and_encoding() {
        let json = serde_json::to_string(&SampleSchema::variable(3, Encoding::Jpeg)).unwrap();

        assert_eq!(
            json,
            r#"{"layout":"variable","height":0,"width":0,"channels":3,"dtype":"u8","encoding":"jpeg"}"#
        );
    }

    #[test]
    fn meta_raw_len_and_flag() {
        let meta =
            RecordMeta { height: 5, width: 7, channels: 3, encoding: Encoding::Raw, flags: 1 };

        assert_eq!(meta.raw_len(), Some(105));
        assert!(meta.is_reencoded());
        assert!(!RecordMeta { flags: 0, ..meta }.is_reencoded());
    }
}
