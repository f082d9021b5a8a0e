//! Resizing: exact sizes, shorter-side sizes and scale jitter, on `fast_image_resize`.

use fast_image_resize::{self as fr, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};

use super::{check_side, invalid};
use crate::crop::CropWindow;
use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::key::uniform_inclusive;
use crate::op::{OpRng, Transform};

/// Resampling filter of a resize.
///
/// Every filter except `Nearest` is a convolution whose kernel widens by the scale factor when
/// shrinking (antialiasing), as in PIL and torchvision with `antialias=True`. When enlarging,
/// the kernel keeps its base width. Weights are normalised over the pixels inside the image,
/// so the border needs no padding rule. All run on `fast_image_resize` 6:
///
/// | Filter | `fast_image_resize` | Same weights as |
/// | --- | --- | --- |
/// | `Nearest` | `ResizeAlg::Nearest` | PIL `NEAREST`, torch `nearest-exact`: source `floor((x + 0.5) * scale)`; OpenCV `INTER_NEAREST` uses `floor(x * scale)` |
/// | `Bilinear` | `Convolution(Bilinear)` | PIL `BILINEAR`, torchvision bilinear `antialias=True`; when enlarging also OpenCV `INTER_LINEAR` |
/// | `Bicubic` | `Convolution(CatmullRom)` | PIL `BICUBIC` and torchvision bicubic `antialias=True` (a = -0.5); OpenCV uses a = -0.75 |
/// | `Lanczos3` | `Convolution(Lanczos3)` | PIL `LANCZOS` |
/// | `Area` | `Convolution(Box)` | PIL `BOX`. When shrinking by an integer factor it is OpenCV `INTER_AREA` (the mean of each block); for other factors a source pixel counts fully where its centre lies in the output pixel's footprint, where `INTER_AREA` weighs it by the covered fraction. When enlarging it picks the nearest pixel, where `INTER_AREA` interpolates |
///
/// Results are rounded to nearest and clamped to 0..=255. Serde: `"nearest"`, `"bilinear"`,
/// `"bicubic"`, `"lanczos3"`, `"area"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Nearest pixel.
    Nearest,
    /// Triangle kernel, support 1 pixel (widened when shrinking).
    #[default]
    Bilinear,
    /// Catmull-Rom cubic kernel (a = -0.5), support 2 pixels (widened when shrinking).
    Bicubic,
    /// Lanczos kernel with 3 lobes, support 3 pixels (widened when shrinking).
    Lanczos3,
    /// Box kernel: the mean over each output pixel's footprint.
    Area,
}

/// Returns the `fast_image_resize` algorithm of `filter`.
///
/// With `antialias` it is a convolution whose kernel widens when shrinking (the table on
/// [`Filter`]). Without it, the same kernel keeps its base width (`ResizeAlg::Interpolation`),
/// so `Bilinear` becomes plain bilinear interpolation like OpenCV `INTER_LINEAR`. `Nearest` and `Area` ignore `antialias`: the first never
/// filters, and the second is defined by its footprint.
pub(crate) fn resize_algorithm(filter: Filter, antialias: bool) -> ResizeAlg {
    let kernel = match filter {
        Filter::Nearest => return ResizeAlg::Nearest,
        Filter::Area => return ResizeAlg::Convolution(FilterType::Box),
        Filter::Bilinear => FilterType::Bilinear,
        Filter::Bicubic => FilterType::CatmullRom,
        Filter::Lanczos3 => FilterType::Lanczos3,
    };
    if antialias {
        ResizeAlg::Convolution(kernel)
    } else {
        ResizeAlg::Interpolation(kernel)
    }
}

fn default_antialias() -> bool {
    true
}

/// Skips serialising `antialias` at its default, so the JSON of existing configurations is
/// unchanged.
fn is_true(value: &bool) -> bool {
    *value
}

/// Resizes a u8 HWC image to `height` x `width` with `filter`. Deterministic.
///
/// # Errors
///
/// [`Error::InvalidParameter`] when `height` or `width` is 0 or above `u32::MAX`, and
/// [`Error::UnsupportedChannels`] for images of more than 4 channels.
pub fn resize(
    image: ImageRef<'_>,
    height: usize,
    width: usize,
    filter: Filter,
) -> Result<ImageBuf> {
    resize_with(image, height, width, filter, true)
}

