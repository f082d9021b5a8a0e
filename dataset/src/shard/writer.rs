//! Writing one shard file: records streamed to a temporary file behind reserved header and
//! index space, then the header and index written in place, synced and renamed.

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::shard::atomic::{commit_file, tmp_path};
use crate::shard::layout::{
    header_crc32c, record_crc32c_parts, IndexEntry, ShardHeader, HEADER_LEN, INDEX_ENTRY_LEN,
    NO_LABEL,
};
use crate::shard::limits::Limits;
use crate::shard::manifest::ShardFile;
use crate::shard::schema::{Dtype, Encoding, Layout, RecordMeta, SampleSchema};
use crate::shard::validate::{check_entry, EntryRules};

/// One record to write: its source path, its payload, its metadata and its labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The source file's path relative to the source root, with `/` between components; empty
    /// when the source has no file per record. At most 65535 bytes.
    pub path: &'a str,
    /// The payload: u8 HWC pixels for a raw record, a JPEG file for a JPEG record.
    pub payload: &'a [u8],
    /// The payload's shape, encoding and flags; channels and encoding equal the schema's.
    pub meta: RecordMeta,
    /// The fine class label.
    pub label: u32,
    /// The coarse class label, present exactly in a two-label shard.
    pub coarse_label: Option<u32>,
}

