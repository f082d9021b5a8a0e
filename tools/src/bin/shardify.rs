//! `shardify`: converts a dataset into an expanse shard set, verifies one, or describes one.
//!
//! ```text
//! shardify SRC OUT [--split train|test] [--classes a,b,...]   convert (kind detected)
//! shardify PHOTOS OUT [--store keep|reencode|raw] [--max-side N] convert a photo collection
//! shardify verify OUT                                         check every checksum and count
//! shardify inspect OUT [--json]                               counts, classes, shape, statistics
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use expanse_dataset::convert::{convert_images, PhotoOptions};
use expanse_dataset::image::{ConvertOptions, Exif, Store};
use expanse_dataset::shard::{
    is_valid_split_name, verify_shard_set, write_shard_set, Limits, Manifest, ShardSet,
    WriteOptions, MANIFEST_FILE,
};
use expanse_dataset::source::{
    detect, list_class_folders, list_file, list_with_labels, read_source,
};
use expanse_dataset::Error as DatasetError;
use expanse_tools::progress::ConvertProgress;
use expanse_tools::UsageError;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Convert image datasets to expanse shards, verify them, inspect them",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    convert: ConvertArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every header and record checksum, every count and the content hashes.
    Verify {
        /// Shard set folder.
        dir: PathBuf,
    },
    /// Print record counts, classes, sample shape and channel statistics.
    Inspect {
        /// Shard set folder.
        dir: PathBuf,
        /// Print the same information as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// Source: a folder of MNIST-style IDX files (gzipped or not), a CIFAR-10/100 folder
    /// (binary or python version), a photo collection ROOT/<class>/<image>, a flat folder of
    /// photos with --labels, or a list file of `path,label` lines.
    #[arg(required = true)]
    src: Option<PathBuf>,

    /// Output shard set folder (created).
    #[arg(required = true)]
    out: Option<PathBuf>,

    /// Convert only this split ("train" or "test"); for photos, the split to write (default
    /// "train", or "val" with --labels).
    #[arg(long)]
    split: Option<String>,

    /// Class names in label order, comma separated. IDX files carry none, and photo labels and
    /// list files name classes from this list when OUT has no set yet.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,

    #[command(flatten)]
    photos: PhotoArgs,

    /// Largest shard file in MiB; a split is cut into several files beyond it.
    #[arg(long, default_value_t = 256)]
    shard_size: u64,

    /// Replace an existing shard set in OUT; for a photo collection, replace only the split of
    /// the same name.
    #[arg(long)]
    overwrite: bool,
}

/// Options of photo collections; other sources reject them.
#[derive(Args, Debug)]
struct PhotoArgs {
    /// Labels of a flat folder of photos (ImageNet's validation folder): `file label` lines or
    /// a CSV such as LOC_val_solution.csv. Labels are class names of the set already in OUT
    /// (or of --classes).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,

    /// keep: store a JPEG's own bytes when it fits --max-side (others are re-encoded);
    /// reencode: decode and encode every photo as JPEG; raw: store decoded RGB pixels.
    /// [default: keep]
    #[arg(long, value_enum)]
    store: Option<StoreArg>,

    /// Same as --store raw.
    #[arg(long, conflicts_with = "store")]
    raw: bool,

    /// Scale photos down so that the longer side is at most N pixels (required with raw).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65535))]
    max_side: Option<u32>,

    /// JPEG quality of re-encoded photos, 1 to 100. [default: 90]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: Option<u8>,

    /// apply: turn photos upright by their EXIF orientation, as a viewer shows them;
    /// ignore: keep the stored pixel order, as PIL and torchvision read them. [default: apply]
    #[arg(long, value_enum)]
    exif: Option<ExifArg>,

    /// Stop at the first photo that cannot be converted instead of skipping it.
    #[arg(long)]
    strict: bool,

    /// Worker threads for decoding and encoding. [default: all cores]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    /// Also write the conversion summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

impl PhotoArgs {
    /// Returns the photo-only options that were given, for the error on other sources.
    fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--labels", self.labels.is_some()),
            ("--store", self.store.is_some()),
            ("--raw", self.raw),
            ("--max-side", self.max_side.is_some()),
            ("--quality", self.quality.is_some()),
            ("--exif", self.exif.is_some()),
            ("--strict", self.strict),
            ("--threads", self.threads.is_some()),
            ("--summary-json", self.summary_json.is_some()),
        ];
        flags.iter().filter(|(_, given)| *given).map(|(flag, _)| *flag).collect()
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StoreArg {
    Keep,
    Reencode,
    Raw,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExifArg {
    Apply,
    Ignore,
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Verify { dir }) => verify(&dir),
        Some(Command::Inspect { dir, json }) => inspect(&dir, json),
        None => convert(cli.convert),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => expanse_tools::report(&error),
    }
}

fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let src = args.src.clone().expect("clap requires SRC");
    let out = args.out.clone().expect("clap requires OUT");
    let started = Instant::now();
    if args.shard_size == 0 {
        return Err(UsageError("--shard-size must be at least 1 MiB".into()).into());
    }
    if args.photos.labels.is_some()
        || src.is_file()
        || matches!(detect(&src), Err(DatasetError::UnknownSource { .. }))
    {
        return convert_photos(&src, &out, args);
    }
    let photo_flags = args.photos.given();
    if !photo_flags.is_empty() {
        return Err(UsageError(format!(
            "{} only apply to photo collections, and {} is in the {} format",
            photo_flags.join(", "),
            src.display(),
            detect(&src).map(|kind| kind.name()).unwrap_or("known")
        ))
        .into());
    }
    if out.join(MANIFEST_FILE).exists() && !args.overwrite {
        bail!("{} already contains a shard set; pass --overwrite to replace it", out.display());
    }

    let mut source = read_source(&src, args.split.as_deref())
        .with_context(|| format!("cannot read the source {}", src.display()))?;
    if let Some(classes) = args.classes {
        let highest = source.splits.iter().flat_map(|s| s.labels.iter()).max().copied();
        if let Some(highest) = highest.filter(|&h| h as usize >= classes.len()) {
            return Err(UsageError(format!(
                "--classes names {} classes, but the source has label {highest}; give at least {}",
                classes.len(),
                highest + 1
            ))
            .into());
        }
        source.classes = classes;
    }

    let options = WriteOptions {
        shard_size_bytes: args.shard_size.saturating_mul(1 << 20),
        overwrite: args.overwrite,
    };
    let manifest = write_shard_set(&source, &out, &options)
        .with_context(|| format!("cannot write the shard set {}", out.display()))?;

    println!("{} -> {} ({})", src.display(), out.display(), manifest.source_kind);
    for split in &manifest.splits {
        let bytes: u64 = split.shards.iter().map(|s| s.bytes).sum();
        println!(
            "  {:<6} {:>7} records in {} shard(s), {:.1} MiB",
            split.name,
            split.records,
            split.shards.len(),
            bytes as f64 / (1 << 20) as f64
        );
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Converts a photo collection: class folders, a labelled flat folder or a list file.
fn convert_photos(src: &Path, out: &Path, args: ConvertArgs) -> anyhow::Result<()> {
    let photos = &args.photos;
    let store = if photos.raw { StoreArg::Raw } else { photos.store.unwrap_or(StoreArg::Keep) };
    if matches!(store, StoreArg::Raw) && photos.max_side.is_none() {
        return Err(UsageError(
            "--store raw needs --max-side N: decoded photos are stored at most N pixels on a side"
                .into(),
        )
        .into());
    }
    if args.shard_size == 0 {
        return Err(UsageError("--shard-size must be at least 1 MiB".into()).into());
    }
    if let Some(split) = args.split.as_deref().filter(|s| !is_valid_split_name(s)) {
        return Err(UsageError(format!(
            "--split {split:?} is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ -"
        ))
        .into());
    }
    if src.is_file() && image::guess_format(&read_start(src)?).is_ok() {
        return Err(UsageError(format!(
            "{} is an image: give a folder of class folders, a folder with --labels, or a list \
             file of `path,label` lines",
            src.display()
        ))
        .into());
    }
    if let Some(inside) = inside_source(src, out)? {
        return Err(UsageError(format!(
            "OUT {} is inside the source {}: write the shard set to a folder outside it",
            out.display(),
            inside.display()
        ))
        .into());
    }
    if let Some(path) = &photos.summary_json {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(UsageError(format!(
                "--summary-json {}: folder {} not found",
                path.display(),
                parent.display()
            ))
            .into());
        }
    }
    let existing = if out.join(MANIFEST_FILE).exists() {
        Some(
            Manifest::read(out, &Limits::default())
                .with_context(|| format!("cannot read the shard set in {}", out.display()))?,
        )
    } else {
        None
    };
    if let (Some(manifest), Some(classes)) = (&existing, &args.classes) {
        if &manifest.classes != classes {
            return Err(UsageError(format!(
                "--classes names {} classes, but the set in {} already has {} others; leave \
                 --classes out to use the set's classes",
                classes.len(),
                out.display(),
                manifest.classes.len()
            ))
            .into());
        }
    }
    let known_classes = existing.as_ref().map(|m| m.classes.clone()).or(args.classes.clone());

    let (list, default_split) = if let Some(labels) = &photos.labels {
        let Some(classes) = known_classes else {
            return Err(UsageError(format!(
                "--labels names classes, but {} holds no shard set yet: convert the training \
                 folder into it first, or give --classes",
                out.display()
            ))
            .into());
        };
        (list_with_labels(src, labels, &classes)?, "val")
    } else if src.is_file() {
        (list_file(src, known_classes.as_deref())?, "train")
    } else {
        if args.classes.is_some() {
            return Err(UsageError(
                "--classes does not apply to class folders: their names are the classes".into(),
            )
            .into());
        }
        let list = list_class_folders(src)?;
        let split_names = ["train", "val", "test"];
        if list.classes.iter().any(|class| split_names.contains(&class.as_str())) {
            log::warn!(
                "{} has class folders named like splits ({}): give the train folder itself, \
                 such as {}",
                src.display(),
                list.classes.join(", "),
                src.join("train").display()
            );
        }
        (list, "train")
    };
    let split = args.split.clone().unwrap_or_else(|| default_split.to_owned());

    let threads = match photos.threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("shardify-{i}"))
        .build()
        .context("cannot start the worker threads")?;
    let options = PhotoOptions {
        image: ConvertOptions {
            store: match store {
                StoreArg::Keep => Store::Keep,
                StoreArg::Reencode => Store::Reencode,
                StoreArg::Raw => Store::Raw,
            },
            max_side: photos.max_side,
            quality: photos.quality.unwrap_or(90),
            exif: match photos.exif.unwrap_or(ExifArg::Apply) {
                ExifArg::Apply => Exif::Apply,
                ExifArg::Ignore => Exif::Ignore,
            },
            ..ConvertOptions::default()
        },
        shard_size_bytes: args.shard_size.saturating_mul(1 << 20),
        strict: photos.strict,
        overwrite: args.overwrite,
    };

    let mut progress = ConvertProgress::new(expanse_tools::interactive());
    let result = convert_images(&list, out, &split, &options, &pool, &mut progress);
    progress.finish();
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            // Only a failed file operation (a full disk, say) is worth the same command again.
            let hint = if matches!(error, DatasetError::Io { .. }) {
                "; fix the cause and run the same command again to resume"
            } else {
                ""
            };
            let message = format!(
                "cannot convert {} into split {split:?} of {}{hint}",
                src.display(),
                out.display()
            );
            return Err(anyhow::Error::new(error).context(message));
        }
    };

    let c = &summary.counts;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let peak_rss = expanse_dataset::loader::ResidentMemory::read().map(|memory| memory.peak);
    let mut text = String::new();
    let _ = writeln!(text, "{} -> {} split {split}", src.display(), out.display());
    let _ = writeln!(
        text,
        "  read {} images{}, wrote {} records ({} kept as they were, {} re-encoded), skipped {}",
        c.read,
        if summary.resumed > 0 {
            format!(" ({} by an earlier run)", summary.resumed)
        } else {
            String::new()
        },
        c.written,
        c.kept,
        c.reencoded,
        c.skipped
    );
    if let Some(file) = &summary.skipped_file {
        let _ = writeln!(text, "  skipped images and reasons: {}", file.display());
    }
    let _ = writeln!(
        text,
        "  {:.1} MiB in, {:.1} MiB out in {} shard(s)",
        mib(c.bytes_in),
        mib(c.bytes_out),
        summary.shards
    );
    let converted = (c.read - summary.resumed) as f64;
    let _ = writeln!(
        text,
        "  {:.1} s, {:.1} images/s on {threads} thread(s), peak RSS {}",
        summary.seconds,
        converted / summary.seconds.max(1e-9),
        peak_rss.map_or("unknown".to_owned(), |b| format!("{:.0} MiB", mib(b)))
    );
    expanse_tools::print_stdout(&text)?;

    if let Some(path) = &photos.summary_json {
        let json = serde_json::json!({
            "source": src,
            "out": out,
            "split": split,
            "threads": threads,
            "images": summary.images,
            "resumed": summary.resumed,
            "images_read": c.read,
            "images_written": c.written,
            "kept": c.kept,
            "reencoded": c.reencoded,
            "skipped": c.skipped,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "shards": summary.shards,
            "seconds": summary.seconds,
            "images_per_second": converted / summary.seconds.max(1e-9),
            "peak_rss_bytes": peak_rss,
            "skipped_file": summary.skipped_file,
        });
        let text = serde_json::to_string_pretty(&json)? + "\n";
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Returns the first bytes of the file at `path`, enough to recognise an image format.
fn read_start(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;

    let mut start = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|file| file.take(64).read_to_end(&mut start))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(start)
}

