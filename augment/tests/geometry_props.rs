//! Property tests of the geometric ops: sizes, windows and pixel arithmetic on random
//! non-square images, crops as large as or larger than the image, and 1-pixel images.

use expanse_augment::geometry::{
    crop, resize, resize_with, resized_crop, shorter_side_size, warp_affine, Affine, AffineParams,
    CenterCrop, Fill, Filter, Interpolation, RandomResizedCrop, ScaleJitter,
};
use expanse_augment::{
    flip_horizontal, flip_vertical, CropWindow, HorizontalFlip, ImageBuf, ImageRef, PadMode,
    RandomCrop, SampleKey, Transform,
};
use proptest::prelude::*;

/// Builds a pseudo-random image from `seed` (xorshift), so neighbouring bytes rarely match.
fn pattern(height: usize, width: usize, channels: usize, seed: u64) -> ImageBuf {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..height * width * channels)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    ImageBuf::new(data, height, width, channels).unwrap()
}

fn pixel(image: &ImageBuf, y: usize, x: usize) -> &[u8] {
    let c = image.channels();
    let start = (y * image.width() + x) * c;
    &image.data()[start..start + c]
}

fn filters() -> impl Strategy<Value = Filter> {
    prop_oneof![
        Just(Filter::Nearest),
        Just(Filter::Bilinear),
        Just(Filter::Bicubic),
        Just(Filter::Lanczos3),
        Just(Filter::Area),
    ]
}

fn fills() -> impl Strategy<Value = Fill> {
    prop_oneof![any::<u8>().prop_map(Fill::Constant), Just(Fill::Edge), Just(Fill::Reflect)]
}

