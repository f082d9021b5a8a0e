//! Runs the real `shardify` binary on IDX and CIFAR-10 folders written by each test in a
//! temporary folder: conversion, `verify`, `inspect --json`, determinism, overwrite protection,
//! corrupt shard sets and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_exit, assert_mentions, assert_no_panic, assert_one_line_error, file_names, idx_bytes,
    idx_images, idx_labels, shardify, stdout_json, write_file, write_idx_split, IdxSplit,
    SplitMix64,
};
use expanse_dataset::shard::ShardSet;
use serde_json::Value;

/// Rows and columns of the IDX test images, which are non-square so that a swap of the two shows.
const ROWS: u32 = 5;
const COLUMNS: u32 = 7;

/// Bytes of one 5x7 grey record.
const IDX_RECORD_LEN: u64 = (ROWS * COLUMNS) as u64;

/// CIFAR-10 records per `data_batch_N.bin`, N = 1..=5, and in `test_batch.bin`.
const CIFAR_TRAIN_COUNTS: [usize; 5] = [2, 1, 3, 1, 2];
const CIFAR_TEST_COUNT: usize = 3;

/// The ten CIFAR-10 class names in label order, as in `batches.meta.txt`.
const CIFAR_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The IDX splits written by [`write_idx_source`].
struct IdxSource {
    dir: PathBuf,
    train: IdxSplit,
    test: IdxSplit,
}

/// Builds a 5x7 split of `labels.len()` images whose pixels all differ within the split.
fn distinct_split(first_value: usize, labels: &[u8]) -> IdxSplit {
    let len = labels.len() * IDX_RECORD_LEN as usize;
    IdxSplit {
        rows: ROWS,
        columns: COLUMNS,
        pixels: (0..len).map(|i| ((first_value + i) % 256) as u8).collect(),
        labels: labels.to_vec(),
    }
}

/// Writes an IDX folder in `parent/name`: 6 train and 4 test images of 5x7 with labels 0..=2,
/// the train images and test labels gzipped, the other two files plain.
fn write_idx_source(parent: &Path, name: &str) -> IdxSource {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    // 6 * 35 = 210 train values from 0, then 4 * 35 = 140 test values from 210 (mod 256).
    let train = distinct_split(0, &[0, 1, 2, 2, 1, 2]);
    let test = distinct_split(210, &[2, 0, 1, 2]);

    write_idx_split(&dir, "train", &train, true, false);
    write_idx_split(&dir, "t10k", &test, false, true);
    IdxSource { dir, train, test }
}

/// A CIFAR-10 record: its label and its 3072 planar pixel bytes (R, G, B planes of 32x32).
struct CifarRecord {
    label: u8,
    planar: Vec<u8>,
}

impl CifarRecord {
    /// Returns the pixels in HWC order, the layout shards store.
    fn hwc(&self) -> Vec<u8> {
        let mut hwc = vec![0u8; 3072];
        for channel in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    hwc[(y * 32 + x) * 3 + channel] = self.planar[channel * 1024 + y * 32 + x];
                }
            }
        }
        hwc
    }
}

/// Writes a CIFAR-10 binary folder in `parent/name` with random pixels, the record counts of
/// [`CIFAR_TRAIN_COUNTS`] and [`CIFAR_TEST_COUNT`] and `batches.meta.txt`. Returns the folder
/// and the train and test records in file order.
fn write_cifar10_source(
    parent: &Path,
    name: &str,
) -> (PathBuf, Vec<CifarRecord>, Vec<CifarRecord>) {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = SplitMix64(10);
    let mut label = 0u8;
    let mut next_record = |rng: &mut SplitMix64| {
        // Labels 0, 3, 6, 9, 2, ... cover every class over the 12 records.
        let record = CifarRecord { label, planar: rng.bytes(3072) };
        label = (label + 3) % 10;
        record
    };

    let mut train = Vec::new();
    for (batch, &count) in CIFAR_TRAIN_COUNTS.iter().enumerate() {
        let records: Vec<CifarRecord> = (0..count).map(|_| next_record(&mut rng)).collect();
        write_file(&dir, &format!("data_batch_{}.bin", batch + 1), &cifar_file(&records));
        train.extend(records);
    }
    let test: Vec<CifarRecord> = (0..CIFAR_TEST_COUNT).map(|_| next_record(&mut rng)).collect();
    write_file(&dir, "test_batch.bin", &cifar_file(&test));

    // The official file ends with blank lines.
    let meta = format!("{}\n\n", CIFAR_CLASSES.join("\n"));
    write_file(&dir, "batches.meta.txt", meta.as_bytes());
    (dir, train, test)
}

