//! Corrupt input: every damaged shard or manifest must give an error from open or verify,
//! never a panic, and verify must name the file and the first bad record.

use std::fs;
use std::path::{Path, PathBuf};

use crate::shard::tests::fixtures::{
    build_shard, entry_field, jpeg_records, reseal, write_variable_set, SetData, ShardSpec,
};
use crate::shard::{
    verify_shard_set, write_record_set, Encoding, Manifest, SampleSchema, ShardReader, ShardSet,
    WriteOptions, HEADER_LEN, INDEX_ENTRY_LEN,
};

/// An edit applied to a shard file's bytes.
type ShardEdit = Box<dyn Fn(&mut Vec<u8>)>;

/// An edit applied to a parsed manifest before it is written back.
type ManifestEdit = Box<dyn Fn(&mut Manifest)>;

/// Train records are 2x3x3 = 18 bytes, 4 to a shard: 7 records make 2 shards.
const RECORD_LEN: usize = 18;
const PER_SHARD: usize = 4;

fn write_set(dir: &Path) -> Manifest {
    let data = SetData::new(2, 3, 3, 7, 3, true);
    let shard_size = HEADER_LEN + PER_SHARD * (INDEX_ENTRY_LEN + RECORD_LEN);
    let opts = WriteOptions { shard_size_bytes: shard_size as u64, overwrite: false };
    write_record_set(&data.record_set(), dir, &opts).unwrap()
}

/// Byte offset of record `i` in a shard of `count` records.
fn record_offset(count: usize, i: usize) -> usize {
    HEADER_LEN + count * INDEX_ENTRY_LEN + i * RECORD_LEN
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    change(&mut bytes);
    fs::write(path, bytes).unwrap();
}

/// Damages `train-00001.shard` (records 4..7 of the split, 3 records) and returns the
/// error message from `verify_shard_set`.
fn verify_after(change: impl FnOnce(&mut Vec<u8>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    edit(&dir.path().join("train-00001.shard"), change);
    assert!(ShardSet::open(dir.path()).is_err() || verify_shard_set(dir.path()).is_err());
    verify_shard_set(dir.path()).unwrap_err().to_string()
}

fn assert_names(message: &str, expected: &[&str]) {
    for part in expected {
        assert!(message.contains(part), "expected {part:?} in {message:?}");
    }
}

#[test]
fn verify_names_flipped_pixel() {
    let at = record_offset(3, 2) + 5;

    let message = verify_after(|bytes| bytes[at] ^= 0x01);

    let place = format!("record 2 at byte {}: checksum mismatch", record_offset(3, 2));
    assert_names(&message, &["train-00001.shard", &place, "stored 0x", "computed 0x"]);
    assert!(!message.contains("header checksum"), "{message}");
}

#[test]
fn verify_names_flipped_label() {
    let message = verify_after(|bytes| bytes[entry_field(1, 16) + 3] ^= 0x40);

    let place = format!("record 1 at byte {}: checksum mismatch", record_offset(3, 1));
    assert_names(&message, &["train-00001.shard", &place, "header checksum mismatch"]);
}

#[test]
fn verify_names_flipped_coarse_label() {
    let message = verify_after(|bytes| bytes[entry_field(2, 20)] ^= 0x02);

    assert_names(&message, &["train-00001.shard", "record 2 at byte", "checksum mismatch"]);
}

#[test]
fn verify_names_flipped_index_checksum() {
    let message = verify_after(|bytes| bytes[entry_field(0, 12)] ^= 0x10);

    assert_names(&message, &["train-00001.shard", "record 0 at byte", "checksum mismatch"]);
}

#[test]
fn verify_names_flipped_index_offset() {
    let message = verify_after(|bytes| bytes[entry_field(1, 0)] ^= 0x04);

    assert_names(
        &message,
        &["train-00001.shard", "record 1 at byte", "expected the record at byte"],
    );
}

#[test]
fn verify_names_record_cut_by_truncation() {
    let cut = record_offset(3, 1) + 7;

    let message = verify_after(|bytes| bytes.truncate(cut));

    let place =
        format!("record 1 at byte {}: length 18 exceeds file size {cut}", record_offset(3, 1));
    assert_names(&message, &["train-00001.shard", &place]);
}

#[test]
fn verify_reports_lowest_bad_record() {
    let message = verify_after(|bytes| {
        bytes[record_offset(3, 2)] ^= 0x01;
        bytes[record_offset(3, 1) + 17] ^= 0x01;
    });

    assert_names(&message, &["record 1 at byte"]);
}

#[test]
fn verify_catches_manifest_hash_and_count_edits() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = write_set(dir.path());
    manifest.splits[1].content_hash = "0".repeat(64);
    fs::write(dir.path().join("manifest.json"), manifest.to_json()).unwrap();

    let message = verify_shard_set(dir.path()).unwrap_err().to_string();

    assert_names(&message, &["manifest.json", "split \"test\": content hash mismatch"]);
}

