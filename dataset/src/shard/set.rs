//! Opening a shard set: the manifest plus every shard file, presented split by split as one
//! index space.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::shard::limits::Limits;
use crate::shard::manifest::{
    is_valid_split_name, shard_file_name, Manifest, ShardFile, SplitManifest, MANIFEST_FILE,
};
use crate::shard::reader::ShardReader;
use crate::shard::schema::{Layout, RecordMeta, SampleSchema};

/// An open shard set: its manifest and one validated [`ShardReader`] per shard file.
#[derive(Debug)]
pub struct ShardSet {
    dir: PathBuf,
    manifest: Manifest,
    splits: Vec<Split>,
}

/// One split of an open shard set, its shards presented as records `0..len()`.
///
/// Record `i` of the split is record `i - first` of the shard whose range starts at `first`.
#[derive(Debug)]
pub struct Split {
    stats: SplitManifest,
    schema: SampleSchema,
    shards: Vec<ShardReader>,
    /// The split index of each shard's first record, ascending, one entry per shard.
    starts: Vec<usize>,
    len: usize,
}

impl ShardSet {
    /// Opens the shard set in `dir` with [`Limits::default`].
    ///
    /// # Errors
    ///
    /// As [`ShardSet::open_with_limits`].
    pub fn open(dir: &Path) -> Result<ShardSet> {
        Self::open_with_limits(dir, &Limits::default())
    }

    /// Opens the shard set in `dir`: reads `manifest.json`, opens and validates every shard it
    /// lists, and checks that each shard agrees with the manifest.
    ///
    /// The checks cover file names (`<split>-<number:05>.shard`, in order), record counts,
    /// file sizes, header checksums, the schema (layout included), the number of labels per
    /// record, every label against the class lists and the lengths and order of the optional
    /// RGB statistics. Record checksums are left to [`crate::shard::verify_shard_set`].
    ///
    /// # Errors
    ///
    /// Errors of [`crate::shard::Manifest::read`] and [`ShardReader::open_with_limits`], and
    /// [`Error::Format`] naming the file and both values when a shard disagrees with the
    /// manifest.
    pub fn open_with_limits(dir: &Path, limits: &Limits) -> Result<ShardSet> {
        let manifest = Manifest::read(dir, limits)?;
        let mut splits = Vec::with_capacity(manifest.splits.len());
        for (position, split) in manifest.splits.iter().enumerate() {
            check_split_entry(dir, &manifest, position)?;
            let mut shards = Vec::with_capacity(split.shards.len());
            let mut starts = Vec::with_capacity(split.shards.len());
            let mut len: usize = 0;

            for (number, entry) in split.shards.iter().enumerate() {
                check_shard_name(dir, split, number)?;
                let path = dir.join(&entry.file);
                let reader = ShardReader::open_with_limits(&path, limits)?;
                check_shard_against_manifest(&reader, entry, &manifest)?;

                starts.push(len);
                len = len.checked_add(reader.len()).ok_or_else(|| {
                    Error::format(&path, "split record count overflows the address space")
                })?;
                shards.push(reader);
            }

            if len as u64 != split.records {
                return Err(Error::format(
                    dir.join(MANIFEST_FILE),
                    format!(
                        "split \"{}\" lists {} records, but its shards hold {len}",
                        split.name, split.records
                    ),
                ));
            }
            splits.push(Split {
                stats: split.clone(),
                schema: manifest.sample,
                shards,
                starts,
                len,
            });
        }

        Ok(ShardSet { dir: dir.to_path_buf(), manifest, splits })
    }

    /// Returns the folder the set was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Returns every split, in manifest order.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// Returns the split called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] listing the available splits when there is none by that name.
    pub fn split(&self, name: &str) -> Result<&Split> {
        self.splits.iter().find(|split| split.name() == name).ok_or_else(|| {
            let names: Vec<&str> = self.splits.iter().map(Split::name).collect();
            Error::InvalidArgument(format!(
                "{}: no split \"{name}\"; the set has {}",
                self.dir.display(),
                names.join(", ")
            ))
        })
    }
}

impl Split {
    /// Returns the split name.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// Returns the number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the split has no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the layout, shape and storage of every record.
    pub fn schema(&self) -> &SampleSchema {
        &self.schema
    }

