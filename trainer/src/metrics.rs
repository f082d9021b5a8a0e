//! Accuracy counting and the `metrics.jsonl` log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::{Error, Result};

/// Sums over the batches of one pass: loss and top-1/top-5 hits.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Sum of per-sample losses.
    pub loss_sum: f64,
    /// Samples whose label is the highest score.
    pub top1: u64,
    /// Samples whose label is among the five highest scores (all scores if fewer classes).
    pub top5: u64,
    /// Samples counted.
    pub samples: u64,
    /// Samples predicted (top-1) as each class.
    pub predicted: Vec<u64>,
}

impl Tally {
    /// Adds a batch: `logits` N x classes, `labels` N (int64), `loss_sum` summed over it.
    pub fn add(&mut self, logits: &Tensor, labels: &Tensor, loss_sum: f64) {
        let (top1, top5) = top_k_hits(logits, labels);
        let classes = logits.size()[1].max(0) as usize;
        if self.predicted.len() < classes {
            self.predicted.resize(classes, 0);
        }
        let predictions = logits.argmax(1, false).bincount::<Tensor>(None, classes as i64);
        let counts = Vec::<i64>::try_from(&predictions).unwrap_or_default();
        for (total, count) in self.predicted.iter_mut().zip(counts) {
            *total += count.max(0) as u64;
        }
        self.loss_sum += loss_sum;
        self.top1 += top1;
        self.top5 += top5;
        self.samples += labels.size()[0] as u64;
    }

    /// Mean loss per sample.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    /// Top-1 accuracy in [0, 1].
    pub fn top1(&self) -> f64 {
        self.top1 as f64 / self.samples.max(1) as f64
    }

    /// Top-5 accuracy in [0, 1].
    pub fn top5(&self) -> f64 {
        self.top5 as f64 / self.samples.max(1) as f64
    }

    /// Share of the samples predicted as the most predicted class, in [0, 1]; near 1 when a
    /// network has collapsed to one class.
    pub fn top_class_share(&self) -> f64 {
        let most = self.predicted.iter().copied().max().unwrap_or(0);
        most as f64 / self.samples.max(1) as f64
    }

    /// Summarises a finished pass over `split` that took `elapsed`, with the time each batch
    /// waited for the loader.
    pub fn metrics(
        &self,
        epoch: usize,
        split: &str,
        elapsed: std::time::Duration,
        waits: &WaitTimes,
        lr: Option<f64>,
    ) -> EpochMetrics {
        let seconds = elapsed.as_secs_f64();
        let peak = expanse_dataset::loader::ResidentMemory::read().map_or(0, |m| m.peak);
        EpochMetrics {
            epoch,
            split: split.to_string(),
            loss: self.loss(),
            top1: self.top1(),
            top5: self.top5(),
            samples: self.samples,
            seconds,
            images_per_second: self.samples as f64 / seconds.max(1e-9),
            data_wait_seconds: waits.total(),
            data_wait_ms: waits.summary(),
            peak_rss_mib: peak as f64 / (1024.0 * 1024.0),
            lr,
            top_class_share: Some(self.top_class_share()),
        }
    }
}

/// Counts the samples whose label is the best score, and among the five best.
pub fn top_k_hits(logits: &Tensor, labels: &Tensor) -> (u64, u64) {
    let classes = logits.size()[1];
    let k = classes.min(5);
    let (_, best) = logits.topk(k, 1, true, true);
    let hits = best.eq_tensor(&labels.unsqueeze(1));
    let top1 = i64::try_from(hits.narrow(1, 0, 1).sum(tch::Kind::Int64)).unwrap_or(0);
    let top5 = i64::try_from(hits.sum(tch::Kind::Int64)).unwrap_or(0);
    (top1 as u64, top5 as u64)
}

/// One line of `metrics.jsonl`: one epoch of one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch, counted from 1.
    pub epoch: usize,
    /// "train" or the evaluated split's name.
    pub split: String,
    /// Mean cross-entropy per sample (with label smoothing when training uses it).
    pub loss: f64,
    /// Top-1 accuracy in [0, 1]; on the train split, measured on augmented batches.
    pub top1: f64,
    /// Top-5 accuracy in [0, 1].
    pub top5: f64,
    /// Samples seen.
    pub samples: u64,
    /// Wall time of the pass in seconds.
    pub seconds: f64,
    /// Samples per second over the pass.
    pub images_per_second: f64,
    /// Seconds the pass waited for the loader.
    pub data_wait_seconds: f64,
    /// Per-batch wait for the loader: median, 99th percentile and worst, in milliseconds.
    #[serde(default)]
    pub data_wait_ms: WaitSummary,
    /// Peak resident memory of the process at the end of the pass, in MiB (0 where unknown).
    #[serde(default)]
    pub peak_rss_mib: f64,
    /// Learning rate at the end of the pass (training only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
    /// Share of the samples predicted (top-1) as the most predicted class.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub top_class_share: Option<f64>,
}

/// How long each batch of a pass waited for the loader.
#[derive(Clone, Debug, Default)]
pub struct WaitTimes {
    seconds: Vec<f64>,
}

impl WaitTimes {
    /// Records one batch's wait.
    pub fn push(&mut self, wait: std::time::Duration) {
        self.seconds.push(wait.as_secs_f64());
    }

    /// Total seconds waited.
    pub fn total(&self) -> f64 {
        self.seconds.iter().sum()
    }

    /// Median, 99th percentile (nearest rank) and worst wait, in milliseconds.
    pub fn summary(&self) -> WaitSummary {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index] * 1000.0
        };
        WaitSummary { p50: rank(0.5), p99: rank(0.99), max: rank(1.0) }
    }
}

