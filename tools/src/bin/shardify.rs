//! `shardify`: converts a dataset into an expanse shard set, verifies one, or describes one.
//!
//! ```text
//! shardify SRC OUT [--split train|test] [--classes a,b,...]   convert (kind detected)
//! shardify verify OUT                                         check every checksum and count
//! shardify inspect OUT [--json]                               counts, classes, shape, statistics
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use expanse_dataset::shard::{
    verify_shard_set, write_shard_set, Manifest, ShardSet, WriteOptions, MANIFEST_FILE,
};
use expanse_dataset::source::read_source;
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
    /// Source: a folder of MNIST-style IDX files (gzipped or not), or a CIFAR-10/100 folder
    /// (binary or python version).
    #[arg(required = true)]
    src: Option<PathBuf>,

    /// Output shard set folder (created).
    #[arg(required = true)]
    out: Option<PathBuf>,

    /// Convert only this split: "train" or "test".
    #[arg(long)]
    split: Option<String>,

    /// Class names in label order, comma separated (IDX files carry none).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,

    /// Largest shard file in MiB; a split is cut into several files beyond it.
    #[arg(long, default_value_t = 256)]
    shard_size: u64,

    /// Replace an existing shard set in OUT.
    #[arg(long)]
    overwrite: bool,
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
    let src = args.src.expect("clap requires SRC");
    let out = args.out.expect("clap requires OUT");
    let started = Instant::now();
    if args.shard_size == 0 {
        return Err(UsageError("--shard-size must be at least 1 MiB".into()).into());
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
    let _ = writeln!(
        out,
        "sample      {}x{}x{} (height x width x channels), {:?} {:?}",
        sample.height, sample.width, sample.channels, sample.dtype, sample.encoding
    );
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
                "content_hash": split.content_hash,
            })
        })
        .collect();
    serde_json::json!({
        "path": dir,
        "source_kind": manifest.source_kind,
        "sample": manifest.sample,
        "classes": manifest.classes,
        "coarse_classes": manifest.coarse_classes,
        "splits": splits,
    })
}
