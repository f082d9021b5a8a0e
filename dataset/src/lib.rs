//! Image datasets as immutable, checksummed, memory-mapped shards, and a deterministic loader.
//!
//! - [`source`] reads the formats datasets are published in (MNIST-style IDX, CIFAR-10/100
//!   binary and python pickle) into memory.
//! - [`shard`] writes them as shard files plus a manifest (see `FORMAT.md` beside this crate)
//!   and reads them back through one read-only memory map per file.
//! - [`loader`] turns a shard split into batches: a per-epoch permutation derived from
//!   (seed, epoch), split across ranks, augmented in parallel, prefetched on a background thread.
//!
//! Nothing here depends on libtorch: batches are plain `f32`/`u32` buffers.

pub mod convert;
pub mod error;
pub mod image;
pub mod loader;
pub mod shard;
pub mod source;

pub use error::{Error, Result};
