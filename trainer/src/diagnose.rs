//! The diagnosis line at the end of a run: which of the usual failure symptoms the metrics
//! show, and what usually helps.
//!
//! The rules look at the last epoch that has both a training and an evaluation line, in this
//! order:
//! - diverged: a loss of that epoch is not finite.
//! - collapsed: at least [`Thresholds::collapse_share`] of the evaluated (or training)
//!   predictions go to one class.
//! - overfitting: evaluation error more than [`Thresholds::gap`] above the training error.
//! - underfitting: training error at least [`Thresholds::underfit_error`], with the evaluation
//!   error at most [`Thresholds::gap`] above it.
//!
//! Training error is counted on augmented batches in training mode, as logged, so strong
//! augmentation can put it above the evaluation error, which is not a symptom.
//! A run that stopped on a non-finite loss is diagnosed by [`diverged`].

use std::fmt;

use crate::metrics::EpochMetrics;

/// A failure symptom, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symptom {
    /// The loss became infinite or NaN.
    Diverged,
    /// Nearly every prediction is the same class.
    Collapsed,
    /// Training error is high, and evaluation error is no worse.
    Underfitting,
    /// Evaluation error is well above training error.
    Overfitting,
    /// None of the above.
    Healthy,
}

impl fmt::Display for Symptom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Symptom::Diverged => "diverged",
            Symptom::Collapsed => "collapsed to one class",
            Symptom::Underfitting => "underfitting",
            Symptom::Overfitting => "overfitting",
            Symptom::Healthy => "no symptom",
        })
    }
}

/// Limits of the diagnosis rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Minimum training error of an underfitting run (default 0.10).
    pub underfit_error: f64,
    /// Maximum evaluation minus training error of a run that does not overfit (default 0.05).
    pub gap: f64,
    /// Minimum share of predictions in one class of a collapsed run (default 0.9).
    pub collapse_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { underfit_error: 0.10, gap: 0.05, collapse_share: 0.9 }
    }
}

/// A symptom with the figures that show it and the usual remedies.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnosis {
    /// The symptom seen.
    pub symptom: Symptom,
    /// The figures behind it, e.g. "training error 2.1%, validation error 9.5%".
    pub finding: String,
    /// Usual remedies, empty for a healthy run.
    pub advice: &'static str,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "diagnosis: {}: {}", self.symptom, self.finding)?;
        if !self.advice.is_empty() {
            write!(f, "; {}", self.advice)?;
        }
        Ok(())
    }
}

const DIVERGED_ADVICE: &str = "lower the learning rate (train lr-find finds a stable one), add \
    warm-up, or check the inputs for extreme values";
const COLLAPSED_ADVICE: &str = "lower the learning rate, check that labels match images and \
    that inputs are normalised, and check the class balance";
const UNDERFITTING_ADVICE: &str = "train longer or with a larger learning rate, use a deeper or \
    wider model, or reduce regularisation (weight decay, dropout, augmentation)";
const OVERFITTING_ADVICE: &str = "add regularisation (weight decay, dropout, label smoothing, \
    stronger augmentation), use more data, or stop earlier";

/// Diagnoses a run that stopped with a non-finite loss in `epoch` at learning rate `lr`.
pub fn diverged(epoch: usize, loss: f64, lr: f64) -> Diagnosis {
    Diagnosis {
        symptom: Symptom::Diverged,
        finding: format!("training loss {loss} in epoch {epoch} at learning rate {lr:.4}"),
        advice: DIVERGED_ADVICE,
    }
}

