//! EXIF orientation and downscaling.

use crate::image::{Exif, Store};

use super::fixtures::*;

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

/// Encodes a 48×32 photo with a red top-left, green top-right, blue bottom-left and white
/// bottom-right quadrant, tagged with EXIF `orientation`.
fn tagged_photo(orientation: u16) -> Vec<u8> {
    let rgb = quadrants(48, 32, [&RED, &GREEN, &BLUE, &WHITE]);
    jpeg(&rgb, 48, 32, JpegSpec { orientation: Some(orientation), ..JpegSpec::default() })
}

#[test]
fn exif_orientations_are_applied() {
    // (tag, stored width and height, top-left colour, top-right colour) for the upright image.
    let cases = [
        (1, (48, 32), RED, GREEN),
        (2, (48, 32), GREEN, RED),
        (3, (48, 32), WHITE, BLUE),
        (4, (48, 32), BLUE, WHITE),
        (5, (32, 48), RED, BLUE),
        (6, (32, 48), BLUE, RED),
        (7, (32, 48), WHITE, GREEN),
        (8, (32, 48), GREEN, WHITE),
    ];
    for (tag, size, top_left, top_right) in cases {
        let converted = convert(&tagged_photo(tag), &raw());
        assert_eq!((converted.width, converted.height), size, "orientation {tag}");
        let rgb = &converted.payload;
        let case = format!("orientation {tag}");
        assert_near(pixel_at(rgb, size.0, 2, 2), top_left, 12, &format!("{case} top left"));
        assert_near(
            pixel_at(rgb, size.0, size.0 - 3, 2),
            top_right,
            12,
            &format!("{case} top right"),
        );
    }
}

#[test]
fn png_exif_orientation_is_applied() {
    let rgb = quadrants(48, 32, [&RED, &GREEN, &BLUE, &WHITE]);
    let bytes = png_with_orientation(&rgb, 48, 32, 6);
    let converted = convert(&bytes, &raw());
    assert_eq!((converted.width, converted.height), (32, 48));
    assert_eq!(pixel_at(&converted.payload, 32, 0, 0), BLUE);
    assert_eq!(pixel_at(&converted.payload, 32, 31, 0), RED);
}

#[test]
fn exif_ignore_keeps_encoded_orientation() {
    for tag in [3, 6, 8] {
        let converted = convert(&tagged_photo(tag), &ignoring_exif(Store::Raw));
        assert_eq!((converted.width, converted.height), (48, 32), "orientation {tag}");
        assert_near(pixel_at(&converted.payload, 48, 2, 2), RED, 12, "top left");
    }
}

#[test]
fn keep_reencodes_rotated_jpeg() {
    let bytes = tagged_photo(6);
    let converted = convert(&bytes, &options(Store::Keep, None));
    assert!(converted.reencoded);
    assert_ne!(converted.payload, bytes);
    let (rgb, width, height) = decode_rgb(&converted.payload);
    assert_eq!((width, height), (32, 48));
    assert_eq!((converted.width, converted.height), (32, 48));
    assert_near(pixel_at(&rgb, 32, 2, 2), BLUE, 16, "top left after rotation");
}

#[test]
fn keep_keeps_rotated_jpeg_when_exif_ignored() {
    let bytes = tagged_photo(6);
    let converted = convert(&bytes, &ignoring_exif(Store::Keep));
    assert!(!converted.reencoded);
    assert_eq!(converted.payload, bytes);
    assert_eq!((converted.width, converted.height), (48, 32));
}

#[test]
fn keep_keeps_upright_tagged_jpeg() {
    let bytes = tagged_photo(1);
    let converted = convert(&bytes, &options(Store::Keep, None));
    assert!(!converted.reencoded);
    assert_eq!(converted.payload, bytes);
}

#[test]
fn rotation_and_downscale_combine() {
    // A 48×32 image rotated to 32×48, then fitted into 24: 16×24.
    let opts = crate::image::ConvertOptions { exif: Exif::Apply, ..options(Store::Raw, Some(24)) };
    let converted = convert(&tagged_photo(6), &opts);
    assert_eq!((converted.width, converted.height), (16, 24));
    assert_eq!(converted.payload.len(), 16 * 24 * 3);
    assert_near(pixel_at(&converted.payload, 16, 1, 1), BLUE, 16, "top left");
    assert_near(pixel_at(&converted.payload, 16, 14, 22), GREEN, 16, "bottom right");
}

#[test]
fn downscale_sizes() {
    // (source size, max side, stored size)
    let cases = [((5120, 2880), 512, (512, 288)), ((3000, 5000), 512, (307, 512))];
    for ((width, height), max_side, expected) in cases {
        let rgb = pattern(width, height);
        let bytes = rgb_jpeg(&rgb, width, height);

        let stored = convert(&bytes, &options(Store::Raw, Some(max_side)));
        assert_eq!((stored.width, stored.height), expected, "raw {width}x{height}");
        assert_eq!(stored.payload.len(), (expected.0 * expected.1 * 3) as usize);

        let encoded = convert(&bytes, &options(Store::Reencode, Some(max_side)));
        let (_, decoded_width, decoded_height) = decode_rgb(&encoded.payload);
        assert_eq!((decoded_width, decoded_height), expected, "reencode {width}x{height}");
    }
}

#[test]
fn small_images_are_not_enlarged() {
    let bytes = rgb_jpeg(&pattern(300, 500), 300, 500);
    let converted = convert(&bytes, &options(Store::Raw, Some(512)));
    assert_eq!((converted.width, converted.height), (300, 500));
}

#[test]
fn downscale_keeps_content() {
    // Quadrant colours survive a 4× reduction away from the edges between them.
    let rgb = quadrants(256, 128, [&RED, &GREEN, &BLUE, &WHITE]);
    let bytes = png(&rgb, 256, 128, png::ColorType::Rgb, png::BitDepth::Eight);
    let converted = convert(&bytes, &options(Store::Raw, Some(64)));
    assert_eq!((converted.width, converted.height), (64, 32));
    let small = &converted.payload;
    assert_eq!(pixel_at(small, 64, 4, 4), RED);
    assert_eq!(pixel_at(small, 64, 60, 4), GREEN);
    assert_eq!(pixel_at(small, 64, 4, 28), BLUE);
    assert_eq!(pixel_at(small, 64, 60, 28), WHITE);
}

#[test]
fn downscale_matches_pillow_bicubic() {
    // Pillow's decode of photo_pil.jpg resized to 24x16 with Image.BICUBIC, see
    // make_fixtures.py.
    let bytes = include_bytes!("../../../testdata/images/photo_pil.jpg");
    let reference = include_bytes!("../../../testdata/images/photo_pil_24x16.rgb");

    let converted = convert(bytes, &options(Store::Raw, Some(24)));
    assert_eq!((converted.width, converted.height), (24, 16));
    let worst = converted.payload.iter().zip(reference).map(|(a, b)| a.abs_diff(*b)).max();
    let mean = mean_abs_diff(&converted.payload, reference);
    // The decodes already differ a little (see pillow_photo_decode_matches_pillow): measured
    // largest difference 2, mean 0.42. Bilinear weights give a largest difference of 5 and
    // Lanczos3 weights a mean of 0.67, so both fail these bounds.
    assert!(worst <= Some(4), "largest difference from pillow's resize: {worst:?}");
    assert!(mean < 0.6, "mean difference from pillow's resize: {mean}");
}
