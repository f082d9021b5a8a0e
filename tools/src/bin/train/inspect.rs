//! `train inspect RUN`: draws the first-layer filters, the activation statistics of chosen
//! layers, and weight and gradient histograms of a checkpoint's network into a folder, and
//! prints a table of the activation statistics.

use std::path::{Path, PathBuf};

use anyhow::Context;
use expanse_tools::charts::{self, BarRow, BarSeries, HistogramPanel};
use expanse_tools::UsageError;
use expanse_trainer::inspect::{self, Histogram, InspectOptions, Inspection};
use expanse_trainer::Trainer;

/// Folder inside the run directory that receives the output by default.
const DEFAULT_FOLDER: &str = "inspect";
/// Number of bins per histogram.
const HISTOGRAM_BINS: usize = 40;

/// Options of `train inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Run directory (or its checkpoint.ot).
    #[arg(value_name = "RUN")]
    pub run: PathBuf,

    /// Output folder, created when missing. [default: RUN/inspect]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Number of samples, from the start of the split, for the activation statistics and the
    /// gradients.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: u64,

    /// Split the samples come from, with the run's evaluation preprocessing. [default: the
    /// run's training split]
    #[arg(long)]
    pub split: Option<String>,

    /// Layers whose activations are measured, by the dotted names of `model summary`
    /// (comma separated). [default: every batch norm, or every convolution without them]
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub layers: Vec<String>,
}

/// Inspects the checkpoint of `args.run` and writes filters.png, activations.png,
/// weights.png, gradients.png and inspect.json into the output folder.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    // A checkpoint file selects the run directory that contains it. The parent of a bare file
    // name is the empty path, which means the working directory.
    let run_dir = match args.run.parent() {
        Some(parent) if args.run.is_file() && parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) if args.run.is_file() => parent,
        _ => args.run.as_path(),
    };
    if !run_dir.is_dir() {
        let message = format!("run folder {} not found", args.run.display());
        return Err(UsageError(message).into());
    }
    let trainer = Trainer::open_for_evaluation(run_dir)
        .with_context(|| format!("failed to open the run {}", run_dir.display()))?;

    let options = InspectOptions {
        samples: usize::try_from(args.samples).unwrap_or(usize::MAX),
        split: args.split.clone().unwrap_or_else(|| trainer.config().train_split.clone()),
        layers: args.layers.clone(),
        bins: HISTOGRAM_BINS,
    };
    let inspection = inspect::inspect(&trainer, &options)
        .with_context(|| format!("failed to inspect the run {}", run_dir.display()))?;
    // The folder is created only now, so that a failed inspection leaves nothing behind.
    let out = args.out.clone().unwrap_or_else(|| run_dir.join(DEFAULT_FOLDER));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("failed to create the output folder {}", out.display()))?;

    write_pictures(&inspection, &out)?;
    let json = serde_json::to_vec_pretty(&inspection).context("failed to encode inspect.json")?;
    expanse_tools::write_file_atomically(&out.join("inspect.json"), &json)?;
    expanse_tools::print_stdout(&summary(&inspection, &out))
}

/// Writes filters.png (when the network has a convolution), activations.png, weights.png and
/// gradients.png into `out`.
fn write_pictures(inspection: &Inspection, out: &Path) -> anyhow::Result<()> {
    charts::register_font()?;
    if let Some(filters) = &inspection.filters {
        let png = charts::filter_grid(filters.shape, &filters.values)
            .with_context(|| format!("failed to draw the filters of {}", filters.name))?;
        expanse_tools::write_file_atomically(&out.join("filters.png"), &png)?;
    }

    if !inspection.activations.is_empty() {
        let rows: Vec<BarRow> = inspection
            .activations
            .iter()
            .map(|stats| BarRow {
                name: &stats.layer,
                values: vec![
                    stats.mean,
                    stats.dead_fraction,
                    stats.mean_abs_correlation.unwrap_or(f64::NAN),
                ],
            })
            .collect();
        let series = [
            BarSeries { title: "mean of max(0, output)", range: None },
            BarSeries { title: "dead channels (fraction)", range: Some((0.0, 1.0)) },
            BarSeries { title: "mean |correlation| between channels", range: Some((0.0, 1.0)) },
        ];
        let title = format!(
            "activations of {} after epoch {}, {} samples of {}",
            inspection.model, inspection.epochs_done, inspection.samples, inspection.split
        );
        let png = charts::bar_chart(&title, &series, &rows)?;
        expanse_tools::write_file_atomically(&out.join("activations.png"), &png)?;
    }

    let weights_title =
        format!("weights of {} after epoch {}", inspection.model, inspection.epochs_done);
    write_histograms(&out.join("weights.png"), &weights_title, &inspection.weights)?;
    let gradients_title = format!(
        "gradients of {} after epoch {} (loss {:.4} on {} samples of {})",
        inspection.model,
        inspection.epochs_done,
        inspection.loss,
        inspection.samples,
        inspection.split
    );
    write_histograms(&out.join("gradients.png"), &gradients_title, &inspection.gradients)
}

/// Draws `histograms` as a grid into the PNG file `path`. Writes nothing when there are none.
fn write_histograms(path: &Path, title: &str, histograms: &[Histogram]) -> anyhow::Result<()> {
    if histograms.is_empty() {
        return Ok(());
    }
    let panels: Vec<HistogramPanel> = histograms
        .iter()
        .map(|histogram| HistogramPanel {
            title: &histogram.name,
            note: format!(
                "mean {}  std {}  zeros {}",
                charts::compact(histogram.mean),
                charts::compact(histogram.std),
                histogram.zeros
            ),
            low: histogram.low,
            high: histogram.high,
            counts: &histogram.counts,
        })
        .collect();
    let png = charts::histogram_grid(title, &panels)?;
    expanse_tools::write_file_atomically(path, &png)
}

/// Formats the header and the table of activation statistics printed on stdout.
fn summary(inspection: &Inspection, out: &Path) -> String {
    let mut text = format!(
        "{} after epoch {} (step {}): {} samples of {}, loss {:.4}\n",
        inspection.model,
        inspection.epochs_done,
        inspection.step,
        inspection.samples,
        inspection.split,
        inspection.loss
    );
    let width = inspection.activations.iter().map(|s| s.layer.len()).max().unwrap_or(0).max(5);
    text.push_str(&format!(
        "{:<width$}  {:<11}  {:>8}  {:>10}  {:>7}  {:>6}\n",
        "layer", "kind", "channels", "mean", "dead %", "corr"
    ));
    for stats in &inspection.activations {
        let correlation =
            stats.mean_abs_correlation.map_or_else(|| "-".to_string(), |c| format!("{c:.3}"));
        text.push_str(&format!(
            "{:<width$}  {:<11}  {:>8}  {:>10.4}  {:>7.1}  {:>6}\n",
            stats.layer,
            stats.kind,
            stats.channels,
            stats.mean,
            100.0 * stats.dead_fraction,
            correlation
        ));
    }
    text.push_str(&format!("wrote {}\n", out.display()));
    text
}