/// Writes one valid 3-record shard with two labels per record to a fresh folder, and returns
/// the folder, the file path and the bytes.
fn single_shard() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000.shard");
    let bytes = build_shard(&ShardSpec::new(2, 3, 3, 3).with_coarse());
    fs::write(&path, &bytes).unwrap();
    (dir, path, bytes)
}

#[test]
fn every_truncation_is_rejected() {
    let (_dir, path, bytes) = single_shard();

    // The file is small enough to cut at every offset: header, index and data.
    for len in 0..bytes.len() {
        fs::write(&path, &bytes[..len]).unwrap();
        let result = ShardReader::open(&path);
        assert!(result.is_err(), "truncation to {len} of {} bytes was accepted", bytes.len());
    }
}

#[test]
fn every_flipped_header_or_index_byte_is_rejected() {
    let (_dir, path, bytes) = single_shard();
    let data_offset = HEADER_LEN + 3 * INDEX_ENTRY_LEN;

    for at in 0..data_offset {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0xff;
        fs::write(&path, &damaged).unwrap();
        assert!(ShardReader::open(&path).is_err(), "flip at byte {at} was accepted");
    }
}

#[test]
fn every_flipped_data_byte_fails_checks() {
    let (_dir, path, bytes) = single_shard();
    let data_offset = HEADER_LEN + 3 * INDEX_ENTRY_LEN;

    for at in data_offset..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        fs::write(&path, &damaged).unwrap();
        let reader = ShardReader::open(&path).unwrap();
        let record = (at - data_offset) / RECORD_LEN;
        let message = reader.check_records().unwrap_err().to_string();
        assert!(message.contains(&format!("record {record} at byte")), "{message}");
    }
}

