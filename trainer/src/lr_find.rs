//! Learning-rate search: the largest rate that does not diverge, by halving, and the sweep
//! that raises the rate step by step and records the loss.
//!
//! Every probe starts from the same fresh weights and batch order (the configuration's
//! seed), so probes differ only in their rate. Nothing is written to disk.
//!
//! - [`halving`] runs probes of `steps` steps at a constant rate, starting at `start` and
//!   halving until a probe is stable (see [`stability`]). It recommends half the largest stable
//!   rate, because the short probe covers only the start of training and a full run needs a
//!   margin below the edge of stability.
//! - [`sweep`] raises the rate exponentially from `start` to `end` over `steps` steps (the
//!   "LR range test" of Smith, "Cyclical Learning Rates for Training Neural Networks", 2017)
//!   and stops once the smoothed loss exceeds four times its minimum. It recommends a tenth
//!   of the rate at the smoothed loss's minimum.

use crate::run::Trainer;
use crate::{Result, TrainConfig};

/// Multiple of a probe's first loss above which the probe is unstable.
pub const BLOW_UP: f64 = 2.0;

/// Multiple of the minimum smoothed loss above which a sweep stops.
pub const SWEEP_STOP: f64 = 4.0;

/// One short run at a constant learning rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The rate.
    pub lr: f64,
    /// Training loss of each step.
    pub losses: Vec<f64>,
    /// Whether the probe counts as stable (see [`stability`]).
    pub stable: bool,
    /// Reason the probe is unstable, or the loss drop of a stable probe.
    pub reason: String,
}

/// Result of [`halving`].
#[derive(Clone, Debug, PartialEq)]
pub struct Halving {
    /// Every probe, from the largest rate down.
    pub probes: Vec<Probe>,
    /// The first stable rate, if any probe was stable.
    pub largest_stable: Option<f64>,
    /// Half of `largest_stable`.
    pub recommended: Option<f64>,
}

/// Returns whether a probe's losses are stable, with the reason in words.
///
/// A stable probe has at least 4 losses, all finite and none above [`BLOW_UP`] times the
/// first. The mean of its last quarter is below both the mean of the first quarter and 0.9
/// times the first loss.
pub fn stability(losses: &[f64]) -> (bool, String) {
    if let Some(step) = losses.iter().position(|loss| !loss.is_finite()) {
        return (false, format!("loss {} at step {}", losses[step], step + 1));
    }
    if losses.len() < 4 {
        return (false, format!("only {} steps; need at least 4", losses.len()));
    }
    let first = losses[0];
    if let Some(step) = losses.iter().position(|&loss| loss > BLOW_UP * first) {
        let loss = losses[step];
        let step = step + 1;
        return (
            false,
            format!("loss {loss:.3} at step {step} exceeds {BLOW_UP} x the first {first:.3}"),
        );
    }
    let quarter = losses.len() / 4;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (head, tail) = (mean(&losses[..quarter]), mean(&losses[losses.len() - quarter..]));
    if tail < head && tail < 0.9 * first {
        (true, format!("loss fell from {first:.3} to {tail:.3} (mean of the last quarter)"))
    } else {
        (
            false,
            format!(
                "loss did not fall: first {first:.3}, mean {head:.3} in the first quarter and \
                 {tail:.3} in the last"
            ),
        )
    }
}

/// Runs one probe of `steps` steps at the constant rate `lr` from fresh weights.
///
/// # Errors
///
/// Configuration, dataset and libtorch errors.
pub fn probe(config: &TrainConfig, lr: f64, steps: usize) -> Result<Probe> {
    let mut trainer = Trainer::probe(config.clone())?;
    let losses = trainer.probe_steps(steps, &|_| lr, &mut |_, _| true)?;
    let (stable, reason) = stability(&losses);
    Ok(Probe { lr, losses, stable, reason })
}

