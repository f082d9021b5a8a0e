//! End-to-end tests of [`read_source`] on folders written to the official byte layouts.

use std::path::{Path, PathBuf};

use super::fixtures::{
    cifar100_records, cifar10_records, gzip, hwc_image, idx_file, pickle_dict, pixel_value,
    planar_image, Item, PickleStyle,
};
use super::*;

fn write(folder: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = folder.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn error_of(path: &Path, split: Option<&str>) -> Error {
    read_source(path, split).expect_err("reading should fail")
}

// ---- IDX ----

const IDX_ROWS: usize = 5;
const IDX_COLUMNS: usize = 7;

/// Returns a non-square IDX image whose 35 pixels all differ, and differ from other records.
fn idx_image(record: usize) -> Vec<u8> {
    let mut image = Vec::new();
    for row in 0..IDX_ROWS {
        for column in 0..IDX_COLUMNS {
            image.push((record * 50 + row * IDX_COLUMNS + column) as u8);
        }
    }
    image
}

fn idx_images(records: &[usize]) -> Vec<u8> {
    let data: Vec<u8> = records.iter().flat_map(|&record| idx_image(record)).collect();
    let dims = [records.len() as u32, IDX_ROWS as u32, IDX_COLUMNS as u32];
    idx_file(0x0803, &dims, &data)
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    idx_file(0x0801, &[labels.len() as u32], labels)
}

/// Writes a train split of records 0..3 and a test split of records 3..5.
fn write_idx_folder(folder: &Path, compress: bool, test_prefix: &str) {
    let suffix = if compress { ".gz" } else { "" };
    let pack = |bytes: Vec<u8>| if compress { gzip(&bytes) } else { bytes };

    write(folder, &format!("train-images-idx3-ubyte{suffix}"), &pack(idx_images(&[0, 1, 2])));
    write(folder, &format!("train-labels-idx1-ubyte{suffix}"), &pack(idx_labels(&[4, 0, 2])));
    let test_images = format!("{test_prefix}-images-idx3-ubyte{suffix}");
    write(folder, &test_images, &pack(idx_images(&[3, 4])));
    let test_labels = format!("{test_prefix}-labels-idx1-ubyte{suffix}");
    write(folder, &test_labels, &pack(idx_labels(&[1, 3])));
}

#[test]
fn idx_round_trip_plain_and_gzip() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_idx_folder(dir.path(), compress, "t10k");

        let set = read_source(dir.path(), None).unwrap();

        assert_eq!(set.kind, SourceKind::Idx);
        assert_eq!(set.classes, ["0", "1", "2", "3", "4"], "0 to the largest label");
        assert_eq!(set.coarse_classes, None);
        let names: Vec<&str> = set.splits.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["train", "test"]);

        let train = set.split("train").unwrap();
        assert_eq!((train.height, train.width, train.channels), (5, 7, 1));
        assert_eq!(train.labels, [4, 0, 2]);
        assert_eq!(train.pixels, [idx_image(0), idx_image(1), idx_image(2)].concat());
        assert_eq!(train.coarse_labels, None);
        assert_eq!(train.files.len(), 2);
        assert!(train.files[0].ends_with(if compress {
            "train-images-idx3-ubyte.gz"
        } else {
            "train-images-idx3-ubyte"
        }));

        let test = set.split("test").unwrap();
        assert_eq!(test.labels, [1, 3]);
        assert_eq!(test.image(1), idx_image(4));
    }
}

#[test]
fn idx_gzip_detected_by_content() {
    let dir = tempfile::tempdir().unwrap();
    // Compressed data under a plain name, plain data under a .gz name.
    write(dir.path(), "train-images-idx3-ubyte", &gzip(&idx_images(&[0, 1])));
    write(dir.path(), "train-labels-idx1-ubyte.gz", &idx_labels(&[1, 0]));

    let set = read_source(dir.path(), None).unwrap();

    let train = set.split("train").unwrap();
    assert_eq!(train.pixels, [idx_image(0), idx_image(1)].concat());
    assert_eq!(train.labels, [1, 0]);
}

