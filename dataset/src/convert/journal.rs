//! The resume journal of a photo conversion: `<split>.journal.json`, rewritten atomically after
//! every shard, holding what an interrupted run had finished.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::convert::ConvertCounts;
use crate::error::{Error, Result};
use crate::image::RgbSums;
use crate::shard::{ShardFile, ShardReader};

/// Journal format version; a journal of another version is ignored.
const JOURNAL_VERSION: u32 = 1;

/// Largest journal file read back; a bigger one is ignored as damaged.
const MAX_JOURNAL_BYTES: u64 = 1 << 30;

/// The progress of a conversion when the journal was last written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub version: u32,
    /// BLAKE3 of the conversion's inputs and options; a journal resumes only the same job.
    pub fingerprint: String,
    /// The first image whose record is not in `shards`.
    pub next_item: u64,
    /// The finished shard files, in order.
    pub shards: Vec<ShardFile>,
    /// Counts over the images before `next_item`.
    pub counts: ConvertCounts,
    /// Records per class over the finished shards.
    pub class_counts: Vec<u64>,
    /// Pixel sums over the finished shards.
    pub sums: RgbSums,
    /// Skipped images before `next_item`: source path and reason.
    pub skipped: Vec<(String, String)>,
}

impl Journal {
    /// Starts the journal of a conversion with nothing done.
    pub fn new(fingerprint: String, classes: usize) -> Self {
        Journal {
            version: JOURNAL_VERSION,
            fingerprint,
            next_item: 0,
            shards: Vec::new(),
            counts: ConvertCounts::default(),
            class_counts: vec![0; classes],
            sums: RgbSums::default(),
            skipped: Vec::new(),
        }
    }

    /// Returns the journal's file name for `split`.
    pub fn file_name(split: &str) -> String {
        format!("{split}.journal.json")
    }

    /// Reads the journal of `split` in `dir` if there is one that belongs to the conversion
    /// with `fingerprint` and whose shards are still in place, unchanged.
    ///
    /// A journal that is missing, unreadable, of another conversion or whose shards differ
    /// gives `None`: the conversion then starts from the first image.
    pub fn resume(dir: &Path, split: &str, fingerprint: &str) -> Option<Journal> {
        let path = dir.join(Self::file_name(split));
        let file = fs::File::open(&path).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_JOURNAL_BYTES).read_to_end(&mut bytes).ok()?;
        let journal: Journal = match serde_json::from_slice(&bytes) {
            Ok(journal) => journal,
            Err(error) => {
                log::warn!("ignoring the unreadable journal {}: {error}", path.display());
                return None;
            }
        };
        if journal.version != JOURNAL_VERSION || journal.fingerprint != fingerprint {
            log::warn!(
                "{} belongs to another conversion (inputs or options changed); starting over",
                path.display()
            );
            return None;
        }
        for (n, shard) in journal.shards.iter().enumerate() {
            let expected = crate::shard::shard_file_name(split, n);
            if shard.file != expected || !shard_matches(&dir.join(&shard.file), shard) {
                log::warn!(
                    "{}: shard {} is missing or changed since the journal was written; starting over",
                    path.display(),
                    shard.file
                );
                return None;
            }
        }
        Some(journal)
    }

    /// Writes the journal into `dir` atomically.
    pub fn save(&self, dir: &Path, split: &str) -> Result<()> {
        let mut bytes = serde_json::to_vec(self).map_err(|error| {
            Error::InvalidArgument(format!("cannot serialise the journal of {split}: {error}"))
        })?;
        bytes.push(b'\n');
        crate::shard::atomic::write_file_atomically(dir, &Self::file_name(split), &bytes)
    }

    /// Removes the journal of `split` from `dir`, if any.
    pub fn remove(dir: &Path, split: &str) -> Result<()> {
        let path = dir.join(Self::file_name(split));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::io(path, source)),
        }
    }
}

/// Returns whether the file at `path` has the size and header checksum `shard` lists and
/// passes every structural and record checksum check.
fn shard_matches(path: &Path, shard: &ShardFile) -> bool {
    let reader = match ShardReader::open(path) {
        Ok(reader) => reader,
        Err(error) => {
            log::warn!("{error:#}");
            return false;
        }
    };
    if reader.file_len() != shard.bytes || reader.header().header_crc32c != shard.header_crc32c {
        return false;
    }
    match reader.check_records() {
        Ok(()) => true,
        Err(error) => {
            log::warn!("{error}");
            false
        }
    }
}
