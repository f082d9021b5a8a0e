//! `manifest.json`: the table of contents of a shard set, with per-split statistics and
//! content hashes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard::limits::Limits;
use crate::shard::schema::{Layout, SampleSchema};

/// The file name of the manifest inside a shard set folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The value of [`Manifest::format`].
pub const MANIFEST_FORMAT: &str = "expanse-shards";

/// The manifest version this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 2;

/// The contents of `manifest.json`, serialised as pretty JSON with fields in declaration order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"expanse-shards"`.
    pub format: String,
    /// The manifest and shard file version, 2.
    pub version: u32,
    /// The kind of source the set was converted from, such as `"cifar10-binary"`.
    pub source_kind: String,
    /// The conversion settings of a photo collection (store mode, maximum side, JPEG quality,
    /// EXIF handling, source root), as a JSON object the converter chooses. Readers do not act
    /// on it. Absent for sources stored as they are (IDX, CIFAR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<serde_json::Value>,
    /// Class names; a record's label indexes this list.
    pub classes: Vec<String>,
    /// Coarse class names (CIFAR-100's 20 superclasses); a record's coarse label indexes this
    /// list. Absent from the JSON when the set has one label per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_classes: Option<Vec<String>>,
    /// The layout, shape and storage of every record in every split.
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
    /// The 3x3 population covariance of the (R, G, B) pixel values, in 0..255 units squared.
    /// Present only for 3-channel photo sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_covariance: Option<[[f64; 3]; 3]>,
    /// The eigenvalues of `rgb_covariance`, in descending order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_eigenvalues: Option<[f64; 3]>,
    /// The unit eigenvectors of `rgb_covariance`: row `k` belongs to eigenvalue `k`, with its
    /// largest-magnitude component positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_eigenvectors: Option<[[f64; 3]; 3]>,
    /// Source files the converter skipped (unreadable or not images). Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
    /// Total size of the source files read, in bytes. Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
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
    /// [`Error::Io`] when the file cannot be read. [`Error::Format`] when it exceeds
    /// `limits.max_manifest_bytes` or names another format or version, when the height and
    /// width of `sample` do not fit its layout, or when `conversion` is not an object.
    /// [`Error::Manifest`] when it is not valid JSON, lacks a field or has an `rgb_*` field of
    /// the wrong length.
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
        // The format and version are checked first, so that a manifest of another version
        // gets a message about its version rather than about a field that version lacks.
        let head: ManifestHead = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Manifest { path: path.clone(), source })?;
        check_head(&head).map_err(|message| Error::format(&path, message))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Manifest { path: path.clone(), source })?;

        check_sample(&manifest.sample).map_err(|message| Error::format(&path, message))?;
        if manifest.conversion.as_ref().is_some_and(|value| !value.is_object()) {
            return Err(Error::format(&path, "\"conversion\" is not a JSON object"));
        }
        Ok(manifest)
    }
}

/// The fields every manifest version starts with.
#[derive(Deserialize)]
struct ManifestHead {
    format: String,
    version: u32,
}

/// Checks the format name and the version.
fn check_head(head: &ManifestHead) -> std::result::Result<(), String> {
    if head.format != MANIFEST_FORMAT {
        return Err(format!("format \"{}\", expected \"{MANIFEST_FORMAT}\"", head.format));
    }
    if head.version == 1 {
        return Err(format!(
            "manifest version 1 is no longer supported; this reader reads version \
             {MANIFEST_VERSION}, so re-run shardify to convert the source again"
        ));
    }
    if head.version != MANIFEST_VERSION {
        return Err(format!(
            "unsupported manifest version {}; this reader reads version {MANIFEST_VERSION}",
            head.version
        ));
    }
    Ok(())
}

