//! Random affine warps (rotation, scale, translation, shear) and the warp itself.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::{invalid, uniform_f64, Fill, Interpolation};
use crate::error::Result;
use crate::image::{ImageBuf, ImageRef};
use crate::op::{OpRng, Transform};

/// Random affine warp of a u8 HWC image about its centre. The output has the input's size.
///
/// Draws ([`Affine::draw`]): five uniform values in a fixed order, each from the top 53 bits
/// of one `next_u64`, and each drawn even when its range is a single value. In order they are
/// the angle in `rotation`, the x shift in `[-translate[0] * width, translate[0] * width]`,
/// the y shift in `[-translate[1] * height, translate[1] * height]`, the scale in `scale` and
/// the x shear in `shear`. Shifts stay fractional (torchvision's `RandomAffine` rounds them to whole pixels).
/// The warp is [`AffineParams::inverse_matrix`] then [`warp_affine`].
///
/// Serde: every field has a default (the identity ranges, bilinear, fill 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Affine {
    /// Range of the rotation angle, in degrees, counter-clockwise positive as torchvision's
    /// `RandomRotation` (default `[0, 0]`).
    pub rotation: [f32; 2],
    /// Range of the scale factor, where above 1 enlarges the content (default `[1, 1]`).
    pub scale: [f32; 2],
    /// Largest shift as a fraction of the width (x) and the height (y), each in `[0, 1]`
    /// (default `[0, 0]`).
    pub translate: [f32; 2],
    /// Range of the x shear angle, in degrees, inside `(-90, 90)`, with torchvision's sign
    /// (default `[0, 0]`).
    pub shear: [f32; 2],
    /// How to sample between pixels (default bilinear).
    pub interpolation: Interpolation,
    /// Value of samples outside the input image (default constant 0).
    pub fill: Fill,
}

impl Default for Affine {
    fn default() -> Self {
        Self {
            rotation: [0.0, 0.0],
            scale: [1.0, 1.0],
            translate: [0.0, 0.0],
            shear: [0.0, 0.0],
            interpolation: Interpolation::Bilinear,
            fill: Fill::Constant(0),
        }
    }
}

/// One drawn affine warp.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffineParams {
    /// Rotation, in degrees, counter-clockwise positive.
    pub angle: f32,
    /// Scale factor, where above 1 enlarges the content.
    pub scale: f32,
    /// Shift to the right, in pixels, applied after rotation and scaling.
    pub translate_x: f32,
    /// Shift down, in pixels, applied after rotation and scaling.
    pub translate_y: f32,
    /// Shear parallel to the x axis, in degrees.
    pub shear: f32,
}

impl Affine {
    /// Creates a rotation by an angle uniform in `[-max_degrees, max_degrees]`, bilinear, fill 0.
    pub fn rotation(max_degrees: f32) -> Self {
        Self { rotation: [-max_degrees, max_degrees], ..Self::default() }
    }

    /// Checks that every range is finite and ordered, the scale above 0, the translation in
    /// `[0, 1]` and the shear inside `(-90, 90)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) otherwise.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "affine";
        let ordered = |[low, high]: [f32; 2]| low.is_finite() && high.is_finite() && low <= high;

        if !ordered(self.rotation) {
            return Err(invalid(OP, "rotation", self.rotation, "finite [low, high], low <= high"));
        }
        if !ordered(self.scale) || self.scale[0] <= 0.0 {
            return Err(invalid(OP, "scale", self.scale, "finite [low, high], 0 < low <= high"));
        }
        if !self.translate.iter().all(|t| (0.0..=1.0).contains(t)) {
            return Err(invalid(OP, "translate", self.translate, "[x, y] each in [0, 1]"));
        }
        if !ordered(self.shear) || self.shear[0] <= -90.0 || self.shear[1] >= 90.0 {
            return Err(invalid(OP, "shear", self.shear, "[low, high] inside (-90, 90) degrees"));
        }
        Ok(())
    }

    /// Draws the parameters for a `height` x `width` image (five draws, see the type).
    pub fn draw<R: RngCore + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> AffineParams {
        let range = |rng: &mut R, [low, high]: [f32; 2]| {
            uniform_f64(rng, f64::from(low), f64::from(high)) as f32
        };
        let shift = |rng: &mut R, fraction: f32, side: usize| {
            let max = f64::from(fraction) * side as f64;
            uniform_f64(rng, -max, max) as f32
        };

        let angle = range(rng, self.rotation);
        let translate_x = shift(rng, self.translate[0], width);
        let translate_y = shift(rng, self.translate[1], height);
        let scale = range(rng, self.scale);
        let shear = range(rng, self.shear);
        AffineParams { angle, scale, translate_x, translate_y, shear }
    }
}

