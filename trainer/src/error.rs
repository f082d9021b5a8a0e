//! The error type of the trainer crate.

use std::path::PathBuf;

/// A failure while building, training, evaluating or checkpointing a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from libtorch.
    #[error("libtorch")]
    Torch(#[from] tch::TchError),

    /// An error reading shards or building batches.
    #[error(transparent)]
    Dataset(#[from] expanse_dataset::Error),

    /// An operating-system error on a file of the run directory; the OS error is the source.
    #[error("{}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A JSON file of the run directory that cannot be read or written; the JSON error is the
    /// source.
    #[error("{}: invalid JSON", path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },

    /// A configuration value that cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A checkpoint that does not match the model or lacks an entry.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// The mismatch, with both values.
        message: String,
    },

    /// The training loss became NaN or infinite.
    #[error(
        "training diverged at epoch {epoch}, batch {position}: loss {loss} at learning rate \
         {lr}; an earlier checkpoint, if any, is kept; lower --lr or add --warmup-epochs"
    )]
    Diverged {
        /// Epoch (1-based) in progress.
        epoch: usize,
        /// Batch position in that epoch.
        position: usize,
        /// The non-finite loss value.
        loss: f64,
        /// Learning rate of that step.
        lr: f64,
    },

    /// The evaluation loss became NaN or infinite; nothing of that epoch is logged.
    #[error(
        "evaluation diverged after epoch {epoch}, batch {position}: loss {loss}; an earlier \
         checkpoint, if any, is kept; lower --lr or check the checkpoint"
    )]
    NonFiniteEval {
        /// Epoch (1-based) just trained.
        epoch: usize,
        /// Batch position in the evaluation pass.
        position: usize,
        /// The non-finite loss summed over that batch.
        loss: f64,
    },

    /// The observer asked the run to stop ([`crate::Observer::stop_requested`]). The trainer
    /// turns it into a checkpoint and a [`crate::RunSummary`] with `stopped` set; it reaches
    /// callers of the public API only from a pass they drive themselves.
    #[error("the run was stopped on request; resume it from its checkpoint")]
    Stopped,

    /// A rendezvous or collective of a data-parallel run failed or timed out.
    #[error("data-parallel run: {0}")]
    Distributed(String),
}

/// The result type of the trainer crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
