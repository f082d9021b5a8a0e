//! `plot`: draws the training and evaluation curves of one or more `train` runs into a PNG,
//! and prints a table of their final and best errors.
//!
//! ```text
//! plot RUN_DIR... --out curves.png [--metric error|loss] [--x step|epoch] [--label NAME]...
//!      [--title T] [--y-max V] [--width PX] [--height PX]
//! ```
//!
//! Each run gets one colour. Its training curve is a thin solid line: one point per logged
//! window of optimizer steps from `steps.jsonl`, or one point per epoch from `metrics.jsonl`
//! when the run has no `steps.jsonl`. Its evaluation curve is a thick dashed line with a
//! marker per epoch, placed at the step where the epoch ended. This is the kind of plot of
//! Fig. 6 of He et al., "Deep Residual Learning for Image Recognition" (2015): training and
//! test error of several depths against iterations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use expanse_tools::charts::{self, number_or_null, DrawResult, COLOURS, METRICS_FILE};
use expanse_tools::UsageError;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

/// Per-window log of training steps written by `train --log-every N`.
const STEPS_FILE: &str = "steps.jsonl";
/// Configuration written by `train`, read for the batch size.
const CONFIG_FILE: &str = "config.json";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Plot training and evaluation error (or loss) of train runs into a PNG and print \
             their final and best errors"
)]
struct Cli {
    /// Run folders written by `train`, each with metrics.jsonl and optionally steps.jsonl.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,

    /// Output PNG file, replaced atomically.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,

    /// Quantity on the y axis: top-1 error in percent, or mean cross-entropy loss.
    #[arg(long, value_enum, default_value_t = Metric::Error)]
    metric: Metric,

    /// Quantity on the x axis: optimizer steps (needs steps.jsonl in every run) or epochs.
    /// [default: step when every run has steps.jsonl, else epoch]
    #[arg(long, value_enum)]
    x: Option<XAxis>,

    /// Legend name of a run, once per RUN_DIR in the same order. [default: the folder name]
    #[arg(long, value_name = "NAME")]
    label: Vec<String>,

    /// Title above the plot.
    #[arg(long)]
    title: Option<String>,

    /// Top of the y axis, in percent for --metric error. [default: just above the highest value]
    #[arg(long, value_name = "V")]
    y_max: Option<f64>,

    /// Image width in pixels.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(200..=8192))]
    width: u32,

