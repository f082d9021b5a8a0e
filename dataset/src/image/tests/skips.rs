//! Files that cannot become records, and the size limits.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::image::{convert_image, ConvertOptions, DecodeLimits, SkipKind, Store};

use super::fixtures::*;

/// No conversion of a header-only file may allocate more than this.
const SMALL_ALLOCATION: usize = 1 << 20;

#[test]
fn empty_file_is_empty() {
    let reason = skip(&[], &raw());
    assert_eq!(reason.kind, SkipKind::Empty);
    assert_eq!(reason.to_string(), "empty: the file has 0 bytes");
}

#[test]
fn text_file_is_not_an_image() {
    let reason = skip(b"hello, world\n", &raw());
    assert_eq!(reason.kind, SkipKind::NotAnImage);
    assert!(reason.detail.contains("68 65 6c 6c 6f 2c 20 77"), "{reason}");
}

#[test]
fn tiff_is_unsupported() {
    let reason = skip(b"II*\x00\x08\x00\x00\x00", &raw());
    assert_eq!(reason.kind, SkipKind::Unsupported);
    assert!(reason.detail.starts_with("tiff images are not converted"), "{reason}");
}

#[test]
fn truncated_jpeg_is_truncated() {
    let baseline = rgb_jpeg(&pattern(64, 48), 64, 48);
    let progressive =
        jpeg(&pattern(64, 48), 64, 48, JpegSpec { progressive: true, ..JpegSpec::default() });
    for (case, bytes) in [("baseline", baseline), ("progressive", progressive)] {
        let scan = first_scan(&bytes);
        let cuts =
            [("in the headers", scan / 2), ("in the scan", scan + (bytes.len() - scan) * 3 / 5)];
        for (place, cut) in cuts.into_iter().chain([("before the end marker", bytes.len() - 2)]) {
            let reason = skip(&bytes[..cut], &raw());
            assert_eq!(reason.kind, SkipKind::Truncated, "{case}, cut {place}: {reason}");
        }
    }
}

#[test]
fn truncated_png_is_truncated() {
    let bytes = png(&pattern(64, 48), 64, 48, png::ColorType::Rgb, png::BitDepth::Eight);
    for cut in [20, 40, bytes.len() * 3 / 5, bytes.len() - 20] {
        let reason = skip(&bytes[..cut], &raw());
        assert_eq!(reason.kind, SkipKind::Truncated, "cut at {cut} of {}: {reason}", bytes.len());
    }
}

#[test]
fn huge_jpeg_header_is_too_large() {
    let small = rgb_jpeg(&pattern(16, 16), 16, 16);
    let huge = jpeg_with_size(&small, 65535, 65535);
    let header_only = huge[..first_scan(&huge) + 14].to_vec();

    for (case, bytes) in [("whole file", huge), ("headers only", header_only)] {
        let started = Instant::now();
        let (result, largest) = largest_allocation(|| convert_image(&bytes, &raw()));
        let reason = result.unwrap_err();
        assert_eq!(reason.kind, SkipKind::TooLarge, "{case}: {reason}");
        assert_eq!(reason.detail, "declares 65535x65535 pixels, limit 178956970");
        assert!(largest < SMALL_ALLOCATION, "{case}: allocated {largest} bytes");
        assert!(started.elapsed() < Duration::from_secs(2), "{case}: took {:?}", started.elapsed());
    }
}

#[test]
fn huge_png_header_is_too_large() {
    let small = png(&pattern(4, 4), 4, 4, png::ColorType::Rgb, png::BitDepth::Eight);
    let huge = png_with_size(&small, 100_000, 100_000);

    let started = Instant::now();
    let (result, largest) = largest_allocation(|| convert_image(&huge, &raw()));
    let reason = result.unwrap_err();
    assert_eq!(reason.kind, SkipKind::TooLarge, "{reason}");
    assert_eq!(reason.to_string(), "too large: declares 100000x100000 pixels, limit 178956970");
    assert!(largest < SMALL_ALLOCATION, "allocated {largest} bytes");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn custom_limits_apply() {
    let bytes = png(&pattern(200, 50), 200, 50, png::ColorType::Rgb, png::BitDepth::Eight);

    let narrow =
        ConvertOptions { limits: DecodeLimits { max_side: 100, max_pixels: 1_000_000 }, ..raw() };
    let reason = skip(&bytes, &narrow);
    assert_eq!(reason.kind, SkipKind::TooLarge);
    assert_eq!(reason.detail, "declares 200x50 pixels, limit 100 per side");

    let few = ConvertOptions { limits: DecodeLimits { max_side: 1000, max_pixels: 9999 }, ..raw() };
    assert_eq!(skip(&bytes, &few).detail, "declares 200x50 pixels, limit 9999");

    let enough =
        ConvertOptions { limits: DecodeLimits { max_side: 200, max_pixels: 10_000 }, ..raw() };
    assert_eq!(convert(&bytes, &enough).payload.len(), 200 * 50 * 3);
}

#[test]
fn jpeg_side_limit_needs_max_side() {
    let wide = png(&vec![90; 70_000 * 3], 70_000, 1, png::ColorType::Rgb, png::BitDepth::Eight);
    let limits = DecodeLimits { max_side: 100_000, ..DecodeLimits::default() };

    let reencode = ConvertOptions { limits, ..options(Store::Reencode, None) };
    let reason = skip(&wide, &reencode);
    assert_eq!(reason.kind, SkipKind::TooLarge);
    assert!(reason.detail.contains("jpeg limit of 65535"), "{reason}");

    let fitted = ConvertOptions { limits, ..options(Store::Reencode, Some(1000)) };
    assert_eq!((convert(&wide, &fitted).width, convert(&wide, &fitted).height), (1000, 1));
    let raw_wide = ConvertOptions { limits, ..raw() };
    assert_eq!(convert(&wide, &raw_wide).width, 70_000);
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let sources = [
        rgb_jpeg(&pattern(40, 30), 40, 30),
        jpeg(
            &pattern(40, 30),
            40,
            30,
            JpegSpec { progressive: true, restart_interval: Some(1), ..JpegSpec::default() },
        ),
        png(&pattern(40, 30), 40, 30, png::ColorType::Rgb, png::BitDepth::Eight),
        encode_with_image(&pattern(40, 30), 40, 30, image::ImageFormat::Gif),
        encode_with_image(&pattern(40, 30), 40, 30, image::ImageFormat::Bmp),
        encode_with_image(&pattern(40, 30), 40, 30, image::ImageFormat::WebP),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let opts = options(Store::Keep, Some(32));
    for source in &sources {
        for _ in 0..150 {
            let mut damaged = source.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..damaged.len());
                damaged[at] = rng.random();
            }
            if rng.random_bool(0.3) {
                damaged.truncate(rng.random_range(0..damaged.len()));
            }
            // Either outcome is fine; a panic fails the test.
            let _ = convert_image(&damaged, &opts);
        }
    }
}
