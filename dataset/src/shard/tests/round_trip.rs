//! Writing a set and reading it back: records, labels, manifest fields, overwrite rules.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::error::Error;
use crate::shard::tests::fixtures::{
    jpeg_records, raw_variable_records, write_variable_set, FixtureRecord, SetData,
};
use crate::shard::{
    channel_stats, verify_shard_set, write_record_set, write_shard_set, Encoding, Layout,
    SampleSchema, ShardSet, WriteOptions, HEADER_LEN, INDEX_ENTRY_LEN,
};
use crate::source::{SourceKind, SourceSet, SourceSplit};

/// Options that cut a split into shards of `records` records of `record_len` bytes each.
fn shards_of(records: u64, record_len: u64) -> WriteOptions {
    let shard_size_bytes = HEADER_LEN as u64 + records * (INDEX_ENTRY_LEN as u64 + record_len);
    WriteOptions { shard_size_bytes, overwrite: false }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn three_channel_coarse_round_trip() {
    let data = SetData::new(5, 7, 3, 23, 9, true);
    let dir = tempfile::tempdir().unwrap();

    let manifest = write_record_set(&data.record_set(), dir.path(), &shards_of(4, 105)).unwrap();
    let set = ShardSet::open(dir.path()).unwrap();

    assert_eq!(set.manifest(), &manifest);
    assert_eq!(manifest.sample, SampleSchema::raw_u8(5, 7, 3));
    for (name, spec) in [("train", &data.train), ("test", &data.test)] {
        let split = set.split(name).unwrap();
        assert_eq!(split.name(), name);
        assert_eq!(split.len(), spec.labels.len());
        assert_eq!(*split.schema(), SampleSchema::raw_u8(5, 7, 3));
        for i in 0..split.len() {
            assert_eq!(split.record(i), spec.record(i), "{name} record {i}");
            assert_eq!(split.checked_record(i).unwrap(), spec.record(i), "{name} record {i}");
            assert_eq!(split.label(i), spec.labels[i], "{name} record {i}");
            assert_eq!(split.coarse_label(i), Some(spec.coarse[i]), "{name} record {i}");
        }
    }
    assert_eq!(set.split("train").unwrap().shards().len(), 6);
    assert_eq!(set.split("test").unwrap().shards().len(), 3);
}

#[test]
fn one_channel_single_label_round_trip() {
    let data = SetData::new(4, 9, 1, 12, 5, false);
    let dir = tempfile::tempdir().unwrap();

    write_record_set(&data.record_set(), dir.path(), &WriteOptions::default()).unwrap();
    let set = ShardSet::open(dir.path()).unwrap();
    let train = set.split("train").unwrap();

    assert_eq!(train.shards().len(), 1);
    assert_eq!(set.manifest().coarse_classes, None);
    for i in 0..train.len() {
        assert_eq!(train.record(i), data.train.record(i));
        assert_eq!(train.label(i), data.train.labels[i]);
        assert_eq!(train.coarse_label(i), None);
        assert_eq!(train.source_path(i).unwrap(), "");
        assert_eq!(train.meta(i), data.train.schema.fixed_meta().unwrap());
    }
    assert_eq!(train.fixed_shape().unwrap(), (4, 9, 1));
}

/// Checks every record of split `name` of `set` against `records`.
fn assert_split_matches(set: &ShardSet, name: &str, records: &[FixtureRecord]) {
    let split = set.split(name).unwrap();

    assert_eq!(split.len(), records.len(), "{name}");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(split.record(i), record.payload, "{name} record {i}");
        assert_eq!(split.checked_record(i).unwrap(), record.payload, "{name} record {i}");
        assert_eq!(split.source_path(i).unwrap(), record.path, "{name} record {i}");
        assert_eq!(split.meta(i), record.meta, "{name} record {i}");
        assert_eq!(split.label(i), record.label, "{name} record {i}");
        assert_eq!(split.coarse_label(i), None, "{name} record {i}");
    }
}

