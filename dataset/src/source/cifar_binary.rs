//! The CIFAR-10 and CIFAR-100 binary versions.
//!
//! Each file is a run of fixed-size records with no header. A CIFAR-10 record is 1 label byte
//! and 3072 pixel bytes, 3073 in all. A CIFAR-100 record is a coarse label byte, a fine label
//! byte and 3072 pixel bytes, 3074 in all. Pixels are planar, see
//! [`cifar_layout`](super::cifar_layout).
//!
//! CIFAR-10 train is `data_batch_1.bin` to `data_batch_5.bin` in that order, test is
//! `test_batch.bin`, and `batches.meta.txt` lists the class names. CIFAR-100 train is
//! `train.bin`, test is `test.bin`, and `fine_label_names.txt` and `coarse_label_names.txt`
//! list the names. Without a name file the classes are "0", "1", ...

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::cifar_layout::{planar_to_hwc, CHANNELS, IMAGE_LEN, SIDE};
use super::{
    missing_file, numbered_class_names, read_name_list, splits_to_read, SourceKind, SourceSet,
    SourceSplit, SplitName, MAX_FILE_BYTES,
};
use crate::error::{Error, Result};

const CIFAR10_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const CIFAR10_TEST: [&str; 1] = ["test_batch.bin"];
const CIFAR100_TRAIN: [&str; 1] = ["train.bin"];
const CIFAR100_TEST: [&str; 1] = ["test.bin"];

/// Class counts of the official datasets, used when no name file is present.
const CIFAR10_CLASSES: usize = 10;
const CIFAR100_FINE_CLASSES: usize = 100;
const CIFAR100_COARSE_CLASSES: usize = 20;

/// Returns the files of a split, in record order.
fn split_files(kind: SourceKind, split: SplitName) -> &'static [&'static str] {
    match (kind, split) {
        (SourceKind::Cifar100Binary, SplitName::Train) => &CIFAR100_TRAIN,
        (SourceKind::Cifar100Binary, SplitName::Test) => &CIFAR100_TEST,
        (_, SplitName::Train) => &CIFAR10_TRAIN,
        (_, SplitName::Test) => &CIFAR10_TEST,
    }
}

/// Returns whether `folder` contains the first train or the test file of `kind`.
pub(super) fn is_present(folder: &Path, kind: SourceKind) -> bool {
    SplitName::ALL.into_iter().any(|split| folder.join(split_files(kind, split)[0]).is_file())
}

/// The label arrays of one split.
struct Labels {
    fine: Vec<u32>,
    coarse: Option<Vec<u32>>,
}

/// Reads the selected splits of a CIFAR-10 or CIFAR-100 binary folder.
pub(super) fn read(
    folder: &Path,
    kind: SourceKind,
    selection: Option<SplitName>,
) -> Result<SourceSet> {
    let is_cifar100 = kind == SourceKind::Cifar100Binary;
    let (classes, coarse_classes) = if is_cifar100 {
        let fine = names_or_numbers(&folder.join("fine_label_names.txt"), CIFAR100_FINE_CLASSES)?;
        let coarse =
            names_or_numbers(&folder.join("coarse_label_names.txt"), CIFAR100_COARSE_CLASSES)?;
        (fine, Some(coarse))
    } else {
        (names_or_numbers(&folder.join("batches.meta.txt"), CIFAR10_CLASSES)?, None)
    };
    let coarse_count = coarse_classes.as_ref().map(Vec::len);

    let is_present =
        |split| split_files(kind, split).iter().any(|name| folder.join(name).is_file());
    let names = splits_to_read(folder, kind, selection, is_present)?;

    let mut splits = Vec::with_capacity(names.len());
    for name in names {
        let paths = split_paths(folder, kind, name)?;
        let (pixels, labels) = read_records(&paths, classes.len(), coarse_count)?;
        splits.push(SourceSplit {
            name: name.as_str().to_owned(),
            height: SIDE,
            width: SIDE,
            channels: CHANNELS,
            pixels,
            labels: labels.fine,
            coarse_labels: labels.coarse,
            files: paths,
        });
    }

    Ok(SourceSet { kind, classes, coarse_classes, splits })
}

