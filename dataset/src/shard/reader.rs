//! Opening one shard file: validation of every size and offset, then record access through a
//! read-only memory map.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::shard::layout::{
    header_crc32c, record_crc32c, IndexEntry, ShardHeader, HEADER_LEN, INDEX_ENTRY_LEN,
};
use crate::shard::limits::Limits;
use crate::shard::mmap::map_read_only;
use crate::shard::schema::{Encoding, RecordMeta, SampleSchema};
use crate::shard::validate::validate;

/// The bytes every JPEG file starts with: the start-of-image marker.
const JPEG_START: [u8; 2] = [0xff, 0xd8];

/// One open shard file, memory-mapped read-only and validated.
///
/// [`ShardReader::open`] checks the header, every index entry and the header checksum before
/// it returns, so the accessors below index only into ranges known to lie inside the file.
/// Opening reads the header and index only, never the record data. Record checksums, path
/// text and JPEG markers are checked only by [`ShardReader::checked_record`] and
/// [`ShardReader::check_records`], and path text also by [`ShardReader::source_path`].
#[derive(Debug)]
pub struct ShardReader {
    path: PathBuf,
    map: Mmap,
    header: ShardHeader,
    len: usize,
}

/// The header checksum as stored and as computed from the mapped bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderChecksum {
    pub stored: u32,
    pub computed: u32,
}

impl HeaderChecksum {
    pub fn matches(&self) -> bool {
        self.stored == self.computed
    }

    pub fn mismatch_message(&self) -> String {
        format!(
            "header checksum mismatch: stored 0x{:08x}, computed 0x{:08x}",
            self.stored, self.computed
        )
    }
}

/// A record that fails a check of its bytes: its checksum, or the contents the format
/// prescribes once the checksum matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadRecord {
    pub index: usize,
    pub offset: u64,
    pub fault: RecordFault,
}

/// The fault of a [`BadRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordFault {
    /// The stored checksum differs from the checksum of the record and entry bytes.
    Checksum { stored: u32, computed: u32 },
    /// The source path is not UTF-8; `valid_up_to` bytes of it are.
    PathNotUtf8 { valid_up_to: usize },
    /// A JPEG payload that does not start with `FF D8`.
    NotJpeg { start: [u8; 2] },
}

impl BadRecord {
    pub fn message(&self) -> String {
        let place = format!("record {} at byte {}", self.index, self.offset);
        match self.fault {
            RecordFault::Checksum { stored, computed } => format!(
                "{place}: checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"
            ),
            RecordFault::PathNotUtf8 { valid_up_to } => {
                format!("{place}: source path is not valid UTF-8 after {valid_up_to} bytes")
            }
            RecordFault::NotJpeg { start } => format!(
                "{place}: JPEG payload starts with {:02X} {:02X}, expected FF D8",
                start[0], start[1]
            ),
        }
    }

    /// Builds the error for the shard at `path`: [`Error::Corrupt`] for a checksum mismatch,
    /// [`Error::Format`] for contents the writer should never have written.
    pub fn into_error(self, path: &Path, suffix: &str) -> Error {
        let message = self.message() + suffix;
        match self.fault {
            RecordFault::Checksum { .. } => Error::Corrupt { path: path.into(), message },
            _ => Error::format(path, message),
        }
    }
}

