//! The output stage of a recipe: f32 CHW values from the u8 views.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::ImageRef;
use crate::normalize::{Normalize, NormalizeTable};

/// The conversion of each u8 HWC view into its f32 CHW output,
/// `out[(k * height + y) * width + x]` for channel `k`, row `y`, column `x`.
///
/// In JSON a value is an object whose `"kind"` field names the variant in snake case:
/// `{"kind": "normalize", "mean": [...], "std": [...]}`, `{"kind": "mean_image"}` or
/// `{"kind": "none"}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Output {
    /// The pixel values themselves, 0..255, as f32.
    #[default]
    None,
    /// Per-channel `(value - mean[k]) / std[k]`, 0..255 units, as [`Normalize`] computes it.
    Normalize(Normalize),
    /// Per-pixel `value - mean(y, x, k)` with a [`MeanImage`] of the view's shape supplied at
    /// run time (AlexNet and Caffe style). Mirrored views subtract the same, unmirrored mean.
    MeanImage,
}

/// A mean image: f32 HWC values in 0..255 units, `data[(y * width + x) * channels + k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanImage {
    data: Vec<f32>,
    height: usize,
    width: usize,
    channels: usize,
}

impl MeanImage {
    /// Wraps `data` as a `height` x `width` x `channels` HWC mean image.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroDimension`] for a zero dimension, [`Error::DataLength`] when `data.len()`
    /// is not `height * width * channels`, and [`Error::InvalidParameter`] for a value that
    /// is not finite.
    pub fn new(data: Vec<f32>, height: usize, width: usize, channels: usize) -> Result<Self> {
        if height == 0 || width == 0 || channels == 0 {
            return Err(Error::ZeroDimension { height, width, channels });
        }
        let expected = height.checked_mul(width).and_then(|n| n.checked_mul(channels));
        if expected != Some(data.len()) {
            return Err(Error::DataLength {
                height,
                width,
                channels,
                expected: expected.unwrap_or(usize::MAX),
                actual: data.len(),
            });
        }
        if let Some(value) = data.iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidParameter {
                op: "mean_image",
                parameter: "data",
                value: value.to_string(),
                expected: "finite values".into(),
            });
        }
        Ok(Self { data, height, width, channels })
    }

    /// Computes the per-pixel mean of `images`, which must share one shape, with f64 sums.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for an empty list and [`Error::ShapeMismatch`] when an
    /// image's shape differs from image 0's.
    pub fn accumulate(images: &[ImageRef<'_>]) -> Result<Self> {
        let Some(first) = images.first() else {
            return Err(Error::InvalidParameter {
                op: "mean_image",
                parameter: "images",
                value: "[]".into(),
                expected: "at least one image".into(),
            });
        };
        let mut sum = MeanImageSum::new(first.height(), first.width(), first.channels());
        for (index, image) in images.iter().enumerate() {
            sum.add(*image).map_err(|error| match error {
                Error::ShapeMismatch { .. } => shape_mismatch(index, first, image),
                other => other,
            })?;
        }
        sum.mean()
    }

    /// Returns the values, HWC.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Returns `(height, width, channels)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }
}

/// A running per-pixel sum of u8 images of one shape, for a [`MeanImage`] over a dataset too
/// large to hold in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanImageSum {
    sum: Vec<f64>,
    count: u64,
    height: usize,
    width: usize,
    channels: usize,
}

impl MeanImageSum {
    /// Starts an empty sum for `height` x `width` x `channels` images.
    pub fn new(height: usize, width: usize, channels: usize) -> Self {
        Self { sum: vec![0.0; height * width * channels], count: 0, height, width, channels }
    }

    /// Adds one image.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (index 0) when its shape differs from the sum's.
    pub fn add(&mut self, image: ImageRef<'_>) -> Result<()> {
        if (image.height(), image.width(), image.channels())
            != (self.height, self.width, self.channels)
        {
            return Err(Error::ShapeMismatch {
                index: 0,
                height: self.height,
                width: self.width,
                channels: self.channels,
                found_height: image.height(),
                found_width: image.width(),
                found_channels: image.channels(),
            });
        }
        for (sum, &value) in self.sum.iter_mut().zip(image.data()) {
            *sum += f64::from(value);
        }
        self.count += 1;
        Ok(())
    }

