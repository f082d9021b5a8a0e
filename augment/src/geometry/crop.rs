//! Crops inside the image: a fixed window, the centre, and the random-resized crop.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::resize::{check_window, resized_crop};
use super::{check_side, invalid, uniform_f64, Filter};
use crate::crop::CropWindow;
use crate::error::Result;
use crate::image::{ImageBuf, ImageRef};
use crate::key::uniform_inclusive;
use crate::op::{OpRng, Transform};

/// Copies `window` out of a u8 HWC image. Deterministic.
///
/// The window is in image coordinates (row 0 is the image's first row) and must lie inside the
/// image. [`RandomCrop`](crate::RandomCrop) crops with padding.
///
/// # Errors
///
/// [`Error::ZeroCrop`](crate::Error::ZeroCrop) for an empty window and
/// [`Error::WindowOutOfBounds`](crate::Error::WindowOutOfBounds) for one that leaves the image.
pub fn crop(image: ImageRef<'_>, window: CropWindow) -> Result<ImageBuf> {
    check_window(image, window)?;

    let channels = image.channels();
    let (start, len) = (window.left * channels, window.width * channels);
    let mut data = Vec::with_capacity(window.height * len);
    for y in window.top..window.top + window.height {
        data.extend_from_slice(&image.row(y)[start..start + len]);
    }
    ImageBuf::new(data, window.height, window.width, channels)
}

/// Cuts the central `height` x `width` window out of a u8 HWC image. Draws nothing.
///
/// On an axis where the crop fits, it starts at `(image side - crop side) / 2` rounded down.
/// torchvision rounds that half to even instead. The two differ by one pixel when the
/// difference is odd and its half rounds up to an even number: for a difference of 7,
/// torchvision starts at 4 and this op at 3 (for 5, both start at 2).
///
/// On an axis where the crop is larger than the image, the output is zero-padded around the
/// image as torchvision does: the image starts at `(crop side - image side) / 2` rounded down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterCrop {
    /// Output rows.
    pub height: usize,
    /// Output columns.
    pub width: usize,
}

impl CenterCrop {
    /// Creates a centre crop of `height` x `width`.
    pub fn new(height: usize, width: usize) -> Self {
        Self { height, width }
    }

    /// Checks that both sides are at least 1.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) otherwise.
    pub fn validate(&self) -> Result<()> {
        check_side("center_crop", "height", self.height)?;
        check_side("center_crop", "width", self.width)
    }
}

/// The span one axis of a centre crop copies: `count` pixels from `source` to `target`.
struct AxisSpan {
    source: usize,
    target: usize,
    count: usize,
}

fn center_span(size: usize, crop: usize) -> AxisSpan {
    if crop <= size {
        AxisSpan { source: (size - crop) / 2, target: 0, count: crop }
    } else {
        AxisSpan { source: 0, target: (crop - size) / 2, count: size }
    }
}

impl Transform for CenterCrop {
    fn name(&self) -> &'static str {
        "center_crop"
    }

    fn output_size(&self, _height: usize, _width: usize) -> Option<(usize, usize)> {
        Some((self.height, self.width))
    }

    fn transform(&self, image: ImageRef<'_>, _rng: &mut OpRng) -> Result<ImageBuf> {
        self.validate()?;
        let channels = image.channels();
        let rows = center_span(image.height(), self.height);
        let columns = center_span(image.width(), self.width);

        if self.height <= image.height() && self.width <= image.width() {
            let window = CropWindow {
                top: rows.source,
                left: columns.source,
                height: self.height,
                width: self.width,
            };
            return crop(image, window);
        }

        let stride = self.width * channels;
        let mut data = vec![0u8; self.height * stride];
        let len = columns.count * channels;
        for y in 0..rows.count {
            let source = &image.row(rows.source + y)[columns.source * channels..][..len];
            let start = (rows.target + y) * stride + columns.target * channels;
            data[start..start + len].copy_from_slice(source);
        }
        ImageBuf::new(data, self.height, self.width, channels)
    }
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}

fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

