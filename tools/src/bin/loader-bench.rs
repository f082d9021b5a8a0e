//! `loader-bench`: measures the training loader alone on a shard set split.
//!
//! ```text
//! loader-bench DATA [--split train] [--recipe NAME|FILE.json] [--threads N] [--batch-size 32]
//!              [--epochs 3] [--prefetch 2] [--seed 0] [--rank R --world-size W]
//!              [--order shuffle|blocks:BLOCK:WINDOW] [--layout nchw|nhwc] [--full-size-decode]
//!              [--json FILE]
//! ```
//!
//! The loader reads, decodes and augments every batch of each epoch, and the consumer drops
//! each batch at once, so the figures are the loader's own. Per epoch it prints images/s, the
//! batch times (p50, p99 and worst) and the resident set size at the end of the epoch. At the
//! end it prints the peak resident set size and the rate over the epochs after the first. The
//! first epoch is a warm-up because it pays for the page cache, the allocator and the thread
//! start-up. It also prints how well the first epoch's plan mixes classes within a batch.
//! `--json` writes the same figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use expanse_dataset::loader::{
    class_mix, Batch, ClassMix, Layout, Loader, Order, PlanOptions, ResidentMemory,
};
use expanse_dataset::shard::{ShardSet, Split};
use expanse_tools::{load_recipe, recipe_help, UsageError};
use serde::Serialize;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Measure the training loader alone: read, decode and augment the batches of a shard \
             set split, and report images/s, batch times and memory per epoch"
)]
struct Cli {
    /// Shard set folder (written by shardify).
    #[arg(value_name = "DATA")]
    data: PathBuf,

    /// Split to load.
    #[arg(long, default_value = "train")]
    split: String,

    /// Recipe name or JSON file; the help text is [`recipe_help`].
    #[arg(long, value_name = "NAME|FILE", default_value = "resnet-imagenet", help = recipe_help())]
    recipe: String,

    /// Loader threads (decoding and augmenting); the prefetch thread comes on top. [default:
    /// the number of available cores]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,

    /// Samples per batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,

    /// Epochs to run; the first one is reported as a warm-up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: u32,

    /// Batches the loader keeps ready ahead of the consumer.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    prefetch: u32,

    /// Seed of the epoch orders and of the augmentation keys.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// This process's rank, in 0..--world-size; it loads its share of each epoch.
    #[arg(long, default_value_t = 0)]
    rank: u64,

    /// Number of ranks that share each epoch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    world_size: u64,

    /// Epoch order: `shuffle` (a full random permutation per epoch) or `blocks:BLOCK:WINDOW`
    /// (runs of BLOCK consecutive records, shuffled within a window of WINDOW runs).
    #[arg(long, default_value = "shuffle", value_name = "ORDER", value_parser = parse_order)]
    order: Order,

    /// Memory layout of the batch pixels: NCHW, or NHWC (channels-last).
    #[arg(long, value_enum, default_value_t = LayoutArg::Nchw)]
    layout: LayoutArg,

    /// Decode JPEG records at full size even where the recipe allows a reduced DCT scale (to
    /// measure what the reduced decode saves).
    #[arg(long)]
    full_size_decode: bool,

    /// Also write the figures to FILE as JSON, replaced atomically.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LayoutArg {
    Nchw,
    Nhwc,
}

impl LayoutArg {
    fn layout(self) -> Layout {
        match self {
            LayoutArg::Nchw => Layout::Nchw,
            LayoutArg::Nhwc => Layout::Nhwc,
        }
    }

    fn name(self) -> &'static str {
        match self {
            LayoutArg::Nchw => "nchw",
            LayoutArg::Nhwc => "nhwc",
        }
    }
}

/// Parses `shuffle` or `blocks:BLOCK:WINDOW` with both numbers at least 1.
fn parse_order(text: &str) -> Result<Order, String> {
    if text == "shuffle" {
        return Ok(Order::Shuffle);
    }
    let expected = "expected `shuffle` or `blocks:BLOCK:WINDOW` with BLOCK and WINDOW at least 1";
    let Some(rest) = text.strip_prefix("blocks:") else {
        return Err(format!("invalid order {text:?}; {expected}"));
    };
    let numbers: Vec<&str> = rest.split(':').collect();
    let [block, window] = numbers.as_slice() else {
        return Err(format!("invalid order {text:?}; {expected}"));
    };
    let parse = |value: &str| value.parse::<usize>().ok().filter(|&n| n >= 1);
    match (parse(block), parse(window)) {
        (Some(block), Some(window)) => Ok(Order::Blocks { block, window }),
        _ => Err(format!("invalid order {text:?}; {expected}")),
    }
}

