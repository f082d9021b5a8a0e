//! The resolved configuration of a run, written to `config.json` in the run directory.

use std::path::{Path, PathBuf};

use expanse_dataset::loader::Augmentation;
use serde::{Deserialize, Serialize};

use crate::device::Precision;
use crate::optim::{LearningRate, Schedule};
use crate::{Error, Result};

/// Everything that determines a run, so that `config.json` alone reproduces it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Shard set folder (made by `shardify`).
    pub data: PathBuf,
    /// Split trained on.
    pub train_split: String,
    /// Split evaluated after each epoch.
    pub eval_split: String,
    /// Content hash of the training split when the run started (from the shard manifest);
    /// resuming on other data is rejected. Empty skips the check.
    #[serde(default)]
    pub train_content_hash: String,
    /// Model name (see [`crate::model::model_names_help`]).
    pub model: String,
    /// Epochs to train.
    pub epochs: usize,
    /// Samples per training step.
    pub batch_size: usize,
    /// Samples per evaluation batch.
    pub eval_batch_size: usize,
    /// Learning rate and schedule.
    pub lr: LearningRate,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum instead of the classical form.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Whether batch-norm parameters and biases are decayed too.
    pub decay_bn_and_bias: bool,
    /// Label smoothing of the cross-entropy loss, 0 to disable.
    pub label_smoothing: f64,
    /// L1 weight decay: `l1_decay * sign(w)` is added to the gradient of every decayed
    /// weight, 0 to disable.
    #[serde(default)]
    pub l1_decay: f64,
    /// Dropout rate before the classifier; `None` keeps the model's own (0 for ResNets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// Part of the training split to train on, and records of it to evaluate on instead of
    /// `eval_split`, which then names that part (see [`Selection`]). `None` uses the splits
    /// whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    /// Seed of weight initialisation, epoch order and augmentation.
    pub seed: u64,
    /// Threads of libtorch and of the augmentation pool.
    pub threads: usize,
    /// Batches prepared ahead of the training step.
    pub prefetch: usize,
    /// Optimizer steps between mid-epoch checkpoints; 0 checkpoints at epoch ends only.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Training steps between lines of `steps.jsonl` (loss and error of the window), which
    /// also ends at each epoch's end; 0 logs epochs only.
    #[serde(default)]
    pub log_every: usize,
    /// Device, precision and memory layout.
    #[serde(default)]
    pub compute: Compute,
    /// In a data-parallel run, normalise with batch statistics over all ranks' batches
    /// (synchronised batch norm) instead of each rank's own.
    #[serde(default)]
    pub sync_batch_norm: bool,
    /// Training augmentation: a recipe, or the crop-flip-normalise of fixed-shape sets with
    /// the normalisation statistics resolved from the shard set.
    pub train_augment: Augmentation,
    /// Evaluation preprocessing. A recipe with several views (ten-crop) has its softmax
    /// scores averaged over each sample's views.
    pub eval_augment: Augmentation,
}

/// The device, precision and memory layout of a run. None of it changes what is learned, up
/// to rounding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Compute {
    /// `cpu`, `cuda`, `cuda:N` or `auto` (see [`crate::device::resolve`]).
    pub device: String,
    /// f32, or mixed precision on CUDA.
    pub precision: Precision,
    /// Channels-last (NHWC) memory layout of images and convolution weights, which tensor
    /// cores prefer.
    pub channels_last: bool,
    /// Let cuDNN time its convolution algorithms on the first batches and keep the fastest.
    pub cudnn_benchmark: bool,
    /// Micro-batches each training batch is cut into. Their gradients add up before the one
    /// optimizer step, so a batch that does not fit in memory still trains as one.
    pub accumulation: usize,
}

impl Default for Compute {
    fn default() -> Self {
        Compute {
            device: "cpu".to_string(),
            precision: Precision::F32,
            channels_last: false,
            cudnn_benchmark: false,
            accumulation: 1,
        }
    }
}

/// Part of the training split that a run trains and evaluates on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// `count` records drawn by `seed`. The run trains on them and evaluates on the same
    /// records with the evaluation preprocessing, to check that a network can fit a small set.
    Samples {
        /// Records drawn.
        count: usize,
        /// Seed of the draw.
        seed: u64,
    },
    /// K-fold cross-validation: the records (or `records` of them) are dealt into `folds`
    /// folds, and the run trains on all folds but `fold` and evaluates on `fold`.
    Fold {
        /// Number of folds, at least 2.
        folds: usize,
        /// Held-out fold, `0..folds`.
        fold: usize,
        /// Seed of the deal.
        seed: u64,
        /// Deal only this many records, drawn by `seed`, for a faster search; `None` deals
        /// them all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        records: Option<usize>,
    },
}

