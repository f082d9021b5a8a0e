//! Evaluation protocols of the ResNet and GoogLeNet papers, for photo sets.
//!
//! - centre crop: shorter side scaled to `crop * 8 / 7` (256 for 224), one centre square;
//! - ten-crop: the same scaling, then the four corners and the centre, and their mirrors;
//! - multi-scale: for each shorter side `s` the centre `s` x `s` square and, with `mirror`,
//!   its mirror. Scores are averaged over views and scales.
//!
//! The fully convolutional multi-scale test of He et al. 2015 (section 3.4) scores the whole
//! rectangular image at each scale. A batch needs one shape, so this module scores the centre
//! square instead. On 4:3 photos that square covers three quarters of the image.

use std::fmt;

use expanse_augment::geometry::{CenterCrop, Resize};
use expanse_augment::pipeline::{Output, Recipe, Step, Views};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The protocol that scores a trained network on an evaluation split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Protocol {
    /// The evaluation augmentation of the run itself.
    Run,
    /// One centre `crop` x `crop` square.
    Center {
        /// Side of the square.
        crop: usize,
    },
    /// Ten `crop` x `crop` views (corners, centre and their mirrors).
    TenCrop {
        /// Side of each view.
        crop: usize,
    },
    /// Centre squares at several shorter sides.
    MultiScale {
        /// Shorter sides, each a separate pass.
        sides: Vec<usize>,
        /// Whether each square's mirror is scored too.
        mirror: bool,
    },
}

impl Protocol {
    /// The shorter sides of the ResNet paper's multi-scale test.
    pub const PAPER_SCALES: [usize; 5] = [224, 256, 384, 480, 640];

    /// Returns the recipes of the protocol's passes, each ending in `output` (the run's
    /// normalisation). Scores are averaged over all passes' views.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for [`Protocol::Run`], which has no recipe of its own, or a size of 0.
    pub fn recipes(&self, output: &Output) -> Result<Vec<Recipe>> {
        let recipe = |steps: Vec<Step>, views: Views| Recipe {
            name: Some(self.to_string()),
            steps,
            views,
            output: output.clone(),
        };
        let resize = |crop: usize| Step::Resize(Resize::shorter_side((crop * 8).div_ceil(7)));
        match self {
            Protocol::Run => {
                Err(Error::Config("the run's own protocol has no separate recipe".into()))
            }
            Protocol::Center { crop: 0 } | Protocol::TenCrop { crop: 0 } => {
                Err(Error::Config("the evaluation crop must be at least 1 pixel".into()))
            }
            Protocol::Center { crop } => Ok(vec![recipe(
                vec![resize(*crop), Step::CenterCrop(CenterCrop::new(*crop, *crop))],
                Views::Single,
            )]),
            Protocol::TenCrop { crop } => {
                Ok(vec![recipe(vec![resize(*crop)], Views::TenCrop { size: *crop })])
            }
            Protocol::MultiScale { sides, mirror } => {
                if sides.is_empty() || sides.contains(&0) {
                    return Err(Error::Config(format!(
                        "multi-scale sides must be at least one positive size, got {sides:?}"
                    )));
                }
                Ok(sides
                    .iter()
                    .map(|&side| {
                        let views = Views::MultiScale {
                            shorter_sides: vec![side],
                            crop: None,
                            mirror: *mirror,
                            filter: Default::default(),
                        };
                        recipe(Vec::new(), views)
                    })
                    .collect())
            }
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Run => write!(f, "run"),
            Protocol::Center { crop } => write!(f, "center-{crop}"),
            Protocol::TenCrop { crop } => write!(f, "10crop-{crop}"),
            Protocol::MultiScale { sides, mirror } => {
                let sides: Vec<String> = sides.iter().map(usize::to_string).collect();
                let mirror = if *mirror { "+mirror" } else { "" };
                write!(f, "multiscale-{}{mirror}", sides.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expanse_augment::pipeline::Recipe;

    fn imagenet_output() -> Output {
        Recipe::named("eval-center").unwrap().output
    }

    #[test]
    fn ten_crop_gives_ten_distinct_views() {
        let recipes = Protocol::TenCrop { crop: 4 }.recipes(&imagenet_output()).unwrap();
        assert_eq!(recipes.len(), 1);
        // A 5 x 6 image whose pixels are all different: every view must differ.
        let pixels: Vec<u8> = (0..5 * 6 * 3).map(|v| v as u8).collect();
        let image = expanse_augment::ImageRef::new(&pixels, 5, 6, 3).unwrap();
        let plain = Recipe { output: Output::None, ..recipes[0].clone() };
        let views = plain.augment(image, expanse_augment::SampleKey::new(0, 0, 0)).unwrap();
        assert_eq!(views.len(), 10);
        for (i, a) in views.iter().enumerate() {
            for b in &views[i + 1..] {
                assert_ne!(a.data(), b.data(), "two of the ten views are equal");
            }
        }
    }

    #[test]
    fn multi_scale_makes_one_pass_per_side() {
        let protocol = Protocol::MultiScale { sides: vec![224, 256, 384], mirror: true };
        let recipes = protocol.recipes(&imagenet_output()).unwrap();
        let shapes: Vec<_> = recipes.iter().map(|r| r.output_shape(300, 400, 3)).collect();
        assert_eq!(
            shapes,
            vec![Some((2, 3, 224, 224)), Some((2, 3, 256, 256)), Some((2, 3, 384, 384))]
        );
        assert_eq!(protocol.to_string(), "multiscale-224,256,384+mirror");
    }

    #[test]
    fn bad_sizes_are_refused() {
        let output = imagenet_output();
        assert!(Protocol::Center { crop: 0 }.recipes(&output).is_err());
        assert!(Protocol::MultiScale { sides: vec![], mirror: false }.recipes(&output).is_err());
        assert!(Protocol::MultiScale { sides: vec![0], mirror: false }.recipes(&output).is_err());
    }
}
