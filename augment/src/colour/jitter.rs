//! Colour jitter: random brightness, contrast and saturation in a random order (torchvision
//! `ColorJitter` without hue).

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::{invalid, round_to_u8};
use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::op::{OpRng, Transform};
use crate::sample::{shuffle, uniform_f64};

/// Weights of R, G and B in the grey level, as torchvision 0.26 writes them
/// (`_rgb_to_grayscale_image`; ITU-R BT.601 luma with red written as 0.2989).
const GREY_WEIGHTS: [f32; 3] = [0.2989, 0.587, 0.114];

/// Random brightness, contrast and saturation changes of u8 HWC images, applied in a random
/// order, with torchvision's semantics.
///
/// Each parameter `x` (dimensionless, at least 0) draws a factor uniformly from
/// `[max(0, 1 - x), 1 + x)`. A parameter of 0 turns its change off and draws nothing.
///
/// Draws the order of the three changes first, by [`shuffle`] of
/// `[Brightness, Contrast, Saturation]` (two [`uniform_inclusive`](crate::uniform_inclusive)
/// draws, also when every parameter is 0). Then it draws one [`uniform_f64`] for each enabled
/// change, in application order. torchvision 0.26 draws the permutation first too but draws
/// the factors in the fixed order brightness, contrast, saturation, so the two do not give
/// the same factors for the same seed.
///
/// Contrast and saturation need 1 or 3 channels (see [`adjust_contrast`] and
/// [`adjust_saturation`]); brightness works on any channel count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness range `x`: factor in `[max(0, 1 - x), 1 + x)`. 0 disables it.
    #[serde(default)]
    pub brightness: f32,
    /// Contrast range `x`: factor in `[max(0, 1 - x), 1 + x)`. 0 disables it.
    #[serde(default)]
    pub contrast: f32,
    /// Saturation range `x`: factor in `[max(0, 1 - x), 1 + x)`. 0 disables it.
    #[serde(default)]
    pub saturation: f32,
}

/// One of the three changes of [`ColorJitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Adjustment {
    /// [`adjust_brightness`].
    Brightness,
    /// [`adjust_contrast`].
    Contrast,
    /// [`adjust_saturation`].
    Saturation,
}

/// A drawn change and its factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterStep {
    /// Which change.
    pub adjustment: Adjustment,
    /// Its factor; 1 leaves the image unchanged.
    pub factor: f32,
}

impl JitterStep {
    /// Applies the change to `image` in place.
    ///
    /// # Errors
    ///
    /// The errors of the adjust function called.
    pub fn apply(&self, image: &mut ImageBuf) -> Result<()> {
        match self.adjustment {
            Adjustment::Brightness => adjust_brightness(image, self.factor),
            Adjustment::Contrast => adjust_contrast(image, self.factor),
            Adjustment::Saturation => adjust_saturation(image, self.factor),
        }
    }
}

impl ColorJitter {
    /// Creates a jitter with the three ranges.
    pub fn new(brightness: f32, contrast: f32, saturation: f32) -> Self {
        Self { brightness, contrast, saturation }
    }

    /// Checks that every range is finite and at least 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming the first bad range.
    pub fn validate(&self) -> Result<()> {
        let ranges = [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ];
        for (parameter, value) in ranges {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid("color_jitter", parameter, value, "a finite value at least 0"));
            }
        }
        Ok(())
    }

    /// Draws the order and the factors of the enabled changes, as the type documents.
    ///
    /// # Errors
    ///
    /// The errors of [`ColorJitter::validate`], before any draw.
    pub fn draw<R: RngCore + ?Sized>(&self, rng: &mut R) -> Result<Vec<JitterStep>> {
        self.validate()?;

        let mut order = [Adjustment::Brightness, Adjustment::Contrast, Adjustment::Saturation];
        shuffle(rng, &mut order);

        let mut steps = Vec::with_capacity(3);
        for adjustment in order {
            let range = match adjustment {
                Adjustment::Brightness => self.brightness,
                Adjustment::Contrast => self.contrast,
                Adjustment::Saturation => self.saturation,
            };
            if range > 0.0 {
                let low = (1.0 - f64::from(range)).max(0.0);
                let factor = uniform_f64(rng, low, 1.0 + f64::from(range)) as f32;
                steps.push(JitterStep { adjustment, factor });
            }
        }
        Ok(steps)
    }

    /// Checks that the enabled changes can handle `channels`.
    fn check_channels(&self, channels: usize) -> Result<()> {
        if (self.contrast > 0.0 || self.saturation > 0.0) && channels != 1 && channels != 3 {
            return Err(Error::UnsupportedChannels {
                op: "color_jitter",
                expected: "1 or 3 channels for contrast and saturation",
                found: channels,
            });
        }
        Ok(())
    }
}