/// Runs probes of `steps` steps, halving the rate from `start` until a probe is stable or the
/// rate falls below `min`. Calls `observe` with each probe as it ends.
///
/// # Errors
///
/// [`crate::Error::Config`] unless `0 < min <= start` with both finite, and the errors of
/// [`probe`].
pub fn halving(
    config: &TrainConfig,
    start: f64,
    min: f64,
    steps: usize,
    observe: &mut dyn FnMut(&Probe),
) -> Result<Halving> {
    if !(start.is_finite() && min.is_finite() && min > 0.0 && start >= min) {
        return Err(crate::Error::Config(format!(
            "the rate search needs 0 < min <= start, got start {start} and min {min}"
        )));
    }
    let mut probes = Vec::new();
    let mut lr = start;
    let mut largest_stable = None;
    while lr >= min {
        let result = probe(config, lr, steps)?;
        observe(&result);
        let stable = result.stable;
        probes.push(result);
        if stable {
            largest_stable = Some(lr);
            break;
        }
        lr /= 2.0;
    }
    Ok(Halving { probes, largest_stable, recommended: largest_stable.map(|lr| lr / 2.0) })
}

/// One step of a sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepPoint {
    /// Rate of the step.
    pub lr: f64,
    /// Training loss of the step.
    pub loss: f64,
    /// Exponential moving average of the losses (factor 0.98, bias corrected).
    pub smoothed: f64,
}

/// Result of [`sweep`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// Every step taken.
    pub points: Vec<SweepPoint>,
    /// Rate at the minimum of the smoothed loss.
    pub min_loss_lr: Option<f64>,
    /// A tenth of `min_loss_lr`.
    pub recommended: Option<f64>,
}

/// Raises the rate exponentially from `start` to `end` over `steps` steps from fresh weights.
/// Stops early when the loss is not finite or its smoothed value exceeds [`SWEEP_STOP`] times
/// its minimum.
///
/// # Errors
///
/// [`crate::Error::Config`] unless `0 < start < end` with both finite and `steps >= 2`. Also
/// configuration, dataset and libtorch errors.
pub fn sweep(config: &TrainConfig, start: f64, end: f64, steps: usize) -> Result<Sweep> {
    if !(start.is_finite() && end.is_finite() && start > 0.0 && end > start && steps >= 2) {
        return Err(crate::Error::Config(format!(
            "the rate sweep needs 0 < start < end and at least 2 steps, got start {start}, \
             end {end}, {steps} steps"
        )));
    }
    let ratio = (end / start).ln() / (steps - 1) as f64;
    let rate = move |step: usize| start * (ratio * step as f64).exp();
    let mut trainer = Trainer::probe(config.clone())?;
    let mut points = Vec::with_capacity(steps);
    let (mut average, mut best) = (0.0, f64::INFINITY);
    let mut keep_going = |step: usize, loss: f64| {
        average = 0.98 * average + 0.02 * loss;
        let smoothed = average / (1.0 - 0.98f64.powi(step as i32 + 1));
        points.push(SweepPoint { lr: rate(step), loss, smoothed });
        best = best.min(smoothed);
        smoothed <= SWEEP_STOP * best
    };
    let losses = trainer.probe_steps(steps, &rate, &mut keep_going)?;
    if let Some(&last) = losses.last().filter(|loss| !loss.is_finite()) {
        points.push(SweepPoint { lr: rate(losses.len() - 1), loss: last, smoothed: last });
    }
    let min_loss_lr = points
        .iter()
        .filter(|point| point.smoothed.is_finite())
        .min_by(|a, b| a.smoothed.total_cmp(&b.smoothed))
        .map(|point| point.lr);
    Ok(Sweep { points, min_loss_lr, recommended: min_loss_lr.map(|lr| lr / 10.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_accepts_falling_losses() {
        let (stable, reason) = stability(&[2.3, 2.2, 2.0, 1.9, 1.7, 1.6, 1.5, 1.4]);
        assert!(stable, "{reason}");
    }

    #[test]
    fn stability_names_nan_loss_step() {
        let (stable, reason) = stability(&[2.3, 2.2, f64::NAN, 1.9]);
        assert!(!stable);
        assert!(reason.contains("step 3"), "{reason}");
    }

    #[test]
    fn stability_rejects_loss_blow_up() {
        let (stable, _) = stability(&[2.3, 5.0, 2.0, 1.9, 1.0, 0.9, 0.8, 0.7]);
        assert!(!stable);
    }

    #[test]
    fn stability_rejects_flat_loss() {
        let (stable, reason) = stability(&[2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3]);
        assert!(!stable);
        assert!(reason.contains("did not fall"), "{reason}");
    }
}
