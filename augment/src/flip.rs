//! Random horizontal flip.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::ImageBuf;
use crate::key::bernoulli;

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

/// Mirrors the columns of `image` in place: pixel (y, x) swaps with (y, width - 1 - x).
pub fn flip_horizontal(image: &mut ImageBuf) {
    let (width, channels) = (image.width(), image.channels());

    for row in image.data_mut().chunks_exact_mut(width * channels) {
        for x in 0..width / 2 {
            let mirror = width - 1 - x;
            for k in 0..channels {
                row.swap(x * channels + k, mirror * channels + k);
            }
        }
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
}
