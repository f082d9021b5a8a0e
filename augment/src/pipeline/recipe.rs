//! A recipe: steps, views and output, as written into a run's config.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::key::SampleKey;
use crate::op::Transform;

use super::fused::FusedPlan;
use super::output::{MeanImage, OutputWriter};
use super::{Output, Step, Views};

/// An augmentation recipe: u8 HWC image in, the f32 CHW values of one or more views out.
///
/// Applying it runs [`steps`](Self::steps) in order, cuts the [`views`](Self::views) of the
/// result, and writes each view through [`output`](Self::output), one after the other:
/// sample output = view 0 CHW, then view 1 CHW, and so on.
///
/// # Randomness
///
/// Step `i` draws from `key.rng(i)`, the ChaCha8 generator of [`SampleKey::rng`];
/// compositions derive their children's generators as [`Step`] states. Views and outputs draw
/// nothing. The output therefore depends only on the recipe, the image and the key: not on
/// the thread, the batch or the order of samples.
///
/// # Serde
///
/// ```json
/// {"name": "cifar",
///  "steps": [{"op": "random_crop", "height": 32, "width": 32, "padding": 4, "pad_mode": "zero"},
///            {"op": "horizontal_flip", "probability": 0.5}],
///  "views": {"kind": "single"},
///  "output": {"kind": "normalize", "mean": [125.307, 122.95, 113.865],
///             "std": [62.993, 62.089, 66.705]}}
/// ```
///
/// `name`, `views` and `output` may be left out (`null`, `single`, `none`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The name the recipe came from ([`Recipe::named`]), or a label of the user's.
    #[serde(default)]
    pub name: Option<String>,
    /// The ops, in order of application.
    pub steps: Vec<Step>,
    /// The views cut from the augmented image.
    #[serde(default)]
    pub views: Views,
    /// The conversion of each view to f32 values.
    #[serde(default)]
    pub output: Output,
}

impl Recipe {
    /// Runs the steps on `image` and returns the u8 HWC views, before the output step: for
    /// previews. Always takes the unfused path, so for recipes that [`apply`](Self::apply)
    /// fuses, the pixels can differ from those `apply` writes (see [`RecipePlan`]).
    ///
    /// # Errors
    ///
    /// The errors of the steps and views.
    pub fn augment(&self, image: ImageRef<'_>, key: SampleKey) -> Result<Vec<ImageBuf>> {
        match self.run_steps(image, key)? {
            Some(augmented) => self.views.cut(augmented.as_image_ref()),
            None => self.views.cut(image),
        }
    }

    /// Runs the steps, each with its generator; `None` when there are no steps.
    pub(crate) fn run_steps(
        &self,
        image: ImageRef<'_>,
        key: SampleKey,
    ) -> Result<Option<ImageBuf>> {
        let mut current: Option<ImageBuf> = None;
        for (position, step) in self.steps.iter().enumerate() {
            let mut rng = key.rng(position as u64);
            match current.as_mut() {
                Some(buffer) => step.transform_in_place(buffer, &mut rng)?,
                None => current = Some(step.transform(image, &mut rng)?),
            }
        }
        Ok(current)
    }

    /// Returns the shorter side below which a smaller input would change what the recipe
    /// computes by more than resampling: the target of a first step that resizes the shorter
    /// side ([`Step::ScaleJitter`]'s largest draw, or [`Step::Resize`] to a shorter side).
    /// A loader may decode a compressed image at a reduced scale as long as its shorter side
    /// stays at or above this value. The draws then stay the same, and only the resampling
    /// source differs. `None` when the first step needs the input at full size.
    pub fn min_input_side(&self) -> Option<usize> {
        match self.steps.first()? {
            Step::ScaleJitter(jitter) => Some(jitter.max_shorter_side),
            Step::Resize(resize) => match resize.size {
                crate::geometry::ResizeTo::ShorterSide(side) => Some(side),
                crate::geometry::ResizeTo::Exact { .. } => None,
            },
            _ => None,
        }
    }

    /// Returns the size `(height, width)` of the augmented image before the views, where it
    /// does not depend on a random draw.
    pub fn augmented_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        // Not `try_fold`: a step of random size makes the size unknown, but a later fixed-size
        // crop makes it known again.
        let mut size = Some((height, width));
        for step in &self.steps {
            size = step.output_size_from(size);
        }
        size
    }

    /// Returns the shape `(channels, height, width)` of each output view for a `height` x
    /// `width` x `channels` input, or `None` where a shape depends on a random draw.
    pub fn output_shapes(
        &self,
        height: usize,
        width: usize,
        channels: usize,
    ) -> Option<Vec<(usize, usize, usize)>> {
        let augmented = self.augmented_size(height, width);
        let shapes = self.views.shapes(augmented)?;
        Some(shapes.into_iter().map(|(h, w)| (channels, h, w)).collect())
    }

    /// Returns `(views, channels, height, width)` for a `height` x `width` x `channels` input,
    /// or `None` where the shape depends on a random draw or the views differ in shape
    /// ([`Views::MultiScale`] without a fixed crop: see [`output_shapes`](Self::output_shapes)).
    pub fn output_shape(
        &self,
        height: usize,
        width: usize,
        channels: usize,
    ) -> Option<(usize, usize, usize, usize)> {
        let shapes = self.output_shapes(height, width, channels)?;
        let &(c, h, w) = shapes.first()?;
        shapes.iter().all(|&shape| shape == (c, h, w)).then_some((shapes.len(), c, h, w))
    }

    /// Returns the f32 count of one sample's output, where fixed: the sum over the views.
    pub fn output_len(&self, height: usize, width: usize, channels: usize) -> Option<usize> {
        let shapes = self.output_shapes(height, width, channels)?;
        Some(shapes.iter().map(|(c, h, w)| c * h * w).sum())
    }

    /// Validates the recipe for images of `channels` channels and prepares its output table
    /// and fused path. `mean_image` is required for [`Output::MeanImage`] and ignored
    /// otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for a missing mean image, and the errors of
    /// [`Normalize::table`](crate::Normalize::table).
    pub fn plan(&self, channels: usize, mean_image: Option<MeanImage>) -> Result<RecipePlan> {
        RecipePlan::new(self, channels, mean_image.as_ref())
    }

    /// Writes the output of `image` for `key` into `out`: each view as f32 CHW, one after
    /// the other. Prepares a [`RecipePlan`] on every call: keep one for many images.
    ///
    /// # Errors
    ///
    /// The errors of [`plan`](Self::plan) and [`RecipePlan::apply`].
    pub fn apply(&self, image: ImageRef<'_>, key: SampleKey, out: &mut [f32]) -> Result<()> {
        self.plan(image.channels(), None)?.apply(image, key, out)
    }
}

