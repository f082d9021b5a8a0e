//! Applying a recipe to a batch of same-shape images, serially or with rayon.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fused::CropFlipNormalizePlan;
use crate::image::ImageRef;
use crate::key::SampleKey;
use crate::recipe::CropFlipNormalize;

/// Applies `recipe` to each image with the key at the same position, on the calling thread.
///
/// All images must share one shape. Sample `i` goes to
/// `out[i * n..(i + 1) * n]` as f32 CHW, where `n = recipe.output_len(height, width, channels)`.
/// An empty batch needs an empty `out`.
///
/// # Errors
///
/// [`Error::KeyCount`] when `images` and `keys` differ in length, [`Error::ShapeMismatch`]
/// when an image's shape differs from image 0's, the errors of [`CropFlipNormalize::prepare`],
/// and [`Error::OutputLength`] when `out.len()` is not `images.len() * n`. Every check runs
/// before the first write, so on error `out` is unchanged.
pub fn apply_batch(
    recipe: &CropFlipNormalize,
    images: &[ImageRef<'_>],
    keys: &[SampleKey],
    out: &mut [f32],
) -> Result<()> {
    match prepare_for_batch(recipe, images, keys, out)? {
        Some(plan) => plan.apply_batch(images, keys, out),
        None => Ok(()),
    }
}

/// [`apply_batch`] with one rayon task per sample on the current rayon pool.
///
/// The output is byte-identical to [`apply_batch`] for every pool size, because each sample's
/// random choices come from its own key and each sample writes only its own slice of `out`.
///
/// # Errors
///
/// The same as [`apply_batch`].
pub fn par_apply_batch(
    recipe: &CropFlipNormalize,
    images: &[ImageRef<'_>],
    keys: &[SampleKey],
    out: &mut [f32],
) -> Result<()> {
    match prepare_for_batch(recipe, images, keys, out)? {
        Some(plan) => plan.par_apply_batch(images, keys, out),
        None => Ok(()),
    }
}

/// Prepares the plan for image 0's shape, or returns `None` for an empty batch.
fn prepare_for_batch(
    recipe: &CropFlipNormalize,
    images: &[ImageRef<'_>],
    keys: &[SampleKey],
    out: &[f32],
) -> Result<Option<CropFlipNormalizePlan>> {
    let Some(first) = images.first() else {
        check_lengths(images, keys, out, 0)?;
        return Ok(None);
    };
    recipe.prepare(first.height(), first.width(), first.channels()).map(Some)
}

impl CropFlipNormalizePlan {
    /// Applies the plan to each image with the key at the same position, on the calling
    /// thread. Layout and errors as in [`apply_batch`], with the plan's input shape as the
    /// batch shape.
    ///
    /// # Errors
    ///
    /// [`Error::KeyCount`], [`Error::ShapeMismatch`] or [`Error::OutputLength`]; on error `out`
    /// is unchanged.
    pub fn apply_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &mut [f32],
    ) -> Result<()> {
        self.check_batch(images, keys, out)?;

        let sample_len = self.output_len();
        for ((image, key), sample) in images.iter().zip(keys).zip(out.chunks_exact_mut(sample_len))
        {
            self.write(*image, *key, sample);
        }
        Ok(())
    }

    /// [`CropFlipNormalizePlan::apply_batch`] with one rayon task per sample on the current
    /// rayon pool. The output is byte-identical for every pool size.
    ///
    /// # Errors
    ///
    /// The same as [`CropFlipNormalizePlan::apply_batch`].
    pub fn par_apply_batch(
        &self,
        images: &[ImageRef<'_>],
        keys: &[SampleKey],
        out: &mut [f32],
    ) -> Result<()> {
        self.check_batch(images, keys, out)?;

        let sample_len = self.output_len();
        out.par_chunks_mut(sample_len).zip(images.par_iter().zip(keys.par_iter())).for_each(
            |(sample, (image, key))| {
                self.write(*image, *key, sample);
            },
        );
        Ok(())
    }

    fn check_batch(&self, images: &[ImageRef<'_>], keys: &[SampleKey], out: &[f32]) -> Result<()> {
        let (height, width, channels) = self.input_shape();
        let mismatch = images.iter().position(|image| {
            (image.height(), image.width(), image.channels()) != (height, width, channels)
        });
        if let Some(index) = mismatch {
            let image = &images[index];
            return Err(Error::ShapeMismatch {
                index,
                height,
                width,
                channels,
                found_height: image.height(),
                found_width: image.width(),
                found_channels: image.channels(),
            });
        }
        check_lengths(images, keys, out, self.output_len())
    }
}

fn check_lengths(
    images: &[ImageRef<'_>],
    keys: &[SampleKey],
    out: &[f32],
    sample_len: usize,
) -> Result<()> {
    if images.len() != keys.len() {
        return Err(Error::KeyCount { images: images.len(), keys: keys.len() });
    }
    let expected = images.len() * sample_len;
    if out.len() != expected {
        return Err(Error::OutputLength { expected, actual: out.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crop::RandomCrop;
    use crate::pad::PadMode;

    /// `count` images of one shape whose bytes differ between images and within each image.
    fn batch_data(count: usize, height: usize, width: usize, channels: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                (0..height * width * channels).map(|j| ((i * 53 + j * 29) % 256) as u8).collect()
            })
            .collect()
    }

    fn images<'a>(data: &'a [Vec<u8>], h: usize, w: usize, c: usize) -> Vec<ImageRef<'a>> {
        data.iter().map(|d| ImageRef::new(d, h, w, c).unwrap()).collect()
    }

    fn keys(count: usize, epoch: u64) -> Vec<SampleKey> {
        (0..count as u64).map(|index| SampleKey::new(31, epoch, 1000 + index)).collect()
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    fn run_in_pool(threads: usize, job: impl FnOnce() + Send) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(job);
    }

    #[test]
    fn batch_serial_equals_parallel() {
        let cases = [
            (32, 32, 3, 4, PadMode::Zero),
            (28, 28, 1, 2, PadMode::Reflect),
            (7, 5, 3, 4, PadMode::Edge),
        ];

        for (height, width, channels, padding, pad_mode) in cases {
            let data = batch_data(37, height, width, channels);
            let batch = images(&data, height, width, channels);
            let keys = keys(batch.len(), 3);
            let mut recipe = CropFlipNormalize::cifar(padding, vec![120.0], vec![64.0]);
            recipe.crop = Some(RandomCrop::input_size(padding, pad_mode));
            let len = batch.len() * recipe.output_len(height, width, channels);
            let mut serial = vec![0.0f32; len];
            apply_batch(&recipe, &batch, &keys, &mut serial).unwrap();

            for threads in [1, 2] {
                let mut parallel = vec![f32::NAN; len];
                run_in_pool(threads, || {
                    par_apply_batch(&recipe, &batch, &keys, &mut parallel).unwrap();
                });

                assert_eq!(
                    bits(&parallel),
                    bits(&serial),
                    "{height}x{width}x{channels}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn batch_sample_equals_single_apply() {
        let data = batch_data(5, 9, 6, 3);
        let batch = images(&data, 9, 6, 3);
        let keys = keys(5, 0);
        let recipe = CropFlipNormalize::cifar(2, vec![1.0, 2.0, 3.0], vec![4.0]);
        let sample_len = recipe.output_len(9, 6, 3);
        let mut out = vec![0.0f32; 5 * sample_len];

        apply_batch(&recipe, &batch, &keys, &mut out).unwrap();

        for (i, (image, key)) in batch.iter().zip(&keys).enumerate() {
            let mut single = vec![0.0f32; sample_len];
            recipe.apply(*image, *key, &mut single).unwrap();
            assert_eq!(
                bits(&out[i * sample_len..(i + 1) * sample_len]),
                bits(&single),
                "sample {i}"
            );
        }
    }

    #[test]
    fn batch_epoch_changes_output() {
        let data = batch_data(16, 32, 32, 3);
        let batch = images(&data, 32, 32, 3);
        let recipe = CropFlipNormalize::cifar(4, vec![0.0], vec![1.0]);
        let sample_len = recipe.output_len(32, 32, 3);
        let mut epoch0 = vec![0.0f32; 16 * sample_len];
        let mut epoch1 = vec![0.0f32; 16 * sample_len];

        apply_batch(&recipe, &batch, &keys(16, 0), &mut epoch0).unwrap();
        apply_batch(&recipe, &batch, &keys(16, 1), &mut epoch1).unwrap();

        let changed = epoch0
            .chunks_exact(sample_len)
            .zip(epoch1.chunks_exact(sample_len))
            .filter(|(a, b)| bits(a) != bits(b))
            .count();
        assert!(changed >= 14, "only {changed} of 16 samples changed between epochs");
    }

    #[test]
    fn batch_empty_needs_empty_output() {
        let recipe = CropFlipNormalize::eval(vec![0.0], vec![1.0]);

        assert_eq!(apply_batch(&recipe, &[], &[], &mut []), Ok(()));
        assert_eq!(
            par_apply_batch(&recipe, &[], &keys(1, 0), &mut []),
            Err(Error::KeyCount { images: 0, keys: 1 })
        );
    }

    #[test]
    fn batch_rejects_mismatches_before_writing() {
        let data = batch_data(3, 4, 4, 1);
        let other = vec![0u8; 8];
        let mut batch = images(&data, 4, 4, 1);
        let recipe = CropFlipNormalize::cifar(1, vec![0.0], vec![1.0]);
        let mut out = vec![9.0f32; 3 * 16];

        let short_keys = apply_batch(&recipe, &batch, &keys(2, 0), &mut out).unwrap_err();
        let short_out = par_apply_batch(&recipe, &batch, &keys(3, 0), &mut out[..47]).unwrap_err();
        batch[2] = ImageRef::new(&other, 2, 4, 1).unwrap();
        let shape = par_apply_batch(&recipe, &batch, &keys(3, 0), &mut out).unwrap_err();

        assert_eq!(short_keys, Error::KeyCount { images: 3, keys: 2 });
        assert_eq!(short_out, Error::OutputLength { expected: 48, actual: 47 });
        assert_eq!(shape.to_string(), "batch image 2 has shape 2x4x1 but the batch shape is 4x4x1");
        assert!(out.iter().all(|&v| v == 9.0));
    }
}
