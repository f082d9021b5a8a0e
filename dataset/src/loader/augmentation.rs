//! The per-record work of a loader: decoding, augmentation and writing the output values.

use expanse_augment::pipeline::{Output, Recipe, RecipePlan};
use expanse_augment::{CropFlipNormalize, CropFlipNormalizePlan, SampleKey};

use super::decode::{decode, SCRATCH};
use super::source::{Record, SampleSource};
use crate::{Error, Result};

/// The augmentation a loader applies to every sample.
///
/// In JSON (a run's `config.json`) it is the recipe or crop-flip-normalise object itself.
/// The fields decide which: a recipe has `steps`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Augmentation {
    /// Any [`Recipe`] whose output has one shape for every record (it ends in a fixed-size
    /// crop, or the records share one shape).
    Recipe(Recipe),
    /// The fused crop, flip and normalisation of fixed-shape records (CIFAR, MNIST), faster
    /// than the equivalent recipe for tiny images.
    CropFlipNormalize(CropFlipNormalize),
}

impl From<Recipe> for Augmentation {
    fn from(recipe: Recipe) -> Self {
        Augmentation::Recipe(recipe)
    }
}

impl From<CropFlipNormalize> for Augmentation {
    fn from(op: CropFlipNormalize) -> Self {
        Augmentation::CropFlipNormalize(op)
    }
}

/// Memory order of each sample's values in a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Channels, then rows, then columns (PyTorch's default).
    #[default]
    Nchw,
    /// Rows, then columns, then channels: PyTorch's `channels_last` memory format, which
    /// convolutions on GPUs and oneDNN prefer.
    Nhwc,
}

/// The element type of a batch's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    /// The recipe's f32 output (normalised, as a rule).
    #[default]
    F32,
    /// The augmented u8 pixels, a quarter of the bytes to move to a GPU, which then converts
    /// and normalises them (see [`super::Loader::with_u8_output`]).
    U8,
}

/// The output shape of one sample: `views` images of `channels` x `height` x `width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleShape {
    /// Views per sample (10 for ten-crop evaluation, else 1).
    pub views: usize,
    /// Channels of each view.
    pub channels: usize,
    /// Rows of each view.
    pub height: usize,
    /// Columns of each view.
    pub width: usize,
}

impl SampleShape {
    /// Number of `f32` values of one view.
    pub fn view_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of `f32` values of one sample (all its views).
    pub fn len(&self) -> usize {
        self.views * self.view_len()
    }

    /// Returns whether a sample has no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An [`Augmentation`] prepared for one source.
pub(super) enum Prepared {
    Recipe {
        plan: Box<RecipePlan>,
        /// Shorter side a JPEG may be reduced to while decoding (`usize::MAX`: full size).
        min_side: usize,
    },
    Fixed(CropFlipNormalizePlan),
}

impl Prepared {
    /// Prepares `augmentation` for `source`, whose record 0 sets the sample shape.
    pub(super) fn new<S: SampleSource>(
        source: &S,
        augmentation: Augmentation,
        reduced_decode: bool,
    ) -> Result<(Self, SampleShape)> {
        let first = source.record(0)?;
        let (height, width, channels) = (first.height, first.width, first.channels);
        match augmentation {
            Augmentation::Recipe(recipe) => {
                let Some((views, channels, out_height, out_width)) =
                    recipe.output_shape(height, width, channels)
                else {
                    return Err(Error::InvalidArgument(format!(
                        "recipe {} gives outputs whose shape depends on the image or a random \
                         draw (first record {height}x{width}x{channels}); a batch needs one \
                         shape: end the steps with a fixed-size crop",
                        recipe_label(&recipe)
                    )));
                };
                if source.fixed_shape().is_none() {
                    // Records differ in size: the output must not follow the input's size.
                    let other = recipe.output_shape(height * 2 + 1, width * 2 + 3, channels);
                    if other != Some((views, channels, out_height, out_width)) {
                        let probe = match other {
                            Some((_, _, h, w)) => format!("{h}x{w}"),
                            None => "a random size".to_string(),
                        };
                        return Err(Error::InvalidArgument(format!(
                            "recipe {} gives records of different sizes outputs of different \
                             shapes ({out_height}x{out_width} for the first record, {probe} for \
                             a {}x{} one); a batch needs one shape: end the steps with a \
                             fixed-size crop",
                            recipe_label(&recipe),
                            height * 2 + 1,
                            width * 2 + 3,
                        )));
                    }
                }
                let min_side = match recipe.min_input_side() {
                    Some(side) if reduced_decode => side,
                    _ => usize::MAX,
                };
                let plan = Box::new(recipe.plan(channels, None)?);
                let shape = SampleShape { views, channels, height: out_height, width: out_width };
                Ok((Prepared::Recipe { plan, min_side }, shape))
            }
            Augmentation::CropFlipNormalize(op) => {
                let plan = op.prepare(height, width, channels)?;
                let (channels, height, width) = plan.output_shape();
                Ok((Prepared::Fixed(plan), SampleShape { views: 1, channels, height, width }))
            }
        }
    }