    /// Returns the number of images added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the mean of the images added.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] when no image was added, and the errors of
    /// [`MeanImage::new`] for a zero dimension.
    pub fn mean(&self) -> Result<MeanImage> {
        if self.count == 0 {
            return Err(Error::InvalidParameter {
                op: "mean_image",
                parameter: "images",
                value: "0 images".into(),
                expected: "at least one image".into(),
            });
        }
        let scale = 1.0 / self.count as f64;
        let data = self.sum.iter().map(|&sum| (sum * scale) as f32).collect();
        MeanImage::new(data, self.height, self.width, self.channels)
    }
}

fn shape_mismatch(index: usize, first: &ImageRef<'_>, image: &ImageRef<'_>) -> Error {
    Error::ShapeMismatch {
        index,
        height: first.height(),
        width: first.width(),
        channels: first.channels(),
        found_height: image.height(),
        found_width: image.width(),
        found_channels: image.channels(),
    }
}

/// The checked form of an [`Output`]: a 256-entry table per channel, or a mean image.
#[derive(Debug, Clone)]
pub(crate) enum OutputWriter {
    /// Table lookup: the identity table for [`Output::None`], the normalisation table for
    /// [`Output::Normalize`].
    Table(NormalizeTable),
    /// Per-pixel subtraction.
    MeanImage(MeanImage),
}

impl OutputWriter {
    /// Checks `output` for images of `channels` channels.
    pub(crate) fn new(output: &Output, channels: usize, mean: Option<&MeanImage>) -> Result<Self> {
        match output {
            Output::None => Ok(Self::Table(Normalize::new(vec![0.0], vec![1.0]).table(channels)?)),
            Output::Normalize(normalize) => Ok(Self::Table(normalize.table(channels)?)),
            Output::MeanImage => match mean {
                Some(mean) if mean.channels == channels => Ok(Self::MeanImage(mean.clone())),
                Some(mean) => {
                    Err(Error::TableChannels { expected: mean.channels, found: channels })
                }
                None => Err(Error::InvalidParameter {
                    op: "mean_image",
                    parameter: "mean image",
                    value: "none".into(),
                    expected:
                        "a mean image passed to Recipe::plan or Recipe::apply_batch_with_mean"
                            .into(),
                }),
            },
        }
    }

    /// Returns the table, when the output is a per-channel lookup.
    pub(crate) fn table(&self) -> Option<&NormalizeTable> {
        match self {
            Self::Table(table) => Some(table),
            Self::MeanImage(_) => None,
        }
    }

    /// Checks that `view` fits the output: for a mean image, that the shapes agree.
    pub(crate) fn check(&self, view: ImageRef<'_>) -> Result<()> {
        let Self::MeanImage(mean) = self else {
            return Ok(());
        };
        let shape = (view.height(), view.width(), view.channels());
        if shape != mean.shape() {
            return Err(Error::PlanShape {
                height: mean.height,
                width: mean.width,
                channels: mean.channels,
                found_height: shape.0,
                found_width: shape.1,
                found_channels: shape.2,
            });
        }
        Ok(())
    }

    /// Writes `view` into `out` as f32 CHW. `out.len()` must equal the view's value count.
    pub(crate) fn write(&self, view: ImageRef<'_>, out: &mut [f32]) -> Result<()> {
        match self {
            Self::Table(table) => table.apply(view, out),
            Self::MeanImage(mean) => {
                self.check(view)?;
                let (plane, channels) = (view.height() * view.width(), view.channels());
                for (k, out_plane) in out.chunks_exact_mut(plane).enumerate() {
                    let pixels = view.data().chunks_exact(channels);
                    let means = mean.data.chunks_exact(channels);
                    for ((value, pixel), mean) in out_plane.iter_mut().zip(pixels).zip(means) {
                        *value = f32::from(pixel[k]) - mean[k];
                    }
                }
                Ok(())
            }
        }
    }
}
