//! `train grad-check`: compares autograd's gradients of every layer type the trainer builds
//! with central differences in f64, and prints the relative error per layer type.

use std::fmt::Write;

use expanse_tools::UsageError;
use expanse_trainer::gradcheck::{self, LayerCheck, DEFAULT_THRESHOLD};

/// Options of `train grad-check`.
#[derive(clap::Args, Debug)]
pub struct GradCheckArgs {
    /// Comma-separated layer types to check, all by default: conv, batchnorm, linear, maxpool,
    /// avgpool, relu, lrn, basic-block, basic-block-a, basic-block-c, plain-block,
    /// bottleneck-block, inception, inception-paper, cross-entropy.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,

    /// Maximum relative error |a - n| / max(|a|, |n|, 1e-3) of an entry that passes, where a is
    /// the autograd gradient and n the central-difference gradient.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,

    /// Seed of the layers' parameters and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Checks the layer types of `args`, prints a table (layer, entries checked, max relative
/// error, ok/FAILED) to stdout and one `grad-check failed` line per failed layer type to
/// stderr, and returns `Ok(true)` when all pass.
///
/// # Errors
///
/// A [`UsageError`] for an unknown layer type (the message lists the known ones) or an
/// invalid threshold. Other errors come from libtorch.
pub fn run(args: &GradCheckArgs) -> anyhow::Result<bool> {
    if !(args.threshold.is_finite() && args.threshold > 0.0) {
        let message = format!("--threshold must be a positive number, got {}", args.threshold);
        return Err(UsageError(message).into());
    }
    // A layer named twice is checked once.
    let mut layers: Vec<String> = Vec::new();
    for layer in &args.layers {
        if !layers.contains(layer) {
            layers.push(layer.clone());
        }
    }
    let checks =
        gradcheck::check_layers(&layers, args.threshold, args.seed).map_err(
            |error| match error {
                expanse_trainer::Error::Config(message) => anyhow::Error::new(UsageError(message)),
                other => anyhow::Error::new(other).context("gradient check failed to run"),
            },
        )?;

    expanse_tools::print_stdout(&table(&checks, args))?;
    let failed: Vec<&LayerCheck> = checks.iter().filter(|check| !check.passed).collect();
    // One error line, whatever the number of failures: the table above has every figure.
    let details: Vec<String> = failed
        .iter()
        .map(|check| {
            format!(
                "{}: max relative error {:.3e} at {} (autograd {:e}, central difference {:e})",
                check.layer,
                check.max_relative_error,
                check.worst_entry,
                check.worst_analytic,
                check.worst_numeric
            )
        })
        .collect();
    if !details.is_empty() {
        eprintln!(
            "error: grad-check failed for {} of {} layer types at threshold {:e}: {}",
            failed.len(),
            checks.len(),
            args.threshold,
            details.join("; ")
        );
    }
    Ok(failed.is_empty())
}

/// Formats the result table and a summary line.
fn table(checks: &[LayerCheck], args: &GradCheckArgs) -> String {
    let mut text = String::new();
    let _ =
        writeln!(text, "{:<18} {:>7}  {:>18}  result", "layer", "entries", "max relative error");
    for check in checks {
        let result = if check.passed { "ok" } else { "FAILED" };
        let _ = writeln!(
            text,
            "{:<18} {:>7}  {:>18.3e}  {result}",
            check.layer, check.entries, check.max_relative_error
        );
    }
    let passed = checks.iter().filter(|check| check.passed).count();
    let _ = writeln!(
        text,
        "{passed} of {} layer types pass at threshold {:e} (f64, central differences with step \
         {:e}, seed {})",
        checks.len(),
        args.threshold,
        gradcheck::STEP,
        args.seed
    );
    text
}
