//! MNIST-style IDX files: one images file and one labels file per split.
//!
//! An IDX file is a big-endian header followed by the data in row-major order. The header is
//! the magic number `[0, 0, type, dimension count]` and then one u32 size per dimension. Only
//! type 0x08 (unsigned byte) is read: images have 3 dimensions (count, rows, columns), magic
//! 0x00000803, and labels have 1 (count), magic 0x00000801. A file may be gzip-compressed,
//! which is recognised by its first two bytes (1f 8b), not by its name.
//!
//! Class names come from `classes.txt` in the folder (one per line) when it exists, otherwise
//! they are "0" up to the largest label read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::{
    missing_file, numbered_class_names, read_name_list, splits_to_read, SourceKind, SourceSet,
    SourceSplit, SplitName, MAX_FILE_BYTES,
};
use crate::error::{Error, Result};

/// The IDX type byte of unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// File-name prefixes of each split, in the order they are tried.
fn prefixes(split: SplitName) -> &'static [&'static str] {
    match split {
        SplitName::Train => &["train"],
        SplitName::Test => &["t10k", "test"],
    }
}

/// The two files of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Images,
    Labels,
}

impl Part {
    fn stem(self) -> &'static str {
        match self {
            Part::Images => "images",
            Part::Labels => "labels",
        }
    }

    fn dimensions(self) -> u8 {
        match self {
            Part::Images => 3,
            Part::Labels => 1,
        }
    }
}

/// Returns the path of a split's images or labels file, trying `{prefix}-images-idx3-ubyte`
/// and `{prefix}-images.idx3-ubyte`, each without and with `.gz`.
fn find_file(folder: &Path, split: SplitName, part: Part) -> Option<PathBuf> {
    let (stem, dims) = (part.stem(), part.dimensions());
    for prefix in prefixes(split) {
        for separator in ['-', '.'] {
            for suffix in ["", ".gz"] {
                let path =
                    folder.join(format!("{prefix}-{stem}{separator}idx{dims}-ubyte{suffix}"));
                if path.is_file() {
                    return Some(path);
                }
            }
        }
    }
    None
}

/// Returns whether `folder` contains an IDX images file of any split.
pub(super) fn is_present(folder: &Path) -> bool {
    SplitName::ALL.into_iter().any(|split| find_file(folder, split, Part::Images).is_some())
}

/// Reads the selected IDX splits from `folder`.
pub(super) fn read(folder: &Path, selection: Option<SplitName>) -> Result<SourceSet> {
    let is_present = |split| {
        find_file(folder, split, Part::Images).is_some()
            || find_file(folder, split, Part::Labels).is_some()
    };
    let names = splits_to_read(folder, SourceKind::Idx, selection, is_present)?;

    let mut splits = Vec::with_capacity(names.len());
    for name in names {
        splits.push(read_split(folder, name)?);
    }

    let classes_path = folder.join("classes.txt");
    let classes = if classes_path.is_file() {
        let classes = read_name_list(&classes_path)?;
        for split in &splits {
            check_labels_below(split, classes.len(), &classes_path)?;
        }
        classes
    } else {
        let max_label = splits.iter().flat_map(|split| split.labels.iter()).max();
        numbered_class_names(max_label.map_or(0, |&label| label as usize + 1))
    };

    Ok(SourceSet { kind: SourceKind::Idx, classes, coarse_classes: None, splits })
}