#[test]
fn idx_test_prefix_and_split_filter() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_folder(dir.path(), false, "test");

    let set = read_source(dir.path(), Some("test")).unwrap();

    assert_eq!(set.splits.len(), 1);
    assert_eq!(set.splits[0].name, "test");
    assert_eq!(set.splits[0].labels, [1, 3]);
    assert_eq!(set.classes, ["0", "1", "2", "3"], "classes from the labels read");
}

#[test]
fn idx_classes_file_used() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_folder(dir.path(), false, "t10k");
    let names = "zero\none\n\ntwo\r\nthree\nfour\nfive\n";
    write(dir.path(), "classes.txt", names.as_bytes());

    let set = read_source(dir.path(), None).unwrap();

    assert_eq!(set.classes, ["zero", "one", "two", "three", "four", "five"]);
}

#[test]
fn idx_label_beyond_classes_file() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_folder(dir.path(), false, "t10k");
    write(dir.path(), "classes.txt", b"a\nb\nc\nd\n");

    let message = error_of(dir.path(), None).to_string();

    assert!(message.contains("train-labels-idx1-ubyte"), "{message}");
    assert!(message.contains("record 0: label 4"), "{message}");
    assert!(message.contains("4 classes"), "{message}");
}

#[test]
fn idx_count_mismatch_names_both() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images-idx3-ubyte", &idx_images(&[0, 1, 2]));
    write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(&[1, 0]));

    let message = error_of(dir.path(), None).to_string();

    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert!(message.contains("train-labels-idx1-ubyte"), "{message}");
    assert!(message.contains("label count 2"), "{message}");
    assert!(message.contains("image count 3"), "{message}");
}

#[test]
fn idx_missing_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images-idx3-ubyte", &idx_images(&[0]));

    let error = error_of(dir.path(), None);

    assert!(matches!(&error, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound));
    assert!(error.to_string().contains("train-labels-idx1-ubyte"), "{error}");
}

#[test]
fn idx_missing_requested_split() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images-idx3-ubyte", &idx_images(&[0]));
    write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(&[0]));

    let message = error_of(dir.path(), Some("test")).to_string();

    assert!(message.contains("t10k-images-idx3-ubyte"), "{message}");
}

#[test]
fn idx_wrong_magic_names_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images-idx3-ubyte", &idx_images(&[0]));
    write(dir.path(), "train-labels-idx1-ubyte", &idx_file(0x0803, &[1], &[0]));

    let message = error_of(dir.path(), None).to_string();

    assert!(message.contains("train-labels-idx1-ubyte"), "{message}");
    assert!(message.contains("0x00000803"), "{message}");
    assert!(message.contains("expected 0x00000801"), "{message}");
}

#[test]
fn idx_truncated_files_fail_cleanly() {
    let full = idx_images(&[0, 1]);
    for compress in [false, true] {
        let bytes = if compress { gzip(&full) } else { full.clone() };
        for cut in [0, 3, 4, 9, 15, 16, 17, bytes.len() / 2, bytes.len() - 1] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "train-images-idx3-ubyte", &bytes[..cut]);
            write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(&[0, 1]));

            let error = error_of(dir.path(), None);

            assert!(
                matches!(error, Error::Format { .. }),
                "compress {compress}, cut {cut}: {error}"
            );
        }
    }
}

// ---- pixel pattern ----

#[test]
fn pattern_shows_layout_mistakes() {
    let planar = planar_image(1);
    let hwc = hwc_image(1);

    // Planar bytes taken as HWC.
    assert_ne!(planar, hwc);

    // Rows and columns swapped.
    let mut transposed = Vec::new();
    for row in 0..32 {
        for column in 0..32 {
            for channel in 0..3 {
                transposed.push(pixel_value(1, channel, column, row));
            }
        }
    }
    assert_ne!(transposed, hwc);

    // Channels in BGR order.
    let bgr: Vec<u8> = hwc.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    assert_ne!(bgr, hwc);

    // Records swapped.
    assert_ne!(hwc_image(0), hwc);
}

// ---- CIFAR binary ----