    /// Image height in pixels.
    #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u32).range(150..=8192))]
    height: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Metric {
    Error,
    Loss,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum XAxis {
    Step,
    Epoch,
}

/// The fields of one `metrics.jsonl` line that the plot uses; other fields are ignored.
#[derive(Debug, Deserialize)]
struct EpochRecord {
    epoch: usize,
    split: String,
    samples: u64,
    #[serde(deserialize_with = "number_or_null")]
    loss: f64,
    #[serde(deserialize_with = "number_or_null")]
    top1: f64,
}

/// The fields of one `steps.jsonl` line that the plot uses; other fields are ignored.
#[derive(Debug, Deserialize)]
struct StepRecord {
    /// Global optimizer step at the end of the window.
    step: u64,
    epoch: usize,
    #[serde(deserialize_with = "number_or_null")]
    loss: f64,
    /// Training accuracy over the window.
    #[serde(deserialize_with = "number_or_null")]
    top1: f64,
}

/// The field of `config.json` that the plot uses.
#[derive(Debug, Deserialize)]
struct RunConfig {
    batch_size: u64,
}

/// Loss and top-1 accuracy of one point of a curve.
#[derive(Clone, Copy, Debug)]
struct Measure {
    loss: f64,
    top1: f64,
}

impl Measure {
    fn value(self, metric: Metric) -> f64 {
        match metric {
            Metric::Error => 100.0 * (1.0 - self.top1),
            Metric::Loss => self.loss,
        }
    }
}

/// The logs of one run folder.
struct Run {
    label: String,
    /// Per-epoch training passes, by epoch; a later line for the same epoch (as after a
    /// resume) replaces an earlier one.
    train: BTreeMap<usize, Measure>,
    /// Name of the evaluated split: the first split other than "train" in metrics.jsonl.
    eval_split: Option<String>,
    /// Per-epoch evaluations of `eval_split`, by epoch.
    eval: BTreeMap<usize, Measure>,
    /// Step windows by global step; empty when the run has no steps.jsonl.
    steps: BTreeMap<u64, (usize, Measure)>,
    /// Last logged step of each epoch in `steps`.
    epoch_end_steps: BTreeMap<usize, u64>,
    /// Optimizer steps per epoch, from the batch size in config.json and the samples of the
    /// training passes; `None` without config.json.
    steps_per_epoch: Option<u64>,
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
    check_options(cli)?;
    expanse_tools::check_output_file("--out", &cli.out)?;
    charts::register_font()?;

    let mut runs = Vec::with_capacity(cli.runs.len());
    for (index, dir) in cli.runs.iter().enumerate() {
        let label = match cli.label.get(index) {
            Some(label) => label.clone(),
            None => default_label(dir),
        };
        runs.push(read_run(dir, label)?);
    }

    let x_axis = choose_x_axis(cli, &runs)?;
    let png = render_png(cli, &runs, x_axis)?;
    expanse_tools::write_file_atomically(&cli.out, &png)?;
    expanse_tools::print_stdout(&summary_table(&runs))
}

/// Rejects option values that clap cannot check alone.
fn check_options(cli: &Cli) -> anyhow::Result<()> {
    if !cli.label.is_empty() && cli.label.len() != cli.runs.len() {
        return Err(UsageError(format!(
            "{} --label values for {} run folders; give one per RUN_DIR or none",
            cli.label.len(),
            cli.runs.len()
        ))
        .into());
    }
    if let Some(y_max) = cli.y_max {
        if !(y_max.is_finite() && y_max > 0.0) {
            return Err(UsageError(format!("--y-max {y_max} must be a positive number")).into());
        }
    }
    Ok(())
}

/// Returns the last component of `dir` (after resolving `.` and `..`), for the legend.
fn default_label(dir: &Path) -> String {
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    resolved
        .file_name()
        .map_or_else(|| dir.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// Reads `metrics.jsonl` and, when present, `steps.jsonl` of the run folder `dir`.
fn read_run(dir: &Path, label: String) -> anyhow::Result<Run> {
    if !dir.is_dir() {
        bail!("run folder {} not found", dir.display());
    }
    let metrics_path = dir.join(METRICS_FILE);
    if !metrics_path.is_file() {
        bail!(
            "{} not found; is {} a run folder written by train?",
            metrics_path.display(),
            dir.display()
        );
    }

    let mut run = Run {
        label,
        train: BTreeMap::new(),
        eval_split: None,
        eval: BTreeMap::new(),
        steps: BTreeMap::new(),
        epoch_end_steps: BTreeMap::new(),
        steps_per_epoch: None,
    };
    let mut train_samples = 0;
    for (line_number, record) in read_jsonl::<EpochRecord>(&metrics_path)? {
        check_top1(&metrics_path, line_number, record.top1)?;
        let measure = Measure { loss: record.loss, top1: record.top1 };
        if record.split == "train" {
            // A pass resumed mid-epoch counts fewer samples, so the largest pass is the epoch.
            train_samples = train_samples.max(record.samples);
            run.train.insert(record.epoch, measure);
            continue;
        }
        let eval_split = run.eval_split.get_or_insert_with(|| record.split.clone());
        if *eval_split == record.split {
            run.eval.insert(record.epoch, measure);
        }
    }
    if run.train.is_empty() && run.eval.is_empty() {
        bail!("{} has no records; the run has not finished an epoch", metrics_path.display());
    }

    if let Some(batch_size) = read_batch_size(dir)? {
        // The last batch of an epoch may be partial, so an epoch takes ceil(samples / batch).
        run.steps_per_epoch = Some(train_samples.div_ceil(batch_size)).filter(|&steps| steps > 0);
    }

    let steps_path = dir.join(STEPS_FILE);
    if steps_path.is_file() {
        for (line_number, record) in read_jsonl::<StepRecord>(&steps_path)? {
            check_top1(&steps_path, line_number, record.top1)?;
            let measure = Measure { loss: record.loss, top1: record.top1 };
            run.steps.insert(record.step, (record.epoch, measure));
        }
        for (&step, &(epoch, _)) in &run.steps {
            let end = run.epoch_end_steps.entry(epoch).or_insert(step);
            *end = (*end).max(step);
        }
    }
    Ok(run)
}

/// Returns the batch size in `dir/config.json`, or `None` when the file is missing.
fn read_batch_size(dir: &Path) -> anyhow::Result<Option<u64>> {
    let path = dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(anyhow!("cannot read {}: {error}", path.display())),
    };
    let config: RunConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid run configuration", path.display()))?;
    Ok(Some(config.batch_size).filter(|&size| size > 0))
}

/// Parses each non-blank line of the JSON Lines file `path`, with its 1-based line number.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<(usize, T)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: invalid record", path.display(), index + 1))?;
        records.push((index + 1, record));
    }
    Ok(records)
}

/// Rejects an accuracy outside [0, 1]; NaN (a `null` in the file) passes.
fn check_top1(path: &Path, line_number: usize, top1: f64) -> anyhow::Result<()> {
    if !top1.is_nan() && !(0.0..=1.0).contains(&top1) {
        bail!("{}: line {line_number}: top1 {top1} is outside [0, 1]", path.display());
    }
    Ok(())
}

/// Returns the requested x axis, or step when every run has steps.jsonl and epoch otherwise.
fn choose_x_axis(cli: &Cli, runs: &[Run]) -> anyhow::Result<XAxis> {
    let without_steps: Vec<&Path> = cli
        .runs
        .iter()
        .zip(runs)
        .filter(|(_, run)| run.steps.is_empty())
        .map(|(dir, _)| dir.as_path())
        .collect();
    match cli.x {
        Some(XAxis::Step) if !without_steps.is_empty() => {
            let names: Vec<String> =
                without_steps.iter().map(|dir| dir.display().to_string()).collect();
            Err(UsageError(format!(
                "--x step needs {STEPS_FILE}, which is missing or empty in {}; use --x epoch",
                names.join(", ")
            ))
            .into())
        }
        Some(x_axis) => Ok(x_axis),
        None if without_steps.is_empty() => Ok(XAxis::Step),
        None => Ok(XAxis::Epoch),
    }
}

impl Run {
    /// Returns the step at which `epoch` ended: `epoch` times the steps per epoch when
    /// config.json gives the batch size. Without it, the epoch's last logged step window, or
    /// for an epoch without windows, `epoch` times the steps per epoch of the last epoch with
    /// windows.
    ///
    /// NOTE: without config.json an epoch's end is placed at its last logged window, up to
    /// `--log-every` steps early, because `train` writes no window at the end of an epoch.
    fn epoch_end_step(&self, epoch: usize) -> f64 {
        if epoch == 0 {
            return 0.0;
        }
        if let Some(steps) = self.steps_per_epoch {
            return (epoch as u64 * steps) as f64;
        }
        if let Some(&step) = self.epoch_end_steps.get(&epoch) {
            return step as f64;
        }
        match self.epoch_end_steps.last_key_value() {
            Some((&last_epoch, &last_step)) if last_epoch > 0 => {
                epoch as f64 * last_step as f64 / last_epoch as f64
            }
            _ => 0.0,
        }
    }

