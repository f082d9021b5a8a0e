//! A recipe applied to a batch of images, serially or with rayon.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::image::ImageRef;
use crate::key::SampleKey;

use super::output::MeanImage;
use super::{Recipe, RecipePlan};

impl Recipe {
    /// Applies the recipe to each image with the key at the same position, on the calling
    /// thread. Sample `i` goes to `out[i * n..(i + 1) * n]`, where `n` is the fixed
    /// [`output_len`](Self::output_len) that every image must share. Images may differ in
    /// height and width.
    ///
    /// # Errors
    ///
    /// The errors of [`plan`](Self::plan) (for image 0's channel count) and
    /// [`RecipePlan::apply_batch`].
    pub fn apply_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &mut [f32],
    ) -> Result<()> {
        let channels = images.first().map_or(1, ImageRef::channels);
        self.plan(channels, None)?.apply_batch(images, keys, out)
    }

    /// [`apply_batch`](Self::apply_batch) with one rayon task per sample on the current
    /// rayon pool. The output is byte-identical to `apply_batch` for every pool size.
    ///
    /// # Errors
    ///
    /// The same as [`apply_batch`](Self::apply_batch).
    pub fn par_apply_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &mut [f32],
    ) -> Result<()> {
        let channels = images.first().map_or(1, ImageRef::channels);
        self.plan(channels, None)?.par_apply_batch(images, keys, out)
    }

    /// [`apply_batch`](Self::apply_batch) for [`Output::MeanImage`](super::Output::MeanImage)
    /// recipes, with the mean image to subtract.
    ///
    /// # Errors
    ///
    /// The same as [`apply_batch`](Self::apply_batch).
    pub fn apply_batch_with_mean(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        mean_image: MeanImage,
        out: &mut [f32],
    ) -> Result<()> {
        let channels = images.first().map_or(1, ImageRef::channels);
        self.plan(channels, Some(mean_image))?.apply_batch(images, keys, out)
    }
}

impl RecipePlan {
    /// Applies the plan to each image with the key at the same position, on the calling
    /// thread; layout as in [`Recipe::apply_batch`]. An empty batch needs an empty `out`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyCount`] when `images` and `keys` differ in length,
    /// [`Error::TableChannels`] for an image of another channel count,
    /// [`Error::InvalidParameter`] when an image's output length is not fixed,
    /// [`Error::ShapeMismatch`] when it differs from image 0's, [`Error::OutputLength`] when
    /// `out.len()` is not `images.len() * n`. These checks run before the first write. A step
    /// error in sample `i` returns after the samples before `i` are written.
    pub fn apply_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &mut [f32],
    ) -> Result<()> {
        let sample_len = self.check_batch(images, keys, out)?;
        if sample_len == 0 {
            return Ok(());
        }

        for ((image, key), sample) in images.iter().zip(keys).zip(out.chunks_exact_mut(sample_len))
        {
            self.apply(*image, *key, sample)?;
        }
        Ok(())
    }

    /// [`apply_batch`](Self::apply_batch) with one rayon task per sample on the current rayon
    /// pool. Byte-identical to `apply_batch` for every pool size, because each sample draws
    /// from its own key and writes only its own slice. Where samples fail, every other sample
    /// is still written and the error of the lowest failing index is returned.
    ///
    /// # Errors
    ///
    /// The same as [`apply_batch`](Self::apply_batch).
    pub fn par_apply_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &mut [f32],
    ) -> Result<()> {
        let sample_len = self.check_batch(images, keys, out)?;
        if sample_len == 0 {
            return Ok(());
        }

        let results: Vec<Result<()>> = out
            .par_chunks_mut(sample_len)
            .zip(images.par_iter().zip(keys.par_iter()))
            .map(|(sample, (image, key))| self.apply(*image, *key, sample))
            .collect();
        results.into_iter().collect()
    }

    /// Checks the batch and returns the per-sample output length (0 for an empty batch).
    fn check_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &[f32],
    ) -> Result<usize> {
        if images.len() != keys.len() {
            return Err(Error::KeyCount { images: images.len(), keys: keys.len() });
        }
        let Some(first) = images.first() else {
            if !out.is_empty() {
                return Err(Error::OutputLength { expected: 0, actual: out.len() });
            }
            return Ok(0);
        };

        let recipe = self.recipe();
        let sample_len = |image: &ImageRef<'_>| {
            recipe.output_len(image.height(), image.width(), image.channels())
        };
        let Some(expected_len) = sample_len(first) else {
            return Err(Error::InvalidParameter {
                op: "recipe",
                parameter: "steps",
                value: format!("{:?}", recipe.name),
                expected: "a recipe whose output size does not depend on random draws".into(),
            });
        };
        for (index, image) in images.iter().enumerate() {
            if image.channels() != first.channels() {
                return Err(Error::TableChannels {
                    expected: first.channels(),
                    found: image.channels(),
                });
            }
            if sample_len(image) != Some(expected_len) {
                return Err(Error::ShapeMismatch {
                    index,
                    height: first.height(),
                    width: first.width(),
                    channels: first.channels(),
                    found_height: image.height(),
                    found_width: image.width(),
                    found_channels: image.channels(),
                });
            }
        }

        let expected = images.len() * expected_len;
        if out.len() != expected {
            return Err(Error::OutputLength { expected, actual: out.len() });
        }
        Ok(expected_len)
    }
}