impl AffineParams {
    /// Returns the matrix `[a, b, c, d, e, f]` that maps output pixel `(x, y)` to the input
    /// position `(a x + b y + c, d x + e y + f)`, pixel centres at integers.
    ///
    /// The warp turns about the image centre `((width - 1) / 2, (height - 1) / 2)`, which is the
    /// torchvision tensor convention: the matrix equals torchvision 0.26's
    /// `F.affine(img, angle=-angle, translate=[translate_x, translate_y], scale=scale,
    /// shear=[shear, 0])` on tensors. Note the sign: `F.affine` turns clockwise for positive
    /// angles, `F.rotate` and this type counter-clockwise.
    pub fn inverse_matrix(&self, height: usize, width: usize) -> [f64; 6] {
        let rotation = -f64::from(self.angle).to_radians();
        let shear = f64::from(self.shear).to_radians();
        let (sin, cos) = rotation.sin_cos();
        let tan = shear.tan();

        // Forward rotation-shear [[a, b], [c, d]] (determinant 1), as torchvision builds it.
        let a = cos;
        let b = -cos * tan - sin;
        let c = sin;
        let d = -sin * tan + cos;

        // Its inverse divided by the scale, in coordinates centred on the image.
        let scale = f64::from(self.scale);
        let m = [d / scale, -b / scale, -c / scale, a / scale];
        let (tx, ty) = (f64::from(self.translate_x), f64::from(self.translate_y));
        let shift_x = -(m[0] * tx + m[1] * ty);
        let shift_y = -(m[2] * tx + m[3] * ty);

        // Move the origin from the centre to pixel (0, 0) on both sides of the map.
        let cx = (width as f64 - 1.0) / 2.0;
        let cy = (height as f64 - 1.0) / 2.0;
        [
            m[0],
            m[1],
            shift_x + cx - m[0] * cx - m[1] * cy,
            m[2],
            m[3],
            shift_y + cy - m[2] * cx - m[3] * cy,
        ]
    }
}

impl Transform for Affine {
    fn name(&self) -> &'static str {
        "affine"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        self.validate()?;
        let params = self.draw(image.height(), image.width(), rng);
        let inverse = params.inverse_matrix(image.height(), image.width());
        warp_affine(image, &inverse, self.interpolation, self.fill)
    }
}

/// Fraction bits of the bilinear weights: positions are resolved to 1/2048 pixel.
const WEIGHT_BITS: u32 = 11;
const WEIGHT_ONE: u32 = 1 << WEIGHT_BITS;
/// Source positions are clamped to `±POSITION_LIMIT` pixels, which keeps the fixed-point
/// arithmetic in range. Any position that far out reads the fill, except that `Fill::Reflect`
/// reads the pixel that the clamped position reflects to.
const POSITION_LIMIT: f64 = (1u64 << 31) as f64;

/// Warps a u8 HWC image with the inverse map `inverse` (see
/// [`AffineParams::inverse_matrix`]): output pixel `(x, y)` takes the value at input position
/// `(a x + b y + c, d x + e y + f)`. Same size and channels as the input. Deterministic.
///
/// Bilinear sampling runs in fixed point: positions are rounded to 1/2048 pixel and the
/// result to the nearest integer. Values stay within 1 of the exact result in f64, which a
/// property test checks. Each of the four taps that falls outside the image reads `fill`.
/// Nearest picks the pixel at the position rounded half to even.
///
/// The bytes are the same on every machine: the x86-64 SIMD path and the portable code do
/// the same integer arithmetic.
///
/// # Errors
///
/// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when an entry of `inverse` is
/// not finite.
pub fn warp_affine(
    image: ImageRef<'_>,
    inverse: &[f64; 6],
    interpolation: Interpolation,
    fill: Fill,
) -> Result<ImageBuf> {
    if !inverse.iter().all(|v| v.is_finite()) {
        return Err(invalid("warp_affine", "inverse", inverse, "six finite numbers"));
    }

    let (height, width, channels) = (image.height(), image.width(), image.channels());
    if *inverse == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] {
        return ImageBuf::new(image.data().to_vec(), height, width, channels);
    }

    let mut data = vec![0u8; image.data().len()];
    // Constant propagation specialises the inner loops for the usual channel counts.
    match (interpolation, channels) {
        (Interpolation::Bilinear, 1) => warp_bilinear(image, inverse, fill, &mut data, 1),
        (Interpolation::Bilinear, 3) => warp_bilinear(image, inverse, fill, &mut data, 3),
        (Interpolation::Bilinear, 4) => warp_bilinear(image, inverse, fill, &mut data, 4),
        (Interpolation::Bilinear, c) => warp_bilinear(image, inverse, fill, &mut data, c),
        (Interpolation::Nearest, c) => warp_nearest(image, inverse, fill, &mut data, c),
    }
    ImageBuf::new(data, height, width, channels)
}

/// Splits a position, given as `position * 2048 + offset` (see [`FixedPoint`]), into its
/// integer part and its fraction in 1/2048 pixel, rounded to nearest.
#[inline(always)]
fn split_fixed(scaled: f64) -> (i64, u32) {
    // The scaled value is positive, so truncation is floor.
    let fixed = scaled.clamp(0.0, FixedPoint::MAX) as i64;
    ((fixed >> WEIGHT_BITS) - FixedPoint::ORIGIN, (fixed as u32) & (WEIGHT_ONE - 1))
}

/// Maps a pixel coordinate `v` to `(v + ORIGIN) * 2048 + 0.5`: positive for every position
/// within [`POSITION_LIMIT`], so that one truncating conversion gives the position rounded to
/// 1/2048 pixel, and the integer part of an exact integer position stays exact.
struct FixedPoint;

