//! The CIFAR ResNets of He et al., "Deep Residual Learning for Image Recognition" (2015),
//! section 4.2, and the plain networks they are compared with.
//!
//! A 3x3 convolution with 16 filters, then three stages of `n` basic blocks with 16, 32 and 64
//! filters on feature maps that halve at stages 2 and 3 (stride-2 first convolution), global
//! average pooling and a fully connected layer: `6n + 2` weighted layers (20, 32, 44, 56, 110).
//! Shortcuts are option A: identity, or stride-2 subsampling with the new channels zero-padded,
//! so the residual networks have exactly the parameters of the plain ones.
//! Variable names follow torchvision's ResNet keys (`conv1`, `bn1`, `layer1.0.conv1`, `fc`).

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{
    he_normal_fan_out, zero_padded_shortcut, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear,
};
use crate::{Error, Result};

/// The deepest CIFAR network of He et al. 2015 (section 4.2, ResNet-1202).
pub const MAX_DEPTH: usize = 1202;

/// Depth, width of the input and classes of a CIFAR-style ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CifarResNetSpec {
    /// Weighted layers, `6n + 2`.
    pub depth: usize,
    /// Channels of the input images (1 for Fashion-MNIST, 3 for CIFAR).
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
    /// Whether blocks add their shortcut; `false` builds the plain baseline.
    pub residual: bool,
}

impl CifarResNetSpec {
    /// Parses a model name: `resnetD` or `plainD` with `D = 6n + 2`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for another name or a depth that is not `6n + 2` with `n >= 1`.
    pub fn from_name(name: &str, in_channels: usize, classes: usize) -> Result<Self> {
        let (residual, digits) = if let Some(d) = name.strip_prefix("resnet") {
            (true, d)
        } else if let Some(d) = name.strip_prefix("plain") {
            (false, d)
        } else {
            return Err(Error::Config(format!(
                "unknown model {name:?}: expected resnetD or plainD with D = 6n + 2 (20, 32, 44, 56, 110)"
            )));
        };
        let depth: usize = digits.parse().map_err(|_| {
            Error::Config(format!("model {name:?}: depth {digits:?} is not a number"))
        })?;
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(Error::Config(format!(
                "model {name:?}: depth {depth} is not 6n + 2 with n >= 1 (20, 32, 44, 56, 110)"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(Error::Config(format!(
                "model {name:?}: depth {depth} exceeds {MAX_DEPTH}, the deepest network of the \
                 paper"
            )));
        }
        Ok(CifarResNetSpec { depth, in_channels, classes, residual })
    }

    /// Blocks per stage, `n`.
    pub fn blocks_per_stage(&self) -> usize {
        (self.depth - 2) / 6
    }
}

#[derive(Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    stride: i64,
    extra_channels: i64,
    residual: bool,
}

/// A CIFAR-style ResNet or plain network; input NCHW f32, output logits N x classes.
#[derive(Debug)]
pub struct CifarResNet {
    spec: CifarResNetSpec,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
    /// Dropout rate before `fc` in training (0 in the paper).
    dropout: f64,
}

fn conv3x3(path: nn::Path, cin: i64, cout: i64, stride: i64) -> Conv2d {
    // He initialisation (normal, fan-out), as in the paper and torchvision.
    let ws_init = he_normal_fan_out();
    let config = nn::ConvConfig { stride, padding: 1, bias: false, ws_init, ..Default::default() };
    Conv2d::new(path, cin, cout, 3, config)
}

fn batch_norm(path: nn::Path, channels: i64) -> BatchNorm2d {
    BatchNorm2d::new(path, channels, 1e-5)
}

impl CifarResNet {
    /// Builds the network's variables under `path`.
    pub fn new(path: &nn::Path, spec: CifarResNetSpec) -> Self {
        let conv1 = conv3x3(path / "conv1", spec.in_channels as i64, 16, 1);
        let bn1 = batch_norm(path / "bn1", 16);

        let mut blocks = Vec::new();
        let mut cin = 16i64;
        for (stage, cout) in [16i64, 32, 64].into_iter().enumerate() {
            for i in 0..spec.blocks_per_stage() {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let p = path / format!("layer{}", stage + 1) / i.to_string();
                blocks.push(BasicBlock {
                    conv1: conv3x3(&p / "conv1", cin, cout, stride),
                    bn1: batch_norm(&p / "bn1", cout),
                    conv2: conv3x3(&p / "conv2", cout, cout, 1),
                    bn2: batch_norm(&p / "bn2", cout),
                    stride,
                    extra_channels: cout - cin,
                    residual: spec.residual,
                });
                cin = cout;
            }
        }
        let avgpool = AdaptiveAvgPool2d::new(&(path / "avgpool"), [1, 1]);
        let fc = Linear::new(path / "fc", 64, spec.classes as i64, Default::default());
        CifarResNet { spec, conv1, bn1, blocks, avgpool, fc, dropout: 0.0 }
    }

