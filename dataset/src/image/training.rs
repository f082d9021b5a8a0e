//! JPEG decoding for the training loader: stored shard payloads to u8 HWC pixels, at full size
//! or reduced by 2, 4 or 8 in the inverse DCT.
//!
//! The decoder is libjpeg-turbo (Debian's `libturbojpeg` 2.1.5) through the `turbojpeg` crate
//! 0.5. It was chosen over the pure-Rust decoders because it decodes a full-size image about
//! 1.4x as fast as zune-jpeg 0.5.15. Its reduced decodes are faster still, which a full decode
//! followed by a downscale is not. Measured on 2026-12-05 on a 2-core AMD EPYC VM by a one-off
//! benchmark outside this repository: one thread, decoding from memory to RGB8, median of 5
//! passes over 38 photos (shorter side 500, quality 90), in images per second. Parallel builds
//! kept the load average near 6 throughout, so the absolute figures are low and noisy. The
//! ratios held in an earlier single pass at load 3.6 (zune-jpeg 616, libjpeg-turbo 896).
//!
//! | decoder | full | 1/2 | 1/4 | 1/8 |
//! | --- | --- | --- | --- | --- |
//! | zune-jpeg 0.5.15 (+ fast_image_resize box filter for reductions) | 323 | 317 | 365 | 363 |
//! | jpeg-decoder 0.3 (`Decoder::scale` for reductions) | 319 | 403 | 421 | 498 |
//! | libjpeg-turbo 2.1.5 (scaled IDCT for reductions) | 438 | 535 | 634 | 669 |
//!
//! On 38 wallpapers of 1.0 to 17.9 MPix (the photos' originals, same load) a full decode ran at
//! 9.9 images per second with zune-jpeg, 11.1 with jpeg-decoder and 14.9 with libjpeg-turbo, and
//! libjpeg-turbo at 1/2, 1/4 and 1/8 at 15.9, 17.1 and 17.4, probably because entropy decoding,
//! which scaling does not shorten, dominates for large files.
//!
//! Because libjpeg-turbo is a system library, building this crate needs `libturbojpeg0-dev`
//! (found through pkg-config).

use std::cell::RefCell;

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};

/// DCT reductions the decoder supports, coarsest first: the output is 1/8, 1/4, 1/2 or the
/// full size in each dimension.
const REDUCTIONS: [usize; 4] = [8, 4, 2, 1];

thread_local! {
    /// One decompressor per thread, created on first use, so that steady-state decoding
    /// allocates nothing on our side.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Returns the DCT reduction (1, 2, 4 or 8) at which an image of `height` x `width` pixels is
/// decoded: the coarsest whose result keeps its shorter side at `min_shorter_side` or more.
///
/// A `min_shorter_side` at or above the image's shorter side (including `usize::MAX`) gives 1,
/// the full size.
pub fn reduction_for(height: usize, width: usize, min_shorter_side: usize) -> usize {
    let shorter = height.min(width);
    if min_shorter_side >= shorter {
        return 1;
    }
    REDUCTIONS.into_iter().find(|&factor| shorter.div_ceil(factor) >= min_shorter_side).unwrap_or(1)
}

/// Returns the (height, width) of an image of `height` x `width` pixels decoded at `reduction`:
/// each side divided by the reduction and rounded up, as libjpeg scales.
pub fn reduced_size(height: usize, width: usize, reduction: usize) -> (usize, usize) {
    (height.div_ceil(reduction), width.div_ceil(reduction))
}

/// Decodes a JPEG payload to u8 HWC pixels with `channels` channels (3 = RGB, 1 = grey) into
/// `out`, at the coarsest DCT reduction among 1, 1/2, 1/4 and 1/8 whose result keeps its
/// shorter side at `min_shorter_side` or more (see [`reduction_for`]).
///
/// `out` is cleared and resized to the output size, so a buffer reused across calls keeps its
/// allocation once it has grown to the largest output. Returns the (height, width) written,
/// each side the stored side divided by the reduction and rounded up.
///
/// The payload's components must match `channels`: a 3-component JPEG (YCbCr or RGB) for 3,
/// a 1-component grey JPEG for 1. The shard converter stores upright images, so the EXIF
/// orientation is not read.
///
/// # Errors
///
/// Returns a message with the payload size and the failing step when `channels` is not 1 or 3,
/// or when the payload is not a JPEG, is truncated or corrupt, or has a component count that
/// does not match `channels`. libjpeg-turbo's corrupt-data warnings count as errors. The
/// caller adds the shard file and record index.
pub fn decode_jpeg_scaled(
    bytes: &[u8],
    channels: usize,
    min_shorter_side: usize,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), String> {
    let format = match channels {
        1 => PixelFormat::GRAY,
        3 => PixelFormat::RGB,
        other => return Err(format!("cannot decode a jpeg to {other} channels (expected 1 or 3)")),
    };

    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(decompressor) => decompressor,
            None => slot.insert(
                Decompressor::new()
                    .map_err(|e| format!("failed to create a libjpeg-turbo decompressor: {e}"))?,
            ),
        };
        let result = decode_with(decompressor, bytes, channels, format, min_shorter_side, out);
        if result.is_err() {
            // libjpeg-turbo 2.1.5 can leave a handle broken after an error: every later header
            // read fails, and a later decode of a truncated payload crashed with SIGSEGV in
            // `tjDecompress2`. A fresh handle after each error avoided both in 38,000 decodes
            // of mutated photos.
            *slot = None;
        }
        result
    })
}

