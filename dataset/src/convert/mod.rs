//! Converting a photo collection (class folders, a labelled folder or a list file) into one
//! split of a shard set: parallel, byte-deterministic, bounded in memory and resumable.
//!
//! The images of a [`crate::source::ImageList`] are converted in order by
//! [`crate::image::convert_image`] on a rayon pool, a chunk at a time, while the calling thread
//! packs the results into shards of at most the shard size. After each shard is renamed into
//! place, a journal (`<split>.journal.json`) records how many images are done, the shards so
//! far and the running statistics.
//!
//! Running the same conversion again after an interruption (Ctrl-C, `kill -9`, a full disk)
//! removes the unfinished temporary file, checks the journalled shards and carries on from the
//! first image they do not cover. The result is byte-identical to an uninterrupted run, because
//! shard boundaries depend only on the sequence of converted records.
//!
//! Images that cannot be converted are skipped and listed in `<split>.skipped.tsv`, unless the
//! conversion is strict, in which case the first one stops it with its path and reason.

mod journal;
mod pipeline;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::ConvertOptions;
use crate::shard::Manifest;

pub use pipeline::convert_images;

/// The `source_kind` of shard sets converted from photo collections.
pub const IMAGES_SOURCE_KIND: &str = "images";

/// The options of one photo conversion.
#[derive(Clone, Debug)]
pub struct PhotoOptions {
    /// The decoding, resizing and storage options of each image.
    pub image: ConvertOptions,
    /// Largest shard file in bytes, header and index included.
    pub shard_size_bytes: u64,
    /// Stop at the first image that cannot be converted instead of skipping it.
    pub strict: bool,
    /// Replace the split when the output set already has one of the same name.
    pub overwrite: bool,
}

/// The receiver of a conversion's progress. Both methods are called from the thread that
/// called [`convert_images`], in image order.
pub trait ConvertObserver {
    /// Called once before the first image: the images of the list and how many an earlier,
    /// interrupted run already converted.
    fn started(&mut self, _images: u64, _resumed: u64) {}

    /// Called after each converted or skipped image with the bytes read from its file.
    fn advanced(&mut self, _bytes_in: u64) {}
}

/// An observer that reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl ConvertObserver for Silent {}

/// Counts of one conversion, over the whole split (an earlier run's images included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertCounts {
    /// Images read (converted or skipped).
    pub read: u64,
    /// Records written.
    pub written: u64,
    /// Records stored as the source file's bytes.
    pub kept: u64,
    /// Records decoded and encoded again, or stored as raw pixels.
    pub reencoded: u64,
    /// Images skipped.
    pub skipped: u64,
    /// Bytes read from source files.
    pub bytes_in: u64,
    /// Bytes of the split's shard files.
    pub bytes_out: u64,
}

/// The result of [`convert_images`].
#[derive(Clone, Debug)]
pub struct ConvertSummary {
    /// Images in the list.
    pub images: u64,
    /// Images an earlier, interrupted run had already converted.
    pub resumed: u64,
    /// Counts over the whole split.
    pub counts: ConvertCounts,
    /// Shard files of the split.
    pub shards: usize,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
    /// The file listing skipped images and reasons, when any were skipped.
    pub skipped_file: Option<PathBuf>,
    /// The manifest written, holding every split of the set.
    pub manifest: Manifest,
}