/// Writes one shard file whose record count is fixed up front.
///
/// Records go to `<name>.tmp-<pid>` in the output folder. [`ShardWriter::finish`] writes the
/// header and index, syncs the file and renames it to `<name>`. The caller syncs the folder
/// once all files of a set are in place. Dropping an unfinished writer removes its temporary
/// file. The file's bytes depend only on the schema and the records pushed.
#[derive(Debug)]
pub struct ShardWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
    file_name: String,
    schema: SampleSchema,
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
        check_schema(file_name, &schema)?;
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
            labels_per_record,
            capacity: record_count,
            // The index grows with each push, so memory follows the records actually written.
            index: Vec::new(),
            data_offset,
            data_length: 0,
        })
    }

    /// Appends one record of a fixed-layout shard, with an empty source path, its fine label
    /// and, in a two-label shard, its coarse label.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a variable-layout shard, and otherwise as
    /// [`ShardWriter::push_record`].
    pub fn push(&mut self, record: &[u8], label: u32, coarse_label: Option<u32>) -> Result<()> {
        let Some(meta) = self.schema.fixed_meta() else {
            return Err(Error::InvalidArgument(format!(
                "{}: push writes fixed-layout records, but the schema is {}; use push_record",
                self.file_name, self.schema
            )));
        };
        self.push_record(&RecordRef { path: "", payload: record, meta, label, coarse_label })
    }

    /// Appends one record of either layout: its path bytes, then its payload.
    ///
    /// The record is checked as a reader checks it before anything is written: sizes, the
    /// metadata against the schema (a fixed layout's shape, a raw payload's length
    /// `height * width * channels`), flags and labels. A JPEG payload must also start with
    /// `FF D8`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the record when any check fails or the shard is
    /// already full, and [`Error::Io`] when the write fails.
    pub fn push_record(&mut self, record: &RecordRef<'_>) -> Result<()> {
        let written = (self.index.len() / INDEX_ENTRY_LEN) as u64;
        let offset = self.data_offset + self.data_length;
        let place = format!("{}: record {written} at byte {offset}", self.file_name);
        let invalid = |message: String| Err(Error::InvalidArgument(format!("{place}: {message}")));

        if written == self.capacity {
            return invalid(format!("shard is already full with {} records", self.capacity));
        }
        let Ok(path_len) = u16::try_from(record.path.len()) else {
            return invalid(format!("source path of {} bytes exceeds 65535", record.path.len()));
        };
        let length = record.path.len() as u64 + record.payload.len() as u64;
        let Ok(length) = u32::try_from(length) else {
            return invalid(format!("record of {length} bytes exceeds the 32-bit length field"));
        };
        let second_label = match self.second_label(record) {
            Ok(second_label) => second_label,
            Err(message) => return invalid(message),
        };
        let is_jpeg = record.meta.encoding == Encoding::Jpeg;
        if is_jpeg && !record.payload.starts_with(&[0xff, 0xd8]) {
            return invalid("JPEG payload does not start with FF D8".into());
        }

        let mut entry = IndexEntry {
            offset,
            length,
            crc32c: 0,
            label: record.label,
            second_label,
            height: record.meta.height,
            width: record.meta.width,
            path_len,
            channels: record.meta.channels,
            encoding: record.meta.encoding.code(),
            flags: record.meta.flags,
        };
        let limits = Limits::default();
        let rules = EntryRules {
            schema: &self.schema,
            labels_per_record: self.labels_per_record,
            limits: &limits,
        };
        if let Err(message) = check_entry(&entry, &rules) {
            return invalid(message);
        }
        entry.crc32c = record_crc32c_parts(&[record.path.as_bytes(), record.payload], &entry);

        let file = self.file.as_mut().expect("file is present until finish or drop");
        let io = |source| Error::io(&self.tmp, source);
        file.write_all(record.path.as_bytes()).map_err(io)?;
        file.write_all(record.payload).map_err(io)?;
        self.index.extend_from_slice(&entry.encode());
        self.data_length += u64::from(length);
        Ok(())
    }

    /// Returns the second label to store, or what is wrong with the record's labels.
    fn second_label(&self, record: &RecordRef<'_>) -> std::result::Result<u32, String> {
        if record.label == NO_LABEL || record.coarse_label == Some(NO_LABEL) {
            return Err(format!("label {NO_LABEL} is reserved"));
        }
        match (self.labels_per_record, record.coarse_label) {
            (1, None) => Ok(NO_LABEL),
            (2, Some(coarse)) => Ok(coarse),
            (_, Some(coarse)) => Err(format!("coarse label {coarse} for a one-label shard")),
            (_, None) => Err("coarse label missing in a two-label shard".into()),
        }
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

/// Checks that `schema` is one a reader with default limits accepts. Returns the payload size
/// of every record for a fixed layout, and `None` for a variable layout.
pub(crate) fn check_schema(file_name: &str, schema: &SampleSchema) -> Result<Option<u64>> {
    let limits = Limits::default();
    let (height, width, channels) = (schema.height, schema.width, schema.channels);
    let invalid = |message: String| Err(Error::InvalidArgument(format!("{file_name}: {message}")));

    // Index entries store channels in one byte.
    let max_channels = limits.max_channels.min(u32::from(u8::MAX));
    if !(1..=max_channels).contains(&channels) {
        return invalid(format!("{channels} channels is outside 1..={max_channels}"));
    }
    if schema.dtype != Dtype::U8 {
        return invalid(format!("dtype {:?} is not u8", schema.dtype));
    }

    match schema.layout {
        Layout::Variable if (height, width) != (0, 0) => {
            invalid(format!("a variable layout has height and width 0, found {height}x{width}"))
        }
        Layout::Variable => Ok(None),
        Layout::Fixed => check_fixed_schema(file_name, schema, &limits).map(Some),
    }
}

fn check_fixed_schema(file_name: &str, schema: &SampleSchema, limits: &Limits) -> Result<u64> {
    let (height, width, channels) = (schema.height, schema.width, schema.channels);
    let shape = format!("{height}x{width}x{channels}");

    if schema.encoding != Encoding::Raw {
        return Err(Error::InvalidArgument(format!(
            "{file_name}: a fixed layout stores raw records, not {}",
            schema.encoding.name()
        )));
    }
    let sides_valid =
        (1..=limits.max_side).contains(&height) && (1..=limits.max_side).contains(&width);
    if !sides_valid {
        return Err(Error::InvalidArgument(format!(
            "{file_name}: sample shape {shape} is outside 1..={} pixels per side",
            limits.max_side
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
    use crate::shard::schema::FLAG_REENCODED;
    use crate::shard::tests::fixtures::{
        build_records, build_shard, jpeg_records, raw_variable_records, FixtureRecord, ShardSpec,
    };

    fn write_spec(dir: &Path, spec: &ShardSpec) -> ShardFile {
        let count = spec.labels.len();
        let mut writer = ShardWriter::create(
            dir,
            "train-00000.shard",
            spec.schema,
            spec.labels_per_record(),
            count as u64,
        )
        .unwrap();
        for i in 0..count {
            let coarse = spec.has_coarse.then(|| spec.coarse[i]);
            writer.push(spec.record(i), spec.labels[i], coarse).unwrap();
        }
        writer.finish().unwrap()
    }

    fn write_records(dir: &Path, schema: SampleSchema, records: &[FixtureRecord]) -> Vec<u8> {
        let count = records.len() as u64;
        let mut writer = ShardWriter::create(dir, "a-00000.shard", schema, 1, count).unwrap();
        for record in records {
            writer.push_record(&record.as_ref()).unwrap();
        }
        writer.finish().unwrap();
        fs::read(dir.join("a-00000.shard")).unwrap()
    }

    /// Returns the message of pushing `record` as the first record of a fresh one-label shard.
    fn push_error(schema: SampleSchema, record: &FixtureRecord) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 1).unwrap();
        writer.push_record(&record.as_ref()).unwrap_err().to_string()
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
    fn variable_writer_matches_hand_built_layout() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (SampleSchema::variable(3, Encoding::Jpeg), jpeg_records(6)),
            (SampleSchema::variable(3, Encoding::Raw), raw_variable_records(6)),
        ];

        for (schema, records) in cases {
            let bytes = write_records(dir.path(), schema, &records);

            assert_eq!(bytes, build_records(&schema, 1, &records), "{schema}");
        }
    }

    #[test]
    fn rejected_record_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::variable(3, Encoding::Jpeg);
        let records = jpeg_records(2);
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 2).unwrap();
        let mut bad = records[1].clone();
        bad.meta.channels = 1;

        writer.push_record(&records[0].as_ref()).unwrap();
        assert!(writer.push_record(&bad.as_ref()).is_err());
        writer.push_record(&records[1].as_ref()).unwrap();
        writer.finish().unwrap();

        let bytes = fs::read(dir.path().join("a-00000.shard")).unwrap();
        assert_eq!(bytes, build_records(&schema, 1, &records));
    }

    #[test]
    fn wrong_record_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::raw_u8(2, 3, 1);
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 1).unwrap();

        let message = writer.push(&[0; 5], 0, None).unwrap_err().to_string();

        assert!(message.contains("a-00000.shard: record 0 at byte 112"), "{message}");
        assert!(
            message.contains("payload length 5 does not match 2x3x1 = 6 bytes of a raw record"),
            "{message}"
        );
    }

    #[test]
    fn push_needs_a_fixed_layout() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::variable(3, Encoding::Raw);
        let mut writer = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 1).unwrap();

        let message = writer.push(&[0; 3], 0, None).unwrap_err().to_string();

        assert!(message.contains("push writes fixed-layout records"), "{message}");
        assert!(message.contains("use push_record"), "{message}");
    }

    #[test]
    fn invalid_records_are_rejected() {
        let jpeg = SampleSchema::variable(3, Encoding::Jpeg);
        let raw = SampleSchema::variable(3, Encoding::Raw);
        let fixed = SampleSchema::raw_u8(2, 3, 3);
        let jpeg_record = jpeg_records(1).remove(0);
        let raw_record = raw_variable_records(2).remove(1);
        let fixed_record = FixtureRecord {
            path: "a/b.png".into(),
            payload: vec![7; 18],
            meta: fixed.fixed_meta().unwrap(),
            label: 0,
            coarse: None,
        };
        let change = |record: &FixtureRecord, edit: &dyn Fn(&mut FixtureRecord)| {
            let mut changed = record.clone();
            edit(&mut changed);
            changed
        };

        let cases = [
            (jpeg, change(&jpeg_record, &|r| r.meta.channels = 1), "channels 1 does not match 3"),
            (
                jpeg,
                change(&jpeg_record, &|r| r.meta.encoding = Encoding::Raw),
                "encoding code 0 does not match 1 (jpeg)",
            ),
            (jpeg, change(&jpeg_record, &|r| r.payload[1] = 0), "does not start with FF D8"),
            (jpeg, change(&jpeg_record, &|r| r.meta.height = 0), "height 0 is outside"),
            (jpeg, change(&jpeg_record, &|r| r.meta.flags = 6), "flags 0x00000006"),
            (
                jpeg,
                change(&jpeg_record, &|r| r.path = "x".repeat(65536)),
                "source path of 65536 bytes exceeds 65535",
            ),
            (jpeg, change(&jpeg_record, &|r| r.coarse = Some(1)), "coarse label 1"),
            (raw, change(&raw_record, &|r| r.meta.width += 1), "payload length 18"),
            (
                fixed,
                change(&fixed_record, &|r| (r.meta.height, r.meta.width) = (3, 2)),
                "shape 3x2 does not match the fixed 2x3",
            ),
            (fixed, change(&fixed_record, &|r| r.label = NO_LABEL), "label 4294967295 is reserved"),
        ];

        for (schema, record, expected) in cases {
            let message = push_error(schema, &record);
            assert!(message.contains("record 0 at byte"), "{message}");
            assert!(message.contains(expected), "expected {expected:?} in {message:?}");
        }
        let message = push_error(fixed, &change(&fixed_record, &|r| r.meta.flags = 9));
        assert!(message.contains("flags 0x00000009 set undefined bits"), "{message}");
    }

    #[test]
    fn fixed_records_may_carry_paths() {
        let dir = tempfile::tempdir().unwrap();
        let schema = SampleSchema::raw_u8(1, 2, 1);
        let meta = schema.fixed_meta().unwrap();
        let record = |path: &str, payload: Vec<u8>| FixtureRecord {
            path: path.into(),
            payload,
            meta: RecordMeta { flags: FLAG_REENCODED, ..meta },
            label: 1,
            coarse: None,
        };
        let records = [record("one.png", vec![1, 2]), record("", vec![3, 4])];

        let bytes = write_records(dir.path(), schema, &records);
        let reader = ShardReader::open(&dir.path().join("a-00000.shard")).unwrap();

        assert_eq!(bytes, build_records(&schema, 1, &records));
        assert_eq!(reader.record(0), [1, 2]);
        assert_eq!(reader.source_path(0).unwrap(), "one.png");
        assert!(reader.meta(1).is_reencoded());
    }

    #[test]
    fn invalid_schemas_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut variable_with_shape = SampleSchema::variable(3, Encoding::Jpeg);
        variable_with_shape.height = 4;
        let fixed_jpeg = SampleSchema { encoding: Encoding::Jpeg, ..SampleSchema::raw_u8(2, 2, 3) };
        let cases = [
            (variable_with_shape, "a variable layout has height and width 0, found 4x0"),
            (fixed_jpeg, "a fixed layout stores raw records, not jpeg"),
            (SampleSchema::variable(0, Encoding::Raw), "0 channels is outside 1..=64"),
            (SampleSchema::raw_u8(0, 2, 1), "sample shape 0x2x1 is outside"),
        ];

        for (schema, expected) in cases {
            let error = ShardWriter::create(dir.path(), "a-00000.shard", schema, 1, 1).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "expected {expected:?} in {message:?}");
        }
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
