//! The byte layout of a version 1 shard file: the fixed header, the index entries and the
//! record checksum. `FORMAT.md` beside this crate documents the same layout as a table.
//!
//! Every integer is little-endian. A file is laid out as
//! `header (72 bytes) | index (24 bytes per record) | record data`, with the records stored back
//! to back in index order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The 8 bytes every shard file starts with.
pub const MAGIC: [u8; 8] = *b"EXPSHARD";

/// The shard file version this crate writes and reads.
pub const VERSION: u32 = 1;

/// The size of the version 1 header in bytes; the index starts right after it.
pub const HEADER_LEN: usize = 72;

/// The size of one index entry in bytes.
pub const INDEX_ENTRY_LEN: usize = 24;

/// The value of an index entry's second label when the shard stores one label per record.
pub const NO_LABEL: u32 = u32::MAX;

/// Byte range of the header checksum inside the header; it is zeroed while computing it.
pub(crate) const HEADER_CRC_RANGE: std::ops::Range<usize> = 64..68;

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

/// The encoding of a record's pixels as bytes.
///
/// Version 1 writes and reads only [`Encoding::Raw`]. Header codes 1 (JPEG) and 2 (PNG) are
/// reserved for compressed records, and readers reject them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Uncompressed pixels in HWC order, exactly `height * width * channels` values (code 0).
    Raw,
}

impl Encoding {
    /// Returns the code stored in the header.
    pub fn code(self) -> u8 {
        match self {
            Encoding::Raw => 0,
        }
    }
}

/// The shape and storage of every sample in a shard or shard set.
///
/// Pixels are interleaved HWC: the value of channel `c` at row `y`, column `x` sits at
/// `(y * width + x) * channels + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleSchema {
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Channels per pixel (1 for grey, 3 for RGB).
    pub channels: u32,
    /// The element type of each channel value.
    pub dtype: Dtype,
    /// The encoding of each record's pixels as bytes.
    pub encoding: Encoding,
}

impl SampleSchema {
    /// Builds the schema of raw `u8` HWC images.
    pub fn raw_u8(height: u32, width: u32, channels: u32) -> Self {
        SampleSchema { height, width, channels, dtype: Dtype::U8, encoding: Encoding::Raw }
    }

    /// Returns the size of one raw record in bytes, or `None` when it overflows `u64`.
    pub fn record_len(&self) -> Option<u64> {
        u64::from(self.height)
            .checked_mul(u64::from(self.width))?
            .checked_mul(u64::from(self.channels))?
            .checked_mul(self.dtype.size())
    }
}

impl fmt::Display for SampleSchema {
    /// Formats the schema as `<height>x<width>x<channels> <dtype> <encoding>`, such as
    /// `32x32x3 u8 raw`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = match self.dtype {
            Dtype::U8 => "u8",
        };
        let encoding = match self.encoding {
            Encoding::Raw => "raw",
        };
        write!(f, "{}x{}x{} {dtype} {encoding}", self.height, self.width, self.channels)
    }
}

/// The decoded fixed header of a shard file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    /// Number of records (and index entries) in the file.
    pub record_count: u64,
    /// The shape and storage of every record.
    pub schema: SampleSchema,
    /// Labels stored per record: 1, or 2 when a coarse label follows the fine label.
    pub labels_per_record: u8,
    /// Byte offset of the index from the start of the file; always [`HEADER_LEN`] in version 1.
    pub index_offset: u64,
    /// Byte offset of the first record from the start of the file; the index ends there.
    pub data_offset: u64,
    /// Total size of the record data in bytes; the file ends at `data_offset + data_length`.
    pub data_length: u64,
    /// CRC32C over the header with this field zeroed, followed by the whole index.
    pub header_crc32c: u32,
}

/// The header fields as stored, before any check beyond magic and size.
///
/// Codes are kept raw so that the reader can name the exact value it rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub magic: [u8; 8],
    pub version: u32,
    pub header_len: u32,
    pub record_count: u64,
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub dtype: u8,
    pub encoding: u8,
    pub labels_per_record: u8,
    pub reserved_a: u8,
    pub index_offset: u64,
    pub data_offset: u64,
    pub data_length: u64,
    pub header_crc32c: u32,
    pub reserved_b: u32,
}

