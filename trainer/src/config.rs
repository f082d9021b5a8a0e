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