/// A [`Recipe`] checked for one channel count, with its output table built and, where the
/// steps allow it, its fused path chosen.
///
/// # Fused path
///
/// The fused path applies to steps of this form: a resize of the shorter side
/// ([`Step::ScaleJitter`], or [`Step::Resize`] to a shorter side), a crop inside the resized
/// image ([`Step::RandomCrop`] without padding, or [`Step::CenterCrop`]), then optionally
/// [`Step::HorizontalFlip`] and [`Step::PcaLighting`]. The views must be [`Views::Single`] and
/// the output per-channel ([`Output::None`] or [`Output::Normalize`]).
///
/// The plan then makes every draw first, with the steps' generators and in their order. It
/// resizes only the source region under the crop window and writes flip, lighting and
/// normalisation in one pass. The filter reads the same source pixels with the same weights up
/// to rounding in the last bits of f64 arithmetic and in the resizer's fixed-point precision,
/// which is chosen per call. That moves a u8 value by 1 at rare pixels: 0.065% of the values
/// of `resnet-imagenet` on 200 keys of a 375 x 500 test image, and none for `eval-center`
/// (measured; the recipes tests bound the share at 1%). Lighting and normalisation are exact.
#[derive(Debug, Clone)]
pub struct RecipePlan {
    recipe: Recipe,
    channels: usize,
    writer: OutputWriter,
    fused: Option<FusedPlan>,
}

impl RecipePlan {
    fn new(recipe: &Recipe, channels: usize, mean_image: Option<&MeanImage>) -> Result<Self> {
        if channels == 0 {
            return Err(Error::ZeroDimension { height: 1, width: 1, channels });
        }
        let writer = OutputWriter::new(&recipe.output, channels, mean_image)?;
        let fused = match (&recipe.views, writer.table()) {
            (Views::Single, Some(table)) => FusedPlan::new(&recipe.steps, table.clone()),
            _ => None,
        };
        Ok(Self { recipe: recipe.clone(), channels, writer, fused })
    }

    /// Returns the recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Returns whether [`apply`](Self::apply) takes the fused path (see [`RecipePlan`]).
    pub fn is_fused(&self) -> bool {
        self.fused.is_some()
    }

    /// Writes the output of `image` for `key` into `out`, as [`Recipe::apply`].
    ///
    /// # Errors
    ///
    /// [`Error::TableChannels`] for an image of another channel count,
    /// [`Error::OutputLength`] when `out.len()` differs from the sample's output length, and
    /// the errors of the steps and views. On error `out` is unchanged.
    pub fn apply(&self, image: ImageRef<'_>, key: SampleKey, out: &mut [f32]) -> Result<()> {
        if image.channels() != self.channels {
            return Err(Error::TableChannels { expected: self.channels, found: image.channels() });
        }
        let (height, width, channels) = (image.height(), image.width(), image.channels());
        if let Some(expected) = self.recipe.output_len(height, width, channels) {
            if out.len() != expected {
                return Err(Error::OutputLength { expected, actual: out.len() });
            }
        }

        if let Some(fused) = &self.fused {
            if let Some(result) = fused.apply(image, key, out) {
                return result;
            }
        }

        let augmented = self.recipe.run_steps(image, key)?;
        let augmented = augmented.as_ref().map_or(image, ImageBuf::as_image_ref);
        match &self.recipe.views {
            Views::Single => self.write_views(&[augmented], out),
            views => {
                let cut = views.cut(augmented)?;
                let refs: Vec<ImageRef<'_>> = cut.iter().map(ImageBuf::as_image_ref).collect();
                self.write_views(&refs, out)
            }
        }
    }

    /// Writes `views` one after the other, after checking every length and shape.
    fn write_views(&self, views: &[ImageRef<'_>], out: &mut [f32]) -> Result<()> {
        let expected: usize = views.iter().map(|view| view.data().len()).sum();
        if out.len() != expected {
            return Err(Error::OutputLength { expected, actual: out.len() });
        }
        for view in views {
            self.writer.check(*view)?;
        }

        let mut rest = out;
        for view in views {
            let (sample, tail) = rest.split_at_mut(view.data().len());
            self.writer.write(*view, sample)?;
            rest = tail;
        }
        Ok(())
    }
}