/// Encodes CIFAR-10 binary records: 1 label byte, then 3072 planar pixel bytes, each.
fn cifar_file(records: &[CifarRecord]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(records.len() * 3073);
    for record in records {
        bytes.push(record.label);
        bytes.extend_from_slice(&record.planar);
    }
    bytes
}

/// Runs `shardify SRC OUT EXTRA...` and asserts it succeeded.
fn convert(src: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![src.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = shardify(&args);
    assert_exit(&run, 0);
    assert_no_panic(&run);
}

/// Runs `shardify inspect DIR --json` and returns the parsed output.
fn inspect_json(dir: &Path) -> Value {
    let run = shardify(&["inspect", dir.to_str().unwrap(), "--json"]);
    assert_exit(&run, 0);
    stdout_json(&run)
}

/// Returns the split called `name` from `inspect --json` output.
fn split_json<'a>(inspect: &'a Value, name: &str) -> &'a Value {
    let splits = inspect["splits"].as_array().expect("inspect output has a splits array");
    splits
        .iter()
        .find(|split| split["name"] == name)
        .unwrap_or_else(|| panic!("no split {name:?} in {inspect:#}"))
}

/// Returns the split names listed by `inspect --json`, in order.
fn split_names(inspect: &Value) -> Vec<String> {
    let splits = inspect["splits"].as_array().expect("inspect output has a splits array");
    splits.iter().map(|split| split["name"].as_str().unwrap().to_owned()).collect()
}

fn as_u64_list(value: &Value) -> Vec<u64> {
    let list = value.as_array().unwrap_or_else(|| panic!("not an array: {value}"));
    list.iter().map(|v| v.as_u64().unwrap()).collect()
}

fn as_f64_list(value: &Value) -> Vec<f64> {
    let list = value.as_array().unwrap_or_else(|| panic!("not an array: {value}"));
    list.iter().map(|v| v.as_f64().unwrap()).collect()
}

#[test]
fn idx_convert_verify_inspect() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");

    let run = shardify(&[&source.dir, &out]);
    assert_exit(&run, 0);
    assert_mentions(&run.stdout, "(idx)");

    let verified = shardify(&["verify", out.to_str().unwrap()]);
    assert_exit(&verified, 0);
    assert_mentions(&verified.stdout, "ok");

    let inspect = inspect_json(&out);
    assert_eq!(inspect["source_kind"], "idx", "{inspect:#}");
    assert_eq!(inspect["classes"], serde_json::json!(["0", "1", "2"]), "{inspect:#}");
    assert_eq!(inspect["sample"]["height"], ROWS, "{inspect:#}");
    assert_eq!(inspect["sample"]["width"], COLUMNS, "{inspect:#}");
    assert_eq!(inspect["sample"]["channels"], 1, "{inspect:#}");
    assert_eq!(split_names(&inspect), ["train", "test"], "{inspect:#}");

    for (name, split) in [("train", &source.train), ("test", &source.test)] {
        let json = split_json(&inspect, name);
        assert_eq!(json["records"], split.len() as u64, "{name} records");
        assert_eq!(as_u64_list(&json["class_counts"]), split.class_counts(3), "{name} classes");

        let mean = as_f64_list(&json["channel_mean"]);
        assert_eq!(mean.len(), 1, "{name}: one channel mean expected, got {mean:?}");
        let expected_mean = split.pixel_mean();
        assert!((mean[0] - expected_mean).abs() < 1e-9, "{name} mean {mean:?} != {expected_mean}");

        let std = as_f64_list(&json["channel_std"]);
        let expected_std = split.pixel_std();
        assert!((std[0] - expected_std).abs() < 1e-6, "{name} std {std:?} != {expected_std}");
    }

    let text = shardify(&["inspect", out.to_str().unwrap()]);
    assert_exit(&text, 0);
    assert_mentions(&text.stdout, "5x7x1");
}