    /// Returns the training curve as (x, value) points in x order, non-finite values left out.
    fn train_curve(&self, x_axis: XAxis, metric: Metric) -> Vec<(f64, f64)> {
        let points: Vec<(f64, f64)> = if self.steps.is_empty() {
            // Without steps.jsonl the x axis is epochs (see `choose_x_axis`).
            self.train.iter().map(|(&epoch, m)| (epoch as f64, m.value(metric))).collect()
        } else {
            self.steps
                .iter()
                .map(|(&step, &(epoch, m))| (self.step_x(step, epoch, x_axis), m.value(metric)))
                .collect()
        };
        points.into_iter().filter(|(_, y)| y.is_finite()).collect()
    }

    /// Returns the evaluation curve as (x, value) points, one per epoch.
    fn eval_curve(&self, x_axis: XAxis, metric: Metric) -> Vec<(f64, f64)> {
        self.eval
            .iter()
            .map(|(&epoch, m)| {
                let x = match x_axis {
                    XAxis::Step => self.epoch_end_step(epoch),
                    XAxis::Epoch => epoch as f64,
                };
                (x, m.value(metric))
            })
            .filter(|(_, y)| y.is_finite())
            .collect()
    }

    /// Returns the x of a step window: the step itself, or on the epoch axis the fraction of
    /// epoch `epoch` done at `step` added to the epochs before it.
    fn step_x(&self, step: u64, epoch: usize, x_axis: XAxis) -> f64 {
        match x_axis {
            XAxis::Step => step as f64,
            XAxis::Epoch => {
                let start = self.epoch_end_step(epoch.saturating_sub(1));
                let end = self.epoch_end_step(epoch);
                let done = if end > start { (step as f64 - start) / (end - start) } else { 1.0 };
                epoch.saturating_sub(1) as f64 + done.clamp(0.0, 1.0)
            }
        }
    }
}

/// One drawn run: its colour and curves.
struct Curves<'a> {
    run: &'a Run,
    colour: RGBColor,
    train: Vec<(f64, f64)>,
    eval: Vec<(f64, f64)>,
}