impl Transform for ColorJitter {
    fn name(&self) -> &'static str {
        "color_jitter"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let mut out = image.to_buf();
        self.transform_in_place(&mut out, rng)?;
        Ok(out)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        self.validate()?;
        self.check_channels(image.channels())?;

        for step in self.draw(rng)? {
            step.apply(image)?;
        }
        Ok(())
    }
}

/// Scales every value of a u8 HWC image by `factor`: `round(clamp(v * factor, 0, 255))`,
/// computed in f32 (torchvision's blend with a black image). Any channel count.
///
/// torchvision converts the clamped f32 result to uint8 by truncation, so its output can be 1
/// below ours.
///
/// # Errors
///
/// [`Error::InvalidParameter`] when `factor` is negative or not finite; the image is then
/// unchanged.
pub fn adjust_brightness(image: &mut ImageBuf, factor: f32) -> Result<()> {
    check_factor("brightness", factor)?;

    let table: [u8; 256] = std::array::from_fn(|v| round_to_u8(v as f32 * factor));
    apply_table(image.data_mut(), &table);
    Ok(())
}

/// Blends a u8 HWC image with its mean grey level:
/// `round(clamp(factor * v + (1 - factor) * mean, 0, 255))` in f32.
///
/// For 3 channels (R, G, B), `mean` is the mean over pixels of the grey level
/// `floor(0.2989 R + 0.587 G + 0.114 B)`, as torchvision 0.26 computes it on uint8 images. For
/// 1 channel, `mean` is the mean of the values. torchvision truncates the result where we
/// round (a difference of at most 1).
///
/// # Errors
///
/// [`Error::InvalidParameter`] when `factor` is negative or not finite, and
/// [`Error::UnsupportedChannels`] for images with other than 1 or 3 channels. The image is
/// unchanged on error.
pub fn adjust_contrast(image: &mut ImageBuf, factor: f32) -> Result<()> {
    check_factor("contrast", factor)?;
    check_grey_or_rgb("1 or 3 channels for contrast", image.channels())?;

    let pixels = image.height() * image.width();
    let sum: u64 = if image.channels() == 3 {
        image.data().chunks_exact(3).map(|p| u64::from(grey_level(p))).sum()
    } else {
        image.data().iter().map(|&v| u64::from(v)).sum()
    };
    let mean = (sum as f64 / pixels as f64) as f32;

    let table: [u8; 256] =
        std::array::from_fn(|v| round_to_u8(v as f32 * factor + mean * (1.0 - factor)));
    apply_table(image.data_mut(), &table);
    Ok(())
}

/// Blends each pixel of a u8 HWC RGB image with its own grey level `g`:
/// `round(clamp(factor * v + (1 - factor) * g, 0, 255))` per channel in f32, where
/// `g = floor(0.2989 R + 0.587 G + 0.114 B)` as torchvision 0.26 computes it on uint8 images.
/// Factor 0 gives the grey image, 1 the input, above 1 more saturated colours.
///
/// A 1-channel image has no saturation and is left unchanged, as in torchvision and PIL.
/// torchvision truncates the result where we round (a difference of at most 1).
///
/// # Errors
///
/// [`Error::InvalidParameter`] when `factor` is negative or not finite, and
/// [`Error::UnsupportedChannels`] for images with other than 1 or 3 channels. The image is
/// unchanged on error.
pub fn adjust_saturation(image: &mut ImageBuf, factor: f32) -> Result<()> {
    check_factor("saturation", factor)?;
    check_grey_or_rgb("1 or 3 channels for saturation", image.channels())?;
    if image.channels() == 1 {
        return Ok(());
    }

    let grey_weight = 1.0 - factor;
    for pixel in image.data_mut().chunks_exact_mut(3) {
        let grey = f32::from(grey_level(pixel)) * grey_weight;
        for value in pixel.iter_mut() {
            *value = round_to_u8(f32::from(*value) * factor + grey);
        }
    }
    Ok(())
}

