//! The same input gives the same bytes: across runs, across rayon thread counts, and as the
//! byte layout documented in FORMAT.md spells it out.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::shard::tests::fixtures::SetData;
use crate::shard::{write_record_set, RecordSet, RecordSplit, SampleSchema, WriteOptions};

/// Reads every file of `dir` by name.
fn read_all(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().into_string().unwrap(), fs::read(entry.path()).unwrap())
        })
        .collect()
}

fn shards_of_size(shard_size_bytes: u64) -> WriteOptions {
    WriteOptions { shard_size_bytes, overwrite: false }
}

#[test]
fn same_input_gives_identical_files() {
    let data = SetData::new(6, 5, 3, 40, 11, true);
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();

    // 90-byte records, 7 to a 1 KiB shard: 6 train shards and 2 test shards.
    write_record_set(&data.record_set(), first.path(), &shards_of_size(1024)).unwrap();
    write_record_set(&data.record_set(), second.path(), &shards_of_size(1024)).unwrap();
    let first_files = read_all(first.path());

    assert_eq!(first_files.len(), 9, "expected 8 shards and a manifest: {:?}", first_files.keys());
    assert_eq!(first_files, read_all(second.path()));
}

#[test]
fn thread_count_does_not_change_bytes() {
    // Enough pixels for the statistics to split into several rayon tasks.
    let data = SetData::new(16, 12, 3, 700, 3, false);
    let write_with = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let opts = shards_of_size(64 << 10);
        pool.install(|| write_record_set(&data.record_set(), dir.path(), &opts)).unwrap();
        read_all(dir.path())
    };

    let one_thread = write_with(1);
    let two_threads = write_with(2);

    assert!(one_thread.len() > 3, "expected several shards: {:?}", one_thread.keys());
    assert_eq!(one_thread.keys().collect::<Vec<_>>(), two_threads.keys().collect::<Vec<_>>());
    for (name, bytes) in &one_thread {
        assert!(two_threads[name] == *bytes, "{name} differs between 1 and 2 threads");
    }
}

/// Builds the expected file from the FORMAT.md table, independently of `layout.rs`.
#[test]
fn tiny_shard_matches_documented_layout() {
    let classes = vec!["a".to_string(), "b".into(), "c".into(), "d".into()];
    let pixels = [10u8, 20, 30, 40, 50, 60];
    let labels = [3u32, 1];
    let set = RecordSet {
        source_kind: "idx",
        classes: &classes,
        coarse_classes: None,
        splits: vec![RecordSplit {
            name: "train",
            schema: SampleSchema::raw_u8(1, 3, 1),
            pixels: &pixels,
            labels: &labels,
            coarse_labels: None,
        }],
    };
    let dir = tempfile::tempdir().unwrap();

    let manifest = write_record_set(&set, dir.path(), &WriteOptions::default()).unwrap();
    let bytes = fs::read(dir.path().join("train-00000.shard")).unwrap();

    // Entry bytes 16..40 for record `i`: label, no second label, height 1, width 3, no path,
    // 1 channel, raw encoding, no flags.
    let checked_entry_bytes = |label: u32| {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&label.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes
    };
    let mut header = Vec::new();
    header.extend_from_slice(b"EXPSHARD");
    header.extend_from_slice(&2u32.to_le_bytes()); // version
    header.extend_from_slice(&72u32.to_le_bytes()); // header length
    header.extend_from_slice(&2u64.to_le_bytes()); // record count
    header.extend_from_slice(&1u32.to_le_bytes()); // height
    header.extend_from_slice(&3u32.to_le_bytes()); // width
    header.extend_from_slice(&1u32.to_le_bytes()); // channels
    header.extend_from_slice(&[0, 0, 1, 0]); // dtype u8, encoding raw, 1 label, reserved
    header.extend_from_slice(&72u64.to_le_bytes()); // index offset
    header.extend_from_slice(&152u64.to_le_bytes()); // data offset: 72 + 2 * 40
    header.extend_from_slice(&6u64.to_le_bytes()); // data length
    header.extend_from_slice(&[0; 8]); // header checksum (zero while computed), reserved
    let mut index = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let record = &pixels[i * 3..i * 3 + 3];
        let checked = checked_entry_bytes(*label);
        let record_crc = crc32c::crc32c(&[record, checked.as_slice()].concat());
        index.extend_from_slice(&(152 + 3 * i as u64).to_le_bytes());
        index.extend_from_slice(&3u32.to_le_bytes());
        index.extend_from_slice(&record_crc.to_le_bytes());
        index.extend_from_slice(&checked);
    }
    let header_crc = crc32c::crc32c_append(crc32c::crc32c(&header), &index);
    header[64..68].copy_from_slice(&header_crc.to_le_bytes());
    let expected = [header, index, pixels.to_vec()].concat();

    assert_eq!(bytes, expected);
    assert_eq!(manifest.splits[0].shards[0].header_crc32c, header_crc);
    assert_eq!(manifest.splits[0].shards[0].bytes, 158);
}
