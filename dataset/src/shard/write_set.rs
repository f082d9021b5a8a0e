//! Writing a whole shard set: input checks, cutting splits into shards, statistics, content
//! hashes and the manifest, all written atomically and deterministically.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::Path;

use crate::error::{Error, Result};
use crate::shard::atomic::{remove_leftover_tmp_files, sync_dir, write_file_atomically};
use crate::shard::layout::{HEADER_LEN, INDEX_ENTRY_LEN};
use crate::shard::limits::Limits;
use crate::shard::manifest::{
    is_valid_split_name, shard_file_name, Manifest, SplitManifest, MANIFEST_FILE, MANIFEST_FORMAT,
    MANIFEST_VERSION,
};
use crate::shard::schema::SampleSchema;
use crate::shard::stats::{channel_stats, class_counts};
use crate::shard::writer::{check_schema, ShardWriter};
use crate::source::SourceSet;

/// Settings of [`write_shard_set`] and [`write_record_set`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Maximum shard file size in bytes, header and index included. A split is cut into as
    /// many shards as this requires, and each shard has at least one record even if that
    /// exceeds it.
    /// Default 256 MiB.
    pub shard_size_bytes: u64,
    /// Whether to replace a shard set already in the output folder. Default `false`.
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { shard_size_bytes: 256 << 20, overwrite: false }
    }
}

/// A dataset to write, borrowed: class names and splits of records.
#[derive(Clone, Debug)]
pub struct RecordSet<'a> {
    /// The kind of source the records come from, stored in the manifest (`"idx"`, ...).
    pub source_kind: &'a str,
    /// Class names; every label must be below its length.
    pub classes: &'a [String],
    /// Coarse class names; present exactly when every split has coarse labels.
    pub coarse_classes: Option<&'a [String]>,
    /// The splits in manifest order. Names must be unique and all schemas equal.
    pub splits: Vec<RecordSplit<'a>>,
}

/// One split to write: fixed-layout records back to back with their labels. Records are
/// written with empty source paths, no flags and the schema's shape.
#[derive(Clone, Debug)]
pub struct RecordSplit<'a> {
    /// The split name: 1 to 64 ASCII letters, digits, `_` or `-`.
    pub name: &'a str,
    /// The shape and storage of every record; a fixed layout ([`SampleSchema::raw_u8`]).
    pub schema: SampleSchema,
    /// The records back to back, `schema.record_len()` bytes each (u8 HWC for raw records).
    pub pixels: &'a [u8],
    /// The label of each record.
    pub labels: &'a [u32],
    /// The coarse label of each record, when the set has coarse classes.
    pub coarse_labels: Option<&'a [u32]>,
}

/// Writes `source` as a shard set in `out_dir` and returns its manifest.
///
/// The source kind goes into the manifest as [`crate::source::SourceKind::name`]. Everything
/// else is as for [`write_record_set`].
///
/// # Errors
///
/// As [`write_record_set`].
pub fn write_shard_set(
    source: &SourceSet,
    out_dir: &Path,
    opts: &WriteOptions,
) -> Result<Manifest> {
    let splits = source
        .splits
        .iter()
        .map(|split| RecordSplit {
            name: &split.name,
            schema: SampleSchema::raw_u8(split.height, split.width, split.channels),
            pixels: &split.pixels,
            labels: &split.labels,
            coarse_labels: split.coarse_labels.as_deref(),
        })
        .collect();
    let records = RecordSet {
        source_kind: source.kind.name(),
        classes: &source.classes,
        coarse_classes: source.coarse_classes.as_deref(),
        splits,
    };

    write_record_set(&records, out_dir, opts)
}

