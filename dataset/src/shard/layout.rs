//! The byte layout of a version 2 shard file: the fixed header, the index entries and the
//! record checksum. `FORMAT.md` beside this crate documents the same layout as a table.
//!
//! Every integer is little-endian. A file is laid out as
//! `header (72 bytes) | index (40 bytes per record) | record data`, with the records stored back
//! to back in index order. A record is its source path (UTF-8, possibly empty) followed by its
//! payload.

use crate::shard::schema::{Layout, SampleSchema};

/// The 8 bytes every shard file starts with.
pub const MAGIC: [u8; 8] = *b"EXPSHARD";

/// The shard file version this crate writes and reads.
pub const VERSION: u32 = 2;

/// The size of the header in bytes; the index starts right after it.
pub const HEADER_LEN: usize = 72;

/// The size of one index entry in bytes.
pub const INDEX_ENTRY_LEN: usize = 40;

/// The value of an index entry's second label when the shard stores one label per record.
pub const NO_LABEL: u32 = u32::MAX;

/// Byte range of the header checksum inside the header; it is zeroed while computing it.
pub(crate) const HEADER_CRC_RANGE: std::ops::Range<usize> = 64..68;

/// Byte range of the index entry fields that the record checksum covers: both labels, the
/// shape, the path length, the encoding and the flags.
pub(crate) const CHECKED_ENTRY_RANGE: std::ops::Range<usize> = 16..40;

/// The decoded fixed header of a shard file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    /// Number of records (and index entries) in the file.
    pub record_count: u64,
    /// The layout, shape and storage of every record. The header stores height and width 0
    /// for a variable layout.
    pub schema: SampleSchema,
    /// Labels stored per record: 1, or 2 when a coarse label follows the fine label.
    pub labels_per_record: u8,
    /// Byte offset of the index from the start of the file; always [`HEADER_LEN`].
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
    /// Encodes the header as its 72 stored bytes, with `header_crc32c` in place. A variable
    /// layout is stored as height and width 0, whatever the schema's fields hold.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let schema = &self.schema;
        let (height, width) = match schema.layout {
            Layout::Fixed => (schema.height, schema.width),
            Layout::Variable => (0, 0),
        };

        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.record_count.to_le_bytes());
        out[24..28].copy_from_slice(&height.to_le_bytes());
        out[28..32].copy_from_slice(&width.to_le_bytes());
        out[32..36].copy_from_slice(&schema.channels.to_le_bytes());
        out[36] = schema.dtype.code();
        out[37] = schema.encoding.code();
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

/// One index entry as stored: where a record lies, its checksum, its labels and its metadata.
///
/// Codes are kept raw (`encoding`, `flags`) so that the reader can name a value it rejects;
/// [`crate::shard::ShardReader::meta`] returns them checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte offset of the record from the start of the file.
    pub offset: u64,
    /// Size of the record in bytes: path bytes plus payload bytes.
    pub length: u32,
    /// [`record_crc32c`] of the record bytes and entry bytes 16..40.
    pub crc32c: u32,
    /// The (fine) class label.
    pub label: u32,
    /// The coarse class label, or [`NO_LABEL`] when the shard stores one label per record.
    pub second_label: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Size of the source path at the start of the record, in bytes.
    pub path_len: u16,
    /// Channels per pixel.
    pub channels: u8,
    /// Encoding code of the payload: 0 raw, 1 JPEG.
    pub encoding: u8,
    /// Flag bits; bit 0 ([`crate::shard::FLAG_REENCODED`]) is the only one defined.
    pub flags: u32,
}

impl IndexEntry {
    /// Encodes the entry as its 40 stored bytes.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut out = [0u8; INDEX_ENTRY_LEN];
        out[0..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.length.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc32c.to_le_bytes());
        out[16..20].copy_from_slice(&self.label.to_le_bytes());
        out[20..24].copy_from_slice(&self.second_label.to_le_bytes());
        out[24..28].copy_from_slice(&self.height.to_le_bytes());
        out[28..32].copy_from_slice(&self.width.to_le_bytes());
        out[32..34].copy_from_slice(&self.path_len.to_le_bytes());
        out[34] = self.channels;
        out[35] = self.encoding;
        out[36..40].copy_from_slice(&self.flags.to_le_bytes());
        out
    }

    /// Decodes one entry from its 40 stored bytes.
    pub fn decode(bytes: &[u8; INDEX_ENTRY_LEN]) -> Self {
        IndexEntry {
            offset: read_u64(bytes, 0),
            length: read_u32(bytes, 8),
            crc32c: read_u32(bytes, 12),
            label: read_u32(bytes, 16),
            second_label: read_u32(bytes, 20),
            height: read_u32(bytes, 24),
            width: read_u32(bytes, 28),
            path_len: u16::from_le_bytes([bytes[32], bytes[33]]),
            channels: bytes[34],
            encoding: bytes[35],
            flags: read_u32(bytes, 36),
        }
    }
}