/// [`resize`] with a choice of antialiasing: `true` is [`resize`] (PIL, torchvision
/// `antialias=True`), `false` interpolates with the filter's kernel at its base width when
/// shrinking too (for `Bilinear`, plain bilinear interpolation like OpenCV `INTER_LINEAR`, and
/// cheaper). `Nearest` and `Area` ignore `antialias`.
///
/// # Errors
///
/// The errors of [`resize`].
pub fn resize_with(
    image: ImageRef<'_>,
    height: usize,
    width: usize,
    filter: Filter,
    antialias: bool,
) -> Result<ImageBuf> {
    let whole = CropWindow { top: 0, left: 0, height: image.height(), width: image.width() };
    resample("resize", image, whole, height, width, resize_algorithm(filter, antialias))
}

/// Cuts `window` out of a u8 HWC image and resizes it to `out_height` x `out_width` without
/// copying the window first. Deterministic.
///
/// The window is in image coordinates (no padding) and must lie inside the image. The filter
/// reads only the window's pixels, so the result equals [`resize`] of the
/// [`crop`](super::crop), as torchvision's `resized_crop` does.
///
/// # Errors
///
/// [`Error::ZeroCrop`] for an empty window, [`Error::WindowOutOfBounds`] for a window that
/// leaves the image, and the errors of [`resize`].
pub fn resized_crop(
    image: ImageRef<'_>,
    window: CropWindow,
    out_height: usize,
    out_width: usize,
    filter: Filter,
) -> Result<ImageBuf> {
    resized_crop_with(image, window, out_height, out_width, filter, true)
}

/// [`resized_crop`] with a choice of antialiasing, as [`resize_with`].
///
/// # Errors
///
/// The errors of [`resized_crop`].
pub fn resized_crop_with(
    image: ImageRef<'_>,
    window: CropWindow,
    out_height: usize,
    out_width: usize,
    filter: Filter,
    antialias: bool,
) -> Result<ImageBuf> {
    check_window(image, window)?;
    let algorithm = resize_algorithm(filter, antialias);
    resample("resized_crop", image, window, out_height, out_width, algorithm)
}

/// Checks that `window` is not empty and lies inside `image`.
pub(super) fn check_window(image: ImageRef<'_>, window: CropWindow) -> Result<()> {
    if window.height == 0 || window.width == 0 {
        return Err(Error::ZeroCrop { height: window.height, width: window.width });
    }

    let bottom = window.top.checked_add(window.height);
    let right = window.left.checked_add(window.width);
    let inside =
        bottom.is_some_and(|b| b <= image.height()) && right.is_some_and(|r| r <= image.width());
    if !inside {
        return Err(Error::WindowOutOfBounds {
            top: window.top,
            left: window.left,
            height: window.height,
            width: window.width,
            padded_height: image.height(),
            padded_width: image.width(),
        });
    }
    Ok(())
}

/// Resizes the `window` part of `image`, a window that the caller has checked.
fn resample(
    op: &'static str,
    image: ImageRef<'_>,
    window: CropWindow,
    height: usize,
    width: usize,
    algorithm: ResizeAlg,
) -> Result<ImageBuf> {
    check_side(op, "height", height)?;
    check_side(op, "width", width)?;
    let channels = image.channels();
    let pixel_type = match channels {
        1 => PixelType::U8,
        2 => PixelType::U8x2,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        found => return Err(Error::UnsupportedChannels { op, expected: "1 to 4 channels", found }),
    };
    check_side(op, "image height", image.height())?;
    check_side(op, "image width", image.width())?;

    // The sizes fit u32 (checked above), so the library's own checks cannot fail.
    let source = fr::images::ImageRef::new(
        image.width() as u32,
        image.height() as u32,
        image.data(),
        pixel_type,
    )
    .expect("buffer length matches the checked image shape");
    // A cropped view, not a crop box option: the filter then reads only the window's pixels
    // and renormalises at its edges, as a crop followed by a resize does.
    let view = fr::images::CroppedImage::new(
        &source,
        window.left as u32,
        window.top as u32,
        window.width as u32,
        window.height as u32,
    )
    .expect("the window lies inside the image");
    let mut output = fr::images::Image::new(width as u32, height as u32, pixel_type);
    // `use_alpha(false)`: a 2nd or 4th channel is data, not alpha to premultiply by.
    let options = ResizeOptions::new().resize_alg(algorithm).use_alpha(false);
    RESIZER.with_borrow_mut(|resizer| {
        resizer.resize(&view, &mut output, &options).expect("pixel types match")
    });

    ImageBuf::new(output.into_vec(), height, width, channels)
}