/// Draws every run into an RGB buffer and returns it encoded as PNG.
fn render_png(cli: &Cli, runs: &[Run], x_axis: XAxis) -> anyhow::Result<Vec<u8>> {
    let curves: Vec<Curves> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| Curves {
            run,
            colour: COLOURS[index % COLOURS.len()],
            train: run.train_curve(x_axis, cli.metric),
            eval: run.eval_curve(x_axis, cli.metric),
        })
        .collect();

    charts::render_png(cli.width, cli.height, |root| draw_chart(cli, &curves, x_axis, root))
}

/// Draws the axes, curves and legend on `root`, a white area of `cli.width` x `cli.height`.
fn draw_chart(
    cli: &Cli,
    curves: &[Curves],
    x_axis: XAxis,
    root: &DrawingArea<BitMapBackend, Shift>,
) -> DrawResult {
    let points = curves.iter().flat_map(|c| c.train.iter().chain(&c.eval));
    let x_max = points.clone().map(|&(x, _)| x).fold(0.0, f64::max);
    let y_max_data = points.map(|&(_, y)| y).fold(0.0, f64::max);
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let y_max = cli.y_max.unwrap_or(if y_max_data > 0.0 { y_max_data * 1.05 } else { 1.0 });

    let mut builder = ChartBuilder::on(root);
    builder.margin(20).x_label_area_size(50).y_label_area_size(70);
    if let Some(title) = &cli.title {
        builder.caption(title, ("sans-serif", 28));
    }
    let mut chart = builder.build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    let x_label = |x: &f64| match x_axis {
        XAxis::Step => format!("{x:.0}"),
        XAxis::Epoch => format!("{x}"),
    };
    chart
        .configure_mesh()
        .x_label_formatter(&x_label)
        .x_desc(match x_axis {
            XAxis::Step => "iterations",
            XAxis::Epoch => "epochs",
        })
        .y_desc(match cli.metric {
            Metric::Error => "error (%)",
            Metric::Loss => "loss",
        })
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 20))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    // plotters does not clip to the plotting area, so lines are cut at y_max here.
    for curve in curves {
        let colour = curve.colour;
        let thin = colour.stroke_width(1);
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            .label(format!("{} train", curve.run.label))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], thin));
        for piece in clip_below(&curve.train, y_max) {
            chart.draw_series(LineSeries::new(piece, thin))?;
        }

        let thick = colour.stroke_width(3);
        if let Some(eval_split) = curve.run.eval_split.as_deref() {
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
                .label(format!("{} {eval_split}", curve.run.label))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], thick));
        }
        for piece in clip_below(&curve.eval, y_max) {
            chart.draw_series(DashedLineSeries::new(piece, 10, 6, thick))?;
        }
        let markers = curve.eval.iter().filter(|&&(_, y)| y <= y_max);
        chart.draw_series(markers.map(|&point| Circle::new(point, 4, colour.filled())))?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Splits the polyline `points` into the pieces at or below `y_max`, cutting each segment