    /// Returns the height, width and channels every record shares.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a variable-layout split, whose records each have their
    /// own shape (and may be JPEG files): such a split needs decoding and resizing to one
    /// shape before a fixed-shape consumer can batch it.
    pub fn fixed_shape(&self) -> Result<(usize, usize, usize)> {
        let schema = &self.schema;
        match schema.layout {
            Layout::Fixed => {
                Ok((schema.height as usize, schema.width as usize, schema.channels as usize))
            }
            Layout::Variable => Err(Error::InvalidArgument(format!(
                "split \"{}\" stores {} records, each with its own height and width; a \
                 fixed-shape reader needs a fixed-layout set such as one converted from IDX or \
                 CIFAR",
                self.name(),
                schema
            ))),
        }
    }

    /// Returns the split's manifest entry: shard list, class counts, channel mean and std
    /// (0..255 units) and content hash.
    pub fn stats(&self) -> &SplitManifest {
        &self.stats
    }

    /// Returns the open shard files in record order.
    pub fn shards(&self) -> &[ShardReader] {
        &self.shards
    }

    /// Returns the payload of record `i` without checking its checksum: u8 HWC pixels for a
    /// raw record, the JPEG file for a JPEG record.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn record(&self, i: usize) -> &[u8] {
        let (shard, local) = self.locate(i);
        shard.record(local)
    }

    /// Returns the source path of record `i`, relative to the source root; empty for sources
    /// without a file per record.
    ///
    /// # Errors
    ///
    /// As [`ShardReader::source_path`].
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn source_path(&self, i: usize) -> Result<&str> {
        let (shard, local) = self.locate(i);
        shard.source_path(local)
    }

    /// Returns the shape, encoding and flags of record `i`.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn meta(&self, i: usize) -> RecordMeta {
        let (shard, local) = self.locate(i);
        shard.meta(local)
    }

    /// Returns the payload of record `i` after the checks of [`ShardReader::checked_record`].
    ///
    /// # Errors
    ///
    /// As [`ShardReader::checked_record`].
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn checked_record(&self, i: usize) -> Result<&[u8]> {
        let (shard, local) = self.locate(i);
        shard.checked_record(local)
    }

    /// Returns the (fine) label of record `i`, below the manifest's class count.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn label(&self, i: usize) -> u32 {
        let (shard, local) = self.locate(i);
        shard.label(local)
    }

    /// Returns the coarse label of record `i`, or `None` when the set has no coarse classes.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn coarse_label(&self, i: usize) -> Option<u32> {
        let (shard, local) = self.locate(i);
        shard.coarse_label(local)
    }

    /// Names record `i` for messages: its index in the split, its shard file and place there,
    /// and its source path when the set keeps one.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn describe_record(&self, i: usize) -> String {
        let (shard, local) = self.locate(i);
        let place = format!(
            "record {i} of split {} ({} record {local})",
            self.name(),
            shard.path().display()
        );
        match shard.source_path(local) {
            Ok(source) if !source.is_empty() => format!("{place}, source {source}"),
            _ => place,
        }
    }

    fn locate(&self, i: usize) -> (&ShardReader, usize) {
        assert!(
            i < self.len,
            "split {}: record index {i} out of range 0..{}",
            self.name(),
            self.len
        );

        // `starts[0] == 0 <= i`, so at least one start is <= i.
        let shard = self.starts.partition_point(|&start| start <= i) - 1;
        (&self.shards[shard], i - self.starts[shard])
    }
}

