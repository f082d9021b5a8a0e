//! One step of a recipe: an op, or a random choice between steps.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::colour::{ColorJitter, PcaLighting};
use crate::crop::RandomCrop;
use crate::elastic::Elastic;
use crate::erase::{Cutout, RandomErasing};
use crate::error::{Error, Result};
use crate::flip::{HorizontalFlip, VerticalFlip};
use crate::geometry::{Affine, CenterCrop, RandomResizedCrop, Resize, ScaleJitter};
use crate::image::{ImageBuf, ImageRef};
use crate::key::{bernoulli, uniform_inclusive};
use crate::noise::GaussianNoise;
use crate::op::{OpRng, Transform};

/// One step of a [`Recipe`](super::Recipe): an op on u8 HWC images, or a composition of steps.
///
/// In JSON a step is an object whose `"op"` field names the variant in snake case, next to the
/// op's own fields: `{"op": "horizontal_flip", "probability": 0.5}`.
///
/// # Randomness
///
/// A step draws only from the generator passed to [`Transform::transform`]. In a recipe, the
/// step at position `i` of [`Recipe::steps`](super::Recipe::steps) gets `key.rng(i)`. A
/// composition first makes its own draw (`Maybe`: one [`bernoulli`]; `OneOf`: one choice; a
/// `Sequence` draws nothing itself). Then, for each child step it runs, in order, it draws
/// four `next_u64` values from its own generator and seeds the child's ChaCha8 generator with
/// their 32 little-endian bytes (see [`child_rng`]). A child's draws therefore never shift
/// the draws of its siblings or of the steps around the composition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Resize to a fixed size or a fixed shorter side.
    Resize(Resize),
    /// Resize to a random shorter side.
    ScaleJitter(ScaleJitter),
    /// Pad, then crop at a random offset.
    RandomCrop(RandomCrop),
    /// Crop the centre window.
    CenterCrop(CenterCrop),
    /// Crop a random area and aspect ratio, then resize (Inception).
    RandomResizedCrop(RandomResizedCrop),
    /// Mirror the columns at random.
    HorizontalFlip(HorizontalFlip),
    /// Mirror the rows at random.
    VerticalFlip(VerticalFlip),
    /// Random rotation, scale, translation and shear.
    Affine(Affine),
    /// Random elastic distortion (Simard et al. 2003).
    Elastic(Elastic),
    /// AlexNet colour noise along the RGB principal components.
    PcaLighting(PcaLighting),
    /// Random brightness, contrast and saturation.
    ColorJitter(ColorJitter),
    /// Additive Gaussian noise.
    GaussianNoise(GaussianNoise),
    /// Erase a random rectangle (torchvision semantics).
    RandomErasing(RandomErasing),
    /// Erase a fixed-size square at a random centre (DeVries and Taylor 2017).
    Cutout(Cutout),
    /// Runs `step` with chance `probability`, in `[0, 1]`.
    Maybe {
        /// Chance of running the step.
        probability: f64,
        /// The step to run.
        step: Box<Step>,
    },
    /// Runs one of `steps`, chosen uniformly or in proportion to `weights`.
    OneOf {
        /// The candidates, at least one.
        steps: Vec<Step>,
        /// Relative weights, one per step, finite and not negative, with a positive sum.
        /// `None` gives every step the same chance.
        #[serde(default)]
        weights: Option<Vec<f64>>,
    },
    /// Runs `steps` in order, each with its own child generator.
    Sequence {
        /// The steps, in order of application.
        steps: Vec<Step>,
    },
}

/// Derives a child generator from `parent`: the ChaCha8 generator seeded with the
/// little-endian bytes of four consecutive `parent.next_u64()` values.
pub fn child_rng(parent: &mut OpRng) -> OpRng {
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&parent.next_u64().to_le_bytes());
    }
    OpRng::from_seed(seed)
}

impl Step {
    /// Wraps `step` so that it runs with chance `probability`.
    pub fn maybe(probability: f64, step: Step) -> Self {
        Step::Maybe { probability, step: Box::new(step) }
    }

