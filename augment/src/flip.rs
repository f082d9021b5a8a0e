//! Random horizontal and vertical flips.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::key::bernoulli;
use crate::op::{OpRng, Transform};

/// Mirrors the columns of a u8 HWC image with probability `probability`. The channel order
/// inside each pixel is kept.
///
/// The decision is one [`bernoulli`] draw from the generator passed in (in a
/// [`crate::CropFlipNormalize`] recipe, `SampleKey::rng(1)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HorizontalFlip {
    /// Chance of flipping, in `[0, 1]`.
    pub probability: f64,
}

impl HorizontalFlip {
    /// Creates a flip with the given chance, in `[0, 1]`.
    pub fn new(probability: f64) -> Self {
        Self { probability }
    }

    /// Checks that the probability is finite and in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProbability`] otherwise.
    pub fn validate(&self) -> Result<()> {
        if (0.0..=1.0).contains(&self.probability) {
            Ok(())
        } else {
            Err(Error::InvalidProbability { value: self.probability })
        }
    }

    /// Draws whether to flip.
    ///
    /// # Errors
    ///
    /// The errors of [`HorizontalFlip::validate`].
    pub fn decide<R: RngCore + ?Sized>(&self, rng: &mut R) -> Result<bool> {
        self.validate()?;
        Ok(bernoulli(rng, self.probability))
    }

    /// Draws whether to flip, flips `image` in place if so and returns the decision.
    ///
    /// # Errors
    ///
    /// The errors of [`HorizontalFlip::validate`], which leave the image unchanged.
    pub fn apply<R: RngCore + ?Sized>(&self, image: &mut ImageBuf, rng: &mut R) -> Result<bool> {
        let flipped = self.decide(rng)?;
        if flipped {
            flip_horizontal(image);
        }
        Ok(flipped)
    }
}

impl Transform for HorizontalFlip {
    fn name(&self) -> &'static str {
        "horizontal_flip"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    /// Writes the mirrored rows straight into the new image instead of copying and flipping.
    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let (height, width, channels) = (image.height(), image.width(), image.channels());
        if !self.decide(rng)? {
            return ImageBuf::new(image.data().to_vec(), height, width, channels);
        }

        // Copying first and mirroring in place is faster than mirroring into a zeroed buffer:
        // a large `vec![0; n]` comes from calloc, whose fresh pages fault in one by one.
        let mut out = image.to_buf();
        flip_horizontal(&mut out);
        Ok(out)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        self.apply(image, rng).map(|_| ())
    }
}

/// Mirrors the columns of `image` in place: pixel (y, x) swaps with (y, width - 1 - x).
///
/// Each row is copied to a scratch row and written back mirrored, with SIMD byte shuffles for
/// 3-channel images where the CPU has them (SSSE3 on x86-64, detected at run time).
pub fn flip_horizontal(image: &mut ImageBuf) {
    let (width, channels) = (image.width(), image.channels());
    let stride = width * channels;
    let mut scratch = vec![0u8; stride];

    for row in image.data_mut().chunks_exact_mut(stride) {
        scratch.copy_from_slice(row);
        mirror_row(&scratch, row, channels);
    }
}

/// Writes the pixels of `source` into `target` in reverse order, keeping each pixel's channels.
/// Both rows hold the same whole number of `channels`-byte pixels.
fn mirror_row(source: &[u8], target: &mut [u8], channels: usize) {
    debug_assert_eq!(source.len(), target.len());
    match channels {
        1 => {
            for (t, s) in target.iter_mut().zip(source.iter().rev()) {
                *t = *s;
            }
        }
        3 => mirror_row_rgb(source, target),
        4 => {
            let (source, _) = source.as_chunks::<4>();
            let (target, _) = target.as_chunks_mut::<4>();
            for (t, s) in target.iter_mut().zip(source.iter().rev()) {
                *t = *s;
            }
        }
        _ => {
            let pixels = source.chunks_exact(channels).rev();
            for (t, s) in target.chunks_exact_mut(channels).zip(pixels) {
                t.copy_from_slice(s);
            }
        }
    }
}

fn mirror_row_rgb(source: &[u8], target: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU supports SSSE3 (checked on the line above), which is the only
        // requirement of a `target_feature` function, and its body is safe code.
        unsafe { mirror_row_rgb_ssse3(source, target) };
        return;
    }
    mirror_row_rgb_blocks(source, target);
}