/// that crosses `y_max` where it crosses.
fn clip_below(points: &[(f64, f64)], y_max: f64) -> Vec<Vec<(f64, f64)>> {
    let mut pieces = Vec::new();
    let mut piece: Vec<(f64, f64)> = Vec::new();
    let crossing = |(x0, y0): (f64, f64), (x1, y1): (f64, f64)| {
        (x0 + (x1 - x0) * (y_max - y0) / (y1 - y0), y_max)
    };
    for (index, &point) in points.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| points[i]);
        match (previous, point.1 <= y_max) {
            (Some(before), true) if before.1 > y_max => {
                piece.push(crossing(before, point));
                piece.push(point);
            }
            (_, true) => piece.push(point),
            (Some(before), false) if before.1 <= y_max => {
                piece.push(crossing(before, point));
                pieces.push(std::mem::take(&mut piece));
            }
            (_, false) => {}
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// Formats a table of each run's last training error, last evaluation error and best
/// evaluation error with its epoch, in percent.
fn summary_table(runs: &[Run]) -> String {
    let name_width = runs.iter().map(|run| run.label.len()).max().unwrap_or(0).max(3);
    let mut table = format!(
        "{:<name_width$}  {:>6}  {:>11}  {:>5}  {:>10}  {:>15}  {:>10}\n",
        "run", "epochs", "train error", "split", "eval error", "best eval error", "best epoch"
    );
    for run in runs {
        let last_epoch = run.train.keys().chain(run.eval.keys()).max().copied().unwrap_or(0);
        let train_error = run.train.values().next_back().map(|m| 1.0 - m.top1);
        let eval_error = run.eval.values().next_back().map(|m| 1.0 - m.top1);
        let best = run
            .eval
            .iter()
            .filter(|(_, m)| m.top1.is_finite())
            .max_by(|(_, a), (_, b)| a.top1.total_cmp(&b.top1))
            .map(|(&epoch, m)| (epoch, 1.0 - m.top1));
        table.push_str(&format!(
            "{:<name_width$}  {:>6}  {:>11}  {:>5}  {:>10}  {:>15}  {:>10}\n",
            run.label,
            last_epoch,
            percent(train_error),
            run.eval_split.as_deref().unwrap_or("-"),
            percent(eval_error),
            percent(best.map(|(_, error)| error)),
            best.map_or_else(|| "-".to_string(), |(epoch, _)| epoch.to_string()),
        ));
    }
    table
}

/// Formats an error in [0, 1] as a percentage with two decimals, or "-" when unknown.
fn percent(error: Option<f64>) -> String {
    match error {
        Some(error) if error.is_finite() => format!("{:.2}%", 100.0 * error),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with_steps(windows: &[(u64, usize)]) -> Run {
        let measure = Measure { loss: 1.0, top1: 0.5 };
        let steps: BTreeMap<u64, (usize, Measure)> =
            windows.iter().map(|&(step, epoch)| (step, (epoch, measure))).collect();
        let mut epoch_end_steps = BTreeMap::new();
        for &(step, epoch) in windows {
            let end = epoch_end_steps.entry(epoch).or_insert(step);
            *end = (*end).max(step);
        }
        Run {
            label: "run".into(),
            train: BTreeMap::new(),
            eval_split: None,
            eval: BTreeMap::new(),
            steps,
            epoch_end_steps,
            steps_per_epoch: None,
        }
    }

    #[test]
    fn clip_below_cuts_at_crossings() {
        let points = [(0.0, 0.0), (1.0, 20.0), (2.0, 20.0), (3.0, 0.0), (4.0, 5.0)];
        let pieces = clip_below(&points, 10.0);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0], [(0.0, 0.0), (0.5, 10.0)]);
        assert_eq!(pieces[1], [(2.5, 10.0), (3.0, 0.0), (4.0, 5.0)]);
    }

    #[test]
    fn clip_below_drops_all_above() {
        assert!(clip_below(&[(0.0, 50.0), (1.0, 60.0)], 10.0).is_empty());
    }

    #[test]
    fn epoch_end_step_from_windows() {
        let run = run_with_steps(&[(20, 1), (40, 1), (47, 1), (67, 2), (94, 2)]);
        assert_eq!(run.epoch_end_step(0), 0.0);
        assert_eq!(run.epoch_end_step(1), 47.0);
        assert_eq!(run.epoch_end_step(2), 94.0);
        // Epoch 3 has no windows: 3 times the 47 steps per epoch of epoch 2.
        assert_eq!(run.epoch_end_step(3), 141.0);
    }

    #[test]
    fn epoch_end_step_from_batch_size() {
        let mut run = run_with_steps(&[(20, 1), (40, 1), (60, 2)]);
        run.steps_per_epoch = Some(47);
        assert_eq!(run.epoch_end_step(1), 47.0);
        assert_eq!(run.epoch_end_step(2), 94.0);
        assert_eq!(run.step_x(60, 2, XAxis::Epoch), 1.0 + 13.0 / 47.0);
    }

    #[test]
    fn step_x_on_epoch_axis() {
        let run = run_with_steps(&[(50, 1), (100, 1), (150, 2), (200, 2)]);
        assert_eq!(run.step_x(50, 1, XAxis::Epoch), 0.5);
        assert_eq!(run.step_x(150, 2, XAxis::Epoch), 1.5);
        assert_eq!(run.step_x(150, 2, XAxis::Step), 150.0);
    }
}
