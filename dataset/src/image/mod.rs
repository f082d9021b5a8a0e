//! Conversion of photo files (JPEG, PNG, GIF, BMP, WebP) into shard records: 3-channel RGB,
//! optionally downscaled, stored as JPEG or raw pixels, with exact RGB sums for statistics.
//!
//! [`convert_image`] takes a file's bytes and [`ConvertOptions`] and returns a [`Converted`]
//! record or a [`SkipReason`]. The format is recognised from the bytes (a PNG named `.JPEG` is
//! read as PNG), never from the file name. Every result has 3 channels: grey is repeated,
//! alpha is dropped, palette and 16-bit images are expanded, and CMYK and YCCK JPEGs are
//! converted with the inverted-sample convention of Photoshop and Pillow (see the `jpeg`
//! module). Colour profiles are not applied.
//!
//! Conversion is deterministic: the same bytes and options give the same output bytes, on any
//! thread and with any number of threads. The decoders and the encoder choose SIMD code paths
//! at run time (AVX2 or not), so bit-identical output across different CPUs is not promised.

mod decode;
mod encode;
mod jpeg;
mod resize;
mod skip;
mod stats;
pub mod training;

#[cfg(test)]
mod tests;

use image::metadata::Orientation;
use image::ImageFormat;

pub use resize::fit_within;
pub use skip::{SkipKind, SkipReason};
pub use stats::{RgbStats, RgbSums};

/// Payload kind of a converted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// The original file bytes when the file is a 3-component YCbCr JPEG that decodes without
    /// error, needs no EXIF rotation and fits `max_side`. Any other file is re-encoded as with
    /// [`Store::Reencode`].
    Keep,
    /// Always a new baseline JPEG at `quality`, downscaled to `max_side` when larger.
    Reencode,
    /// RGB8 pixels in HWC order, downscaled to `max_side` when larger.
    Raw,
}

/// Whether the EXIF orientation tag is applied to the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Exif {
    /// Rotate and flip the pixels as the tag specifies, so the stored image is upright and
    /// needs no orientation of its own.
    #[default]
    Apply,
    /// Keep the pixels as encoded, as Pillow's `Image.open` (and torchvision's `ImageFolder`)
    /// do.
    Ignore,
}

/// Caps on the size a file may declare, checked from its header before any pixel buffer is
/// allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeLimits {
    /// Largest width or height, in pixels.
    pub max_side: u32,
    /// Largest width × height.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    /// Sides up to 65535 (the JPEG maximum) and up to 178,956,970 pixels, the size at which
    /// Pillow raises `DecompressionBombError` (twice its `MAX_IMAGE_PIXELS` warning threshold of
    /// 89,478,485). At that size the RGB8 buffer alone takes 537 MB, so a converter running many
    /// threads may want a lower cap.
    fn default() -> Self {
        DecodeLimits { max_side: 65535, max_pixels: 178_956_970 }
    }
}

impl DecodeLimits {
    /// Checks a declared size against the limits.
    pub fn check(&self, width: u32, height: u32) -> Result<(), SkipReason> {
        let too_large = |detail: String| Err(SkipReason::new(SkipKind::TooLarge, detail));
        let pixels = u64::from(width) * u64::from(height);
        if width == 0 || height == 0 {
            return Err(SkipReason::new(
                SkipKind::Corrupt,
                format!("declares {width}x{height} pixels"),
            ));
        }
        if pixels > self.max_pixels {
            return too_large(format!(
                "declares {width}x{height} pixels, limit {}",
                self.max_pixels
            ));
        }
        if width.max(height) > self.max_side {
            return too_large(format!(
                "declares {width}x{height} pixels, limit {} per side",
                self.max_side
            ));
        }
        Ok(())
    }
}

/// Settings of [`convert_image`]: payload kind, size cap, JPEG quality, EXIF handling and
/// decode limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvertOptions {
    /// Payload kind.
    pub store: Store,
    /// Longest stored side in pixels; larger images are downscaled (aspect kept, see
    /// [`fit_within`]). `None` keeps every size.
    pub max_side: Option<u32>,
    /// JPEG quality, 1..=100 on the IJG scale (values outside are clamped).
    pub quality: u8,
    /// Whether the EXIF orientation is applied.
    pub exif: Exif,
    /// Caps on the declared image size.
    pub limits: DecodeLimits,
}

impl Default for ConvertOptions {
    /// Keep original JPEGs, no size cap, quality 90, EXIF applied, default limits.
    fn default() -> Self {
        ConvertOptions {
            store: Store::Keep,
            max_side: None,
            quality: 90,
            exif: Exif::Apply,
            limits: DecodeLimits::default(),
        }
    }
}

