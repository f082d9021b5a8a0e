//! Bilinear resampling of an image through a displacement field.

use super::{invalid, ElasticField};
use crate::error::Result;
use crate::geometry::Fill;
use crate::image::{ImageBuf, ImageRef};

/// Bits of the fixed-point fraction of a source position: positions and bilinear weights are
/// multiples of 1/2048 pixel.
const FRACTION_BITS: u32 = 11;

/// `2^FRACTION_BITS` as f32.
const FRACTION_SCALE: f32 = (1u32 << FRACTION_BITS) as f32;

/// The largest image side `remap` accepts, and the clamp of source positions: `2^19` pixels,
/// so that a position times 2048 fits in an i32.
pub const MAX_REMAP_SIDE: usize = 1 << 19;

/// Resamples a u8 HWC image through `field`: output pixel `(x, y)` is the bilinear sample of
/// `image` at `(x + dx, y + dy)`, rounded to nearest (halves up) per channel.
///
/// Pixel centres lie at integer positions (the convention of scipy's `map_coordinates`,
/// OpenCV's `remap` and torchvision). Each of the four bilinear taps that falls outside the
/// image reads `fill` (see [`Fill`]).
///
/// Arithmetic: the source position is rounded to a multiple of 1/2048 pixel, and the blend
/// runs in integers with those 11-bit weights. Against an f64 bilinear sample at the exact
/// position the value before rounding differs by at most 255 / 2048 = 0.125, so outputs agree
/// or differ by 1. (OpenCV's `remap` rounds positions to 1/32 pixel.) Source positions are
/// clamped to `+-2^19` pixels, far outside any accepted image, which only matters for
/// [`Fill::Reflect`].
///
/// # Errors
///
/// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the field's size differs
/// from the image's, its vectors do not hold `height * width` values, a displacement is not
/// finite, or a side of the image exceeds [`MAX_REMAP_SIDE`].
pub fn remap(image: ImageRef<'_>, field: &ElasticField, fill: Fill) -> Result<ImageBuf> {
    let (height, width, channels) = (image.height(), image.width(), image.channels());
    let len = height * width;
    if (field.height, field.width) != (height, width)
        || field.dx.len() != len
        || field.dy.len() != len
    {
        return Err(invalid(
            "field",
            format!(
                "{}x{} with {} dx and {} dy values",
                field.height,
                field.width,
                field.dx.len(),
                field.dy.len()
            ),
            &format!("the image size {height}x{width} with {len} values in each of dx and dy"),
        ));
    }
    if height > MAX_REMAP_SIDE || width > MAX_REMAP_SIDE {
        return Err(invalid(
            "image",
            format!("{height}x{width}"),
            "sides of at most 524288 pixels",
        ));
    }
    // A fold without early exit, which the compiler vectorises.
    let finite = field.dx.iter().chain(&field.dy).fold(true, |ok, d| ok & d.is_finite());
    if !finite {
        return Err(invalid("field", "a non-finite displacement", "finite displacements"));
    }

    let mut out = vec![0u8; len * channels];
    // Constant channel counts let the compiler unroll the per-channel loops.
    match channels {
        1 => remap_rows(image, field, fill, 1, &mut out),
        3 => remap_packed::<3>(image, field, fill, &mut out),
        4 => remap_packed::<4>(image, field, fill, &mut out),
        _ => remap_rows(image, field, fill, channels, &mut out),
    }
    ImageBuf::new(out, height, width, channels)
}

/// Per-row scratch of [`remap_rows`]: the cells and weights of the row's pixels, and the four
/// taps and two weights of each output value (pixel and channel), in output order.
struct Scratch {
    /// Column of the top-left tap of each pixel.
    x0: Vec<i32>,
    /// Row of the top-left tap of each pixel.
    y0: Vec<i32>,
    /// Horizontal weight of each pixel, in `0..2048`.
    wx: Vec<i16>,
    /// Vertical weight of each pixel, in `0..2048`.
    wy: Vec<i16>,
    /// Taps `[top left, top right, bottom left, bottom right]` of each output value.
    taps: [Vec<u8>; 4],
    /// Horizontal weight of each output value.
    lane_wx: Vec<i16>,
    /// Vertical weight of each output value.
    lane_wy: Vec<i16>,
}