thread_local! {
    /// One resizer per thread: it keeps its intermediate buffer between calls instead of
    /// allocating it for every image, and detects the CPU's extensions once.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// Returns the `(height, width)` that brings the shorter side of a `height` x `width` image to
/// `shorter` and keeps the aspect ratio, as torchvision's `Resize(int)`: the longer side becomes
/// `floor(shorter * longer / short side)`. A square image becomes `shorter` x `shorter`.
///
/// Saturates at `usize::MAX` instead of overflowing. `height` and `width` must be at least 1.
pub fn shorter_side_size(height: usize, width: usize, shorter: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let scaled = (shorter as u128 * long as u128) / short.max(1) as u128;
    let longer = usize::try_from(scaled).unwrap_or(usize::MAX);

    if width <= height {
        (longer, shorter)
    } else {
        (shorter, longer)
    }
}

/// Target size of a [`Resize`].
///
/// Serde: `{"shorter_side": 256}` or `{"exact": {"height": 224, "width": 224}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResizeTo {
    /// The shorter side becomes this many pixels, keeping the aspect ratio
    /// ([`shorter_side_size`]).
    ShorterSide(usize),
    /// Exactly `height` x `width` pixels.
    Exact {
        /// Output rows.
        height: usize,
        /// Output columns.
        width: usize,
    },
}

/// Resizes a u8 HWC image to a fixed size or shorter side. Draws nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    /// Output size.
    pub size: ResizeTo,
    /// Resampling filter (default bilinear).
    #[serde(default)]
    pub filter: Filter,
    /// Whether the kernel widens when shrinking (default `true`, see [`resize_with`]): `true`
    /// behaves as torchvision v2 `antialias=True` and PIL, `false` as plain interpolation
    /// (bilinear: OpenCV `INTER_LINEAR`), which is cheaper. Serialised only when `false`.
    #[serde(default = "default_antialias", skip_serializing_if = "is_true")]
    pub antialias: bool,
}

impl Resize {
    /// Creates an antialiased bilinear resize of the shorter side to `shorter` pixels.
    pub fn shorter_side(shorter: usize) -> Self {
        Self { size: ResizeTo::ShorterSide(shorter), filter: Filter::Bilinear, antialias: true }
    }

    /// Creates an antialiased bilinear resize to exactly `height` x `width`.
    pub fn exact(height: usize, width: usize) -> Self {
        Self { size: ResizeTo::Exact { height, width }, filter: Filter::Bilinear, antialias: true }
    }

    /// Returns this resize with antialiasing set to `antialias`.
    pub fn with_antialias(self, antialias: bool) -> Self {
        Self { antialias, ..self }
    }
}

impl Transform for Resize {
    fn name(&self) -> &'static str {
        "resize"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        match self.size {
            ResizeTo::ShorterSide(shorter) => Some(shorter_side_size(height, width, shorter)),
            ResizeTo::Exact { height, width } => Some((height, width)),
        }
    }

    fn transform(&self, image: ImageRef<'_>, _rng: &mut OpRng) -> Result<ImageBuf> {
        if let ResizeTo::ShorterSide(shorter) = self.size {
            check_side("resize", "shorter_side", shorter)?;
        }

        let (height, width) = self
            .output_size(image.height(), image.width())
            .expect("a resize always has a fixed output size");
        resize_with(image, height, width, self.filter, self.antialias)
    }
}

/// Resizes the shorter side of a u8 HWC image to a random length, keeping the aspect ratio: the
/// scale augmentation of VGG and ResNet training (shorter side uniform in 256..=480).
///
/// Draw: one [`uniform_inclusive`]`(rng, max_shorter_side - min_shorter_side)` added to
/// `min_shorter_side`; then [`shorter_side_size`] and [`resize_with`] with `filter` and
/// `antialias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleJitter {
    /// Smallest shorter side, in pixels (at least 1).
    pub min_shorter_side: usize,
    /// Largest shorter side, in pixels (at least `min_shorter_side`).
    pub max_shorter_side: usize,
    /// Resampling filter (default bilinear).
    #[serde(default)]
    pub filter: Filter,
    /// Whether the kernel widens when shrinking (default `true`), as [`Resize::antialias`]:
    /// `false` gives OpenCV `INTER_LINEAR` scale jitter at a lower cost.
    #[serde(default = "default_antialias", skip_serializing_if = "is_true")]
    pub antialias: bool,
}

impl Default for ScaleJitter {
    fn default() -> Self {
        Self::new(256, 480)
    }
}

