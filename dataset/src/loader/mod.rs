//! Batches for training and evaluation.
//!
//! An epoch's order is an [`EpochPlan`]: a permutation that depends only on (seed, epoch),
//! split across ranks. A [`Loader`] walks the plan from any batch position, augments each
//! sample with a key of (seed, epoch, record index) on the rayon pool, and hands filled
//! [`Batch`] buffers to the caller while the next ones are prepared on a background thread.
//! The same (seed, epoch, position) therefore gives the same bytes at any thread count.

mod batch;
mod plan;
mod prefetch;
mod split_source;

pub use batch::Batch;
pub use plan::{EpochPlan, PlanOptions};
pub use prefetch::{Loader, LoaderState, SampleSource};
