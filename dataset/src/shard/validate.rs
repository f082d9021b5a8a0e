//! Structural checks of a mapped shard file: every header field and index entry against the
//! file size and the reader's limits, before any of them is used.

use std::path::Path;

use crate::error::{Error, Result};
use crate::shard::layout::{
    IndexEntry, RawHeader, ShardHeader, HEADER_LEN, INDEX_ENTRY_LEN, MAGIC, NO_LABEL, VERSION,
};
use crate::shard::limits::Limits;
use crate::shard::schema::{Dtype, Encoding, Layout, SampleSchema, KNOWN_FLAGS};

/// The smallest JPEG payload a reader accepts: a start-of-image and an end-of-image marker.
pub(crate) const MIN_JPEG_LEN: u32 = 4;

/// The header fields `validate` established, with every index entry inside the mapped file.
pub(crate) struct ValidLayout {
    pub header: ShardHeader,
    pub len: usize,
}

/// The rules every index entry of one file follows: the header's schema and label count, and
/// the reader's limits.
pub(crate) struct EntryRules<'a> {
    pub schema: &'a SampleSchema,
    pub labels_per_record: u8,
    pub limits: &'a Limits,
}

/// Checks every header field and index entry against the file size and `limits`.
pub(crate) fn validate(path: &Path, bytes: &[u8], limits: &Limits) -> Result<ValidLayout> {
    let invalid = |message: String| Error::format(path, message);
    let file_len = bytes.len() as u64;

    let mut header_bytes = [0u8; HEADER_LEN];
    header_bytes.copy_from_slice(&bytes[..HEADER_LEN]);
    let raw = RawHeader::decode(&header_bytes);

    if raw.magic != MAGIC {
        return Err(invalid(format!(
            "invalid magic bytes \"{}\", expected \"EXPSHARD\"; not a shard file",
            raw.magic.escape_ascii()
        )));
    }
    if raw.version == 1 {
        return Err(invalid(format!(
            "shard version 1 is no longer supported; this reader reads version {VERSION}, so \
             re-run shardify to convert the source again"
        )));
    }
    if raw.version != VERSION {
        return Err(invalid(format!(
            "unsupported shard version {}; this reader reads version {VERSION}",
            raw.version
        )));
    }
    if raw.header_len != HEADER_LEN as u32 {
        return Err(invalid(format!(
            "header length {} does not match {HEADER_LEN} for version {VERSION}",
            raw.header_len
        )));
    }
    if raw.reserved_a != 0 || raw.reserved_b != 0 {
        return Err(invalid(format!(
            "reserved header fields at bytes 39 and 68 must be zero, found {} and {}",
            raw.reserved_a, raw.reserved_b
        )));
    }

    let schema = validate_schema(&raw, limits).map_err(invalid)?;

    let count = raw.record_count;
    if count > limits.max_records {
        return Err(invalid(format!(
            "record count {count} exceeds the limit of {} records",
            limits.max_records
        )));
    }
    if raw.index_offset != HEADER_LEN as u64 {
        return Err(invalid(format!(
            "index offset {} does not match the header length {HEADER_LEN}",
            raw.index_offset
        )));
    }

    let index_len = count.saturating_mul(INDEX_ENTRY_LEN as u64);
    let index_end = (HEADER_LEN as u64).saturating_add(index_len);
    if index_end > file_len {
        return Err(invalid(format!(
            "record count {count} needs an index of {index_len} bytes at byte {HEADER_LEN}, \
             which exceeds file size {file_len}"
        )));
    }
    if raw.data_offset != index_end {
        return Err(invalid(format!(
            "data offset {} does not match the end of the index at byte {index_end}",
            raw.data_offset
        )));
    }

    // The index fits in the mapped file, so `count` fits in `usize`.
    let len = usize::try_from(count).map_err(|_| invalid(format!("record count {count}")))?;
    let rules = EntryRules { schema: &schema, labels_per_record: raw.labels_per_record, limits };
    let data_end = validate_entries(bytes, count, &rules).map_err(invalid)?;

    if data_end != raw.data_offset.saturating_add(raw.data_length) {
        return Err(invalid(format!(
            "data length {} at byte {} does not match the records, which end at byte {data_end}",
            raw.data_length, raw.data_offset
        )));
    }
    if data_end != file_len {
        return Err(invalid(format!(
            "file size {file_len} does not match the end of the record data at byte {data_end}"
        )));
    }

    let header = ShardHeader {
        record_count: count,
        schema,
        labels_per_record: raw.labels_per_record,
        index_offset: raw.index_offset,
        data_offset: raw.data_offset,
        data_length: raw.data_length,
        header_crc32c: raw.header_crc32c,
    };
    Ok(ValidLayout { header, len })
}

