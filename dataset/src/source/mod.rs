//! Readers for the formats image datasets are published in, into memory.
//!
//! [`read_source`] takes a folder, recognises the format from the file names in it (see
//! [`detect`]) and returns a [`SourceSet`]: class names plus one [`SourceSplit`] per split, with
//! every image converted to u8 HWC order (height, width, channel, channels interleaved).
//!
//! The files each kind reads from the folder:
//! - [`SourceKind::Idx`]: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte` and the same
//!   with `t10k-` or `test-`, each plain or gzip, and an optional `classes.txt`;
//! - [`SourceKind::Cifar10Binary`]: `data_batch_1.bin` to `data_batch_5.bin`, `test_batch.bin`
//!   and an optional `batches.meta.txt`;
//! - [`SourceKind::Cifar100Binary`]: `train.bin`, `test.bin` and optional
//!   `fine_label_names.txt` and `coarse_label_names.txt`;
//! - [`SourceKind::Cifar10Python`]: `data_batch_1` to `data_batch_5`, `test_batch` and an
//!   optional `batches.meta`;
//! - [`SourceKind::Cifar100Python`]: `train`, `test` and `meta`.
//!
//! A CIFAR folder may also be given through its parent, the folder that contains
//! `cifar-10-batches-bin`, `cifar-100-binary`, `cifar-10-batches-py` or `cifar-100-python`.
//! Sizes read from a file are checked against the file length or a cap before they are used, so
//! corrupt input gives an error, not a panic or a huge allocation.
//!
//! Photo collections are not read into memory: [`list_class_folders`], [`list_with_labels`] and
//! [`list_file`] list their files and labels for a converter to read one by one.

mod cifar_binary;
mod cifar_layout;
mod cifar_python;
mod detect;
mod idx;
mod images;
mod pickle;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use detect::detect;
pub use images::{list_class_folders, list_file, list_with_labels, ImageItem, ImageList};

/// Largest single source file, CIFAR binary split or decompressed IDX payload that a reader loads
/// into memory: 16 GiB, about a hundred times the largest official file (CIFAR-100 python `train`,
/// 155 MB). On targets whose `isize::MAX` is smaller, that is the limit, so that every length
/// checked against this one fits in `usize`.
pub(crate) const MAX_FILE_BYTES: u64 = {
    let limit = 1u64 << 34;
    let address_space = isize::MAX as u64;
    if limit < address_space {
        limit
    } else {
        address_space
    }
};

/// Largest class-name list file that is read (`classes.txt`, `batches.meta.txt`, ...).
const MAX_NAME_LIST_BYTES: u64 = 1 << 20;

/// The published formats that [`read_source`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// MNIST-style IDX files: one images file and one labels file per split, plain or gzip.
    Idx,
    /// CIFAR-10 binary version: records of 1 label byte and 3072 planar pixel bytes.
    Cifar10Binary,
    /// CIFAR-100 binary version: records of a coarse and a fine label byte and 3072 pixel bytes.
    Cifar100Binary,
    /// CIFAR-10 python version: pickled dicts holding a numpy uint8 array and a label list.
    Cifar10Python,
    /// CIFAR-100 python version: pickled dicts with fine and coarse label lists.
    Cifar100Python,
}

impl SourceKind {
    /// Every kind, in the order [`detect`] checks them.
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Idx,
        SourceKind::Cifar10Binary,
        SourceKind::Cifar100Binary,
        SourceKind::Cifar10Python,
        SourceKind::Cifar100Python,
    ];

    /// Returns the short lower-case name used in logs and messages, such as `cifar10-binary`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Idx => "idx",
            SourceKind::Cifar10Binary => "cifar10-binary",
            SourceKind::Cifar100Binary => "cifar100-binary",
            SourceKind::Cifar10Python => "cifar10-python",
            SourceKind::Cifar100Python => "cifar100-python",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dataset read into memory: class names and its splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSet {
    /// The format the files were in.
    pub kind: SourceKind,
    /// Class names, indexed by label (the fine label for CIFAR-100).
    pub classes: Vec<String>,
    /// CIFAR-100 coarse class names, indexed by coarse label, or `None` for other kinds.
    pub coarse_classes: Option<Vec<String>>,
    /// The splits read: "train" first, then "test", each only if present or requested.
    pub splits: Vec<SourceSplit>,
}

impl SourceSet {
    /// Returns the split called `name`, if it was read.
    pub fn split(&self, name: &str) -> Option<&SourceSplit> {
        self.splits.iter().find(|split| split.name == name)
    }
}

