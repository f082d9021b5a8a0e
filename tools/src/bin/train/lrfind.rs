//! `train lr-find`: the largest stable learning rate by halving, or the rate sweep with its
//! plot.

use std::path::PathBuf;

use expanse_tools::UsageError;
use expanse_trainer::lr_find::{self, Probe, Sweep};

use crate::options::{resolve_config, TrainOptions};

/// Options of `train lr-find`.
#[derive(clap::Args, Debug)]
pub struct LrFindArgs {
    #[command(flatten)]
    pub train: TrainOptions,

    /// Largest rate: the first one halving tries, and the end of the sweep.
    #[arg(long, default_value_t = 10.0)]
    pub max: f64,

    /// Smallest rate: where halving gives up, and the start of the sweep.
    #[arg(long, default_value_t = 1e-5)]
    pub min: f64,

    /// Training steps of each halving probe (default 50), or of the whole sweep (default 300).
    #[arg(long)]
    pub steps: Option<usize>,

    /// Raise the rate exponentially from --min to --max over --steps steps and plot the loss
    /// against it, instead of halving.
    #[arg(long)]
    pub sweep: bool,

    /// Output PNG of the sweep. A CSV of its points is written next to it, with the extension
    /// .csv.
    #[arg(long, default_value = "lr-sweep.png")]
    pub out: PathBuf,
}

/// Runs the halving search or the sweep and prints the result. Returns whether it found a
/// rate.
pub fn run(args: &LrFindArgs) -> anyhow::Result<bool> {
    if !(args.min.is_finite() && args.max.is_finite() && args.min > 0.0 && args.min <= args.max) {
        return Err(UsageError(format!(
            "--min must be positive and at most --max, got --min {} and --max {}",
            args.min, args.max
        ))
        .into());
    }
    let mut train = args.train.clone();
    // The run's own length and schedule do not matter to a probe at a constant rate.
    train.epochs.get_or_insert(1);
    let config = resolve_config(&train)?;
    // Build one probe before the header line, so that bad settings or data give only their
    // error.
    expanse_trainer::Trainer::probe(config.clone())?;
    if args.sweep {
        if args.min >= args.max {
            return Err(UsageError(format!(
                "--sweep needs --min below --max, got --min {} and --max {}",
                args.min, args.max
            ))
            .into());
        }
        expanse_tools::check_output_file("--out", &args.out)?;
        if args.out.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("csv")) {
            return Err(UsageError(format!(
                "--out {} names the CSV that goes next to the plot; give the PNG's path",
                args.out.display()
            ))
            .into());
        }
        let steps = args.steps.unwrap_or(300);
        let sweep = lr_find::sweep(&config, args.min, args.max, steps)?;
        report_sweep(args, &sweep)
    } else {
        let steps = args.steps.unwrap_or(50);
        if steps < 4 {
            return Err(UsageError(format!("--steps must be at least 4, got {steps}")).into());
        }
        println!(
            "{} on {}: probes of {steps} steps of {} samples from the same initial weights",
            config.model,
            config.data.display(),
            config.batch_size
        );
        let mut print = |probe: &Probe| {
            let verdict = if probe.stable { "stable" } else { "unstable" };
            println!("lr {:<10} {verdict:<8} {}", format!("{:.4e}", probe.lr), probe.reason);
        };
        let halving = lr_find::halving(&config, args.max, args.min, steps, &mut print)?;
        match (halving.largest_stable, halving.recommended) {
            (Some(largest), Some(recommended)) => {
                println!("largest stable learning rate {largest:.4e}");
                println!("recommended learning rate {recommended:.4e} (half of it)");
                Ok(true)
            }
            _ => {
                println!(
                    "no stable learning rate down to {:.4e}: check the data, the labels and the \
                     model",
                    args.min
                );
                Ok(false)
            }
        }
    }
}

/// Prints the sweep's figures and writes its CSV and plot.
fn report_sweep(args: &LrFindArgs, sweep: &Sweep) -> anyhow::Result<bool> {
    let mut csv = String::from("lr,loss,smoothed\n");
    for point in &sweep.points {
        csv.push_str(&format!("{},{},{}\n", point.lr, point.loss, point.smoothed));
    }
    let csv_path = args.out.with_extension("csv");
    expanse_tools::write_file_atomically(&csv_path, csv.as_bytes())?;
    crate::lrplot::write_sweep_plot(&args.out, sweep)?;
    let last = sweep.points.last().map_or(f64::NAN, |point| point.lr);
    println!("sweep of {} steps up to learning rate {last:.4e}", sweep.points.len());
    println!("plot {}  points {}", args.out.display(), csv_path.display());
    match (sweep.min_loss_lr, sweep.recommended) {
        (Some(at_min), Some(recommended)) => {
            println!("lowest smoothed loss at learning rate {at_min:.4e}");
            println!("recommended learning rate {recommended:.4e} (a tenth of it)");
            Ok(true)
        }
        _ => {
            println!("no finite loss in the sweep: lower --min");
            Ok(false)
        }
    }
}
