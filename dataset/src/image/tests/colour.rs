//! Every input colour type becomes RGB8 with the expected values.

use super::fixtures::*;

/// CMYK inks (0 = none, 255 = full) of the four quadrants, as in `make_fixtures.py`.
const INKS: [[u8; 4]; 4] = [[255, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 128], [64, 128, 0, 32]];

/// Computes the RGB of an ink under the naive conversion R = (255 − C)(255 − K) / 255, which
/// Pillow and zune-jpeg use up to rounding.
fn rgb_of_ink(ink: [u8; 4]) -> [u8; 3] {
    let k = 255 - u32::from(ink[3]);
    [0, 1, 2].map(|c| ((255 - u32::from(ink[c])) * k / 255) as u8)
}

/// Centre pixels of the four 16×16 quadrants of a 32×32 image.
const CENTRES: [(u32, u32); 4] = [(8, 8), (24, 8), (8, 24), (24, 24)];

fn assert_quadrants(rgb: &[u8], expected: [[u8; 3]; 4], tolerance: u8, case: &str) {
    for (quadrant, &(x, y)) in CENTRES.iter().enumerate() {
        let found = pixel_at(rgb, 32, x, y);
        assert_near(found, expected[quadrant], tolerance, &format!("{case}, quadrant {quadrant}"));
    }
}

#[test]
fn cmyk_jpeg_decodes_to_rgb() {
    let inks = INKS.map(|ink| ink.to_vec());
    let cmyk = quadrants(32, 32, [&inks[0], &inks[1], &inks[2], &inks[3]]);
    let spec =
        JpegSpec { colour: jpeg_encoder::ColorType::Cmyk, quality: 100, ..JpegSpec::default() };
    let bytes = jpeg(&cmyk, 32, 32, spec);

    let converted = convert(&bytes, &raw());
    assert_eq!((converted.width, converted.height), (32, 32));
    // Cyan must come out as (0, 255, 255); an inverted reading gives (255, 0, 0).
    assert_quadrants(&converted.payload, INKS.map(rgb_of_ink), 3, "cmyk");
}

#[test]
fn ycck_jpeg_decodes_to_rgb() {
    let inks = INKS.map(|ink| ink.to_vec());
    let cmyk = quadrants(32, 32, [&inks[0], &inks[1], &inks[2], &inks[3]]);
    let spec = JpegSpec {
        colour: jpeg_encoder::ColorType::CmykAsYcck,
        quality: 100,
        ..JpegSpec::default()
    };
    let bytes = jpeg(&cmyk, 32, 32, spec);

    let converted = convert(&bytes, &raw());
    assert_quadrants(&converted.payload, INKS.map(rgb_of_ink), 4, "ycck");
}

#[test]
fn pillow_cmyk_jpeg_matches_pillow() {
    // Written and decoded by Pillow 13.0.0 with libjpeg-turbo, see make_fixtures.py.
    let bytes = include_bytes!("../../../testdata/images/cmyk_pil.jpg");
    let reference = include_bytes!("../../../testdata/images/cmyk_pil.rgb");

    let converted = convert(bytes, &raw());
    assert_eq!((converted.width, converted.height), (32, 32));
    assert_quadrants(&converted.payload, INKS.map(rgb_of_ink), 2, "pillow cmyk");
    // IDCT rounding differs between zune-jpeg and libjpeg-turbo by at most a step or two.
    let worst = converted.payload.iter().zip(reference).map(|(a, b)| a.abs_diff(*b)).max();
    assert!(worst <= Some(2), "largest difference from pillow's decode: {worst:?}");
}

#[test]
fn grey_jpeg_repeats_luma() {
    let grey = quadrants(32, 32, [&[30], &[90], &[160], &[220]]);
    let spec = JpegSpec { colour: jpeg_encoder::ColorType::Luma, ..JpegSpec::default() };
    let converted = convert(&jpeg(&grey, 32, 32, spec), &raw());

    assert_quadrants(&converted.payload, [[30; 3], [90; 3], [160; 3], [220; 3]], 2, "grey jpeg");
    for pixel in converted.payload.chunks_exact(3) {
        assert_eq!(pixel[0], pixel[1], "grey pixel {pixel:?}");
        assert_eq!(pixel[1], pixel[2], "grey pixel {pixel:?}");
    }
}

#[test]
fn grey_png_repeats_value() {
    let grey: Vec<u8> = (0..=255).collect();
    let bytes = png(&grey, 16, 16, png::ColorType::Grayscale, png::BitDepth::Eight);
    let converted = convert(&bytes, &raw());
    let expected: Vec<u8> = grey.iter().flat_map(|&v| [v; 3]).collect();
    assert_eq!(converted.payload, expected);
}

#[test]
fn grey_alpha_png_drops_alpha() {
    let grey_alpha: Vec<u8> = (0..64u8).flat_map(|v| [v * 4, 255 - v]).collect();
    let bytes = png(&grey_alpha, 8, 8, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight);
    let converted = convert(&bytes, &raw());
    let expected: Vec<u8> = (0..64u8).flat_map(|v| [v * 4; 3]).collect();
    assert_eq!(converted.payload, expected);
}

