//! Displacement fields: smoothed uniform noise scaled to pixels.

use rand_chacha::rand_core::RngCore;

use super::smooth::{grid_step, half_kernel, smooth_coarse_in_place, smooth_exact_in_place};
use super::{check_parameters, invalid, Smoothing};
use crate::error::Result;
use crate::sample::fill_uniform_symmetric;

/// A per-pixel displacement in pixels: output pixel `(x, y)` samples the input at
/// `(x + dx[i], y + dy[i])`, where `i = y * width + x` (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticField {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Horizontal displacement of each pixel, in pixels, positive towards larger `x`.
    pub dx: Vec<f32>,
    /// Vertical displacement of each pixel, in pixels, positive towards larger `y`.
    pub dy: Vec<f32>,
}

impl ElasticField {
    /// Draws a Simard field for a `height` x `width` image.
    ///
    /// Draws the noise of `dx` for every pixel in row-major order, then that of `dy`, each
    /// value uniform in `(-1, 1)` by [`fill_uniform_symmetric`] (16 bits per value), and
    /// smooths it as [`ElasticField::from_noise`] does.
    ///
    /// # Errors
    ///
    /// The errors of [`ElasticField::from_noise`] for the parameters, before any draw.
    pub fn draw<R: RngCore + ?Sized>(
        height: usize,
        width: usize,
        alpha: f32,
        sigma: f32,
        smoothing: Smoothing,
        rng: &mut R,
    ) -> Result<Self> {
        let len = field_len(height, width)?;
        check_parameters(alpha, sigma)?;

        // The noise is smoothed in place: its buffers become `dx` and `dy`.
        let mut dx = vec![0.0f32; len];
        let mut dy = vec![0.0f32; len];
        fill_uniform_symmetric(rng, &mut dx);
        fill_uniform_symmetric(rng, &mut dy);
        smooth_in_place(&mut dx, height, width, alpha, sigma, smoothing);
        smooth_in_place(&mut dy, height, width, alpha, sigma, smoothing);
        Ok(Self { height, width, dx, dy })
    }

    /// Smooths the given noise into a field: `dx = alpha * G(noise_x)` and
    /// `dy = alpha * G(noise_y)`, where `G` is a Gaussian of standard deviation `sigma` pixels
    /// with zero noise outside the image, computed by the `smoothing` method. The noise slices are
    /// row-major `height * width` values.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for a zero or overflowing
    /// size, noise of the wrong length or with non-finite values, an `alpha` that is negative
    /// or not finite, or a `sigma` outside `(0, 10000]`.
    pub fn from_noise(
        noise_x: &[f32],
        noise_y: &[f32],
        height: usize,
        width: usize,
        alpha: f32,
        sigma: f32,
        smoothing: Smoothing,
    ) -> Result<Self> {
        let len = field_len(height, width)?;
        check_parameters(alpha, sigma)?;
        for (parameter, noise) in [("noise_x", noise_x), ("noise_y", noise_y)] {
            if noise.len() != len {
                return Err(invalid(
                    parameter,
                    format!("{} values", noise.len()),
                    &format!("{height} x {width} = {len} values"),
                ));
            }
            if let Some(bad) = noise.iter().position(|v| !v.is_finite()) {
                return Err(invalid(parameter, noise[bad], "finite values"));
            }
        }

        let (mut dx, mut dy) = (noise_x.to_vec(), noise_y.to_vec());
        smooth_in_place(&mut dx, height, width, alpha, sigma, smoothing);
        smooth_in_place(&mut dy, height, width, alpha, sigma, smoothing);
        Ok(Self { height, width, dx, dy })
    }

    /// Creates a field that moves every pixel by the same `(dx, dy)`, a translation. Handy
    /// for checking [`remap`](super::remap) on its own.
    pub fn constant(height: usize, width: usize, dx: f32, dy: f32) -> Self {
        let len = height * width;
        Self { height, width, dx: vec![dx; len], dy: vec![dy; len] }
    }
}

/// Replaces the noise `field` by `alpha * G(field)`, as [`ElasticField::from_noise`] describes.
///
/// Uses AVX2 where the CPU has it: the same code, with 8-lane instead of 4-lane vectors. The
/// result is the same to the bit, since each value is summed in the same order.
fn smooth_in_place(
    field: &mut [f32],
    height: usize,
    width: usize,
    alpha: f32,
    sigma: f32,
    smoothing: Smoothing,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above), which is the only
        // requirement of a `target_feature` function, and its body is safe code.
        unsafe { smooth_in_place_avx2(field, height, width, alpha, sigma, smoothing) };
        return;
    }
    smooth_in_place_portable(field, height, width, alpha, sigma, smoothing);
}

/// [`smooth_in_place_portable`] compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn smooth_in_place_avx2(
    field: &mut [f32],
    height: usize,
    width: usize,
    alpha: f32,
    sigma: f32,
    smoothing: Smoothing,
) {
    smooth_in_place_portable(field, height, width, alpha, sigma, smoothing);
}

/// Smooths `field` in place: the body of [`smooth_in_place`], inlined into each of its
/// instruction-set versions.
#[inline(always)]
fn smooth_in_place_portable(
    field: &mut [f32],
    height: usize,
    width: usize,
    alpha: f32,
    sigma: f32,
    smoothing: Smoothing,
) {
    let half = half_kernel(sigma);
    let step = grid_step(sigma);
    match smoothing {
        Smoothing::CoarseGrid if step > 1 => {
            smooth_coarse_in_place(field, height, width, &half, step, alpha)
        }
        _ => smooth_exact_in_place(field, height, width, &half, alpha),
    }
}

/// Checks a field size and returns `height * width`.
fn field_len(height: usize, width: usize) -> Result<usize> {
    let len = height.checked_mul(width).filter(|&n| n > 0 && n <= isize::MAX as usize / 4);
    len.ok_or_else(|| {
        invalid(
            "size",
            format!("{height}x{width}"),
            "at least 1 row and 1 column, with a field that fits in memory",
        )
    })
}
