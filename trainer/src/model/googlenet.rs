//! GoogLeNet (Inception v1) of Szegedy et al., "Going Deeper with Convolutions" (2014), in two
//! variants with torchvision's keys (`conv1.conv`, `inception3a.branch2.1.conv`, `aux1.fc1`).
//!
//! - [`Variant::Torchvision`] (`googlenet`): torchvision's `googlenet(aux_logits=True)`. Each
//!   convolution has no bias and is followed by batch norm (eps 1e-3), and the third branch of
//!   an inception module uses a 3x3 convolution where the paper has 5x5. There is no local
//!   response norm. 13,004,888 parameters at 1000 classes, 6,624,904 without the auxiliary
//!   classifiers.
//! - [`Variant::Paper`] (`googlenet-paper`): the paper's table 1. Convolutions have a bias and
//!   no batch norm, the third branch uses 5x5, and a local response norm (size 5, alpha 1e-4,
//!   beta 0.75, k 1) follows the first max pooling and the 3x3 convolution of the stem.
//!
//! Both have two auxiliary classifiers, after inception 4a and 4d: adaptive average pooling to
//! 4x4 (the paper's 5x5 stride-3 pooling on 14x14 maps), a 1x1 convolution with 128 filters, a
//! fully connected layer of 1024, dropout 0.7 and the classifier. They run only in training
//! passes; their losses are weighted by 0.3. The main classifier has dropout 0.4.

use tch::nn;
use tch::Tensor;

use super::layers::{
    pytorch_default, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, LocalResponseNorm, MaxPool2d,
};
use super::{Network, Output};

/// Weight of each auxiliary classifier's loss, from the paper.
const AUX_WEIGHT: f64 = 0.3;
/// Dropout before the main classifier.
const DROPOUT: f64 = 0.4;
/// Dropout in the auxiliary classifiers.
const AUX_DROPOUT: f64 = 0.7;

/// GoogLeNet variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// torchvision's: batch norm after every convolution, 3x3 in the third branch.
    Torchvision,
    /// The paper's: convolutions with bias, 5x5 in the third branch, local response norm.
    Paper,
}

/// Returns the initialisation of a convolution or fully connected weight with `fan_in`
/// inputs per output.
fn weight_init(variant: Variant, fan_in: i64) -> nn::Init {
    match variant {
        // torchvision draws trunc_normal_(std=0.01, a=-2, b=2); the cut at +-2 lies 200
        // standard deviations out, so a plain normal draws the same distribution.
        Variant::Torchvision => nn::Init::Randn { mean: 0.0, stdev: 0.01 },
        // Without batch norm, std 0.01 shrinks the signal through 22 layers. The paper variant
        // uses Caffe's "xavier" filler (uniform on +-sqrt(3 / fan_in)), as BVLC's bvlc_googlenet
        // replication of the paper does.
        Variant::Paper => {
            let bound = (3.0 / fan_in as f64).sqrt();
            nn::Init::Uniform { lo: -bound, up: bound }
        }
    }
}

/// A convolution followed by batch norm (torchvision) or with a bias (paper), then ReLU.
#[derive(Debug)]
struct BasicConv2d {
    conv: Conv2d,
    bn: Option<BatchNorm2d>,
}

impl BasicConv2d {
    fn new(
        path: nn::Path,
        variant: Variant,
        cin: i64,
        cout: i64,
        kernel: i64,
        stride: i64,
    ) -> Self {
        let config = nn::ConvConfig {
            stride,
            padding: kernel / 2,
            bias: variant == Variant::Paper,
            ws_init: weight_init(variant, cin * kernel * kernel),
            // bvlc_googlenet starts every convolution bias at 0.2.
            bs_init: nn::Init::Const(0.2),
            ..Default::default()
        };
        let conv = Conv2d::new(&path / "conv", cin, cout, kernel, config);
        let bn =
            (variant == Variant::Torchvision).then(|| BatchNorm2d::new(&path / "bn", cout, 1e-3));
        BasicConv2d { conv, bn }
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = self.conv.forward(xs);
        // In place, as torchvision does: neither backward pass needs the value it overwrites,
        // and a fresh activation-sized buffer per layer costs page faults.
        let mut out = match &self.bn {
            Some(bn) => bn.forward_t(&out, train),
            None => out,
        };
        out.relu_()
    }
}

