//! `manifest.json`: the table of contents of a shard set, with per-split statistics and
//! content hashes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard::layout::SampleSchema;
use crate::shard::limits::Limits;

/// The file name of the manifest inside a shard set folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The value of [`Manifest::format`].
pub const MANIFEST_FORMAT: &str = "expanse-shards";

/// The manifest version this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The contents of `manifest.json`, serialised as pretty JSON with fields in declaration order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"expanse-shards"`.
    pub format: String,
    /// The manifest and shard file version, 1.
    pub version: u32,
    /// The kind of source the set was converted from, such as `"cifar10-binary"`.
    pub source_kind: String,
    /// Class names; a record's label indexes this list.
    pub classes: Vec<String>,
    /// Coarse class names (CIFAR-100's 20 superclasses); a record's coarse label indexes this
    /// list. Absent from the JSON when the set has one label per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_classes: Option<Vec<String>>,
    /// The shape and storage of every record in every split.
    pub sample: SampleSchema,
    /// The splits in the order they were written ("train" before "test" for published sets).
    pub splits: Vec<SplitManifest>,
}

/// One split of a shard set: its shard files and statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// The split name; shard files are named `<name>-<5-digit number>.shard`.
    pub name: String,
    /// Number of records over all shards of the split.
    pub records: u64,
    /// The shard files in record order.
    pub shards: Vec<ShardFile>,
    /// Records per class, indexed by label.
    pub class_counts: Vec<u64>,
    /// Records per coarse class, indexed by coarse label; absent without coarse labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_class_counts: Option<Vec<u64>>,
    /// Per-channel mean of every pixel value of the split, in 0..255 pixel units.
    pub channel_mean: Vec<f64>,
    /// Per-channel population standard deviation (divided by the pixel count), in 0..255 units.
    pub channel_std: Vec<f64>,
    /// BLAKE3 of the bytes of every shard file of the split concatenated in `shards` order, as
    /// 64 lowercase hex digits.
    pub content_hash: String,
}

/// One shard file as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFile {
    /// The file name inside the shard set folder.
    pub file: String,
    /// Number of records in the file.
    pub records: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// The header checksum stored in the file's header.
    pub header_crc32c: u32,
}

impl Manifest {
    /// Returns the split called `name`, if any.
    pub fn split(&self, name: &str) -> Option<&SplitManifest> {
        self.splits.iter().find(|split| split.name == name)
    }

    /// Serialises the manifest as pretty JSON followed by a newline.
    pub fn to_json(&self) -> Vec<u8> {
        // serde_json fails only on maps with non-string keys or on a failing custom `Serialize`
        // impl, and these types have neither.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Reads and parses `dir/manifest.json` and checks its format name and version.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, [`Error::Format`] when it exceeds
    /// `limits.max_manifest_bytes` or names another format or version, and
    /// [`Error::Manifest`] when it is not valid JSON or lacks a field.
    pub fn read(dir: &Path, limits: &Limits) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let file = File::open(&path).map_err(|source| Error::io(&path, source))?;
        let len = file.metadata().map_err(|source| Error::io(&path, source))?.len();
        if len > limits.max_manifest_bytes {
            return Err(Error::format(
                &path,
                format!("size {len} exceeds the limit of {} bytes", limits.max_manifest_bytes),
            ));
        }

        // `take` bounds the read even if the file grows after the size check.
        let mut bytes = Vec::new();
        file.take(limits.max_manifest_bytes)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::io(&path, source))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Manifest { path: path.clone(), source })?;

        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::format(
                &path,
                format!("format \"{}\", expected \"{MANIFEST_FORMAT}\"", manifest.format),
            ));
        }
        if manifest.version != MANIFEST_VERSION {
            return Err(Error::format(
                &path,
                format!(
                    "unsupported manifest version {}; this reader reads version {MANIFEST_VERSION}",
                    manifest.version
                ),
            ));
        }
        Ok(manifest)
    }
}

/// Returns the file name of shard `number` of split `split`: `<split>-<number:05>.shard`.
pub fn shard_file_name(split: &str, number: usize) -> String {
    format!("{split}-{number:05}.shard")
}

/// Returns whether `name` can name a split: 1 to 64 ASCII letters, digits, `_` or `-`.
///
/// The restriction keeps shard file names inside the set folder on every platform.
pub fn is_valid_split_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    (1..=64).contains(&name.len()) && name.bytes().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_manifest() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            source_kind: "idx".into(),
            classes: vec!["zero".into(), "one".into()],
            coarse_classes: None,
            sample: SampleSchema::raw_u8(28, 28, 1),
            splits: vec![SplitManifest {
                name: "train".into(),
                records: 3,
                shards: vec![ShardFile {
                    file: shard_file_name("train", 0),
                    records: 3,
                    bytes: 2496,
                    header_crc32c: 42,
                }],
                class_counts: vec![2, 1],
                coarse_class_counts: None,
                channel_mean: vec![33.5],
                channel_std: vec![78.25],
                content_hash: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn json_field_order_is_stable() {
        let json = String::from_utf8(sample_manifest().to_json()).unwrap();
        let keys = [
            "\"format\"",
            "\"version\"",
            "\"source_kind\"",
            "\"classes\"",
            "\"sample\"",
            "\"splits\"",
        ];

        let positions: Vec<usize> = keys.iter().map(|key| json.find(key).unwrap()).collect();

        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{json}");
        assert!(!json.contains("coarse_classes"), "{json}");
        assert!(json.contains("\"dtype\": \"u8\""), "{json}");
        assert!(json.contains("\"encoding\": \"raw\""), "{json}");
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn read_returns_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), sample_manifest().to_json()).unwrap();

        let manifest = Manifest::read(dir.path(), &Limits::default()).unwrap();

        assert_eq!(manifest, sample_manifest());
        assert_eq!(manifest.split("train").unwrap().records, 3);
        assert!(manifest.split("test").is_none());
    }

    #[test]
    fn read_rejects_other_version_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = sample_manifest();
        manifest.version = 2;
        std::fs::write(dir.path().join(MANIFEST_FILE), manifest.to_json()).unwrap();

        let message = Manifest::read(dir.path(), &Limits::default()).unwrap_err().to_string();
        let small = Limits { max_manifest_bytes: 10, ..Limits::default() };
        let too_big = Manifest::read(dir.path(), &small).unwrap_err().to_string();

        assert!(message.contains("unsupported manifest version 2"), "{message}");
        assert!(too_big.contains("exceeds the limit of 10 bytes"), "{too_big}");
    }

    #[test]
    fn invalid_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), b"{\"format\": ").unwrap();

        let message = Manifest::read(dir.path(), &Limits::default()).unwrap_err().to_string();

        assert!(message.contains("manifest.json: invalid manifest"), "{message}");
    }

    #[test]
    fn split_names_stay_inside_the_folder() {
        assert!(is_valid_split_name("train"));
        assert!(is_valid_split_name("val_2-a"));
        assert!(!is_valid_split_name(""));
        assert!(!is_valid_split_name("../train"));
        assert!(!is_valid_split_name("a/b"));
        assert!(!is_valid_split_name(&"x".repeat(65)));
    }
}