/// Writes `set` as a shard set in `out_dir` (created if missing) and returns its manifest.
///
/// Each split becomes `<split>-00000.shard`, `<split>-00001.shard`, ... of at most
/// `opts.shard_size_bytes`, then `manifest.json` is written last. Every file is written to a
/// temporary name, synced and renamed, and the folder is synced after the renames. Temporary
/// files a killed run left behind are removed first. After the new manifest is in place, shard
/// files named like this set's (`<name>-<digits>.shard`) that it does not list are removed.
/// The output depends only on `set` and `opts.shard_size_bytes`: the same input gives the
/// same bytes, whatever the thread count.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when the input is inconsistent (sizes, labels, names, schemas),
/// [`Error::Io`] with kind `AlreadyExists` when `out_dir` has a manifest and
/// `opts.overwrite` is false, and [`Error::Io`] for any failed file operation.
pub fn write_record_set(
    set: &RecordSet<'_>,
    out_dir: &Path,
    opts: &WriteOptions,
) -> Result<Manifest> {
    let sample = check_record_set(set)?;

    fs::create_dir_all(out_dir).map_err(|source| Error::io(out_dir, source))?;
    let manifest_path = out_dir.join(MANIFEST_FILE);
    if manifest_path.exists() {
        if !opts.overwrite {
            let error = std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a shard set already exists here; enable overwrite to replace it",
            );
            return Err(Error::io(manifest_path, error));
        }

        // Without its manifest the old set is visibly incomplete while shards are replaced.
        fs::remove_file(&manifest_path).map_err(|source| Error::io(&manifest_path, source))?;
        sync_dir(out_dir)?;
    }
    remove_leftover_tmp_files(out_dir)?;

    let labels_per_record = if set.coarse_classes.is_some() { 2 } else { 1 };
    let mut splits = Vec::with_capacity(set.splits.len());
    for split in &set.splits {
        splits.push(write_split(split, set, labels_per_record, out_dir, opts)?);
    }
    sync_dir(out_dir)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        version: MANIFEST_VERSION,
        source_kind: set.source_kind.to_owned(),
        conversion: None,
        classes: set.classes.to_vec(),
        coarse_classes: set.coarse_classes.map(<[String]>::to_vec),
        sample,
        splits,
    };
    write_file_atomically(out_dir, MANIFEST_FILE, &manifest.to_json())?;
    remove_unlisted_shards(out_dir, &manifest)?;

    Ok(manifest)
}

/// Writes the shards of one split and returns its manifest entry.
fn write_split(
    split: &RecordSplit<'_>,
    set: &RecordSet<'_>,
    labels_per_record: u8,
    out_dir: &Path,
    opts: &WriteOptions,
) -> Result<SplitManifest> {
    let record_len = split.schema.record_len().unwrap_or(0) as usize;
    let count = split.labels.len();
    let per_shard = records_per_shard(opts.shard_size_bytes, record_len as u64);

    let mut shards = Vec::new();
    let mut hasher = blake3::Hasher::new();
    for (number, first) in (0..count).step_by(per_shard).enumerate() {
        let end = (first + per_shard).min(count);
        let file_name = shard_file_name(split.name, number);
        let mut writer = ShardWriter::create(
            out_dir,
            &file_name,
            split.schema,
            labels_per_record,
            (end - first) as u64,
        )?;

        for i in first..end {
            let record = &split.pixels[i * record_len..(i + 1) * record_len];
            let coarse = split.coarse_labels.map(|labels| labels[i]);
            writer.push(record, split.labels[i], coarse)?;
        }
        let shard = writer.finish()?;

        // Hashing the renamed file rather than the input makes the hash describe the bytes on disk.
        let path = out_dir.join(&shard.file);
        let file = File::open(&path).map_err(|source| Error::io(&path, source))?;
        hasher.update_reader(file).map_err(|source| Error::io(&path, source))?;
        log::debug!("wrote {} ({} records, {} bytes)", path.display(), shard.records, shard.bytes);
        shards.push(shard);
    }

    let channels = split.schema.channels as usize;
    let stats = channel_stats(split.pixels, channels, record_len);
    let coarse_counts = match (split.coarse_labels, set.coarse_classes) {
        (Some(labels), Some(classes)) => Some(class_counts(labels, classes.len())),
        _ => None,
    };
    log::info!("wrote split {}: {count} records in {} shards", split.name, shards.len());

    Ok(SplitManifest {
        name: split.name.to_owned(),
        records: count as u64,
        shards,
        class_counts: class_counts(split.labels, set.classes.len()),
        coarse_class_counts: coarse_counts,
        channel_mean: stats.mean,
        channel_std: stats.std,
        rgb_covariance: None,
        rgb_eigenvalues: None,
        rgb_eigenvectors: None,
        skipped: None,
        source_bytes: None,
        content_hash: hasher.finalize().to_hex().to_string(),
    })
}

/// Returns how many records of `record_len` bytes fit in a shard of `shard_size_bytes`, at
/// least 1 and at most the reader's default record limit.
fn records_per_shard(shard_size_bytes: u64, record_len: u64) -> usize {
    let per_record = record_len + INDEX_ENTRY_LEN as u64;
    let fit = shard_size_bytes.saturating_sub(HEADER_LEN as u64) / per_record;
    let capped = fit.clamp(1, Limits::default().max_records);

    usize::try_from(capped).unwrap_or(usize::MAX)
}