const CIFAR10_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Writes five train batches of two records each (records 2k and 2k+1, label (3k+r) % 10) and a
/// test batch of records 100 and 101.
fn write_cifar10_binary(folder: &Path) -> Vec<(u8, usize)> {
    let mut train = Vec::new();
    for batch in 0..5 {
        let records: Vec<(u8, usize)> =
            (0..2).map(|r| (((3 * batch + r) % 10) as u8, 2 * batch + r)).collect();
        write(folder, &format!("data_batch_{}.bin", batch + 1), &cifar10_records(&records));
        train.extend(records);
    }
    write(folder, "test_batch.bin", &cifar10_records(&[(9, 100), (0, 101)]));
    let meta = format!("{}\n\n\n", CIFAR10_NAMES.join("\r\n"));
    write(folder, "batches.meta.txt", meta.as_bytes());
    train
}

fn expected_pixels(records: impl IntoIterator<Item = usize>) -> Vec<u8> {
    records.into_iter().flat_map(hwc_image).collect()
}

#[test]
fn cifar10_binary_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let train_records = write_cifar10_binary(dir.path());

    let set = read_source(dir.path(), None).unwrap();

    assert_eq!(set.kind, SourceKind::Cifar10Binary);
    assert_eq!(set.classes, CIFAR10_NAMES);
    let train = set.split("train").unwrap();
    assert_eq!((train.height, train.width, train.channels), (32, 32, 3));
    let labels: Vec<u32> = train_records.iter().map(|&(label, _)| u32::from(label)).collect();
    assert_eq!(train.labels, labels);
    assert_eq!(train.pixels, expected_pixels(train_records.iter().map(|&(_, record)| record)));
    let file_names: Vec<String> =
        train.files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(file_names, CIFAR10_TRAIN_BIN);

    let test = set.split("test").unwrap();
    assert_eq!(test.labels, [9, 0]);
    assert_eq!(test.pixels, expected_pixels([100, 101]));
}

const CIFAR10_TRAIN_BIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

#[test]
fn cifar10_binary_nested_folder_without_names() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&nested).unwrap();
    write_cifar10_binary(&nested);
    std::fs::remove_file(nested.join("batches.meta.txt")).unwrap();

    let set = read_source(dir.path(), Some("test")).unwrap();

    assert_eq!(set.classes, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    assert_eq!(set.splits.len(), 1);
    assert_eq!(set.splits[0].files, [nested.join("test_batch.bin")]);
}

#[test]
fn cifar10_binary_bad_size_names_values() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_binary(dir.path());
    let full = cifar10_records(&[(1, 0), (2, 1)]);

    for cut in [1, 3072, 3074, full.len() - 1] {
        write(dir.path(), "data_batch_4.bin", &full[..cut]);

        let message = error_of(dir.path(), Some("train")).to_string();

        assert!(message.contains("data_batch_4.bin"), "{message}");
        assert!(message.contains(&format!("size {cut} bytes")), "{message}");
        assert!(message.contains("3073-byte record"), "{message}");
    }
}

#[test]
fn cifar10_binary_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_binary(dir.path());
    write(dir.path(), "test_batch.bin", &cifar10_records(&[(3, 0), (10, 1)]));

    let message = error_of(dir.path(), None).to_string();

    assert!(message.contains("test_batch.bin"), "{message}");
    assert!(message.contains("record 1: label 10"), "{message}");
}

#[test]
fn cifar10_binary_missing_batch() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_binary(dir.path());
    std::fs::remove_file(dir.path().join("data_batch_3.bin")).unwrap();

    let error = error_of(dir.path(), None);

    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(error.to_string().contains("data_batch_3.bin"), "{error}");
}

#[test]
fn cifar100_binary_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let train = [(19, 99, 0), (0, 0, 1), (7, 42, 2)];
    write(dir.path(), "train.bin", &cifar100_records(&train));
    write(dir.path(), "test.bin", &cifar100_records(&[(5, 6, 3)]));
    let fine: Vec<String> = (0..100).map(|i| format!("fine{i}")).collect();
    let coarse: Vec<String> = (0..20).map(|i| format!("coarse{i}")).collect();
    write(dir.path(), "fine_label_names.txt", fine.join("\n").as_bytes());
    write(dir.path(), "coarse_label_names.txt", coarse.join("\n").as_bytes());

    let set = read_source(dir.path(), None).unwrap();

    assert_eq!(set.kind, SourceKind::Cifar100Binary);
    assert_eq!(set.classes, fine);
    assert_eq!(set.coarse_classes, Some(coarse));
    let split = set.split("train").unwrap();
    assert_eq!(split.labels, [99, 0, 42]);
    assert_eq!(split.coarse_labels, Some(vec![19, 0, 7]));
    assert_eq!(split.pixels, expected_pixels([0, 1, 2]));
    let split = set.split("test").unwrap();
    assert_eq!(split.labels, [6]);
    assert_eq!(split.coarse_labels, Some(vec![5]));
    assert_eq!(split.pixels, expected_pixels([3]));
}

