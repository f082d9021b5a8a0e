//! Recognises a dataset folder's format from the names of the files in it.

use std::path::{Path, PathBuf};

use super::{cifar_binary, cifar_python, idx, SourceKind};
use crate::error::{Error, Result};

/// Subfolder names that the official CIFAR archives extract to.
const CIFAR_SUBFOLDERS: [(&str, SourceKind); 4] = [
    ("cifar-10-batches-bin", SourceKind::Cifar10Binary),
    ("cifar-100-binary", SourceKind::Cifar100Binary),
    ("cifar-10-batches-py", SourceKind::Cifar10Python),
    ("cifar-100-python", SourceKind::Cifar100Python),
];

/// Detects which kind of dataset the folder `path` holds.
///
/// A folder is of a kind when it contains that kind's marker files (regular files):
/// - idx: `train-images-idx3-ubyte`, `t10k-images-idx3-ubyte` or `test-images-idx3-ubyte`,
///   each also with a `.gz` suffix or spelled `train-images.idx3-ubyte`;
/// - cifar10-binary: `data_batch_1.bin` or `test_batch.bin`;
/// - cifar100-binary: `train.bin` or `test.bin`;
/// - cifar10-python: `data_batch_1` or `test_batch`;
/// - cifar100-python: `meta` together with `train` or `test`.
///
/// When the folder itself contains no markers, the CIFAR archive subfolders `cifar-10-batches-bin`,
/// `cifar-100-binary`, `cifar-10-batches-py` and `cifar-100-python` are checked.
///
/// # Errors
///
/// Returns [`Error::Io`] when `path` cannot be read. Returns [`Error::UnknownSource`] when `path`
/// is not a folder, contains no markers, or contains the markers of more than one kind.
pub fn detect(path: &Path) -> Result<SourceKind> {
    locate(path).map(|(kind, _)| kind)
}

/// Detects the kind of dataset at `path` and returns it with the folder that contains its files.
pub(super) fn locate(path: &Path) -> Result<(SourceKind, PathBuf)> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_dir() {
        return Err(Error::UnknownSource {
            path: path.to_path_buf(),
            message: not_a_folder_message(path),
        });
    }

    let kinds = kinds_in(path);
    match kinds.as_slice() {
        [kind] => return Ok((*kind, path.to_path_buf())),
        [] => {}
        several => {
            return Err(Error::UnknownSource {
                path: path.to_path_buf(),
                message: format!(
                    "ambiguous folder with the files of {}: keep one dataset per folder",
                    kind_list(several)
                ),
            });
        }
    }

    let mut found = Vec::new();
    for (name, kind) in CIFAR_SUBFOLDERS {
        let subfolder = path.join(name);
        if subfolder.is_dir() && kinds_in(&subfolder).contains(&kind) {
            found.push((kind, subfolder));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::UnknownSource {
            path: path.to_path_buf(),
            message: format!("no dataset files found (looked for {})", looked_for()),
        }),
        _ => {
            let names: Vec<String> =
                found.iter().map(|(_, folder)| folder.display().to_string()).collect();
            Err(Error::UnknownSource {
                path: path.to_path_buf(),
                message: format!(
                    "ambiguous folder with the subfolders {}: pass one of them",
                    names.join(" and ")
                ),
            })
        }
    }
}

/// Returns the kinds whose marker files are in `folder`, in [`SourceKind::ALL`] order.
fn kinds_in(folder: &Path) -> Vec<SourceKind> {
    SourceKind::ALL.into_iter().filter(|&kind| has_markers(folder, kind)).collect()
}

fn has_markers(folder: &Path, kind: SourceKind) -> bool {
    match kind {
        SourceKind::Idx => idx::is_present(folder),
        SourceKind::Cifar10Binary | SourceKind::Cifar100Binary => {
            cifar_binary::is_present(folder, kind)
        }
        SourceKind::Cifar10Python | SourceKind::Cifar100Python => {
            cifar_python::is_present(folder, kind)
        }
    }
}

fn looked_for() -> String {
    let mut parts: Vec<String> = SourceKind::ALL
        .into_iter()
        .map(|kind| format!("{} ({kind})", marker_description(kind)))
        .collect();
    let subfolders: Vec<&str> = CIFAR_SUBFOLDERS.iter().map(|(name, _)| *name).collect();
    parts.push(format!("the subfolders {}", subfolders.join(", ")));
    parts.join("; ")
}