impl FixedPoint {
    const ORIGIN: i64 = 1 << 31;
    const SCALE: f64 = WEIGHT_ONE as f64;
    const OFFSET: f64 = Self::ORIGIN as f64 * Self::SCALE + 0.5;
    const MAX: f64 = 2.0 * Self::ORIGIN as f64 * Self::SCALE;
}

/// Blends the horizontal interpolations of the upper and lower tap rows (each
/// `p0 * w0 + p1 * w1` with weights summing to 2048) by the vertical weights, rounding to
/// nearest. Each row value is first cut to 7 fraction bits so that the SIMD path (16-bit lanes)
/// and this scalar code give the same bytes.
#[inline(always)]
fn blend_rows(upper: u32, lower: u32, wy0: u32, wy1: u32) -> u8 {
    const SHIFT: u32 = 2 * WEIGHT_BITS - ROW_CUT;
    (((upper >> ROW_CUT) * wy0 + (lower >> ROW_CUT) * wy1 + (1 << (SHIFT - 1))) >> SHIFT) as u8
}

/// Bits dropped from each row value before the vertical blend: 255 * 2048 >> 4 fits an i16.
const ROW_CUT: u32 = 4;

/// Positions along one output row in 32.32 fixed point, offset by [`FINE_ORIGIN`] pixels so
/// that they stay positive: stepping by an integer add is exact to 2^-32 pixel per column.
struct FineRow {
    start: i64,
    step: i64,
}

/// Offset, in pixels, of [`FineRow`] positions. Rows whose positions leave
/// `±(FINE_ORIGIN - 2)` use the clamped floating-point path.
const FINE_ORIGIN: f64 = (1u64 << 20) as f64;
const FINE_SCALE: f64 = (1u64 << 32) as f64;

impl FineRow {
    /// Returns the row `start + x * step` for `x` in `0..width`, or `None` when a position
    /// leaves the fixed-point range.
    fn new(start: f64, step: f64, width: usize) -> Option<Self> {
        let end = start + step * (width - 1) as f64;
        let limit = FINE_ORIGIN - 2.0;
        if !(start.abs() < limit && end.abs() < limit) {
            return None;
        }
        // Adding half of 1/2048 pixel makes the later truncation round to nearest.
        let half = (1u64 << (32 - WEIGHT_BITS - 1)) as f64;
        let start = ((start + FINE_ORIGIN) * FINE_SCALE + half) as i64;
        Some(Self { start, step: (step * FINE_SCALE).round() as i64 })
    }
}

#[inline(always)]
fn warp_bilinear(image: ImageRef<'_>, m: &[f64; 6], fill: Fill, out: &mut [u8], channels: usize) {
    let stride = image.width() * channels;
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");

    for (y, row) in out.chunks_exact_mut(stride).enumerate() {
        let start_x = m[1] * y as f64 + m[2];
        let start_y = m[4] * y as f64 + m[5];
        let pixels = row.chunks_exact_mut(channels).enumerate();

        let fine = FineRow::new(start_x, m[0], image.width()).zip(FineRow::new(
            start_y,
            m[3],
            image.width(),
        ));
        if let Some((fine_x, fine_y)) = fine {
            #[cfg(target_arch = "x86_64")]
            if (channels == 3 || channels == 4) && avx2 {
                // SAFETY: the CPU supports AVX2 (detected before the loop), which is the only
                // requirement of a `target_feature` function, and its body is safe code.
                unsafe {
                    if channels == 3 {
                        fine_row_avx2::<3>(image, fill, [fine_x, fine_y], row);
                    } else {
                        fine_row_avx2::<4>(image, fill, [fine_x, fine_y], row);
                    }
                }
                continue;
            }
            fine_row(image, fill, [fine_x, fine_y], row, channels);
            continue;
        }

        // Scaled positions: (a x + b y + c) * 2048 + OFFSET.
        let step_x = m[0] * FixedPoint::SCALE;
        let step_y = m[3] * FixedPoint::SCALE;
        let base_x = start_x * FixedPoint::SCALE + FixedPoint::OFFSET;
        let base_y = start_y * FixedPoint::SCALE + FixedPoint::OFFSET;
        for (x, pixel) in pixels {
            let (tx, wx) = split_fixed(step_x * x as f64 + base_x);
            let (ty, wy) = split_fixed(step_y * x as f64 + base_y);
            blend_pixel(image, fill, [tx, ty], [wx, wy], pixel);
        }
    }
}

/// Returns `(low, span)` such that a [`FineRow`] value `v` has both taps (`t` and `t + 1`)
/// inside an axis of `len` pixels exactly when `(v - low) as u64 < span`.
#[inline(always)]
fn inside_bounds(len: usize) -> (i64, u64) {
    let low = (FINE_ORIGIN as i64) << 32;
    // `t >= 0` is `v >= low`, and `t <= len - 2` is `v < low + (len - 1) * 2^32`.
    (low, ((len as u64).saturating_sub(1)).min(1 << 30) << 32)
}

