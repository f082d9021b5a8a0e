//! The crop, flip and normalise recipe used by the loaders, as written into a run's config.

use serde::{Deserialize, Serialize};

use crate::crop::RandomCrop;
use crate::error::Result;
use crate::flip::HorizontalFlip;
use crate::fused::CropFlipNormalizePlan;
use crate::image::ImageRef;
use crate::key::SampleKey;
use crate::normalize::Normalize;
use crate::pad::PadMode;

/// An optional random crop, then an optional horizontal flip, then normalisation: u8 HWC in,
/// f32 CHW out.
///
/// Randomness: the crop draws from `key.rng(CropFlipNormalize::CROP_OP)` (position 0) and the
/// flip from `key.rng(CropFlipNormalize::FLIP_OP)` (position 1), whether or not the other op
/// is present. The output therefore depends only on the image, the recipe and the key.
///
/// The output equals, bit for bit, running [`RandomCrop::apply`], [`HorizontalFlip::apply`]
/// and [`Normalize::apply`] one after the other with those generators; [`apply`](Self::apply)
/// does the three in one pass over the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropFlipNormalize {
    /// Pad and crop; `None` keeps the whole image.
    pub crop: Option<RandomCrop>,
    /// Random horizontal flip; `None` never flips.
    pub flip: Option<HorizontalFlip>,
    /// Per-channel normalisation, 0..255 units.
    pub normalize: Normalize,
}

impl CropFlipNormalize {
    /// Op position of the crop: its generator is `key.rng(CROP_OP)`.
    pub const CROP_OP: u64 = 0;
    /// Op position of the flip: its generator is `key.rng(FLIP_OP)`.
    pub const FLIP_OP: u64 = 1;

    /// Creates the CIFAR training recipe: zero-pad by `padding` and crop back to the input size, flip
    /// with probability 0.5, normalise with `mean` and `std` (0..255 units).
    pub fn cifar(padding: usize, mean: Vec<f32>, std: Vec<f32>) -> Self {
        Self {
            crop: Some(RandomCrop::input_size(padding, PadMode::Zero)),
            flip: Some(HorizontalFlip::new(0.5)),
            normalize: Normalize::new(mean, std),
        }
    }

    /// Creates the evaluation recipe: normalise only, no randomness.
    pub fn eval(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Self { crop: None, flip: None, normalize: Normalize::new(mean, std) }
    }

    /// Returns the output shape `(channels, height, width)` for a `height` x `width` x
    /// `channels` input.
    pub fn output_shape(
        &self,
        height: usize,
        width: usize,
        channels: usize,
    ) -> (usize, usize, usize) {
        let (out_height, out_width) = match &self.crop {
            Some(crop) => crop.output_size(height, width),
            None => (height, width),
        };
        (channels, out_height, out_width)
    }

    /// Returns the f32 count of one output sample (CHW) for a `height` x `width` x `channels`
    /// input. Computed without validation: [`prepare`](Self::prepare) reports a crop that
    /// does not fit.
    pub fn output_len(&self, height: usize, width: usize, channels: usize) -> usize {
        let (channels, out_height, out_width) = self.output_shape(height, width, channels);
        channels * out_height * out_width
    }

    /// Validates the recipe for one input shape and builds the normalisation lookup table.
    ///
    /// Keep the plan to apply the recipe to many images: this is the only step that allocates.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroDimension`](crate::Error::ZeroDimension) for an empty shape, the crop
    /// errors of [`RandomCrop::sample_window`], the probability error of
    /// [`HorizontalFlip::validate`] and the parameter errors of [`Normalize::table`].
    pub fn prepare(
        &self,
        height: usize,
        width: usize,
        channels: usize,
    ) -> Result<CropFlipNormalizePlan> {
        CropFlipNormalizePlan::new(self, height, width, channels)
    }

    /// Writes the augmented `image` for `key` into `out` as f32 CHW,
    /// `out[(k * out_height + y) * out_width + x]`.
    ///
    /// Prepares a plan on every call, which builds a 256-entry table per channel. To process
    /// many images, call [`prepare`](Self::prepare) once or use
    /// [`apply_batch`](crate::apply_batch).
    ///
    /// # Errors
    ///
    /// The errors of [`prepare`](Self::prepare), and
    /// [`Error::OutputLength`](crate::Error::OutputLength) when `out.len()` differs from
    /// [`output_len`](Self::output_len). On error `out` is unchanged.
    pub fn apply(&self, image: ImageRef<'_>, key: SampleKey, out: &mut [f32]) -> Result<()> {
        let plan = self.prepare(image.height(), image.width(), image.channels())?;
        plan.apply(image, key, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEAN: [f32; 3] = [125.3, 123.0, 113.9];
    const STD: [f32; 3] = [63.0, 62.1, 66.7];

    #[test]
    fn recipe_cifar_fields() {
        let recipe = CropFlipNormalize::cifar(4, MEAN.to_vec(), STD.to_vec());

        assert_eq!(recipe.crop, Some(RandomCrop::input_size(4, PadMode::Zero)));
        assert_eq!(recipe.flip, Some(HorizontalFlip::new(0.5)));
        assert_eq!(recipe.output_shape(32, 30, 3), (3, 32, 30));
        assert_eq!(recipe.output_len(32, 30, 3), 3 * 32 * 30);
    }

    #[test]
    fn recipe_fixed_crop_output_len() {
        let mut recipe = CropFlipNormalize::eval(vec![0.0], vec![1.0]);
        recipe.crop = Some(RandomCrop::new(24, 20, 0, PadMode::Edge));

        assert_eq!(recipe.output_shape(32, 32, 1), (1, 24, 20));
        assert_eq!(recipe.output_len(32, 32, 1), 480);
    }

    #[test]
    fn recipe_serde_round_trip() {
        let recipe = CropFlipNormalize::cifar(4, MEAN.to_vec(), STD.to_vec());

        let json = serde_json::to_string(&recipe).unwrap();
        let back: CropFlipNormalize = serde_json::from_str(&json).unwrap();

        assert_eq!(back, recipe);
        assert!(json.contains(r#""flip":{"probability":0.5}"#), "{json}");
    }

    #[test]
    fn recipe_serde_rejects_unknown_field() {
        let json = r#"{"crop":null,"flip":null,"normalize":{"mean":[0],"std":[1]},"blur":1}"#;

        let error = serde_json::from_str::<CropFlipNormalize>(json).unwrap_err();

        assert!(error.to_string().contains("unknown field `blur`"), "{error}");
    }

    #[test]
    fn recipe_eval_is_plain_normalize() {
        let data: Vec<u8> = (0..4 * 6 * 3).map(|i| (i * 7) as u8).collect();
        let image = ImageRef::new(&data, 4, 6, 3).unwrap();
        let recipe = CropFlipNormalize::eval(MEAN.to_vec(), STD.to_vec());
        let mut fused = vec![0.0f32; recipe.output_len(4, 6, 3)];
        let mut plain = vec![0.0f32; 4 * 6 * 3];

        recipe.apply(image, SampleKey::new(1, 1, 1), &mut fused).unwrap();
        recipe.normalize.apply(image, &mut plain).unwrap();

        assert_eq!(fused, plain);
    }
}