#[test]
fn variable_jpeg_set_round_trip() {
    let records = jpeg_records(11);
    let (train, val) = records.split_at(8);
    let schema = SampleSchema::variable(3, Encoding::Jpeg);
    let dir = tempfile::tempdir().unwrap();

    let manifest = write_variable_set(dir.path(), schema, &[("train", train), ("val", val)], 3);
    let set = ShardSet::open(dir.path()).unwrap();
    let report = verify_shard_set(dir.path()).unwrap();

    assert_eq!(set.manifest(), &manifest);
    assert_eq!(set.split("train").unwrap().shards().len(), 3);
    assert_eq!(*set.split("val").unwrap().schema(), schema);
    assert_split_matches(&set, "train", train);
    assert_split_matches(&set, "val", val);
    assert!(set.split("train").unwrap().meta(1).is_reencoded());
    assert_eq!(report.records(), 11);
    assert_eq!(report.splits[1].content_hash, manifest.splits[1].content_hash);
}

#[test]
fn variable_raw_set_round_trip() {
    let records = raw_variable_records(7);
    let schema = SampleSchema::variable(3, Encoding::Raw);
    let dir = tempfile::tempdir().unwrap();

    write_variable_set(dir.path(), schema, &[("train", &records)], 4);
    let set = ShardSet::open(dir.path()).unwrap();

    assert_split_matches(&set, "train", &records);
    assert!(verify_shard_set(dir.path()).is_ok());
}

#[test]
fn variable_split_has_no_fixed_shape() {
    let schema = SampleSchema::variable(3, Encoding::Jpeg);
    let dir = tempfile::tempdir().unwrap();
    write_variable_set(dir.path(), schema, &[("train", &jpeg_records(2))], 4);
    let set = ShardSet::open(dir.path()).unwrap();

    let message = set.split("train").unwrap().fixed_shape().unwrap_err().to_string();

    assert!(message.contains("split \"train\" stores variable-size 3-channel u8 jpeg"));
    assert!(message.contains("each with its own height and width"), "{message}");
}

#[test]
fn write_record_set_rejects_variable_layout() {
    let data = SetData::new(2, 2, 3, 2, 1, false);
    let dir = tempfile::tempdir().unwrap();
    let mut set = data.record_set();
    set.splits[0].schema = SampleSchema::variable(3, Encoding::Raw);
    set.splits[1].schema = SampleSchema::variable(3, Encoding::Raw);

    let message =
        write_record_set(&set, dir.path(), &WriteOptions::default()).unwrap_err().to_string();

    assert!(message.contains("write_record_set writes fixed-layout records"), "{message}");
    assert!(file_names(dir.path()).is_empty());
}

#[test]
fn manifest_lists_shards_and_statistics() {
    let data = SetData::new(3, 2, 3, 10, 4, true);
    let dir = tempfile::tempdir().unwrap();

    let manifest = write_record_set(&data.record_set(), dir.path(), &shards_of(4, 18)).unwrap();
    let train = manifest.split("train").unwrap();
    let expected = channel_stats(&data.train.pixels, 3, 18);

    assert_eq!(manifest.format, "expanse-shards");
    assert_eq!(manifest.version, 2);
    assert_eq!(manifest.sample.layout, Layout::Fixed);
    assert_eq!(manifest.conversion, None);
    assert_eq!(train.rgb_eigenvalues, None);
    assert_eq!(train.skipped, None);
    assert_eq!(manifest.source_kind, "test-fixture");
    assert_eq!(manifest.classes, data.classes);
    assert_eq!(manifest.coarse_classes, data.coarse_classes);
    assert_eq!(train.records, 10);
    let files: Vec<&str> = train.shards.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files, ["train-00000.shard", "train-00001.shard", "train-00002.shard"]);
    let counts: Vec<u64> = train.shards.iter().map(|s| s.records).collect();
    assert_eq!(counts, [4, 4, 2]);
    for shard in &train.shards {
        let len = fs::metadata(dir.path().join(&shard.file)).unwrap().len();
        assert_eq!(shard.bytes, len, "{}", shard.file);
    }
    assert_eq!(train.class_counts, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(train.coarse_class_counts, Some(vec![4, 3, 3]));
    assert_eq!(train.channel_mean, expected.mean);
    assert_eq!(train.channel_std, expected.std);
    assert_eq!(train.content_hash.len(), 64);

    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk["splits"][0]["shards"][1]["file"], "train-00001.shard");
}