    /// Decodes and augments record `index` of `source` into `out` (one sample's values, in
    /// `layout`).
    pub(super) fn apply<S: SampleSource>(
        &self,
        source: &S,
        index: usize,
        key: SampleKey,
        shape: SampleShape,
        layout: super::Layout,
        out: SampleOut<'_>,
    ) -> Result<()> {
        let record = source.record(index)?;
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            match out {
                SampleOut::F32(out) if layout == super::Layout::Nchw => {
                    self.apply_planar(source, index, &record, key, &mut scratch.pixels, out)
                }
                SampleOut::F32(out) => {
                    scratch.values.resize(out.len(), 0.0);
                    let values = &mut scratch.values[..];
                    self.apply_planar(source, index, &record, key, &mut scratch.pixels, values)?;
                    rearrange(&scratch.values, shape, layout, out, |v| v);
                    Ok(())
                }
                SampleOut::U8(out) => {
                    scratch.values.resize(out.len(), 0.0);
                    let values = &mut scratch.values[..];
                    self.apply_planar(source, index, &record, key, &mut scratch.pixels, values)?;
                    // The recipe's output is `none` (checked by `Loader::with_u8_output`): every
                    // value is a u8 pixel, so the cast is exact.
                    rearrange(&scratch.values, shape, layout, out, |v| v as u8);
                    Ok(())
                }
            }
        })
    }

    /// Returns whether the values this augmentation writes are the u8 pixels themselves.
    pub(super) fn writes_pixels(&self) -> bool {
        matches!(self, Prepared::Recipe { plan, .. } if plan.recipe().output == Output::None)
    }

    fn apply_planar<S: SampleSource>(
        &self,
        source: &S,
        index: usize,
        record: &Record<'_>,
        key: SampleKey,
        pixels: &mut Vec<u8>,
        out: &mut [f32],
    ) -> Result<()> {
        let describe = || source.describe(index);
        let with_place = |error: expanse_augment::Error| {
            Error::InvalidArgument(format!("{}: {error}", describe()))
        };
        match self {
            Prepared::Recipe { plan, min_side } => {
                let image = decode(record, *min_side, pixels, describe)?;
                plan.apply(image, key, out).map_err(with_place)
            }
            Prepared::Fixed(plan) => {
                let image = decode(record, usize::MAX, pixels, describe)?;
                let expected = plan.input_shape();
                let found = (image.height(), image.width(), image.channels());
                if found != expected {
                    return Err(Error::InvalidArgument(format!(
                        "{}: image is {}x{}x{}, the crop-flip-normalise plan was prepared for \
                         {}x{}x{}; use a recipe for records of differing shapes",
                        describe(),
                        found.0,
                        found.1,
                        found.2,
                        expected.0,
                        expected.1,
                        expected.2
                    )));
                }
                plan.apply(image, key, out).map_err(with_place)
            }
        }
    }
}

/// Names a recipe in messages.
fn recipe_label(recipe: &Recipe) -> String {
    match &recipe.name {
        Some(name) => format!("{name:?}"),
        None => "(unnamed)".to_string(),
    }
}

/// The destination of one sample's values.
pub(super) enum SampleOut<'a> {
    F32(&'a mut [f32]),
    U8(&'a mut [u8]),
}

/// Writes the planar (CHW per view) `values` of one sample into `out` in `layout`, through
/// `convert`.
fn rearrange<T: Copy>(
    values: &[f32],
    shape: SampleShape,
    layout: super::Layout,
    out: &mut [T],
    convert: impl Fn(f32) -> T,
) {
    if layout == super::Layout::Nchw {
        for (o, &v) in out.iter_mut().zip(values) {
            *o = convert(v);
        }
        return;
    }
    let plane = shape.height * shape.width;
    let channels = shape.channels;
    let views = values.chunks_exact(shape.view_len()).zip(out.chunks_exact_mut(shape.view_len()));
    for (view, view_out) in views {
        for (k, channel) in view.chunks_exact(plane).enumerate() {
            for (p, &value) in channel.iter().enumerate() {
                view_out[p * channels + k] = convert(value);
            }
        }
    }
}
