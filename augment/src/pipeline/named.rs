//! The recipes known by name.

use crate::colour::{ColorJitter, PcaLighting};
use crate::crop::RandomCrop;
use crate::elastic::Elastic;
use crate::error::{Error, Result};
use crate::flip::HorizontalFlip;
use crate::geometry::{CenterCrop, RandomResizedCrop, Resize, ScaleJitter};
use crate::normalize::Normalize;
use crate::pad::PadMode;

use super::{Output, Recipe, Step, Views};

/// ImageNet channel means, 0..255 units: torchvision's (0.485, 0.456, 0.406) times 255.
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet channel standard deviations, 0..255 units: (0.229, 0.224, 0.225) times 255.
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// CIFAR-10 training-set channel means, 0..255 units (0.4914, 0.4822, 0.4465 in 0..1 units).
pub const CIFAR10_MEAN: [f32; 3] = [125.307, 122.95, 113.865];
/// CIFAR-10 training-set channel standard deviations, 0..255 units (0.2470, 0.2435, 0.2616).
pub const CIFAR10_STD: [f32; 3] = [62.993, 62.089, 66.705];
/// Fashion-MNIST training-set mean, 0..255 units (0.2860 in 0..1 units).
pub const FASHION_MNIST_MEAN: f32 = 72.940;
/// Fashion-MNIST training-set standard deviation, 0..255 units (0.3530 in 0..1 units).
pub const FASHION_MNIST_STD: f32 = 90.021;

impl Recipe {
    /// The names [`Recipe::named`] accepts.
    pub const NAMES: [&'static str; 7] = [
        "resnet-imagenet",
        "inception",
        "cifar",
        "mnist-elastic",
        "eval-center",
        "eval-10crop",
        "eval-multiscale",
    ];

    /// Returns the recipe called `name`, with `name` recorded in it.
    ///
    /// - `resnet-imagenet`: ResNet and VGG ImageNet training (He et al. 2015). Shorter side
    ///   uniform in 256..=480 (bilinear), random 224 x 224 crop, horizontal flip with chance
    ///   0.5, AlexNet PCA lighting with sigma 0.1 and the ImageNet eigenvectors, ImageNet
    ///   mean and std.
    /// - `inception`: random-resized crop to 224 x 224 (area 8% to 100%, aspect ratio 3/4 to
    ///   4/3), flip 0.5, colour jitter 0.4 for brightness, contrast and saturation, PCA
    ///   lighting 0.1, ImageNet mean and std.
    /// - `cifar`: zero padding of 4 and a random 32 x 32 crop, flip 0.5, CIFAR-10 mean and
    ///   std. For 32 x 32 inputs its output equals, byte for byte,
    ///   [`CropFlipNormalize::cifar`](crate::CropFlipNormalize::cifar) with padding 4 and the
    ///   same mean and std, for every key.
    /// - `mnist-elastic`: elastic distortion with alpha 34 and sigma 4 pixels, then the
    ///   Fashion-MNIST mean and std. Simard et al. 2003 chose these values for 28 x 28 digits,
    ///   so they suit 28 x 28 inputs only.
    /// - `eval-center`: shorter side 256, centre 224 x 224 crop, ImageNet mean and std.
    /// - `eval-10crop`: shorter side 256, then the ten 224 x 224 crops of [`Views::TenCrop`].
    /// - `eval-multiscale`: [`Views::MultiScale`] at shorter sides 224, 256, 384, 480 and 640,
    ///   each the centre square of that scale and its mirror (10 views of 5 shapes), the
    ///   closest fixed-shape form of the ResNet multi-scale test. No centre 224 crop, because
    ///   at shorter side 640 it would keep only the middle third of the image.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for any other name; the message lists the known names.
    pub fn named(name: &str) -> Result<Recipe> {
        let imagenet =
            || Output::Normalize(Normalize::new(IMAGENET_MEAN.into(), IMAGENET_STD.into()));
        let flip = || Step::HorizontalFlip(HorizontalFlip::new(0.5));

        let (steps, views, output) = match name {
            "resnet-imagenet" => (
                vec![
                    Step::ScaleJitter(ScaleJitter::new(256, 480)),
                    Step::RandomCrop(RandomCrop::new(224, 224, 0, PadMode::Zero)),
                    flip(),
                    Step::PcaLighting(PcaLighting::default()),
                ],
                Views::Single,
                imagenet(),
            ),
            "inception" => (
                vec![
                    Step::RandomResizedCrop(RandomResizedCrop::new(224, 224)),
                    flip(),
                    Step::ColorJitter(ColorJitter::new(0.4, 0.4, 0.4)),
                    Step::PcaLighting(PcaLighting::default()),
                ],
                Views::Single,
                imagenet(),
            ),
            "cifar" => (
                vec![Step::RandomCrop(RandomCrop::new(32, 32, 4, PadMode::Zero)), flip()],
                Views::Single,
                Output::Normalize(Normalize::new(CIFAR10_MEAN.into(), CIFAR10_STD.into())),
            ),
            "mnist-elastic" => (
                vec![Step::Elastic(Elastic::simard())],
                Views::Single,
                Output::Normalize(Normalize::new(
                    vec![FASHION_MNIST_MEAN],
                    vec![FASHION_MNIST_STD],
                )),
            ),
            "eval-center" => (
                vec![
                    Step::Resize(Resize::shorter_side(256)),
                    Step::CenterCrop(CenterCrop::new(224, 224)),
                ],
                Views::Single,
                imagenet(),
            ),
            "eval-10crop" => (
                vec![Step::Resize(Resize::shorter_side(256))],
                Views::TenCrop { size: 224 },
                imagenet(),
            ),
            "eval-multiscale" => (
                Vec::new(),
                Views::MultiScale {
                    shorter_sides: vec![224, 256, 384, 480, 640],
                    crop: None,
                    mirror: true,
                    filter: Default::default(),
                },
                imagenet(),
            ),
            _ => {
                return Err(Error::InvalidParameter {
                    op: "recipe",
                    parameter: "name",
                    value: format!("{name:?}"),
                    expected: format!("one of {}", Self::NAMES.join(", ")),
                })
            }
        };
        Ok(Recipe { name: Some(name.to_string()), steps, views, output })
    }
}