/// Computes a record's checksum: CRC32C (Castagnoli) over the record bytes (source path and
/// payload) followed by bytes 16..40 of its index entry.
///
/// Entry bytes 16..40 are the labels, the shape, the path length, the encoding and the flags.
/// Covering them ties each label and shape to its pixels, so a changed field is caught and
/// located by the record it belongs to, not only by the header checksum. The entry's offset,
/// length and checksum fields do not enter.
pub fn record_crc32c(record: &[u8], entry: &IndexEntry) -> u32 {
    record_crc32c_parts(&[record], entry)
}

/// Computes [`record_crc32c`] of a record given as consecutive parts, such as path and payload.
pub(crate) fn record_crc32c_parts(parts: &[&[u8]], entry: &IndexEntry) -> u32 {
    let crc = parts.iter().fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    crc32c::crc32c_append(crc, &entry.encode()[CHECKED_ENTRY_RANGE])
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
    use crate::shard::schema::Encoding;

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

    fn sample_entry() -> IndexEntry {
        IndexEntry {
            offset: 1 << 40,
            length: 3072 + 11,
            crc32c: 7,
            label: 9,
            second_label: NO_LABEL,
            height: 0x0102_0304,
            width: 0x0506_0708,
            path_len: 0x0a0b,
            channels: 3,
            encoding: 1,
            flags: 1,
        }
    }

    #[test]
    fn header_fields_at_documented_offsets() {
        let bytes = sample_header().encode();

        assert_eq!(&bytes[0..8], b"EXPSHARD");
        assert_eq!(bytes[8..12], 2u32.to_le_bytes());
        assert_eq!(bytes[12..16], 72u32.to_le_bytes());
        assert_eq!(bytes[16..24], 3u64.to_le_bytes());
        assert_eq!(bytes[24..28], 32u32.to_le_bytes());
        assert_eq!(bytes[28..32], 24u32.to_le_bytes());
        assert_eq!(bytes[32..36], 3u32.to_le_bytes());
        assert_eq!(bytes[36..40], [0, 0, 2, 0]);
        assert_eq!(bytes[40..48], 72u64.to_le_bytes());
        assert_eq!(bytes[48..56], 192u64.to_le_bytes());
        assert_eq!(bytes[56..64], 6912u64.to_le_bytes());
        assert_eq!(bytes[64..68], 0xdead_beefu32.to_le_bytes());
        assert_eq!(bytes[68..72], [0, 0, 0, 0]);
    }

    #[test]
    fn variable_header_stores_zero_shape() {
        let mut schema = SampleSchema::variable(3, Encoding::Jpeg);
        schema.height = 99;
        let header = ShardHeader { schema, ..sample_header() };

        let raw = RawHeader::decode(&header.encode());

        assert_eq!((raw.height, raw.width, raw.channels), (0, 0, 3));
        assert_eq!(raw.encoding, 1);
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
    fn index_entry_fields_at_documented_offsets() {
        let entry = sample_entry();
        let bytes = entry.encode();

        assert_eq!(bytes[0..8], (1u64 << 40).to_le_bytes());
        assert_eq!(bytes[8..12], 3083u32.to_le_bytes());
        assert_eq!(bytes[12..16], 7u32.to_le_bytes());
        assert_eq!(bytes[16..20], 9u32.to_le_bytes());
        assert_eq!(bytes[20..24], [0xff; 4]);
        assert_eq!(bytes[24..28], [4, 3, 2, 1]);
        assert_eq!(bytes[28..32], [8, 7, 6, 5]);
        assert_eq!(bytes[32..34], [0x0b, 0x0a]);
        assert_eq!(bytes[34..36], [3, 1]);
        assert_eq!(bytes[36..40], [1, 0, 0, 0]);
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
    fn record_crc_covers_entry_bytes_16_to_40() {
        let record = b"cat/1.jpg\xff\xd8\xff\xd9";
        let entry = sample_entry();
        let base = record_crc32c(record, &entry);

        let changed = [
            IndexEntry { label: 8, ..entry },
            IndexEntry { second_label: 0, ..entry },
            IndexEntry { height: 1, ..entry },
            IndexEntry { width: 1, ..entry },
            IndexEntry { path_len: 1, ..entry },
            IndexEntry { channels: 1, ..entry },
            IndexEntry { encoding: 0, ..entry },
            IndexEntry { flags: 0, ..entry },
        ];
        for other in changed {
            assert_ne!(record_crc32c(record, &other), base, "{other:?}");
        }
        let unchecked = IndexEntry { offset: 5, length: 6, crc32c: 0, ..entry };
        assert_eq!(record_crc32c(record, &unchecked), base);
        assert_ne!(record_crc32c(b"cat/2.jpg\xff\xd8\xff\xd9", &entry), base);

        let mut covered = record.to_vec();
        covered.extend_from_slice(&entry.encode()[16..40]);
        assert_eq!(base, crc32c::crc32c(&covered));
        assert_eq!(record_crc32c_parts(&[&record[..9], &record[9..]], &entry), base);
    }
}