#[test]
fn content_hash_covers_shards_in_order() {
    let data = SetData::new(2, 3, 1, 7, 2, false);
    let dir = tempfile::tempdir().unwrap();

    let manifest = write_record_set(&data.record_set(), dir.path(), &shards_of(3, 6)).unwrap();
    let train = manifest.split("train").unwrap();
    let mut hasher = blake3::Hasher::new();
    for shard in &train.shards {
        hasher.update(&fs::read(dir.path().join(&shard.file)).unwrap());
    }

    assert_eq!(train.content_hash, hasher.finalize().to_hex().to_string());
}

#[test]
fn verify_accepts_a_fresh_set() {
    let data = SetData::new(5, 7, 3, 23, 9, true);
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_record_set(&data.record_set(), dir.path(), &shards_of(4, 105)).unwrap();

    let report = verify_shard_set(dir.path()).unwrap();

    assert_eq!(report.records(), 32);
    assert_eq!(report.splits[0].name, "train");
    assert_eq!(report.splits[0].shards, 6);
    assert_eq!(report.splits[0].content_hash, manifest.splits[0].content_hash);
    let total: u64 = manifest.splits.iter().flat_map(|s| &s.shards).map(|s| s.bytes).sum();
    assert_eq!(report.bytes(), total);
}

#[test]
fn source_set_is_written_with_its_kind() {
    let split = |name: &str, count: usize| SourceSplit {
        name: name.into(),
        height: 2,
        width: 3,
        channels: 3,
        pixels: (0..count * 18).map(|i| i as u8).collect(),
        labels: (0..count as u32).map(|i| i % 4).collect(),
        coarse_labels: Some((0..count as u32).map(|i| i % 2).collect()),
        files: Vec::new(),
    };
    let source = SourceSet {
        kind: SourceKind::Cifar100Binary,
        classes: (0..4).map(|i| format!("fine{i}")).collect(),
        coarse_classes: Some(vec!["a".into(), "b".into()]),
        splits: vec![split("train", 6), split("test", 2)],
    };
    let dir = tempfile::tempdir().unwrap();

    let manifest = write_shard_set(&source, dir.path(), &WriteOptions::default()).unwrap();
    let set = ShardSet::open(dir.path()).unwrap();

    assert_eq!(manifest.source_kind, "cifar100-binary");
    assert_eq!(set.split("test").unwrap().record(1), &source.splits[1].pixels[18..36]);
    assert_eq!(set.split("train").unwrap().coarse_label(5), Some(1));
}

#[test]
fn existing_manifest_needs_overwrite() {
    let data = SetData::new(2, 2, 1, 4, 2, false);
    let dir = tempfile::tempdir().unwrap();
    write_record_set(&data.record_set(), dir.path(), &WriteOptions::default()).unwrap();
    let before = fs::read(dir.path().join("manifest.json")).unwrap();

    let error =
        write_record_set(&data.record_set(), dir.path(), &WriteOptions::default()).unwrap_err();

    match &error {
        Error::Io { path, source } => {
            assert!(path.ends_with("manifest.json"), "{error}");
            assert_eq!(source.kind(), ErrorKind::AlreadyExists);
            assert!(source.to_string().contains("enable overwrite"), "{source}");
        }
        other => panic!("expected an io error, found {other}"),
    }
    assert_eq!(fs::read(dir.path().join("manifest.json")).unwrap(), before);
}