/// Checks the header's sample fields and returns the schema they describe: height and width
/// both 0 give a variable layout, both at least 1 a fixed one.
fn validate_schema(raw: &RawHeader, limits: &Limits) -> std::result::Result<SampleSchema, String> {
    if raw.dtype != Dtype::U8.code() {
        return Err(format!("unknown dtype code {}; version {VERSION} supports 0 (u8)", raw.dtype));
    }
    let Some(encoding) = Encoding::from_code(raw.encoding) else {
        return Err(format!(
            "unknown encoding code {}; version {VERSION} supports 0 (raw) and 1 (jpeg)",
            raw.encoding
        ));
    };
    if raw.labels_per_record != 1 && raw.labels_per_record != 2 {
        return Err(format!("labels per record is {}, expected 1 or 2", raw.labels_per_record));
    }

    // Index entries store channels in one byte.
    let max_channels = limits.max_channels.min(u32::from(u8::MAX));
    if raw.channels == 0 || raw.channels > max_channels {
        return Err(format!("channels {} is outside 1..={max_channels}", raw.channels));
    }

    let layout = match (raw.height, raw.width) {
        (0, 0) => Layout::Variable,
        (0, _) | (_, 0) => {
            return Err(format!(
                "height {} and width {}: a fixed layout needs both at least 1, a variable \
                 layout both 0",
                raw.height, raw.width
            ))
        }
        _ => Layout::Fixed,
    };
    let schema = SampleSchema {
        layout,
        height: raw.height,
        width: raw.width,
        channels: raw.channels,
        dtype: Dtype::U8,
        encoding,
    };
    if layout == Layout::Variable {
        return Ok(schema);
    }

    if encoding != Encoding::Raw {
        return Err(format!(
            "encoding {} ({}) with the fixed shape {}x{}; fixed-layout shards store raw records",
            raw.encoding,
            encoding.name(),
            raw.height,
            raw.width
        ));
    }
    for (name, value) in [("height", raw.height), ("width", raw.width)] {
        if value > limits.max_side {
            return Err(format!("{name} {value} is outside 1..={}", limits.max_side));
        }
    }
    let record_len = schema.record_len().unwrap_or(u64::MAX);
    if record_len > limits.max_record_bytes {
        return Err(format!(
            "record size {record_len} of a {}x{}x{} sample exceeds the limit of {} bytes",
            schema.height, schema.width, schema.channels, limits.max_record_bytes
        ));
    }
    Ok(schema)
}

/// Checks that records lie inside the file, back to back from the end of the index, and that
/// each entry follows `rules`. Returns where the last record ends. The caller has checked that
/// the index lies inside `bytes`.
fn validate_entries(
    bytes: &[u8],
    count: u64,
    rules: &EntryRules<'_>,
) -> std::result::Result<u64, String> {
    let file_len = bytes.len() as u64;
    let mut expected_offset = HEADER_LEN as u64 + count * INDEX_ENTRY_LEN as u64;
    let index = &bytes[HEADER_LEN..expected_offset as usize];

    for (i, chunk) in index.chunks_exact(INDEX_ENTRY_LEN).enumerate() {
        let mut entry_bytes = [0u8; INDEX_ENTRY_LEN];
        entry_bytes.copy_from_slice(chunk);
        let entry = IndexEntry::decode(&entry_bytes);
        let place = format!("record {i} at byte {}", entry.offset);

        if entry.offset > file_len || u64::from(entry.length) > file_len - entry.offset {
            return Err(format!("{place}: length {} exceeds file size {file_len}", entry.length));
        }
        if entry.offset != expected_offset {
            return Err(format!(
                "{place}: expected the record at byte {expected_offset}, right after the previous \
                 one"
            ));
        }
        check_entry(&entry, rules).map_err(|message| format!("{place}: {message}"))?;

        expected_offset += u64::from(entry.length);
    }
    Ok(expected_offset)
}