#[test]
fn crafted_headers_are_rejected() {
    let (_dir, path, bytes) = single_shard();
    let put_u32 = |at: usize, value: u32| {
        move |b: &mut Vec<u8>| b[at..at + 4].copy_from_slice(&value.to_le_bytes())
    };
    let put_u64 = |at: usize, value: u64| {
        move |b: &mut Vec<u8>| b[at..at + 8].copy_from_slice(&value.to_le_bytes())
    };
    let file_len = bytes.len();

    let cases: Vec<(&str, ShardEdit, &str)> = vec![
        ("magic", Box::new(|b: &mut Vec<u8>| b[0] = b'X'), "invalid magic bytes"),
        ("version 99", Box::new(put_u32(8, 99)), "unsupported shard version 99"),
        ("header length", Box::new(put_u32(12, 80)), "header length 80"),
        ("record count u64::MAX", Box::new(put_u64(16, u64::MAX)), "exceeds the limit"),
        ("record count past file", Box::new(put_u64(16, 1000)), "record count 1000 needs an index"),
        ("height 0", Box::new(put_u32(24, 0)), "height 0 and width 3"),
        ("huge channels", Box::new(put_u32(32, u32::MAX)), "channels 4294967295 is outside"),
        ("dtype", Box::new(|b: &mut Vec<u8>| b[36] = 7), "unknown dtype code 7"),
        ("version 1", Box::new(put_u32(8, 1)), "shard version 1 is no longer supported"),
        ("encoding 2", Box::new(|b: &mut Vec<u8>| b[37] = 2), "unknown encoding code 2"),
        ("fixed jpeg", Box::new(|b: &mut Vec<u8>| b[37] = 1), "fixed-layout shards store raw"),
        ("width 0", Box::new(put_u32(28, 0)), "height 2 and width 0"),
        ("labels per record", Box::new(|b: &mut Vec<u8>| b[38] = 3), "labels per record is 3"),
        ("index offset", Box::new(put_u64(40, 0)), "index offset 0"),
        ("data offset", Box::new(put_u64(48, u64::MAX)), "data offset 18446744073709551615"),
        ("data length", Box::new(put_u64(56, u64::MAX)), "data length 18446744073709551615"),
        (
            "record length max",
            Box::new(put_u32(entry_field(0, 8), u32::MAX)),
            "length 4294967295 exceeds file size",
        ),
        ("record length short", Box::new(put_u32(entry_field(2, 8), 17)), "record 2 at byte"),
        (
            "entry height",
            Box::new(put_u32(entry_field(1, 24), 3)),
            "shape 3x3 does not match the fixed 2x3",
        ),
        (
            "path length",
            Box::new(|b: &mut Vec<u8>| b[entry_field(0, 32)] = 19),
            "path length 19 exceeds the record length 18",
        ),
        (
            "path shortens payload",
            Box::new(|b: &mut Vec<u8>| b[entry_field(0, 32)] = 1),
            "payload length 17 does not match 2x3x3 = 18 bytes",
        ),
        ("entry channels", Box::new(|b: &mut Vec<u8>| b[entry_field(2, 34)] = 1), "channels 1"),
        (
            "entry encoding",
            Box::new(|b: &mut Vec<u8>| b[entry_field(2, 35)] = 1),
            "encoding code 1 does not match 0 (raw)",
        ),
        (
            "entry flags",
            Box::new(put_u32(entry_field(0, 36), 1 << 31)),
            "flags 0x80000000 set undefined bits",
        ),
        (
            "offset past end",
            Box::new(put_u64(entry_field(1, 0), 1 << 40)),
            "record 1 at byte 1099511627776",
        ),
        ("offset overlap", Box::new(put_u64(entry_field(2, 0), 0)), "record 2 at byte 0"),
        (
            "missing coarse label",
            Box::new(put_u32(entry_field(1, 20), u32::MAX)),
            "coarse label missing",
        ),
        (
            "reserved label",
            Box::new(put_u32(entry_field(0, 16), u32::MAX)),
            "label 4294967295 is reserved",
        ),
        (
            "trailing bytes",
            Box::new(|b: &mut Vec<u8>| b.push(0)),
            "does not match the end of the record data",
        ),
    ];

    for (name, change, expected) in cases {
        let mut damaged = bytes.clone();
        change(&mut damaged);
        reseal(&mut damaged);
        fs::write(&path, &damaged).unwrap();

        let message = ShardReader::open(&path).unwrap_err().to_string();
        assert!(message.contains("train-00000.shard"), "{name}: {message}");
        assert!(message.contains(expected), "{name}: expected {expected:?} in {message:?}");
    }
    assert_eq!(file_len, 246);
}

#[test]
fn damaged_shard_in_set_fails_open_and_verify() {
    let cases: Vec<(&str, ShardEdit)> = vec![
        ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
        ("header only", Box::new(|b: &mut Vec<u8>| b.truncate(HEADER_LEN))),
        (
            "count past file",
            Box::new(|b: &mut Vec<u8>| {
                b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
                reseal(b);
            }),
        ),
        (
            "record count changed",
            Box::new(|b: &mut Vec<u8>| {
                let count = 2u64;
                b[16..24].copy_from_slice(&count.to_le_bytes());
                reseal(b);
            }),
        ),
    ];

    for (name, change) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path());
        edit(&dir.path().join("train-00001.shard"), change);

        let opened = ShardSet::open(dir.path());
        let verified = verify_shard_set(dir.path());

        assert!(opened.is_err(), "{name}: open accepted the set");
        let message = verified.unwrap_err().to_string();
        assert!(message.contains("train-00001.shard"), "{name}: {message}");
    }
}