impl ScaleJitter {
    /// Creates an antialiased bilinear jitter of the shorter side over `min..=max` pixels.
    pub fn new(min_shorter_side: usize, max_shorter_side: usize) -> Self {
        Self { min_shorter_side, max_shorter_side, filter: Filter::Bilinear, antialias: true }
    }

    /// Returns this jitter with antialiasing set to `antialias`.
    pub fn with_antialias(self, antialias: bool) -> Self {
        Self { antialias, ..self }
    }

    /// Checks that `1 <= min_shorter_side <= max_shorter_side <= u32::MAX`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] otherwise.
    pub fn validate(&self) -> Result<()> {
        check_side("scale_jitter", "min_shorter_side", self.min_shorter_side)?;
        check_side("scale_jitter", "max_shorter_side", self.max_shorter_side)?;
        if self.max_shorter_side < self.min_shorter_side {
            return Err(invalid(
                "scale_jitter",
                "max_shorter_side",
                self.max_shorter_side,
                &format!("at least min_shorter_side ({})", self.min_shorter_side),
            ));
        }
        Ok(())
    }

    /// Draws the shorter side, in pixels: one `uniform_inclusive` draw.
    ///
    /// # Errors
    ///
    /// The errors of [`ScaleJitter::validate`], before any draw.
    pub fn draw_shorter_side(&self, rng: &mut OpRng) -> Result<usize> {
        self.validate()?;
        let span = (self.max_shorter_side - self.min_shorter_side) as u64;
        Ok(self.min_shorter_side + uniform_inclusive(rng, span) as usize)
    }
}