impl ShardHeader {
    /// Encodes the header as its 72 stored bytes, with `header_crc32c` in place.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.record_count.to_le_bytes());
        out[24..28].copy_from_slice(&self.schema.height.to_le_bytes());
        out[28..32].copy_from_slice(&self.schema.width.to_le_bytes());
        out[32..36].copy_from_slice(&self.schema.channels.to_le_bytes());
        out[36] = self.schema.dtype.code();
        out[37] = self.schema.encoding.code();
        out[38] = self.labels_per_record;
        out[40..48].copy_from_slice(&self.index_offset.to_le_bytes());
        out[48..56].copy_from_slice(&self.data_offset.to_le_bytes());
        out[56..64].copy_from_slice(&self.data_length.to_le_bytes());
        out[HEADER_CRC_RANGE].copy_from_slice(&self.header_crc32c.to_le_bytes());
        out
    }
}

impl RawHeader {
    /// Decodes the 72 header bytes field by field without judging any value.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[0..8]);
        RawHeader {
            magic,
            version: read_u32(bytes, 8),
            header_len: read_u32(bytes, 12),
            record_count: read_u64(bytes, 16),
            height: read_u32(bytes, 24),
            width: read_u32(bytes, 28),
            channels: read_u32(bytes, 32),
            dtype: bytes[36],
            encoding: bytes[37],
            labels_per_record: bytes[38],
            reserved_a: bytes[39],
            index_offset: read_u64(bytes, 40),
            data_offset: read_u64(bytes, 48),
            data_length: read_u64(bytes, 56),
            header_crc32c: read_u32(bytes, 64),
            reserved_b: read_u32(bytes, 68),
        }
    }
}

/// One decoded index entry: where a record lies, its checksum and its labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte offset of the record from the start of the file.
    pub offset: u64,
    /// Size of the record in bytes.
    pub length: u32,
    /// [`record_crc32c`] of the record bytes and both labels.
    pub crc32c: u32,
    /// The (fine) class label.
    pub label: u32,
    /// The coarse class label, or [`NO_LABEL`] when the shard stores one label per record.
    pub second_label: u32,
}

impl IndexEntry {
    /// Encodes the entry as its 24 stored bytes.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut out = [0u8; INDEX_ENTRY_LEN];
        out[0..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.length.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc32c.to_le_bytes());
        out[16..20].copy_from_slice(&self.label.to_le_bytes());
        out[20..24].copy_from_slice(&self.second_label.to_le_bytes());
        out
    }

    /// Decodes one entry from its 24 stored bytes.
    pub fn decode(bytes: &[u8; INDEX_ENTRY_LEN]) -> Self {
        IndexEntry {
            offset: read_u64(bytes, 0),
            length: read_u32(bytes, 8),
            crc32c: read_u32(bytes, 12),
            label: read_u32(bytes, 16),
            second_label: read_u32(bytes, 20),
        }
    }
}

/// Computes a record's checksum: CRC32C (Castagnoli) over the record bytes followed by the
/// label and the second label, each as 4 little-endian bytes.
///
/// Covering the labels ties each label to its pixels, so a changed label is caught and
/// located by the record it belongs to, not only by the header checksum.
pub fn record_crc32c(record: &[u8], label: u32, second_label: u32) -> u32 {
    let mut labels = [0u8; 8];
    labels[0..4].copy_from_slice(&label.to_le_bytes());
    labels[4..8].copy_from_slice(&second_label.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(record), &labels)
}

