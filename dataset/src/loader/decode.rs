//! Per-thread decoding of a record into reusable scratch buffers.

use std::cell::RefCell;

use expanse_augment::ImageRef;

use super::source::Record;
use crate::shard::Encoding;
use crate::{Error, Result};

/// Buffers a loader thread reuses for every sample: the decoded pixels and, for channels-last
/// output, the planar values before their transposition. They grow to the largest record a
/// thread has seen and stay allocated, so steady state allocates no pixel buffer.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) pixels: Vec<u8>,
    pub(super) values: Vec<f32>,
}

thread_local! {
    pub(super) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Returns record's pixels as an image: the stored bytes of a raw record, or a JPEG decoded
/// into `pixels` at the coarsest DCT scale whose shorter side stays at least `min_side`.
pub(super) fn decode<'a>(
    record: &Record<'a>,
    min_side: usize,
    pixels: &'a mut Vec<u8>,
    describe: impl Fn() -> String,
) -> Result<ImageRef<'a>> {
    match record.encoding {
        Encoding::Raw => {
            Ok(ImageRef::new(record.bytes, record.height, record.width, record.channels)?)
        }
        Encoding::Jpeg => {
            let (height, width) = crate::image::training::decode_jpeg_scaled(
                record.bytes,
                record.channels,
                min_side,
                pixels,
            )
            .map_err(|message| {
                Error::InvalidArgument(format!("{}: cannot decode the JPEG: {message}", describe()))
            })?;
            Ok(ImageRef::new(pixels, height, width, record.channels)?)
        }
    }
}
