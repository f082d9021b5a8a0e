//! Decoding of the non-JPEG formats (PNG, GIF, BMP, WebP) through the `image` crate, and
//! conversion of their colour types to RGB8.
//!
//! Conversion rules, chosen to match Pillow's `convert("RGB")` where it has one:
//! - grey is repeated into R, G and B;
//! - alpha is dropped, not composited onto a background;
//! - palette images arrive already expanded to RGB or RGBA by the decoder;
//! - 16-bit samples become `round(v · 255 / 65535)`. Pillow keeps only the high byte here
//!   (`v >> 8`), which is up to 1 lower.
//!
//! A GIF gives its first frame.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::{DecodeLimits, Decoded, SkipKind, SkipReason};

/// Decodes `bytes`, already recognised as `format`, to RGB8.
///
/// The size declared in the header is checked against `limits` before the pixel buffer is
/// allocated.
pub(super) fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<Decoded, SkipReason> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::no_limits();
    // Bounds the decoder's own buffers; 8 bytes a pixel is the widest colour type (RGBA16).
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(|e| skip_from_image(&e, format))?;

    let (width, height) = decoder.dimensions();
    limits.check(width, height)?;

    // A malformed EXIF block does not make the pixels unusable, so it counts as no rotation.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let colour = decoder.color_type();
    let mut buffer =
        vec![0u8; width as usize * height as usize * colour.bytes_per_pixel() as usize];
    decoder.read_image(&mut buffer).map_err(|e| skip_from_image(&e, format))?;

    let rgb = to_rgb8(buffer, colour).ok_or_else(|| {
        SkipReason::new(
            SkipKind::Unsupported,
            format!("{}: colour type {colour:?} is not converted to RGB8", format_name(format)),
        )
    })?;
    Ok(Decoded { rgb, width, height, orientation, keepable: false })
}

/// Converts decoded samples (16-bit ones in native byte order, as `image` returns them) to
/// RGB8, or `None` for colour types no enabled decoder produces.
fn to_rgb8(buffer: Vec<u8>, colour: ColorType) -> Option<Vec<u8>> {
    let rgb = match colour {
        ColorType::Rgb8 => buffer,
        ColorType::Rgba8 => map_pixels::<4>(&buffer, |p| [p[0], p[1], p[2]]),
        ColorType::L8 => map_pixels::<1>(&buffer, |p| [p[0]; 3]),
        ColorType::La8 => map_pixels::<2>(&buffer, |p| [p[0]; 3]),
        ColorType::Rgb16 => {
            map_pixels::<6>(&buffer, |p| [wide(p[0], p[1]), wide(p[2], p[3]), wide(p[4], p[5])])
        }
        ColorType::Rgba16 => {
            map_pixels::<8>(&buffer, |p| [wide(p[0], p[1]), wide(p[2], p[3]), wide(p[4], p[5])])
        }
        ColorType::L16 => map_pixels::<2>(&buffer, |p| [wide(p[0], p[1]); 3]),
        ColorType::La16 => map_pixels::<4>(&buffer, |p| [wide(p[0], p[1]); 3]),
        _ => return None,
    };
    Some(rgb)
}

/// Maps each pixel of `N` bytes to 3.
fn map_pixels<const N: usize>(buffer: &[u8], map: impl Fn(&[u8; N]) -> [u8; 3]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(buffer.len() / N * 3);
    for pixel in buffer.chunks_exact(N) {
        let pixel: &[u8; N] = pixel.try_into().expect("chunks are N bytes");
        rgb.extend_from_slice(&map(pixel));
    }
    rgb
}

/// Scales a native-endian 16-bit sample to 8 bits, rounding to nearest (half up).
fn wide(first: u8, second: u8) -> u8 {
    let value = u32::from(u16::from_ne_bytes([first, second]));
    ((value * 255 + 32767) / 65535) as u8
}

/// Classifies an `image` error.
fn skip_from_image(error: &ImageError, format: ImageFormat) -> SkipReason {
    let kind = match error {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            SkipKind::Truncated
        }
        ImageError::Unsupported(_) => SkipKind::Unsupported,
        ImageError::Limits(_) => SkipKind::TooLarge,
        _ => SkipKind::Corrupt,
    };
    SkipReason::new(kind, format!("{}: {error}", format_name(format)))
}

/// Returns the lower-case name of a format for messages: "png", "webp", ….
pub(super) fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_rounds_to_nearest() {
        let cases = [(0u16, 0u8), (128, 0), (129, 1), (257, 1), (32767, 127), (32896, 128)];
        for (value, expected) in cases {
            let [a, b] = value.to_ne_bytes();
            assert_eq!(wide(a, b), expected, "value {value}");
        }
        let [a, b] = u16::MAX.to_ne_bytes();
        assert_eq!(wide(a, b), 255);
    }

    #[test]
    fn sixteen_bit_matches_float_rounding() {
        for value in 0..=u16::MAX {
            let [a, b] = value.to_ne_bytes();
            let expected = (f64::from(value) * 255.0 / 65535.0).round() as u8;
            assert_eq!(wide(a, b), expected, "value {value}");
        }
    }

    #[test]
    fn alpha_is_dropped() {
        let rgba = vec![10, 20, 30, 0, 40, 50, 60, 255];
        assert_eq!(to_rgb8(rgba, ColorType::Rgba8).unwrap(), vec![10, 20, 30, 40, 50, 60]);
        let grey_alpha = vec![7, 0, 9, 128];
        assert_eq!(to_rgb8(grey_alpha, ColorType::La8).unwrap(), vec![7, 7, 7, 9, 9, 9]);
    }

    #[test]
    fn float_colour_is_not_converted() {
        assert_eq!(to_rgb8(vec![0; 12], ColorType::Rgb32F), None);
    }
}
