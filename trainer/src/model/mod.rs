//! Network definitions.

mod resnet_cifar;

pub use resnet_cifar::{CifarResNet, CifarResNetSpec};