#[test]
fn cifar100_binary_checks_both_labels() {
    let dir = tempfile::tempdir().unwrap();

    write(dir.path(), "train.bin", &cifar100_records(&[(1, 2, 0), (20, 3, 1)]));
    let message = error_of(dir.path(), None).to_string();
    assert!(message.contains("record 1: coarse label 20"), "{message}");
    assert!(message.contains("20 classes"), "{message}");

    write(dir.path(), "train.bin", &cifar100_records(&[(1, 100, 0)]));
    let message = error_of(dir.path(), None).to_string();
    assert!(message.contains("record 0: label 100"), "{message}");

    write(dir.path(), "train.bin", &cifar100_records(&[(1, 2, 0)])[..3073]);
    let message = error_of(dir.path(), None).to_string();
    assert!(message.contains("3074-byte record"), "{message}");
}

// ---- CIFAR python ----

fn planar_rows(records: &[usize]) -> Vec<u8> {
    records.iter().flat_map(|&record| planar_image(record)).collect()
}

fn batch_pickle(style: PickleStyle, records: &[usize], labels: &[i64]) -> Vec<u8> {
    pickle_dict(
        style,
        &[
            ("batch_label", Item::Text("training batch 1 of 5".into())),
            ("labels", Item::Ints(labels.to_vec())),
            ("data", Item::Array(vec![records.len(), 3072], planar_rows(records))),
            ("filenames", Item::Texts(records.iter().map(|r| format!("img_{r}.png")).collect())),
        ],
    )
}

/// Writes a CIFAR-10 python folder: batch k contains records 2k and 2k+1 with labels 2k % 10 and
/// (2k+1) % 10, and the test batch contains records 100 and 101.
fn write_cifar10_python(folder: &Path, style: PickleStyle) {
    for batch in 0..5 {
        let records = [2 * batch, 2 * batch + 1];
        let labels = records.map(|r| (r % 10) as i64);
        write(
            folder,
            &format!("data_batch_{}", batch + 1),
            &batch_pickle(style, &records, &labels),
        );
    }
    write(folder, "test_batch", &batch_pickle(style, &[100, 101], &[9, 8]));
    let names = Item::Texts(CIFAR10_NAMES.iter().map(|n| n.to_string()).collect());
    let meta = [("num_cases_per_batch", Item::Int(10000)), ("label_names", names)];
    write(folder, "batches.meta", &pickle_dict(style, &meta));
}

#[test]
fn cifar10_python_round_trip() {
    for style in [PickleStyle::Python2, PickleStyle::Python3] {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10_python(dir.path(), style);

        let set = read_source(dir.path(), None).unwrap();

        assert_eq!(set.kind, SourceKind::Cifar10Python, "{style:?}");
        assert_eq!(set.classes, CIFAR10_NAMES, "{style:?}");
        let train = set.split("train").unwrap();
        assert_eq!(train.labels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "{style:?}");
        assert_eq!(train.pixels, expected_pixels(0..10), "{style:?}");
        assert_eq!(train.files.len(), 5, "{style:?}");
        assert!(train.files[4].ends_with("data_batch_5"), "{style:?}");
        let test = set.split("test").unwrap();
        assert_eq!(test.labels, [9, 8], "{style:?}");
        assert_eq!(test.pixels, expected_pixels([100, 101]), "{style:?}");
        assert_eq!((test.height, test.width, test.channels), (32, 32, 3), "{style:?}");
    }
}

#[test]
fn cifar10_python_nested_folder() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("cifar-10-batches-py");
    std::fs::create_dir(&nested).unwrap();
    write_cifar10_python(&nested, PickleStyle::Python2);

    assert_eq!(detect(dir.path()).unwrap(), SourceKind::Cifar10Python);
    let set = read_source(dir.path(), Some("train")).unwrap();
    assert_eq!(set.splits.len(), 1);
}

