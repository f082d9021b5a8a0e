//! The diagnosis line at the end of a run: which of the usual failure symptoms the metrics
//! show, and what usually helps.
//!
//! The rules look at the last epoch that has both a training and an evaluation line:
//! - collapsed: at least [`Thresholds::collapse_share`] of the evaluated (or training)
//!   predictions go to one class;
//! - underfitting: training error at least [`Thresholds::underfit_error`] while the
//!   evaluation error is within [`Thresholds::gap`] of it;
//! - overfitting: evaluation error more than [`Thresholds::gap`] above the training error.
//!
//! Training error is counted on augmented batches in training mode, as logged, so strong
//! augmentation can put it above the evaluation error; that is not a symptom.
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

/// The limits the rules use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Training error from which a run underfits (0.10).
    pub underfit_error: f64,
    /// Evaluation minus training error from which a run overfits (0.05).
    pub gap: f64,
    /// Share of predictions in one class from which a run has collapsed (0.9).
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
    /// What usually helps.
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
    let eval = metrics.iter().rev().find(|m| m.split == eval_split)?;
    let train = metrics.iter().rev().find(|m| m.split == train_split && m.epoch == eval.epoch)?;
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
    fn a_large_gap_is_overfitting() {
        assert_eq!(symptom(0.01, 0.12, 0.1), Symptom::Overfitting);
    }

    #[test]
    fn high_errors_on_both_splits_are_underfitting() {
        assert_eq!(symptom(0.30, 0.31, 0.1), Symptom::Underfitting);
    }

    #[test]
    fn predictions_of_one_class_are_a_collapse() {
        assert_eq!(symptom(0.9, 0.9, 0.97), Symptom::Collapsed);
    }

    #[test]
    fn low_errors_close_together_are_healthy() {
        assert_eq!(symptom(0.05, 0.07, 0.1), Symptom::Healthy);
    }

    #[test]
    fn the_last_epoch_decides() {
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
    fn no_evaluation_gives_no_diagnosis() {
        let metrics = [line(1, "train", 0.5, 0.1)];
        assert_eq!(diagnose(&metrics, "train", "test", &Thresholds::default()), None);
    }

    #[test]
    fn the_line_names_symptom_figures_and_advice() {
        let text = diverged(3, f64::NAN, 2.5).to_string();
        assert!(text.starts_with("diagnosis: diverged: training loss NaN in epoch 3"), "{text}");
        assert!(text.contains("lower the learning rate"), "{text}");
    }
}