/// One converted image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The record payload: JPEG bytes when `jpeg`, else RGB8 pixels in HWC order.
    pub payload: Vec<u8>,
    /// Width of the stored image in pixels (after downscaling and orientation).
    pub width: u32,
    /// Height of the stored image in pixels.
    pub height: u32,
    /// Channels of the stored image; always 3.
    pub channels: u8,
    /// Whether `payload` is a JPEG.
    pub jpeg: bool,
    /// Whether `payload` differs from the source file's bytes, that is, it was decoded and
    /// then re-encoded, resized, rotated or stored as raw pixels.
    pub reencoded: bool,
    /// Sums over the stored image's pixels: for a kept JPEG its decoded pixels, for a new JPEG
    /// the pixels handed to the encoder (before JPEG loss), for raw storage the stored pixels.
    pub sums: RgbSums,
}

/// A decoded image, in the orientation it was encoded in.
struct Decoded {
    /// RGB8 pixels, HWC.
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    /// The orientation the EXIF tag requests, `NoTransforms` when there is none.
    orientation: Orientation,
    /// Whether the source bytes are a 3-component YCbCr JPEG that decoded without error.
    keepable: bool,
}

/// Converts one image file's bytes into a record payload.
///
/// The format is recognised from the bytes, and the declared size is checked against
/// `opts.limits` before the image is decoded to RGB8. Then the original JPEG is kept (see
/// [`Store::Keep`]), or the pixels are downscaled so the longer side is at most
/// `opts.max_side`, turned upright by the EXIF orientation and stored as JPEG or raw.
///
/// # Errors
///
/// Returns a [`SkipReason`] for a file that cannot become a record: empty, truncated, not an
/// image, an unsupported format or feature, larger than the limits, or corrupt.
pub fn convert_image(bytes: &[u8], opts: &ConvertOptions) -> Result<Converted, SkipReason> {
    let format = detect_format(bytes)?;
    let decoded = match format {
        ImageFormat::Jpeg => jpeg::decode_jpeg(bytes, &opts.limits)?,
        _ => decode::decode_with_image(bytes, format, &opts.limits)?,
    };

    let orientation = match opts.exif {
        Exif::Apply => decoded.orientation,
        Exif::Ignore => Orientation::NoTransforms,
    };
    // The target is computed in the encoded orientation. Fitting into a square box gives the
    // same size before and after a 90° turn.
    let (width, height) = (decoded.width, decoded.height);
    let target = fit_within(width, height, opts.max_side);

    let mut sums = RgbSums::new();
    if opts.store == Store::Keep
        && decoded.keepable
        && orientation == Orientation::NoTransforms
        && target == (width, height)
    {
        sums.add_pixels(&decoded.rgb);
        return Ok(Converted {
            payload: bytes.to_vec(),
            width,
            height,
            channels: 3,
            jpeg: true,
            reencoded: false,
            sums,
        });
    }

    if opts.store != Store::Raw && target.0.max(target.1) > encode::JPEG_MAX_SIDE {
        return Err(SkipReason::new(
            SkipKind::TooLarge,
            format!(
                "{}x{} pixels exceed the jpeg limit of {} per side (set a maximum side or store \
                 raw pixels)",
                target.0,
                target.1,
                encode::JPEG_MAX_SIDE
            ),
        ));
    }

    let rgb = if target == (width, height) {
        decoded.rgb
    } else {
        resize::resize_rgb8(&decoded.rgb, width, height, target)
    };
    let (rgb, width, height) = resize::orient_rgb8(rgb, target.0, target.1, orientation);
    sums.add_pixels(&rgb);

    let (payload, jpeg) = match opts.store {
        Store::Raw => (rgb, false),
        Store::Keep | Store::Reencode => {
            (encode::encode_jpeg(&rgb, width, height, opts.quality)?, true)
        }
    };
    Ok(Converted { payload, width, height, channels: 3, jpeg, reencoded: true, sums })
}

/// Recognises the image format from the first bytes.
fn detect_format(bytes: &[u8]) -> Result<ImageFormat, SkipReason> {
    if bytes.is_empty() {
        return Err(SkipReason::new(SkipKind::Empty, "the file has 0 bytes"));
    }
    let Ok(format) = image::guess_format(bytes) else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(SkipReason::new(
            SkipKind::NotAnImage,
            format!("no known image signature in the first bytes: {}", head.join(" ")),
        ));
    };
    match format {
        ImageFormat::Jpeg
        | ImageFormat::Png
        | ImageFormat::Gif
        | ImageFormat::Bmp
        | ImageFormat::WebP => Ok(format),
        other => Err(SkipReason::new(
            SkipKind::Unsupported,
            format!(
                "{} images are not converted (supported: jpeg, png, gif, bmp, webp)",
                decode::format_name(other)
            ),
        )),
    }
}
