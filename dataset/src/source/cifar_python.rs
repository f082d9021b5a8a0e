//! The CIFAR-10 and CIFAR-100 python versions: pickled dicts, read with [`pickle`](super::pickle).
//!
//! Each batch file is a dict with `data`, a numpy uint8 array of N x 3072 whose rows are planar
//! images (see [`cifar_layout`](super::cifar_layout)), and the labels: `labels` for CIFAR-10,
//! `fine_labels` and `coarse_labels` for CIFAR-100, each a list of N ints. Keys may be byte
//! strings (Python 2 files) or text. Other keys (`batch_label`, `filenames`) are ignored.
//!
//! CIFAR-10 train is `data_batch_1` to `data_batch_5`, test is `test_batch`, and the optional
//! `batches.meta` dict has `label_names`. CIFAR-100 train is `train`, test is `test`, and the
//! required `meta` dict has `fine_label_names` and `coarse_label_names`.
//!
//! NOTE: the tests read pickles in the official layout written by Python 2.7 `cPickle` with numpy
//! 1.16 and by Python 3.11 with numpy 2.4 (see `testdata/make_pickles.py`), but not the official
//! archives themselves.

use std::path::{Path, PathBuf};

use super::cifar_layout::{planar_to_hwc, CHANNELS, IMAGE_LEN, SIDE};
use super::pickle::{self, Pickle, Value};
use super::{
    missing_file, numbered_class_names, splits_to_read, SourceKind, SourceSet, SourceSplit,
    SplitName, MAX_FILE_BYTES,
};
use crate::error::{Error, Result};

const CIFAR10_TRAIN: [&str; 5] =
    ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"];
const CIFAR10_TEST: [&str; 1] = ["test_batch"];
const CIFAR10_META: &str = "batches.meta";
const CIFAR10_CLASSES: usize = 10;

const CIFAR100_TRAIN: [&str; 1] = ["train"];
const CIFAR100_TEST: [&str; 1] = ["test"];
const CIFAR100_META: &str = "meta";

/// Returns the files of a split, in record order.
fn split_files(kind: SourceKind, split: SplitName) -> &'static [&'static str] {
    match (kind, split) {
        (SourceKind::Cifar100Python, SplitName::Train) => &CIFAR100_TRAIN,
        (SourceKind::Cifar100Python, SplitName::Test) => &CIFAR100_TEST,
        (_, SplitName::Train) => &CIFAR10_TRAIN,
        (_, SplitName::Test) => &CIFAR10_TEST,
    }
}

/// Returns whether `folder` contains the marker files of `kind`: the first train or the test file,
/// and for CIFAR-100, whose file names `train` and `test` are common words, also `meta`.
pub(super) fn is_present(folder: &Path, kind: SourceKind) -> bool {
    let has_split =
        SplitName::ALL.into_iter().any(|split| folder.join(split_files(kind, split)[0]).is_file());
    match kind {
        SourceKind::Cifar100Python => has_split && folder.join(CIFAR100_META).is_file(),
        _ => has_split,
    }
}

/// Class names and the dict keys of the labels, per variant.
struct Variant {
    classes: Vec<String>,
    coarse_classes: Option<Vec<String>>,
    /// Dict key of the labels (the fine labels for CIFAR-100).
    label_key: &'static str,
    /// Dict key of the CIFAR-100 coarse labels.
    coarse_label_key: Option<&'static str>,
}

/// Reads the selected splits of a CIFAR-10 or CIFAR-100 python folder.
pub(super) fn read(
    folder: &Path,
    kind: SourceKind,
    selection: Option<SplitName>,
) -> Result<SourceSet> {
    let variant = if kind == SourceKind::Cifar100Python {
        read_cifar100_meta(&folder.join(CIFAR100_META))?
    } else {
        read_cifar10_meta(&folder.join(CIFAR10_META))?
    };

    let is_present =
        |split| split_files(kind, split).iter().any(|name| folder.join(name).is_file());
    let names = splits_to_read(folder, kind, selection, is_present)?;

    let mut splits = Vec::with_capacity(names.len());
    for name in names {
        let mut split = SourceSplit {
            name: name.as_str().to_owned(),
            height: SIDE,
            width: SIDE,
            channels: CHANNELS,
            pixels: Vec::new(),
            labels: Vec::new(),
            coarse_labels: variant.coarse_label_key.map(|_| Vec::new()),
            files: Vec::new(),
        };

        let files = split_files(kind, name);
        for file_name in files {
            let path = folder.join(file_name);
            if !path.is_file() {
                let expected =
                    format!("the {kind} {} split needs {}", name.as_str(), files.join(", "));
                return Err(missing_file(path, &expected));
            }
            read_batch(&path, &variant, &mut split)?;
            split.files.push(path);
        }
        splits.push(split);
    }

    Ok(SourceSet { kind, classes: variant.classes, coarse_classes: variant.coarse_classes, splits })
}