impl Selection {
    /// Name of the evaluated part in metrics and messages: `subset` or `fold-K` (from 1).
    pub fn eval_name(&self) -> String {
        match self {
            Selection::Samples { .. } => "subset".to_string(),
            Selection::Fold { fold, .. } => format!("fold-{}", fold + 1),
        }
    }

    /// Returns the training and the evaluated record indices of a split with `labels`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a count of 0 or above the split's length, fewer than 2 folds, a
    /// fold out of range, or more folds than records.
    pub fn indices(&self, labels: &[u32]) -> Result<(Vec<usize>, Vec<usize>)> {
        let len = labels.len();
        match *self {
            Selection::Samples { count, seed } => {
                if count == 0 || count > len {
                    return Err(Error::Config(format!(
                        "cannot select {count} samples from a split of {len}"
                    )));
                }
                let mut order: Vec<usize> = (0..len).collect();
                shuffle(&mut order, seed);
                order.truncate(count);
                order.sort_unstable();
                Ok((order.clone(), order))
            }
            Selection::Fold { folds, fold, seed, records } => {
                let pool: Vec<usize> = match records {
                    Some(count) => Selection::Samples { count, seed }.indices(labels)?.0,
                    None => (0..len).collect(),
                };
                let len = pool.len();
                if folds < 2 || fold >= folds || folds > len {
                    return Err(Error::Config(format!(
                        "fold {} of {folds} is invalid for a split of {len} records: need 2 <= \
                         folds <= records and 1 <= fold <= folds",
                        fold + 1
                    )));
                }
                let pool_labels: Vec<u32> = pool.iter().map(|&i| labels[i]).collect();
                let assignment = fold_assignment(&pool_labels, folds, seed);
                let (held, kept): (Vec<usize>, Vec<usize>) =
                    (0..len).partition(|&i| assignment[i] == fold);
                let records =
                    |positions: Vec<usize>| positions.into_iter().map(|i| pool[i]).collect();
                Ok((records(kept), records(held)))
            }
        }
    }
}

/// Returns the fold of every record when the records with `labels` are dealt into `folds`
/// stratified folds. Each class's records are shuffled by `seed` and dealt round-robin from
/// where the previous class stopped. So fold sizes differ by at most one, every fold gets each
/// class in proportion, and each record is in exactly one fold.
pub fn fold_assignment(labels: &[u32], folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(1);
    let mut by_class: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (index, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(index);
    }
    let mut assignment = vec![0; labels.len()];
    let mut next = 0;
    for (label, mut records) in by_class {
        shuffle(&mut records, seed ^ u64::from(label).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for index in records {
            assignment[index] = next % folds;
            next += 1;
        }
    }
    assignment
}

/// Fisher-Yates shuffle driven by ChaCha8 seeded with `seed`.
fn shuffle(items: &mut [usize], seed: u64) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    items.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
}

impl TrainConfig {
    /// Checks the values that would otherwise fail deep inside training.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("epochs", self.epochs),
            ("batch size", self.batch_size),
            ("eval batch size", self.eval_batch_size),
            ("threads", self.threads),
            ("accumulation", self.compute.accumulation),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1, got 0")));
            }
        }
        if !(self.lr.base.is_finite() && self.lr.base > 0.0) {
            return Err(Error::Config(format!(
                "learning rate must be positive, got {}",
                self.lr.base
            )));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::Config(format!(
                "momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::Config(format!(
                "weight decay must be non-negative, got {}",
                self.weight_decay
            )));
        }
        if self.train_split == self.eval_split {
            return Err(Error::Config(format!(
                "the evaluation split must differ from the training split {:?}",
                self.train_split
            )));
        }
        if self.lr.warmup_epochs > self.epochs {
            return Err(Error::Config(format!(
                "{} warm-up epochs exceed the run's {} epochs",
                self.lr.warmup_epochs, self.epochs
            )));
        }
        if let Schedule::Step { milestones, gamma } = &self.lr.schedule {
            if !(gamma.is_finite() && *gamma > 0.0) {
                return Err(Error::Config(format!("step gamma must be positive, got {gamma}")));
            }
            if milestones.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(Error::Config(format!(
                    "step milestones must increase, got {milestones:?}"
                )));
            }
        }
        if self.compute.accumulation > self.batch_size {
            return Err(Error::Config(format!(
                "accumulation {} exceeds the batch size {}: each micro-batch needs a sample",
                self.compute.accumulation, self.batch_size
            )));
        }
        if let Schedule::Plateau { factor, patience: _, threshold } = &self.lr.schedule {
            if !(factor.is_finite() && *factor > 0.0 && *factor < 1.0) {
                return Err(Error::Config(format!(
                    "plateau factor must be in (0, 1), got {factor}"
                )));
            }
            if !(threshold.is_finite() && (0.0..1.0).contains(threshold)) {
                return Err(Error::Config(format!(
                    "plateau threshold must be in [0, 1), got {threshold}"
                )));
            }
        }
        if !(self.l1_decay.is_finite() && self.l1_decay >= 0.0) {
            return Err(Error::Config(format!(
                "L1 decay must be non-negative, got {}",
                self.l1_decay
            )));
        }
        if let Some(rate) = self.dropout {
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::Config(format!("dropout must be in [0, 1), got {rate}")));
            }
        }
        if let Some(selection) = &self.selection {
            if self.eval_split != selection.eval_name() {
                return Err(Error::Config(format!(
                    "a run on a selection evaluates {:?}, not the split {:?}",
                    selection.eval_name(),
                    self.eval_split
                )));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::Config(format!(
                "label smoothing must be in [0, 1), got {}",
                self.label_smoothing
            )));
        }
        Ok(())
    }

    /// Reads `config.json` of a run directory.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
    }

    /// Writes `config.json` into `run_dir` atomically.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(CONFIG_FILE);
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|source| Error::Json { path: path.clone(), source })?;
        text.push('\n');
        crate::checkpoint::write_atomic(&path, text.as_bytes())
    }
}

