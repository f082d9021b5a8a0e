//! The conversion loop: rayon converts a chunk of images at a time, in order, while this
//! thread packs the results into shards, journals each one and finally writes the manifest.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use rayon::prelude::*;

use crate::convert::journal::Journal;
use crate::convert::{
    ConvertCounts, ConvertObserver, ConvertSummary, PhotoOptions, IMAGES_SOURCE_KIND,
};
use crate::error::{Error, Result};
use crate::image::{convert_image, ConvertOptions, Converted, RgbSums, Store};
use crate::shard::atomic::{remove_leftover_tmp_files, sync_dir, write_file_atomically};
use crate::shard::write_set::shard_file_split;
use crate::shard::{
    is_valid_split_name, shard_file_name, Encoding, Limits, Manifest, RecordMeta, RecordRef,
    SampleSchema, ShardWriter, SplitManifest, FLAG_REENCODED, HEADER_LEN, INDEX_ENTRY_LEN,
    MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION,
};
use crate::source::{ImageItem, ImageList};

/// Images converted per rayon task list; results of one chunk wait for the writer together.
const IMAGES_PER_THREAD: usize = 16;

/// Chunks converted ahead of the writer; bounds the memory held by finished images.
const CHUNKS_AHEAD: usize = 2;

/// Source files larger than this are skipped without being read.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// The outcome of one image: its converted record or why it was skipped.
struct Outcome {
    bytes_in: u64,
    result: std::result::Result<Converted, String>,
}

