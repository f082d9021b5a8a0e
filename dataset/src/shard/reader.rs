//! Opening one shard file: validation of every size and offset, then record access through a
//! read-only memory map.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::shard::layout::{
    header_crc32c, record_crc32c, IndexEntry, SampleSchema, ShardHeader, HEADER_LEN,
    INDEX_ENTRY_LEN,
};
use crate::shard::limits::Limits;
use crate::shard::mmap::map_read_only;
use crate::shard::validate::validate;

/// One open shard file, memory-mapped read-only and validated.
///
/// [`ShardReader::open`] checks the header, every index entry and the header checksum before
/// it returns, so the accessors below index only into ranges known to lie inside the file.
/// Record checksums are checked only by [`ShardReader::checked_record`] and
/// [`ShardReader::check_records`].
#[derive(Debug)]
pub struct ShardReader {
    path: PathBuf,
    map: Mmap,
    header: ShardHeader,
    len: usize,
    record_len: usize,
    data_offset: usize,
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

/// A record whose stored checksum differs from the checksum of its bytes and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadRecord {
    pub index: usize,
    pub offset: u64,
    pub stored: u32,
    pub computed: u32,
}

impl BadRecord {
    pub fn message(&self) -> String {
        format!(
            "record {} at byte {}: checksum mismatch: stored 0x{:08x}, computed 0x{:08x}",
            self.index, self.offset, self.stored, self.computed
        )
    }
}

impl ShardReader {
    /// Opens and validates the shard file at `path` with [`Limits::default`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be opened or mapped, [`Error::Format`] when a header
    /// field, size or index entry is invalid, and [`Error::Corrupt`] when the header checksum
    /// does not match. Messages name the file and, for index entries, the record and its byte
    /// offset.
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

        let reader = ShardReader {
            path: path.to_path_buf(),
            map,
            header: layout.header,
            len: layout.len,
            record_len: layout.record_len,
            data_offset: index_end,
        };
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

    /// Returns the shape and storage of every record.
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

    /// Returns the bytes of record `i` (u8 HWC pixels) without checking its checksum.
    ///
    /// This is the hot path: it reads no index entry, because `open` verified that records
    /// are stored back to back at the schema's record size.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn record(&self, i: usize) -> &[u8] {
        self.assert_in_range(i);
        let start = self.data_offset + i * self.record_len;
        &self.map[start..start + self.record_len]
    }

    /// Returns the bytes of record `i` after checking its checksum.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] naming the record, its byte offset and both checksums when the
    /// stored checksum does not match the record bytes and labels.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn checked_record(&self, i: usize) -> Result<&[u8]> {
        match self.bad_record(i) {
            None => Ok(self.record(i)),
            Some(bad) => Err(Error::Corrupt { path: self.path.clone(), message: bad.message() }),
        }
    }

    /// Checks the checksum of every record, in parallel on the current rayon pool.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for the record with the lowest index whose checksum does not match,
    /// whatever the thread count.
    pub fn check_records(&self) -> Result<()> {
        match self.first_bad_record() {
            None => Ok(()),
            Some(bad) => Err(Error::Corrupt { path: self.path.clone(), message: bad.message() }),
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

    /// Finds the lowest-indexed record whose checksum does not match.
    pub(crate) fn first_bad_record(&self) -> Option<BadRecord> {
        // `find_map_first` returns the lowest matching index, so the result does not depend
        // on how rayon splits the range.
        (0..self.len).into_par_iter().find_map_first(|i| self.bad_record(i))
    }

    fn bad_record(&self, i: usize) -> Option<BadRecord> {
        let entry = self.entry(i);
        let computed = record_crc32c(self.record(i), entry.label, entry.second_label);

        (computed != entry.crc32c).then_some(BadRecord {
            index: i,
            offset: entry.offset,
            stored: entry.crc32c,
            computed,
        })
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
    use crate::shard::tests::fixtures::{build_shard, ShardSpec};

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
}