/// One split of a dataset: equally sized u8 images with their labels.
///
/// Invariants: `pixels.len() == labels.len() * height * width * channels`, every label is below
/// the class count of the [`SourceSet`], and `coarse_labels` has the length of `labels` when
/// present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSplit {
    /// "train" or "test".
    pub name: String,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Channels per pixel: 1 for IDX, 3 (red, green, blue) for CIFAR.
    pub channels: u32,
    /// The images back to back, each in HWC order: row by row, pixel by pixel, channel by channel.
    pub pixels: Vec<u8>,
    /// The label of each image (the fine label for CIFAR-100).
    pub labels: Vec<u32>,
    /// The CIFAR-100 coarse label of each image, or `None` for other kinds.
    pub coarse_labels: Option<Vec<u32>>,
    /// The source files read, in the order their records appear in `pixels`.
    pub files: Vec<PathBuf>,
}

impl SourceSplit {
    /// Returns the number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns whether the split has no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Returns the byte length of one image: height * width * channels.
    pub fn image_len(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }

    /// Returns the HWC bytes of image `index`.
    ///
    /// # Panics
    ///
    /// Panics if `index >= self.len()`.
    pub fn image(&self, index: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[index * len..(index + 1) * len]
    }
}

/// Reads the dataset in the folder `path`, detecting its kind from the file names present.
///
/// `split` restricts the result to "train" or "test"; the files of a requested split must exist.
/// With `None`, every split whose files are present is read, train first.
///
/// # Errors
///
/// Returns [`Error::InvalidArgument`] for a split name other than "train" or "test", and
/// [`Error::UnknownSource`] when the folder contains no known dataset (see [`detect`]).
/// Returns [`Error::Io`] for a missing or unreadable file. Returns [`Error::Format`] for a file
/// that does not match its format, with the file, the place and the values in the message.
pub fn read_source(path: &Path, split: Option<&str>) -> Result<SourceSet> {
    let selection = parse_split(split)?;
    let (kind, folder) = detect::locate(path)?;
    log::info!("reading {} dataset from {}", kind, folder.display());

    let set = match kind {
        SourceKind::Idx => idx::read(&folder, selection)?,
        SourceKind::Cifar10Binary | SourceKind::Cifar100Binary => {
            cifar_binary::read(&folder, kind, selection)?
        }
        SourceKind::Cifar10Python | SourceKind::Cifar100Python => {
            cifar_python::read(&folder, kind, selection)?
        }
    };

    for split in &set.splits {
        log::info!(
            "read {} split: {} images of {}x{}x{} from {} files",
            split.name,
            split.len(),
            split.height,
            split.width,
            split.channels,
            split.files.len()
        );
    }
    Ok(set)
}

/// A split of the published datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitName {
    Train,
    Test,
}

impl SplitName {
    const ALL: [SplitName; 2] = [SplitName::Train, SplitName::Test];

    fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Test => "test",
        }
    }
}

fn parse_split(split: Option<&str>) -> Result<Option<SplitName>> {
    let Some(name) = split else {
        return Ok(None);
    };

    match SplitName::ALL.into_iter().find(|candidate| candidate.as_str() == name) {
        Some(found) => Ok(Some(found)),
        None => Err(Error::InvalidArgument(format!(
            "unknown split {name:?}, expected \"train\" or \"test\""
        ))),
    }
}

/// Picks the splits to read: the requested one, or else every split that `is_present` reports.
///
/// Returns an [`Error::UnknownSource`] for `folder` when nothing was requested and no split is
/// present.
fn splits_to_read(
    folder: &Path,
    kind: SourceKind,
    selection: Option<SplitName>,
    is_present: impl Fn(SplitName) -> bool,
) -> Result<Vec<SplitName>> {
    if let Some(requested) = selection {
        return Ok(vec![requested]);
    }

    let present: Vec<SplitName> = SplitName::ALL.into_iter().filter(|&s| is_present(s)).collect();
    if present.is_empty() {
        return Err(Error::UnknownSource {
            path: folder.to_path_buf(),
            message: format!("no train or test files of a {kind} dataset found"),
        });
    }
    Ok(present)
}

/// Builds the error for a file that a split needs and the folder lacks.
fn missing_file(path: PathBuf, expected: &str) -> Error {
    let message = format!("file not found ({expected})");
    Error::io(path, io::Error::new(io::ErrorKind::NotFound, message))
}

/// Returns "0", "1", ... up to `count - 1`, the class names used when a dataset ships none.
fn numbered_class_names(count: usize) -> Vec<String> {
    (0..count).map(|label| label.to_string()).collect()
}

/// Reads a class-name list: one name per line, surrounding whitespace trimmed, blank lines
/// ignored.
fn read_name_list(path: &Path) -> Result<Vec<String>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > MAX_NAME_LIST_BYTES {
        return Err(Error::format(
            path,
            format!(
                "size {size} bytes exceeds the {MAX_NAME_LIST_BYTES}-byte limit for a name list"
            ),
        ));
    }

    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::format(path, format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()))
    })?;

    let names: Vec<String> =
        text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect();
    if names.is_empty() {
        return Err(Error::format(path, "no class names found (one name per line expected)"));
    }
    Ok(names)
}
