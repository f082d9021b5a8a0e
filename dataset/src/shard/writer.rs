//! Writing one shard file: records streamed to a temporary file behind reserved header and
//! index space, then the header and index written in place, synced and renamed.

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::shard::atomic::{commit_file, tmp_path};
use crate::shard::layout::{
    header_crc32c, record_crc32c, IndexEntry, SampleSchema, ShardHeader, HEADER_LEN,
    INDEX_ENTRY_LEN, NO_LABEL,
};
use crate::shard::limits::Limits;
use crate::shard::manifest::ShardFile;

/// Writes one shard file whose record count is fixed up front.
///
/// Records go to `<name>.tmp-<pid>` in the output folder. [`ShardWriter::finish`] writes the
/// header and index, syncs the file and renames it to `<name>`. The caller syncs the folder
/// once all files of a set are in place. Dropping an unfinished writer removes its temporary
/// file.
#[derive(Debug)]
pub struct ShardWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
    file_name: String,
    schema: SampleSchema,
    record_len: u64,
    labels_per_record: u8,
    capacity: u64,
    index: Vec<u8>,
    data_offset: u64,
    data_length: u64,
}

impl ShardWriter {
    /// Creates `dir/<file_name>.tmp-<pid>` for `record_count` records of `schema`, with one or
    /// two labels per record.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a schema, record count or `labels_per_record` that a
    /// reader with [`Limits::default`] would reject, and [`Error::Io`] when the file cannot be
    /// created.
    pub fn create(
        dir: &Path,
        file_name: &str,
        schema: SampleSchema,
        labels_per_record: u8,
        record_count: u64,
    ) -> Result<Self> {
        let record_len = check_schema(file_name, &schema)?;
        if labels_per_record != 1 && labels_per_record != 2 {
            return Err(Error::InvalidArgument(format!(
                "{file_name}: labels per record is {labels_per_record}, expected 1 or 2"
            )));
        }

        let limits = Limits::default();
        if record_count > limits.max_records {
            return Err(Error::InvalidArgument(format!(
                "{file_name}: record count {record_count} exceeds the reader's limit of {} records",
                limits.max_records
            )));
        }
        let data_offset = HEADER_LEN as u64 + record_count * INDEX_ENTRY_LEN as u64;

        let tmp = tmp_path(dir, file_name);
        let file = File::create(&tmp).map_err(|source| Error::io(&tmp, source))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.seek(SeekFrom::Start(data_offset)).map_err(|source| Error::io(&tmp, source))?;

        Ok(ShardWriter {
            file: Some(file),
            tmp,
            target: dir.join(file_name),
            file_name: file_name.to_owned(),
            schema,
            record_len,
            labels_per_record,
            capacity: record_count,
            // The index grows with each push, so memory follows the records actually written.
            index: Vec::new(),
            data_offset,
            data_length: 0,
        })
    }

    /// Appends one record with its fine label and, in a two-label shard, its coarse label.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the record size differs from the schema's, the label is
    /// the reserved value `u32::MAX`, the coarse label's presence does not match the shard's
    /// label count, or the shard is already full. [`Error::Io`] when the write fails.
    pub fn push(&mut self, record: &[u8], label: u32, coarse_label: Option<u32>) -> Result<()> {
        let written = (self.index.len() / INDEX_ENTRY_LEN) as u64;
        let place = format!("{}: record {written}", self.file_name);

        if written == self.capacity {
            return Err(Error::InvalidArgument(format!(
                "{place}: shard is already full with {} records",
                self.capacity
            )));
        }
        if record.len() as u64 != self.record_len {
            return Err(Error::InvalidArgument(format!(
                "{place}: record of {} bytes, expected {} for the schema",
                record.len(),
                self.record_len
            )));
        }
        if label == NO_LABEL || coarse_label == Some(NO_LABEL) {
            return Err(Error::InvalidArgument(format!("{place}: label {NO_LABEL} is reserved")));
        }
        let second_label = match (self.labels_per_record, coarse_label) {
            (1, None) => NO_LABEL,
            (2, Some(coarse)) => coarse,
            (_, Some(coarse)) => {
                let message = format!("{place}: coarse label {coarse} for a one-label shard");
                return Err(Error::InvalidArgument(message));
            }
            (_, None) => {
                let message = format!("{place}: coarse label missing in a two-label shard");
                return Err(Error::InvalidArgument(message));
            }
        };

        let entry = IndexEntry {
            offset: self.data_offset + self.data_length,
            length: self.record_len as u32,
            crc32c: record_crc32c(record, label, second_label),
            label,
            second_label,
        };
        let file = self.file.as_mut().expect("file is present until finish or drop");
        file.write_all(record).map_err(|source| Error::io(&self.tmp, source))?;
        self.index.extend_from_slice(&entry.encode());
        self.data_length += self.record_len;
        Ok(())
    }

