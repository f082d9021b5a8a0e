//! Random crop of a padded image.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::key::uniform_inclusive;
use crate::op::{OpRng, Transform};
use crate::pad::PadMode;

/// Pads a u8 HWC image by `padding` pixels on every side, then cuts a `height` x `width`
/// window at a random offset. Output: u8 HWC, same channel count.
///
/// The window's top row is drawn uniformly from `0..=padded_height - height`, then its left
/// column from `0..=padded_width - width`, both with [`uniform_inclusive`] from the generator
/// passed in (in a [`crate::CropFlipNormalize`] recipe, `SampleKey::rng(0)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomCrop {
    /// Output rows. `None` keeps the input image's height.
    #[serde(default)]
    pub height: Option<usize>,
    /// Output columns. `None` keeps the input image's width.
    #[serde(default)]
    pub width: Option<usize>,
    /// Pixels added on each of the four sides before cropping; 0 when omitted.
    #[serde(default)]
    pub padding: usize,
    /// Rule that fills the padding; zero when omitted.
    #[serde(default)]
    pub pad_mode: PadMode,
}

/// A crop window in padded coordinates: row 0 is the first padding row, so the input image's
/// pixel (0, 0) sits at (`padding`, `padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropWindow {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// The validated sizes of a crop on one input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CropGeometry {
    /// Output rows.
    pub height: usize,
    /// Output columns.
    pub width: usize,
    /// Largest valid `CropWindow::top`.
    pub max_top: usize,
    /// Largest valid `CropWindow::left`.
    pub max_left: usize,
}

impl RandomCrop {
    /// Creates a crop of a fixed `height` x `width`.
    pub fn new(height: usize, width: usize, padding: usize, pad_mode: PadMode) -> Self {
        Self { height: Some(height), width: Some(width), padding, pad_mode }
    }

    /// Creates a crop back to the input's own size after padding: the CIFAR "pad and random
    /// crop".
    pub fn input_size(padding: usize, pad_mode: PadMode) -> Self {
        Self { height: None, width: None, padding, pad_mode }
    }

    /// Returns the output rows and columns for an input of `height` x `width`.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        (self.height.unwrap_or(height), self.width.unwrap_or(width))
    }

    /// Checks that the crop fits the padded `height` x `width` image and returns its sizes.
    pub(crate) fn geometry(&self, height: usize, width: usize) -> Result<CropGeometry> {
        let (crop_height, crop_width) = self.output_size(height, width);
        if crop_height == 0 || crop_width == 0 {
            return Err(Error::ZeroCrop { height: crop_height, width: crop_width });
        }

        let padded = |side: usize| {
            self.padding
                .checked_mul(2)
                .and_then(|both| both.checked_add(side))
                .filter(|&total| total <= isize::MAX as usize)
        };
        let (Some(padded_height), Some(padded_width)) = (padded(height), padded(width)) else {
            return Err(Error::PaddingOverflow {
                padding: self.padding,
                image_height: height,
                image_width: width,
            });
        };

        if crop_height > padded_height || crop_width > padded_width {
            return Err(Error::CropTooLarge {
                crop_height,
                crop_width,
                image_height: height,
                image_width: width,
                padding: self.padding,
                padded_height,
                padded_width,
            });
        }
        Ok(CropGeometry {
            height: crop_height,
            width: crop_width,
            max_top: padded_height - crop_height,
            max_left: padded_width - crop_width,
        })
    }

    /// Draws a window for a `height` x `width` input: the top row first, then the left column.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCrop`], [`Error::PaddingOverflow`] or [`Error::CropTooLarge`] when the
    /// crop does not fit the padded image.
    pub fn sample_window<R: RngCore + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> Result<CropWindow> {
        let geometry = self.geometry(height, width)?;
        Ok(geometry.sample_window(rng))
    }

    /// Pads `image` and cuts `window` out of it.
    ///
    /// # Errors
    ///
    /// The errors of [`RandomCrop::sample_window`], and [`Error::WindowOutOfBounds`] when the
    /// window reaches past the padded image.
    pub fn crop_at(&self, image: ImageRef<'_>, window: CropWindow) -> Result<ImageBuf> {
        let (height, width, channels) = (image.height(), image.width(), image.channels());
        let geometry = self.geometry(height, width)?;
        let fits = window.height == geometry.height
            && window.width == geometry.width
            && window.top <= geometry.max_top
            && window.left <= geometry.max_left;
        if !fits {
            let padding = 2 * self.padding;
            return Err(Error::WindowOutOfBounds {
                top: window.top,
                left: window.left,
                height: window.height,
                width: window.width,
                padded_height: height + padding,
                padded_width: width + padding,
            });
        }

        // Padded columns inner_start..inner_end read image columns directly, so each row copies
        // them as one slice. Only the columns in the padding go pixel by pixel.
        let right = window.left + window.width;
        let inner_start = window.left.max(self.padding).min(right);
        let inner_end = right.min(self.padding + width).max(inner_start);

        let padding = self.padding as isize;
        let mut data = Vec::with_capacity(window.height * window.width * channels);
        for y in 0..window.height {
            let source_y =
                self.pad_mode.source_index(window.top as isize + y as isize - padding, height);
            let Some(sy) = source_y else {
                data.extend(std::iter::repeat_n(0u8, window.width * channels));
                continue;
            };
            let row = image.row(sy);
            let push_column = |data: &mut Vec<u8>, column: usize| match self
                .pad_mode
                .source_index(column as isize - padding, width)
            {
                Some(sx) => data.extend_from_slice(&row[sx * channels..(sx + 1) * channels]),
                None => data.extend(std::iter::repeat_n(0u8, channels)),
            };

            for column in window.left..inner_start {
                push_column(&mut data, column);
            }
            if inner_end > inner_start {
                let start = (inner_start - self.padding) * channels;
                data.extend_from_slice(&row[start..(inner_end - self.padding) * channels]);
            }
            for column in inner_end..right {
                push_column(&mut data, column);
            }
        }
        ImageBuf::new(data, window.height, window.width, channels)
    }

    /// Draws a window with `rng` and cuts it out of the padded `image`.
    ///
    /// # Errors
    ///
    /// The errors of [`RandomCrop::sample_window`].
    pub fn apply<R: RngCore + ?Sized>(&self, image: ImageRef<'_>, rng: &mut R) -> Result<ImageBuf> {
        let window = self.sample_window(image.height(), image.width(), rng)?;
        self.crop_at(image, window)
    }
}

