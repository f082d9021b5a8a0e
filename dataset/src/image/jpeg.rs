//! JPEG decoding to RGB8 through zune-jpeg, with the checks that decide whether a file is
//! truncated and whether its original bytes can be kept.
//!
//! zune-jpeg is used directly rather than through the `image` crate so that the headers are
//! parsed once and the colour space, EXIF orientation and decode strictness are under our
//! control. Colour conversion follows libjpeg and Pillow:
//! - grey (1 component) is repeated into R, G and B;
//! - 3 components are YCbCr, unless an Adobe APP14 marker says transform 0 (then RGB);
//! - 4 components are CMYK, or YCCK with Adobe transform 2, and their samples are taken as
//!   inverted (0 = full ink). That is the convention of Photoshop, and Pillow (13.0.0) writes
//!   and reads every CMYK JPEG that way. Then R = C·K / 255 on the stored values, and likewise
//!   G from M and B from Y.
//!
//! Embedded ICC profiles are ignored, as Pillow's `convert("RGB")` ignores them.

use image::metadata::Orientation;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use super::{DecodeLimits, Decoded, SkipKind, SkipReason};

/// Decodes a JPEG (the bytes start with FF D8 FF) to RGB8.
///
/// The checks run in this order, so a header that declares a huge image is rejected before
/// anything of its size is allocated, even when the rest of the file is missing:
/// 1. the headers up to the first start-of-scan marker are complete (else `Truncated`);
/// 2. the frame size is within `limits` (else `TooLarge`);
/// 3. an end-of-image marker follows the first scan (else `Truncated`; Pillow rejects such
///    files as "image file is truncated" too);
/// 4. a strict decode. When it fails, a lenient decode fills the damaged blocks (as libjpeg
///    does after a corrupt-data warning) and the result is marked not keepable.
pub(super) fn decode_jpeg(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, SkipReason> {
    let scan_offset = find_first_scan(bytes)?;

    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .set_strict_mode(false);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| skip_from_zune(&e))?;
    let info = decoder.info().expect("headers were decoded");
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    limits.check(width, height)?;

    if !has_end_marker(&bytes[scan_offset..]) {
        return Err(SkipReason::new(
            SkipKind::Truncated,
            format!(
                "no end-of-image marker after the scan data that starts at byte {scan_offset} \
                 of {} bytes",
                bytes.len()
            ),
        ));
    }

    let colour_space = decoder.input_colorspace().expect("headers were decoded");
    let ycbcr = colour_space == ColorSpace::YCbCr && info.components == 3;
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);

    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    decoder.set_options(decoder.options().set_strict_mode(true));
    let clean = match decoder.decode_into(&mut rgb) {
        Ok(()) => true,
        Err(strict_error) => {
            let mut lenient = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
            lenient.decode_into(&mut rgb).map_err(|e| skip_from_zune(&e))?;
            log::debug!("jpeg decoded leniently after a strict decode failed: {strict_error}");
            false
        }
    };

    Ok(Decoded { rgb, width, height, orientation, keepable: ycbcr && clean })
}

/// Walks the marker segments from SOI to the first start-of-scan (SOS) marker and returns the
/// SOS marker's offset.
///
/// Bytes between segments that are not a marker are skipped, as libjpeg and zune-jpeg skip them
/// (with a warning).
fn find_first_scan(bytes: &[u8]) -> Result<usize, SkipReason> {
    let len = bytes.len();
    let ends_in_headers = || {
        SkipReason::new(
            SkipKind::Truncated,
            format!(
                "the file ends inside the headers at byte {len}, before any start-of-scan marker"
            ),
        )
    };

    let mut pos = 2;
    loop {
        while pos < len && bytes[pos] != 0xFF {
            pos += 1;
        }
        // A marker may be preceded by any number of 0xFF fill bytes.
        while pos < len && bytes[pos] == 0xFF {
            pos += 1;
        }
        if pos >= len {
            return Err(ends_in_headers());
        }
        let marker = bytes[pos];
        let marker_offset = pos - 1;
        pos += 1;

        match marker {
            0xDA => return Ok(marker_offset),
            0xD9 => {
                return Err(SkipReason::new(
                    SkipKind::Corrupt,
                    format!("end-of-image marker at byte {marker_offset} before any scan"),
                ))
            }
            // Markers without a length field: TEM, RST0-7, SOI (and a stray stuffed 00).
            0x00 | 0x01 | 0xD0..=0xD8 => {}
            _ => {
                if pos + 2 > len {
                    return Err(ends_in_headers());
                }
                let segment_len = usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
                if segment_len < 2 {
                    return Err(SkipReason::new(
                        SkipKind::Corrupt,
                        format!(
                            "marker FF{marker:02X} at byte {marker_offset} has segment length \
                             {segment_len}, below the minimum 2"
                        ),
                    ));
                }
                pos += segment_len;
                if pos > len {
                    return Err(ends_in_headers());
                }
            }
        }
    }
}

/// Tells whether the scan data contains an end-of-image marker (FF D9). Entropy-coded data cannot
/// contain one, because every FF data byte there is followed by a stuffed 00.
fn has_end_marker(scan_data: &[u8]) -> bool {
    // Most files end with the marker; some carry padding or other data after it.
    scan_data.ends_with(&[0xFF, 0xD9]) || scan_data.windows(2).any(|pair| pair == [0xFF, 0xD9])
}

/// Classifies a zune-jpeg error.
fn skip_from_zune(error: &DecodeErrors) -> SkipReason {
    let kind = match error {
        DecodeErrors::Unsupported(_) => SkipKind::Unsupported,
        DecodeErrors::LargeDimensions(_) => SkipKind::TooLarge,
        _ => SkipKind::Corrupt,
    };
    SkipReason::new(kind, format!("jpeg: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP0 segment of 16 bytes, SOS header, one data byte, EOI.
    const MINIMAL: [u8; 30] = [
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
        0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0x00, 0xFF, 0xD9,
    ];

    #[test]
    fn first_scan_found_after_segments() {
        assert_eq!(find_first_scan(&MINIMAL), Ok(20));
    }

    #[test]
    fn first_scan_skips_fill_bytes() {
        let mut bytes = MINIMAL[..20].to_vec();
        bytes.extend([0xFF, 0xFF, 0xFF]);
        bytes.extend(&MINIMAL[20..]);
        assert_eq!(find_first_scan(&bytes), Ok(23));
    }

    #[test]
    fn headers_cut_short_are_truncated() {
        for cut in [3, 5, 10, 19, 20, 21] {
            let reason = find_first_scan(&MINIMAL[..cut]).unwrap_err();
            assert_eq!(reason.kind, SkipKind::Truncated, "cut at {cut}: {reason}");
        }
    }

    #[test]
    fn short_segment_length_is_corrupt() {
        let mut bytes = MINIMAL;
        bytes[5] = 1;
        assert_eq!(find_first_scan(&bytes).unwrap_err().kind, SkipKind::Corrupt);
    }

    #[test]
    fn end_marker_found_before_padding() {
        assert!(has_end_marker(&MINIMAL[20..]));
        let mut padded = MINIMAL.to_vec();
        padded.extend([0; 7]);
        assert!(has_end_marker(&padded[20..]));
        assert!(!has_end_marker(&MINIMAL[20..29]));
    }
}