    /// Returns the op or composition inside, as a [`Transform`], or `None` for a composition.
    fn op(&self) -> Option<&dyn Transform> {
        let op: &dyn Transform = match self {
            Step::Resize(op) => op,
            Step::ScaleJitter(op) => op,
            Step::RandomCrop(op) => op,
            Step::CenterCrop(op) => op,
            Step::RandomResizedCrop(op) => op,
            Step::HorizontalFlip(op) => op,
            Step::VerticalFlip(op) => op,
            Step::Affine(op) => op,
            Step::Elastic(op) => op,
            Step::PcaLighting(op) => op,
            Step::ColorJitter(op) => op,
            Step::GaussianNoise(op) => op,
            Step::RandomErasing(op) => op,
            Step::Cutout(op) => op,
            Step::Maybe { .. } | Step::OneOf { .. } | Step::Sequence { .. } => return None,
        };
        Some(op)
    }

    /// Returns the output rows and columns for an input of size `input`, where `None` means
    /// an input size that depends on earlier random draws. The result is `None` where the
    /// output size is not fixed.
    pub(crate) fn output_size_from(&self, input: Option<(usize, usize)>) -> Option<(usize, usize)> {
        match self {
            Step::Maybe { step, .. } => {
                let inner = step.output_size_from(input);
                (inner == input).then_some(inner).flatten()
            }
            Step::OneOf { steps, .. } => {
                let mut sizes = steps.iter().map(|step| step.output_size_from(input));
                let first = sizes.next()??;
                sizes.all(|size| size == Some(first)).then_some(first)
            }
            Step::Sequence { steps } => {
                let mut size = input;
                for step in steps {
                    size = step.output_size_from(size);
                }
                size
            }
            _ => match (self.fixed_output_size(), input) {
                (Some(size), _) => Some(size),
                (None, Some((height, width))) => self.op()?.output_size(height, width),
                (None, None) => None,
            },
        }
    }

    /// Returns the output size of an op whose output does not depend on its input's size.
    fn fixed_output_size(&self) -> Option<(usize, usize)> {
        match self {
            Step::Resize(resize) => match resize.size {
                crate::geometry::ResizeTo::Exact { height, width } => Some((height, width)),
                crate::geometry::ResizeTo::ShorterSide(_) => None,
            },
            Step::RandomCrop(crop) => Some((crop.height?, crop.width?)),
            Step::CenterCrop(crop) => Some((crop.height, crop.width)),
            Step::RandomResizedCrop(crop) => Some((crop.height, crop.width)),
            _ => None,
        }
    }

    /// Checks the parameters of the compositions (the ops check their own when they run).
    fn check_composition(&self) -> Result<()> {
        match self {
            Step::Maybe { probability, .. } if !(0.0..=1.0).contains(probability) => {
                Err(Error::InvalidParameter {
                    op: "maybe",
                    parameter: "probability",
                    value: probability.to_string(),
                    expected: "a finite value in [0, 1]".into(),
                })
            }
            Step::OneOf { steps, .. } if steps.is_empty() => Err(Error::InvalidParameter {
                op: "one_of",
                parameter: "steps",
                value: "[]".into(),
                expected: "at least one step".into(),
            }),
            Step::OneOf { steps, weights: Some(weights) } => check_weights(weights, steps.len()),
            _ => Ok(()),
        }
    }
}

/// Checks `weights` for a choice between `count` steps.
fn check_weights(weights: &[f64], count: usize) -> Result<()> {
    let invalid = |expected: &str| Error::InvalidParameter {
        op: "one_of",
        parameter: "weights",
        value: format!("{weights:?}"),
        expected: expected.into(),
    };

    if weights.len() != count {
        return Err(invalid(&format!("{count} weights, one per step")));
    }
    if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(invalid("finite weights of at least 0"));
    }
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(invalid("weights with a positive, finite sum"));
    }
    Ok(())
}

