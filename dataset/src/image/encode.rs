//! Baseline JPEG encoding of RGB8 pixels.

use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};

use super::{SkipKind, SkipReason};

/// The largest width or height a JPEG frame header can store.
pub(super) const JPEG_MAX_SIDE: u32 = 65535;

/// Encodes RGB8 pixels as a baseline JFIF JPEG at `quality` (1..=100, IJG scale).
///
/// Chroma is subsampled 4:2:0 by averaging each 2×2 block (libjpeg's default, and Pillow's
/// for every quality), and the standard Huffman tables are used, so the output is one
/// interleaved scan that every decoder reads quickly. jpeg-encoder picks its AVX2 code path at
/// run time; the output depends only on the input on a given CPU.
pub(super) fn encode_jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, SkipReason> {
    let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(SkipReason::new(
            SkipKind::TooLarge,
            format!("{width}x{height} pixels exceed the jpeg limit of {JPEG_MAX_SIDE} per side"),
        ));
    };

    // Reserve 3 bits a pixel, above the 1.3 measured on a few photos at quality 90, so the
    // buffer rarely regrows.
    let mut jpeg = Vec::with_capacity(rgb.len() / 8 + 1024);
    let mut encoder = Encoder::new(&mut jpeg, quality.clamp(1, 100));
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    encoder.encode(rgb, w, h, ColorType::Rgb).map_err(|e| {
        SkipReason::new(SkipKind::Corrupt, format!("jpeg encoding of {width}x{height} failed: {e}"))
    })?;
    Ok(jpeg)
}