/// Returns `floor(0.2989 R + 0.587 G + 0.114 B)` of one RGB pixel, summed in f32 in that order.
#[inline(always)]
fn grey_level(pixel: &[u8]) -> u8 {
    let [r, g, b] = GREY_WEIGHTS;
    let level = f32::from(pixel[0]) * r + f32::from(pixel[1]) * g + f32::from(pixel[2]) * b;
    // The level is in [0, 255), so truncation is the floor.
    level as u8
}

/// Replaces every byte `v` of `data` with `table[v]`.
fn apply_table(data: &mut [u8], table: &[u8; 256]) {
    for value in data {
        *value = table[usize::from(*value)];
    }
}

/// Checks that an adjust factor is finite and at least 0.
fn check_factor(parameter: &'static str, factor: f32) -> Result<()> {
    if !(factor.is_finite() && factor >= 0.0) {
        return Err(invalid("color_jitter", parameter, factor, "a finite factor at least 0"));
    }
    Ok(())
}

/// Checks that an image has 1 or 3 channels; `expected` names the change for the message.
fn check_grey_or_rgb(expected: &'static str, channels: usize) -> Result<()> {
    if channels != 1 && channels != 3 {
        return Err(Error::UnsupportedChannels { op: "color_jitter", expected, found: channels });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SampleKey;

    fn rgb(data: &[u8], height: usize, width: usize) -> ImageBuf {
        ImageBuf::new(data.to_vec(), height, width, 3).unwrap()
    }

    /// A 3x4 RGB image whose values all differ.
    fn sample_image() -> ImageBuf {
        let data: Vec<u8> = (0..36).map(|i| (i * 7 + 3) as u8).collect();
        rgb(&data, 3, 4)
    }

    /// The grey level computed in f64 (torchvision's weights), floored.
    fn naive_grey(p: &[u8]) -> f64 {
        (0.2989 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).floor()
    }

    fn naive_round(value: f64) -> u8 {
        (value.clamp(0.0, 255.0) + 0.5).floor() as u8
    }

    #[test]
    fn brightness_scales_values() {
        let mut image = rgb(&[0, 100, 200, 255, 51, 1], 1, 2);

        adjust_brightness(&mut image, 1.25).unwrap();

        assert_eq!(image.data(), &[0, 125, 250, 255, 64, 1]);
    }

    #[test]
    fn brightness_any_channel_count() {
        let mut image = ImageBuf::new(vec![10, 20, 30, 40], 1, 1, 4).unwrap();

        adjust_brightness(&mut image, 0.5).unwrap();

        assert_eq!(image.data(), &[5, 10, 15, 20]);
    }

    #[test]
    fn contrast_blends_with_mean_grey() {
        let mut image = sample_image();
        let before = image.data().to_vec();
        let mean = before.chunks(3).map(naive_grey).sum::<f64>() / 12.0;

        adjust_contrast(&mut image, 1.7).unwrap();

        for (i, (&v, &out)) in before.iter().zip(image.data()).enumerate() {
            let expected = naive_round(1.7 * f64::from(v) - 0.7 * mean);
            assert!(out.abs_diff(expected) <= 1, "value {i}: {out} vs {expected}");
        }
    }

    #[test]
    fn contrast_grey_image_mean() {
        let mut image = ImageBuf::new(vec![10, 20, 30, 40], 2, 2, 1).unwrap();

        adjust_contrast(&mut image, 0.0).unwrap();

        assert_eq!(image.data(), &[25, 25, 25, 25]);
    }

    #[test]
    fn saturation_blends_with_pixel_grey() {
        let mut image = sample_image();
        let before = image.data().to_vec();

        adjust_saturation(&mut image, 0.3).unwrap();

        for (p, (old, new)) in before.chunks(3).zip(image.data().chunks(3)).enumerate() {
            let grey = naive_grey(old);
            for c in 0..3 {
                let expected = naive_round(0.3 * f64::from(old[c]) + 0.7 * grey);
                assert!(new[c].abs_diff(expected) <= 1, "pixel {p} channel {c}");
            }
        }
    }

    #[test]
    fn saturation_zero_gives_grey() {
        let mut image = rgb(&[255, 255, 255, 200, 10, 30], 1, 2);

        adjust_saturation(&mut image, 0.0).unwrap();

        // torchvision's weights sum to 0.9999, so white becomes 254.
        assert_eq!(image.data(), &[254, 254, 254, 69, 69, 69]);
    }

    #[test]
    fn factor_one_is_identity() {
        let original = sample_image();

        for adjust in [adjust_brightness, adjust_contrast, adjust_saturation] {
            let mut image = original.clone();
            adjust(&mut image, 1.0).unwrap();
            assert_eq!(image, original);
        }
    }

    #[test]
    fn adjust_rejects_bad_input() {
        let mut four = ImageBuf::new(vec![1; 8], 1, 2, 4).unwrap();
        let mut image = sample_image();

        let contrast = adjust_contrast(&mut four, 0.5).unwrap_err();
        let saturation = adjust_saturation(&mut four, 0.5).unwrap_err();
        let negative = adjust_brightness(&mut image, -0.1).unwrap_err();
        let nan = adjust_saturation(&mut image, f32::NAN).unwrap_err();

        assert!(matches!(contrast, Error::UnsupportedChannels { found: 4, .. }));
        assert!(matches!(saturation, Error::UnsupportedChannels { found: 4, .. }));
        assert!(matches!(negative, Error::InvalidParameter { parameter: "brightness", .. }));
        assert!(matches!(nan, Error::InvalidParameter { parameter: "saturation", .. }));
        assert_eq!(image, sample_image());
    }

    #[test]
    fn saturation_leaves_grey_channel() {
        let mut image = ImageBuf::new(vec![3, 99], 1, 2, 1).unwrap();

        adjust_saturation(&mut image, 0.2).unwrap();

        assert_eq!(image.data(), &[3, 99]);
    }

    #[test]
    fn draw_order_then_factors() {
        let jitter = ColorJitter::new(0.4, 0.0, 0.2);
        let mut rng = SampleKey::new(4, 0, 0).rng(0);
        let mut copy = rng.clone();

        let steps = jitter.draw(&mut rng).unwrap();

        let mut order = [Adjustment::Brightness, Adjustment::Contrast, Adjustment::Saturation];
        shuffle(&mut copy, &mut order);
        let enabled: Vec<_> = order.into_iter().filter(|a| *a != Adjustment::Contrast).collect();
        assert_eq!(steps.len(), 2);
        for (step, adjustment) in steps.iter().zip(enabled) {
            let range = if adjustment == Adjustment::Brightness { 0.4 } else { 0.2 };
            let factor = uniform_f64(&mut copy, 1.0 - range, 1.0 + range) as f32;
            assert_eq!(*step, JitterStep { adjustment, factor });
        }
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn jitter_applies_drawn_steps() {
        let jitter = ColorJitter::new(0.4, 0.4, 0.4);
        let mut expected = sample_image();
        for step in jitter.draw(&mut SampleKey::new(5, 0, 0).rng(1)).unwrap() {
            step.apply(&mut expected).unwrap();
        }

        let out = jitter
            .transform(sample_image().as_image_ref(), &mut SampleKey::new(5, 0, 0).rng(1))
            .unwrap();

        assert_eq!(out, expected);
        assert_ne!(out, sample_image());
    }

    #[test]
    fn jitter_checks_channels_first() {
        let jitter = ColorJitter::new(0.0, 0.5, 0.0);
        let mut four = ImageBuf::new(vec![9; 4], 1, 1, 4).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let error = jitter.transform_in_place(&mut four, &mut rng).unwrap_err();
        ColorJitter::new(0.5, 0.0, 0.0).transform_in_place(&mut four, &mut rng).unwrap();

        assert!(matches!(error, Error::UnsupportedChannels { op: "color_jitter", found: 4, .. }));
    }

    #[test]
    fn jitter_serde_defaults() {
        let parsed: ColorJitter = serde_json::from_str(r#"{"brightness": 0.4}"#).unwrap();
        let unknown = serde_json::from_str::<ColorJitter>(r#"{"hue": 0.1}"#).unwrap_err();

        assert_eq!(parsed, ColorJitter::new(0.4, 0.0, 0.0));
        assert!(unknown.to_string().contains("unknown field `hue`"), "{unknown}");
        assert_eq!(
            serde_json::to_string(&ColorJitter::new(0.4, 0.4, 0.4)).unwrap(),
            r#"{"brightness":0.4,"contrast":0.4,"saturation":0.4}"#
        );
    }
}
