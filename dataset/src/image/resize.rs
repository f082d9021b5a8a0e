//! Downscaling to a maximum side and EXIF orientation of RGB8 buffers.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

/// Returns the size that fits `width`×`height` into `max_side` on the longer side, keeping the
/// aspect ratio: the longer side becomes `max_side` and the shorter one is scaled by the same
/// factor, rounded to nearest (half up) and at least 1. Images that already fit, and every image
/// when `max_side` is `None`, keep their size; nothing is enlarged.
pub fn fit_within(width: u32, height: u32, max_side: Option<u32>) -> (u32, u32) {
    let Some(max_side) = max_side else {
        return (width, height);
    };
    let max_side = max_side.max(1);
    let longer = width.max(height);
    if longer <= max_side {
        return (width, height);
    }

    let scale = |side: u32| {
        let scaled = (2 * u64::from(side) * u64::from(max_side) + u64::from(longer))
            / (2 * u64::from(longer));
        (scaled as u32).max(1)
    };
    if width >= height {
        (max_side, scale(height))
    } else {
        (scale(width), max_side)
    }
}

/// Resizes an RGB8 image with a Catmull-Rom (bicubic, a = −0.5) convolution.
///
/// When shrinking, fast_image_resize widens the filter by the scale factor, so every source
/// pixel contributes (antialiased, like Pillow's `resize`). Catmull-Rom is the kernel of
/// Pillow's default `BICUBIC` filter. The arithmetic is fixed-point on 8-bit samples, without a
/// float intermediate.
pub(super) fn resize_rgb8(rgb: &[u8], width: u32, height: u32, to: (u32, u32)) -> Vec<u8> {
    let source = ImageRef::new(width, height, rgb, PixelType::U8x3)
        .expect("buffer is width × height × 3 bytes");
    let mut target = Image::new(to.0, to.1, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .expect("source and target are both U8x3 and non-empty");
    target.into_vec()
}

/// Applies an EXIF orientation to an RGB8 image. Returns the pixels with the new width and
/// height, which are swapped for the orientations that rotate by 90° or 270°.
pub(super) fn orient_rgb8(
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    orientation: Orientation,
) -> (Vec<u8>, u32, u32) {
    if orientation == Orientation::NoTransforms {
        return (rgb, width, height);
    }
    let buffer =
        RgbImage::from_raw(width, height, rgb).expect("buffer is width × height × 3 bytes");
    let mut image = DynamicImage::ImageRgb8(buffer);
    image.apply_orientation(orientation);
    let oriented = image.into_rgb8();
    let (width, height) = oriented.dimensions();
    (oriented.into_raw(), width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_within_keeps_aspect() {
        let cases = [
            ((5120, 2880), Some(512), (512, 288)),
            ((2880, 5120), Some(512), (288, 512)),
            ((3000, 5000), Some(512), (307, 512)),
            ((750, 500), Some(512), (512, 341)),
            ((500, 750), Some(256), (171, 256)),
            ((513, 512), Some(512), (512, 511)),
            ((10000, 1), Some(512), (512, 1)),
            ((1, 10000), Some(100), (1, 100)),
        ];
        for ((width, height), max_side, expected) in cases {
            assert_eq!(fit_within(width, height, max_side), expected, "{width}x{height}");
        }
    }

    #[test]
    fn fit_within_never_enlarges() {
        assert_eq!(fit_within(300, 500, Some(512)), (300, 500));
        assert_eq!(fit_within(512, 512, Some(512)), (512, 512));
        assert_eq!(fit_within(70000, 3, None), (70000, 3));
    }

    #[test]
    fn fit_within_rounds_half_up() {
        // 3 × 2 / 4 = 1.5 rounds to 2; 5 × 2 / 4 = 2.5 rounds to 3.
        assert_eq!(fit_within(4, 3, Some(2)), (2, 2));
        assert_eq!(fit_within(4, 5, Some(2)), (2, 2));
        assert_eq!(fit_within(5, 4, Some(2)), (2, 2));
        assert_eq!(fit_within(4, 10, Some(5)), (2, 5));
        assert_eq!(fit_within(10, 5, Some(4)), (4, 2));
        assert_eq!(fit_within(8, 5, Some(4)), (4, 3));
    }

    #[test]
    fn resize_keeps_flat_colour() {
        let rgb: Vec<u8> = [200u8, 100, 50].repeat(40 * 30);
        let small = resize_rgb8(&rgb, 40, 30, (13, 10));
        assert_eq!(small.len(), 13 * 10 * 3);
        for pixel in small.chunks_exact(3) {
            assert_eq!(pixel, [200, 100, 50]);
        }
    }

    #[test]
    fn resize_averages_stripes() {
        // Alternating black and white columns shrink to mid grey when antialiased; a filter
        // that samples without widening would keep 0 or 255.
        let mut rgb = Vec::new();
        for _row in 0..16 {
            for column in 0..64 {
                rgb.extend([if column % 2 == 0 { 0u8 } else { 255 }; 3]);
            }
        }
        let small = resize_rgb8(&rgb, 64, 16, (8, 2));
        for pixel in small.chunks_exact(3) {
            assert!((120..=135).contains(&pixel[0]), "pixel {pixel:?}");
        }
    }

    #[test]
    fn orientation_swaps_sides() {
        let rgb: Vec<u8> = (0..4 * 2 * 3).map(|v| v as u8).collect();
        let (rotated, width, height) = orient_rgb8(rgb.clone(), 4, 2, Orientation::Rotate90);
        assert_eq!((width, height), (2, 4));
        // Rotating 90° clockwise puts the bottom-left source pixel (0, 1) at the top left.
        assert_eq!(&rotated[..3], &rgb[4 * 3..4 * 3 + 3]);
    }
}