/// Checks the manifest entry of split `position`: a unique, valid name, one statistic per
/// channel and class, and RGB statistics only for 3 channels with eigenvalues in descending
/// order.
pub(crate) fn check_split_entry(dir: &Path, manifest: &Manifest, position: usize) -> Result<()> {
    let split = &manifest.splits[position];
    let name = split.name.escape_debug();
    let channels = manifest.sample.channels as usize;
    let invalid = |message: String| Err(Error::format(dir.join(MANIFEST_FILE), message));

    if !is_valid_split_name(&split.name) {
        return invalid(format!("split name \"{name}\" is invalid"));
    }
    if manifest.splits[..position].iter().any(|earlier| earlier.name == split.name) {
        return invalid(format!("split \"{name}\" appears twice"));
    }
    if split.channel_mean.len() != channels || split.channel_std.len() != channels {
        return invalid(format!(
            "split \"{name}\" has {} channel means and {} standard deviations for {channels} channels",
            split.channel_mean.len(),
            split.channel_std.len()
        ));
    }
    if split.class_counts.len() != manifest.classes.len() {
        return invalid(format!(
            "split \"{name}\" has {} class counts for {} classes",
            split.class_counts.len(),
            manifest.classes.len()
        ));
    }

    let has_rgb = split.rgb_covariance.is_some()
        || split.rgb_eigenvalues.is_some()
        || split.rgb_eigenvectors.is_some();
    if has_rgb && channels != 3 {
        return invalid(format!(
            "split \"{name}\" has RGB covariance statistics for {channels} channels, expected 3"
        ));
    }
    if let Some(values) = split.rgb_eigenvalues {
        if values[0] < values[1] || values[1] < values[2] {
            return invalid(format!(
                "split \"{name}\" has RGB eigenvalues {values:?}, expected descending order"
            ));
        }
    }
    Ok(())
}

/// Checks that shard `number` of `split` has the file name `<split>-<number:05>.shard`, which
/// also keeps manifest-supplied names inside `dir`.
pub(crate) fn check_shard_name(dir: &Path, split: &SplitManifest, number: usize) -> Result<()> {
    let expected = shard_file_name(&split.name, number);
    let listed = &split.shards[number].file;

    if *listed == expected {
        return Ok(());
    }
    Err(Error::format(
        dir.join(MANIFEST_FILE),
        format!(
            "split \"{}\" lists shard {number} as \"{}\", expected \"{expected}\"",
            split.name.escape_debug(),
            listed.escape_debug()
        ),
    ))
}

/// Checks that an open shard matches its manifest entry: record count, file size, header
/// checksum, schema, labels per record and every label against the class lists.
pub(crate) fn check_shard_against_manifest(
    reader: &ShardReader,
    entry: &ShardFile,
    manifest: &Manifest,
) -> Result<()> {
    let header = reader.header();
    let labels_per_record = if manifest.coarse_classes.is_some() { 2 } else { 1 };
    let disagree = |what: &str, manifest_value: String, file_value: String| {
        let message =
            format!("{what} {file_value} does not match {manifest_value} in the manifest");
        Err(Error::format(reader.path(), message))
    };

    if header.record_count != entry.records {
        return disagree(
            "record count",
            entry.records.to_string(),
            header.record_count.to_string(),
        );
    }
    if reader.file_len() != entry.bytes {
        return disagree("file size", entry.bytes.to_string(), reader.file_len().to_string());
    }
    if header.header_crc32c != entry.header_crc32c {
        let (listed, stored) = (entry.header_crc32c, header.header_crc32c);
        return disagree("header checksum", format!("0x{listed:08x}"), format!("0x{stored:08x}"));
    }
    if header.schema != manifest.sample {
        return disagree("schema", manifest.sample.to_string(), header.schema.to_string());
    }
    if header.labels_per_record != labels_per_record {
        let file_value = header.labels_per_record.to_string();
        return disagree("labels per record", labels_per_record.to_string(), file_value);
    }

    let coarse_classes = manifest.coarse_classes.as_ref().map(Vec::len);
    check_labels(reader, manifest.classes.len(), coarse_classes)
}

/// Checks every label of `reader` against the class counts of the manifest.
fn check_labels(reader: &ShardReader, classes: usize, coarse_classes: Option<usize>) -> Result<()> {
    for i in 0..reader.len() {
        let entry = reader.entry(i);
        let coarse_out_of_range =
            coarse_classes.is_some_and(|count| entry.second_label as usize >= count);

        if entry.label as usize >= classes || coarse_out_of_range {
            return Err(Error::format(
                reader.path(),
                format!(
                    "record {i} at byte {}: label {} (coarse {}) is outside the manifest's {classes} \
                     classes{}",
                    entry.offset,
                    entry.label,
                    entry.second_label,
                    coarse_classes.map(|n| format!(" and {n} coarse classes")).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}