fn marker_description(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Idx => "train-images-idx3-ubyte or t10k-images-idx3-ubyte, optionally .gz",
        SourceKind::Cifar10Binary => "data_batch_1.bin or test_batch.bin",
        SourceKind::Cifar100Binary => "train.bin or test.bin",
        SourceKind::Cifar10Python => "data_batch_1 or test_batch",
        SourceKind::Cifar100Python => "meta with train or test",
    }
}

fn kind_list(kinds: &[SourceKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
    names.join(" and ")
}

fn not_a_folder_message(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let is_archive = [".tar.gz", ".tgz", ".tar", ".zip"].iter().any(|ext| name.ends_with(ext));
    if is_archive {
        return "expected a folder, found an archive: extract it and pass the extracted folder"
            .to_owned();
    }
    "expected a folder that contains the dataset files, found a file".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(folder: &Path, name: &str) {
        std::fs::write(folder.join(name), b"x").unwrap();
    }

    #[test]
    fn detect_each_kind_by_markers() {
        let cases: [(&[&str], SourceKind); 7] = [
            (&["train-images-idx3-ubyte.gz"], SourceKind::Idx),
            (&["t10k-images-idx3-ubyte"], SourceKind::Idx),
            (&["test-images.idx3-ubyte"], SourceKind::Idx),
            (&["data_batch_1.bin"], SourceKind::Cifar10Binary),
            (&["test.bin"], SourceKind::Cifar100Binary),
            (&["test_batch"], SourceKind::Cifar10Python),
            (&["meta", "train"], SourceKind::Cifar100Python),
        ];
        for (files, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            for file in files {
                touch(dir.path(), file);
            }
            assert_eq!(detect(dir.path()).unwrap(), expected, "files {files:?}");
        }
    }

    #[test]
    fn detect_cifar_subfolder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-100-binary");
        std::fs::create_dir(&sub).unwrap();
        touch(&sub, "train.bin");

        let (kind, folder) = locate(dir.path()).unwrap();

        assert_eq!(kind, SourceKind::Cifar100Binary);
        assert_eq!(folder, sub);
    }

    #[test]
    fn detect_subfolder_of_wrong_kind_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&sub).unwrap();
        touch(&sub, "train.bin");

        let error = detect(dir.path()).unwrap_err();

        assert!(matches!(error, Error::UnknownSource { .. }), "{error}");
    }

    #[test]
    fn detect_unknown_folder_lists_markers() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "readme.txt");
        // A train/test pair without `meta` must not pass for CIFAR-100 python.
        touch(dir.path(), "train");

        let message = detect(dir.path()).unwrap_err().to_string();

        for expected in ["train-images-idx3-ubyte", "data_batch_1.bin", "meta with train"] {
            assert!(message.contains(expected), "{message}");
        }
        assert!(message.contains("cifar-100-python"), "{message}");
    }

    #[test]
    fn detect_plain_file_rejected() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "data_batch_1.bin");

        let error = detect(&dir.path().join("data_batch_1.bin")).unwrap_err();

        assert!(matches!(error, Error::UnknownSource { .. }), "{error}");
        assert!(error.to_string().contains("expected a folder"), "{error}");
    }

    #[test]
    fn detect_archive_gets_extract_hint() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "cifar-10-binary.tar.gz");

        let error = detect(&dir.path().join("cifar-10-binary.tar.gz")).unwrap_err();

        assert!(error.to_string().contains("extract it"), "{error}");
    }

    #[test]
    fn detect_missing_path_is_io_error() {
        let dir = tempfile::tempdir().unwrap();

        let error = detect(&dir.path().join("absent")).unwrap_err();

        assert!(matches!(error, Error::Io { .. }), "{error}");
    }

    #[test]
    fn detect_two_kinds_is_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "data_batch_1.bin");
        touch(dir.path(), "data_batch_1");

        let message = detect(dir.path()).unwrap_err().to_string();

        assert!(message.contains("cifar10-binary and cifar10-python"), "{message}");
    }

    #[test]
    fn detect_two_subfolders_is_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        for (name, marker) in
            [("cifar-10-batches-bin", "test_batch.bin"), ("cifar-10-batches-py", "test_batch")]
        {
            let sub = dir.path().join(name);
            std::fs::create_dir(&sub).unwrap();
            touch(&sub, marker);
        }

        let message = detect(dir.path()).unwrap_err().to_string();

        assert!(message.contains("pass one of them"), "{message}");
    }

    #[test]
    fn detect_marker_folder_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("meta")).unwrap();
        std::fs::create_dir(dir.path().join("train")).unwrap();

        assert!(detect(dir.path()).is_err());
    }
}
