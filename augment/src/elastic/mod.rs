//! Elastic distortion (Simard, Steinkraus and Platt 2003, "Best practices for convolutional
//! neural networks applied to visual document analysis").
//!
//! A random displacement field is drawn as per-pixel uniform noise in `(-1, 1)` for each of
//! `dx` and `dy`, smoothed by a Gaussian of standard deviation `sigma` pixels and scaled by
//! `alpha` pixels ([`ElasticField`]). The image is then resampled bilinearly at
//! `(x + dx, y + dy)` ([`remap`]). Simard used `alpha = 34`, `sigma = 4` on 28x28 digits.

mod field;
mod remap;
mod smooth;

pub use field::ElasticField;
pub use remap::{remap, MAX_REMAP_SIDE};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geometry::Fill;
use crate::image::{ImageBuf, ImageRef};
use crate::op::{OpRng, Transform};

/// The largest `sigma` accepted, in pixels. The kernel has `8 * sigma + 1` taps, and a field
/// smoother than this is a plain translation on any image this crate handles.
pub const MAX_SIGMA: f32 = 10_000.0;

/// The smoothing method of the noise of an [`ElasticField`].
///
/// Serde: `"exact"`, `"coarse_grid"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Smoothing {
    /// The separable convolution of scipy's `gaussian_filter(noise, sigma, mode="constant",
    /// truncate=4.0)`: kernel radius `floor(4 * sigma + 0.5)` taps, normalised to sum 1, zero
    /// noise outside the image. Computed in f32.
    Exact,
    /// The exact convolution evaluated on every `step = max(1, floor(sigma / 2))`-th row
    /// only, interpolated between those rows by Catmull-Rom cubics; columns stay exact. For
    /// `sigma < 4` the step is 1 and this is [`Smoothing::Exact`].
    ///
    /// Accuracy against `Exact`, from this crate's `elastic` integration test on three 224x224
    /// fields (RMS and maximum of the displacement difference, relative to the standard
    /// deviation of the exact field): sigma 4 (step 2), RMS 0.25 percent, maximum 1.4 percent;
    /// sigma 6 (step 3), RMS 0.3 percent, maximum 1.7 percent; sigma 9 (step 4), RMS 0.2
    /// percent, maximum 1.0 percent. At `alpha = 34`, `sigma = 4` the field's standard
    /// deviation is about 1.4 pixels, so the RMS error is about 0.003 pixels. The smoothing
    /// does about 60 percent of the work of `Exact` at sigma 4, less for larger sigma.
    #[default]
    CoarseGrid,
}

/// Simard elastic distortion of u8 HWC images (any channel count).
///
/// Draws an [`ElasticField`] of the image's size with [`ElasticField::draw`] (all `dx` noise,
/// then all `dy` noise, row-major, 16 bits per value) and resamples the image with [`remap`];
/// taps outside the image read `fill`. The output has the input's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Elastic {
    /// Scale of the displacement in pixels, finite and at least 0. 0 gives the identity.
    pub alpha: f32,
    /// Standard deviation of the Gaussian smoothing in pixels, in `(0, 10000]`.
    pub sigma: f32,
    /// Exact or coarse-grid smoothing.
    #[serde(default)]
    pub smoothing: Smoothing,
    /// The value of taps outside the image.
    #[serde(default)]
    pub fill: Fill,
}

impl Default for Elastic {
    /// Simard's setting, see [`Elastic::simard`].
    fn default() -> Self {
        Self::simard()
    }
}

impl Elastic {
    /// Creates elastic distortion with displacement scale `alpha` and smoothing `sigma` (both
    /// in pixels), coarse-grid smoothing and zero fill.
    pub fn new(alpha: f32, sigma: f32) -> Self {
        Self { alpha, sigma, smoothing: Smoothing::default(), fill: Fill::default() }
    }

    /// Simard et al.'s setting for 28x28 digits: `alpha = 34`, `sigma = 4`.
    pub fn simard() -> Self {
        Self::new(34.0, 4.0)
    }

