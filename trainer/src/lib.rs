//! Training of image classifiers with libtorch (through `tch`) on expanse shards.
//!
//! - [`model`]: the CIFAR-style ResNets (and their plain counterparts) of He et al. 2015.
//! - [`optim`]: SGD with momentum whose state can be checkpointed, and learning-rate schedules.
//! - [`checkpoint`]: atomic checkpoints holding weights, optimizer state and loader position.
//! - [`run`]: the training loop with per-epoch evaluation, metrics and resume.
//!
//! This is the only crate of the workspace that links libtorch.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod run;

pub use config::TrainConfig;
pub use error::{Error, Result};
pub use run::{Observer, Trainer};