/// Converts every image of `list` into the split `split` of the shard set in `out` (created if
/// missing) on `pool`, and returns what was done.
///
/// When `out` already contains a set converted from images with the same classes and sample
/// schema, the split is added to it (ImageNet's `val` next to `train`). A split of the same
/// name is replaced only with `opts.overwrite`. A journal left by an interrupted run of the
/// same conversion is resumed (see the module documentation).
///
/// # Errors
///
/// - [`Error::InvalidArgument`] for an invalid split name, an empty list, a shard size too
///   small for a header, or an output set this split cannot join.
/// - [`Error::Format`] naming the file and the reason for the first bad image when
///   `opts.strict`, or when no image could be converted.
/// - [`Error::Io`] for any failed file operation. Finished shards are kept, so running the
///   conversion again resumes.
pub fn convert_images(
    list: &ImageList,
    out: &Path,
    split: &str,
    opts: &PhotoOptions,
    pool: &rayon::ThreadPool,
    observer: &mut dyn ConvertObserver,
) -> Result<ConvertSummary> {
    let started = Instant::now();
    if !is_valid_split_name(split) {
        return Err(Error::InvalidArgument(format!(
            "split name {split:?} must be 1 to 64 characters from A-Z a-z 0-9 _ -"
        )));
    }
    if opts.strict {
        if let Some((path, reason)) = list.rejected.first() {
            return Err(Error::format(list.root.join(path), reason.clone()));
        }
    }
    if list.items.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no images to convert ({} files with invalid names)",
            list.root.display(),
            list.rejected.len()
        )));
    }
    let min_shard = (HEADER_LEN + INDEX_ENTRY_LEN) as u64;
    if opts.shard_size_bytes < min_shard {
        return Err(Error::InvalidArgument(format!(
            "shard size {} bytes is below the {min_shard} bytes of a header and one index entry",
            opts.shard_size_bytes
        )));
    }

    fs::create_dir_all(out).map_err(|source| Error::io(out, source))?;
    let schema = schema_of(&opts.image);
    let conversion = conversion_json(&opts.image);
    let existing = existing_manifest(out, list, split, &schema, &conversion, opts.overwrite)?;
    remove_leftover_tmp_files(out)?;

    let fingerprint = fingerprint(list, split, opts);
    let mut journal = match Journal::resume(out, split, &fingerprint) {
        Some(journal) => journal,
        None => {
            remove_split_files(out, split)?;
            Journal::new(fingerprint, list.classes.len())
        }
    };
    let resumed = journal.next_item;
    let mut writer = SplitWriter::new(out, split, schema, opts, &mut journal)?;

    observer.started(list.items.len() as u64, resumed);
    let items = &list.items;
    let chunk = IMAGES_PER_THREAD * pool.current_num_threads().max(1);
    let (sender, receiver) = sync_channel::<Vec<Outcome>>(CHUNKS_AHEAD);
    let written = std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut start = resumed as usize;
            while start < items.len() {
                let end = (start + chunk).min(items.len());
                let outcomes: Vec<Outcome> = pool.install(|| {
                    items[start..end]
                        .par_iter()
                        .map(|item| convert_one(item, &opts.image))
                        .collect()
                });
                if sender.send(outcomes).is_err() {
                    break; // the writer stopped with an error
                }
                start = end;
            }
        });
        writer.consume(receiver, items, resumed as usize, observer)
    });
    written?;
    let content_hash = writer.finish()?;

    // Files the listing rejected by name come first, as they were never read.
    let mut counts = journal.counts.clone();
    counts.read += list.rejected.len() as u64;
    counts.skipped += list.rejected.len() as u64;
    let skipped: Vec<(String, String)> =
        list.rejected.iter().chain(&journal.skipped).cloned().collect();
    let skipped_file = write_skipped(out, split, &skipped)?;
    if journal.counts.written == 0 {
        let reasons: Vec<String> =
            skipped.iter().take(3).map(|(path, reason)| format!("{path}: {reason}")).collect();
        return Err(Error::format(
            &list.root,
            format!(
                "none of the {} images could be converted ({}; all reasons in {})",
                counts.read,
                reasons.join("; "),
                out.join(skipped_name(split)).display()
            ),
        ));
    }

    let stats = journal.sums.finish();
    let split_manifest = SplitManifest {
        name: split.to_owned(),
        records: journal.counts.written,
        shards: journal.shards.clone(),
        class_counts: journal.class_counts.clone(),
        coarse_class_counts: None,
        channel_mean: stats.mean.to_vec(),
        channel_std: stats.std.to_vec(),
        content_hash,
        rgb_covariance: Some(stats.covariance),
        rgb_eigenvalues: Some(stats.eigenvalues),
        rgb_eigenvectors: Some(stats.eigenvectors),
        skipped: Some(counts.skipped),
        source_bytes: Some(counts.bytes_in),
    };
    let mut manifest = existing.unwrap_or_else(|| Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        version: MANIFEST_VERSION,
        source_kind: IMAGES_SOURCE_KIND.to_owned(),
        classes: list.classes.clone(),
        coarse_classes: None,
        sample: schema,
        conversion: Some(conversion),
        splits: Vec::new(),
    });
    manifest.splits.push(split_manifest);
    write_file_atomically(out, MANIFEST_FILE, &manifest.to_json())?;
    Journal::remove(out, split)?;
    sync_dir(out)?;

    Ok(ConvertSummary {
        images: counts.read,
        resumed,
        counts,
        shards: journal.shards.len(),
        seconds: started.elapsed().as_secs_f64(),
        skipped_file,
        manifest,
    })
}

/// Reads and converts one image. A problem becomes the skip reason instead of an error.
fn convert_one(item: &ImageItem, opts: &ConvertOptions) -> Outcome {
    let bytes = match read_limited(&item.path) {
        Ok(bytes) => bytes,
        Err(reason) => return Outcome { bytes_in: 0, result: Err(reason) },
    };
    let result = convert_image(&bytes, opts).map_err(|reason| reason.to_string());
    Outcome { bytes_in: bytes.len() as u64, result }
}

/// Reads a source file of at most [`MAX_FILE_BYTES`], or returns why it cannot be read.
fn read_limited(path: &Path) -> std::result::Result<Vec<u8>, String> {
    let file = fs::File::open(path).map_err(|error| format!("unreadable: {error}"))?;
    let len = file.metadata().map_err(|error| format!("unreadable: {error}"))?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("too large: the file has {len} bytes, limit {MAX_FILE_BYTES}"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("unreadable: {error}"))?;
    Ok(bytes)
}