/// Checks that the manifest's `sample` has the height and width its layout needs.
fn check_sample(sample: &SampleSchema) -> std::result::Result<(), String> {
    let (height, width) = (sample.height, sample.width);
    match sample.layout {
        Layout::Fixed if height == 0 || width == 0 => Err(format!(
            "sample: a fixed layout needs height and width of at least 1, found {height}x{width}"
        )),
        Layout::Variable if (height, width) != (0, 0) => {
            Err(format!("sample: a variable layout has height and width 0, found {height}x{width}"))
        }
        _ => Ok(()),
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
    use crate::shard::schema::Encoding;

    fn sample_manifest() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            source_kind: "idx".into(),
            conversion: None,
            classes: vec!["zero".into(), "one".into()],
            coarse_classes: None,
            sample: SampleSchema::raw_u8(28, 28, 1),
            splits: vec![SplitManifest {
                name: "train".into(),
                records: 3,
                shards: vec![ShardFile {
                    file: shard_file_name("train", 0),
                    records: 3,
                    bytes: 2544,
                    header_crc32c: 42,
                }],
                class_counts: vec![2, 1],
                coarse_class_counts: None,
                channel_mean: vec![33.5],
                channel_std: vec![78.25],
                rgb_covariance: None,
                rgb_eigenvalues: None,
                rgb_eigenvectors: None,
                skipped: None,
                source_bytes: None,
                content_hash: "ab".repeat(32),
            }],
        }
    }

    /// Builds a photo-set manifest with every optional field present.
    fn photo_manifest() -> Manifest {
        let mut manifest = sample_manifest();
        manifest.source_kind = "image-folders".into();
        manifest.conversion = Some(serde_json::json!({"store": "keep", "max_side": 512}));
        manifest.sample = SampleSchema::variable(3, Encoding::Jpeg);
        let split = &mut manifest.splits[0];
        split.channel_mean = vec![124.0, 116.5, 104.0];
        split.channel_std = vec![58.5, 57.0, 57.5];
        split.rgb_covariance = Some([[4.0, 1.5, 0.5], [1.5, 3.0, 0.25], [0.5, 0.25, 2.0]]);
        split.rgb_eigenvalues = Some([5.2, 2.4, 1.4]);
        split.rgb_eigenvectors = Some([[0.7, 0.6, 0.2], [-0.6, 0.7, 0.1], [0.1, -0.2, 0.9]]);
        split.skipped = Some(3);
        split.source_bytes = Some(1 << 33);
        manifest
    }

    fn write_json(dir: &Path, json: &[u8]) -> String {
        std::fs::write(dir.join(MANIFEST_FILE), json).unwrap();
        Manifest::read(dir, &Limits::default()).unwrap_err().to_string()
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
        assert!(json.contains("\"version\": 2"), "{json}");
        assert!(json.contains("\"layout\": \"fixed\""), "{json}");
        assert!(json.contains("\"dtype\": \"u8\""), "{json}");
        assert!(json.contains("\"encoding\": \"raw\""), "{json}");
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn optional_fields_are_absent_for_idx() {
        let json = String::from_utf8(sample_manifest().to_json()).unwrap();

        for key in ["conversion", "rgb_", "skipped", "source_bytes"] {
            assert!(!json.contains(key), "{key} in {json}");
        }
    }

    #[test]
    fn photo_fields_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = photo_manifest();
        let json = String::from_utf8(manifest.to_json()).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), &json).unwrap();

        let read = Manifest::read(dir.path(), &Limits::default()).unwrap();

        assert_eq!(read, manifest);
        let keys = [
            "\"source_kind\"",
            "\"conversion\"",
            "\"classes\"",
            "\"layout\": \"variable\"",
            "\"encoding\": \"jpeg\"",
            "\"channel_std\"",
            "\"rgb_covariance\"",
            "\"rgb_eigenvalues\"",
            "\"rgb_eigenvectors\"",
            "\"skipped\": 3",
            "\"source_bytes\": 8589934592",
            "\"content_hash\"",
        ];
        let positions: Vec<usize> =
            keys.iter().map(|key| json.find(key).unwrap_or_else(|| panic!("{key}"))).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{json}");
    }

    #[test]
    fn rgb_fields_need_three_values() {
        let dir = tempfile::tempdir().unwrap();
        let json = String::from_utf8(photo_manifest().to_json()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let edits: [(&str, serde_json::Value); 3] = [
            ("rgb_eigenvalues", serde_json::json!([3.0, 2.0])),
            ("rgb_covariance", serde_json::json!([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])),
            ("rgb_eigenvectors", serde_json::json!([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])),
        ];

        for (field, wrong) in edits {
            let mut edited = value.clone();
            edited["splits"][0][field] = wrong;
            std::fs::write(dir.path().join(MANIFEST_FILE), edited.to_string()).unwrap();

            let error = Manifest::read(dir.path(), &Limits::default()).unwrap_err();

            let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
            assert!(chain.contains("manifest.json: invalid manifest"), "{field}: {chain}");
            assert!(chain.contains("invalid length 2"), "{field}: {chain}");
        }
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
        manifest.version = 3;
        std::fs::write(dir.path().join(MANIFEST_FILE), manifest.to_json()).unwrap();

        let message = Manifest::read(dir.path(), &Limits::default()).unwrap_err().to_string();
        let small = Limits { max_manifest_bytes: 10, ..Limits::default() };
        let too_big = Manifest::read(dir.path(), &small).unwrap_err().to_string();

        assert!(message.contains("unsupported manifest version 3"), "{message}");
        assert!(too_big.contains("exceeds the limit of 10 bytes"), "{too_big}");
    }

    #[test]
    fn version_1_manifest_asks_for_conversion() {
        let dir = tempfile::tempdir().unwrap();
        // The sample of a version 1 manifest has no layout field.
        let json = br#"{"format": "expanse-shards", "version": 1, "source_kind": "idx",
            "classes": ["0"], "sample": {"height": 2, "width": 2, "channels": 1,
            "dtype": "u8", "encoding": "raw"}, "splits": []}"#;
        let mut manifest = sample_manifest();
        manifest.version = 1;

        let untyped = write_json(dir.path(), json);
        let typed = write_json(dir.path(), &manifest.to_json());

        for message in [typed, untyped] {
            assert!(message.contains("manifest version 1 is no longer supported"), "{message}");
            assert!(message.contains("re-run shardify"), "{message}");
        }
    }

    #[test]
    fn sample_shape_must_fit_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mut variable = photo_manifest();
        variable.sample.height = 5;
        let mut fixed = sample_manifest();
        fixed.sample.width = 0;

        let variable_message = write_json(dir.path(), &variable.to_json());
        let fixed_message = write_json(dir.path(), &fixed.to_json());

        assert!(
            variable_message.contains("a variable layout has height and width 0, found 5x0"),
            "{variable_message}"
        );
        assert!(fixed_message.contains("found 28x0"), "{fixed_message}");
    }

    #[test]
    fn conversion_must_be_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = photo_manifest();
        manifest.conversion = Some(serde_json::json!("keep"));

        let message = write_json(dir.path(), &manifest.to_json());

        assert!(message.contains("\"conversion\" is not a JSON object"), "{message}");
    }

    #[test]
    fn invalid_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();

        let message = write_json(dir.path(), b"{\"format\": ");

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