/// Draws the position of one of `count` steps: uniformly with [`uniform_inclusive`], or, with
/// `weights`, by comparing one uniform value from `[0, total)` (the top 53 bits of a
/// `next_u64`, times the sum of the weights) against the running sums. Steps of weight 0 are
/// never chosen.
fn choose(rng: &mut OpRng, count: usize, weights: Option<&[f64]>) -> usize {
    let Some(weights) = weights else {
        return uniform_inclusive(rng, count as u64 - 1) as usize;
    };

    let total: f64 = weights.iter().sum();
    let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let target = unit * total;
    let mut running = 0.0;
    for (i, &weight) in weights.iter().enumerate() {
        running += weight;
        if weight > 0.0 && target < running {
            return i;
        }
    }
    // Rounding in the running sum can leave `target` at or above the last sum: take the last
    // step with a positive weight.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

impl Transform for Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Maybe { .. } => "maybe",
            Step::OneOf { .. } => "one_of",
            Step::Sequence { .. } => "sequence",
            _ => self.op().map_or("step", |op| op.name()),
        }
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        self.output_size_from(Some((height, width)))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        self.check_composition()?;

        match self {
            Step::Maybe { probability, step } => {
                if bernoulli(rng, *probability) {
                    step.transform(image, &mut child_rng(rng))
                } else {
                    ImageBuf::new(
                        image.data().to_vec(),
                        image.height(),
                        image.width(),
                        image.channels(),
                    )
                }
            }
            Step::OneOf { steps, weights } => {
                let chosen = choose(rng, steps.len(), weights.as_deref());
                steps[chosen].transform(image, &mut child_rng(rng))
            }
            Step::Sequence { steps } => {
                let Some((first, rest)) = steps.split_first() else {
                    return ImageBuf::new(
                        image.data().to_vec(),
                        image.height(),
                        image.width(),
                        image.channels(),
                    );
                };
                let mut output = first.transform(image, &mut child_rng(rng))?;
                for step in rest {
                    step.transform_in_place(&mut output, &mut child_rng(rng))?;
                }
                Ok(output)
            }
            _ => self.op().expect("an op variant").transform(image, rng),
        }
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        self.check_composition()?;

        match self {
            Step::Maybe { probability, step } => {
                if bernoulli(rng, *probability) {
                    step.transform_in_place(image, &mut child_rng(rng))?;
                }
                Ok(())
            }
            Step::OneOf { steps, weights } => {
                let chosen = choose(rng, steps.len(), weights.as_deref());
                steps[chosen].transform_in_place(image, &mut child_rng(rng))
            }
            Step::Sequence { steps } => {
                // Work on a copy so that an error leaves `image` unchanged.
                let mut output = image.clone();
                for step in steps {
                    step.transform_in_place(&mut output, &mut child_rng(rng))?;
                }
                *image = output;
                Ok(())
            }
            _ => self.op().expect("an op variant").transform_in_place(image, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ScaleJitter;
    use crate::key::SampleKey;

    #[test]
    fn choose_skips_zero_weights() {
        let weights = [0.0, 2.0, 0.0, 1.0];
        let mut counts = [0u32; 4];

        for index in 0..3000 {
            let mut rng = SampleKey::new(4, 0, index).rng(0);
            counts[choose(&mut rng, 4, Some(&weights))] += 1;
        }

        assert_eq!(counts[0] + counts[2], 0, "{counts:?}");
        // Binomial(3000, 2/3): standard deviation 26; the bound is 5 of them.
        assert!((1870..=2130).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn choose_uniform_one_draw() {
        let mut rng = SampleKey::new(4, 0, 0).rng(0);
        let mut copy = rng.clone();

        let chosen = choose(&mut rng, 5, None);

        assert_eq!(chosen as u64, uniform_inclusive(&mut copy, 4));
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn output_size_through_compositions() {
        let crop = Step::RandomCrop(RandomCrop::new(5, 4, 0, crate::PadMode::Zero));
        let jitter = Step::ScaleJitter(ScaleJitter::new(8, 12));
        let flip = Step::HorizontalFlip(HorizontalFlip::new(0.5));
        let sequence = Step::Sequence { steps: vec![jitter.clone(), crop.clone()] };
        let one_of = Step::OneOf { steps: vec![crop.clone(), flip.clone()], weights: None };

        assert_eq!(jitter.output_size(20, 30), None);
        assert_eq!(sequence.output_size(20, 30), Some((5, 4)));
        assert_eq!(Step::maybe(0.5, flip).output_size(20, 30), Some((20, 30)));
        assert_eq!(Step::maybe(0.5, crop).output_size(20, 30), None);
        assert_eq!(one_of.output_size(20, 30), None);
        assert_eq!(one_of.output_size(5, 4), Some((5, 4)));
    }

    #[test]
    fn maybe_zero_draws_no_child() {
        let step = Step::maybe(0.0, Step::HorizontalFlip(HorizontalFlip::new(1.0)));
        let image = ImageBuf::new(vec![1, 2, 3], 1, 3, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);
        let mut copy = rng.clone();

        let output = step.transform(image.as_image_ref(), &mut rng).unwrap();

        assert_eq!(output, image);
        copy.next_u64();
        assert_eq!(rng.next_u64(), copy.next_u64());
    }
}
