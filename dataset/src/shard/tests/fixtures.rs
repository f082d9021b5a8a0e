//! Hand-built shards and record sets for the tests, encoded straight from `layout` so that
//! reader tests do not depend on the writer.

use crate::shard::layout::{
    header_crc32c, record_crc32c, IndexEntry, SampleSchema, ShardHeader, HEADER_LEN,
    INDEX_ENTRY_LEN, NO_LABEL,
};
use crate::shard::write_set::{RecordSet, RecordSplit};

/// The contents of one test shard: `count` records of distinct pixels with distinct labels.
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

    fn second_label(&self, i: usize) -> u32 {
        if self.has_coarse {
            self.coarse[i]
        } else {
            NO_LABEL
        }
    }
}

/// Encodes `spec` as a complete, valid shard file.
pub fn build_shard(spec: &ShardSpec) -> Vec<u8> {
    let count = spec.labels.len();
    let record_len = spec.record_len();
    let data_offset = HEADER_LEN + count * INDEX_ENTRY_LEN;

    let mut index = Vec::new();
    for i in 0..count {
        let entry = IndexEntry {
            offset: (data_offset + i * record_len) as u64,
            length: record_len as u32,
            crc32c: record_crc32c(spec.record(i), spec.labels[i], spec.second_label(i)),
            label: spec.labels[i],
            second_label: spec.second_label(i),
        };
        index.extend_from_slice(&entry.encode());
    }

    let mut header = ShardHeader {
        record_count: count as u64,
        schema: spec.schema,
        labels_per_record: if spec.has_coarse { 2 } else { 1 },
        index_offset: HEADER_LEN as u64,
        data_offset: data_offset as u64,
        data_length: spec.pixels.len() as u64,
        header_crc32c: 0,
    };
    header.header_crc32c = header_crc32c(&header.encode(), &index);

    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(&index);
    bytes.extend_from_slice(&spec.pixels);
    bytes
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