fn read_split(folder: &Path, name: SplitName) -> Result<SourceSplit> {
    let find = |part: Part| {
        find_file(folder, name, part).ok_or_else(|| {
            let prefix = prefixes(name)[0];
            let (stem, dims) = (part.stem(), part.dimensions());
            let expected = format!(
                "the IDX {} split needs {prefix}-{stem}-idx{dims}-ubyte, optionally .gz",
                name.as_str()
            );
            missing_file(folder.join(format!("{prefix}-{stem}-idx{dims}-ubyte")), &expected)
        })
    };
    let images_path = find(Part::Images)?;
    let labels_path = find(Part::Labels)?;

    let images = read_idx(&images_path, Part::Images)?;
    let labels = read_idx(&labels_path, Part::Labels)?;

    let (count, rows, columns) = (images.dims[0], images.dims[1], images.dims[2]);
    if count != labels.dims[0] {
        return Err(Error::format(
            &labels_path,
            format!(
                "label count {} does not match the image count {count} of {}",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    if count == 0 || rows == 0 || columns == 0 {
        return Err(Error::format(
            &images_path,
            format!("no pixels: the header declares {count} images of {rows}x{columns}"),
        ));
    }

    Ok(SourceSplit {
        name: name.as_str().to_owned(),
        height: rows,
        width: columns,
        channels: 1,
        pixels: images.data,
        labels: labels.data.into_iter().map(u32::from).collect(),
        coarse_labels: None,
        files: vec![images_path, labels_path],
    })
}

fn check_labels_below(split: &SourceSplit, class_count: usize, classes_path: &Path) -> Result<()> {
    let Some(record) = split.labels.iter().position(|&label| label as usize >= class_count) else {
        return Ok(());
    };

    // `files[1]` is the labels file, see `read_split`.
    Err(Error::format(
        &split.files[1],
        format!(
            "record {record}: label {} is out of range for the {class_count} classes in {}",
            split.labels[record],
            classes_path.display()
        ),
    ))
}

/// An IDX file's sizes and data.
#[derive(Debug)]
struct IdxArray {
    dims: Vec<u32>,
    data: Vec<u8>,
}

/// Reads one unsigned-byte IDX file with the dimension count of `part`, plain or gzip.
fn read_idx(path: &Path, part: Part) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);

    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        let mut decoder = MultiGzDecoder::new(reader);
        read_idx_stream(path, part, &mut decoder, None).map_err(|e| gzip_context(path, e))
    } else {
        read_idx_stream(path, part, &mut reader, Some(file_len))
    }
}

/// Parses the header and data from `reader`.
///
/// `file_len` is the byte length of an uncompressed file, which is compared with the header
/// before the data buffer is allocated. A gzip stream has no known length, so its data is read
/// into a buffer that only grows as bytes arrive, and then compared.
fn read_idx_stream(
    path: &Path,
    part: Part,
    reader: &mut impl Read,
    file_len: Option<u64>,
) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    read_header_bytes(path, reader, &mut magic, 0)?;

    let expected_magic = u32::from(TYPE_U8) << 8 | u32::from(part.dimensions());
    let found_magic = u32::from_be_bytes(magic);
    if found_magic != expected_magic {
        return Err(Error::format(
            path,
            format!(
                "invalid magic number 0x{found_magic:08x}, expected 0x{expected_magic:08x} \
                 (unsigned bytes, {} dimensions, for {})",
                part.dimensions(),
                part.stem()
            ),
        ));
    }

    let mut dims = Vec::with_capacity(usize::from(part.dimensions()));
    for index in 0..usize::from(part.dimensions()) {
        let mut size = [0u8; 4];
        read_header_bytes(path, reader, &mut size, 4 + 4 * index)?;
        dims.push(u32::from_be_bytes(size));
    }
    let header_len = 4 + 4 * dims.len() as u64;

    let data_len =
        dims.iter().try_fold(1u64, |product, &size| product.checked_mul(u64::from(size)));
    let data_len = match data_len {
        Some(len) if len <= MAX_FILE_BYTES => len,
        _ => {
            return Err(Error::format(
                path,
                format!(
                    "header sizes {} give more than the {MAX_FILE_BYTES}-byte limit",
                    dims_text(&dims)
                ),
            ));
        }
    };

    let data = match file_len {
        Some(file_len) => {
            let actual = file_len.saturating_sub(header_len);
            if actual != data_len {
                return Err(Error::format(
                    path,
                    format!(
                        "header sizes {} give {data_len} data bytes, but the file has {actual} \
                         after the {header_len}-byte header",
                        dims_text(&dims)
                    ),
                ));
            }
            // Checked above: `data_len` equals the bytes on disk and is at most MAX_FILE_BYTES.
            let mut data = vec![0u8; data_len as usize];
            reader.read_exact(&mut data).map_err(|e| Error::io(path, e))?;
            data
        }
        None => {
            let mut data = Vec::new();
            reader.take(data_len + 1).read_to_end(&mut data).map_err(|e| Error::io(path, e))?;
            if data.len() as u64 != data_len {
                let found = if data.len() as u64 > data_len {
                    "more".to_owned()
                } else {
                    data.len().to_string()
                };
                return Err(Error::format(
                    path,
                    format!(
                        "header sizes {} give {data_len} data bytes, but the decompressed file \
                         has {found} after the {header_len}-byte header",
                        dims_text(&dims)
                    ),
                ));
            }
            data
        }
    };

    Ok(IdxArray { dims, data })
}