fn read_cifar10_meta(path: &Path) -> Result<Variant> {
    let classes = if path.is_file() {
        let bytes = read_file(path)?;
        let pickle = pickle::parse(path, &bytes)?;
        name_list(path, &pickle, "label_names")?
    } else {
        numbered_class_names(CIFAR10_CLASSES)
    };
    Ok(Variant { classes, coarse_classes: None, label_key: "labels", coarse_label_key: None })
}

fn read_cifar100_meta(path: &Path) -> Result<Variant> {
    let bytes = read_file(path)?;
    let pickle = pickle::parse(path, &bytes)?;
    Ok(Variant {
        classes: name_list(path, &pickle, "fine_label_names")?,
        coarse_classes: Some(name_list(path, &pickle, "coarse_label_names")?),
        label_key: "fine_labels",
        coarse_label_key: Some("coarse_labels"),
    })
}

fn name_list(path: &Path, pickle: &Pickle<'_>, key: &str) -> Result<Vec<String>> {
    let value = entry(path, pickle, key)?;
    let names = pickle.text_list(value).map_err(|e| Error::format(path, format!("{key}: {e}")))?;
    if names.is_empty() {
        return Err(Error::format(path, format!("{key}: the list of class names is empty")));
    }
    Ok(names)
}

/// Reads one batch file and appends its images and labels to `split`.
fn read_batch(path: &Path, variant: &Variant, split: &mut SourceSplit) -> Result<()> {
    let bytes = read_file(path)?;
    let pickle = pickle::parse(path, &bytes)?;

    let data = entry(path, &pickle, "data")?;
    let (shape, data) =
        pickle.u8_array(data).map_err(|e| Error::format(path, format!("data: {e}")))?;
    let count = match *shape {
        [rows, columns] if columns == IMAGE_LEN => rows,
        _ => {
            return Err(Error::format(
                path,
                format!("data: array shape {shape:?}, expected (N, {IMAGE_LEN})"),
            ));
        }
    };

    let labels = read_labels(path, &pickle, variant.label_key, count, variant.classes.len())?;
    split.labels.extend(labels);
    if let (Some(key), Some(names), Some(coarse_labels)) =
        (variant.coarse_label_key, &variant.coarse_classes, &mut split.coarse_labels)
    {
        coarse_labels.extend(read_labels(path, &pickle, key, count, names.len())?);
    }

    let start = split.pixels.len();
    split.pixels.resize(start + data.len(), 0);
    let images = split.pixels[start..].chunks_exact_mut(IMAGE_LEN);
    for (image, planar) in images.zip(data.chunks_exact(IMAGE_LEN)) {
        planar_to_hwc(planar, image);
    }
    Ok(())
}

/// Reads the label list `key`, which must have `count` items, each below `class_count`.
fn read_labels(
    path: &Path,
    pickle: &Pickle<'_>,
    key: &str,
    count: usize,
    class_count: usize,
) -> Result<Vec<u32>> {
    let value = entry(path, pickle, key)?;
    let numbers = pickle.int_list(value).map_err(|e| Error::format(path, format!("{key}: {e}")))?;
    if numbers.len() != count {
        return Err(Error::format(
            path,
            format!("{key}: {} labels for {count} images in data", numbers.len()),
        ));
    }

    let mut labels = Vec::with_capacity(count);
    for (record, &number) in numbers.iter().enumerate() {
        match u32::try_from(number) {
            Ok(label) if (label as usize) < class_count => labels.push(label),
            _ => {
                let message = format!(
                    "{key}: record {record}: label {number} is out of range for {class_count} \
                     classes"
                );
                return Err(Error::format(path, message));
            }
        }
    }
    Ok(labels)
}

/// Looks up `key` in the pickle's top-level dict. A missing key gives an error that lists the
/// keys found.
fn entry<'a>(path: &Path, pickle: &Pickle<'a>, key: &str) -> Result<Value<'a>> {
    let root = pickle.root();
    match pickle.dict_get(root, key) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(Error::format(
            path,
            format!("missing key {key:?} (keys found: {})", pickle.dict_keys(root).join(", ")),
        )),
        Err(e) => Err(Error::format(path, format!("top-level value: {e}"))),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > MAX_FILE_BYTES {
        return Err(Error::format(
            path,
            format!("size {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit"),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(PathBuf::from(path), e))
}
