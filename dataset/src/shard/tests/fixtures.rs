//! Hand-built shards and record sets for the tests, encoded straight from `layout` so that
//! reader tests do not depend on the writer.

use std::fs::{self, File};
use std::path::Path;

use crate::shard::layout::{
    header_crc32c, record_crc32c, IndexEntry, ShardHeader, HEADER_LEN, INDEX_ENTRY_LEN, NO_LABEL,
};
use crate::shard::manifest::{
    shard_file_name, Manifest, SplitManifest, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION,
};
use crate::shard::schema::{Encoding, RecordMeta, SampleSchema, FLAG_REENCODED};
use crate::shard::write_set::{RecordSet, RecordSplit};
use crate::shard::writer::{RecordRef, ShardWriter};

/// The contents of one fixed-layout test shard: `count` records of distinct pixels with
/// distinct labels and empty paths.
pub struct ShardSpec {
    pub schema: SampleSchema,
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub coarse: Vec<u32>,
    pub has_coarse: bool,
}

impl ShardSpec {
    pub fn new(height: u32, width: u32, channels: u32, count: usize) -> Self {
        let schema = SampleSchema::raw_u8(height, width, channels);
        let record_len = schema.record_len().unwrap() as usize;
        let pixels = (0..count * record_len).map(|i| (i * 7 + i / 251) as u8).collect();
        let labels = (0..count as u32).map(|i| i % 10).collect();
        let coarse = (0..count as u32).map(|i| i % 3).collect();
        ShardSpec { schema, pixels, labels, coarse, has_coarse: false }
    }

    pub fn with_coarse(mut self) -> Self {
        self.has_coarse = true;
        self
    }

    pub fn record_len(&self) -> usize {
        self.schema.record_len().unwrap() as usize
    }

    pub fn record(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.record_len()..(i + 1) * self.record_len()]
    }

    pub fn labels_per_record(&self) -> u8 {
        if self.has_coarse {
            2
        } else {
            1
        }
    }

    /// Returns the records as [`FixtureRecord`]s with empty paths.
    pub fn records(&self) -> Vec<FixtureRecord> {
        let meta = self.schema.fixed_meta().unwrap();
        (0..self.labels.len())
            .map(|i| FixtureRecord {
                path: String::new(),
                payload: self.record(i).to_vec(),
                meta,
                label: self.labels[i],
                coarse: self.has_coarse.then(|| self.coarse[i]),
            })
            .collect()
    }
}

/// One record of any layout: source path, payload, metadata and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct FixtureRecord {
    pub path: String,
    pub payload: Vec<u8>,
    pub meta: RecordMeta,
    pub label: u32,
    pub coarse: Option<u32>,
}

impl FixtureRecord {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            path: &self.path,
            payload: &self.payload,
            meta: self.meta,
            label: self.label,
            coarse_label: self.coarse,
        }
    }
}

/// Builds `count` JPEG records of distinct shapes, paths, payloads and flags. The payloads
/// start with `FF D8` and end with `FF D9` but are not decodable images, which the format
/// layer does not need.
pub fn jpeg_records(count: usize) -> Vec<FixtureRecord> {
    (0..count)
        .map(|i| {
            let mut payload = vec![0xff, 0xd8];
            payload.extend((0..5 + 3 * i).map(|k| (k * 31 + i * 7) as u8));
            payload.extend_from_slice(&[0xff, 0xd9]);
            let label = (i % 4) as u32;
            FixtureRecord {
                path: format!("class{label}/photo_{i:03}.JPEG"),
                payload,
                meta: RecordMeta {
                    height: 3 + i as u32,
                    width: 5 + 2 * i as u32,
                    channels: 3,
                    encoding: Encoding::Jpeg,
                    flags: if i % 2 == 1 { FLAG_REENCODED } else { 0 },
                },
                label,
                coarse: None,
            }
        })
        .collect()
}