fn describe_order(order: &Order) -> String {
    match order {
        Order::Shuffle => "shuffle".to_string(),
        Order::Blocks { block, window } => format!("blocks:{block}:{window}"),
    }
}

/// Median, 99th percentile and maximum of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// Returns the nearest-rank percentiles of `times`, or zeros for none.
    fn of(times: &[Duration]) -> Self {
        let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        if ms.is_empty() {
            return Percentiles::default();
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let k = (p * ms.len() as f64).ceil() as usize;
            ms[k.clamp(1, ms.len()) - 1]
        };
        Percentiles { p50: rank(0.5), p99: rank(0.99), max: ms[ms.len() - 1] }
    }
}

/// The figures of one epoch.
#[derive(Debug, Serialize)]
struct EpochFigures {
    epoch: u64,
    images: usize,
    batches: usize,
    seconds: f64,
    images_per_second: f64,
    /// Time the consumer waited inside the loader for each batch ([`Batch::waited`]).
    wait_ms: Percentiles,
    /// Time from one batch reaching the consumer to the next (the first from the start of the
    /// epoch).
    interval_ms: Percentiles,
    /// Time the loader spent decoding and augmenting each batch ([`Batch::fill_time`]).
    fill_ms: Percentiles,
    /// VmRSS at the end of the epoch, MiB; `None` where /proc/self/status is missing.
    rss_mib: Option<f64>,
    #[serde(skip)]
    waits: Vec<Duration>,
    #[serde(skip)]
    intervals: Vec<Duration>,
    #[serde(skip)]
    fills: Vec<Duration>,
}

/// The figures over the epochs after the warm-up epoch.
#[derive(Debug, Serialize)]
struct SteadyFigures {
    epochs: usize,
    images: usize,
    seconds: f64,
    images_per_second: f64,
    wait_ms: Percentiles,
    interval_ms: Percentiles,
    fill_ms: Percentiles,
}

#[derive(Debug, Serialize)]
struct ClassMixFigures {
    batches: usize,
    mean_distinct: f64,
    expected_distinct: f64,
    mean_top_share: f64,
}

impl From<ClassMix> for ClassMixFigures {
    fn from(mix: ClassMix) -> Self {
        ClassMixFigures {
            batches: mix.batches,
            mean_distinct: mix.mean_distinct,
            expected_distinct: mix.expected_distinct,
            mean_top_share: mix.mean_top_share,
        }
    }
}

/// Everything `--json` writes.
#[derive(Debug, Serialize)]
struct Report {
    version: &'static str,
    data: String,
    split: String,
    records: usize,
    schema: String,
    recipe: String,
    threads: usize,
    batch_size: usize,
    prefetch: usize,
    seed: u64,
    rank: usize,
    world_size: usize,
    order: String,
    layout: &'static str,
    /// Channels, height and width of each view.
    sample_shape: [usize; 3],
    /// Views per sample (10 for a ten-crop recipe, else 1).
    views: usize,
    /// Whether JPEG records were decoded at full size instead of a reduced DCT scale.
    full_size_decode: bool,
    /// Epochs counted as warm-up and left out of `steady`.
    warmup_epochs: usize,
    epochs: Vec<EpochFigures>,
    /// `None` when only the warm-up epoch ran.
    steady: Option<SteadyFigures>,
    /// VmHWM at the end, MiB.
    peak_rss_mib: Option<f64>,
    /// Class mix of the first epoch's plan.
    class_mix: ClassMixFigures,
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => expanse_tools::report(&error),
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if cli.rank >= cli.world_size {
        return Err(UsageError(format!(
            "--rank {} is outside 0..{} (--world-size); give a rank below the world size",
            cli.rank, cli.world_size
        ))
        .into());
    }
    let recipe = load_recipe(&cli.recipe)?;
    let recipe_name = recipe.name.clone().unwrap_or_else(|| cli.recipe.clone());
    if let Some(json) = &cli.json {
        expanse_tools::check_output_file("--json", json)?;
    }