/// Warps one output row whose positions are [`FineRow`]s: the positions advance by one integer
/// add per pixel, and pixels whose four taps lie inside the image skip the fill rule. Gives the
/// same bytes as [`blend_pixel`] at every pixel.
#[inline(always)]
fn fine_row(
    image: ImageRef<'_>,
    fill: Fill,
    [fine_x, fine_y]: [FineRow; 2],
    row: &mut [u8],
    channels: usize,
) {
    let (low_x, span_x) = inside_bounds(image.width());
    let (low_y, span_y) = inside_bounds(image.height());
    let stride = image.width() * channels;
    let source = image.data();
    let (mut fx, mut fy) = (fine_x.start, fine_y.start);
    let origin = (FINE_ORIGIN as i64) << 32;

    for pixel in row.chunks_exact_mut(channels) {
        let weight = |fine: i64| ((fine >> (32 - WEIGHT_BITS)) as u32) & (WEIGHT_ONE - 1);
        let (wx, wy) = (weight(fx), weight(fy));
        let inside = ((fx - low_x) as u64) < span_x && ((fy - low_y) as u64) < span_y;

        #[cfg(target_arch = "x86_64")]
        if inside && (channels == 3 || channels == 4) {
            // Both taps are inside, so these are the tap's column and row.
            let (tx, ty) = (((fx - origin) >> 32) as usize, ((fy - origin) >> 32) as usize);
            let top = ty * stride + tx * channels;
            if let Some(taps) = source.get(top..top + stride + 8) {
                let weights = [WEIGHT_ONE - wx, wx, WEIGHT_ONE - wy, wy];
                // SAFETY: `blend_inside` only needs SSE2, which is part of the x86-64 baseline,
                // so every x86-64 CPU has it. Its body is safe code.
                let blended = unsafe {
                    if channels == 3 {
                        simd::blend_inside::<3>(taps, stride, weights)
                    } else {
                        simd::blend_inside::<4>(taps, stride, weights)
                    }
                };
                pixel.copy_from_slice(&blended[..channels]);
                fx += fine_x.step;
                fy += fine_y.step;
                continue;
            }
        }

        // Only the x86-64 fast path above reads these.
        let _ = (inside, origin);
        let tap = |fine: i64| (fine >> 32) - FINE_ORIGIN as i64;
        blend_pixel(image, fill, [tap(fx), tap(fy)], [wx, wy], pixel);
        fx += fine_x.step;
        fy += fine_y.step;
    }
}

/// [`fine_row`] for `C`-channel pixels (3 or 4) on CPUs with AVX2: two neighbouring inside
/// pixels blend together in one 256-bit register ([`simd::blend_inside_pair`]), with the same
/// arithmetic and bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fine_row_avx2<const C: i32>(
    image: ImageRef<'_>,
    fill: Fill,
    [fine_x, fine_y]: [FineRow; 2],
    row: &mut [u8],
) {
    let channels = C as usize;
    let (low_x, span_x) = inside_bounds(image.width());
    let (low_y, span_y) = inside_bounds(image.height());
    let (width, stride) = (image.width(), image.width() * channels);
    let source = image.data();
    let origin = (FINE_ORIGIN as i64) << 32;
    let weight = |fine: i64| ((fine >> (32 - WEIGHT_BITS)) as u32) & (WEIGHT_ONE - 1);
    // The taps of an inside pixel at `(fx, fy)` with room for the 8-byte reads, and its
    // weights.
    let taps = |fx: i64, fy: i64| {
        if ((fx - low_x) as u64) < span_x && ((fy - low_y) as u64) < span_y {
            let (tx, ty) = (((fx - origin) >> 32) as usize, ((fy - origin) >> 32) as usize);
            let top = ty * stride + tx * channels;
            let (wx, wy) = (weight(fx), weight(fy));
            let weights = [WEIGHT_ONE - wx, wx, WEIGHT_ONE - wy, wy];
            source.get(top..top + stride + 8).map(|taps| (taps, weights))
        } else {
            None
        }
    };

    let (mut fx, mut fy) = (fine_x.start, fine_y.start);
    let mut x = 0;
    while x < width {
        let first = taps(fx, fy);
        if x + 1 < width {
            if let (Some(a), Some(b)) = (first, taps(fx + fine_x.step, fy + fine_y.step)) {
                let (pa, pb) = simd::blend_inside_pair::<C>(a.0, b.0, stride, a.1, b.1);
                row[x * channels..(x + 1) * channels].copy_from_slice(&pa[..channels]);
                row[(x + 1) * channels..(x + 2) * channels].copy_from_slice(&pb[..channels]);
                x += 2;
                fx += 2 * fine_x.step;
                fy += 2 * fine_y.step;
                continue;
            }
        }
        let pixel = &mut row[x * channels..(x + 1) * channels];
        if let Some((taps, weights)) = first {
            pixel.copy_from_slice(&simd::blend_inside::<C>(taps, stride, weights)[..channels]);
        } else {
            let tap = |fine: i64| (fine >> 32) - FINE_ORIGIN as i64;
            blend_pixel(image, fill, [tap(fx), tap(fy)], [weight(fx), weight(fy)], pixel);
        }
        x += 1;
        fx += fine_x.step;
        fy += fine_y.step;
    }
}