#[test]
fn idx_records_keep_pixels_and_labels() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");
    convert(&source.dir, &out, &[]);

    let set = ShardSet::open(&out).unwrap();

    for (name, expected) in [("train", &source.train), ("test", &source.test)] {
        let split = set.split(name).unwrap();
        assert_eq!(split.len(), expected.len(), "{name} length");
        for i in 0..expected.len() {
            assert_eq!(split.record(i), expected.image(i), "{name} record {i} pixels");
            assert_eq!(split.label(i), u32::from(expected.labels[i]), "{name} record {i} label");
        }
    }
}

#[test]
fn idx_split_test_only() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");

    convert(&source.dir, &out, &["--split", "test"]);

    let inspect = inspect_json(&out);
    assert_eq!(split_names(&inspect), ["test"], "{inspect:#}");
    assert_eq!(split_json(&inspect, "test")["records"], 4, "{inspect:#}");
    let names = file_names(&out);
    assert!(names.iter().all(|name| !name.starts_with("train")), "train files written: {names:?}");
}

#[test]
fn idx_class_names_option() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");

    convert(&source.dir, &out, &["--classes", "circle,square,triangle"]);

    let inspect = inspect_json(&out);
    let expected = serde_json::json!(["circle", "square", "triangle"]);
    assert_eq!(inspect["classes"], expected, "{inspect:#}");
    let text = shardify(&["inspect", out.to_str().unwrap()]);
    assert_mentions(&text.stdout, "triangle");
}

#[test]
fn idx_too_few_class_names() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");

    let run =
        shardify(&[source.dir.as_path(), out.as_path(), Path::new("--classes"), Path::new("a,b")]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--classes");
    assert_mentions(&line, "label 2");
    assert_mentions(&line, "at least 3");
    assert!(!out.join("manifest.json").exists(), "a manifest was written after the error");
}

#[test]
fn cifar10_binary_convert() {
    let temp = tempfile::tempdir().unwrap();
    let (source, train, test) = write_cifar10_source(temp.path(), "cifar-10-batches-bin");
    let out = temp.path().join("shards");

    let run = shardify(&[&source, &out]);
    assert_exit(&run, 0);
    let verified = shardify(&["verify", out.to_str().unwrap()]);
    assert_exit(&verified, 0);

    let inspect = inspect_json(&out);
    assert_eq!(inspect["source_kind"], "cifar10-binary", "{inspect:#}");
    assert_eq!(inspect["classes"], serde_json::json!(CIFAR_CLASSES), "{inspect:#}");
    assert_eq!(inspect["sample"]["height"], 32, "{inspect:#}");
    assert_eq!(inspect["sample"]["width"], 32, "{inspect:#}");
    assert_eq!(inspect["sample"]["channels"], 3, "{inspect:#}");
    assert_eq!(split_names(&inspect), ["train", "test"], "{inspect:#}");

    let set = ShardSet::open(&out).unwrap();
    for (name, records) in [("train", &train), ("test", &test)] {
        let json = split_json(&inspect, name);
        assert_eq!(json["records"], records.len() as u64, "{name} records");
        let mut counts = vec![0u64; 10];
        for record in records.iter() {
            counts[usize::from(record.label)] += 1;
        }
        assert_eq!(as_u64_list(&json["class_counts"]), counts, "{name} class counts");
        assert_eq!(as_f64_list(&json["channel_mean"]).len(), 3, "{name}: three channel means");

        let split = set.split(name).unwrap();
        for (i, record) in records.iter().enumerate() {
            assert!(split.record(i) == record.hwc(), "{name} record {i}: pixels not planar -> HWC");
            assert_eq!(split.label(i), u32::from(record.label), "{name} record {i} label");
        }
    }
}

#[test]
fn cifar10_parent_folder_detected() {
    let temp = tempfile::tempdir().unwrap();
    let (_, train, _) = write_cifar10_source(temp.path(), "cifar-10-batches-bin");
    let out = temp.path().join("shards");

    // The folder the official archive extracts into contains `cifar-10-batches-bin`.
    convert(temp.path(), &out, &["--split", "train"]);

    let inspect = inspect_json(&out);
    assert_eq!(split_names(&inspect), ["train"], "{inspect:#}");
    assert_eq!(split_json(&inspect, "train")["records"], train.len() as u64, "{inspect:#}");
}