/// Fills `out` row by row; `channels` equals `image.channels()` and is a literal at the call
/// sites that matter for speed.
///
/// Each row runs in three passes. The first computes the cells and weights of all pixels and
/// the last blends all values, both vectorised. The middle one gathers the taps of each pixel:
/// two pixels from each of two rows where the cell lies inside the image, the fill elsewhere.
#[inline(always)]
fn remap_rows(
    image: ImageRef<'_>,
    field: &ElasticField,
    fill: Fill,
    channels: usize,
    out: &mut [u8],
) {
    let (height, width) = (image.height(), image.width());
    let source = image.data();
    let stride = width * channels;
    let values = width * channels;
    let mut s = Scratch {
        x0: vec![0; width],
        y0: vec![0; width],
        wx: vec![0; width],
        wy: vec![0; width],
        taps: std::array::from_fn(|_| vec![0; values]),
        lane_wx: vec![0; values],
        lane_wy: vec![0; values],
    };
    let mask = (1 << FRACTION_BITS) - 1;

    for (y, row_out) in out.chunks_exact_mut(stride).enumerate() {
        // Cells and weights of the row, in loops the compiler vectorises.
        let row_dx = &field.dx[y * width..(y + 1) * width];
        let row_dy = &field.dy[y * width..(y + 1) * width];
        for (x, ((x0, wx), &d)) in s.x0.iter_mut().zip(&mut s.wx).zip(row_dx).enumerate() {
            let fixed = to_fixed(x as f32 + d);
            (*x0, *wx) = (fixed >> FRACTION_BITS, (fixed & mask) as i16);
        }
        for ((y0, wy), &d) in s.y0.iter_mut().zip(&mut s.wy).zip(row_dy) {
            let fixed = to_fixed(y as f32 + d);
            (*y0, *wy) = (fixed >> FRACTION_BITS, (fixed & mask) as i16);
        }

        // Taps, one pixel at a time.
        let [top_left, top_right, bottom_left, bottom_right] = &mut s.taps;
        let lanes = top_left
            .chunks_exact_mut(channels)
            .zip(top_right.chunks_exact_mut(channels))
            .zip(bottom_left.chunks_exact_mut(channels))
            .zip(bottom_right.chunks_exact_mut(channels))
            .zip(s.lane_wx.chunks_exact_mut(channels).zip(s.lane_wy.chunks_exact_mut(channels)));
        for (x, ((((a, b), c), d), (lane_wx, lane_wy))) in lanes.enumerate() {
            let (x0, y0) = (s.x0[x], s.y0[x]);
            lane_wx.fill(s.wx[x]);
            lane_wy.fill(s.wy[x]);
            // One unsigned compare per axis also rejects negative cells.
            let inside = (x0 as u32 as usize) + 1 < width && (y0 as u32 as usize) + 1 < height;
            if inside {
                let base = (y0 as usize * width + x0 as usize) * channels;
                let top = &source[base..base + 2 * channels];
                let bottom = &source[base + stride..base + stride + 2 * channels];
                a.copy_from_slice(&top[..channels]);
                b.copy_from_slice(&top[channels..]);
                c.copy_from_slice(&bottom[..channels]);
                d.copy_from_slice(&bottom[channels..]);
            } else {
                border_taps(image, fill, (x0, y0), [a, b, c, d]);
            }
        }

        // Blend of every value of the row, in a loop the compiler vectorises.
        let blended = row_out
            .iter_mut()
            .zip(top_left.iter().zip(top_right.iter()))
            .zip(bottom_left.iter().zip(bottom_right.iter()))
            .zip(s.lane_wx.iter().zip(s.lane_wy.iter()));
        for (((o, (&a, &b)), (&c, &d)), (&wx, &wy)) in blended {
            *o = blend([a, b, c, d], wx, wy);
        }
    }
}

/// [`remap_rows_packed`], with AVX2 where the CPU has it: the same code with 16 instead of 8
/// lanes of 16 bits, and the same bytes.
fn remap_packed<const C: usize>(
    image: ImageRef<'_>,
    field: &ElasticField,
    fill: Fill,
    out: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above), which is the only
        // requirement of a `target_feature` function, and its body is safe code.
        unsafe { remap_packed_avx2::<C>(image, field, fill, out) };
        return;
    }
    remap_rows_packed::<C>(image, field, fill, out);
}

/// [`remap_rows_packed`] compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn remap_packed_avx2<const C: usize>(
    image: ImageRef<'_>,
    field: &ElasticField,
    fill: Fill,
    out: &mut [u8],
) {
    remap_rows_packed::<C>(image, field, fill, out);
}

