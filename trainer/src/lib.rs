//! Training of image classifiers with libtorch (through `tch`) on expanse shards.
//!
//! - [`model`]: ResNets (ImageNet and CIFAR depths, shortcut options A/B/C, plain
//!   counterparts), GoogLeNet with its auxiliary classifiers, AlexNet, and layer summaries.
//! - [`device`]: CPU or CUDA (loading `libtorch_cuda.so` at run time), mixed precision, loss
//!   scaling and channels-last layout.
//! - [`protocol`]: centre-crop, ten-crop and multi-scale evaluation.
//! - [`optim`]: SGD with momentum whose state can be checkpointed, and learning-rate schedules.
//! - [`checkpoint`]: atomic checkpoints holding weights, optimizer state and loader position.
//! - [`dist`]: data-parallel training across processes and machines on libtorch's c10d (Gloo),
//!   through a small C++ bridge.
//! - [`diagnose`]: the diagnosis line at the end of a run (diverged, collapsed, under- or
//!   overfitting).
//! - [`gradcheck`]: finite-difference check of the gradients of every layer type, in f64.
//! - [`lr_find`]: the largest stable learning rate by halving, and the rate sweep.
//! - [`run`]: the training loop with per-epoch evaluation, metrics and resume.
//! - [`inspect`]: first-layer filters, activation statistics and weight and gradient
//!   histograms of a checkpoint.
//!
//! Of the workspace's libraries, this is the only one that links libtorch.

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod diagnose;
pub mod dist;
pub mod error;
pub mod gradcheck;
pub mod inspect;
pub mod lr_find;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod protocol;
pub mod run;

pub use config::TrainConfig;
pub use error::{Error, Result};
pub use run::{Observer, Trainer};