impl Transform for ScaleJitter {
    fn name(&self) -> &'static str {
        "scale_jitter"
    }

    /// Fixed only when the range contains one length.
    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        (self.min_shorter_side == self.max_shorter_side)
            .then(|| shorter_side_size(height, width, self.min_shorter_side))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let shorter = self.draw_shorter_side(rng)?;
        let (height, width) = shorter_side_size(image.height(), image.width(), shorter);
        resize_with(image, height, width, self.filter, self.antialias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SampleKey;

    fn ramp(height: usize, width: usize, channels: usize) -> Vec<u8> {
        (0..height * width * channels).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn shorter_side_matches_torchvision() {
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(100, 100, 32), (32, 32));
        assert_eq!(shorter_side_size(1, 3, 2), (2, 6));
        assert_eq!(shorter_side_size(1, usize::MAX, 2), (2, usize::MAX));
    }

    #[test]
    fn resize_same_size_is_identity() {
        let data = ramp(5, 7, 3);
        let image = ImageRef::new(&data, 5, 7, 3).unwrap();

        for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic, Filter::Area] {
            assert_eq!(resize(image, 5, 7, filter).unwrap().data(), &data[..], "{filter:?}");
        }
    }

    #[test]
    fn resize_area_halves_by_block_mean() {
        // 2x4 grey: each 2x2 block's mean, rounded: (0+2+8+10)/4 = 5, (4+6+12+14)/4 = 9.
        let data = [0, 2, 4, 6, 8, 10, 12, 14];
        let image = ImageRef::new(&data, 2, 4, 1).unwrap();

        assert_eq!(resize(image, 1, 2, Filter::Area).unwrap().data(), &[5, 9]);
    }

    #[test]
    fn resize_four_channels_not_alpha() {
        // A zero fourth channel must not zero the colour, as premultiplied alpha would.
        let data = [200, 100, 50, 0].repeat(4);
        let image = ImageRef::new(&data, 2, 2, 4).unwrap();

        assert_eq!(resize(image, 1, 1, Filter::Bilinear).unwrap().data(), &[200, 100, 50, 0]);
    }

    #[test]
    fn resize_one_pixel_image() {
        let image = ImageRef::new(&[9, 8, 7], 1, 1, 3).unwrap();

        let output = resize(image, 3, 2, Filter::Bicubic).unwrap();

        assert_eq!(output.data(), &[9, 8, 7].repeat(6)[..]);
    }

    #[test]
    fn resize_rejects_bad_sizes_and_channels() {
        let data = ramp(2, 2, 5);
        let five = ImageRef::new(&data, 2, 2, 5).unwrap();
        let one = ImageRef::new(&data[..4], 2, 2, 1).unwrap();

        assert!(matches!(
            resize(five, 1, 1, Filter::Bilinear),
            Err(Error::UnsupportedChannels { found: 5, .. })
        ));
        assert!(matches!(
            resize(one, 0, 1, Filter::Bilinear),
            Err(Error::InvalidParameter { parameter: "height", .. })
        ));
    }

    #[test]
    fn resized_crop_of_window_at_own_size() {
        let data = ramp(6, 5, 3);
        let image = ImageRef::new(&data, 6, 5, 3).unwrap();
        let window = CropWindow { top: 1, left: 2, height: 3, width: 2 };

        let output = resized_crop(image, window, 3, 2, Filter::Bilinear).unwrap();

        for y in 0..3 {
            let start = ((1 + y) * 5 + 2) * 3;
            assert_eq!(&output.data()[y * 6..(y + 1) * 6], &data[start..start + 6]);
        }
    }

    #[test]
    fn resized_crop_rejects_outside_window() {
        let data = ramp(6, 5, 1);
        let image = ImageRef::new(&data, 6, 5, 1).unwrap();
        let window = CropWindow { top: 4, left: 0, height: 3, width: 5 };
        let empty = CropWindow { top: 0, left: 0, height: 0, width: 5 };

        assert!(matches!(
            resized_crop(image, window, 2, 2, Filter::Bilinear),
            Err(Error::WindowOutOfBounds { .. })
        ));
        assert!(matches!(
            resized_crop(image, empty, 2, 2, Filter::Bilinear),
            Err(Error::ZeroCrop { .. })
        ));
    }

    #[test]
    fn scale_jitter_draws_in_range() {
        let jitter = ScaleJitter::new(4, 6);
        let data = ramp(10, 20, 3);
        let image = ImageRef::new(&data, 10, 20, 3).unwrap();

        for index in 0..50 {
            let output = jitter.transform(image, &mut SampleKey::new(1, 0, index).rng(0)).unwrap();
            assert!((4..=6).contains(&output.height()), "height {}", output.height());
            assert_eq!(output.width(), output.height() * 2);
        }
    }

    #[test]
    fn scale_jitter_rejects_reversed_range() {
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let error = ScaleJitter::new(480, 256).draw_shorter_side(&mut rng).unwrap_err();

        assert_eq!(
            error.to_string(),
            "scale_jitter: invalid max_shorter_side 256: expected at least min_shorter_side (480)"
        );
        assert!(ScaleJitter::new(0, 3).validate().is_err());
    }

    #[test]
    fn resize_serde_round_trip() {
        let resize = Resize::shorter_side(256);
        let jitter = ScaleJitter::default();

        let json = serde_json::to_string(&resize).unwrap();
        let jitter_json = serde_json::to_string(&jitter).unwrap();

        assert_eq!(json, r#"{"size":{"shorter_side":256},"filter":"bilinear"}"#);
        assert_eq!(serde_json::from_str::<Resize>(&json).unwrap(), resize);
        assert_eq!(
            serde_json::from_str::<Resize>(r#"{"size":{"exact":{"height":2,"width":3}}}"#).unwrap(),
            Resize::exact(2, 3)
        );
        assert_eq!(serde_json::from_str::<ScaleJitter>(&jitter_json).unwrap(), jitter);
        assert!(serde_json::from_str::<Resize>(r#"{"size":{"shorter_side":2},"x":1}"#).is_err());
    }

    #[test]
    fn antialias_serde_default_and_round_trip() {
        let plain = ScaleJitter::new(256, 480).with_antialias(false);

        let json = serde_json::to_string(&plain).unwrap();

        assert_eq!(
            json,
            r#"{"min_shorter_side":256,"max_shorter_side":480,"filter":"bilinear","antialias":false}"#
        );
        assert_eq!(serde_json::from_str::<ScaleJitter>(&json).unwrap(), plain);
        let resize: Resize = serde_json::from_str(r#"{"size":{"shorter_side":8}}"#).unwrap();
        assert!(resize.antialias);
    }

    #[test]
    fn plain_bilinear_halving_averages_pairs() {
        // Halving puts each output centre between two source pixels: plain bilinear takes their
        // mean, where the antialiased kernel (4 taps wide) also weighs the neighbours.
        let data = [0, 40, 80, 120, 160, 200, 240, 250];
        let image = ImageRef::new(&data, 1, 8, 1).unwrap();

        let plain = resize_with(image, 1, 4, Filter::Bilinear, false).unwrap();
        let smooth = resize(image, 1, 4, Filter::Bilinear).unwrap();

        assert_eq!(plain.data(), &[20, 100, 180, 245]);
        assert_ne!(smooth.data(), plain.data());
    }
}