#[test]
fn cifar10_python_label_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_python(dir.path(), PickleStyle::Python2);
    write(dir.path(), "test_batch", &batch_pickle(PickleStyle::Python2, &[0, 1], &[1]));

    let message = error_of(dir.path(), Some("test")).to_string();

    assert!(message.contains("test_batch"), "{message}");
    assert!(message.contains("1 labels for 2 images"), "{message}");
}

#[test]
fn cifar10_python_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_python(dir.path(), PickleStyle::Python3);
    write(dir.path(), "test_batch", &batch_pickle(PickleStyle::Python3, &[0, 1], &[1, -1]));

    let message = error_of(dir.path(), Some("test")).to_string();

    assert!(message.contains("record 1: label -1"), "{message}");
}

#[test]
fn cifar10_python_missing_key_lists_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_python(dir.path(), PickleStyle::Python2);
    let data = Item::Array(vec![1, 3072], planar_rows(&[0]));
    write(dir.path(), "test_batch", &pickle_dict(PickleStyle::Python2, &[("data", data)]));

    let message = error_of(dir.path(), Some("test")).to_string();

    assert!(message.contains("missing key \"labels\" (keys found: data)"), "{message}");
}

#[test]
fn cifar10_python_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_python(dir.path(), PickleStyle::Python2);
    let entries = [
        ("data", Item::Array(vec![2, 1536], planar_rows(&[0]))),
        ("labels", Item::Ints(vec![0, 1])),
    ];
    write(dir.path(), "test_batch", &pickle_dict(PickleStyle::Python2, &entries));

    let message = error_of(dir.path(), Some("test")).to_string();

    assert!(message.contains("[2, 1536]"), "{message}");
}

#[test]
fn cifar10_python_truncated_batches_fail_cleanly() {
    let bytes = batch_pickle(PickleStyle::Python2, &[0, 1], &[0, 1]);
    for cut in [0, 1, 2, 40, 200, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10_python(dir.path(), PickleStyle::Python2);
        write(dir.path(), "test_batch", &bytes[..cut]);

        let error = error_of(dir.path(), Some("test"));

        assert!(matches!(error, Error::Format { .. }), "cut {cut}: {error}");
        assert!(error.to_string().contains("test_batch"), "cut {cut}: {error}");
    }
}

/// Pickles written by real Python and numpy, see `testdata/make_pickles.py`.
const GOLDEN_PICKLES: [(&str, &[u8]); 3] = [
    ("python 2.7 cPickle, protocol 2", include_bytes!("testdata/cifar10_py2_protocol2.pkl")),
    ("python 3.11, protocol 2", include_bytes!("testdata/cifar10_py3_protocol2.pkl")),
    ("python 3.11, protocol 4", include_bytes!("testdata/cifar10_py3_protocol4.pkl")),
];

#[test]
fn cifar10_python_golden_pickles() {
    for (writer, bytes) in GOLDEN_PICKLES {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "test_batch", bytes);

        let set = read_source(dir.path(), None).unwrap();

        assert_eq!(set.kind, SourceKind::Cifar10Python, "{writer}");
        assert_eq!(set.splits.len(), 1, "{writer}");
        let test = set.split("test").unwrap();
        assert_eq!(test.labels, [3, 7], "{writer}");
        assert_eq!(test.pixels, expected_pixels([4, 9]), "{writer}");
    }
}

fn write_cifar100_python(folder: &Path, style: PickleStyle) {
    let split = |records: &[usize], fine: &[i64], coarse: &[i64]| {
        pickle_dict(
            style,
            &[
                ("filenames", Item::Texts(vec!["a.png".into(); records.len()])),
                ("batch_label", Item::Text("training batch 1 of 1".into())),
                ("fine_labels", Item::Ints(fine.to_vec())),
                ("coarse_labels", Item::Ints(coarse.to_vec())),
                ("data", Item::Array(vec![records.len(), 3072], planar_rows(records))),
            ],
        )
    };
    write(folder, "train", &split(&[0, 1, 2], &[99, 0, 42], &[19, 0, 7]));
    write(folder, "test", &split(&[3], &[6], &[5]));

    let fine = Item::Texts((0..100).map(|i| format!("fine{i}")).collect());
    let coarse = Item::Texts((0..20).map(|i| format!("coarse{i}")).collect());
    let meta = [("fine_label_names", fine), ("coarse_label_names", coarse)];
    write(folder, "meta", &pickle_dict(style, &meta));
}

