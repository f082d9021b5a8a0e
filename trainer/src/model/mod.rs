//! Network definitions and the registry that builds them by name.
//!
//! - [`resnet_cifar`]: the CIFAR ResNets and plain networks of He et al. 2015 (`resnet20`).
//! - [`resnet`]: the ImageNet ResNets (torchvision's layout) with shortcut options A, B and C,
//!   and their plain counterparts.
//! - [`googlenet`]: Inception v1, torchvision's variant and the paper's.
//! - [`alexnet`]: torchvision's AlexNet.
//! - [`summary`]: per-layer output shapes, parameters and multiply-adds.
//!
//! Every network takes NCHW f32 images of any channel count and returns [`Output`]. The
//! ImageNet networks end with adaptive average pooling, so they accept inputs smaller than 224
//! pixels down to a model-specific minimum (63 pixels for AlexNet).

pub mod alexnet;
pub mod googlenet;
pub mod layers;
pub mod resnet;
pub mod resnet_cifar;
pub mod summary;

use tch::nn::{self, ModuleT};
use tch::Tensor;

pub use layers::SyncBatchNorm;
pub use resnet::{ResNet, ResNetSpec, Shortcut};
pub use resnet_cifar::{CifarResNet, CifarResNetSpec};
pub use summary::{summarize, LayerRow, Summary};

use crate::{Error, Result};

/// Result of a forward pass.
#[derive(Debug)]
pub struct Output {
    /// Logits of the main classifier, `N x classes`.
    pub logits: Tensor,
    /// Logits of the auxiliary classifiers, each `N x classes`. Only a network that has them
    /// (GoogLeNet) fills it, and only in a training pass; otherwise it is empty.
    pub aux: Vec<Tensor>,
}

impl Output {
    /// Wraps the logits of a network without auxiliary classifiers.
    pub fn logits(logits: Tensor) -> Self {
        Output { logits, aux: Vec::new() }
    }
}

/// An image classifier built by [`build`].
pub trait Network: std::fmt::Debug + Send {
    /// Runs the network on NCHW f32 images; `train` selects batch statistics and dropout.
    fn forward(&self, xs: &Tensor, train: bool) -> Output;

    /// Weight of each auxiliary classifier's loss in the training loss (0.3 for GoogLeNet,
    /// else 0).
    fn aux_weight(&self) -> f64 {
        0.0
    }

    /// Sets the dropout rate before the classifier (before each of AlexNet's first two fully
    /// connected layers). The defaults are the papers': 0 for ResNets, 0.4 for GoogLeNet, 0.5
    /// for AlexNet.
    fn set_dropout(&mut self, rate: f64);
}

impl Network for CifarResNet {
    fn forward(&self, xs: &Tensor, train: bool) -> Output {
        Output::logits(self.forward_t(xs, train))
    }

    fn set_dropout(&mut self, rate: f64) {
        CifarResNet::set_dropout(self, rate);
    }
}

/// Model families that [`build`] accepts, on one line.
const MODEL_NAMES_HELP: &str = "resnet18|34|50|101|152[-a|-b|-c], plain18|34|50|101|152, \
    resnetD/plainD (CIFAR, D = 6n+2), cifar-resnetD, cifar-plainD, googlenet, googlenet-paper, \
    alexnet";

/// Returns one line listing the model families, for `--help` and error messages, e.g.
/// "resnet18|34|50|101|152[-a|-b|-c], plain18|34|50|101|152, resnetD/plainD (CIFAR, D = 6n+2),
/// cifar-resnetD, cifar-plainD, googlenet, googlenet-paper, alexnet".
pub fn model_names_help() -> &'static str {
    MODEL_NAMES_HELP
}

