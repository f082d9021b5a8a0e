//! Geometric ops on u8 HWC images: resizing, crops and affine warps.
//!
//! Every op here reads a u8 HWC image ([`ImageRef`](crate::ImageRef)) and writes a new one
//! with the same channel count ([`ImageBuf`](crate::ImageBuf)). Random ops draw only from the
//! generator passed to them, in the order their documentation states.
//!
//! Coordinates: pixel `(x, y)` is column `x`, row `y`, and its centre lies at the integer
//! position `(x, y)`, so the image covers `[-0.5, width - 0.5] x [-0.5, height - 0.5]`. This is
//! the convention of OpenCV, PIL and torchvision's tensor ops.
//!
//! Resizing runs on the `fast_image_resize` crate (SIMD convolution). The crops and flips are
//! row copies. [`warp_affine`] is written here in fixed-point arithmetic.

mod affine;
mod crop;
mod fill;
mod resize;

pub use affine::{warp_affine, Affine, AffineParams};
pub use crop::{crop, CenterCrop, RandomResizedCrop};
pub use fill::{Fill, Interpolation};
// For `pipeline::fused`, which maps filters to `fast_image_resize` algorithms too.
pub(crate) use resize::resize_algorithm;
pub use resize::{
    resize, resize_with, resized_crop, resized_crop_with, shorter_side_size, Filter, Resize,
    ResizeTo, ScaleJitter,
};

use rand_chacha::rand_core::RngCore;

use crate::error::{Error, Result};

/// Draws a uniform value from `[0, 1)`: the top 53 bits of one `next_u64`, scaled by 2^-53.
fn unit_f64<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws a uniform value from `[low, high)` with one [`unit_f64`] draw; `low` when the range is
/// empty.
fn uniform_f64<R: RngCore + ?Sized>(rng: &mut R, low: f64, high: f64) -> f64 {
    low + unit_f64(rng) * (high - low)
}

/// Returns an [`Error::InvalidParameter`] for `op`.
fn invalid(
    op: &'static str,
    parameter: &'static str,
    value: impl std::fmt::Debug,
    expected: &str,
) -> Error {
    Error::InvalidParameter {
        op,
        parameter,
        value: format!("{value:?}"),
        expected: expected.to_string(),
    }
}

/// Checks that an output side is at least 1 and fits the `u32` sizes of the resizer.
fn check_side(op: &'static str, parameter: &'static str, side: usize) -> Result<()> {
    if side == 0 || side > u32::MAX as usize {
        return Err(invalid(op, parameter, side, "an integer in 1..=4294967295"));
    }
    Ok(())
}