/// [`remap_rows`] for 3 or 4 channels, with the taps of each pixel held as 4 bytes.
///
/// A pixel's taps are read as four unaligned 4-byte words. With 3 channels the fourth byte
/// belongs to the next pixel, and its blend is discarded. The weights are stored once per pixel
/// as 4 lanes, so the tap pass does 4 loads and 4 stores per pixel and the blend pass works on
/// whole rows of lanes.
#[inline(always)]
fn remap_rows_packed<const C: usize>(
    image: ImageRef<'_>,
    field: &ElasticField,
    fill: Fill,
    out: &mut [u8],
) {
    let (height, width) = (image.height(), image.width());
    let source = image.data();
    let stride = width * C;
    let mut x0s = vec![0i32; width];
    let mut y0s = vec![0i32; width];
    let mut lane_wx = vec![[0i16; 4]; width];
    let mut lane_wy = vec![[0i16; 4]; width];
    let mut taps: [Vec<[u8; 4]>; 4] = std::array::from_fn(|_| vec![[0; 4]; width]);
    let mut blended = vec![[0u8; 4]; width];
    let mask = (1 << FRACTION_BITS) - 1;

    for (y, row_out) in out.chunks_exact_mut(stride).enumerate() {
        // Cells and weights of the row, in loops the compiler vectorises.
        let row_dx = &field.dx[y * width..(y + 1) * width];
        let row_dy = &field.dy[y * width..(y + 1) * width];
        for (x, ((x0, wx), &d)) in x0s.iter_mut().zip(&mut lane_wx).zip(row_dx).enumerate() {
            let fixed = to_fixed(x as f32 + d);
            (*x0, *wx) = (fixed >> FRACTION_BITS, [(fixed & mask) as i16; 4]);
        }
        for ((y0, wy), &d) in y0s.iter_mut().zip(&mut lane_wy).zip(row_dy) {
            let fixed = to_fixed(y as f32 + d);
            (*y0, *wy) = (fixed >> FRACTION_BITS, [(fixed & mask) as i16; 4]);
        }

        // Taps, one pixel at a time.
        let [top_left, top_right, bottom_left, bottom_right] = &mut taps;
        let pixels = top_left.iter_mut().zip(top_right.iter_mut());
        let pixels = pixels.zip(bottom_left.iter_mut().zip(bottom_right.iter_mut()));
        for ((x0, y0), ((a, b), (c, d))) in x0s.iter().zip(&y0s).zip(pixels) {
            let (x0, y0) = (*x0, *y0);
            // One unsigned compare per axis also rejects negative cells.
            let inside = (x0 as u32 as usize) + 1 < width && (y0 as u32 as usize) + 1 < height;
            let base = (y0 as u32 as usize * width + x0 as u32 as usize) * C;
            // The two rows of the cell plus the spare bytes of the 4-byte reads.
            let block = if inside { source.get(base..base + stride + C + 4) } else { None };
            if let Some(block) = block {
                let word =
                    |start: usize| -> [u8; 4] { block[start..start + 4].try_into().unwrap() };
                (*a, *b) = (word(0), word(C));
                (*c, *d) = (word(stride), word(stride + C));
            } else {
                let mut four = [[0u8; 4]; 4];
                let [ta, tb, tc, td] = &mut four;
                let slots = [&mut ta[..C], &mut tb[..C], &mut tc[..C], &mut td[..C]];
                if inside {
                    let starts = [base, base + C, base + stride, base + stride + C];
                    for (slot, start) in slots.into_iter().zip(starts) {
                        slot.copy_from_slice(&source[start..start + C]);
                    }
                } else {
                    border_taps(image, fill, (x0, y0), slots);
                }
                [*a, *b, *c, *d] = four;
            }
        }

        // Blend of every lane of the row, in a loop the compiler vectorises.
        let lanes = top_left.as_flattened().iter().zip(top_right.as_flattened());
        let lanes = lanes.zip(bottom_left.as_flattened().iter().zip(bottom_right.as_flattened()));
        let weights = lane_wx.as_flattened().iter().zip(lane_wy.as_flattened());
        let target = if C == 4 { &mut *row_out } else { blended.as_flattened_mut() };
        for ((o, ((&a, &b), (&c, &d))), (&wx, &wy)) in target.iter_mut().zip(lanes).zip(weights) {
            *o = blend([a, b, c, d], wx, wy);
        }
        if C != 4 {
            for (o, lanes) in row_out.chunks_exact_mut(C).zip(&blended) {
                o.copy_from_slice(&lanes[..C]);
            }
        }
    }
}