/// Fills `buffer` from the header, reporting a short file with the byte offset it ends at.
fn read_header_bytes(
    path: &Path,
    reader: &mut impl Read,
    buffer: &mut [u8],
    offset: usize,
) -> Result<()> {
    reader.read_exact(buffer).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(
                path,
                format!("file ends inside the header, before byte {}", offset + buffer.len()),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// Marks errors from a gzip stream, whose corruption surfaces as I/O errors, as format errors.
fn gzip_context(path: &Path, error: Error) -> Error {
    match error {
        Error::Io { source, .. } => {
            Error::format(path, format!("invalid or truncated gzip stream: {source}"))
        }
        other => other,
    }
}

fn dims_text(dims: &[u32]) -> String {
    let parts: Vec<String> = dims.iter().map(u32::to_string).collect();
    parts.join(" x ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::fixtures::{gzip, idx_file};

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn read_idx_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 5).collect();
        let plain = idx_file(0x0803, &[2, 3, 5], &data);

        for (name, bytes) in [("plain", plain.clone()), ("packed", gzip(&plain))] {
            let path = write(dir.path(), name, &bytes);

            let array = read_idx(&path, Part::Images).unwrap();

            assert_eq!(array.dims, [2, 3, 5], "{name}");
            assert_eq!(array.data, data, "{name}");
        }
    }

    #[test]
    fn read_idx_rejects_other_types() {
        let dir = tempfile::tempdir().unwrap();
        // 0x0d is the IDX type byte of f32.
        let path = write(dir.path(), "floats", &idx_file(0x0d03, &[1, 1, 1], &[0; 4]));

        let message = read_idx(&path, Part::Images).unwrap_err().to_string();

        assert!(message.contains("floats"), "{message}");
        assert!(message.contains("0x00000d03"), "{message}");
        assert!(message.contains("expected 0x00000803"), "{message}");
    }

    #[test]
    fn read_idx_rejects_labels_magic_for_images() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "labels", &idx_file(0x0801, &[3], &[1, 2, 3]));

        let message = read_idx(&path, Part::Images).unwrap_err().to_string();

        assert!(message.contains("0x00000801"), "{message}");
    }

    #[test]
    fn read_idx_huge_header_rejected_before_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_file(0x0803, &[u32::MAX, u32::MAX, u32::MAX], &[]);

        for (name, bytes) in [("plain", bytes.clone()), ("packed", gzip(&bytes))] {
            let path = write(dir.path(), name, &bytes);

            let message = read_idx(&path, Part::Images).unwrap_err().to_string();

            assert!(message.contains("4294967295 x 4294967295"), "{message}");
            assert!(message.contains("limit"), "{message}");
        }
    }

    #[test]
    fn read_idx_size_mismatch_names_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        // The header declares 2 * 3 * 5 = 30 bytes; 29 follow.
        let bytes = idx_file(0x0803, &[2, 3, 5], &[7; 29]);
        let path = write(dir.path(), "short", &bytes);

        let message = read_idx(&path, Part::Images).unwrap_err().to_string();

        assert!(message.contains("30 data bytes"), "{message}");
        assert!(message.contains("has 29"), "{message}");
    }

    #[test]
    fn read_idx_trailing_bytes_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_file(0x0801, &[3], &[1, 2, 3, 4]);

        for (name, bytes) in [("plain", bytes.clone()), ("packed", gzip(&bytes))] {
            let path = write(dir.path(), name, &bytes);

            let message = read_idx(&path, Part::Labels).unwrap_err().to_string();

            assert!(message.contains("3 data bytes"), "{name}: {message}");
        }
    }

    #[test]
    fn read_idx_truncated_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 5).collect();
        let full = idx_file(0x0803, &[2, 3, 5], &data);
        let packed = gzip(&full);

        for cut in [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, full.len() - 1] {
            let path = write(dir.path(), "cut", &full[..cut]);
            assert!(read_idx(&path, Part::Images).is_err(), "plain cut at {cut}");
        }
        for cut in [2, 10, packed.len() / 2, packed.len() - 9, packed.len() - 1] {
            let path = write(dir.path(), "cut.gz", &packed[..cut]);
            assert!(read_idx(&path, Part::Images).is_err(), "gzip cut at {cut}");
        }
    }

    #[test]
    fn read_idx_header_cut_names_offset() {
        let dir = tempfile::tempdir().unwrap();
        let full = idx_file(0x0803, &[2, 3, 5], &[0; 30]);
        let path = write(dir.path(), "cut", &full[..6]);

        let message = read_idx(&path, Part::Images).unwrap_err().to_string();

        assert!(message.contains("before byte 8"), "{message}");
    }
}