#[test]
fn rgba_png_drops_alpha() {
    let rgb = pattern(12, 10);
    let rgba: Vec<u8> =
        rgb.chunks_exact(3).enumerate().flat_map(|(i, p)| [p[0], p[1], p[2], i as u8]).collect();
    let bytes = png(&rgba, 12, 10, png::ColorType::Rgba, png::BitDepth::Eight);
    assert_eq!(convert(&bytes, &raw()).payload, rgb);
}

#[test]
fn palette_png_expands() {
    let palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
    let indices: Vec<u8> = (0..48).map(|i| (i % 4) as u8).collect();
    let expected: Vec<u8> =
        indices.iter().flat_map(|&i| palette[usize::from(i) * 3..][..3].to_vec()).collect();

    let opaque = png_indexed(&indices, 8, 6, &palette, None);
    assert_eq!(convert(&opaque, &raw()).payload, expected, "palette without tRNS");
    let transparent = png_indexed(&indices, 8, 6, &palette, Some(&[0, 128, 255, 7]));
    assert_eq!(convert(&transparent, &raw()).payload, expected, "palette with tRNS");
}

#[test]
fn sixteen_bit_png_rounds() {
    // (16-bit sample, expected 8-bit value): round(v · 255 / 65535).
    let cases: [(u16, u8); 6] =
        [(0, 0), (128, 0), (129, 1), (32767, 127), (40000, 156), (65535, 255)];
    let samples: Vec<u16> = cases.iter().map(|&(v, _)| v).collect();
    let big_endian: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();

    let rgb16 = png(&big_endian, 2, 1, png::ColorType::Rgb, png::BitDepth::Sixteen);
    let expected: Vec<u8> = cases.iter().map(|&(_, e)| e).collect();
    assert_eq!(convert(&rgb16, &raw()).payload, expected, "rgb 16-bit");

    let grey16 = png(&big_endian, 6, 1, png::ColorType::Grayscale, png::BitDepth::Sixteen);
    let expected: Vec<u8> = cases.iter().flat_map(|&(_, e)| [e; 3]).collect();
    assert_eq!(convert(&grey16, &raw()).payload, expected, "grey 16-bit");

    let rgba16: Vec<u8> =
        big_endian.chunks_exact(6).flat_map(|p| [p, &[0x12, 0x34]].concat()).collect();
    let rgba16 = png(&rgba16, 2, 1, png::ColorType::Rgba, png::BitDepth::Sixteen);
    let expected: Vec<u8> = cases.iter().map(|&(_, e)| e).collect();
    assert_eq!(convert(&rgba16, &raw()).payload, expected, "rgba 16-bit");
}

#[test]
fn one_bit_png_scales_to_full_range() {
    // One row of 8 pixels packed in a byte: 1, 0, 1, 1, 0, 0, 1, 0.
    let bytes = png(&[0b1011_0010], 8, 1, png::ColorType::Grayscale, png::BitDepth::One);
    let expected: Vec<u8> =
        [1, 0, 1, 1, 0, 0, 1, 0].iter().flat_map(|&bit| [bit * 255; 3]).collect();
    assert_eq!(convert(&bytes, &raw()).payload, expected);
}

#[test]
fn png_bytes_read_as_png() {
    // The format comes from the bytes: PNG data (as in a file named n02105855_2933.JPEG)
    // converts as PNG, losslessly.
    let rgb = pattern(20, 14);
    let bytes = png(&rgb, 20, 14, png::ColorType::Rgb, png::BitDepth::Eight);
    assert_eq!(convert(&bytes, &raw()).payload, rgb);
}

#[test]
fn gif_bmp_webp_decode() {
    let rgb = quadrants(16, 12, [&[255, 0, 0], &[0, 255, 0], &[0, 0, 255], &[250, 250, 250]]);
    for format in [image::ImageFormat::Gif, image::ImageFormat::Bmp, image::ImageFormat::WebP] {
        let bytes = encode_with_image(&rgb, 16, 12, format);
        let converted = convert(&bytes, &raw());
        assert_eq!((converted.width, converted.height), (16, 12), "{format:?}");
        assert_eq!(converted.payload, rgb, "{format:?}");
    }
}

#[test]
fn pillow_photo_decode_matches_pillow() {
    // A 4:2:0 YCbCr JPEG written and decoded by Pillow 13.0.0, see make_fixtures.py.
    let bytes = include_bytes!("../../../testdata/images/photo_pil.jpg");
    let reference = include_bytes!("../../../testdata/images/photo_pil.rgb");

    let converted = convert(bytes, &raw());
    assert_eq!((converted.width, converted.height), (48, 32));
    let worst = converted.payload.iter().zip(reference).map(|(a, b)| a.abs_diff(*b)).max();
    let mean = mean_abs_diff(&converted.payload, reference);
    // zune-jpeg and libjpeg-turbo differ in IDCT and chroma upsampling rounding: measured
    // largest difference 3, mean 0.39.
    assert!(worst <= Some(4), "largest difference from pillow's decode: {worst:?}");
    assert!(mean < 0.6, "mean difference from pillow's decode: {mean}");
}