    /// Returns the depth, input channels, classes and shortcut choice.
    pub fn spec(&self) -> CifarResNetSpec {
        self.spec
    }

    /// Sets the dropout rate applied before the classifier in training.
    pub fn set_dropout(&mut self, rate: f64) {
        self.dropout = rate;
    }
}

impl BasicBlock {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let out = self.bn1.forward_t(&self.conv1.forward(x), train).relu();
        let out = self.bn2.forward_t(&self.conv2.forward(&out), train);
        if !self.residual {
            return out.relu();
        }

        // Option A: keep every other row and column, zero-pad the new channels evenly.
        let shortcut = zero_padded_shortcut(x, self.stride, self.extra_channels);
        (out + shortcut).relu()
    }
}

impl ModuleT for CifarResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut out = self.bn1.forward_t(&self.conv1.forward(x), train).relu();
        for block in &self.blocks {
            out = block.forward(&out, train);
        }
        self.fc.forward(&self.avgpool.forward(&out).flatten(1, -1).dropout(self.dropout, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn parameters(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    #[test]
    fn resnet20_has_paper_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = CifarResNetSpec::from_name("resnet20", 3, 10).unwrap();
        let _ = CifarResNet::new(&vs.root(), spec);
        // 0.27M in the paper's table 6: 269,722 with BN affine parameters and the fc bias.
        assert_eq!(parameters(&vs), 269_722);
    }

    #[test]
    fn depth_names_parse_and_reject() {
        assert_eq!(CifarResNetSpec::from_name("resnet56", 1, 10).unwrap().blocks_per_stage(), 9);
        assert!(!CifarResNetSpec::from_name("plain20", 1, 10).unwrap().residual);
        assert!(CifarResNetSpec::from_name("resnet21", 1, 10).is_err());
        assert!(CifarResNetSpec::from_name("vgg16", 1, 10).is_err());
        assert!(CifarResNetSpec::from_name("resnet", 1, 10).is_err());
        assert_eq!(
            CifarResNetSpec::from_name("resnet1202", 1, 10).unwrap().blocks_per_stage(),
            200
        );
        let message = CifarResNetSpec::from_name("resnet1208", 1, 10).unwrap_err().to_string();
        assert!(message.contains("depth 1208 exceeds 1202"), "{message}");
    }

    #[test]
    fn output_shape_for_one_channel_28px() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = CifarResNetSpec::from_name("resnet20", 1, 10).unwrap();
        let net = CifarResNet::new(&vs.root(), spec);
        let out = net.forward_t(&Tensor::zeros([4, 1, 28, 28], (Kind::Float, Device::Cpu)), false);
        assert_eq!(out.size(), vec![4, 10]);
    }

    #[test]
    fn plain_and_residual_differ_with_same_weights() {
        tch::manual_seed(1);
        let vs_res = nn::VarStore::new(Device::Cpu);
        let res =
            CifarResNet::new(&vs_res.root(), CifarResNetSpec::from_name("resnet8", 3, 10).unwrap());
        let mut vs_plain = nn::VarStore::new(Device::Cpu);
        let plain = CifarResNet::new(
            &vs_plain.root(),
            CifarResNetSpec::from_name("plain8", 3, 10).unwrap(),
        );
        vs_plain.copy(&vs_res).unwrap();

        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let a = res.forward_t(&x, false);
        let b = plain.forward_t(&x, false);
        assert!(f64::try_from((a - b).abs().max()).unwrap() > 1e-4);
    }
}