/// Builds `count` raw RGB records of distinct shapes, with paths of varying length (the first
/// one empty).
pub fn raw_variable_records(count: usize) -> Vec<FixtureRecord> {
    (0..count)
        .map(|i| {
            let (height, width) = (1 + (i as u32 % 3), 2 + i as u32);
            let len = (height * width * 3) as usize;
            FixtureRecord {
                path: "d/".repeat(i) + if i == 0 { "" } else { "x.png" },
                payload: (0..len).map(|k| (k * 13 + i * 29) as u8).collect(),
                meta: RecordMeta { height, width, channels: 3, encoding: Encoding::Raw, flags: 0 },
                label: (i % 4) as u32,
                coarse: None,
            }
        })
        .collect()
}

/// Encodes `spec` as a complete, valid fixed-layout shard file.
pub fn build_shard(spec: &ShardSpec) -> Vec<u8> {
    build_records(&spec.schema, spec.labels_per_record(), &spec.records())
}

/// Encodes `records` as a complete, valid shard file of `schema`, written from the byte
/// layout alone.
pub fn build_records(
    schema: &SampleSchema,
    labels_per_record: u8,
    records: &[FixtureRecord],
) -> Vec<u8> {
    let count = records.len();
    let data_offset = (HEADER_LEN + count * INDEX_ENTRY_LEN) as u64;

    let mut index = Vec::new();
    let mut data = Vec::new();
    for record in records {
        let mut bytes = record.path.as_bytes().to_vec();
        bytes.extend_from_slice(&record.payload);
        let mut entry = IndexEntry {
            offset: data_offset + data.len() as u64,
            length: bytes.len() as u32,
            crc32c: 0,
            label: record.label,
            second_label: record.coarse.unwrap_or(NO_LABEL),
            height: record.meta.height,
            width: record.meta.width,
            path_len: record.path.len() as u16,
            channels: record.meta.channels,
            encoding: record.meta.encoding.code(),
            flags: record.meta.flags,
        };
        entry.crc32c = record_crc32c(&bytes, &entry);
        index.extend_from_slice(&entry.encode());
        data.extend_from_slice(&bytes);
    }

    let mut header = ShardHeader {
        record_count: count as u64,
        schema: *schema,
        labels_per_record,
        index_offset: HEADER_LEN as u64,
        data_offset,
        data_length: data.len() as u64,
        header_crc32c: 0,
    };
    header.header_crc32c = header_crc32c(&header.encode(), &index);

    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(&index);
    bytes.extend_from_slice(&data);
    bytes
}

/// Byte offset of field `field` (0 offset, 8 length, 12 crc, 16 label, 20 second label,
/// 24 height, 28 width, 32 path length, 34 channels, 35 encoding, 36 flags) in index entry `i`.
pub fn entry_field(i: usize, field: usize) -> usize {
    HEADER_LEN + i * INDEX_ENTRY_LEN + field
}

/// Recomputes the header checksum of a shard edited in place, so that a test reaches the
/// structural check behind it. Uses the record count stored in the header.
pub fn reseal(bytes: &mut [u8]) {
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[16..24]);
    let index_end = (HEADER_LEN as u64)
        .saturating_add(u64::from_le_bytes(count).saturating_mul(INDEX_ENTRY_LEN as u64))
        .min(bytes.len() as u64) as usize;

    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&bytes[..HEADER_LEN]);
    let crc = header_crc32c(&header, &bytes[HEADER_LEN..index_end]);
    bytes[64..68].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the record checksum of entry `i` from the bytes in place, as a writer with a