fn names_or_numbers(path: &Path, default_count: usize) -> Result<Vec<String>> {
    if path.is_file() {
        read_name_list(path)
    } else {
        Ok(numbered_class_names(default_count))
    }
}

/// Returns the paths of a split's files, all of which must exist.
fn split_paths(folder: &Path, kind: SourceKind, split: SplitName) -> Result<Vec<PathBuf>> {
    let names = split_files(kind, split);
    let mut paths = Vec::with_capacity(names.len());
    for name in names {
        let path = folder.join(name);
        if !path.is_file() {
            let expected =
                format!("the {kind} {} split needs {}", split.as_str(), names.join(", "));
            return Err(missing_file(path, &expected));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Reads the records of `paths` in order into HWC pixels and labels.
///
/// `coarse_count` is `Some` for CIFAR-100, whose records start with a coarse label byte.
fn read_records(
    paths: &[PathBuf],
    class_count: usize,
    coarse_count: Option<usize>,
) -> Result<(Vec<u8>, Labels)> {
    let label_len = if coarse_count.is_some() { 2 } else { 1 };
    let record_len = label_len + IMAGE_LEN;

    // Size every file before allocating, so the buffers are sized from checked lengths.
    let mut counts = Vec::with_capacity(paths.len());
    for path in paths {
        let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if size == 0 || size % record_len as u64 != 0 || size > MAX_FILE_BYTES {
            return Err(Error::format(
                path,
                format!(
                    "size {size} bytes is not a positive multiple of the {record_len}-byte \
                     record size (at most {MAX_FILE_BYTES} bytes)"
                ),
            ));
        }
        // At most MAX_FILE_BYTES / 3073 records, which fits in usize.
        counts.push((size / record_len as u64) as usize);
    }
    let total: usize = counts.iter().sum();
    if (total as u64) * IMAGE_LEN as u64 > MAX_FILE_BYTES {
        return Err(Error::format(
            &paths[0],
            format!("{total} images in this split exceed the {MAX_FILE_BYTES}-byte limit"),
        ));
    }

    let mut pixels = vec![0u8; total * IMAGE_LEN];
    let mut labels = Labels {
        fine: Vec::with_capacity(total),
        coarse: coarse_count.map(|_| Vec::with_capacity(total)),
    };
    let mut images = pixels.chunks_exact_mut(IMAGE_LEN);
    let mut record = [0u8; 2 + IMAGE_LEN];
    let record = &mut record[..record_len];

    for (path, &count) in paths.iter().zip(&counts) {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);

        for index in 0..count {
            reader.read_exact(record).map_err(|e| Error::io(path, e))?;
            let (label_bytes, planar) = record.split_at(label_len);

            let fine = label_bytes[label_len - 1];
            check_label(path, index, "label", fine, class_count)?;
            labels.fine.push(u32::from(fine));
            if let (Some(coarse_labels), Some(coarse_count)) = (&mut labels.coarse, coarse_count) {
                let coarse = label_bytes[0];
                check_label(path, index, "coarse label", coarse, coarse_count)?;
                coarse_labels.push(u32::from(coarse));
            }

            // `pixels` has room for exactly `total` images, one per record read.
            let image = images.next().expect("one image slot per counted record");
            planar_to_hwc(planar, image);
        }
    }

    Ok((pixels, labels))
}

fn check_label(path: &Path, record: usize, what: &str, value: u8, count: usize) -> Result<()> {
    if usize::from(value) < count {
        return Ok(());
    }
    Err(Error::format(
        path,
        format!("record {record}: {what} {value} is out of range for {count} classes"),
    ))
}