/// Crops a random window of random area and aspect ratio out of a u8 HWC image and resizes it
/// to `height` x `width`: the Inception crop (Szegedy et al. 2015) with torchvision's
/// `RandomResizedCrop` algorithm.
///
/// Draws ([`RandomResizedCrop::draw_window`]): up to 10 attempts, each drawing the area
/// fraction uniform in `scale`, then the log aspect ratio (width / height) uniform in
/// `[ln ratio[0], ln ratio[1])`. The window is `round(sqrt(area * ratio))` columns by
/// `round(sqrt(area / ratio))` rows (halves to even, as Python's `round`). The first that fits
/// the image draws its top row (`uniform_inclusive`), then its left column. When no attempt
/// fits, the fallback is the largest centred window whose ratio is clamped into `ratio`, and it
/// draws nothing more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    /// Output rows.
    pub height: usize,
    /// Output columns.
    pub width: usize,
    /// Range of the window's area as a fraction of the image's area (default `[0.08, 1.0]`).
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    /// Range of the window's aspect ratio, width / height (default `[3/4, 4/3]`).
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    /// Resampling filter (default bilinear, with antialiasing when shrinking).
    #[serde(default)]
    pub filter: Filter,
}

impl RandomResizedCrop {
    /// Creates a bilinear crop to `height` x `width` with scale `[0.08, 1.0]` and ratio
    /// `[3/4, 4/3]`.
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            scale: default_scale(),
            ratio: default_ratio(),
            filter: Filter::Bilinear,
        }
    }

    /// Checks the output size, `0 < scale[0] <= scale[1]` and `0 < ratio[0] <= ratio[1]`, all
    /// finite.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) otherwise.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "random_resized_crop";
        check_side(OP, "height", self.height)?;
        check_side(OP, "width", self.width)?;

        let ordered =
            |[low, high]: [f64; 2]| low.is_finite() && high.is_finite() && 0.0 < low && low <= high;
        if !ordered(self.scale) {
            return Err(invalid(
                OP,
                "scale",
                self.scale,
                "finite [low, high] with 0 < low <= high",
            ));
        }
        if !ordered(self.ratio) {
            return Err(invalid(
                OP,
                "ratio",
                self.ratio,
                "finite [low, high] with 0 < low <= high",
            ));
        }
        Ok(())
    }

    /// Draws a window inside a `height` x `width` image (see the type's documentation for the
    /// draws). The window always lies inside the image and is at least 1 x 1, also for
    /// parameters that [`validate`](Self::validate) rejects.
    pub fn draw_window<R: RngCore + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> CropWindow {
        let (height, width) = (height.max(1), width.max(1));
        let area = height as f64 * width as f64;
        let log_ratio = [self.ratio[0].ln(), self.ratio[1].ln()];

        for _ in 0..10 {
            let target_area = area * uniform_f64(rng, self.scale[0], self.scale[1]);
            let aspect = uniform_f64(rng, log_ratio[0], log_ratio[1]).exp();
            // `as usize` maps NaN to 0 and saturates, so bad parameters only fail the fit.
            let w = (target_area * aspect).sqrt().round_ties_even() as usize;
            let h = (target_area / aspect).sqrt().round_ties_even() as usize;

            if (1..=width).contains(&w) && (1..=height).contains(&h) {
                let top = uniform_inclusive(rng, (height - h) as u64) as usize;
                let left = uniform_inclusive(rng, (width - w) as u64) as usize;
                return CropWindow { top, left, height: h, width: w };
            }
        }

        let (h, w) = fallback_size(height, width, self.ratio);
        CropWindow { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }
}

/// Returns the size of the whole image with its aspect ratio clamped into `ratio`, as
/// torchvision's fallback does.
fn fallback_size(height: usize, width: usize, ratio: [f64; 2]) -> (usize, usize) {
    let image_ratio = width as f64 / height as f64;
    let (low, high) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));

    let (h, w) = if image_ratio < low {
        ((width as f64 / low).round_ties_even() as usize, width)
    } else if image_ratio > high {
        (height, (height as f64 * high).round_ties_even() as usize)
    } else {
        (height, width)
    };
    (h.clamp(1, height), w.clamp(1, width))
}