#[test]
fn conversion_is_byte_identical() {
    let temp = tempfile::tempdir().unwrap();
    let idx = write_idx_source(temp.path(), "idx");
    let (cifar, _, _) = write_cifar10_source(temp.path(), "cifar");

    for (name, source) in [("idx", &idx.dir), ("cifar", &cifar)] {
        let first = temp.path().join(format!("{name}-a"));
        let second = temp.path().join(format!("{name}-b"));
        convert(source, &first, &[]);
        convert(source, &second, &[]);

        let names = file_names(&first);
        assert!(names.contains(&"manifest.json".to_owned()), "{name}: {names:?}");
        assert_eq!(names, file_names(&second), "{name}: file lists differ");
        for file in &names {
            let a = std::fs::read(first.join(file)).unwrap();
            let b = std::fs::read(second.join(file)).unwrap();
            assert!(a == b, "{name}: {file} differs between the two conversions");
        }
    }
}

#[test]
fn existing_set_needs_overwrite() {
    let temp = tempfile::tempdir().unwrap();
    let idx = write_idx_source(temp.path(), "idx");
    let (cifar, _, _) = write_cifar10_source(temp.path(), "cifar");
    let out = temp.path().join("shards");
    convert(&idx.dir, &out, &[]);
    let before: Vec<(String, Vec<u8>)> = file_names(&out)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(out.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();

    let rejected = shardify(&[&cifar, &out]);

    let line = assert_one_line_error(&rejected, 1);
    assert_mentions(&line, "already contains a shard set");
    let verified = shardify(&["verify", out.to_str().unwrap()]);
    assert_exit(&verified, 0);
    for (name, bytes) in &before {
        let now = std::fs::read(out.join(name)).unwrap();
        assert!(&now == bytes, "{name} changed by the rejected conversion");
    }
    assert_eq!(file_names(&out).len(), before.len(), "files added by the rejected conversion");

    convert(&cifar, &out, &["--overwrite"]);

    let verified = shardify(&["verify", out.to_str().unwrap()]);
    assert_exit(&verified, 0);
    let inspect = inspect_json(&out);
    assert_eq!(inspect["source_kind"], "cifar10-binary", "{inspect:#}");
}

/// Converts the IDX source into `temp/shards` and returns the shard set folder.
fn idx_shard_set(temp: &Path) -> PathBuf {
    let source = write_idx_source(temp, "idx");
    let out = temp.join("shards");
    convert(&source.dir, &out, &[]);
    out
}

/// Runs `shardify verify DIR` and returns its one-line error.
fn verify_error(dir: &Path) -> String {
    let run = shardify(&["verify", dir.to_str().unwrap()]);
    assert_one_line_error(&run, 1)
}

#[test]
fn verify_flipped_pixel_byte() {
    let temp = tempfile::tempdir().unwrap();
    let out = idx_shard_set(temp.path());
    let shard = out.join("train-00000.shard");
    let mut bytes = std::fs::read(&shard).unwrap();
    // Records are stored back to back at the end of the file: record 2 of 6 starts 4 records
    // before the end.
    let offset = bytes.len() - 4 * IDX_RECORD_LEN as usize + 3;
    bytes[offset] ^= 0x01;
    std::fs::write(&shard, &bytes).unwrap();

    let line = verify_error(&out);

    assert_mentions(&line, "train-00000.shard");
    assert_mentions(&line, "record 2");
    assert_mentions(&line, "checksum");
}

#[test]
fn verify_truncated_shard() {
    let temp = tempfile::tempdir().unwrap();
    let out = idx_shard_set(temp.path());
    let shard = out.join("test-00000.shard");
    let bytes = std::fs::read(&shard).unwrap();

    // Inside the last record, inside the index, inside the 72-byte header, and empty.
    for len in [bytes.len() - 10, 100, 40, 0] {
        std::fs::write(&shard, &bytes[..len]).unwrap();

        let line = verify_error(&out);

        assert_mentions(&line, "test-00000.shard");
    }
}

#[test]
fn verify_truncated_shard_names_record() {
    let temp = tempfile::tempdir().unwrap();
    let out = idx_shard_set(temp.path());
    let shard = out.join("test-00000.shard");
    let bytes = std::fs::read(&shard).unwrap();
    // 10 bytes cut from the last of the 4 test records.
    std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();

    let line = verify_error(&out);

    assert_mentions(&line, "test-00000.shard");
    assert_mentions(&line, "record 3");
}

#[test]
fn verify_missing_manifest() {
    let temp = tempfile::tempdir().unwrap();
    let out = idx_shard_set(temp.path());
    std::fs::remove_file(out.join("manifest.json")).unwrap();

    let line = verify_error(&out);

    assert_mentions(&line, "manifest.json");
}

#[test]
fn bad_source_one_line_errors() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("shards");

    let text_file = write_file(temp.path(), "notes.txt", b"not a dataset\n");
    let unrelated = temp.path().join("unrelated");
    std::fs::create_dir(&unrelated).unwrap();
    write_file(&unrelated, "readme.txt", b"hello\n");
    write_file(&unrelated, "data.csv", b"a,b\n1,2\n");

    let mismatched = temp.path().join("mismatched");
    std::fs::create_dir(&mismatched).unwrap();
    write_file(&mismatched, "train-images-idx3-ubyte", &idx_images(3, 2, 2, &[9; 12]));
    write_file(&mismatched, "train-labels-idx1-ubyte", &idx_labels(&[0, 1]));

    let bad_magic = temp.path().join("bad-magic");
    std::fs::create_dir(&bad_magic).unwrap();
    // 0x0801 is the labels magic; an images file needs 0x0803.
    write_file(&bad_magic, "train-images-idx3-ubyte", &idx_bytes(0x0801, &[2, 2, 2], &[9; 8]));
    write_file(&bad_magic, "train-labels-idx1-ubyte", &idx_labels(&[0, 1]));

    let cases: [(&str, PathBuf, &[&str]); 5] = [
        ("missing source", temp.path().join("absent"), &["absent"]),
        ("text file", text_file, &["notes.txt", "line 1: expected `path,label`"]),
        ("unrelated files", unrelated, &["no dataset files found"]),
        ("mismatched counts", mismatched, &["label count 2", "image count 3"]),
        ("wrong magic", bad_magic, &["train-images-idx3-ubyte", "0x00000801", "0x00000803"]),
    ];
    for (case, source, expected) in cases {
        let run = shardify(&[&source, &out]);

        let line = assert_one_line_error(&run, 1);

        for text in expected {
            assert!(line.contains(text), "{case}: message lacks {text:?}: {line}");
        }
        assert!(!out.join("manifest.json").exists(), "{case}: a manifest was written");
    }
}