#[test]
fn damaged_manifests_are_rejected() {
    let cases: Vec<(&str, ManifestEdit, &str)> = vec![
        (
            "path escape",
            Box::new(|m: &mut Manifest| m.splits[0].shards[0].file = "../train-00000.shard".into()),
            "expected \"train-00000.shard\"",
        ),
        (
            "record count",
            Box::new(|m: &mut Manifest| m.splits[0].shards[1].records = 4),
            "record count 3 does not match 4",
        ),
        ("file size", Box::new(|m: &mut Manifest| m.splits[0].shards[0].bytes += 1), "file size"),
        (
            "header checksum",
            Box::new(|m: &mut Manifest| m.splits[0].shards[0].header_crc32c ^= 1),
            "header checksum 0x",
        ),
        (
            "split total",
            Box::new(|m: &mut Manifest| m.splits[0].records = 8),
            "lists 8 records, but its shards hold 7",
        ),
        (
            "schema",
            Box::new(|m: &mut Manifest| m.sample.width = 2),
            "schema 2x3x3 u8 raw does not match 2x2x3 u8 raw",
        ),
        (
            "fewer classes",
            Box::new(|m: &mut Manifest| {
                m.classes.truncate(5);
                m.splits.iter_mut().for_each(|s| s.class_counts.truncate(5));
            }),
            "outside the manifest's 5 classes",
        ),
        (
            "no coarse classes",
            Box::new(|m: &mut Manifest| m.coarse_classes = None),
            "labels per record 2 does not match 1",
        ),
        (
            "channel stats",
            Box::new(|m: &mut Manifest| {
                m.splits[1].channel_mean.pop();
            }),
            "2 channel means",
        ),
        (
            "duplicate split",
            Box::new(|m: &mut Manifest| m.splits[1].name = "train".into()),
            "appears twice",
        ),
        (
            "extra shard entry",
            Box::new(|m: &mut Manifest| {
                let copy = m.splits[0].shards[1].clone();
                m.splits[0].shards.push(copy);
            }),
            "expected \"train-00002.shard\"",
        ),
        ("format", Box::new(|m: &mut Manifest| m.format = "other".into()), "format \"other\""),
    ];

    for (name, change, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = write_set(dir.path());
        change(&mut manifest);
        fs::write(dir.path().join("manifest.json"), manifest.to_json()).unwrap();

        let open_message = ShardSet::open(dir.path()).unwrap_err().to_string();
        let verify_message = verify_shard_set(dir.path()).unwrap_err().to_string();

        assert!(
            open_message.contains(expected),
            "{name}: expected {expected:?} in {open_message:?}"
        );
        assert!(
            verify_message.contains(expected),
            "{name}: expected {expected:?} in {verify_message:?}"
        );
    }
}

#[test]
fn missing_or_garbage_manifest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    let manifest_path = dir.path().join("manifest.json");

    fs::write(&manifest_path, b"\x00\xffnot json").unwrap();
    let garbage = ShardSet::open(dir.path()).unwrap_err().to_string();
    fs::remove_file(&manifest_path).unwrap();
    let missing = verify_shard_set(dir.path()).unwrap_err().to_string();

    assert!(garbage.contains("manifest.json: invalid manifest"), "{garbage}");
    assert!(missing.contains("manifest.json"), "{missing}");
}

#[test]
fn missing_shard_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    fs::remove_file(dir.path().join("test-00000.shard")).unwrap();

    let open_message = ShardSet::open(dir.path()).unwrap_err().to_string();
    let verify_message = verify_shard_set(dir.path()).unwrap_err().to_string();

    assert!(open_message.contains("test-00000.shard"), "{open_message}");
    assert!(verify_message.contains("test-00000.shard"), "{verify_message}");
}