impl Transform for RandomResizedCrop {
    fn name(&self) -> &'static str {
        "random_resized_crop"
    }

    fn output_size(&self, _height: usize, _width: usize) -> Option<(usize, usize)> {
        Some((self.height, self.width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        self.validate()?;
        let window = self.draw_window(image.height(), image.width(), rng);
        resized_crop(image, window, self.height, self.width, self.filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::key::SampleKey;

    fn ramp(height: usize, width: usize, channels: usize) -> Vec<u8> {
        (0..height * width * channels).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn crop_copies_window_rows() {
        let data = ramp(4, 5, 2);
        let image = ImageRef::new(&data, 4, 5, 2).unwrap();
        let window = CropWindow { top: 1, left: 3, height: 2, width: 2 };

        let output = crop(image, window).unwrap();

        assert_eq!(output.data(), &[16, 17, 18, 19, 26, 27, 28, 29]);
    }

    #[test]
    fn crop_rejects_window_outside() {
        let data = ramp(4, 5, 1);
        let image = ImageRef::new(&data, 4, 5, 1).unwrap();
        let window = CropWindow { top: 0, left: usize::MAX, height: 1, width: 2 };

        assert!(matches!(crop(image, window), Err(Error::WindowOutOfBounds { .. })));
    }

    #[test]
    fn center_crop_floors_offset() {
        // 1 x 4 image, crop 1 x 1: offset (4 - 1) / 2 = 1.
        let image = ImageRef::new(&[10, 11, 12, 13], 1, 4, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let output = CenterCrop::new(1, 1).transform(image, &mut rng).unwrap();

        assert_eq!(output.data(), &[11]);
    }

    #[test]
    fn center_crop_pads_larger_crop() {
        // A 2 x 1 image in a 3 x 4 crop starts at row (3 - 2) / 2 = 0 and column
        // (4 - 1) / 2 = 1, so one zero row follows it.
        let image = ImageRef::new(&[5, 6], 2, 1, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let output = CenterCrop::new(3, 4).transform(image, &mut rng).unwrap();

        assert_eq!(output.data(), &[0, 5, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn center_crop_rejects_zero() {
        let image = ImageRef::new(&[5, 6], 2, 1, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let error = CenterCrop::new(0, 4).transform(image, &mut rng).unwrap_err();

        assert!(matches!(error, Error::InvalidParameter { op: "center_crop", .. }));
    }

    #[test]
    fn random_resized_crop_fallback_clamps_ratio() {
        // With scale 1 every attempt wants about 1000 pixels at a ratio near 1, which is more
        // than 10 rows. The fallback keeps 10 rows and round(10 * 4/3) = 13 columns.
        let mut crop = RandomResizedCrop::new(8, 8);
        crop.scale = [1.0, 1.0];
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let window = crop.draw_window(10, 100, &mut rng);

        assert_eq!(window, CropWindow { top: 0, left: 43, height: 10, width: 13 });
    }

    #[test]
    fn random_resized_crop_bad_parameters_stay_inside() {
        let mut crop = RandomResizedCrop::new(4, 4);
        crop.scale = [f64::NAN, -1.0];
        crop.ratio = [0.0, f64::INFINITY];
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let window = crop.draw_window(3, 7, &mut rng);

        assert!(window.top + window.height <= 3, "{window:?}");
        assert!(window.left + window.width <= 7, "{window:?}");
        assert!(window.height >= 1, "{window:?}");
        assert!(window.width >= 1, "{window:?}");
        assert!(matches!(crop.validate(), Err(Error::InvalidParameter { parameter: "scale", .. })));
    }

    #[test]
    fn random_resized_crop_serde_defaults() {
        let json = r#"{"height":224,"width":224}"#;

        let crop: RandomResizedCrop = serde_json::from_str(json).unwrap();

        assert_eq!(crop, RandomResizedCrop::new(224, 224));
        assert!(
            serde_json::from_str::<RandomResizedCrop>(r#"{"height":1,"width":1,"x":0}"#).is_err()
        );
    }
}