    /// Checks `alpha` and `sigma`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for an `alpha` that is negative or not finite, or a
    /// `sigma` outside `(0, 10000]`.
    pub fn validate(&self) -> Result<()> {
        check_parameters(self.alpha, self.sigma)
    }
}

impl Transform for Elastic {
    fn name(&self) -> &'static str {
        "elastic"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let (height, width) = (image.height(), image.width());
        let field = ElasticField::draw(height, width, self.alpha, self.sigma, self.smoothing, rng)?;
        remap(image, &field, self.fill)
    }
}

/// Checks the displacement scale and the smoothing width.
fn check_parameters(alpha: f32, sigma: f32) -> Result<()> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(invalid("alpha", alpha, "a finite value at least 0, in pixels"));
    }
    if !(sigma > 0.0 && sigma <= MAX_SIGMA) {
        return Err(invalid("sigma", sigma, "a value in (0, 10000] pixels"));
    }
    Ok(())
}

/// Returns an [`Error::InvalidParameter`] of the elastic op, with `value` formatted by `Debug`.
fn invalid(parameter: &'static str, value: impl std::fmt::Debug, expected: &str) -> Error {
    Error::InvalidParameter {
        op: "elastic",
        parameter,
        value: format!("{value:?}"),
        expected: expected.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::RngCore;

    use super::*;
    use crate::key::SampleKey;
    use crate::sample::fill_uniform_symmetric;

    #[test]
    fn elastic_draws_noise_then_remaps() {
        let data: Vec<u8> = (0..9 * 11 * 3).map(|i| (i * 5 % 256) as u8).collect();
        let image = ImageRef::new(&data, 9, 11, 3).unwrap();
        let op = Elastic { fill: Fill::Edge, ..Elastic::new(3.0, 1.5) };
        let mut rng = SampleKey::new(1, 0, 0).rng(0);
        let mut copy = rng.clone();

        let out = op.transform(image, &mut rng).unwrap();

        let (mut nx, mut ny) = (vec![0.0; 99], vec![0.0; 99]);
        fill_uniform_symmetric(&mut copy, &mut nx);
        fill_uniform_symmetric(&mut copy, &mut ny);
        let field = ElasticField::from_noise(&nx, &ny, 9, 11, 3.0, 1.5, Smoothing::CoarseGrid);
        assert_eq!(out, remap(image, &field.unwrap(), Fill::Edge).unwrap());
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn elastic_rejects_bad_parameters() {
        let image = ImageRef::new(&[1, 2, 3, 4], 2, 2, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);
        let cases = [
            (Elastic::new(-1.0, 4.0), "alpha"),
            (Elastic::new(f32::NAN, 4.0), "alpha"),
            (Elastic::new(34.0, 0.0), "sigma"),
            (Elastic::new(34.0, f32::INFINITY), "sigma"),
            (Elastic::new(34.0, 20_000.0), "sigma"),
        ];

        for (op, name) in cases {
            let error = op.transform(image, &mut rng).unwrap_err();
            assert!(
                matches!(error, Error::InvalidParameter { parameter, .. } if parameter == name),
                "{op:?}: {error}"
            );
        }
    }

    #[test]
    fn elastic_serde_defaults() {
        let parsed: Elastic = serde_json::from_str(r#"{"alpha": 34, "sigma": 4}"#).unwrap();
        let exact: Elastic = serde_json::from_str(
            r#"{"alpha": 8, "sigma": 3, "smoothing": "exact", "fill": "reflect"}"#,
        )
        .unwrap();

        assert_eq!(parsed, Elastic::simard());
        assert_eq!(exact.smoothing, Smoothing::Exact);
        assert_eq!(exact.fill, Fill::Reflect);
        assert_eq!(
            serde_json::to_string(&Elastic::simard()).unwrap(),
            r#"{"alpha":34.0,"sigma":4.0,"smoothing":"coarse_grid","fill":{"constant":0}}"#
        );
    }
}