/// Diagnoses a run from its `metrics.jsonl` lines, or returns `None` when no epoch has both
/// a `train_split` and an `eval_split` line.
pub fn diagnose(
    metrics: &[EpochMetrics],
    train_split: &str,
    eval_split: &str,
    thresholds: &Thresholds,
) -> Option<Diagnosis> {
    let (train, eval) =
        metrics.iter().rev().filter(|m| m.split == eval_split).find_map(|eval| {
            let train =
                metrics.iter().rev().find(|m| m.split == train_split && m.epoch == eval.epoch)?;
            Some((train, eval))
        })?;
    let (train_error, eval_error) = (1.0 - train.top1, 1.0 - eval.top1);
    let errors = format!(
        "after epoch {}, training error {:.2}%, {} error {:.2}%",
        eval.epoch,
        100.0 * train_error,
        eval_split,
        100.0 * eval_error
    );
    if !(train.loss.is_finite() && eval.loss.is_finite()) {
        return Some(Diagnosis {
            symptom: Symptom::Diverged,
            finding: format!("{errors}, losses {} and {}", train.loss, eval.loss),
            advice: DIVERGED_ADVICE,
        });
    }
    let share = [eval, train]
        .iter()
        .filter_map(|m| m.top_class_share.map(|share| (share, m.split.as_str())))
        .find(|&(share, _)| share >= thresholds.collapse_share);
    if let Some((share, split)) = share {
        return Some(Diagnosis {
            symptom: Symptom::Collapsed,
            finding: format!(
                "{:.1}% of the {split} predictions are one class; {errors}",
                100.0 * share
            ),
            advice: COLLAPSED_ADVICE,
        });
    }
    let gap = eval_error - train_error;
    let (symptom, advice) = if gap > thresholds.gap {
        (Symptom::Overfitting, OVERFITTING_ADVICE)
    } else if train_error >= thresholds.underfit_error {
        (Symptom::Underfitting, UNDERFITTING_ADVICE)
    } else {
        (Symptom::Healthy, "")
    };
    Some(Diagnosis {
        symptom,
        finding: format!("{errors} (gap {:+.2} points)", 100.0 * gap),
        advice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(epoch: usize, split: &str, error: f64, share: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            split: split.to_string(),
            loss: error,
            top1: 1.0 - error,
            top5: 1.0,
            samples: 100,
            seconds: 1.0,
            images_per_second: 100.0,
            data_wait_seconds: 0.0,
            data_wait_ms: Default::default(),
            peak_rss_mib: 0.0,
            lr: None,
            top_class_share: Some(share),
        }
    }

    fn symptom(train_error: f64, eval_error: f64, eval_share: f64) -> Symptom {
        let metrics = [
            line(1, "train", 0.9, 0.1),
            line(1, "test", 0.9, 0.1),
            line(2, "train", train_error, 0.1),
            line(2, "test", eval_error, eval_share),
        ];
        diagnose(&metrics, "train", "test", &Thresholds::default()).unwrap().symptom
    }

    #[test]
    fn diagnose_large_gap_as_overfitting() {
        assert_eq!(symptom(0.01, 0.12, 0.1), Symptom::Overfitting);
    }

    #[test]
    fn diagnose_high_errors_as_underfitting() {
        assert_eq!(symptom(0.30, 0.31, 0.1), Symptom::Underfitting);
    }

    #[test]
    fn diagnose_one_class_as_collapsed() {
        assert_eq!(symptom(0.9, 0.9, 0.97), Symptom::Collapsed);
    }

    #[test]
    fn diagnose_close_low_errors_as_healthy() {
        assert_eq!(symptom(0.05, 0.07, 0.1), Symptom::Healthy);
    }

    #[test]
    fn diagnose_uses_last_epoch() {
        // Epoch 1 overfits, epoch 2 does not.
        let metrics = [
            line(1, "train", 0.01, 0.1),
            line(1, "test", 0.20, 0.1),
            line(2, "train", 0.04, 0.1),
            line(2, "test", 0.05, 0.1),
        ];
        let diagnosis = diagnose(&metrics, "train", "test", &Thresholds::default()).unwrap();
        assert_eq!(diagnosis.symptom, Symptom::Healthy);
        assert!(diagnosis.finding.contains("after epoch 2"), "{}", diagnosis.finding);
    }

    #[test]
    fn diagnose_without_evaluation_returns_none() {
        let metrics = [line(1, "train", 0.5, 0.1)];
        assert_eq!(diagnose(&metrics, "train", "test", &Thresholds::default()), None);
    }

    #[test]
    fn diagnose_skips_epoch_without_training_line() {
        // Epoch 2 has no training line, so epoch 1 decides.
        let metrics =
            [line(1, "train", 0.01, 0.1), line(1, "test", 0.20, 0.1), line(2, "test", 0.05, 0.1)];
        let diagnosis = diagnose(&metrics, "train", "test", &Thresholds::default()).unwrap();
        assert_eq!(diagnosis.symptom, Symptom::Overfitting);
        assert!(diagnosis.finding.contains("after epoch 1"), "{}", diagnosis.finding);
    }

    #[test]
    fn diverged_line_names_figures_and_advice() {
        let text = diverged(3, f64::NAN, 2.5).to_string();
        assert!(text.starts_with("diagnosis: diverged: training loss NaN in epoch 3"), "{text}");
        assert!(text.contains("lower the learning rate"), "{text}");
    }
}
