//! Full verification of a shard set: every checksum, size and count, and the content hashes.

use std::path::Path;

use crate::error::{Error, Result};
use crate::shard::limits::Limits;
use crate::shard::manifest::{Manifest, MANIFEST_FILE};
use crate::shard::reader::ShardReader;
use crate::shard::set::{check_shard_against_manifest, check_shard_name, check_split_entry};

/// The totals of a shard set that passed [`verify_shard_set`], split by split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// One entry per split, in manifest order.
    pub splits: Vec<SplitReport>,
}

/// The verified totals of one split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitReport {
    /// The split name.
    pub name: String,
    /// Number of shard files.
    pub shards: usize,
    /// Number of records, each with a matching checksum.
    pub records: u64,
    /// Total size of the shard files in bytes.
    pub bytes: u64,
    /// The BLAKE3 content hash, computed and equal to the manifest's (64 hex digits).
    pub content_hash: String,
}

impl VerifyReport {
    /// Returns the number of records over all splits.
    pub fn records(&self) -> u64 {
        self.splits.iter().map(|split| split.records).sum()
    }

    /// Returns the size of all shard files in bytes.
    pub fn bytes(&self) -> u64 {
        self.splits.iter().map(|split| split.bytes).sum()
    }
}

/// Verifies the shard set in `dir` with [`Limits::default`].
///
/// # Errors
///
/// As [`verify_shard_set_with_limits`].
pub fn verify_shard_set(dir: &Path) -> Result<VerifyReport> {
    verify_shard_set_with_limits(dir, &Limits::default())
}

/// Verifies the shard set in `dir`: everything [`crate::shard::ShardSet::open`] checks, plus
/// every record as [`ShardReader::checked_record`] checks it (checksum, UTF-8 source path,
/// `FF D8` start of a JPEG payload) and each split's content hash. Works for both layouts.
///
/// Splits and shards are checked in manifest order and the first failure is returned, so the
/// result does not depend on the thread count. Within a shard, record checksums are computed
/// in parallel on the current rayon pool while the file is hashed.
///
/// # Errors
///
/// The first failure found. A bad record gives [`Error::Corrupt`] naming the shard file, the
/// record index within it, its byte offset and the stored and computed checksums, for
/// example `train-00003.shard: record 1842 at byte 9437184: checksum mismatch: stored
/// 0x1a2b3c4d, computed 0x5e6f7a8b`. A changed label or record metadata (shape, path length,
/// encoding, flags) also gives the record when its record checksum no longer matches, followed
/// by the header checksum mismatch. A path or JPEG start the format does not allow gives
/// [`Error::Format`] naming the record. Structural errors are those of [`ShardReader::open`];
/// a content hash mismatch names `manifest.json` and the split.
pub fn verify_shard_set_with_limits(dir: &Path, limits: &Limits) -> Result<VerifyReport> {
    let manifest = Manifest::read(dir, limits)?;
    let mut report = VerifyReport { splits: Vec::with_capacity(manifest.splits.len()) };

    for (position, split) in manifest.splits.iter().enumerate() {
        check_split_entry(dir, &manifest, position)?;
        let mut hasher = blake3::Hasher::new();
        let mut records = 0u64;
        let mut bytes = 0u64;

        for (number, entry) in split.shards.iter().enumerate() {
            check_shard_name(dir, split, number)?;
            let path = dir.join(&entry.file);
            let (reader, header_checksum) = ShardReader::open_unverified(&path, limits)?;

            let hash_file = || {
                hasher.update(reader.bytes());
            };
            let (bad_record, ()) = rayon::join(|| reader.first_bad_record(), hash_file);

            if let Some(bad) = bad_record {
                let suffix = if header_checksum.matches() {
                    String::new()
                } else {
                    format!("; {}", header_checksum.mismatch_message())
                };
                return Err(bad.into_error(&path, &suffix));
            }
            if !header_checksum.matches() {
                return Err(Error::Corrupt { path, message: header_checksum.mismatch_message() });
            }
            check_shard_against_manifest(&reader, entry, &manifest)?;

            records += reader.len() as u64;
            bytes += reader.file_len();
        }

        let manifest_path = dir.join(MANIFEST_FILE);
        if records != split.records {
            let message = format!(
                "split \"{}\" lists {} records, but its shards hold {records}",
                split.name, split.records
            );
            return Err(Error::format(manifest_path, message));
        }
        let computed = hasher.finalize().to_hex().to_string();
        if computed != split.content_hash {
            let message = format!(
                "split \"{}\": content hash mismatch: stored {}, computed {computed}",
                split.name, split.content_hash
            );
            return Err(Error::Corrupt { path: manifest_path, message });
        }

        report.splits.push(SplitReport {
            name: split.name.clone(),
            shards: split.shards.len(),
            records,
            bytes,
            content_hash: computed,
        });
    }
    Ok(report)
}