/// Writes the bilinear blend of the 2 x 2 taps whose top-left tap is `(tx, ty)`, with the
/// right and lower taps weighted `wx` and `wy` (in 1/2048), into `pixel`.
#[inline(always)]
fn blend_pixel(
    image: ImageRef<'_>,
    fill: Fill,
    [tx, ty]: [i64; 2],
    [wx1, wy1]: [u32; 2],
    pixel: &mut [u8],
) {
    let (height, width, channels) = (image.height(), image.width(), pixel.len());
    let source = image.data();
    let stride = width * channels;
    let (wx0, wy0) = (WEIGHT_ONE - wx1, WEIGHT_ONE - wy1);

    let inside =
        tx >= 0 && ty >= 0 && (tx as u64) + 1 < width as u64 && (ty as u64) + 1 < height as u64;
    if inside {
        let top = ty as usize * stride + tx as usize * channels;

        #[cfg(target_arch = "x86_64")]
        if (channels == 3 || channels == 4) && top + stride + channels + 4 <= source.len() {
            let weights = [wx0, wx1, wy0, wy1];
            // SAFETY: `blend_pixel` only needs SSE2, which is part of the x86-64 baseline, so
            // every x86-64 CPU has it. Its body is safe code.
            let blended = unsafe { simd::blend_pixel(source, top, stride, channels, weights) };
            pixel.copy_from_slice(&blended[..channels]);
            return;
        }

        let p00 = &source[top..top + 2 * channels];
        let p10 = &source[top + stride..top + stride + 2 * channels];
        for k in 0..channels {
            let upper = u32::from(p00[k]) * wx0 + u32::from(p00[channels + k]) * wx1;
            let lower = u32::from(p10[k]) * wx0 + u32::from(p10[channels + k]) * wx1;
            pixel[k] = blend_rows(upper, lower, wy0, wy1);
        }
        return;
    }

    // Near or outside the border: resolve the two columns and two rows through the fill rule
    // once, then blend per channel.
    let constant = if let Fill::Constant(value) = fill { u32::from(value) } else { 0 };
    let columns = [fill.source_index(tx, width), fill.source_index(tx + 1, width)];
    let rows = [fill.source_index(ty, height), fill.source_index(ty + 1, height)];
    if columns == [None, None] || rows == [None, None] {
        pixel.fill(constant as u8);
        return;
    }

    let offset = |row: Option<usize>, column: Option<usize>| match (row, column) {
        (Some(sy), Some(sx)) => Some(sy * stride + sx * channels),
        _ => None,
    };
    let taps = [
        offset(rows[0], columns[0]),
        offset(rows[0], columns[1]),
        offset(rows[1], columns[0]),
        offset(rows[1], columns[1]),
    ];
    let read = |tap: Option<usize>, k: usize| tap.map_or(constant, |i| u32::from(source[i + k]));
    for (k, value) in pixel.iter_mut().enumerate() {
        let upper = read(taps[0], k) * wx0 + read(taps[1], k) * wx1;
        let lower = read(taps[2], k) * wx0 + read(taps[3], k) * wx1;
        *value = blend_rows(upper, lower, wy0, wy1);
    }
}

