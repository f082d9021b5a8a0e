//! Structural checks of a mapped shard file: every header field and index entry against the
//! file size and the reader's limits, before any of them is used.

use std::path::Path;

use crate::error::{Error, Result};
use crate::shard::layout::{
    Dtype, Encoding, IndexEntry, RawHeader, SampleSchema, ShardHeader, HEADER_LEN, INDEX_ENTRY_LEN,
    MAGIC, NO_LABEL, VERSION,
};
use crate::shard::limits::Limits;

/// The sizes `validate` established, all within the mapped file.
pub(crate) struct ValidLayout {
    pub header: ShardHeader,
    pub len: usize,
    pub record_len: usize,
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
    let record_len = schema.record_len().unwrap_or(u64::MAX);
    if record_len > limits.max_record_bytes {
        return Err(invalid(format!(
            "record size {record_len} of a {}x{}x{} sample exceeds the limit of {} bytes",
            schema.height, schema.width, schema.channels, limits.max_record_bytes
        )));
    }

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

    // The index fits in the mapped file, so `count` and `record_len` (at most `file_len` and
    // `max_record_bytes`) fit in `usize`.
    let len = usize::try_from(count).map_err(|_| invalid(format!("record count {count}")))?;
    let record_len_usize = usize::try_from(record_len)
        .map_err(|_| invalid(format!("record size {record_len} does not fit in memory")))?;
    let data_end =
        validate_entries(bytes, count, record_len, raw.labels_per_record).map_err(invalid)?;

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
    Ok(ValidLayout { header, len, record_len: record_len_usize })
}

fn validate_schema(raw: &RawHeader, limits: &Limits) -> std::result::Result<SampleSchema, String> {
    if raw.dtype != Dtype::U8.code() {
        return Err(format!("unknown dtype code {}; version 1 supports 0 (u8)", raw.dtype));
    }
    match raw.encoding {
        0 => {}
        1 => return Err("encoding 1 (jpeg) is reserved and not supported in version 1".into()),
        2 => return Err("encoding 2 (png) is reserved and not supported in version 1".into()),
        code => return Err(format!("unknown encoding code {code}; version 1 supports 0 (raw)")),
    }
    if raw.labels_per_record != 1 && raw.labels_per_record != 2 {
        return Err(format!("labels per record is {}, expected 1 or 2", raw.labels_per_record));
    }

    let sides = [("height", raw.height), ("width", raw.width)];
    for (name, value) in sides {
        if value == 0 || value > limits.max_side {
            return Err(format!("{name} {value} is outside 1..={}", limits.max_side));
        }
    }
    if raw.channels == 0 || raw.channels > limits.max_channels {
        return Err(format!("channels {} is outside 1..={}", raw.channels, limits.max_channels));
    }

    let schema = SampleSchema {
        height: raw.height,
        width: raw.width,
        channels: raw.channels,
        dtype: Dtype::U8,
        encoding: Encoding::Raw,
    };
    Ok(schema)
}

/// Checks that records lie inside the file, back to back from the end of the index, at the
/// schema's record size, with labels that match `labels_per_record`. Returns where the last
/// record ends. The caller has checked that the index lies inside `bytes`.
fn validate_entries(
    bytes: &[u8],
    count: u64,
    record_len: u64,
    labels_per_record: u8,
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
        if u64::from(entry.length) != record_len {
            return Err(format!(
                "{place}: length {} does not match the record size {record_len} of the schema",
                entry.length
            ));
        }
        if entry.label == NO_LABEL {
            return Err(format!("{place}: label {NO_LABEL} is reserved for an unused label"));
        }
        if labels_per_record == 1 && entry.second_label != NO_LABEL {
            return Err(format!(
                "{place}: second label {} in a shard with one label per record, expected {NO_LABEL}",
                entry.second_label
            ));
        }
        if labels_per_record == 2 && entry.second_label == NO_LABEL {
            return Err(format!(
                "{place}: coarse label missing ({NO_LABEL}) in a shard with two labels per record"
            ));
        }

        expected_offset += u64::from(entry.length);
    }
    Ok(expected_offset)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::shard::reader::ShardReader;
    use crate::shard::tests::fixtures::{build_shard, reseal, ShardSpec};

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
    fn reserved_encoding_is_rejected() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 2));
        bytes[37] = 1;
        reseal(&mut bytes);

        assert!(open_err(&bytes).contains("encoding 1 (jpeg) is reserved"));
    }

    #[test]
    fn max_length_record_exceeds_file() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 3));
        let length_at = HEADER_LEN + INDEX_ENTRY_LEN + 8;
        bytes[length_at..length_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
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
        let offset_at = HEADER_LEN + 2 * INDEX_ENTRY_LEN;
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
}