/// Bilinear sample in f64 with each tap read through the fill rule, rounded to nearest.
fn reference_bilinear(image: &ImageBuf, fill: Fill, sx: f64, sy: f64, k: usize) -> f64 {
    let (x0, y0) = (sx.floor(), sy.floor());
    let (fx, fy) = (sx - x0, sy - y0);
    let read = |x: f64, y: f64| {
        let column = fill.source_index(x as i64, image.width());
        let row = fill.source_index(y as i64, image.height());
        match (row, column, fill) {
            (Some(r), Some(c), _) => f64::from(pixel(image, r, c)[k]),
            (_, _, Fill::Constant(value)) => f64::from(value),
            _ => unreachable!("edge and reflect always find a pixel"),
        }
    };
    let upper = read(x0, y0) * (1.0 - fx) + read(x0 + 1.0, y0) * fx;
    let lower = read(x0, y0 + 1.0) * (1.0 - fx) + read(x0 + 1.0, y0 + 1.0) * fx;
    upper * (1.0 - fy) + lower * fy
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn flip_twice_is_identity(
        height in 1usize..12, width in 1usize..40, channels in 1usize..5, seed in any::<u64>(),
    ) {
        let original = pattern(height, width, channels, seed);
        let mut image = original.clone();

        flip_horizontal(&mut image);
        flip_horizontal(&mut image);
        flip_vertical(&mut image);
        flip_vertical(&mut image);

        prop_assert_eq!(image, original);
    }

    #[test]
    fn flip_moves_each_pixel(
        height in 1usize..8, width in 1usize..40, channels in 1usize..5, seed in any::<u64>(),
    ) {
        let original = pattern(height, width, channels, seed);
        let mut horizontal = original.clone();
        let mut vertical = original.clone();

        flip_horizontal(&mut horizontal);
        flip_vertical(&mut vertical);

        for y in 0..height {
            for x in 0..width {
                prop_assert_eq!(pixel(&horizontal, y, x), pixel(&original, y, width - 1 - x));
                prop_assert_eq!(pixel(&vertical, y, x), pixel(&original, height - 1 - y, x));
            }
        }
    }

    #[test]
    fn flip_transform_matches_in_place(
        height in 1usize..8, width in 1usize..30, seed in any::<u64>(), index in any::<u64>(),
    ) {
        let image = pattern(height, width, 3, seed);
        let flip = HorizontalFlip::new(0.5);
        let mut in_place = image.clone();

        flip.transform_in_place(&mut in_place, &mut SampleKey::new(1, 0, index).rng(0)).unwrap();
        let copied = flip.transform(image.as_image_ref(), &mut SampleKey::new(1, 0, index).rng(0));

        prop_assert_eq!(copied.unwrap(), in_place);
    }

    #[test]
    fn center_crop_matches_padded_window(
        height in 1usize..12, width in 1usize..12, crop_height in 1usize..16,
        crop_width in 1usize..16, channels in 1usize..4, seed in any::<u64>(),
    ) {
        let image = pattern(height, width, channels, seed);
        let op = CenterCrop::new(crop_height, crop_width);

        let output = op.transform(image.as_image_ref(), &mut SampleKey::new(0, 0, 0).rng(0)).unwrap();

        // Output (y, x) reads image (y + top, x + left) with the offsets of the documentation:
        // floor((image - crop) / 2) when the crop fits, -floor((crop - image) / 2) otherwise.
        let offset = |image_side: usize, crop_side: usize| -> i64 {
            if crop_side <= image_side {
                ((image_side - crop_side) / 2) as i64
            } else {
                -(((crop_side - image_side) / 2) as i64)
            }
        };
        let (top, left) = (offset(height, crop_height), offset(width, crop_width));
        prop_assert_eq!((output.height(), output.width()), (crop_height, crop_width));
        for y in 0..crop_height {
            for x in 0..crop_width {
                let (sy, sx) = (y as i64 + top, x as i64 + left);
                let inside = (0..height as i64).contains(&sy) && (0..width as i64).contains(&sx);
                let expected = if inside {
                    pixel(&image, sy as usize, sx as usize).to_vec()
                } else {
                    vec![0; channels]
                };
                prop_assert_eq!(pixel(&output, y, x), &expected[..], "({}, {})", y, x);
            }
        }
    }

    #[test]
    fn center_crop_full_size_is_identity(
        height in 1usize..20, width in 1usize..20, seed in any::<u64>(),
    ) {
        let image = pattern(height, width, 3, seed);

        let output = CenterCrop::new(height, width)
            .transform(image.as_image_ref(), &mut SampleKey::new(0, 0, 0).rng(0))
            .unwrap();

        prop_assert_eq!(output, image);
    }

    #[test]
    fn crop_copies_window(
        height in 1usize..12, width in 1usize..12, top in 0usize..12, left in 0usize..12,
        crop_height in 1usize..12, crop_width in 1usize..12, seed in any::<u64>(),
    ) {
        let image = pattern(height, width, 2, seed);
        let window = CropWindow { top, left, height: crop_height, width: crop_width };

        let result = crop(image.as_image_ref(), window);

        if top + crop_height > height || left + crop_width > width {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let output = result.unwrap();
        for y in 0..crop_height {
            for x in 0..crop_width {
                prop_assert_eq!(pixel(&output, y, x), pixel(&image, top + y, left + x));
            }
        }
    }

    #[test]
    fn random_crop_transform_matches_apply(
        height in 1usize..10, width in 1usize..10, padding in 0usize..4, index in any::<u64>(),
    ) {
        let image = pattern(height, width, 3, index);
        let op = RandomCrop::new(height, width, padding, PadMode::Reflect);

        let applied = op.apply(image.as_image_ref(), &mut SampleKey::new(3, 0, index).rng(0));
        let transformed = op.transform(image.as_image_ref(), &mut SampleKey::new(3, 0, index).rng(0));

        prop_assert_eq!(applied.unwrap(), transformed.unwrap());
    }

    #[test]
    fn random_resized_crop_window_in_bounds(
        height in 1usize..600, width in 1usize..600, low in 0.01f64..1.0, span in 0.0f64..1.0,
        ratio_low in 0.2f64..1.0, ratio_span in 0.0f64..3.0, index in any::<u64>(),
    ) {
        let mut op = RandomResizedCrop::new(7, 5);
        op.scale = [low, low + span];
        op.ratio = [ratio_low, ratio_low + ratio_span];

        let window = op.draw_window(height, width, &mut SampleKey::new(0, 0, index).rng(0));

        prop_assert!(window.height >= 1 && window.width >= 1, "{:?}", window);
        prop_assert!(window.top + window.height <= height, "{:?}", window);
        prop_assert!(window.left + window.width <= width, "{:?}", window);
    }

    #[test]
    fn random_resized_crop_output_size(
        height in 1usize..40, width in 1usize..40, out_height in 1usize..30,
        out_width in 1usize..30, index in any::<u64>(),
    ) {
        let image = pattern(height, width, 3, index);
        let op = RandomResizedCrop::new(out_height, out_width);

        let output = op.transform(image.as_image_ref(), &mut SampleKey::new(0, 0, index).rng(0));

        let output = output.unwrap();
        prop_assert_eq!((output.height(), output.width(), output.channels()), (out_height, out_width, 3));
    }

    #[test]
    fn resize_output_size_and_constant(
        height in 1usize..30, width in 1usize..30, out_height in 1usize..40,
        out_width in 1usize..40, channels in 1usize..5, value in any::<u8>(), filter in filters(),
    ) {
        let data = vec![value; height * width * channels];
        let image = ImageRef::new(&data, height, width, channels).unwrap();

        let output = resize(image, out_height, out_width, filter).unwrap();

        prop_assert_eq!((output.height(), output.width()), (out_height, out_width));
        prop_assert!(output.data().iter().all(|&v| v == value), "{:?}", filter);
    }

    #[test]
    fn resize_same_size_is_identity(
        height in 1usize..20, width in 1usize..20, seed in any::<u64>(), filter in filters(),
    ) {
        let image = pattern(height, width, 3, seed);

        let output = resize(image.as_image_ref(), height, width, filter).unwrap();

        prop_assert_eq!(output, image);
    }

    #[test]
    fn plain_bilinear_resize_within_one_of_float(
        height in 1usize..30, width in 1usize..30, out_height in 1usize..40,
        out_width in 1usize..40, channels in 1usize..5, seed in any::<u64>(),
    ) {
        let image = pattern(height, width, channels, seed);

        let output =
            resize_with(image.as_image_ref(), out_height, out_width, Filter::Bilinear, false)
                .unwrap();

        // OpenCV INTER_LINEAR: half-pixel centres, positions clamped into the image. The bound
        // is 1.5 because `fast_image_resize` rounds its weights to fixed point before the sum.
        let source = |out: usize, len: usize, size: usize| {
            let scaled = (out as f64 + 0.5) * len as f64 / size as f64 - 0.5;
            let position = scaled.clamp(0.0, len as f64 - 1.0);
            let first = position.floor() as usize;
            (first, (first + 1).min(len - 1), position - first as f64)
        };
        for y in 0..out_height {
            let (y0, y1, fy) = source(y, height, out_height);
            for x in 0..out_width {
                let (x0, x1, fx) = source(x, width, out_width);
                for k in 0..channels {
                    let value = |row: usize, column: usize| f64::from(pixel(&image, row, column)[k]);
                    let upper = value(y0, x0) * (1.0 - fx) + value(y0, x1) * fx;
                    let lower = value(y1, x0) * (1.0 - fx) + value(y1, x1) * fx;
                    let expected = upper * (1.0 - fy) + lower * fy;
                    let found = f64::from(pixel(&output, y, x)[k]);
                    prop_assert!((found - expected).abs() <= 1.5,
                        "({}, {}) channel {}: found {} expected {:.3}", y, x, k, found, expected);
                }
            }
        }
    }

    #[test]
    fn resized_crop_equals_crop_then_resize(
        height in 1usize..20, width in 1usize..20, out in 1usize..25, seed in any::<u64>(),
        filter in filters(),
    ) {
        let image = pattern(height, width, 3, seed);
        let window = CropWindow { top: height / 3, left: width / 4, height: height - height / 3,
            width: width - width / 2 };

        let direct = resized_crop(image.as_image_ref(), window, out, out + 1, filter).unwrap();
        let cropped = crop(image.as_image_ref(), window).unwrap();
        let two_step = resize(cropped.as_image_ref(), out, out + 1, filter).unwrap();

        prop_assert_eq!(direct, two_step);
    }

    #[test]
    fn shorter_side_size_keeps_ratio(
        height in 1usize..5000, width in 1usize..5000, shorter in 1usize..1000,
    ) {
        let (h, w) = shorter_side_size(height, width, shorter);

        prop_assert_eq!(h.min(w), shorter);
        // The longer side is floor(shorter * long / short): within one pixel of the ratio.
        let (short, long) = (height.min(width) as u128, height.max(width) as u128);
        let longer = h.max(w) as u128;
        prop_assert!(longer * short <= shorter as u128 * long);
        prop_assert!((longer + 1) * short > shorter as u128 * long);
        // The orientation never flips (sides may become equal when rounding down).
        prop_assert!(height > width || h <= w);
        prop_assert!(height < width || h >= w);
    }

    #[test]
    fn scale_jitter_shorter_side_in_range(
        height in 1usize..40, width in 1usize..40, min in 1usize..20, span in 0usize..10,
        index in any::<u64>(),
    ) {
        let image = pattern(height, width, 1, index);
        let op = ScaleJitter::new(min, min + span);

        let output = op.transform(image.as_image_ref(), &mut SampleKey::new(0, 0, index).rng(0)).unwrap();

        let shorter = output.height().min(output.width());
        prop_assert!((min..=min + span).contains(&shorter), "shorter side {}", shorter);
        prop_assert_eq!(
            (output.height(), output.width()),
            shorter_side_size(height, width, shorter)
        );
    }

    #[test]
    fn identity_affine_is_identity(
        height in 1usize..20, width in 1usize..20, channels in 1usize..5, seed in any::<u64>(),
        fill in fills(),
    ) {
        let image = pattern(height, width, channels, seed);
        let op = Affine { fill, ..Affine::default() };

        let output = op.transform(image.as_image_ref(), &mut SampleKey::new(0, 0, seed).rng(0)).unwrap();

        prop_assert_eq!(output, image);
    }

    #[test]
    fn integer_shift_moves_pixels(
        height in 1usize..12, width in 1usize..12, dx in -4i32..5, dy in -4i32..5,
        channels in 1usize..5, seed in any::<u64>(), fill in fills(),
        nearest in any::<bool>(),
    ) {
        let image = pattern(height, width, channels, seed);
        let params = AffineParams { angle: 0.0, scale: 1.0, translate_x: dx as f32,
            translate_y: dy as f32, shear: 0.0 };
        let interpolation = if nearest { Interpolation::Nearest } else { Interpolation::Bilinear };
        let inverse = params.inverse_matrix(height, width);

        let output = warp_affine(image.as_image_ref(), &inverse, interpolation, fill).unwrap();

        for y in 0..height {
            for x in 0..width {
                let sx = fill.source_index(x as i64 - i64::from(dx), width);
                let sy = fill.source_index(y as i64 - i64::from(dy), height);
                let expected = match (sy, sx, fill) {
                    (Some(sy), Some(sx), _) => pixel(&image, sy, sx).to_vec(),
                    (_, _, Fill::Constant(value)) => vec![value; channels],
                    _ => unreachable!(),
                };
                prop_assert_eq!(pixel(&output, y, x), &expected[..], "({}, {})", y, x);
            }
        }
    }

    #[test]
    fn rotation_90_is_transpose_then_vertical_flip(
        side in 1usize..24, channels in 1usize..5, seed in any::<u64>(), fill in fills(),
        nearest in any::<bool>(),
    ) {
        let image = pattern(side, side, channels, seed);
        let params = AffineParams { angle: 90.0, scale: 1.0, translate_x: 0.0, translate_y: 0.0,
            shear: 0.0 };
        let interpolation = if nearest { Interpolation::Nearest } else { Interpolation::Bilinear };
        let inverse = params.inverse_matrix(side, side);

        let output = warp_affine(image.as_image_ref(), &inverse, interpolation, fill).unwrap();

        // Counter-clockwise: output (y, x) = transposed (side - 1 - y, x) = image (x, side - 1 - y).
        for y in 0..side {
            for x in 0..side {
                prop_assert_eq!(pixel(&output, y, x), pixel(&image, x, side - 1 - y), "({}, {})", y, x);
            }
        }
    }

    #[test]
    fn bilinear_warp_within_one_of_float(
        height in 1usize..30, width in 1usize..30, channels in 1usize..5, angle in -40.0f32..40.0,
        scale in 0.5f32..2.0, tx in -5.0f32..5.0, ty in -5.0f32..5.0, shear in -20.0f32..20.0,
        seed in any::<u64>(), fill in fills(),
    ) {
        let image = pattern(height, width, channels, seed);
        let params = AffineParams { angle, scale, translate_x: tx, translate_y: ty, shear };
        let m = params.inverse_matrix(height, width);

        let output = warp_affine(image.as_image_ref(), &m, Interpolation::Bilinear, fill).unwrap();

        for y in 0..height {
            for x in 0..width {
                let (xf, yf) = (x as f64, y as f64);
                let sx = m[0] * xf + m[1] * yf + m[2];
                let sy = m[3] * xf + m[4] * yf + m[5];
                for k in 0..channels {
                    let expected = reference_bilinear(&image, fill, sx, sy, k);
                    let found = f64::from(pixel(&output, y, x)[k]);
                    prop_assert!((found - expected).abs() <= 1.0,
                        "({}, {}) channel {}: found {} expected {:.3}", y, x, k, found, expected);
                }
            }
        }
    }
}

#[test]
fn one_pixel_image_through_every_op() {
    let image = pattern(1, 1, 3, 5);
    let r = image.as_image_ref();
    let mut rng = SampleKey::new(0, 0, 0).rng(0);
    let rotate = Affine { rotation: [-180.0, 180.0], fill: Fill::Reflect, ..Affine::default() };

    assert_eq!(resize(r, 1, 1, Filter::Lanczos3).unwrap(), image);
    assert_eq!(CenterCrop::new(1, 1).transform(r, &mut rng).unwrap(), image);
    assert_eq!(rotate.transform(r, &mut rng).unwrap(), image);
    assert_eq!(HorizontalFlip::new(1.0).transform(r, &mut rng).unwrap(), image);
    let resized = RandomResizedCrop::new(2, 3).transform(r, &mut rng).unwrap();
    assert_eq!(resized.data(), &pixel(&image, 0, 0).repeat(6)[..]);
}