/// The bilinear blend of one 3- or 4-channel pixel in SSE2, which every x86-64 CPU has: the
/// same arithmetic as [`blend_rows`], four channels per instruction.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        _mm256_add_epi32, _mm256_cvtsi256_si32, _mm256_extract_epi32, _mm256_madd_epi16,
        _mm256_or_si256, _mm256_packs_epi32, _mm256_packus_epi16, _mm256_set1_epi32,
        _mm256_set_epi64x, _mm256_setr_epi32, _mm256_setzero_si256, _mm256_slli_epi32,
        _mm256_srli_epi32, _mm256_srli_si256, _mm256_unpackhi_epi8, _mm256_unpacklo_epi8,
        _mm_add_epi32, _mm_cvtsi128_si32, _mm_cvtsi32_si128, _mm_cvtsi64_si128, _mm_madd_epi16,
        _mm_or_si128, _mm_packs_epi32, _mm_packus_epi16, _mm_set1_epi32, _mm_setzero_si128,
        _mm_slli_epi32, _mm_srli_epi32, _mm_srli_si128, _mm_unpackhi_epi8, _mm_unpacklo_epi64,
        _mm_unpacklo_epi8,
    };

    use super::{ROW_CUT, WEIGHT_BITS};

    /// Blends the 2 x 2 pixels whose top-left byte is `source[top]`, with `weights` =
    /// `[wx0, wx1, wy0, wy1]`. Reads 4 bytes from each tap, so the caller checks that
    /// `top + stride + channels + 4 <= source.len()`. Channel `k` of the result is byte `k`.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn blend_pixel(
        source: &[u8],
        top: usize,
        stride: usize,
        channels: usize,
        weights: [u32; 4],
    ) -> [u8; 4] {
        let load = |at: usize| {
            let bytes: [u8; 4] = source[at..at + 4].try_into().expect("4 bytes");
            _mm_cvtsi32_si128(i32::from_le_bytes(bytes))
        };
        let pair = |low: u32, high: u32| _mm_set1_epi32((low | (high << 16)) as i32);
        let zero = _mm_setzero_si128();

        // 16-bit lanes [a0, b0, a1, b1, ...] of the left (a) and right (b) taps, times
        // [wx0, wx1, ...] summed in pairs: one 32-bit horizontal blend per channel.
        let wx = pair(weights[0], weights[1]);
        let row = |at: usize| {
            let interleaved =
                _mm_unpacklo_epi8(_mm_unpacklo_epi8(load(at), load(at + channels)), zero);
            _mm_srli_epi32::<{ ROW_CUT as i32 }>(_mm_madd_epi16(interleaved, wx))
        };
        let upper = row(top);
        let lower = row(top + stride);

        // Both cut row values fit 15 bits: put them side by side and blend by [wy0, wy1].
        let rows = _mm_or_si128(upper, _mm_slli_epi32::<16>(lower));
        let sum = _mm_madd_epi16(rows, pair(weights[2], weights[3]));
        const SHIFT: u32 = 2 * WEIGHT_BITS - ROW_CUT;
        let rounded = _mm_srli_epi32::<{ SHIFT as i32 }>(_mm_add_epi32(
            sum,
            _mm_set1_epi32(1 << (SHIFT - 1)),
        ));
        let bytes = _mm_packus_epi16(_mm_packs_epi32(rounded, zero), zero);
        _mm_cvtsi128_si32(bytes).to_le_bytes()
    }

    /// [`blend_pixel`] for `C`-channel pixels (3 or 4) with the top-left tap at `taps[0]` and
    /// the lower row at `taps[stride]`: one 8-byte load per tap row instead of one 4-byte load
    /// per tap. `taps` holds at least `stride + 8` bytes.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn blend_inside<const C: i32>(
        taps: &[u8],
        stride: usize,
        weights: [u32; 4],
    ) -> [u8; 4] {
        let load = |at: usize| {
            let bytes: [u8; 8] = taps[at..at + 8].try_into().expect("8 bytes");
            _mm_cvtsi64_si128(i64::from_le_bytes(bytes))
        };
        let pair = |low: u32, high: u32| _mm_set1_epi32((low | (high << 16)) as i32);
        let zero = _mm_setzero_si128();

        // Upper row in bytes 0..8, lower row in 8..16; shifted by one pixel, each byte lines
        // up with its right-hand tap, so one interleave pairs [left, right] per channel.
        let both = _mm_unpacklo_epi64(load(0), load(stride));
        let right = _mm_srli_si128::<C>(both);
        let wx = pair(weights[0], weights[1]);
        let blend = |interleaved| {
            let wide = _mm_unpacklo_epi8(interleaved, zero);
            _mm_srli_epi32::<{ ROW_CUT as i32 }>(_mm_madd_epi16(wide, wx))
        };
        let upper = blend(_mm_unpacklo_epi8(both, right));
        let lower = blend(_mm_unpackhi_epi8(both, right));

        let rows = _mm_or_si128(upper, _mm_slli_epi32::<16>(lower));
        let sum = _mm_madd_epi16(rows, pair(weights[2], weights[3]));
        const SHIFT: u32 = 2 * WEIGHT_BITS - ROW_CUT;
        let rounded = _mm_srli_epi32::<{ SHIFT as i32 }>(_mm_add_epi32(
            sum,
            _mm_set1_epi32(1 << (SHIFT - 1)),
        ));
        let bytes = _mm_packus_epi16(_mm_packs_epi32(rounded, zero), zero);
        _mm_cvtsi128_si32(bytes).to_le_bytes()
    }

    /// [`blend_inside`] of two pixels at once, one in each 128-bit lane of an AVX2 register:
    /// every instruction used works within lanes, so each lane does exactly the SSE2 steps.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn blend_inside_pair<const C: i32>(
        a: &[u8],
        b: &[u8],
        stride: usize,
        weights_a: [u32; 4],
        weights_b: [u32; 4],
    ) -> ([u8; 4], [u8; 4]) {
        let load = |taps: &[u8], at: usize| {
            let bytes: [u8; 8] = taps[at..at + 8].try_into().expect("8 bytes");
            i64::from_le_bytes(bytes)
        };
        let both = _mm256_set_epi64x(load(b, stride), load(b, 0), load(a, stride), load(a, 0));
        let pairs = |i: usize| {
            let pa = (weights_a[i] | (weights_a[i + 1] << 16)) as i32;
            let pb = (weights_b[i] | (weights_b[i + 1] << 16)) as i32;
            _mm256_setr_epi32(pa, pa, pa, pa, pb, pb, pb, pb)
        };
        let zero = _mm256_setzero_si256();

        let right = _mm256_srli_si256::<C>(both);
        let wx = pairs(0);
        let blend = |interleaved| {
            let wide = _mm256_unpacklo_epi8(interleaved, zero);
            _mm256_srli_epi32::<{ ROW_CUT as i32 }>(_mm256_madd_epi16(wide, wx))
        };
        let upper = blend(_mm256_unpacklo_epi8(both, right));
        let lower = blend(_mm256_unpackhi_epi8(both, right));

        let rows = _mm256_or_si256(upper, _mm256_slli_epi32::<16>(lower));
        let sum = _mm256_madd_epi16(rows, pairs(2));
        const SHIFT: u32 = 2 * WEIGHT_BITS - ROW_CUT;
        let rounded = _mm256_srli_epi32::<{ SHIFT as i32 }>(_mm256_add_epi32(
            sum,
            _mm256_set1_epi32(1 << (SHIFT - 1)),
        ));
        let bytes = _mm256_packus_epi16(_mm256_packs_epi32(rounded, zero), zero);
        let (low, high) = (_mm256_cvtsi256_si32(bytes), _mm256_extract_epi32::<4>(bytes));
        (low.to_le_bytes(), high.to_le_bytes())
    }
}