/// Checks the whole input before any file is touched, and returns the set's sample schema.
fn check_record_set(set: &RecordSet<'_>) -> Result<SampleSchema> {
    let invalid = |message: String| Err(Error::InvalidArgument(message));
    let Some(first) = set.splits.first() else {
        return invalid("a shard set needs at least one split".into());
    };
    let sample = first.schema;
    let mut names = HashSet::new();

    for split in &set.splits {
        let name = split.name;
        if !is_valid_split_name(name) {
            return invalid(format!(
                "split name \"{}\" is invalid: use 1 to 64 ASCII letters, digits, '_' or '-'",
                name.escape_debug()
            ));
        }
        if !names.insert(name) {
            return invalid(format!("split \"{name}\" appears twice"));
        }
        if split.schema != sample {
            return invalid(format!(
                "split \"{name}\" has schema {}, but split \"{}\" has {}; all splits must match",
                split.schema, first.name, sample
            ));
        }

        let Some(record_len) = check_schema(name, &split.schema)? else {
            return invalid(format!(
                "split \"{name}\" has the variable layout {}; write_record_set writes fixed-layout \
                 records, so write variable-layout ones with ShardWriter::push_record",
                split.schema
            ));
        };
        let expected_len = (split.labels.len() as u64).checked_mul(record_len);
        if expected_len != Some(split.pixels.len() as u64) {
            return invalid(format!(
                "split \"{name}\": {} pixel bytes for {} labels, expected {record_len} bytes per \
                 record",
                split.pixels.len(),
                split.labels.len()
            ));
        }
        if split.labels.is_empty() {
            return invalid(format!("split \"{name}\" has no records"));
        }

        check_labels(name, "label", split.labels, set.classes.len())?;
        match (split.coarse_labels, set.coarse_classes) {
            (None, None) => {}
            (Some(coarse), Some(classes)) => {
                if coarse.len() != split.labels.len() {
                    return invalid(format!(
                        "split \"{name}\": {} coarse labels for {} records",
                        coarse.len(),
                        split.labels.len()
                    ));
                }
                check_labels(name, "coarse label", coarse, classes.len())?;
            }
            (Some(_), None) => {
                return invalid(format!(
                    "split \"{name}\" has coarse labels but the set has no coarse classes"
                ))
            }
            (None, Some(_)) => {
                return invalid(format!(
                    "split \"{name}\" lacks the coarse labels the set's coarse classes need"
                ))
            }
        }
    }
    Ok(sample)
}

fn check_labels(split: &str, label_kind: &str, labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().position(|&label| label as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidArgument(format!(
            "split \"{split}\": record {i} has {label_kind} {}, but there are {classes} classes",
            labels[i]
        ))),
    }
}

/// Removes `<split name>-<digits>.shard` files in `dir` that `manifest` does not list, left by
/// an earlier, larger set or by a run that died before its manifest.
fn remove_unlisted_shards(dir: &Path, manifest: &Manifest) -> Result<()> {
    let listed: HashSet<&str> = manifest
        .splits
        .iter()
        .flat_map(|split| &split.shards)
        .map(|shard| shard.file.as_str())
        .collect();
    let entries = fs::read_dir(dir).map_err(|source| Error::io(dir, source))?;

    for entry in entries {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };

        if is_shard_file_name(&name) && !listed.contains(name.as_str()) {
            log::info!(
                "removing shard file {} that the new manifest does not list",
                entry.path().display()
            );
            fs::remove_file(entry.path()).map_err(|source| Error::io(entry.path(), source))?;
        }
    }
    Ok(())
}

/// Returns whether `name` has the form `<split name>-<5 or more digits>.shard`.
fn is_shard_file_name(name: &str) -> bool {
    shard_file_split(name).is_some()
}

/// Returns the split of a file named `<split>-<5 or more digits>.shard`, or `None` for any
/// other name.
pub(crate) fn shard_file_split(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".shard")?;
    let (split, number) = stem.rsplit_once('-')?;
    let numbered = number.len() >= 5 && number.bytes().all(|b| b.is_ascii_digit());

    (is_valid_split_name(split) && numbered).then_some(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_size_sets_records_per_shard() {
        // 72-byte header plus 40 + 784 bytes per 28x28 record.
        assert_eq!(records_per_shard(72 + 3 * 824, 784), 3);
        assert_eq!(records_per_shard(72 + 3 * 824 - 1, 784), 2);
        assert_eq!(records_per_shard(10, 784), 1);
        assert_eq!(records_per_shard(u64::MAX, 1), 1 << 28);
    }

    #[test]
    fn shard_file_names_are_recognised() {
        assert!(is_shard_file_name("train-00000.shard"));
        assert!(is_shard_file_name("val-a-123456.shard"));
        assert!(!is_shard_file_name("train-0000.shard"));
        assert!(!is_shard_file_name("train-00000.shard.tmp-5"));
        assert!(!is_shard_file_name("notes.shard"));
    }

    #[test]
    fn default_options() {
        let opts = WriteOptions::default();

        assert_eq!(opts.shard_size_bytes, 268_435_456);
        assert!(!opts.overwrite);
    }
}