/// Returns the source folder when `out` lies inside the source folder `src`, where its files
/// would be listed as photos by a later run. A list file names its photos, so it has no such
/// folder.
fn inside_source(src: &Path, out: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !src.is_dir() {
        return Ok(None);
    }
    let folder = match std::fs::canonicalize(src) {
        Ok(folder) => folder,
        Err(_) => return Ok(None),
    };
    // OUT may not exist yet: resolve its deepest existing ancestor.
    let absolute =
        std::path::absolute(out).with_context(|| format!("invalid path {}", out.display()))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(parent) = existing.parent() else { return Ok(None) };
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = parent;
    }
    let mut resolved = std::fs::canonicalize(existing)
        .with_context(|| format!("cannot resolve {}", existing.display()))?;
    resolved.extend(rest.iter().rev());
    Ok(resolved.starts_with(&folder).then_some(folder))
}

fn verify(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let report = verify_shard_set(dir)
        .with_context(|| format!("verification of {} failed", dir.display()))?;
    for split in &report.splits {
        println!(
            "{:<6} {:>7} records in {} shard(s): checksums and counts ok, content hash {}",
            split.name, split.records, split.shards, split.content_hash
        );
    }
    println!("{}: ok ({:.1} s)", dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn inspect(dir: &Path, json: bool) -> anyhow::Result<()> {
    let set = ShardSet::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let manifest = set.manifest();
    let text = if json {
        serde_json::to_string_pretty(&inspect_json(dir, manifest))? + "\n"
    } else {
        inspect_text(dir, manifest)
    };
    expanse_tools::print_stdout(&text)
}

fn inspect_text(dir: &Path, manifest: &Manifest) -> String {
    let mut out = String::new();
    let sample = &manifest.sample;
    // Writing into a String cannot fail.
    let _ = writeln!(out, "shard set   {}", dir.display());
    let _ = writeln!(out, "source      {}", manifest.source_kind);
    let _ = match sample.layout {
        expanse_dataset::shard::Layout::Fixed => {
            writeln!(out, "sample      {sample} (height x width x channels), fixed layout")
        }
        expanse_dataset::shard::Layout::Variable => {
            writeln!(out, "sample      {sample} (a height and width per record)")
        }
    };
    if let Some(conversion) = &manifest.conversion {
        let _ = writeln!(out, "conversion  {conversion}");
    }
    let _ = writeln!(out, "classes     {}", manifest.classes.len());
    if let Some(coarse) = &manifest.coarse_classes {
        let _ = writeln!(out, "coarse      {}", coarse.len());
    }
    for split in &manifest.splits {
        let mean: Vec<String> = split.channel_mean.iter().map(|m| format!("{m:.3}")).collect();
        let std: Vec<String> = split.channel_std.iter().map(|s| format!("{s:.3}")).collect();
        let _ = writeln!(
            out,
            "\nsplit {}: {} records in {} shard(s)",
            split.name,
            split.records,
            split.shards.len()
        );
        let _ = writeln!(out, "  channel mean {} (0..255)", mean.join(", "));
        let _ = writeln!(out, "  channel std  {}", std.join(", "));
        if let Some(values) = split.rgb_eigenvalues {
            let _ = writeln!(out, "  rgb eigenvalues {values:?}");
        }
        if let Some(vectors) = split.rgb_eigenvectors {
            let _ = writeln!(out, "  rgb eigenvectors (rows) {vectors:?}");
        }
        if let Some(skipped) = split.skipped {
            let _ = writeln!(out, "  skipped      {skipped} source files");
        }
        if let Some(bytes) = split.source_bytes {
            let _ = writeln!(out, "  source bytes {bytes}");
        }
        let _ = writeln!(out, "  content hash {}", split.content_hash);
        let _ = writeln!(out, "  {:>6}  {:>8}  class", "label", "records");
        for (label, count) in split.class_counts.iter().enumerate() {
            let name = manifest.classes.get(label).map(String::as_str).unwrap_or("?");
            let _ = writeln!(out, "  {label:>6}  {count:>8}  {name}");
        }
    }
    out
}

fn inspect_json(dir: &Path, manifest: &Manifest) -> serde_json::Value {
    let splits: Vec<serde_json::Value> = manifest
        .splits
        .iter()
        .map(|split| {
            serde_json::json!({
                "name": split.name,
                "records": split.records,
                "shards": split.shards.len(),
                "bytes": split.shards.iter().map(|s| s.bytes).sum::<u64>(),
                "class_counts": split.class_counts,
                "coarse_class_counts": split.coarse_class_counts,
                "channel_mean": split.channel_mean,
                "channel_std": split.channel_std,
                "rgb_covariance": split.rgb_covariance,
                "rgb_eigenvalues": split.rgb_eigenvalues,
                "rgb_eigenvectors": split.rgb_eigenvectors,
                "skipped": split.skipped,
                "source_bytes": split.source_bytes,
                "content_hash": split.content_hash,
            })
        })
        .collect();
    serde_json::json!({
        "path": dir,
        "source_kind": manifest.source_kind,
        "conversion": manifest.conversion,
        "sample": manifest.sample,
        "classes": manifest.classes,
        "coarse_classes": manifest.coarse_classes,
        "splits": splits,
    })
}