impl Transform for RandomCrop {
    fn name(&self) -> &'static str {
        "random_crop"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some(RandomCrop::output_size(self, height, width))
    }

    /// Draws and crops exactly as [`RandomCrop::apply`] does.
    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        self.apply(image, rng)
    }
}

impl CropGeometry {
    /// Draws the top row, then the left column, each uniformly over all valid positions.
    pub(crate) fn sample_window<R: RngCore + ?Sized>(&self, rng: &mut R) -> CropWindow {
        let top = uniform_inclusive(rng, self.max_top as u64) as usize;
        let left = uniform_inclusive(rng, self.max_left as u64) as usize;
        CropWindow { top, left, height: self.height, width: self.width }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::key::SampleKey;

    /// Builds a non-square image whose bytes all differ (while fewer than 256).
    fn ramp(height: usize, width: usize, channels: usize) -> Vec<u8> {
        (0..height * width * channels).map(|i| (i % 251) as u8 + 1).collect()
    }

    /// Source index by stepwise mirroring, written apart from `PadMode::source_index`.
    fn naive_source(i: isize, len: usize, mode: PadMode) -> Option<usize> {
        let last = len as isize - 1;
        match mode {
            PadMode::Zero => (0..=last).contains(&i).then_some(i as usize),
            PadMode::Edge => Some(i.max(0).min(last) as usize),
            PadMode::Reflect => {
                let mut j = i;
                while last > 0 && (j < 0 || j > last) {
                    j = if j < 0 { -j } else { 2 * last - j };
                }
                Some(if last == 0 { 0 } else { j as usize })
            }
        }
    }

    fn pad_modes() -> impl Strategy<Value = PadMode> {
        prop_oneof![Just(PadMode::Zero), Just(PadMode::Reflect), Just(PadMode::Edge)]
    }

    proptest! {
        #[test]
        fn crop_matches_naive_padding(
            height in 1usize..10,
            width in 1usize..10,
            channels in prop_oneof![Just(1usize), Just(3usize)],
            padding in 0usize..6,
            crop_height in 1usize..24,
            crop_width in 1usize..24,
            pad_mode in pad_modes(),
            index in 0u64..1000,
        ) {
            let data = ramp(height, width, channels);
            let image = ImageRef::new(&data, height, width, channels).unwrap();
            let crop = RandomCrop::new(crop_height, crop_width, padding, pad_mode);
            let mut rng = SampleKey::new(5, 0, index).rng(0);
            let (padded_height, padded_width) = (height + 2 * padding, width + 2 * padding);

            let result = crop.apply(image, &mut rng);

            if crop_height > padded_height || crop_width > padded_width {
                prop_assert_eq!(result.unwrap_err(), Error::CropTooLarge {
                    crop_height, crop_width, image_height: height, image_width: width,
                    padding, padded_height, padded_width,
                });
                return Ok(());
            }
            let output = result.unwrap();
            let window = crop
                .sample_window(height, width, &mut SampleKey::new(5, 0, index).rng(0))
                .unwrap();
            prop_assert!(window.top + crop_height <= padded_height);
            prop_assert!(window.left + crop_width <= padded_width);
            prop_assert_eq!((output.height(), output.width()), (crop_height, crop_width));
            for y in 0..crop_height {
                for x in 0..crop_width {
                    let sy = naive_source(
                        (window.top + y) as isize - padding as isize, height, pad_mode);
                    let sx = naive_source(
                        (window.left + x) as isize - padding as isize, width, pad_mode);
                    for k in 0..channels {
                        let expected = match (sy, sx) {
                            (Some(sy), Some(sx)) => data[(sy * width + sx) * channels + k],
                            _ => 0,
                        };
                        let found = output.data()[(y * crop_width + x) * channels + k];
                        prop_assert_eq!(found, expected, "pixel ({}, {}) channel {}", y, x, k);
                    }
                }
            }
        }
    }

    #[test]
    fn crop_equal_to_image_is_identity() {
        let data = ramp(1, 5, 3);
        let image = ImageRef::new(&data, 1, 5, 3).unwrap();
        let crop = RandomCrop::input_size(0, PadMode::Reflect);

        let output = crop.apply(image, &mut SampleKey::new(1, 2, 3).rng(0)).unwrap();

        assert_eq!(output.data(), &data[..]);
    }

    #[test]
    fn crop_one_pixel_image_padded() {
        let image = ImageRef::new(&[42], 1, 1, 1).unwrap();
        let edge = RandomCrop::new(3, 2, 1, PadMode::Edge);
        let zero = RandomCrop::new(3, 3, 1, PadMode::Zero);
        let window = CropWindow { top: 0, left: 0, height: 3, width: 3 };

        let edged = edge.apply(image, &mut SampleKey::new(0, 0, 0).rng(0)).unwrap();
        let zeroed = zero.crop_at(image, window).unwrap();

        assert_eq!(edged.data(), &[42; 6]);
        assert_eq!(zeroed.data(), &[0, 0, 0, 0, 42, 0, 0, 0, 0]);
    }

    #[test]
    fn crop_larger_than_padded_image_fails() {
        let crop = RandomCrop::new(5, 3, 1, PadMode::Zero);
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let error = crop.sample_window(2, 7, &mut rng).unwrap_err();

        assert_eq!(
            error.to_string(),
            "crop 5x3 does not fit in a 2x7 image padded by 1 on each side (4x9)"
        );
    }

    #[test]
    fn crop_rejects_zero_size_and_overflow() {
        let zero = RandomCrop::new(0, 3, 1, PadMode::Zero);
        let huge = RandomCrop::new(3, 3, usize::MAX / 2, PadMode::Zero);
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        assert_eq!(
            zero.sample_window(4, 4, &mut rng),
            Err(Error::ZeroCrop { height: 0, width: 3 })
        );
        assert!(matches!(huge.sample_window(4, 4, &mut rng), Err(Error::PaddingOverflow { .. })));
    }

    #[test]
    fn crop_at_rejects_window_past_padding() {
        let data = ramp(4, 6, 1);
        let image = ImageRef::new(&data, 4, 6, 1).unwrap();
        let crop = RandomCrop::new(4, 4, 2, PadMode::Zero);
        let window = CropWindow { top: 5, left: 0, height: 4, width: 4 };

        let error = crop.crop_at(image, window).unwrap_err();

        assert!(matches!(error, Error::WindowOutOfBounds { top: 5, padded_height: 8, .. }));
    }

    #[test]
    fn crop_offsets_cover_all_positions_uniformly() {
        // Padding 4 around 32x32, crop 32x32: 9 x 9 = 81 equally likely windows.
        let crop = RandomCrop::input_size(4, PadMode::Zero);
        let draws_per_cell = 200;
        let mut counts = [[0u32; 9]; 9];

        for index in 0..81 * draws_per_cell {
            let mut rng = SampleKey::new(2024, 0, index as u64).rng(0);
            let window = crop.sample_window(32, 32, &mut rng).unwrap();
            counts[window.top][window.left] += 1;
        }

        // Chi-square with 80 degrees of freedom has mean 80 and standard deviation 12.6, so the
        // bound sits about 5 standard deviations above the mean.
        let expected = f64::from(draws_per_cell);
        let chi_square: f64 = counts
            .iter()
            .flatten()
            .map(|&count| (f64::from(count) - expected).powi(2) / expected)
            .sum();
        assert!(counts.iter().flatten().all(|&count| count > 0), "counts {counts:?}");
        assert!(chi_square < 145.0, "chi-square {chi_square}, counts {counts:?}");
    }

    #[test]
    fn crop_serde_round_trip() {
        let crop = RandomCrop::input_size(4, PadMode::Reflect);

        let json = serde_json::to_string(&crop).unwrap();

        assert_eq!(json, r#"{"height":null,"width":null,"padding":4,"pad_mode":"reflect"}"#);
        assert_eq!(serde_json::from_str::<RandomCrop>(&json).unwrap(), crop);
    }
}
