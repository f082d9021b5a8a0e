//! The ImageNet ResNets of He et al., "Deep Residual Learning for Image Recognition" (2015),
//! in torchvision's layout, and the plain networks they are compared with.
//!
//! The stem is a 7x7 stride-2 convolution with 64 filters and a 3x3 stride-2 max pooling. Four
//! stages of blocks with 64, 128, 256 and 512 filters follow, and stages 2 to 4 halve the
//! feature map in their first block. Adaptive average pooling to 1x1 and a fully connected
//! layer end the network. ResNet-18 and 34 use basic blocks (two 3x3 convolutions). ResNet-50,
//! 101 and 152 use bottleneck blocks (1x1, 3x3, 1x1 with 4 times the filters out) with the
//! stride on the 3x3 convolution. That is torchvision's "v1.5"; the paper strides the first
//! 1x1 convolution instead.
//!
//! Shortcut options of the paper: A adds the input, subsampled and zero-padded to the new
//! channels, so it has no variables; B projects it with a 1x1 convolution and batch norm (key
//! `downsample`) only where the shape changes, as torchvision does; C projects it in every
//! block. With option B the keys and parameter counts are exactly torchvision's, so weights
//! can be exchanged.

use tch::nn;
use tch::Tensor;

use super::layers::{he_normal_fan_out, zero_padded_shortcut, BatchNorm2d, Conv2d, Linear};
use super::layers::{AdaptiveAvgPool2d, MaxPool2d};
use super::{Network, Output};
use crate::Result;

/// Epsilon of every batch norm, PyTorch's default.
const BN_EPS: f64 = 1e-5;

/// Shortcut connection of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// No shortcut: the plain network.
    Plain,
    /// Option A: identity, or the input subsampled by the stride with zero channels added.
    A,
    /// Option B: identity, or a 1x1 convolution and batch norm where the shape changes.
    B,
    /// Option C: a 1x1 convolution and batch norm in every block.
    C,
}

/// Depth, shortcut, input channels and classes of an ImageNet ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetSpec {
    /// Weighted layers: 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// Shortcut connection of the blocks.
    pub shortcut: Shortcut,
    /// Channels of the input images.
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
}

/// Depths of the ImageNet networks.
pub const DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

impl ResNetSpec {
    /// Parses `resnetD[-a|-b|-c]` or `plainD` with `D` one of [`DEPTHS`].
    ///
    /// Returns `Ok(None)` for another name, including `resnetD` with another depth, which
    /// names a CIFAR network.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] for an ImageNet depth with an unknown suffix, or a suffix on a
    /// plain network.
    pub fn from_name(name: &str, in_channels: usize, classes: usize) -> Result<Option<Self>> {
        let (residual, rest) = if let Some(rest) = name.strip_prefix("resnet") {
            (true, rest)
        } else if let Some(rest) = name.strip_prefix("plain") {
            (false, rest)
        } else {
            return Ok(None);
        };
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (digits, suffix) = rest.split_at(digits_end);
        let Some(depth) = digits.parse().ok().filter(|depth| DEPTHS.contains(depth)) else {
            return Ok(None);
        };
        let shortcut = match (residual, suffix) {
            (false, "") => Shortcut::Plain,
            (true, "" | "-b") => Shortcut::B,
            (true, "-a") => Shortcut::A,
            (true, "-c") => Shortcut::C,
            _ => return Err(super::unknown_model(name)),
        };
        Ok(Some(ResNetSpec { depth, shortcut, in_channels, classes }))
    }

    /// Returns whether the blocks are bottlenecks (depth 50 and more).
    pub fn bottleneck(&self) -> bool {
        self.depth >= 50
    }

    /// Blocks in each of the four stages.
    pub fn blocks_per_stage(&self) -> [usize; 4] {
        match self.depth {
            18 => [2, 2, 2, 2],
            34 | 50 => [3, 4, 6, 3],
            101 => [3, 4, 23, 3],
            152 => [3, 8, 36, 3],
            depth => panic!("ResNetSpec depth {depth} is not one of {DEPTHS:?}"),
        }
    }
}

fn conv(path: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64) -> Conv2d {
    let config = nn::ConvConfig {
        stride,
        padding: kernel / 2,
        bias: false,
        ws_init: he_normal_fan_out(),
        ..Default::default()
    };
    Conv2d::new(path, cin, cout, kernel, config)
}

/// A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1) residual block, or its plain counterpart.
#[derive(Debug)]
pub(crate) struct Block {
    /// Convolutions with their batch norms; ReLU follows each but the last.
    layers: Vec<(Conv2d, BatchNorm2d)>,
    /// The projection of options B and C (`downsample.0`, `downsample.1`).
    projection: Option<(Conv2d, BatchNorm2d)>,
    shortcut: Shortcut,
    stride: i64,
    extra_channels: i64,
}