/// wrong entry would have, and then the header checksum.
pub fn reseal_record(bytes: &mut [u8], i: usize) {
    let at = entry_field(i, 0);
    let mut entry_bytes = [0u8; INDEX_ENTRY_LEN];
    entry_bytes.copy_from_slice(&bytes[at..at + INDEX_ENTRY_LEN]);
    let entry = IndexEntry::decode(&entry_bytes);
    let start = entry.offset as usize;
    let end = (start + entry.length as usize).min(bytes.len());

    let crc = record_crc32c(&bytes[start..end], &entry);
    bytes[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
    reseal(bytes);
}

/// Owned data behind a [`RecordSet`] with a train and a test split.
pub struct SetData {
    pub classes: Vec<String>,
    pub coarse_classes: Option<Vec<String>>,
    pub train: ShardSpec,
    pub test: ShardSpec,
}

impl SetData {
    /// Builds 10 classes, `train` and `test` records of the given shape, with coarse labels
    /// (3 coarse classes) when `coarse` is set.
    pub fn new(
        height: u32,
        width: u32,
        channels: u32,
        train: usize,
        test: usize,
        coarse: bool,
    ) -> Self {
        let mut train = ShardSpec::new(height, width, channels, train);
        let mut test = ShardSpec::new(height, width, channels, test);
        test.pixels.iter_mut().for_each(|p| *p = p.wrapping_add(101));
        train.has_coarse = coarse;
        test.has_coarse = coarse;

        let classes = (0..10).map(|i| format!("class{i}")).collect();
        let coarse_classes = coarse.then(|| vec!["small".into(), "medium".into(), "large".into()]);
        SetData { classes, coarse_classes, train, test }
    }

    pub fn record_set(&self) -> RecordSet<'_> {
        RecordSet {
            source_kind: "test-fixture",
            classes: &self.classes,
            coarse_classes: self.coarse_classes.as_deref(),
            splits: vec![record_split("train", &self.train), record_split("test", &self.test)],
        }
    }
}

fn record_split<'a>(name: &'a str, spec: &'a ShardSpec) -> RecordSplit<'a> {
    RecordSplit {
        name,
        schema: spec.schema,
        pixels: &spec.pixels,
        labels: &spec.labels,
        coarse_labels: spec.has_coarse.then_some(spec.coarse.as_slice()),
    }
}

/// Writes a variable-layout shard set of 4 classes in `dir` with [`ShardWriter::push_record`],
/// `per_shard` records to a shard, and a manifest built here with the optional photo-set
/// fields filled in. Returns the manifest.
pub fn write_variable_set(
    dir: &Path,
    schema: SampleSchema,
    splits: &[(&str, &[FixtureRecord])],
    per_shard: usize,
) -> Manifest {
    let mut split_entries = Vec::new();
    for (name, records) in splits {
        let mut shards = Vec::new();
        let mut hasher = blake3::Hasher::new();
        for (number, chunk) in records.chunks(per_shard).enumerate() {
            let file_name = shard_file_name(name, number);
            let mut writer =
                ShardWriter::create(dir, &file_name, schema, 1, chunk.len() as u64).unwrap();
            for record in chunk {
                writer.push_record(&record.as_ref()).unwrap();
            }
            let shard = writer.finish().unwrap();
            hasher.update_reader(File::open(dir.join(&shard.file)).unwrap()).unwrap();
            shards.push(shard);
        }

        let mut class_counts = vec![0u64; 4];
        records.iter().for_each(|record| class_counts[record.label as usize] += 1);
        split_entries.push(SplitManifest {
            name: name.to_string(),
            records: records.len() as u64,
            shards,
            class_counts,
            coarse_class_counts: None,
            channel_mean: vec![120.5, 110.25, 99.0],
            channel_std: vec![60.0, 58.5, 61.75],
            rgb_covariance: Some([[3.0, 1.0, 0.5], [1.0, 2.0, 0.25], [0.5, 0.25, 1.0]]),
            rgb_eigenvalues: Some([3.7, 1.6, 0.7]),
            rgb_eigenvectors: Some([[0.8, 0.5, 0.3], [-0.5, 0.8, 0.2], [0.3, -0.1, 0.9]]),
            skipped: Some(2),
            source_bytes: Some(123_456),
            content_hash: hasher.finalize().to_hex().to_string(),
        });
    }

    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        source_kind: "image-folders".into(),
        conversion: Some(serde_json::json!({"store": "keep", "max_side": 512, "quality": 90})),
        classes: (0..4).map(|i| format!("class{i}")).collect(),
        coarse_classes: None,
        sample: schema,
        splits: split_entries,
    };
    fs::write(dir.join(MANIFEST_FILE), manifest.to_json()).unwrap();
    manifest
}
