//! Hyperparameter search without libtorch: search spaces, proposal strategies and trial logs.
//!
//! A search minimises a score (for example the mean validation error over folds) over a
//! [`Space`] of named parameters. The caller loops: [`propose`] returns the next [`Point`], the
//! caller trains and scores it, and [`TrialLog::append`] records the [`Trial`]. Proposals are a
//! pure function of (space, strategy, seed, earlier trials), so a search resumed from its log
//! continues exactly as an uninterrupted one would.
//!
//! # Encoding
//!
//! Every parameter maps to the unit interval: a linear range by `(v - low) / (high - low)`, a
//! log range by the same formula on `ln v`, and a choice by `index / (n - 1)`. Random search
//! draws each coordinate uniformly in that interval, which makes log ranges log-uniform.
//! Integers and choices are decoded by splitting the interval into equal bins, one per value,
//! so that every value is equally likely (in its scale).
//!
//! # Strategies
//!
//! - Grid: the Cartesian product of evenly spaced values per parameter, in a fixed order,
//!   skipping points already tried.
//! - Random: trial `i` samples the space with a ChaCha8 generator seeded by the search seed,
//!   on stream `i`.
//! - Bayes: the first trials are random, then a Gaussian process models the score and the next
//!   point maximises expected improvement.
//!
//! # Gaussian process
//!
//! The model ([`GaussianProcess`]) is a zero-mean Gaussian process on the unit cube, fitted to
//! scores normalised to mean 0 and standard deviation 1. Its kernel is the Matern 5/2 kernel
//! with one length scale `l` shared by all axes. With `r = |x - x'| / l`, it is
//! `k(r) = (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)`. An observation noise variance is added
//! to the diagonal. The length scale and the noise are chosen from a fixed grid by maximising
//! the log marginal likelihood `-y^T K^-1 y / 2 - ln det K / 2 - n ln(2 pi) / 2`, computed
//! through a Cholesky factor of `K`. When a factorisation fails, it is retried with a growing
//! jitter on the diagonal.
//!
//! Expected improvement for minimisation, with `best` the lowest score so far, mean `m`,
//! standard deviation `s` and margin `xi`, is `EI = (best - m - xi) Phi(z) + s phi(z)` where
//! `z = (best - m - xi) / s` and `Phi`, `phi` are the standard normal CDF and density. The CDF
//! comes from a Chebyshev approximation of `erfc` with a relative error below 1.2e-7 even in
//! the tails, so EI keeps its ordering far from the best score.

pub mod gp;
pub mod space;
pub mod strategy;
pub mod trials;

use std::path::PathBuf;

pub use gp::{expected_improvement, normal_cdf, normal_pdf, GaussianProcess};
pub use space::{Param, Point, Scale, Space, Value};
pub use strategy::{propose, Strategy};
pub use trials::{best, markdown_table, Trial, TrialLog};

/// Errors of the search engine. Messages name the spec, point, file or line and the values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter spec such as `lr=log:0.01..0.5` is invalid.
    #[error("{spec}: {reason}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// The reason it is invalid.
        reason: String,
    },
    /// A search space is invalid (no parameters, or a duplicate name).
    #[error("search space: {0}")]
    Space(String),
    /// A point does not fit the space (missing or extra key, value of the wrong kind).
    #[error("point {point}: {reason}")]
    Point {
        /// The point, as JSON.
        point: String,
        /// The reason it is invalid.
        reason: String,
    },
    /// A strategy string such as `bayes:5` is invalid.
    #[error("strategy {text:?}: {reason}")]
    Strategy {
        /// The strategy as given.
        text: String,
        /// The reason it is invalid.
        reason: String,
    },
    /// The Gaussian process cannot be fitted to the given data.
    #[error("gaussian process: {0}")]
    Gp(String),
    /// A trial in the history does not fit the search.
    #[error("trial {index}: {reason}")]
    Trial {
        /// The trial's index.
        index: usize,
        /// The reason it is invalid.
        reason: String,
    },
    /// Reading or writing a trial log failed.
    #[error("{path}: {source}")]
    Io {
        /// The trial log.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a trial log is not a valid trial.
    #[error("{path}: line {line}: {source}")]
    Json {
        /// The trial log.
        path: PathBuf,
        /// The line number, counting from 1.
        line: usize,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
