//! Atomic file replacement: write `<name>.tmp-<pid>`, sync it, rename it over `<name>`, sync the
//! folder. A reader sees either the old file or the complete new one, never a partial file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The marker between a file name and the writer's process id in a temporary file name.
const TMP_MARKER: &str = ".tmp-";

/// Returns the temporary path this process writes before renaming it to `dir/name`.
pub(crate) fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{TMP_MARKER}{}", std::process::id()))
}

/// Returns whether `name` has the form `<name>.tmp-<digits>` that [`tmp_path`] produces.
pub(crate) fn is_tmp_name(name: &str) -> bool {
    match name.rfind(TMP_MARKER) {
        Some(at) => {
            let pid = &name[at + TMP_MARKER.len()..];
            at > 0 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Removes temporary files that a killed writer left in `dir`, and returns how many it removed.
///
/// Any `<name>.tmp-<pid>` file counts, whatever the pid, so two writers must not share an
/// output folder at the same time.
pub(crate) fn remove_leftover_tmp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|source| Error::io(dir, source))?;

    for entry in entries {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        let name = entry.file_name();
        let is_tmp = name.to_str().is_some_and(is_tmp_name);
        let is_file =
            entry.file_type().map_err(|source| Error::io(entry.path(), source))?.is_file();

        if is_tmp && is_file {
            log::info!("removing leftover temporary file {}", entry.path().display());
            fs::remove_file(entry.path()).map_err(|source| Error::io(entry.path(), source))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Flushes `file` to disk and renames `tmp` to `target`.
pub(crate) fn commit_file(file: &File, tmp: &Path, target: &Path) -> Result<()> {
    file.sync_all().map_err(|source| Error::io(tmp, source))?;
    fs::rename(tmp, target).map_err(|source| Error::io(target, source))
}

/// Writes `bytes` to `dir/name` atomically: temporary file, sync, rename, folder sync.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(dir, name);
    let mut file = File::create(&tmp).map_err(|source| Error::io(&tmp, source))?;

    file.write_all(bytes).map_err(|source| Error::io(&tmp, source))?;
    commit_file(&file, &tmp, &dir.join(name))?;
    sync_dir(dir)
}

/// Flushes the folder entry table of `dir`, so that renames into it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let handle = File::open(dir).map_err(|source| Error::io(dir, source))?;
        handle.sync_all().map_err(|source| Error::io(dir, source))?;
    }

    // NOTE: other platforms cannot open a folder as a file, so a crash right after a rename
    // may lose the rename there.
    #[cfg(not(unix))]
    let _ = dir;

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_are_recognised() {
        assert!(is_tmp_name("train-00000.shard.tmp-1234"));
        assert!(is_tmp_name("manifest.json.tmp-1"));
        assert!(!is_tmp_name("train-00000.shard"));
        assert!(!is_tmp_name("notes.tmp-"));
        assert!(!is_tmp_name(".tmp-12"));
        assert!(!is_tmp_name("data.tmp-12a"));
    }

    #[test]
    fn tmp_path_carries_pid() {
        let path = tmp_path(Path::new("/out"), "manifest.json");
        let name = path.file_name().unwrap().to_str().unwrap();

        assert_eq!(name, format!("manifest.json.tmp-{}", std::process::id()));
        assert!(is_tmp_name(name));
    }

    #[test]
    fn leftovers_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("train-00000.shard.tmp-99999"), b"partial").unwrap();
        fs::write(dir.path().join("manifest.json.tmp-7"), b"{").unwrap();
        fs::write(dir.path().join("keep.txt"), b"user file").unwrap();

        let removed = remove_leftover_tmp_files(dir.path()).unwrap();

        assert_eq!(removed, 2);
        assert!(!dir.path().join("train-00000.shard.tmp-99999").exists());
        assert!(!dir.path().join("manifest.json.tmp-7").exists());
        assert!(dir.path().join("keep.txt").exists());
    }

    #[test]
    fn atomic_write_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();

        write_file_atomically(dir.path(), "manifest.json", b"{}\n").unwrap();

        assert_eq!(fs::read(dir.path().join("manifest.json")).unwrap(), b"{}\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