/// Returns the sample schema of records stored with `opts`.
fn schema_of(opts: &ConvertOptions) -> SampleSchema {
    let encoding = match opts.store {
        Store::Raw => Encoding::Raw,
        Store::Keep | Store::Reencode => Encoding::Jpeg,
    };
    SampleSchema::variable(3, encoding)
}

/// Describes `opts` for the manifest's `conversion` object.
fn conversion_json(opts: &ConvertOptions) -> serde_json::Value {
    let store = match opts.store {
        Store::Keep => "keep",
        Store::Reencode => "reencode",
        Store::Raw => "raw",
    };
    let exif = match opts.exif {
        crate::image::Exif::Apply => "apply",
        crate::image::Exif::Ignore => "ignore",
    };
    serde_json::json!({
        "store": store,
        "max_side": opts.max_side,
        "quality": opts.quality,
        "exif": exif,
    })
}

/// Reads the manifest already in `out`, if any, checks that `split` can join it, and returns
/// it without `split`.
///
/// When `split` is being replaced, the manifest without it is written first, so that no
/// manifest lists shard files this run is about to overwrite.
fn existing_manifest(
    out: &Path,
    list: &ImageList,
    split: &str,
    schema: &SampleSchema,
    conversion: &serde_json::Value,
    overwrite: bool,
) -> Result<Option<Manifest>> {
    if !out.join(MANIFEST_FILE).exists() {
        return Ok(None);
    }
    let mut manifest = Manifest::read(out, &Limits::default())?;
    let path = out.join(MANIFEST_FILE);
    let clash = |message: String| {
        Err(Error::InvalidArgument(format!(
            "{}: {message} (or write to another folder)",
            path.display()
        )))
    };
    if manifest.source_kind != IMAGES_SOURCE_KIND {
        return clash(format!(
            "the set was converted from {:?}; a photo split can only join a set converted from images",
            manifest.source_kind
        ));
    }
    if manifest.classes != list.classes {
        return clash(format!(
            "the set has {} classes ({}), the source has {} ({}); class names and order must match",
            manifest.classes.len(),
            preview(&manifest.classes),
            list.classes.len(),
            preview(&list.classes)
        ));
    }
    if manifest.sample != *schema {
        return clash(format!(
            "the set stores {}, this conversion would store {schema}",
            manifest.sample
        ));
    }
    if manifest.conversion.as_ref() != Some(conversion) {
        return clash(format!(
            "the set was converted with {}, this conversion uses {conversion}; use the same \
             --store, --max-side, --quality and --exif for every split",
            manifest.conversion.as_ref().map_or("no options".to_owned(), |c| c.to_string())
        ));
    }
    if let Some(at) = manifest.splits.iter().position(|s| s.name == split) {
        if !overwrite {
            return clash(format!(
                "the set already has a split {split:?}; pass --overwrite to replace it"
            ));
        }
        manifest.splits.remove(at);
        write_file_atomically(out, MANIFEST_FILE, &manifest.to_json())?;
    }
    Ok(Some(manifest))
}