/// Computes the header checksum: CRC32C over the header bytes with the checksum field zeroed,
/// followed by the index bytes.
pub fn header_crc32c(header: &[u8; HEADER_LEN], index: &[u8]) -> u32 {
    let mut zeroed = *header;
    zeroed[HEADER_CRC_RANGE].fill(0);
    crc32c::crc32c_append(crc32c::crc32c(&zeroed), index)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> ShardHeader {
        ShardHeader {
            record_count: 3,
            schema: SampleSchema::raw_u8(32, 24, 3),
            labels_per_record: 2,
            index_offset: HEADER_LEN as u64,
            data_offset: (HEADER_LEN + 3 * INDEX_ENTRY_LEN) as u64,
            data_length: 3 * 32 * 24 * 3,
            header_crc32c: 0xdead_beef,
        }
    }

    #[test]
    fn header_fields_at_documented_offsets() {
        let bytes = sample_header().encode();

        assert_eq!(&bytes[0..8], b"EXPSHARD");
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        assert_eq!(bytes[12..16], 72u32.to_le_bytes());
        assert_eq!(bytes[16..24], 3u64.to_le_bytes());
        assert_eq!(bytes[24..28], 32u32.to_le_bytes());
        assert_eq!(bytes[28..32], 24u32.to_le_bytes());
        assert_eq!(bytes[32..36], 3u32.to_le_bytes());
        assert_eq!(bytes[36..40], [0, 0, 2, 0]);
        assert_eq!(bytes[40..48], 72u64.to_le_bytes());
        assert_eq!(bytes[48..56], 144u64.to_le_bytes());
        assert_eq!(bytes[56..64], 6912u64.to_le_bytes());
        assert_eq!(bytes[64..68], 0xdead_beefu32.to_le_bytes());
        assert_eq!(bytes[68..72], [0, 0, 0, 0]);
    }

    #[test]
    fn header_decodes_what_it_encodes() {
        let header = sample_header();
        let raw = RawHeader::decode(&header.encode());

        assert_eq!(raw.magic, MAGIC);
        assert_eq!(raw.version, VERSION);
        assert_eq!(raw.header_len, 72);
        assert_eq!(raw.record_count, header.record_count);
        assert_eq!((raw.height, raw.width, raw.channels), (32, 24, 3));
        assert_eq!((raw.dtype, raw.encoding, raw.labels_per_record), (0, 0, 2));
        assert_eq!(raw.index_offset, header.index_offset);
        assert_eq!(raw.data_offset, header.data_offset);
        assert_eq!(raw.data_length, header.data_length);
        assert_eq!(raw.header_crc32c, header.header_crc32c);
    }

    #[test]
    fn index_entry_round_trip() {
        let entry = IndexEntry {
            offset: 1 << 40,
            length: 3072,
            crc32c: 7,
            label: 9,
            second_label: NO_LABEL,
        };
        let bytes = entry.encode();

        assert_eq!(bytes[0..8], (1u64 << 40).to_le_bytes());
        assert_eq!(bytes[20..24], [0xff; 4]);
        assert_eq!(IndexEntry::decode(&bytes), entry);
    }

    #[test]
    fn header_crc_ignores_its_own_field() {
        let mut header = sample_header();
        let index = [1u8, 2, 3];
        let first = header_crc32c(&header.encode(), &index);

        header.header_crc32c = 12345;
        assert_eq!(header_crc32c(&header.encode(), &index), first);

        let expected = crc32c::crc32c_append(crc32c::crc32c(&sample_header_zeroed()), &index);
        assert_eq!(first, expected);
    }

    fn sample_header_zeroed() -> [u8; HEADER_LEN] {
        let mut bytes = sample_header().encode();
        bytes[64..68].fill(0);
        bytes
    }

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn record_crc_covers_labels() {
        let pixels = [10u8, 20, 30];
        let base = record_crc32c(&pixels, 4, NO_LABEL);

        assert_ne!(record_crc32c(&pixels, 5, NO_LABEL), base);
        assert_ne!(record_crc32c(&pixels, 4, 0), base);
        assert_ne!(record_crc32c(&[10, 20, 31], 4, NO_LABEL), base);

        let mut concatenated = pixels.to_vec();
        concatenated.extend_from_slice(&4u32.to_le_bytes());
        concatenated.extend_from_slice(&NO_LABEL.to_le_bytes());
        assert_eq!(base, crc32c::crc32c(&concatenated));
    }

    #[test]
    fn schema_display() {
        assert_eq!(SampleSchema::raw_u8(32, 24, 3).to_string(), "32x24x3 u8 raw");
    }

    #[test]
    fn record_len_overflow_is_none() {
        assert_eq!(SampleSchema::raw_u8(28, 28, 1).record_len(), Some(784));
        assert_eq!(SampleSchema::raw_u8(u32::MAX, u32::MAX, u32::MAX).record_len(), None);
    }
}