    /// Writes the header and index, syncs the file and renames it into place.
    ///
    /// Returns the file's manifest entry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when fewer records were pushed than announced, and
    /// [`Error::Io`] when writing, syncing or renaming fails.
    pub fn finish(mut self) -> Result<ShardFile> {
        let written = (self.index.len() / INDEX_ENTRY_LEN) as u64;
        if written != self.capacity {
            return Err(Error::InvalidArgument(format!(
                "{}: {written} records pushed, expected {}",
                self.file_name, self.capacity
            )));
        }

        let mut header = ShardHeader {
            record_count: written,
            schema: self.schema,
            labels_per_record: self.labels_per_record,
            index_offset: HEADER_LEN as u64,
            data_offset: self.data_offset,
            data_length: self.data_length,
            header_crc32c: 0,
        };
        header.header_crc32c = header_crc32c(&header.encode(), &self.index);

        let mut file = self.file.take().expect("file is present until finish or drop");
        let io = |source| Error::io(&self.tmp, source);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header.encode()).map_err(io)?;
        file.write_all(&self.index).map_err(io)?;
        let file = file.into_inner().map_err(|error| io(error.into_error()))?;
        commit_file(&file, &self.tmp, &self.target)?;

        Ok(ShardFile {
            file: self.file_name.clone(),
            records: written,
            bytes: header.data_offset + header.data_length,
            header_crc32c: header.header_crc32c,
        })
    }
}

/// Checks that `schema` is one a reader with default limits accepts, and returns its record
/// size in bytes.
pub(crate) fn check_schema(file_name: &str, schema: &SampleSchema) -> Result<u64> {
    let limits = Limits::default();
    let (height, width, channels) = (schema.height, schema.width, schema.channels);
    let shape = format!("{height}x{width}x{channels}");

    let sides_valid =
        (1..=limits.max_side).contains(&height) && (1..=limits.max_side).contains(&width);
    if !sides_valid || !(1..=limits.max_channels).contains(&channels) {
        return Err(Error::InvalidArgument(format!(
            "{file_name}: sample shape {shape} is outside 1..={} pixels per side and \
             1..={} channels",
            limits.max_side, limits.max_channels
        )));
    }

    match schema.record_len() {
        Some(len) if len <= limits.max_record_bytes => Ok(len),
        _ => Err(Error::InvalidArgument(format!(
            "{file_name}: a {shape} record exceeds the limit of {} bytes",
            limits.max_record_bytes
        ))),
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // `finish` takes the file, so a file still here means the shard was abandoned.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::reader::ShardReader;
    use crate::shard::tests::fixtures::{build_shard, ShardSpec};

    fn write_spec(dir: &Path, spec: &ShardSpec) -> ShardFile {
        let count = spec.labels.len();
        let labels_per_record = if spec.has_coarse { 2 } else { 1 };
        let mut writer = ShardWriter::create(
            dir,
            "train-00000.shard",
            spec.schema,
            labels_per_record,
            count as u64,
        )
        .unwrap();
        for i in 0..count {
            let coarse = spec.has_coarse.then(|| spec.coarse[i]);
            writer.push(spec.record(i), spec.labels[i], coarse).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn writer_matches_hand_built_layout() {
        let spec = ShardSpec::new(3, 4, 3, 5).with_coarse();
        let dir = tempfile::tempdir().unwrap();

        let entry = write_spec(dir.path(), &spec);
        let bytes = fs::read(dir.path().join("train-00000.shard")).unwrap();

        assert_eq!(bytes, build_shard(&spec));
        assert_eq!(entry.records, 5);
        assert_eq!(entry.bytes, bytes.len() as u64);
        assert_eq!(
            entry.header_crc32c,
            ShardReader::open(&dir.path().join(&entry.file)).unwrap().header().header_crc32c
        );
    }

    #[test]
    fn wrong_record_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::raw_u8(2, 3, 1);
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 1).unwrap();

        let message = writer.push(&[0; 5], 0, None).unwrap_err().to_string();

        assert!(message.contains("record 0: record of 5 bytes, expected 6"), "{message}");
    }

    #[test]
    fn short_shard_is_rejected_and_tmp_removed() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::raw_u8(1, 1, 1);
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 2).unwrap();
        writer.push(&[7], 1, None).unwrap();

        let message = writer.finish().unwrap_err().to_string();

        assert!(message.contains("1 records pushed, expected 2"), "{message}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn coarse_label_must_match_label_count() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::raw_u8(1, 1, 1);
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 2, 1).unwrap();

        assert!(writer.push(&[7], 1, None).is_err());
        assert!(writer.push(&[7], u32::MAX, Some(1)).is_err());
        assert!(writer.push(&[7], 1, Some(2)).is_ok());
        assert!(writer.push(&[7], 1, Some(2)).is_err());
    }
}