/// Rounds `v` half to even, as torch's `grid_sample` (`nearbyint`) does, without a libm call.
#[inline(always)]
fn round_half_even(v: f64) -> i64 {
    let shifted = v.clamp(-POSITION_LIMIT, POSITION_LIMIT) + (FixedPoint::ORIGIN as f64 + 0.5);
    // `shifted` is positive, so truncation is floor.
    let floor = shifted as i64;
    let tie = floor as f64 == shifted;
    floor - i64::from(tie && floor % 2 != 0) - FixedPoint::ORIGIN
}

fn warp_nearest(image: ImageRef<'_>, m: &[f64; 6], fill: Fill, out: &mut [u8], channels: usize) {
    let (height, width) = (image.height(), image.width());
    let stride = width * channels;

    for (y, row) in out.chunks_exact_mut(stride).enumerate() {
        let base_x = m[1] * y as f64 + m[2];
        let base_y = m[4] * y as f64 + m[5];

        for (x, pixel) in row.chunks_exact_mut(channels).enumerate() {
            let sx = round_half_even(m[0] * x as f64 + base_x);
            let sy = round_half_even(m[3] * x as f64 + base_y);
            match (fill.source_index(sx, width), fill.source_index(sy, height)) {
                (Some(sx), Some(sy)) => {
                    pixel.copy_from_slice(&image.row(sy)[sx * channels..][..channels])
                }
                _ => {
                    let value = if let Fill::Constant(value) = fill { value } else { 0 };
                    pixel.fill(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::key::SampleKey;

    fn ramp(height: usize, width: usize, channels: usize) -> Vec<u8> {
        (0..height * width * channels).map(|i| (i * 13 % 256) as u8).collect()
    }

    #[test]
    fn matrix_matches_torchvision() {
        // torchvision 0.26: _get_inverse_affine_matrix([0, 0], 30, [0, 0], 1, [10, 0]) gives
        // this matrix in centred coordinates. F.affine angle 30 is our -30, and a 1 x 1 image
        // has its centre at (0, 0), so the centring adds nothing.
        let params = AffineParams {
            angle: -30.0,
            scale: 1.0,
            translate_x: 0.0,
            translate_y: 0.0,
            shear: 10.0,
        };

        let m = params.inverse_matrix(1, 1);

        let expected = [0.7778619134302063, 0.6527036446661393, 0.0, -0.5, 0.8660254037844387, 0.0];
        for (found, expected) in m.iter().zip(expected) {
            assert!((found - expected).abs() < 1e-6, "{m:?}");
        }
    }

    #[test]
    fn translation_moves_content() {
        // Shift right by 1: output (x, y) reads input (x - 1, y), and column 0 reads the fill.
        let data = ramp(2, 3, 1);
        let image = ImageRef::new(&data, 2, 3, 1).unwrap();
        let params =
            AffineParams { angle: 0.0, scale: 1.0, translate_x: 1.0, translate_y: 0.0, shear: 0.0 };
        let m = params.inverse_matrix(2, 3);

        let output = warp_affine(image, &m, Interpolation::Bilinear, Fill::Constant(9)).unwrap();

        assert_eq!(output.data(), &[9, data[0], data[1], 9, data[3], data[4]]);
    }

    #[test]
    fn half_pixel_blends_with_fill() {
        let image = ImageRef::new(&[100, 200], 1, 2, 1).unwrap();
        let m = [1.0, 0.0, 0.5, 0.0, 1.0, 0.0];

        let constant = warp_affine(image, &m, Interpolation::Bilinear, Fill::Constant(0)).unwrap();
        let edge = warp_affine(image, &m, Interpolation::Bilinear, Fill::Edge).unwrap();

        assert_eq!(constant.data(), &[150, 100]);
        assert_eq!(edge.data(), &[150, 200]);
    }

    #[test]
    fn nearest_rounds_half_to_even() {
        let image = ImageRef::new(&[10, 20, 30, 40], 1, 4, 1).unwrap();
        let m = [1.0, 0.0, 0.5, 0.0, 1.0, 0.0];

        let output = warp_affine(image, &m, Interpolation::Nearest, Fill::Reflect).unwrap();

        // Positions 0.5, 1.5, 2.5, 3.5 round to 0, 2, 2, 4 (reflected to 2).
        assert_eq!(output.data(), &[10, 30, 30, 30]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_blend_equals_scalar() {
        // 2 rows of 3 pixels of 4 channels, with the taps starting at pixel 0 of row 0.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            let source: Vec<u8> = (0..24).map(|i| bytes[i % 8].rotate_left(i as u32)).collect();
            let (wx1, wy1) = ((state >> 20) as u32 % 2049, (state >> 40) as u32 % 2049);
            let weights = [WEIGHT_ONE - wx1, wx1, WEIGHT_ONE - wy1, wy1];

            for channels in [3, 4] {
                let stride = 3 * channels;
                // SAFETY: every x86-64 CPU has SSE2.
                let simd = unsafe { simd::blend_pixel(&source, 0, stride, channels, weights) };
                // SAFETY: as above.
                let inside = unsafe {
                    if channels == 3 {
                        simd::blend_inside::<3>(&source, stride, weights)
                    } else {
                        simd::blend_inside::<4>(&source, stride, weights)
                    }
                };
                assert_eq!(simd[..channels], inside[..channels], "channels {channels}");

                for k in 0..channels {
                    let tap = |i: usize| u32::from(source[i + k]);
                    let upper = tap(0) * weights[0] + tap(channels) * weights[1];
                    let lower = tap(stride) * weights[0] + tap(stride + channels) * weights[1];
                    let scalar = blend_rows(upper, lower, weights[2], weights[3]);
                    assert_eq!(simd[k], scalar, "channels {channels} k {k} weights {weights:?}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_rows_equal_portable_rows() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for (index, channels) in (0..60).zip([3, 4].into_iter().cycle()) {
            let (height, width) = (7 + index % 5, 9 + index % 7);
            let data = ramp(height, width, channels);
            let image = ImageRef::new(&data, height, width, channels).unwrap();
            let affine =
                Affine { scale: [0.7, 1.4], translate: [0.2, 0.2], ..Affine::rotation(40.0) };
            let m = affine.draw(height, width, &mut SampleKey::new(5, 0, index as u64).rng(0));
            let m = m.inverse_matrix(height, width);

            for y in 0..height {
                let fine = |start: f64, step: f64| FineRow::new(start, step, width).unwrap();
                let (start_x, start_y) = (m[1] * y as f64 + m[2], m[4] * y as f64 + m[5]);
                let rows = || [fine(start_x, m[0]), fine(start_y, m[3])];
                let (mut portable, mut wide) =
                    (vec![0; width * channels], vec![1; width * channels]);

                fine_row(image, Fill::Edge, rows(), &mut portable, channels);
                // SAFETY: the CPU supports AVX2 (checked at the top of the test).
                unsafe {
                    if channels == 3 {
                        fine_row_avx2::<3>(image, Fill::Edge, rows(), &mut wide);
                    } else {
                        fine_row_avx2::<4>(image, Fill::Edge, rows(), &mut wide);
                    }
                }
                assert_eq!(portable, wide, "index {index} row {y}");
            }
        }
    }

    #[test]
    fn warp_rejects_non_finite_matrix() {
        let image = ImageRef::new(&[1], 1, 1, 1).unwrap();

        let error = warp_affine(
            image,
            &[f64::NAN, 0.0, 0.0, 0.0, 1.0, 0.0],
            Interpolation::Nearest,
            Fill::Edge,
        )
        .unwrap_err();

        assert!(matches!(error, Error::InvalidParameter { op: "warp_affine", .. }));
    }

    #[test]
    fn affine_validate_rejects_bad_ranges() {
        let cases = [
            Affine { scale: [0.0, 1.0], ..Affine::default() },
            Affine { rotation: [10.0, -10.0], ..Affine::default() },
            Affine { translate: [1.5, 0.0], ..Affine::default() },
            Affine { shear: [-90.0, 0.0], ..Affine::default() },
            Affine { rotation: [f32::NAN, 0.0], ..Affine::default() },
        ];

        for affine in cases {
            assert!(affine.validate().is_err(), "{affine:?}");
        }
        assert!(Affine::rotation(15.0).validate().is_ok());
    }

    #[test]
    fn draw_stays_in_ranges() {
        let affine = Affine {
            rotation: [-15.0, 15.0],
            scale: [0.9, 1.1],
            translate: [0.1, 0.2],
            shear: [-5.0, 5.0],
            ..Affine::default()
        };

        for index in 0..200 {
            let p = affine.draw(50, 100, &mut SampleKey::new(4, 0, index).rng(0));

            assert!((-15.0..=15.0).contains(&p.angle), "{p:?}");
            assert!((0.9..=1.1).contains(&p.scale), "{p:?}");
            assert!(p.translate_x.abs() <= 10.0, "{p:?}");
            assert!(p.translate_y.abs() <= 10.0, "{p:?}");
            assert!((-5.0..=5.0).contains(&p.shear), "{p:?}");
        }
    }

    #[test]
    fn affine_serde_defaults() {
        let affine: Affine = serde_json::from_str(r#"{"rotation":[-15,15]}"#).unwrap();

        assert_eq!(affine, Affine::rotation(15.0));
        assert!(serde_json::from_str::<Affine>(r#"{"angle":1}"#).is_err());
    }
}