/// Filters of an inception module: 1x1; 3x3 reduce, 3x3; 5x5 reduce, 5x5; pool projection.
pub(crate) type Filters = [i64; 6];

/// An inception module: four branches concatenated along channels.
#[derive(Debug)]
pub(crate) struct Inception {
    branch1: BasicConv2d,
    branch2: [BasicConv2d; 2],
    branch3: [BasicConv2d; 2],
    pool: MaxPool2d,
    branch4: BasicConv2d,
}

impl Inception {
    /// Builds a module with `filters` under `path`.
    pub(crate) fn new(path: nn::Path, variant: Variant, cin: i64, filters: Filters) -> Self {
        let [f1, f3r, f3, f5r, f5, fp] = filters;
        let wide = match variant {
            Variant::Torchvision => 3,
            Variant::Paper => 5,
        };
        let basic = |path: nn::Path, cin, cout, kernel| {
            BasicConv2d::new(path, variant, cin, cout, kernel, 1)
        };
        let (branch2, branch3, branch4) = (&path / "branch2", &path / "branch3", &path / "branch4");
        Inception {
            branch1: basic(&path / "branch1", cin, f1, 1),
            branch2: [basic(&branch2 / 0, cin, f3r, 1), basic(&branch2 / 1, f3r, f3, 3)],
            branch3: [basic(&branch3 / 0, cin, f5r, 1), basic(&branch3 / 1, f5r, f5, wide)],
            pool: MaxPool2d::new(&(&branch4 / 0), 3, 1, 1, true),
            branch4: basic(&branch4 / 1, cin, fp, 1),
        }
    }

    /// Applies the module.
    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let b1 = self.branch1.forward(xs, train);
        let b2 = self.branch2[1].forward(&self.branch2[0].forward(xs, train), train);
        let b3 = self.branch3[1].forward(&self.branch3[0].forward(xs, train), train);
        let b4 = self.branch4.forward(&self.pool.forward(xs), train);
        Tensor::cat(&[b1, b2, b3, b4], 1)
    }
}

#[derive(Debug)]
struct InceptionAux {
    pool: AdaptiveAvgPool2d,
    conv: BasicConv2d,
    fc1: Linear,
    fc2: Linear,
}

impl InceptionAux {
    fn new(path: nn::Path, variant: Variant, cin: i64, classes: i64) -> Self {
        InceptionAux {
            pool: AdaptiveAvgPool2d::new(&(&path / "avgpool"), [4, 4]),
            conv: BasicConv2d::new(&path / "conv", variant, cin, 128, 1, 1),
            fc1: linear(&path / "fc1", variant, 2048, 1024),
            fc2: linear(&path / "fc2", variant, 1024, classes),
        }
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = self.conv.forward(&self.pool.forward(xs), train).flatten(1, -1);
        let out = self.fc1.forward(&out).relu().dropout(AUX_DROPOUT, train);
        self.fc2.forward(&out)
    }
}

/// Builds a fully connected layer whose weights start as the variant's convolutions do and whose
/// bias starts as PyTorch's default.
fn linear(path: nn::Path, variant: Variant, cin: i64, cout: i64) -> Linear {
    let config = nn::LinearConfig {
        ws_init: weight_init(variant, cin),
        bs_init: Some(pytorch_default(cin)),
        bias: true,
    };
    Linear::new(path, cin, cout, config)
}

/// GoogLeNet with its two auxiliary classifiers; input NCHW f32, output logits N x classes.
#[derive(Debug)]
pub struct GoogLeNet {
    variant: Variant,
    stem: Vec<BasicConv2d>,
    maxpool1: MaxPool2d,
    lrn1: Option<LocalResponseNorm>,
    lrn2: Option<LocalResponseNorm>,
    maxpool2: MaxPool2d,
    inception3: [Inception; 2],
    maxpool3: MaxPool2d,
    inception4: [Inception; 5],
    maxpool4: MaxPool2d,
    inception5: [Inception; 2],
    aux1: InceptionAux,
    aux2: InceptionAux,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
    /// Dropout rate before `fc` in training.
    dropout: f64,
}