    let set = ShardSet::open(&cli.data)
        .with_context(|| format!("cannot open the shard set {}", cli.data.display()))?;
    let split = set.split(&cli.split).map_err(|e| UsageError(format!("--split: {e}")))?;
    let threads = match cli.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let options = PlanOptions {
        seed: cli.seed,
        shuffle: true,
        batch_size: cli.batch_size as usize,
        drop_last: false,
        rank: cli.rank as usize,
        world_size: cli.world_size as usize,
        order: cli.order,
        ..PlanOptions::default()
    };
    let mut loader = Loader::new(split, recipe, options, cli.prefetch as usize)
        .and_then(|loader| loader.with_threads(threads))
        .map(|loader| loader.with_layout(cli.layout.layout()))
        .with_context(|| {
            format!("cannot set up the loader on {} split {}", cli.data.display(), split.name())
        })?;
    if cli.full_size_decode {
        loader = loader.with_full_size_decode();
    }

    let mix = class_mix(&loader.plan(0)?, |index| split.label(index as usize));
    let shape = loader.sample_shape();
    let (c, h, w, views) = (shape.channels, shape.height, shape.width, shape.views);
    let views_text = if views > 1 { format!(" x {views} views") } else { String::new() };
    let header = format!(
        "{}: split {}, {} records ({}); recipe {recipe_name}, sample {c}x{h}x{w}{views_text} {}{}; \
         {threads} thread(s), batch {}, prefetch {}, seed {}, order {}, rank {} of {}\n",
        cli.data.display(),
        split.name(),
        split.len(),
        split.schema(),
        cli.layout.name(),
        if cli.full_size_decode { ", full-size decode" } else { "" },
        cli.batch_size,
        cli.prefetch,
        cli.seed,
        describe_order(&cli.order),
        cli.rank,
        cli.world_size,
    );
    expanse_tools::print_stdout(&header)?;
    expanse_tools::print_stdout(
        "epoch  images  batches  seconds     img/s  wait p50/p99/max ms     \
         interval p50/p99/max ms  RSS MiB\n",
    )?;

    let mut epochs = Vec::with_capacity(cli.epochs as usize);
    for epoch in 0..u64::from(cli.epochs) {
        let figures = run_epoch(&loader, epoch, split)?;
        expanse_tools::print_stdout(&epoch_line(&figures))?;
        epochs.push(figures);
    }

    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        data: cli.data.display().to_string(),
        split: split.name().to_string(),
        records: split.len(),
        schema: split.schema().to_string(),
        recipe: recipe_name,
        threads,
        batch_size: cli.batch_size as usize,
        prefetch: cli.prefetch as usize,
        seed: cli.seed,
        rank: cli.rank as usize,
        world_size: cli.world_size as usize,
        order: describe_order(&cli.order),
        layout: cli.layout.name(),
        sample_shape: [c, h, w],
        views,
        full_size_decode: cli.full_size_decode,
        warmup_epochs: 1,
        steady: steady_figures(&epochs[1..]),
        epochs,
        peak_rss_mib: ResidentMemory::read().map(|memory| memory.peak as f64 / MIB),
        class_mix: mix.into(),
    };
    expanse_tools::print_stdout(&summary(&report))?;
    if let Some(json) = &cli.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        expanse_tools::write_file_atomically(json, text.as_bytes())?;
    }
    Ok(())
}

/// Runs one epoch, dropping every batch, and measures it.
fn run_epoch(
    loader: &Loader<'_, Split>,
    epoch: u64,
    split: &Split,
) -> anyhow::Result<EpochFigures> {
    let mut waits = Vec::new();
    let mut intervals = Vec::new();
    let mut fills = Vec::new();
    let mut images = 0;
    let started = Instant::now();
    let mut last = started;
    loader
        .run_epoch(epoch, 0, |batch: &Batch| -> anyhow::Result<()> {
            let now = Instant::now();
            intervals.push(now - last);
            last = now;
            waits.push(batch.waited);
            fills.push(batch.fill_time);
            images += batch.len();
            Ok(())
        })
        .with_context(|| format!("epoch {epoch} of split {} failed", split.name()))?;
    let seconds = started.elapsed().as_secs_f64();

    Ok(EpochFigures {
        epoch,
        images,
        batches: waits.len(),
        seconds,
        images_per_second: images as f64 / seconds,
        wait_ms: Percentiles::of(&waits),
        interval_ms: Percentiles::of(&intervals),
        fill_ms: Percentiles::of(&fills),
        rss_mib: ResidentMemory::read().map(|memory| memory.current as f64 / MIB),
        waits,
        intervals,
        fills,
    })
}

