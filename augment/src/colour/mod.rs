//! Colour ops on u8 HWC images: AlexNet PCA lighting and torchvision-style colour jitter.
//!
//! Both change pixel values in place and keep the shape. Values are computed in f32, rounded
//! to nearest and clamped to `0..=255`. Random draws come only from the generator passed in,
//! in the order each op documents.

mod jitter;
mod pca;

pub use jitter::{
    adjust_brightness, adjust_contrast, adjust_saturation, Adjustment, ColorJitter, JitterStep,
};
pub use pca::{add_channel_offsets, pca_offset, Eigen, PcaLighting};

use crate::error::invalid;

/// Rounds `value` to the nearest integer in `0..=255`, halves up.
///
/// Clamping first keeps the value non-negative, so truncating `value + 0.5` is the floor.
/// NaN becomes 0.
#[inline(always)]
fn round_to_u8(value: f32) -> u8 {
    (value.clamp(0.0, 255.0) + 0.5) as u8
}
