//! AlexNet in torchvision's layout ("one weird trick" variant of Krizhevsky 2014: 64, 192, 384,
//! 256, 256 filters, no local response norm) with torchvision's keys: `features.0`, `.3`, `.6`,
//! `.8`, `.10` for the convolutions and `classifier.1`, `.4`, `.6` for the fully connected
//! layers. 61,100,840 parameters at 1000 classes.
//!
//! Adaptive average pooling to 6x6 before the classifier lets inputs smaller than 224 pixels
//! through. The smallest side that the three max poolings accept is 63 pixels.

use tch::nn;
use tch::Tensor;

use super::layers::{pytorch_default, AdaptiveAvgPool2d, Conv2d, Linear, MaxPool2d};
use super::{Network, Output};

/// Dropout before the first two fully connected layers.
const DROPOUT: f64 = 0.5;

/// AlexNet; input NCHW f32, output logits N x classes.
#[derive(Debug)]
pub struct AlexNet {
    convs: Vec<Conv2d>,
    /// Max poolings after the first, second and fifth convolutions.
    pools: [MaxPool2d; 3],
    avgpool: AdaptiveAvgPool2d,
    fcs: [Linear; 3],
    /// Dropout rate before the first two fully connected layers in training.
    dropout: f64,
}

/// Index in `features` of the convolution, its filters, kernel, stride and padding.
const CONVS: [(usize, i64, i64, i64, i64); 5] = [
    (0, 64, 11, 4, 2),
    (3, 192, 5, 1, 2),
    (6, 384, 3, 1, 1),
    (8, 256, 3, 1, 1),
    (10, 256, 3, 1, 1),
];

impl AlexNet {
    /// Builds the network's variables under `path` with PyTorch's default initialisation
    /// (uniform on `±1 / sqrt(fan_in)` for weights and biases).
    pub fn new(path: &nn::Path, in_channels: usize, classes: usize) -> Self {
        let features = path / "features";
        let mut cin = in_channels as i64;
        let mut convs = Vec::new();
        for (index, cout, kernel, stride, padding) in CONVS {
            let init = pytorch_default(cin * kernel * kernel);
            let config = nn::ConvConfig {
                stride,
                padding,
                ws_init: init,
                bs_init: init,
                ..Default::default()
            };
            convs.push(Conv2d::new(&features / index, cin, cout, kernel, config));
            cin = cout;
        }
        let pool = |index: usize| MaxPool2d::new(&(&features / index), 3, 2, 0, false);

        let classifier = path / "classifier";
        AlexNet {
            convs,
            pools: [pool(2), pool(5), pool(12)],
            avgpool: AdaptiveAvgPool2d::new(&(path / "avgpool"), [6, 6]),
            fcs: [
                Linear::pytorch_default(&classifier / 1, 256 * 6 * 6, 4096),
                Linear::pytorch_default(&classifier / 4, 4096, 4096),
                Linear::pytorch_default(&classifier / 6, 4096, classes as i64),
            ],
            dropout: DROPOUT,
        }
    }
}

impl Network for AlexNet {
    fn forward(&self, xs: &Tensor, train: bool) -> Output {
        let [conv1, conv2, conv3, conv4, conv5] =
            [&self.convs[0], &self.convs[1], &self.convs[2], &self.convs[3], &self.convs[4]];
        let out = self.pools[0].forward(&conv1.forward(xs).relu());
        let out = self.pools[1].forward(&conv2.forward(&out).relu());
        let out = conv3.forward(&out).relu();
        let out = conv4.forward(&out).relu();
        let out = self.pools[2].forward(&conv5.forward(&out).relu());

        let out = self.avgpool.forward(&out).flatten(1, -1);
        let out = self.fcs[0].forward(&out.dropout(self.dropout, train)).relu();
        let out = self.fcs[1].forward(&out.dropout(self.dropout, train)).relu();
        Output::logits(self.fcs[2].forward(&out))
    }

    fn set_dropout(&mut self, rate: f64) {
        self.dropout = rate;
    }
}