/// Pools the epochs after the warm-up; `None` when there are none.
fn steady_figures(epochs: &[EpochFigures]) -> Option<SteadyFigures> {
    if epochs.is_empty() {
        return None;
    }
    let images: usize = epochs.iter().map(|e| e.images).sum();
    let seconds: f64 = epochs.iter().map(|e| e.seconds).sum();
    let waits: Vec<Duration> = epochs.iter().flat_map(|e| e.waits.iter().copied()).collect();
    let intervals: Vec<Duration> =
        epochs.iter().flat_map(|e| e.intervals.iter().copied()).collect();
    let fills: Vec<Duration> = epochs.iter().flat_map(|e| e.fills.iter().copied()).collect();
    Some(SteadyFigures {
        epochs: epochs.len(),
        images,
        seconds,
        images_per_second: images as f64 / seconds,
        wait_ms: Percentiles::of(&waits),
        interval_ms: Percentiles::of(&intervals),
        fill_ms: Percentiles::of(&fills),
    })
}

fn format_mib(mib: Option<f64>) -> String {
    mib.map_or_else(|| "n/a".to_string(), |mib| format!("{mib:.1}"))
}

fn format_times(times: &Percentiles) -> String {
    format!("{:.1}/{:.1}/{:.1}", times.p50, times.p99, times.max)
}

fn epoch_line(figures: &EpochFigures) -> String {
    format!(
        "{:>5}  {:>6}  {:>7}  {:>7.2}  {:>8.1}  {:<23}  {:<23}  {}\n",
        figures.epoch,
        figures.images,
        figures.batches,
        figures.seconds,
        figures.images_per_second,
        format_times(&figures.wait_ms),
        format_times(&figures.interval_ms),
        format_mib(figures.rss_mib),
    )
}

fn summary(report: &Report) -> String {
    let mut text = String::new();
    text += "wait: time the consumer waited inside the loader for each batch; interval: time \
             from one batch reaching the consumer to the next; fill: time the loader spent \
             decoding and augmenting a batch\n";
    match &report.steady {
        Some(steady) => {
            text += &format!(
                "steady (epochs 1 to {}, epoch 0 is warm-up): {} images in {:.2} s, {:.1} img/s, \
                 wait {} ms, interval {} ms, fill {} ms (p50/p99/max)\n",
                steady.epochs,
                steady.images,
                steady.seconds,
                steady.images_per_second,
                format_times(&steady.wait_ms),
                format_times(&steady.interval_ms),
                format_times(&steady.fill_ms),
            );
        }
        None => text += "steady: none (one epoch ran, and epoch 0 is warm-up)\n",
    }
    text += &format!("peak RSS (VmHWM): {} MiB\n", format_mib(report.peak_rss_mib));
    let mix = &report.class_mix;
    text += &format!(
        "class mix of epoch 0's plan: {} batches, {:.2} distinct classes per batch (a uniform \
         shuffle gives {:.2}), top class share {:.3}\n",
        mix.batches, mix.mean_distinct, mix.expected_distinct, mix.mean_top_share
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_parses_shuffle_and_blocks() {
        assert!(matches!(parse_order("shuffle"), Ok(Order::Shuffle)));
        let blocks = parse_order("blocks:64:8");
        assert!(matches!(blocks, Ok(Order::Blocks { block: 64, window: 8 })), "{blocks:?}");
    }

    #[test]
    fn order_rejects_bad_text() {
        for text in ["", "random", "blocks", "blocks:64", "blocks:0:8", "blocks:64:0", "blocks:a:8"]
        {
            let message = parse_order(text).unwrap_err();
            assert!(message.contains("blocks:BLOCK:WINDOW"), "{text:?}: {message}");
        }
    }

    #[test]
    fn percentiles_nearest_rank() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&times);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
    }

    #[test]
    fn percentiles_of_single_and_none() {
        let single = Percentiles::of(&[Duration::from_millis(7)]);
        assert_eq!((single.p50, single.p99, single.max), (7.0, 7.0, 7.0));
        let none = Percentiles::of(&[]);
        assert_eq!((none.p50, none.p99, none.max), (0.0, 0.0, 0.0));
    }
}