/// Writes a variable-layout JPEG set with one train shard of 4 records and a val shard of 2,
/// applies `change` to `train-00000.shard` and returns the verify message.
fn verify_variable_after(change: impl FnOnce(&mut Vec<u8>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let records = jpeg_records(6);
    let schema = SampleSchema::variable(3, Encoding::Jpeg);
    write_variable_set(dir.path(), schema, &[("train", &records[..4]), ("val", &records[4..])], 4);
    edit(&dir.path().join("train-00000.shard"), change);
    verify_shard_set(dir.path()).unwrap_err().to_string()
}

/// Reads the offset stored in index entry `i`.
fn stored_offset(bytes: &[u8], i: usize) -> u64 {
    let at = entry_field(i, 0);
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn verify_catches_changed_meta_by_record_checksum() {
    // Each edit leaves a valid entry, so only the record checksum ties it to the record.
    let edits: [(&str, usize, u8); 4] =
        [("height", 24, 0x01), ("width", 28, 0x02), ("flags", 36, 0x01), ("label", 16, 0x01)];

    for (name, field, mask) in edits {
        let mut offset = 0;
        let message = verify_variable_after(|bytes| {
            offset = stored_offset(bytes, 2);
            bytes[entry_field(2, field)] ^= mask;
        });

        let place = format!("record 2 at byte {offset}: checksum mismatch");
        assert!(message.contains("train-00000.shard"), "{name}: {message}");
        assert!(message.contains(&place), "{name}: expected {place:?} in {message:?}");
        assert!(message.contains("header checksum mismatch"), "{name}: {message}");
    }
}

#[test]
fn verify_catches_changed_path_byte() {
    let mut offset = 0;

    let message = verify_variable_after(|bytes| {
        offset = stored_offset(bytes, 1);
        bytes[offset as usize + 3] ^= 0x20;
    });

    let place = format!("record 1 at byte {offset}: checksum mismatch");
    assert!(message.contains(&place), "{message}");
    assert!(!message.contains("header checksum"), "{message}");
}

#[test]
fn variable_manifest_edits_are_rejected() {
    let cases: Vec<(&str, ManifestEdit, &str)> = vec![
        (
            "layout",
            Box::new(|m: &mut Manifest| m.sample = SampleSchema::variable(3, Encoding::Raw)),
            "schema variable-size 3-channel u8 jpeg does not match variable-size 3-channel u8 raw",
        ),
        (
            "fixed sample",
            Box::new(|m: &mut Manifest| m.sample = SampleSchema::raw_u8(4, 4, 3)),
            "does not match 4x4x3 u8 raw in the manifest",
        ),
        (
            "eigenvalue order",
            Box::new(|m: &mut Manifest| m.splits[1].rgb_eigenvalues = Some([1.0, 2.0, 0.5])),
            "split \"val\" has RGB eigenvalues [1.0, 2.0, 0.5], expected descending order",
        ),
    ];

    for (name, change, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let records = jpeg_records(5);
        let schema = SampleSchema::variable(3, Encoding::Jpeg);
        let mut manifest = write_variable_set(
            dir.path(),
            schema,
            &[("train", &records[..3]), ("val", &records[3..])],
            2,
        );
        change(&mut manifest);
        fs::write(dir.path().join("manifest.json"), manifest.to_json()).unwrap();

        let open_message = ShardSet::open(dir.path()).unwrap_err().to_string();
        let verify_message = verify_shard_set(dir.path()).unwrap_err().to_string();

        assert!(
            open_message.contains(expected),
            "{name}: expected {expected:?} in {open_message:?}"
        );
        assert!(verify_message.contains(expected), "{name}: {verify_message}");
    }
}

#[test]
fn rgb_statistics_need_three_channels() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = write_set(dir.path());
    manifest.splits[0].rgb_eigenvalues = Some([3.0, 2.0, 1.0]);
    // The fixture set has 3 channels; the JSON is edited to claim 1.
    let mut value = serde_json::to_value(&manifest).unwrap();
    value["sample"]["channels"] = 1.into();
    for split in value["splits"].as_array_mut().unwrap() {
        split["channel_mean"] = serde_json::json!([1.0]);
        split["channel_std"] = serde_json::json!([1.0]);
    }
    fs::write(dir.path().join("manifest.json"), value.to_string()).unwrap();

    let message = ShardSet::open(dir.path()).unwrap_err().to_string();

    assert!(message.contains("RGB covariance statistics for 1 channels, expected 3"), "{message}");
}