#[test]
fn overwrite_replaces_and_removes_stale_shards() {
    let dir = tempfile::tempdir().unwrap();
    let big = SetData::new(2, 2, 1, 9, 2, false);
    write_record_set(&big.record_set(), dir.path(), &shards_of(3, 4)).unwrap();
    let small = SetData::new(2, 2, 1, 4, 2, false);
    let opts = WriteOptions { overwrite: true, ..shards_of(3, 4) };
    fs::write(dir.path().join("notes.txt"), b"kept").unwrap();

    write_record_set(&small.record_set(), dir.path(), &opts).unwrap();

    let expected = [
        "manifest.json",
        "notes.txt",
        "test-00000.shard",
        "train-00000.shard",
        "train-00001.shard",
    ];
    assert_eq!(file_names(dir.path()), expected);
    assert_eq!(ShardSet::open(dir.path()).unwrap().split("train").unwrap().len(), 4);
    assert!(verify_shard_set(dir.path()).is_ok());
}

#[test]
fn leftover_tmp_files_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("train-00000.shard.tmp-4000000"), b"killed mid-write").unwrap();
    fs::write(dir.path().join("manifest.json.tmp-17"), b"{\"form").unwrap();
    let data = SetData::new(2, 2, 1, 4, 2, false);

    write_record_set(&data.record_set(), dir.path(), &WriteOptions::default()).unwrap();

    let expected = ["manifest.json", "test-00000.shard", "train-00000.shard"];
    assert_eq!(file_names(dir.path()), expected);
}

#[test]
fn split_lookup_lists_known_splits() {
    let data = SetData::new(2, 2, 1, 4, 2, false);
    let dir = tempfile::tempdir().unwrap();
    write_record_set(&data.record_set(), dir.path(), &WriteOptions::default()).unwrap();
    let set = ShardSet::open(dir.path()).unwrap();

    let message = set.split("val").unwrap_err().to_string();

    assert!(message.contains("no split \"val\"; the set has train, test"), "{message}");
}

#[test]
fn inconsistent_input_is_rejected() {
    let data = SetData::new(2, 3, 1, 4, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let bad_labels = [0u32, 1, 10, 2];
    let bad_coarse = [0u32, 1, 2, 3];
    let short_pixels = &data.train.pixels[..20];

    let mut cases = Vec::new();
    let mut set = data.record_set();
    set.splits[0].labels = &bad_labels;
    cases.push((set, "record 2 has label 10, but there are 10 classes"));
    let mut set = data.record_set();
    set.splits[0].coarse_labels = Some(&bad_coarse);
    cases.push((set, "record 3 has coarse label 3, but there are 3 classes"));
    let mut set = data.record_set();
    set.splits[0].pixels = short_pixels;
    cases.push((set, "20 pixel bytes for 4 labels"));
    let mut set = data.record_set();
    set.splits[1].name = "../up";
    cases.push((set, "split name \"../up\" is invalid"));
    let mut set = data.record_set();
    set.splits[1].name = "train";
    cases.push((set, "split \"train\" appears twice"));
    let mut set = data.record_set();
    set.splits[1].schema = SampleSchema::raw_u8(3, 2, 1);
    cases.push((set, "has schema 3x2x1 u8 raw, but split \"train\" has 2x3x1 u8 raw"));
    let mut set = data.record_set();
    set.coarse_classes = None;
    cases.push((set, "has coarse labels but the set has no coarse classes"));
    let mut set = data.record_set();
    set.splits.clear();
    cases.push((set, "at least one split"));

    for (set, expected) in cases {
        let message =
            write_record_set(&set, dir.path(), &WriteOptions::default()).unwrap_err().to_string();
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
    assert!(file_names(dir.path()).is_empty());
}