/// Builds the named model's variables under `path`; `in_channels` and `classes` come from the
/// data set.
///
/// Names:
/// - `resnet18`, `resnet34`, `resnet50`, `resnet101`, `resnet152`: ImageNet ResNets with
///   torchvision's keys, optionally suffixed with the shortcut option `-a`, `-b` (the default)
///   or `-c`; `plain18` ... `plain152` the same layers without shortcuts.
/// - `resnetD` / `plainD` with `D = 6n + 2` not an ImageNet depth, and `cifar-resnetD` /
///   `cifar-plainD` for any such `D` (needed for 50 and 152): the CIFAR networks.
/// - `googlenet`, `googlenet-paper`, `alexnet`.
///
/// # Errors
///
/// [`Error::Config`] naming the model and listing [`model_names_help`] for an unknown name or
/// a CIFAR depth that is not `6n + 2`.
pub fn build(
    path: &nn::Path,
    name: &str,
    in_channels: usize,
    classes: usize,
) -> Result<Box<dyn Network>> {
    if let Some(cifar) = name.strip_prefix("cifar-") {
        let spec = cifar_spec(name, cifar, in_channels, classes)?;
        return Ok(Box::new(CifarResNet::new(path, spec)));
    }
    match name {
        "googlenet" => {
            return Ok(Box::new(googlenet::GoogLeNet::new(
                path,
                googlenet::Variant::Torchvision,
                in_channels,
                classes,
            )))
        }
        "googlenet-paper" => {
            return Ok(Box::new(googlenet::GoogLeNet::new(
                path,
                googlenet::Variant::Paper,
                in_channels,
                classes,
            )))
        }
        "alexnet" => return Ok(Box::new(alexnet::AlexNet::new(path, in_channels, classes))),
        _ => {}
    }
    if let Some(spec) = ResNetSpec::from_name(name, in_channels, classes)? {
        return Ok(Box::new(ResNet::new(path, spec)));
    }
    if name.starts_with("resnet") || name.starts_with("plain") {
        let spec = cifar_spec(name, name, in_channels, classes)?;
        return Ok(Box::new(CifarResNet::new(path, spec)));
    }
    Err(unknown_model(name))
}

/// Parses the CIFAR part `cifar` of the model name `name`.
fn cifar_spec(
    name: &str,
    cifar: &str,
    in_channels: usize,
    classes: usize,
) -> Result<CifarResNetSpec> {
    CifarResNetSpec::from_name(cifar, in_channels, classes).map_err(|error| match error {
        Error::Config(message) => Error::Config(format!(
            "{message}; model {name:?} is not one of: {}",
            model_names_help()
        )),
        other => other,
    })
}

fn unknown_model(name: &str) -> Error {
    Error::Config(format!("unknown model {name:?}; expected one of: {}", model_names_help()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn logits_shape(name: &str) -> Vec<i64> {
        let vs = nn::VarStore::new(Device::Cpu);
        let network = build(&vs.root(), name, 1, 7).unwrap();
        let xs = Tensor::zeros([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        network.forward(&xs, false).logits.size()
    }

    #[test]
    fn build_resolves_cifar_and_imagenet_names() {
        for name in ["resnet20", "plain20", "cifar-resnet50", "cifar-plain152", "resnet18-a"] {
            assert_eq!(logits_shape(name), vec![2, 7], "model {name}");
        }
    }

    #[test]
    fn build_rejects_unknown_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        for name in ["vgg16", "resnet21", "cifar-resnet18", "plain18-b", "resnet18-d", ""] {
            let error = build(&vs.root(), name, 3, 10).unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, Error::Config(_)), "model {name:?}: {message}");
            assert!(message.contains(&format!("{name:?}")), "model {name:?}: {message}");
            assert!(message.contains(model_names_help()), "model {name:?}: {message}");
        }
    }

    #[test]
    fn cifar_name_of_imagenet_depth_is_cifar() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = build(&vs.root(), "cifar-resnet50", 3, 10).unwrap();
        let names = vs.variables();
        assert!(names.contains_key("layer3.7.conv1.weight"), "CIFAR resnet50 has 8 blocks");
        assert!(!names.contains_key("layer4.0.conv1.weight"), "CIFAR nets have 3 stages");
    }
}