/// Checks one entry's size, path length, metadata and labels against `rules`, without its
/// position in the file. The writer runs the same check on every entry it writes.
pub(crate) fn check_entry(
    entry: &IndexEntry,
    rules: &EntryRules<'_>,
) -> std::result::Result<(), String> {
    let schema = rules.schema;
    let limits = rules.limits;

    if u64::from(entry.length) > limits.max_record_bytes {
        return Err(format!(
            "length {} exceeds the limit of {} bytes",
            entry.length, limits.max_record_bytes
        ));
    }
    if u32::from(entry.path_len) > entry.length {
        return Err(format!(
            "path length {} exceeds the record length {}",
            entry.path_len, entry.length
        ));
    }
    if u32::from(entry.channels) != schema.channels {
        return Err(format!(
            "channels {} does not match {} in the header",
            entry.channels, schema.channels
        ));
    }
    if entry.encoding != schema.encoding.code() {
        return Err(format!(
            "encoding code {} does not match {} ({}) in the header",
            entry.encoding,
            schema.encoding.code(),
            schema.encoding.name()
        ));
    }
    if entry.flags & !KNOWN_FLAGS != 0 {
        return Err(format!(
            "flags 0x{:08x} set undefined bits; only bit 0 (re-encoded) is defined",
            entry.flags
        ));
    }

    check_shape(entry, schema, limits)?;
    check_labels(entry, rules.labels_per_record)
}

/// Checks the entry's height and width and its payload length against the layout.
fn check_shape(
    entry: &IndexEntry,
    schema: &SampleSchema,
    limits: &Limits,
) -> std::result::Result<(), String> {
    let (height, width) = (entry.height, entry.width);
    let payload_len = u64::from(entry.length - u32::from(entry.path_len));

    match schema.layout {
        Layout::Fixed => {
            if (height, width) != (schema.height, schema.width) {
                return Err(format!(
                    "shape {height}x{width} does not match the fixed {}x{} of the header",
                    schema.height, schema.width
                ));
            }
        }
        Layout::Variable => {
            for (name, value) in [("height", height), ("width", width)] {
                if value == 0 || value > limits.max_side {
                    return Err(format!("{name} {value} is outside 1..={}", limits.max_side));
                }
            }
        }
    }

    match schema.encoding {
        Encoding::Raw => {
            let expected = u64::from(height)
                .saturating_mul(u64::from(width))
                .saturating_mul(u64::from(entry.channels));
            if payload_len != expected {
                return Err(format!(
                    "payload length {payload_len} does not match {height}x{width}x{} = {expected} \
                     bytes of a raw record",
                    entry.channels
                ));
            }
        }
        Encoding::Jpeg => {
            if payload_len < u64::from(MIN_JPEG_LEN) {
                return Err(format!(
                    "payload length {payload_len} is too short for a JPEG (at least \
                     {MIN_JPEG_LEN} bytes)"
                ));
            }
        }
    }
    Ok(())
}