/// Converts a source position to fixed point with [`FRACTION_BITS`] fraction bits, rounded to
/// nearest (halves to even), after clamping it to `+-2^19` pixels.
#[inline(always)]
fn to_fixed(position: f32) -> i32 {
    // Adding 1.5 * 2^52 to an f64 below 2^51 in magnitude leaves its value rounded to an
    // integer in the low mantissa bits, whose low 32 bits are that integer in two's
    // complement. Unlike a saturating `as` cast, this vectorises.
    const ROUNDING: f64 = 6_755_399_441_055_744.0;
    let limit = MAX_REMAP_SIDE as f32;
    let scaled = f64::from(position.clamp(-limit, limit)) * f64::from(FRACTION_SCALE);
    (scaled + ROUNDING).to_bits() as i32
}

/// Writes the four taps `[top left, top right, bottom left, bottom right]` of each channel of
/// the cell `(x0, y0)`, where some tap lies outside the image and reads `fill`.
#[cold]
fn border_taps(image: ImageRef<'_>, fill: Fill, (x0, y0): (i32, i32), taps: [&mut [u8]; 4]) {
    let (height, width, channels) = (image.height(), image.width(), image.channels());
    let constant = match fill {
        Fill::Constant(value) => value,
        Fill::Edge | Fill::Reflect => 0,
    };
    let (x0, y0) = (i64::from(x0), i64::from(y0));
    let columns = [fill.source_index(x0, width), fill.source_index(x0 + 1, width)];
    let rows = [fill.source_index(y0, height), fill.source_index(y0 + 1, height)];
    let corners = [(rows[0], columns[0]), (rows[0], columns[1]), (rows[1], columns[0])];
    let corners = [corners[0], corners[1], corners[2], (rows[1], columns[1])];

    for (tap, (row, column)) in taps.into_iter().zip(corners) {
        match (row, column) {
            (Some(sy), Some(sx)) => {
                let start = (sy * width + sx) * channels;
                tap.copy_from_slice(&image.data()[start..start + channels]);
            }
            _ => tap.fill(constant),
        }
    }
}