/// [`mirror_row_rgb_blocks`] compiled with SSSE3, where each 16-byte block shuffle becomes one
/// `pshufb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
fn mirror_row_rgb_ssse3(source: &[u8], target: &mut [u8]) {
    mirror_row_rgb_blocks(source, target);
}

/// Mirrors a row of 3-byte pixels five pixels at a time: a 16-byte load that ends at the last
/// byte of five source pixels (its first byte belongs to the pixel before), a constant byte
/// shuffle, and a 16-byte store whose last byte the next block overwrites. The last 5 or fewer
/// pixels, where those 16-byte accesses would leave the row, go one by one.
#[inline(always)]
fn mirror_row_rgb_blocks(source: &[u8], target: &mut [u8]) {
    let width = source.len() / 3;
    let mut x = 0;

    while x + 6 <= width {
        // Byte 0 of the block is the last byte of source pixel width - 6 - x.
        let start = 3 * (width - 5 - x) - 1;
        let block: &[u8; 16] = source[start..start + 16].try_into().expect("16 bytes");
        let mirrored: [u8; 16] = [
            block[13], block[14], block[15], block[10], block[11], block[12], block[7], block[8],
            block[9], block[4], block[5], block[6], block[1], block[2], block[3], block[0],
        ];
        target[3 * x..3 * x + 16].copy_from_slice(&mirrored);
        x += 5;
    }

    for x in x..width {
        let s = 3 * (width - 1 - x);
        target[3 * x..3 * x + 3].copy_from_slice(&source[s..s + 3]);
    }
}

/// Mirrors the rows of a u8 HWC image with probability `probability`: row `y` becomes row
/// `height - 1 - y`.
///
/// The decision is one [`bernoulli`] draw from the generator passed in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerticalFlip {
    /// Chance of flipping, in `[0, 1]`.
    pub probability: f64,
}

impl VerticalFlip {
    /// Creates a flip with the given chance, in `[0, 1]`.
    pub fn new(probability: f64) -> Self {
        Self { probability }
    }

    /// Draws whether to flip.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProbability`] for a probability outside `[0, 1]` or not finite.
    pub fn decide<R: RngCore + ?Sized>(&self, rng: &mut R) -> Result<bool> {
        HorizontalFlip::new(self.probability).decide(rng)
    }

    /// Draws whether to flip, flips `image` in place if so and returns the decision.
    ///
    /// # Errors
    ///
    /// The errors of [`VerticalFlip::decide`], which leave the image unchanged.
    pub fn apply<R: RngCore + ?Sized>(&self, image: &mut ImageBuf, rng: &mut R) -> Result<bool> {
        let flipped = self.decide(rng)?;
        if flipped {
            flip_vertical(image);
        }
        Ok(flipped)
    }
}

impl Transform for VerticalFlip {
    fn name(&self) -> &'static str {
        "vertical_flip"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let (height, width, channels) = (image.height(), image.width(), image.channels());
        if !self.decide(rng)? {
            return ImageBuf::new(image.data().to_vec(), height, width, channels);
        }

        let mut data = Vec::with_capacity(image.data().len());
        for row in image.data().chunks_exact(width * channels).rev() {
            data.extend_from_slice(row);
        }
        ImageBuf::new(data, height, width, channels)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        self.apply(image, rng).map(|_| ())
    }
}