/// File name of the resolved configuration in a run directory.
pub const CONFIG_FILE: &str = "config.json";

#[cfg(test)]
mod tests {
    use super::*;

    /// 103 records of 4 unbalanced classes.
    fn labels() -> Vec<u32> {
        (0..103u32).map(|i| if i < 40 { 0 } else { 1 + i % 3 }).collect()
    }

    #[test]
    fn folds_cover_every_record_exactly_once() {
        let labels = labels();
        let folds = 5;
        let mut seen = vec![0u32; labels.len()];
        for fold in 0..folds {
            let selection = Selection::Fold { folds, fold, seed: 7, records: None };
            let (train, eval) = selection.indices(&labels).unwrap();
            assert_eq!(train.len() + eval.len(), labels.len());
            assert!(train.iter().all(|i| !eval.contains(i)), "fold {fold} overlaps");
            for &index in &eval {
                seen[index] += 1;
            }
        }
        assert!(seen.iter().all(|&count| count == 1), "held-out counts {seen:?}");
    }

    #[test]
    fn folds_balance_sizes_and_classes() {
        let labels = labels();
        let assignment = fold_assignment(&labels, 4, 3);
        let sizes: Vec<usize> =
            (0..4).map(|fold| assignment.iter().filter(|&&f| f == fold).count()).collect();
        let (smallest, largest) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(largest - smallest <= 1, "fold sizes {sizes:?}");
        // Class 0 has 40 records: 10 per fold.
        for fold in 0..4 {
            let class0 = (0..labels.len()).filter(|&i| labels[i] == 0 && assignment[i] == fold);
            assert_eq!(class0.count(), 10, "class 0 in fold {fold}");
        }
    }

    #[test]
    fn folds_of_a_drawn_subset_cover_only_it() {
        let labels = labels();
        let mut held = Vec::new();
        for fold in 0..3 {
            let selection = Selection::Fold { folds: 3, fold, seed: 1, records: Some(30) };
            let (train, eval) = selection.indices(&labels).unwrap();
            assert_eq!(train.len() + eval.len(), 30);
            held.extend(eval);
        }
        held.sort_unstable();
        let drawn = Selection::Samples { count: 30, seed: 1 }.indices(&labels).unwrap().0;
        assert_eq!(held, drawn);
    }

    #[test]
    fn samples_train_and_evaluate_on_the_same_records() {
        let (train, eval) = Selection::Samples { count: 9, seed: 2 }.indices(&labels()).unwrap();
        assert_eq!(train.len(), 9);
        assert_eq!(train, eval);
    }

    #[test]
    fn bad_selections_name_the_values() {
        let error = Selection::Fold { folds: 1, fold: 0, seed: 0, records: None }
            .indices(&labels())
            .unwrap_err()
            .to_string();
        assert!(error.contains("fold 1 of 1"), "{error}");
        let error =
            Selection::Samples { count: 500, seed: 0 }.indices(&labels()).unwrap_err().to_string();
        assert!(error.contains("500 samples from a split of 103"), "{error}");
    }
}