#[test]
fn cifar100_python_round_trip() {
    for style in [PickleStyle::Python2, PickleStyle::Python3] {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("cifar-100-python");
        std::fs::create_dir(&nested).unwrap();
        write_cifar100_python(&nested, style);

        let set = read_source(dir.path(), None).unwrap();

        assert_eq!(set.kind, SourceKind::Cifar100Python, "{style:?}");
        assert_eq!(set.classes.len(), 100, "{style:?}");
        assert_eq!(set.classes[42], "fine42", "{style:?}");
        assert_eq!(set.coarse_classes.as_ref().unwrap()[19], "coarse19", "{style:?}");
        let train = set.split("train").unwrap();
        assert_eq!(train.labels, [99, 0, 42], "{style:?}");
        assert_eq!(train.coarse_labels, Some(vec![19, 0, 7]), "{style:?}");
        assert_eq!(train.pixels, expected_pixels([0, 1, 2]), "{style:?}");
        let test = set.split("test").unwrap();
        assert_eq!(test.labels, [6], "{style:?}");
        assert_eq!(test.coarse_labels, Some(vec![5]), "{style:?}");
        assert_eq!(test.pixels, expected_pixels([3]), "{style:?}");
    }
}

#[test]
fn cifar100_python_coarse_label_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar100_python(dir.path(), PickleStyle::Python2);
    let entries = [
        ("data", Item::Array(vec![1, 3072], planar_rows(&[0]))),
        ("fine_labels", Item::Ints(vec![3])),
        ("coarse_labels", Item::Ints(vec![20])),
    ];
    write(dir.path(), "test", &pickle_dict(PickleStyle::Python2, &entries));

    let message = error_of(dir.path(), Some("test")).to_string();

    assert!(message.contains("coarse_labels: record 0: label 20"), "{message}");
}

// ---- arguments ----

#[test]
fn unknown_split_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_folder(dir.path(), false, "t10k");

    let error = error_of(dir.path(), Some("val"));

    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("\"val\""), "{message}");
    assert!(message.contains("\"train\" or \"test\""), "{message}");
}

#[test]
fn unknown_folder_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.txt", b"hello");

    let error = error_of(dir.path(), None);

    assert!(matches!(error, Error::UnknownSource { .. }), "{error}");
}

// ---- real data ----

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn fashion_mnist_real_files() {
    let folder = Path::new(FASHION_MNIST);
    if !folder.is_dir() {
        eprintln!("skipping: {FASHION_MNIST} not found");
        return;
    }

    let started = std::time::Instant::now();
    let set = read_source(folder, None).unwrap();
    eprintln!("read Fashion-MNIST in {:?}", started.elapsed());

    assert_eq!(set.kind, SourceKind::Idx);
    assert_eq!(set.classes, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    // Reference values computed with Python's gzip module from the same files.
    let references = [
        ("train", 60_000, [9, 0, 0, 3, 0, 2, 7, 2], 76_247, 3_431_114_169u64),
        ("test", 10_000, [9, 2, 1, 1, 6, 1, 4, 6], 33_456, 573_469_082),
    ];
    for (name, count, first_labels, first_image_sum, pixel_sum) in references {
        let split = set.split(name).unwrap();
        assert_eq!(split.labels[..8], first_labels, "{name}");
        let image_sum: u64 = split.image(0).iter().map(|&p| u64::from(p)).sum();
        assert_eq!(image_sum, first_image_sum, "{name}");
        let sum: u64 = split.pixels.iter().map(|&p| u64::from(p)).sum();
        assert_eq!(sum, pixel_sum, "{name}");
        assert_eq!(split.len(), count, "{name}");
        assert_eq!((split.height, split.width, split.channels), (28, 28, 1), "{name}");
        assert_eq!(split.pixels.len(), count * 784, "{name}");

        // Fashion-MNIST is balanced: every class has a tenth of each split.
        let mut per_class = [0usize; 10];
        for &label in &split.labels {
            per_class[label as usize] += 1;
        }
        assert_eq!(per_class, [count / 10; 10], "{name}");
    }
}