/// Mirrors the rows of `image` in place: row `y` swaps with row `height - 1 - y`.
pub fn flip_vertical(image: &mut ImageBuf) {
    let (height, stride) = (image.height(), image.width() * image.channels());
    let (top, bottom) = image.data_mut().split_at_mut(height / 2 * stride);
    // With an odd height the middle row leads `bottom` and stays in place.
    let bottom = &mut bottom[(height % 2) * stride..];

    for (upper, lower) in top.chunks_exact_mut(stride).zip(bottom.chunks_exact_mut(stride).rev()) {
        upper.swap_with_slice(lower);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SampleKey;

    #[test]
    fn flip_mirrors_columns_keeps_channels() {
        // 2 rows x 3 columns x 2 channels.
        let data = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut image = ImageBuf::new(data, 2, 3, 2).unwrap();

        flip_horizontal(&mut image);

        assert_eq!(image.data(), &[5, 6, 3, 4, 1, 2, 11, 12, 9, 10, 7, 8]);
    }

    #[test]
    fn flip_twice_is_identity() {
        let data: Vec<u8> = (0..4 * 5).collect();
        let mut image = ImageBuf::new(data.clone(), 4, 5, 1).unwrap();

        flip_horizontal(&mut image);
        flip_horizontal(&mut image);

        assert_eq!(image.data(), &data[..]);
    }

    #[test]
    fn flip_rate_near_probability() {
        let flip = HorizontalFlip::new(0.5);
        let trials = 10_000;

        let flips = (0..trials)
            .filter(|&index| flip.decide(&mut SampleKey::new(99, 0, index).rng(1)).unwrap())
            .count();

        // Binomial(10000, 0.5) has mean 5000 and standard deviation 50. The bound is 5 of them.
        assert!((4750..=5250).contains(&flips), "{flips} flips in {trials}");
    }

    #[test]
    fn flip_rejects_bad_probability() {
        let mut rng = SampleKey::new(0, 0, 0).rng(1);

        for value in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let error = HorizontalFlip::new(value).decide(&mut rng).unwrap_err();

            assert!(matches!(error, Error::InvalidProbability { .. }), "{value}");
        }
    }

    #[test]
    fn flip_apply_reports_decision() {
        let data: Vec<u8> = (0..6).collect();
        let mut always = ImageBuf::new(data.clone(), 1, 6, 1).unwrap();
        let mut never = ImageBuf::new(data.clone(), 1, 6, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(1);

        assert!(HorizontalFlip::new(1.0).apply(&mut always, &mut rng).unwrap());
        assert!(!HorizontalFlip::new(0.0).apply(&mut never, &mut rng).unwrap());
        assert_eq!(always.data(), &[5, 4, 3, 2, 1, 0]);
        assert_eq!(never.data(), &data[..]);
    }

    /// Mirrors by index arithmetic, written apart from the block code.
    fn naive_mirror(data: &[u8], width: usize, channels: usize) -> Vec<u8> {
        let stride = width * channels;
        let mut out = data.to_vec();
        for (y, row) in out.chunks_exact_mut(stride).enumerate() {
            for x in 0..width {
                for k in 0..channels {
                    row[x * channels + k] = data[y * stride + (width - 1 - x) * channels + k];
                }
            }
        }
        out
    }

    #[test]
    fn flip_matches_naive_all_widths() {
        for channels in 1..=5 {
            for width in 1..40 {
                let data: Vec<u8> = (0..2 * width * channels).map(|i| (i % 256) as u8).collect();
                let mut image = ImageBuf::new(data.clone(), 2, width, channels).unwrap();

                flip_horizontal(&mut image);

                let expected = naive_mirror(&data, width, channels);
                assert_eq!(image.data(), &expected[..], "width {width} channels {channels}");
            }
        }
    }

    #[test]
    fn flip_transform_equals_apply() {
        let data: Vec<u8> = (0..3 * 17 * 3).map(|i| (i * 5 % 256) as u8).collect();
        let image = ImageBuf::new(data, 3, 17, 3).unwrap();

        for index in 0..8 {
            let rng = || SampleKey::new(0, 0, index).rng(1);
            let (horizontal, vertical) = (HorizontalFlip::new(0.5), VerticalFlip::new(0.5));
            let (mut h_in_place, mut v_in_place) = (image.clone(), image.clone());

            horizontal.transform_in_place(&mut h_in_place, &mut rng()).unwrap();
            vertical.transform_in_place(&mut v_in_place, &mut rng()).unwrap();

            let h_copy = horizontal.transform(image.as_image_ref(), &mut rng()).unwrap();
            let v_copy = vertical.transform(image.as_image_ref(), &mut rng()).unwrap();
            assert_eq!(h_copy, h_in_place, "horizontal, index {index}");
            assert_eq!(v_copy, v_in_place, "vertical, index {index}");
        }
    }

    #[test]
    fn vertical_flip_reverses_rows() {
        for height in 1..6 {
            let data: Vec<u8> = (0..height * 2).map(|i| i as u8).collect();
            let mut image = ImageBuf::new(data.clone(), height, 1, 2).unwrap();

            flip_vertical(&mut image);

            let expected: Vec<u8> = data.chunks(2).rev().flatten().copied().collect();
            assert_eq!(image.data(), &expected[..], "height {height}");
        }
    }

    #[test]
    fn vertical_flip_rejects_bad_probability() {
        let mut image = ImageBuf::new(vec![1, 2], 2, 1, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(1);

        let error = VerticalFlip::new(2.0).apply(&mut image, &mut rng).unwrap_err();

        assert_eq!(error, Error::InvalidProbability { value: 2.0 });
        assert_eq!(image.data(), &[1, 2]);
    }
}