/// Returns the first few names of `names` for a message.
fn preview(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    if names.len() > shown.len() {
        format!("{}, ...", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Returns the BLAKE3 of everything the output of a conversion depends on: the format, the
/// options, the classes and each image's path, label, size and modification time.
fn fingerprint(list: &ImageList, split: &str, opts: &PhotoOptions) -> String {
    let mut hasher = blake3::Hasher::new();
    let header = format!(
        "expanse-convert {} {} split={split} shard_size={} strict={} image={:?}\n",
        env!("CARGO_PKG_VERSION"),
        crate::shard::VERSION,
        opts.shard_size_bytes,
        opts.strict,
        opts.image
    );
    hasher.update(header.as_bytes());
    for class in &list.classes {
        hasher.update(class.as_bytes());
        hasher.update(b"\n");
    }
    for item in &list.items {
        let (len, modified) = match fs::metadata(&item.path) {
            Ok(meta) => (
                meta.len(),
                meta.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos()),
            ),
            Err(_) => (u64::MAX, 0),
        };
        let line =
            format!("{}\t{}\t{}\t{len}\t{modified}\n", item.path.display(), item.rel, item.label);
        hasher.update(line.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// Removes the shard files of `split` and its skipped list left by an earlier conversion that
/// no manifest lists any more.
fn remove_split_files(out: &Path, split: &str) -> Result<()> {
    let entries = fs::read_dir(out).map_err(|source| Error::io(out, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::io(out, source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if shard_file_split(name) == Some(split) || name == skipped_name(split) {
            fs::remove_file(entry.path()).map_err(|source| Error::io(entry.path(), source))?;
        }
    }
    Ok(())
}

/// Returns the file name of the skipped-image list of `split`.
fn skipped_name(split: &str) -> String {
    format!("{split}.skipped.tsv")
}

/// Writes `<split>.skipped.tsv` (path, tab, reason; tabs, newlines and backslashes escaped)
/// when images were skipped, and returns its path.
fn write_skipped(
    out: &Path,
    split: &str,
    skipped: &[(String, String)],
) -> Result<Option<std::path::PathBuf>> {
    if skipped.is_empty() {
        return Ok(None);
    }
    let mut text = String::from("path\treason\n");
    for (path, reason) in skipped {
        text.push_str(&escape_tsv(path));
        text.push('\t');
        text.push_str(&escape_tsv(reason));
        text.push('\n');
    }
    write_file_atomically(out, &skipped_name(split), text.as_bytes())?;
    Ok(Some(out.join(skipped_name(split))))
}

/// Escapes a TSV field: backslash, tab, newline and carriage return.
fn escape_tsv(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// One converted record waiting for its shard.
struct Pending {
    path: String,
    payload: Vec<u8>,
    meta: RecordMeta,
    label: u32,
}

/// Packs converted records into shard files and journals each finished shard.
struct SplitWriter<'a> {
    out: &'a Path,
    split: &'a str,
    schema: SampleSchema,
    shard_size: u64,
    strict: bool,
    journal: &'a mut Journal,
    hasher: blake3::Hasher,
    records: Vec<Pending>,
    data_bytes: u64,
    counts: ConvertCounts,
    class_counts: Vec<u64>,
    sums: RgbSums,
    skipped: Vec<(String, String)>,
}

impl<'a> SplitWriter<'a> {
    /// Starts after the shards `journal` lists, hashing them into the content hash.
    fn new(
        out: &'a Path,
        split: &'a str,
        schema: SampleSchema,
        opts: &PhotoOptions,
        journal: &'a mut Journal,
    ) -> Result<Self> {
        let mut hasher = blake3::Hasher::new();
        for shard in &journal.shards {
            let path = out.join(&shard.file);
            hash_file(&mut hasher, &path)?;
        }
        let classes = journal.class_counts.len();
        Ok(SplitWriter {
            out,
            split,
            schema,
            shard_size: opts.shard_size_bytes,
            strict: opts.strict,
            journal,
            hasher,
            records: Vec::new(),
            data_bytes: 0,
            counts: ConvertCounts::default(),
            class_counts: vec![0; classes],
            sums: RgbSums::default(),
            skipped: Vec::new(),
        })
    }

    /// Takes the outcomes of images `first..` in order until the producer is done.
    fn consume(
        &mut self,
        receiver: Receiver<Vec<Outcome>>,
        items: &[ImageItem],
        first: usize,
        observer: &mut dyn ConvertObserver,
    ) -> Result<()> {
        let mut next = first;
        for outcomes in receiver {
            for outcome in outcomes {
                let bytes_in = outcome.bytes_in;
                self.take(next, &items[next], outcome)?;
                observer.advanced(bytes_in);
                next += 1;
            }
        }
        if next != items.len() {
            // The producer ended early: it panicked, and the thread scope re-raises the panic.
            return Ok(());
        }
        if !self.records.is_empty() {
            self.flush(next as u64)?;
        }
        self.settle_pending();
        Ok(())
    }

    /// Adds the outcome of image `index` to the current shard, or to the skipped list.
    fn take(&mut self, index: usize, item: &ImageItem, outcome: Outcome) -> Result<()> {
        let converted = match outcome.result {
            Ok(converted) => converted,
            Err(reason) => {
                if self.strict {
                    return Err(Error::format(&item.path, reason));
                }
                log::debug!("skipping {}: {reason}", item.path.display());
                self.counts.read += 1;
                self.counts.bytes_in += outcome.bytes_in;
                self.counts.skipped += 1;
                self.skipped.push((item.rel.clone(), reason));
                return Ok(());
            }
        };

        let record_len = (item.rel.len() + converted.payload.len()) as u64;
        let index_len = INDEX_ENTRY_LEN as u64 * (self.records.len() as u64 + 1);
        let shard_len = HEADER_LEN as u64 + index_len + self.data_bytes + record_len;
        if !self.records.is_empty() && shard_len > self.shard_size {
            self.flush(index as u64)?;
        }

        // Counted after the flush: the journal it writes covers only images before `index`.
        self.counts.read += 1;
        self.counts.bytes_in += outcome.bytes_in;
        if converted.reencoded {
            self.counts.reencoded += 1;
        } else {
            self.counts.kept += 1;
        }
        self.counts.written += 1;
        self.class_counts[item.label as usize] += 1;
        self.sums.merge(&converted.sums);
        self.data_bytes += record_len;
        let meta = RecordMeta {
            height: converted.height,
            width: converted.width,
            channels: converted.channels,
            encoding: self.schema.encoding,
            flags: if converted.reencoded { FLAG_REENCODED } else { 0 },
        };
        self.records.push(Pending {
            path: item.rel.clone(),
            payload: converted.payload,
            meta,
            label: item.label,
        });
        Ok(())
    }

    /// Writes the waiting records as the next shard file, then journals everything before
    /// image `next_item` as done.
    fn flush(&mut self, next_item: u64) -> Result<()> {
        let name = shard_file_name(self.split, self.journal.shards.len());
        let mut writer =
            ShardWriter::create(self.out, &name, self.schema, 1, self.records.len() as u64)?;
        for record in &self.records {
            writer.push_record(&RecordRef {
                path: &record.path,
                payload: &record.payload,
                meta: record.meta,
                label: record.label,
                coarse_label: None,
            })?;
        }
        let shard = writer.finish()?;
        let path = self.out.join(&shard.file);
        hash_file(&mut self.hasher, &path)?;

        self.counts.bytes_out += shard.bytes;
        self.journal.shards.push(shard);
        self.records.clear();
        self.data_bytes = 0;
        self.settle_pending();
        self.journal.next_item = next_item;
        self.journal.save(self.out, self.split)
    }

    /// Moves the counts, sums and skipped images gathered since the last shard into the
    /// journal.
    fn settle_pending(&mut self) {
        let counts = std::mem::take(&mut self.counts);
        let done = &mut self.journal.counts;
        done.read += counts.read;
        done.written += counts.written;
        done.kept += counts.kept;
        done.reencoded += counts.reencoded;
        done.skipped += counts.skipped;
        done.bytes_in += counts.bytes_in;
        done.bytes_out += counts.bytes_out;
        for (total, n) in self.journal.class_counts.iter_mut().zip(&mut self.class_counts) {
            *total += std::mem::take(n);
        }
        self.journal.sums.merge(&std::mem::take(&mut self.sums));
        self.journal.skipped.append(&mut self.skipped);
    }

    /// Returns the content hash of the split's shard files.
    fn finish(self) -> Result<String> {
        Ok(self.hasher.finalize().to_hex().to_string())
    }
}

/// Feeds the bytes of the file at `path` to `hasher`.
fn hash_file(hasher: &mut blake3::Hasher, path: &Path) -> Result<()> {
    let mut file = fs::File::open(path).map_err(|source| Error::io(path, source))?;
    std::io::copy(&mut file, hasher).map_err(|source| Error::io(path, source))?;
    Ok(())
}