impl GoogLeNet {
    /// Builds the network's variables under `path`. The torchvision variant initialises
    /// convolution and fully connected weights from a normal with std 0.01 and batch norms
    /// with `gamma = 1`, `beta = 0`, as torchvision's `init_weights=True`.
    pub fn new(path: &nn::Path, variant: Variant, in_channels: usize, classes: usize) -> Self {
        let classes = classes as i64;
        let basic = |name: &str, cin, cout, kernel, stride| {
            BasicConv2d::new(path / name, variant, cin, cout, kernel, stride)
        };
        let stem = vec![
            basic("conv1", in_channels as i64, 64, 7, 2),
            basic("conv2", 64, 64, 1, 1),
            basic("conv3", 64, 192, 3, 1),
        ];
        let lrn = |name: &str| LocalResponseNorm::new(&(path / name), 5, 1e-4, 0.75, 1.0);
        let (lrn1, lrn2) = match variant {
            Variant::Torchvision => (None, None),
            Variant::Paper => (Some(lrn("lrn1")), Some(lrn("lrn2"))),
        };
        let maxpool = |name: &str, kernel| MaxPool2d::new(&(path / name), kernel, 2, 0, true);
        let inception =
            |name: &str, cin, filters| Inception::new(path / name, variant, cin, filters);

        GoogLeNet {
            variant,
            stem,
            maxpool1: maxpool("maxpool1", 3),
            lrn1,
            lrn2,
            maxpool2: maxpool("maxpool2", 3),
            inception3: [
                inception("inception3a", 192, [64, 96, 128, 16, 32, 32]),
                inception("inception3b", 256, [128, 128, 192, 32, 96, 64]),
            ],
            maxpool3: maxpool("maxpool3", 3),
            inception4: [
                inception("inception4a", 480, [192, 96, 208, 16, 48, 64]),
                inception("inception4b", 512, [160, 112, 224, 24, 64, 64]),
                inception("inception4c", 512, [128, 128, 256, 24, 64, 64]),
                inception("inception4d", 512, [112, 144, 288, 32, 64, 64]),
                inception("inception4e", 528, [256, 160, 320, 32, 128, 128]),
            ],
            maxpool4: maxpool("maxpool4", 2),
            inception5: [
                inception("inception5a", 832, [256, 160, 320, 32, 128, 128]),
                inception("inception5b", 832, [384, 192, 384, 48, 128, 128]),
            ],
            aux1: InceptionAux::new(path / "aux1", variant, 512, classes),
            aux2: InceptionAux::new(path / "aux2", variant, 528, classes),
            avgpool: AdaptiveAvgPool2d::new(&(path / "avgpool"), [1, 1]),
            fc: linear(path / "fc", variant, 1024, classes),
            dropout: DROPOUT,
        }
    }

    /// Returns the variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }
}

impl Network for GoogLeNet {
    fn forward(&self, xs: &Tensor, train: bool) -> Output {
        let [conv1, conv2, conv3] = [&self.stem[0], &self.stem[1], &self.stem[2]];
        let mut out = self.maxpool1.forward(&conv1.forward(xs, train));
        if let Some(lrn) = &self.lrn1 {
            out = lrn.forward(&out);
        }
        out = conv3.forward(&conv2.forward(&out, train), train);
        if let Some(lrn) = &self.lrn2 {
            out = lrn.forward(&out);
        }
        out = self.maxpool2.forward(&out);
        for module in &self.inception3 {
            out = module.forward(&out, train);
        }
        out = self.maxpool3.forward(&out);

        let mut aux = Vec::new();
        for (i, module) in self.inception4.iter().enumerate() {
            out = module.forward(&out, train);
            if train && i == 0 {
                aux.push(self.aux1.forward(&out, train));
            }
            if train && i == 3 {
                aux.push(self.aux2.forward(&out, train));
            }
        }
        out = self.maxpool4.forward(&out);
        for module in &self.inception5 {
            out = module.forward(&out, train);
        }

        let pooled = self.avgpool.forward(&out).flatten(1, -1).dropout(self.dropout, train);
        Output { logits: self.fc.forward(&pooled), aux }
    }

    fn aux_weight(&self) -> f64 {
        AUX_WEIGHT
    }

    fn set_dropout(&mut self, rate: f64) {
        self.dropout = rate;
    }
}
