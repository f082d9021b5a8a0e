//! Batches for training and evaluation.
//!
//! An epoch's order is an [`EpochPlan`]: a permutation that depends only on (seed, epoch),
//! split across ranks. A [`Loader`] walks the plan from any batch position. On the rayon pool
//! it decodes each record (raw pixels, or a JPEG at a reduced DCT scale where the recipe
//! allows it), augments it with a key of (seed, epoch, record index), and writes its values
//! into a batch buffer; it hands filled [`Batch`] buffers to the caller while the next ones are
//! prepared on a background thread. The same (seed, epoch, position) therefore gives the same
//! bytes at any thread count.

mod augmentation;
mod batch;
mod decode;
mod memory;
mod order;
mod plan;
mod prefetch;
mod source;

pub use augmentation::{Augmentation, Element, Layout, SampleShape};
pub use batch::Batch;
pub use memory::ResidentMemory;
pub use order::{class_mix, ClassMix, Order, RankSplit};
pub use plan::{EpochPlan, PlanOptions};
pub use prefetch::{Loader, LoaderState};
pub use source::{Record, SampleSource, Subset};