fn check_labels(entry: &IndexEntry, labels_per_record: u8) -> std::result::Result<(), String> {
    if entry.label == NO_LABEL {
        return Err(format!("label {NO_LABEL} is reserved for an unused label"));
    }
    if labels_per_record == 1 && entry.second_label != NO_LABEL {
        return Err(format!(
            "second label {} in a shard with one label per record, expected {NO_LABEL}",
            entry.second_label
        ));
    }
    if labels_per_record == 2 && entry.second_label == NO_LABEL {
        return Err(format!(
            "coarse label missing ({NO_LABEL}) in a shard with two labels per record"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::shard::reader::ShardReader;
    use crate::shard::tests::fixtures::{
        build_records, build_shard, entry_field, jpeg_records, raw_variable_records, reseal,
        reseal_record, ShardSpec,
    };

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn open_err(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "case-00000.shard", bytes);
        ShardReader::open(&path).unwrap_err().to_string()
    }

    fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn jpeg_shard() -> Vec<u8> {
        build_records(&SampleSchema::variable(3, Encoding::Jpeg), 1, &jpeg_records(3))
    }

    fn raw_variable_shard() -> Vec<u8> {
        build_records(&SampleSchema::variable(3, Encoding::Raw), 1, &raw_variable_records(3))
    }

    #[test]
    fn wrong_magic_is_named() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 2));
        bytes[7] = b'X';

        let message = open_err(&bytes);

        assert!(message.contains("case-00000.shard"), "{message}");
        assert!(message.contains("invalid magic bytes \"EXPSHARX\""), "{message}");
    }

    #[test]
    fn version_99_is_unsupported() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 2));
        bytes[8..12].copy_from_slice(&99u32.to_le_bytes());

        assert!(open_err(&bytes).contains("unsupported shard version 99"));
    }

    #[test]
    fn version_1_asks_for_conversion() {
        // A version 1 file: 24-byte index entries, checksums as version 1 computed them.
        let record = [5u8, 6, 7, 8];
        let mut entry = Vec::new();
        entry.extend_from_slice(&(72u64 + 24).to_le_bytes());
        entry.extend_from_slice(&4u32.to_le_bytes());
        let mut covered = record.to_vec();
        covered.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        entry.extend_from_slice(&crc32c::crc32c(&covered).to_le_bytes());
        entry.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        let mut header = [0u8; HEADER_LEN];
        header[0..8].copy_from_slice(b"EXPSHARD");
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        header[12..16].copy_from_slice(&72u32.to_le_bytes());
        header[16..24].copy_from_slice(&1u64.to_le_bytes());
        header[24..36].copy_from_slice(&[2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        header[38] = 1;
        header[40..48].copy_from_slice(&72u64.to_le_bytes());
        header[48..56].copy_from_slice(&96u64.to_le_bytes());
        header[56..64].copy_from_slice(&4u64.to_le_bytes());
        let mut bytes = [header.as_slice(), &entry, &record].concat();
        reseal(&mut bytes);

        let message = open_err(&bytes);

        assert!(message.contains("case-00000.shard"), "{message}");
        assert!(message.contains("shard version 1 is no longer supported"), "{message}");
        assert!(message.contains("re-run shardify"), "{message}");
    }

    #[test]
    fn unknown_encoding_is_rejected() {
        let mut bytes = jpeg_shard();
        bytes[37] = 2;
        reseal(&mut bytes);

        let message = open_err(&bytes);

        assert!(message.contains("unknown encoding code 2"), "{message}");
    }

    #[test]
    fn fixed_layout_with_jpeg_is_rejected() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 2));
        bytes[37] = 1;
        reseal(&mut bytes);

        let message = open_err(&bytes);

        assert!(message.contains("encoding 1 (jpeg) with the fixed shape 2x2"), "{message}");
    }

    #[test]
    fn one_zero_side_is_rejected() {
        let mut bytes = jpeg_shard();
        put_u32(&mut bytes, 28, 5);
        reseal(&mut bytes);

        let message = open_err(&bytes);

        assert!(message.contains("height 0 and width 5"), "{message}");
    }

    #[test]
    fn max_length_record_exceeds_file() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 3));
        put_u32(&mut bytes, entry_field(1, 8), u32::MAX);
        reseal(&mut bytes);
        let offset = HEADER_LEN + 3 * INDEX_ENTRY_LEN + 4;

        let message = open_err(&bytes);

        let expected = format!(
            "record 1 at byte {offset}: length 4294967295 exceeds file size {}",
            bytes.len()
        );
        assert!(message.contains(&expected), "{message}");
    }

    #[test]
    fn overlapping_record_is_rejected() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 3));
        let offset_at = entry_field(2, 0);
        let first = (HEADER_LEN + 3 * INDEX_ENTRY_LEN) as u64;
        bytes[offset_at..offset_at + 8].copy_from_slice(&first.to_le_bytes());
        reseal(&mut bytes);

        let message = open_err(&bytes);

        assert!(message.contains(&format!("record 2 at byte {first}: expected the record")));
    }

    #[test]
    fn count_larger_than_file_is_rejected() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 3));
        bytes[16..24].copy_from_slice(&1_000_000u64.to_le_bytes());
        reseal(&mut bytes);

        let message = open_err(&bytes);

        assert!(message.contains("record count 1000000 needs an index"), "{message}");
    }

    #[test]
    fn limits_cap_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a-00000.shard", &build_shard(&ShardSpec::new(4, 4, 3, 1)));
        let limits = Limits { max_side: 3, ..Limits::default() };

        let message = ShardReader::open_with_limits(&path, &limits).unwrap_err().to_string();

        assert!(message.contains("height 4 is outside 1..=3"), "{message}");
    }

    #[test]
    fn limits_cap_variable_sides() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a-00000.shard", &jpeg_shard());
        let limits = Limits { max_side: 8, ..Limits::default() };

        let message = ShardReader::open_with_limits(&path, &limits).unwrap_err().to_string();

        // Record 2 is 7x9.
        assert!(message.contains("record 2 at byte"), "{message}");
        assert!(message.contains("width 9 is outside 1..=8"), "{message}");
    }

    #[test]
    fn fixed_entry_with_other_shape_is_rejected() {
        let mut bytes = build_shard(&ShardSpec::new(2, 3, 1, 3));
        // 3x2 keeps the payload length right, so only the shape check can catch it.
        put_u32(&mut bytes, entry_field(1, 24), 3);
        put_u32(&mut bytes, entry_field(1, 28), 2);
        reseal_record(&mut bytes, 1);

        let message = open_err(&bytes);

        assert!(message.contains("record 1 at byte"), "{message}");
        assert!(message.contains("shape 3x2 does not match the fixed 2x3 of the header"));
    }

    #[test]
    fn raw_payload_must_match_meta() {
        let mut bytes = raw_variable_shard();
        // Record 1 is 2x3x3 = 18 bytes; a height of 3 claims 27.
        put_u32(&mut bytes, entry_field(1, 24), 3);
        reseal_record(&mut bytes, 1);

        let message = open_err(&bytes);

        assert!(message.contains("record 1 at byte"), "{message}");
        assert!(
            message.contains("payload length 18 does not match 3x3x3 = 27 bytes of a raw record"),
            "{message}"
        );
    }

    #[test]
    fn path_longer_than_record_is_rejected() {
        let mut bytes = jpeg_shard();
        let length_at = entry_field(2, 8);
        let length = u32::from_le_bytes(bytes[length_at..length_at + 4].try_into().unwrap());
        let path_len = (length + 1) as u16;
        bytes[entry_field(2, 32)..entry_field(2, 34)].copy_from_slice(&path_len.to_le_bytes());
        reseal(&mut bytes);

        let message = open_err(&bytes);

        let expected = format!("path length {path_len} exceeds the record length {length}");
        assert!(message.contains("record 2 at byte"), "{message}");
        assert!(message.contains(&expected), "{message}");
    }

    #[test]
    fn short_jpeg_payload_is_rejected() {
        let mut records = jpeg_records(2);
        records[1].payload.truncate(3);
        let bytes = build_records(&SampleSchema::variable(3, Encoding::Jpeg), 1, &records);

        let message = open_err(&bytes);

        assert!(message.contains("record 1 at byte"), "{message}");
        assert!(message.contains("payload length 3 is too short for a JPEG"), "{message}");
    }

    #[test]
    fn entry_meta_must_match_header() {
        let cases: [(usize, u8, &str); 3] = [
            (34, 1, "channels 1 does not match 3 in the header"),
            (35, 0, "encoding code 0 does not match 1 (jpeg) in the header"),
            (37, 1, "flags 0x00000101 set undefined bits"),
        ];

        for (field, value, expected) in cases {
            let mut bytes = jpeg_shard();
            bytes[entry_field(1, field)] = value;
            reseal_record(&mut bytes, 1);

            let message = open_err(&bytes);

            assert!(message.contains("record 1 at byte"), "{message}");
            assert!(message.contains(expected), "expected {expected:?} in {message:?}");
        }
    }

    #[test]
    fn zero_variable_side_is_rejected() {
        let mut bytes = jpeg_shard();
        put_u32(&mut bytes, entry_field(0, 24), 0);
        reseal_record(&mut bytes, 0);

        let message = open_err(&bytes);

        assert!(message.contains("record 0 at byte 192: height 0 is outside"), "{message}");
    }
}