fn decode_with(
    decompressor: &mut Decompressor,
    bytes: &[u8],
    channels: usize,
    format: PixelFormat,
    min_shorter_side: usize,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), String> {
    let header = decompressor.read_header(bytes).map_err(|e| {
        format!("invalid jpeg header in {} bytes starting {}: {e}", bytes.len(), head_hex(bytes))
    })?;
    if header.width == 0 || header.height == 0 {
        return Err(format!(
            "jpeg header in {} bytes declares {}x{} pixels",
            bytes.len(),
            header.width,
            header.height
        ));
    }
    let components = match header.colorspace {
        Colorspace::Gray => 1,
        Colorspace::YCbCr | Colorspace::RGB => 3,
        Colorspace::CMYK | Colorspace::YCCK => 4,
    };
    if components != channels {
        return Err(format!(
            "jpeg of {}x{} pixels has {components} components ({:?}), expected {channels}",
            header.width, header.height, header.colorspace
        ));
    }

    let reduction = reduction_for(header.height, header.width, min_shorter_side);
    let (height, width) = reduced_size(header.height, header.width, reduction);
    out.clear();
    out.resize(height * width * channels, 0);

    // libjpeg-turbo picks the largest scaling factor whose output fits the requested size, and
    // at 1/reduction the output is exactly ceil(side / reduction), so it decodes at that factor.
    let image = Image { pixels: &mut out[..], width, pitch: width * channels, height, format };
    decompressor.decompress(bytes, image).map_err(|e| {
        format!(
            "failed to decode jpeg of {}x{} pixels at 1/{reduction} from {} bytes: {e}",
            header.width,
            header.height,
            bytes.len()
        )
    })?;
    Ok((height, width))
}

