//! The three storage modes, JPEG variants, statistics of the stored pixels and determinism.

use rayon::prelude::*;

use crate::image::{convert_image, ConvertOptions, Store};

use super::fixtures::*;

#[test]
fn keep_returns_original_bytes() {
    let rgb = pattern(64, 40);
    for progressive in [false, true] {
        let bytes = jpeg(&rgb, 64, 40, JpegSpec { progressive, ..JpegSpec::default() });
        let converted = convert(&bytes, &options(Store::Keep, Some(64)));
        assert_eq!(converted.payload, bytes, "progressive {progressive}");
        assert!(!converted.reencoded);
        assert!(converted.jpeg);
        assert_eq!((converted.width, converted.height, converted.channels), (64, 40, 3));
    }
}

#[test]
fn keep_sums_cover_decoded_pixels() {
    let bytes = rgb_jpeg(&pattern(64, 40), 64, 40);
    let converted = convert(&bytes, &options(Store::Keep, None));
    let (decoded, _, _) = decode_rgb(&bytes);
    assert_eq!(converted.sums, sums_of(&decoded));
}

#[test]
fn keep_reencodes_oversized_jpeg() {
    let bytes = rgb_jpeg(&pattern(64, 40), 64, 40);
    let converted = convert(&bytes, &options(Store::Keep, Some(32)));
    assert!(converted.reencoded);
    assert!(converted.jpeg);
    let (_, width, height) = decode_rgb(&converted.payload);
    assert_eq!((width, height), (32, 20));
    assert_eq!((converted.width, converted.height), (32, 20));
}

#[test]
fn keep_reencodes_non_ycbcr_inputs() {
    let grey = jpeg(
        &[100; 16 * 16],
        16,
        16,
        JpegSpec { colour: jpeg_encoder::ColorType::Luma, ..JpegSpec::default() },
    );
    let cmyk = jpeg(
        &[0, 0, 0, 100].repeat(256),
        16,
        16,
        JpegSpec { colour: jpeg_encoder::ColorType::Cmyk, ..JpegSpec::default() },
    );
    let rgb_png = png(&pattern(16, 16), 16, 16, png::ColorType::Rgb, png::BitDepth::Eight);
    for (case, bytes) in [("grey jpeg", grey), ("cmyk jpeg", cmyk), ("png", rgb_png)] {
        let converted = convert(&bytes, &options(Store::Keep, None));
        assert!(converted.reencoded, "{case}");
        assert!(converted.jpeg, "{case}");
        // decode_rgb checks the new JPEG has 3 components.
        let (_, width, height) = decode_rgb(&converted.payload);
        assert_eq!((width, height), (16, 16), "{case}");
    }
}

#[test]
fn keep_reencodes_jpeg_with_damaged_scan() {
    let bytes = rgb_jpeg(&pattern(64, 64), 64, 64);
    // A marker that may not appear inside scan data: the strict decode fails, the lenient one
    // fills the rest of the image.
    let mut damaged = bytes.clone();
    let middle = first_scan(&bytes) + (bytes.len() - first_scan(&bytes)) / 2;
    damaged[middle] = 0xFF;
    damaged[middle + 1] = 0xC8;

    let converted = convert(&damaged, &options(Store::Keep, None));
    assert!(converted.reencoded);
    assert_ne!(converted.payload, damaged);
}

#[test]
fn reencode_output_decodes_to_size() {
    let rgb = pattern(90, 60);
    let bytes = png(&rgb, 90, 60, png::ColorType::Rgb, png::BitDepth::Eight);

    let full = convert(&bytes, &options(Store::Reencode, None));
    assert!(full.reencoded);
    assert!(full.jpeg);
    let (decoded, width, height) = decode_rgb(&full.payload);
    assert_eq!((width, height), (90, 60));
    // Sums describe the pixels given to the encoder, here the lossless source.
    assert_eq!(full.sums, sums_of(&rgb));
    assert!(mean_abs_diff(&decoded, &rgb) < 2.0, "quality 90 re-encode drifted");

    let small = convert(&bytes, &options(Store::Reencode, Some(45)));
    let (_, width, height) = decode_rgb(&small.payload);
    assert_eq!((width, height), (45, 30));
    assert_eq!(small.sums.pixels(), 45 * 30);
}

#[test]
fn reencode_quality_changes_size() {
    let bytes = png(&pattern(128, 96), 128, 96, png::ColorType::Rgb, png::BitDepth::Eight);
    let low = ConvertOptions { quality: 30, ..options(Store::Reencode, None) };
    let high = ConvertOptions { quality: 98, ..options(Store::Reencode, None) };
    assert!(convert(&bytes, &low).payload.len() < convert(&bytes, &high).payload.len());
}

#[test]
fn raw_payload_is_pixels() {
    let rgb = pattern(33, 21);
    let bytes = png(&rgb, 33, 21, png::ColorType::Rgb, png::BitDepth::Eight);
    let converted = convert(&bytes, &raw());
    assert_eq!(converted.payload.len(), 33 * 21 * 3);
    assert_eq!(converted.payload, rgb);
    assert!(!converted.jpeg);
    assert!(converted.reencoded);
    assert_eq!(converted.sums, sums_of(&rgb));
}

#[test]
fn progressive_and_restart_jpegs_decode() {
    let rgb = pattern(72, 56);
    let specs = [
        ("progressive", JpegSpec { progressive: true, ..JpegSpec::default() }),
        ("restart interval 2", JpegSpec { restart_interval: Some(2), ..JpegSpec::default() }),
        (
            "progressive with restarts",
            JpegSpec { progressive: true, restart_interval: Some(1), ..JpegSpec::default() },
        ),
    ];
    for (case, spec) in specs {
        let bytes = jpeg(&rgb, 72, 56, spec);
        let converted = convert(&bytes, &raw());
        assert_eq!((converted.width, converted.height), (72, 56), "{case}");
        let drift = mean_abs_diff(&converted.payload, &rgb);
        assert!(drift < 2.0, "{case}: mean difference {drift} from the source");
    }
}

#[test]
fn conversion_is_thread_count_independent() {
    let mut inputs = vec![
        rgb_jpeg(&pattern(200, 130), 200, 130),
        jpeg(
            &pattern(97, 61),
            97,
            61,
            JpegSpec { progressive: true, orientation: Some(6), ..JpegSpec::default() },
        ),
        png(&pattern(150, 150), 150, 150, png::ColorType::Rgb, png::BitDepth::Eight),
        jpeg(
            &[10, 200, 30, 40].repeat(64 * 48),
            64,
            48,
            JpegSpec { colour: jpeg_encoder::ColorType::Cmyk, ..JpegSpec::default() },
        ),
        b"not an image".to_vec(),
    ];
    inputs.extend(inputs.clone());
    let all_options = [
        options(Store::Keep, Some(100)),
        options(Store::Reencode, Some(64)),
        options(Store::Raw, Some(50)),
    ];

    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            all_options
                .iter()
                .flat_map(|opts| inputs.iter().map(move |bytes| (bytes, opts)))
                .collect::<Vec<_>>()
                .par_iter()
                .map(|(bytes, opts)| convert_image(bytes, opts))
                .collect::<Vec<_>>()
        })
    };
    let serial = run(1);
    let parallel = run(4);
    assert_eq!(serial.len(), 30);
    assert_eq!(serial, parallel);
}