/// Bilinear blend of the taps `[top left, top right, bottom left, bottom right]` with
/// fixed-point weights `wx`, `wy` in `0..2048`, rounded to nearest (halves up):
/// `top = a * 2048 + wx * (b - a)`, `bottom` likewise, and the result
/// `(top * 2048 + wy * (bottom - top) + 2^21) >> 22`.
///
/// Each value stays below `255 * 2^22`, so it fits in an i32. The result is a convex
/// combination of the taps and needs no clamp. Every product is of two i16 values, which
/// vectorises without 32-bit multiplies: `wy * (bottom - top)` is split into the high and low
/// 11 bits of the difference.
#[inline(always)]
fn blend(taps: [u8; 4], wx: i16, wy: i16) -> u8 {
    let [a, b, c, d] = taps.map(i16::from);
    let (wx, wy) = (i32::from(wx), i32::from(wy));
    let top = (i32::from(a) << FRACTION_BITS) + wx * i32::from(b - a);
    let bottom = (i32::from(c) << FRACTION_BITS) + wx * i32::from(d - c);
    let difference = bottom - top;
    let (high, low) = (difference >> FRACTION_BITS, difference & ((1 << FRACTION_BITS) - 1));
    let high = i32::from(high as i16);
    let low = i32::from(low as i16);
    let value = ((top + wy * high) << FRACTION_BITS) + wy * low;
    ((value + (1 << (2 * FRACTION_BITS - 1))) >> (2 * FRACTION_BITS)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// A non-square image whose values all differ.
    fn ramp(height: usize, width: usize, channels: usize) -> Vec<u8> {
        (0..height * width * channels).map(|i| (i * 3 % 251) as u8).collect()
    }

    /// Bilinear sample computed in f64 with explicit fill rules, apart from `remap`.
    fn naive_sample(
        data: &[u8],
        (height, width, channels): (usize, usize, usize),
        (sx, sy): (f64, f64),
        fill: Fill,
        c: usize,
    ) -> u8 {
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let read = |y: i64, x: i64| -> f64 {
            match (fill.source_index(y, height), fill.source_index(x, width)) {
                (Some(y), Some(x)) => f64::from(data[(y * width + x) * channels + c]),
                _ => match fill {
                    Fill::Constant(v) => f64::from(v),
                    _ => unreachable!(),
                },
            }
        };
        let (x0, y0) = (x0 as i64, y0 as i64);
        let value = (1.0 - fy) * ((1.0 - fx) * read(y0, x0) + fx * read(y0, x0 + 1))
            + fy * ((1.0 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1));
        (value.clamp(0.0, 255.0) + 0.5).floor() as u8
    }

    #[test]
    fn zero_field_is_identity() {
        let data = ramp(5, 7, 3);
        let image = ImageRef::new(&data, 5, 7, 3).unwrap();

        let out = remap(image, &ElasticField::constant(5, 7, 0.0, 0.0), Fill::Constant(9));

        assert_eq!(out.unwrap().data(), &data[..]);
    }

    #[test]
    fn integer_shift_moves_pixels() {
        let data = ramp(4, 6, 2);
        let image = ImageRef::new(&data, 4, 6, 2).unwrap();

        let out = remap(image, &ElasticField::constant(4, 6, 2.0, -1.0), Fill::Constant(200));

        let out = out.unwrap();
        for y in 0..4 {
            for x in 0..6 {
                for c in 0..2 {
                    let expected =
                        if y >= 1 && x + 2 < 6 { data[((y - 1) * 6 + x + 2) * 2 + c] } else { 200 };
                    assert_eq!(out.data()[(y * 6 + x) * 2 + c], expected, "({y}, {x}, {c})");
                }
            }
        }
    }

    #[test]
    fn matches_naive_for_every_fill() {
        let (height, width, channels) = (6, 9, 3);
        let data = ramp(height, width, channels);
        let image = ImageRef::new(&data, height, width, channels).unwrap();
        let len = height * width;
        let field = ElasticField {
            height,
            width,
            dx: (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.43).collect(),
            dy: (0..len).map(|i| ((i * 53 % 19) as f32 - 9.0) * 0.61).collect(),
        };

        for fill in [Fill::Constant(77), Fill::Edge, Fill::Reflect] {
            let out = remap(image, &field, fill).unwrap();
            for i in 0..len {
                let (y, x) = (i / width, i % width);
                let position =
                    (x as f64 + f64::from(field.dx[i]), y as f64 + f64::from(field.dy[i]));
                for c in 0..channels {
                    let expected =
                        naive_sample(&data, (height, width, channels), position, fill, c);
                    let found = out.data()[i * channels + c];
                    assert!(found.abs_diff(expected) <= 1, "{fill:?} pixel {i} channel {c}");
                }
            }
        }
    }

    #[test]
    fn one_pixel_image() {
        let image = ImageRef::new(&[10, 20, 30, 40, 50], 1, 1, 5).unwrap();

        let edge = remap(image, &ElasticField::constant(1, 1, 0.7, -3.2), Fill::Edge).unwrap();
        let zero =
            remap(image, &ElasticField::constant(1, 1, 0.5, 0.0), Fill::Constant(0)).unwrap();

        assert_eq!(edge.data(), &[10, 20, 30, 40, 50]);
        assert_eq!(zero.data(), &[5, 10, 15, 20, 25]);
    }

    #[test]
    fn blend_exact_cases() {
        assert_eq!(blend([10, 20, 30, 40], 0, 0), 10);
        assert_eq!(blend([10, 20, 30, 40], 1024, 0), 15);
        assert_eq!(blend([10, 20, 30, 40], 1024, 1024), 25);
        assert_eq!(blend([255, 255, 255, 255], 2047, 2047), 255);
        assert_eq!(blend([0, 1, 0, 1], 1024, 0), 1);
        assert_eq!(to_fixed(-0.25), -512);
        assert_eq!(to_fixed(3.5), 7168);
        assert_eq!(to_fixed(-2.7), -5530);
        assert_eq!(to_fixed(1e30), 1 << 30);
        assert_eq!(to_fixed(-1e30), -(1 << 30));
    }

    #[test]
    fn huge_displacement_reads_fill() {
        let data = ramp(3, 4, 1);
        let image = ImageRef::new(&data, 3, 4, 1).unwrap();

        let far = remap(image, &ElasticField::constant(3, 4, 1e30, -1e30), Fill::Constant(5));
        let reflect = remap(image, &ElasticField::constant(3, 4, 1e30, 0.0), Fill::Reflect);

        assert_eq!(far.unwrap().data(), &[5; 12]);
        assert!(reflect.is_ok());
    }

    #[test]
    fn rejects_mismatched_or_bad_field() {
        let data = ramp(3, 4, 1);
        let image = ImageRef::new(&data, 3, 4, 1).unwrap();
        let mut nan = ElasticField::constant(3, 4, 0.0, 0.0);
        nan.dy[5] = f32::NAN;

        let size = remap(image, &ElasticField::constant(4, 3, 0.0, 0.0), Fill::Edge);
        let values = remap(image, &nan, Fill::Edge);

        assert!(matches!(size, Err(Error::InvalidParameter { parameter: "field", .. })));
        assert!(matches!(values, Err(Error::InvalidParameter { parameter: "field", .. })));
    }
}