/// Formats the first bytes of a payload as hex, for error messages.
fn head_hex(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    if head.is_empty() {
        "(empty)".to_string()
    } else {
        head.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder};

    /// Builds a smooth RGB gradient, so JPEG loss stays small.
    fn gradient_rgb(height: usize, width: usize) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(height * width * 3);
        for y in 0..height {
            for x in 0..width {
                pixels.push((x * 255 / width.max(2).saturating_sub(1).max(1)) as u8);
                pixels.push((y * 255 / height.max(2).saturating_sub(1).max(1)) as u8);
                pixels.push(((x + y) * 127 / (width + height)) as u8 + 64);
            }
        }
        pixels
    }

    fn gradient_grey(height: usize, width: usize) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(height * width);
        for y in 0..height {
            for x in 0..width {
                pixels.push(((x + 2 * y) * 255 / (width + 2 * height)) as u8);
            }
        }
        pixels
    }

    fn encode(pixels: &[u8], height: usize, width: usize, colour: ColorType) -> Vec<u8> {
        let mut jpeg = Vec::new();
        let encoder = Encoder::new(&mut jpeg, 95);
        encoder
            .encode(pixels, width as u16, height as u16, colour)
            .expect("jpeg-encoder encodes the test image");
        jpeg
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let total: u64 = a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
        total as f64 / a.len() as f64
    }

    /// Averages `factor` x `factor` blocks (clipped at the right and bottom edges), the
    /// reference for a DCT-reduced decode.
    fn box_downscale(pixels: &[u8], height: usize, width: usize, factor: usize) -> Vec<u8> {
        let (out_height, out_width) = reduced_size(height, width, factor);
        let mut out = Vec::with_capacity(out_height * out_width * 3);
        for oy in 0..out_height {
            for ox in 0..out_width {
                for c in 0..3 {
                    let (mut sum, mut count) = (0usize, 0usize);
                    for y in oy * factor..((oy + 1) * factor).min(height) {
                        for x in ox * factor..((ox + 1) * factor).min(width) {
                            sum += usize::from(pixels[(y * width + x) * 3 + c]);
                            count += 1;
                        }
                    }
                    out.push((sum / count) as u8);
                }
            }
        }
        out
    }

    #[test]
    fn full_decode_round_trip() {
        for (height, width) in [(1, 1), (9, 17), (17, 9), (333, 500), (64, 48)] {
            let pixels = gradient_rgb(height, width);
            let jpeg = encode(&pixels, height, width, ColorType::Rgb);
            let mut out = Vec::new();
            let size = decode_jpeg_scaled(&jpeg, 3, usize::MAX, &mut out).expect("decodes");
            assert_eq!(size, (height, width), "size of {height}x{width}");
            assert_eq!(out.len(), height * width * 3, "buffer length of {height}x{width}");
            let error = mean_abs_diff(&out, &pixels);
            assert!(error < 2.0, "{height}x{width}: mean abs error {error}");
        }
    }

    #[test]
    fn grey_round_trip() {
        let (height, width) = (37, 50);
        let pixels = gradient_grey(height, width);
        let jpeg = encode(&pixels, height, width, ColorType::Luma);
        let mut out = Vec::new();
        let size = decode_jpeg_scaled(&jpeg, 1, usize::MAX, &mut out).expect("decodes");
        assert_eq!(size, (height, width));
        assert_eq!(out.len(), height * width);
        let error = mean_abs_diff(&out, &pixels);
        assert!(error < 2.0, "mean abs error {error}");
    }

    #[test]
    fn channel_mismatch_is_error() {
        let rgb = encode(&gradient_rgb(16, 24), 16, 24, ColorType::Rgb);
        let grey = encode(&gradient_grey(16, 24), 16, 24, ColorType::Luma);
        let mut out = Vec::new();
        let rgb_as_grey = decode_jpeg_scaled(&rgb, 1, usize::MAX, &mut out).unwrap_err();
        assert!(rgb_as_grey.contains("3 components"), "{rgb_as_grey}");
        let grey_as_rgb = decode_jpeg_scaled(&grey, 3, usize::MAX, &mut out).unwrap_err();
        assert!(grey_as_rgb.contains("1 components"), "{grey_as_rgb}");
        let four = decode_jpeg_scaled(&rgb, 4, usize::MAX, &mut out).unwrap_err();
        assert!(four.contains("4 channels"), "{four}");
    }

    #[test]
    fn reduced_size_rounds_up() {
        // Odd sizes at every reduction: libjpeg-turbo writes ceil(side / reduction).
        for (height, width) in [(333, 500), (17, 9), (1, 1), (15, 31)] {
            let pixels = gradient_rgb(height, width);
            let jpeg = encode(&pixels, height, width, ColorType::Rgb);
            for reduction in [2, 4, 8] {
                let min_side = height.min(width).div_ceil(reduction);
                let mut out = Vec::new();
                let size = decode_jpeg_scaled(&jpeg, 3, min_side, &mut out).expect("decodes");
                let expected = (height.div_ceil(reduction), width.div_ceil(reduction));
                if height.min(width) <= min_side {
                    // Shorter side 1: every reduction keeps it, and the full size is chosen.
                    assert_eq!(size, (height, width), "{height}x{width} at 1/{reduction}");
                    continue;
                }
                assert_eq!(size, expected, "{height}x{width} at 1/{reduction}");
                assert_eq!(out.len(), expected.0 * expected.1 * 3);
            }
        }
    }

    #[test]
    fn reduced_decode_matches_box_average() {
        let (height, width) = (333, 500);
        let pixels = gradient_rgb(height, width);
        let jpeg = encode(&pixels, height, width, ColorType::Rgb);
        for reduction in [2, 4, 8] {
            let min_side = height.div_ceil(reduction);
            let mut out = Vec::new();
            let size = decode_jpeg_scaled(&jpeg, 3, min_side, &mut out).expect("decodes");
            assert_eq!(size, reduced_size(height, width, reduction));
            let reference = box_downscale(&pixels, height, width, reduction);
            let error = mean_abs_diff(&out, &reference);
            assert!(error < 3.0, "1/{reduction}: mean abs error {error} against a box average");
        }
    }

    #[test]
    fn reduction_choice() {
        // Shorter side 333: 1/2 keeps 167, 1/4 keeps 84, 1/8 keeps 42.
        let cases = [
            (0, 8),
            (1, 8),
            (42, 8),
            (43, 4),
            (84, 4),
            (85, 2),
            (167, 2),
            (168, 1),
            (333, 1),
            (334, 1),
            (usize::MAX, 1),
        ];
        for (min_side, expected) in cases {
            assert_eq!(reduction_for(333, 500, min_side), expected, "min_shorter_side {min_side}");
            assert_eq!(reduction_for(500, 333, min_side), expected, "transposed, {min_side}");
        }
        assert_eq!(reduction_for(1, 1, 1), 1);
        assert_eq!(reduction_for(1, 1, 0), 8);
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let (height, width) = (48, 64);
        let jpeg = encode(&gradient_rgb(height, width), height, width, ColorType::Rgb);
        let mut out = Vec::new();
        for cut in [0, 1, 2, 10, 100, jpeg.len() / 2, jpeg.len() - 2] {
            let result = decode_jpeg_scaled(&jpeg[..cut], 3, usize::MAX, &mut out);
            assert!(result.is_err(), "cut at {cut} of {} bytes decoded", jpeg.len());
        }
        let garbage: Vec<u8> =
            (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let message = decode_jpeg_scaled(&garbage, 3, usize::MAX, &mut out).unwrap_err();
        assert!(message.contains("4096 bytes"), "{message}");

        // A valid header followed by garbage scan data.
        let mut corrupt = jpeg.clone();
        let body = corrupt.len() / 2;
        for (i, byte) in corrupt[body..].iter_mut().enumerate() {
            *byte = (i * 7) as u8;
        }
        let result = decode_jpeg_scaled(&corrupt, 3, 8, &mut out);
        assert!(result.is_err(), "corrupt scan data decoded");
    }

    #[test]
    fn output_buffer_keeps_capacity() {
        let large = encode(&gradient_rgb(333, 500), 333, 500, ColorType::Rgb);
        let small = encode(&gradient_rgb(9, 17), 9, 17, ColorType::Rgb);
        let mut out = Vec::new();
        decode_jpeg_scaled(&large, 3, usize::MAX, &mut out).expect("decodes");
        let capacity = out.capacity();
        let pointer = out.as_ptr();
        for min_side in [usize::MAX, 100, 10] {
            decode_jpeg_scaled(&small, 3, min_side, &mut out).expect("decodes");
            decode_jpeg_scaled(&large, 3, min_side, &mut out).expect("decodes");
            assert_eq!(out.capacity(), capacity, "capacity after min_shorter_side {min_side}");
            assert_eq!(out.as_ptr(), pointer, "buffer moved after min_shorter_side {min_side}");
        }
    }
}