/// Quantiles of the per-batch data wait, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitSummary {
    /// Median.
    pub p50: f64,
    /// 99th percentile, nearest rank.
    pub p99: f64,
    /// Worst.
    pub max: f64,
}

/// File name of the metrics log in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends one line to `metrics.jsonl` and syncs it, so a crash loses at most the line being
/// written.
pub fn append_metrics(run_dir: &Path, metrics: &EpochMetrics) -> Result<()> {
    append_line(&run_dir.join(METRICS_FILE), metrics, true)
}

/// Appends `value` as one JSON line to `path`, syncing the data when `sync` is set.
fn append_line(path: &Path, value: &impl Serialize, sync: bool) -> Result<()> {
    let mut line = serde_json::to_string(value)
        .map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
    line.push('\n');
    let mut file =
        OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(line.as_bytes()).map_err(|e| Error::io(path, e))?;
    if sync {
        file.sync_data().map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Reads every line of `metrics.jsonl`; a missing file gives no line.
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochMetrics>> {
    let path = run_dir.join(METRICS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|source| Error::Json { path: path.clone(), source })
        })
        .collect()
}

/// Rewrites `metrics.jsonl` keeping only the lines of epochs up to `last_epoch`, so that a
/// resumed run does not repeat the lines of epochs it trains again.
pub fn truncate_metrics(run_dir: &Path, last_epoch: usize) -> Result<()> {
    let kept: Vec<EpochMetrics> =
        read_metrics(run_dir)?.into_iter().filter(|m| m.epoch <= last_epoch).collect();
    let mut text = String::new();
    for metrics in &kept {
        let path = run_dir.join(METRICS_FILE);
        text.push_str(
            &serde_json::to_string(metrics).map_err(|source| Error::Json { path, source })?,
        );
        text.push('\n');
    }
    crate::checkpoint::write_atomic(&run_dir.join(METRICS_FILE), text.as_bytes())
}

/// File name of the per-window training log in a run directory.
pub const STEPS_FILE: &str = "steps.jsonl";

/// One line of `steps.jsonl`: the training steps since the previous line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer steps taken at the end of the window, over the whole run.
    pub step: usize,
    /// Epoch in progress, counted from 1.
    pub epoch: usize,
    /// Samples in the window.
    pub samples: u64,
    /// Mean training loss per sample over the window (main classifier).
    pub loss: f64,
    /// Top-1 accuracy over the window's augmented samples, in [0, 1].
    pub top1: f64,
    /// Learning rate of the window's last step.
    pub lr: f64,
}

/// Appends one line to `steps.jsonl`. Unlike `metrics.jsonl` it is not synced: a crash may
/// lose the last lines, which the resumed run writes again.
pub fn append_steps(run_dir: &Path, steps: &StepMetrics) -> Result<()> {
    append_line(&run_dir.join(STEPS_FILE), steps, false)
}

/// Rewrites `steps.jsonl` keeping the lines up to optimizer step `last_step`, the position a
/// resumed run continues from. Lines that do not parse (a torn last line) are dropped.
pub fn truncate_steps(run_dir: &Path, last_step: usize) -> Result<()> {
    let path = run_dir.join(STEPS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut retained = String::new();
    for line in text.lines() {
        match serde_json::from_str::<StepMetrics>(line) {
            Ok(steps) if steps.step <= last_step => {
                retained.push_str(line);
                retained.push('\n');
            }
            _ => {}
        }
    }
    crate::checkpoint::write_atomic(&path, retained.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_hits() {
        // Three samples, six classes. Sample 0: label is best. Sample 1: label is 3rd best.
        // Sample 2: label is the worst of six, outside the top five.
        let logits = Tensor::from_slice(&[
            9.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, //
            1.0, 2.0, 9.0, 8.0, 7.0, 0.0, //
            1.0, 2.0, 3.0, 4.0, 5.0, 0.5,
        ])
        .view([3, 6]);
        let labels = Tensor::from_slice(&[0i64, 4, 5]);
        assert_eq!(top_k_hits(&logits, &labels), (1, 2));
    }

    #[test]
    fn truncating_steps_keeps_lines_up_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        for step in [10, 20, 30] {
            let line = StepMetrics { step, epoch: 1, samples: 8, loss: 1.0, top1: 0.5, lr: 0.1 };
            append_steps(dir.path(), &line).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(STEPS_FILE))
            .unwrap()
            .write_all(b"{\"step\": 4")
            .unwrap();
        truncate_steps(dir.path(), 25).unwrap();
        let text = std::fs::read_to_string(dir.path().join(STEPS_FILE)).unwrap();
        let steps: Vec<usize> = text
            .lines()
            .map(|line| serde_json::from_str::<StepMetrics>(line).unwrap().step)
            .collect();
        assert_eq!(steps, vec![10, 20]);
    }

    #[test]
    fn wait_quantiles_are_nearest_rank() {
        let mut waits = WaitTimes::default();
        for ms in (1..=200).rev() {
            waits.push(std::time::Duration::from_millis(ms));
        }
        let summary = waits.summary();
        assert!((summary.p50 - 100.0).abs() < 1e-6, "{summary:?}");
        assert!((summary.p99 - 198.0).abs() < 1e-6, "{summary:?}");
        assert!((summary.max - 200.0).abs() < 1e-6, "{summary:?}");
        assert!((waits.total() - 20.1).abs() < 1e-9);
        assert_eq!(WaitTimes::default().summary(), WaitSummary::default());
    }
}