#[test]
fn unknown_split_name() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");

    let run = shardify(&[
        source.dir.as_path(),
        out.as_path(),
        Path::new("--split"),
        Path::new("validation"),
    ]);

    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "validation");
}

#[test]
fn output_path_is_a_file() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = write_file(temp.path(), "taken", b"a file, not a folder\n");

    let run = shardify(&[&source.dir, &out]);

    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "taken");
}

#[test]
fn missing_out_is_usage_error() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");

    let run = shardify(&[&source.dir]);

    assert_exit(&run, 2);
    assert_no_panic(&run);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "first stderr line is not an error\n{}", run.describe());
    assert_mentions(&run.stderr, "<OUT>");
    assert_mentions(&run.stderr, "Usage:");
}

#[test]
fn io_error_cause_printed_once() {
    let temp = tempfile::tempdir().unwrap();
    let absent = temp.path().join("absent");
    let out = temp.path().join("shards");

    let convert_run = shardify(&[&absent, &out]);
    let verify_run = shardify(&[Path::new("verify"), absent.as_path()]);

    for run in [convert_run, verify_run] {
        let line = assert_one_line_error(&run, 1);
        let count = line.matches("No such file or directory").count();
        assert_eq!(count, 1, "the cause is repeated: {line}");
    }
}

#[test]
fn overwrite_rejection_names_flag() {
    let temp = tempfile::tempdir().unwrap();
    let source = write_idx_source(temp.path(), "idx");
    let out = temp.path().join("shards");
    convert(&source.dir, &out, &[]);

    let run = shardify(&[&source.dir, &out]);

    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "--overwrite");
}