impl Block {
    /// Builds a block of `spec`'s kind under `path`: `cin` input channels, `planes` inner ones.
    pub(crate) fn new(
        path: nn::Path,
        spec: &ResNetSpec,
        cin: i64,
        planes: i64,
        stride: i64,
    ) -> Self {
        let layer = |index: usize, cin: i64, cout: i64, kernel: i64, stride: i64| {
            (
                conv(&path / format!("conv{index}"), cin, cout, kernel, stride),
                BatchNorm2d::new(&path / format!("bn{index}"), cout, BN_EPS),
            )
        };
        let (layers, cout) = if spec.bottleneck() {
            let cout = planes * 4;
            let layers = vec![
                layer(1, cin, planes, 1, 1),
                layer(2, planes, planes, 3, stride),
                layer(3, planes, cout, 1, 1),
            ];
            (layers, cout)
        } else {
            (vec![layer(1, cin, planes, 3, stride), layer(2, planes, planes, 3, 1)], planes)
        };

        let shape_changes = stride != 1 || cin != cout;
        let projected = match spec.shortcut {
            Shortcut::Plain | Shortcut::A => false,
            Shortcut::B => shape_changes,
            Shortcut::C => true,
        };
        let projection = projected.then(|| {
            let downsample = &path / "downsample";
            (
                conv(&downsample / "0", cin, cout, 1, stride),
                BatchNorm2d::new(&downsample / "1", cout, BN_EPS),
            )
        });
        Block { layers, projection, shortcut: spec.shortcut, stride, extra_channels: cout - cin }
    }

    /// Applies the block.
    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = xs.shallow_clone();
        let last = self.layers.len() - 1;
        for (i, (conv, bn)) in self.layers.iter().enumerate() {
            out = bn.forward_t(&conv.forward(&out), train);
            if i < last {
                // In place, as torchvision does: batch norm's backward pass needs its input,
                // not its output.
                out = out.relu_();
            }
        }
        let shortcut = match (&self.projection, self.shortcut) {
            (_, Shortcut::Plain) => return out.relu_(),
            (Some((conv, bn)), _) => bn.forward_t(&conv.forward(xs), train),
            (None, Shortcut::A) => zero_padded_shortcut(xs, self.stride, self.extra_channels),
            (None, _) => xs.shallow_clone(),
        };
        out += shortcut;
        out.relu_()
    }
}

/// An ImageNet ResNet or plain network; input NCHW f32, output logits N x classes.
#[derive(Debug)]
pub struct ResNet {
    spec: ResNetSpec,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    maxpool: MaxPool2d,
    blocks: Vec<Block>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
    /// Dropout rate before `fc` in training (0 in the paper).
    dropout: f64,
}

impl ResNet {
    /// Builds the network's variables under `path`: convolutions He-normal (fan-out), batch
    /// norms `gamma = 1`, `beta = 0`, the fully connected layer PyTorch's default, as
    /// torchvision initialises them.
    pub fn new(path: &nn::Path, spec: ResNetSpec) -> Self {
        let conv1 = conv(path / "conv1", spec.in_channels as i64, 64, 7, 2);
        let bn1 = BatchNorm2d::new(path / "bn1", 64, BN_EPS);
        let maxpool = MaxPool2d::new(&(path / "maxpool"), 3, 2, 1, false);

        let mut blocks = Vec::new();
        let mut cin = 64;
        for (stage, count) in spec.blocks_per_stage().into_iter().enumerate() {
            let planes = 64 << stage;
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let block_path = path / format!("layer{}", stage + 1) / i;
                let block = Block::new(block_path, &spec, cin, planes, stride);
                cin += block.extra_channels;
                blocks.push(block);
            }
        }

        let avgpool = AdaptiveAvgPool2d::new(&(path / "avgpool"), [1, 1]);
        let fc = Linear::pytorch_default(path / "fc", cin, spec.classes as i64);
        ResNet { spec, conv1, bn1, maxpool, blocks, avgpool, fc, dropout: 0.0 }
    }

    /// Returns the depth, shortcut, input channels and classes.
    pub fn spec(&self) -> ResNetSpec {
        self.spec
    }
}

impl Network for ResNet {
    fn forward(&self, xs: &Tensor, train: bool) -> Output {
        let out = self.bn1.forward_t(&self.conv1.forward(xs), train).relu_();
        let mut out = self.maxpool.forward(&out);
        for block in &self.blocks {
            out = block.forward(&out, train);
        }
        let pooled = self.avgpool.forward(&out).flatten(1, -1).dropout(self.dropout, train);
        Output::logits(self.fc.forward(&pooled))
    }

    fn set_dropout(&mut self, rate: f64) {
        self.dropout = rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn spec(name: &str) -> ResNetSpec {
        ResNetSpec::from_name(name, 3, 10).unwrap().unwrap()
    }

    #[test]
    fn names_parse_to_shortcut_options() {
        assert_eq!(spec("resnet50").shortcut, Shortcut::B);
        assert_eq!(spec("resnet50-b").shortcut, Shortcut::B);
        assert_eq!(spec("resnet18-a").shortcut, Shortcut::A);
        assert_eq!(spec("resnet152-c").shortcut, Shortcut::C);
        assert_eq!(spec("plain34").shortcut, Shortcut::Plain);
        assert_eq!(spec("resnet101").depth, 101);
    }

    #[test]
    fn cifar_depths_are_not_imagenet_names() {
        for name in ["resnet20", "plain56", "resnet110", "vgg16", "resnet"] {
            assert_eq!(ResNetSpec::from_name(name, 3, 10).unwrap(), None, "{name}");
        }
    }

    #[test]
    fn bad_suffixes_are_rejected() {
        for name in ["resnet18-d", "plain18-a", "resnet50x"] {
            assert!(ResNetSpec::from_name(name, 3, 10).is_err(), "{name}");
        }
    }

    #[test]
    fn four_channel_input_gives_classes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net =
            ResNet::new(&vs.root(), ResNetSpec::from_name("resnet18", 4, 5).unwrap().unwrap());
        let xs = Tensor::randn([2, 4, 40, 56], (Kind::Float, Device::Cpu));
        let out = net.forward(&xs, true);
        assert_eq!(out.logits.size(), vec![2, 5]);
        assert!(out.aux.is_empty());
    }
}