impl ShardReader {
    /// Opens and validates the shard file at `path` with [`Limits::default`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be opened or mapped, [`Error::Format`] when a header
    /// field, size or index entry is invalid (a version 1 file included), and
    /// [`Error::Corrupt`] when the header checksum does not match. Messages name the file and,
    /// for index entries, the record and its byte offset.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_limits(path, &Limits::default())
    }

    /// Opens and validates the shard file at `path`, rejecting sizes beyond `limits`.
    ///
    /// # Errors
    ///
    /// As [`ShardReader::open`].
    pub fn open_with_limits(path: &Path, limits: &Limits) -> Result<Self> {
        let (reader, checksum) = Self::open_unverified(path, limits)?;

        if !checksum.matches() {
            return Err(Error::Corrupt { path: path.into(), message: checksum.mismatch_message() });
        }
        Ok(reader)
    }

    /// Opens the file and checks its structure, returning the header checksum unjudged so that
    /// a verifier can still locate a bad record when the checksum does not match.
    pub(crate) fn open_unverified(path: &Path, limits: &Limits) -> Result<(Self, HeaderChecksum)> {
        let file = File::open(path).map_err(|source| Error::io(path, source))?;
        let metadata = file.metadata().map_err(|source| Error::io(path, source))?;

        // A header-sized check before mapping keeps empty files away from `mmap`, which
        // rejects zero-length mappings on some platforms.
        if metadata.len() < HEADER_LEN as u64 {
            return Err(Error::format(
                path,
                format!(
                    "file size {} is smaller than the {HEADER_LEN}-byte header",
                    metadata.len()
                ),
            ));
        }

        let map = map_read_only(&file, path)?;
        let layout = validate(path, &map, limits)?;

        let index_end = HEADER_LEN + layout.len * INDEX_ENTRY_LEN;
        let mut header_bytes = [0u8; HEADER_LEN];
        header_bytes.copy_from_slice(&map[..HEADER_LEN]);
        let checksum = HeaderChecksum {
            stored: layout.header.header_crc32c,
            computed: header_crc32c(&header_bytes, &map[HEADER_LEN..index_end]),
        };

        let reader =
            ShardReader { path: path.to_path_buf(), map, header: layout.header, len: layout.len };
        Ok((reader, checksum))
    }

    /// Returns the path the shard was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the validated header.
    pub fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// Returns the layout, shape and storage of every record.
    pub fn schema(&self) -> &SampleSchema {
        &self.header.schema
    }

    /// Returns the number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the shard has no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the file size in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Returns the whole mapped file.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Returns the index entry of record `i`.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn entry(&self, i: usize) -> IndexEntry {
        let at = self.entry_offset(i);
        let mut bytes = [0u8; INDEX_ENTRY_LEN];
        bytes.copy_from_slice(&self.map[at..at + INDEX_ENTRY_LEN]);
        IndexEntry::decode(&bytes)
    }

    /// Returns the payload of record `i` without checking its checksum: u8 HWC pixels for a
    /// raw record, the JPEG file for a JPEG record. The source path is not part of it.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn record(&self, i: usize) -> &[u8] {
        let entry = self.entry(i);
        &self.record_bytes(&entry)[usize::from(entry.path_len)..]
    }

    /// Returns the source path of record `i`, relative to the source root with `/` between
    /// components. The path is empty when the source had no file per record (IDX, CIFAR).
    ///
    /// # Errors
    ///
    /// [`Error::Format`] naming the record when the path bytes are not UTF-8. Only a damaged
    /// file gives this error, but opening does not read path bytes, so it surfaces here.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn source_path(&self, i: usize) -> Result<&str> {
        let entry = self.entry(i);
        let path = &self.record_bytes(&entry)[..usize::from(entry.path_len)];

        std::str::from_utf8(path).map_err(|error| {
            let fault = RecordFault::PathNotUtf8 { valid_up_to: error.valid_up_to() };
            let bad = BadRecord { index: i, offset: entry.offset, fault };
            bad.into_error(&self.path, "")
        })
    }

    /// Returns the shape, encoding and flags of record `i`.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn meta(&self, i: usize) -> RecordMeta {
        let entry = self.entry(i);

        // `open` checked that every entry's channels and encoding equal the header's.
        RecordMeta {
            height: entry.height,
            width: entry.width,
            channels: entry.channels,
            encoding: self.header.schema.encoding,
            flags: entry.flags,
        }
    }

    /// Returns the payload of record `i` after checking its checksum, its source path (UTF-8)
    /// and, for a JPEG record, the `FF D8` start of its payload.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] naming the record, its byte offset and both checksums when the
    /// stored checksum does not match the record bytes and entry fields, and [`Error::Format`]
    /// naming the record for a path or payload start that the format does not allow.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn checked_record(&self, i: usize) -> Result<&[u8]> {
        match self.bad_record(i) {
            None => Ok(self.record(i)),
            Some(bad) => Err(bad.into_error(&self.path, "")),
        }
    }

    /// Checks every record as [`ShardReader::checked_record`] does, in parallel on the current
    /// rayon pool.
    ///
    /// # Errors
    ///
    /// The error of the record with the lowest index that fails, whatever the thread count.
    pub fn check_records(&self) -> Result<()> {
        match self.first_bad_record() {
            None => Ok(()),
            Some(bad) => Err(bad.into_error(&self.path, "")),
        }
    }

    /// Returns the fine label of record `i`.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn label(&self, i: usize) -> u32 {
        self.entry(i).label
    }

    /// Returns the coarse label of record `i`, or `None` when the shard stores one label per
    /// record.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn coarse_label(&self, i: usize) -> Option<u32> {
        let second = self.entry(i).second_label;
        (self.header.labels_per_record == 2).then_some(second)
    }

    /// Finds the lowest-indexed record that fails [`ShardReader::checked_record`].
    pub(crate) fn first_bad_record(&self) -> Option<BadRecord> {
        // `find_map_first` returns the lowest matching index, so the result does not depend
        // on how rayon splits the range.
        (0..self.len).into_par_iter().find_map_first(|i| self.bad_record(i))
    }

    fn bad_record(&self, i: usize) -> Option<BadRecord> {
        let entry = self.entry(i);
        let bytes = self.record_bytes(&entry);
        let (path, payload) = bytes.split_at(usize::from(entry.path_len));
        let bad = |fault| Some(BadRecord { index: i, offset: entry.offset, fault });

        let computed = record_crc32c(bytes, &entry);
        if computed != entry.crc32c {
            return bad(RecordFault::Checksum { stored: entry.crc32c, computed });
        }
        if let Err(error) = std::str::from_utf8(path) {
            return bad(RecordFault::PathNotUtf8 { valid_up_to: error.valid_up_to() });
        }
        // `open` checked that a JPEG payload has at least 4 bytes.
        if self.header.schema.encoding == Encoding::Jpeg && payload[..2] != JPEG_START {
            return bad(RecordFault::NotJpeg { start: [payload[0], payload[1]] });
        }
        None
    }

    /// Returns the path and payload bytes of the record `entry` describes.
    fn record_bytes(&self, entry: &IndexEntry) -> &[u8] {
        // `open` checked that every record lies inside the mapped file.
        let start = entry.offset as usize;
        &self.map[start..start + entry.length as usize]
    }

    fn entry_offset(&self, i: usize) -> usize {
        self.assert_in_range(i);
        HEADER_LEN + i * INDEX_ENTRY_LEN
    }

    fn assert_in_range(&self, i: usize) {
        assert!(
            i < self.len,
            "{}: record index {i} out of range 0..{}",
            self.path.display(),
            self.len
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::tests::fixtures::{
        build_records, build_shard, entry_field, jpeg_records, raw_variable_records, reseal_record,
        ShardSpec,
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

    #[test]
    fn open_reads_records_and_labels() {
        let spec = ShardSpec::new(3, 5, 3, 4).with_coarse();
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "train-00000.shard", &build_shard(&spec));

        let reader = ShardReader::open(&path).unwrap();

        assert_eq!(reader.len(), 4);
        assert_eq!(*reader.schema(), SampleSchema::raw_u8(3, 5, 3));
        for i in 0..4 {
            assert_eq!(reader.record(i), spec.record(i));
            assert_eq!(reader.checked_record(i).unwrap(), spec.record(i));
            assert_eq!(reader.label(i), spec.labels[i]);
            assert_eq!(reader.coarse_label(i), Some(spec.coarse[i]));
            assert_eq!(reader.source_path(i).unwrap(), "");
            assert_eq!(reader.meta(i), spec.schema.fixed_meta().unwrap());
        }
        assert!(reader.check_records().is_ok());
    }

    #[test]
    fn one_label_shard_has_no_coarse_label() {
        let spec = ShardSpec::new(2, 2, 1, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "test-00000.shard", &build_shard(&spec));

        let reader = ShardReader::open(&path).unwrap();

        assert_eq!(reader.coarse_label(2), None);
        assert_eq!(reader.label(2), spec.labels[2]);
    }

    #[test]
    fn jpeg_records_give_payload_path_and_meta() {
        let records = jpeg_records(5);
        let schema = SampleSchema::variable(3, Encoding::Jpeg);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "val-00000.shard", &build_records(&schema, 1, &records));

        let reader = ShardReader::open(&path).unwrap();

        assert_eq!(*reader.schema(), schema);
        assert_eq!(reader.len(), 5);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(reader.record(i), record.payload, "record {i}");
            assert_eq!(reader.checked_record(i).unwrap(), record.payload, "record {i}");
            assert_eq!(reader.source_path(i).unwrap(), record.path, "record {i}");
            assert_eq!(reader.meta(i), record.meta, "record {i}");
            assert_eq!(reader.label(i), record.label, "record {i}");
        }
        assert!(reader.meta(1).is_reencoded());
        assert!(!reader.meta(2).is_reencoded());
    }

    #[test]
    fn fixed_record_excludes_its_path() {
        let spec = ShardSpec::new(2, 2, 1, 3);
        let mut records = spec.records();
        records[1].path = "digits/one.png".into();
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a-00000.shard", &build_records(&spec.schema, 1, &records));

        let reader = ShardReader::open(&path).unwrap();

        for i in 0..3 {
            assert_eq!(reader.record(i), spec.record(i), "record {i}");
        }
        assert_eq!(reader.source_path(1).unwrap(), "digits/one.png");
        assert_eq!(reader.source_path(2).unwrap(), "");
        assert!(reader.check_records().is_ok());
    }

    #[test]
    fn header_checksum_mismatch_is_corrupt() {
        let mut bytes = build_shard(&ShardSpec::new(2, 2, 1, 3));
        bytes[HEADER_LEN + 16] ^= 0x01;

        let message = open_err(&bytes);

        assert!(message.contains("header checksum mismatch: stored 0x"), "{message}");
    }

    #[test]
    fn flipped_pixel_fails_checked_record_only() {
        let spec = ShardSpec::new(2, 3, 1, 3);
        let mut bytes = build_shard(&spec);
        let offset = HEADER_LEN + 3 * INDEX_ENTRY_LEN + 6 + 2;
        bytes[offset] ^= 0x80;
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "train-00000.shard", &bytes);

        let reader = ShardReader::open(&path).unwrap();
        let message = reader.checked_record(1).unwrap_err().to_string();

        assert!(reader.checked_record(0).is_ok());
        assert!(message.contains("record 1 at byte"), "{message}");
        assert!(message.contains("checksum mismatch"), "{message}");
        assert_eq!(reader.check_records().unwrap_err().to_string(), message);
    }

    #[test]
    fn non_utf8_path_is_an_error() {
        let schema = SampleSchema::variable(3, Encoding::Jpeg);
        let mut bytes = build_records(&schema, 1, &jpeg_records(3));
        let offset_at = entry_field(2, 0);
        let offset = u64::from_le_bytes(bytes[offset_at..offset_at + 8].try_into().unwrap());
        // A lone continuation byte, with the checksums rebuilt as a faulty writer would have.
        bytes[offset as usize] = 0x80;
        reseal_record(&mut bytes, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a-00000.shard", &bytes);

        let reader = ShardReader::open(&path).unwrap();
        let message = reader.source_path(2).unwrap_err().to_string();
        let checked = reader.checked_record(2).unwrap_err();

        let expected = format!("record 2 at byte {offset}: source path is not valid UTF-8");
        assert!(message.contains(&expected), "{message}");
        assert!(matches!(checked, Error::Format { .. }), "{checked}");
        assert!(reader.source_path(1).is_ok());
    }

    #[test]
    fn jpeg_without_start_marker_fails_checks() {
        let mut records = jpeg_records(2);
        records[0].payload[0] = 0x89;
        let schema = SampleSchema::variable(3, Encoding::Jpeg);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a-00000.shard", &build_records(&schema, 1, &records));

        let reader = ShardReader::open(&path).unwrap();
        let message = reader.check_records().unwrap_err().to_string();

        assert!(message.contains("record 0 at byte 152"), "{message}");
        assert!(message.contains("JPEG payload starts with 89 D8, expected FF D8"), "{message}");
        assert!(reader.checked_record(1).is_ok());
    }

    #[test]
    fn raw_variable_records_read_back() {
        let records = raw_variable_records(4);
        let schema = SampleSchema::variable(3, Encoding::Raw);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a-00000.shard", &build_records(&schema, 1, &records));

        let reader = ShardReader::open(&path).unwrap();

        for (i, record) in records.iter().enumerate() {
            let meta = reader.meta(i);
            assert_eq!(reader.record(i), record.payload, "record {i}");
            assert_eq!(reader.record(i).len() as u64, meta.raw_len().unwrap(), "record {i}");
            assert_eq!(reader.source_path(i).unwrap(), record.path, "record {i}");
        }
        assert!(reader.check_records().is_ok());
    }
}
