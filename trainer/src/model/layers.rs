//! Layers shared by the networks: wrappers over tch's layers that report each output to the
//! summary recorder, the recorder itself, and the weight initialisations the networks use.
//!
//! A wrapper stores the dotted variable path it was built under (`layer1.0.conv1`), which is
//! the layer name in a [`Summary`](super::Summary). Recording is off except inside
//! [`Recording`], so a training forward pass only pays one thread-local check per layer. A
//! recording can also pass each layer's output tensor to a hook, which the inspection of a
//! checkpoint uses for activation statistics.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::sync::Arc;

use tch::nn::{self, Module};
use tch::Tensor;

use super::summary::LayerRow;
use crate::dist::ProcessGroup;
use crate::error::{Error, Result};

/// A function that receives the row and the output tensor of every recorded layer.
///
/// It runs while the recorder is borrowed, so it must not run a recorded layer itself.
pub(crate) type OutputHook = Box<dyn FnMut(&LayerRow, &Tensor)>;

/// The rows recorded so far on this thread, and the hook that receives each output.
struct Recorder {
    rows: Vec<LayerRow>,
    hook: Option<OutputHook>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Collects a row per recorded layer on this thread while it is alive.
pub(crate) struct Recording(());

impl Recording {
    /// Starts recording on this thread, dropping the rows of an unfinished recording.
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts recording on this thread and passes each layer's output tensor to `hook` as the
    /// layer runs, before its row is stored.
    pub(crate) fn start_with_outputs(hook: OutputHook) -> Self {
        Self::start_with(Some(hook))
    }

    fn start_with(hook: Option<OutputHook>) -> Self {
        RECORDER
            .with(|recorder| *recorder.borrow_mut() = Some(Recorder { rows: Vec::new(), hook }));
        Recording(())
    }

    /// Stops recording and returns the rows in the order the layers ran.
    pub(crate) fn finish(self) -> Vec<LayerRow> {
        let recorder = RECORDER.with(|recorder| recorder.borrow_mut().take());
        recorder.map(|recorder| recorder.rows).unwrap_or_default()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDER.with(|recorder| *recorder.borrow_mut() = None);
    }
}

fn recording() -> bool {
    RECORDER.with(|recorder| recorder.borrow().is_some())
}

fn record(name: &str, kind: &str, output: &Tensor, params: u64, macs: u64) {
    RECORDER.with(|recorder| {
        if let Some(recorder) = recorder.borrow_mut().as_mut() {
            let row = LayerRow {
                name: name.to_owned(),
                kind: kind.to_owned(),
                output: output.size(),
                params,
                macs,
            };
            if let Some(hook) = recorder.hook.as_mut() {
                hook(&row, output);
            }
            recorder.rows.push(row);
        }
    });
}

/// Returns the dotted name of `path`, as torchvision's state-dict keys spell it.
pub(crate) fn path_name(path: &nn::Path) -> String {
    path.components().collect::<Vec<_>>().join(".")
}

fn numel(tensor: &Tensor) -> u64 {
    tensor.numel() as u64
}

/// He (Kaiming) normal initialisation with fan-out and ReLU gain, as torchvision's ResNet.
pub(crate) fn he_normal_fan_out() -> nn::Init {
    nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    }
}

/// PyTorch's default for the weight and bias of `Conv2d` and `Linear` (PyTorch 2.x
/// `reset_parameters`): uniform on `±1 / sqrt(fan_in)`. tch's own default is wider
/// (`±sqrt(6 / fan_in)`).
pub(crate) fn pytorch_default(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// A 2-D convolution; records its output, parameters and multiply-adds
/// (`output elements * in_channels / groups * kh * kw`).
#[derive(Debug)]
pub struct Conv2d {
    inner: nn::Conv2D,
    name: String,
}

impl Conv2d {
    /// Builds a `kernel x kernel` convolution under `path` (variables `weight` and, when
    /// `config.bias`, `bias`).
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(
        path: P,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        config: nn::ConvConfig,
    ) -> Self {
        let path = path.borrow();
        let inner = nn::conv2d(path, in_channels, out_channels, kernel, config);
        Conv2d { inner, name: path_name(path) }
    }

    /// Applies the convolution.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let out = xs.apply(&self.inner);
        if recording() {
            let weight = self.inner.ws.size();
            let per_output: i64 = weight[1..].iter().product();
            let params = numel(&self.inner.ws) + self.inner.bs.as_ref().map_or(0, numel);
            record(&self.name, "Conv2d", &out, params, numel(&out) * per_output as u64);
        }
        out
    }
}

/// A 2-D batch normalisation with `gamma = 1`, `beta = 0` at start; records 0 multiply-adds.
#[derive(Debug)]
pub struct BatchNorm2d {
    inner: nn::BatchNorm,
    eps: f64,
    name: String,
}

/// PyTorch's batch-norm momentum, which tch's default configuration uses too.
const BN_MOMENTUM: f64 = 0.1;

thread_local! {
    /// The group whose ranks share batch statistics, while a [`SyncBatchNorm`] guard lives.
    static SYNC_GROUP: RefCell<Option<Arc<ProcessGroup>>> = const { RefCell::new(None) };
    /// The first failure of a synchronised normalisation since the last [`SyncBatchNorm::check`].
    static SYNC_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Makes every [`BatchNorm2d`] in training mode on this thread normalise with statistics over
/// all ranks of a group while the guard lives (PyTorch's `SyncBatchNorm`).
///
/// A layer's forward cannot return an error, so a failed collective is kept and the plain
/// local normalisation used; [`SyncBatchNorm::check`] returns the kept error.
pub struct SyncBatchNorm(());

impl SyncBatchNorm {
    /// Turns synchronised statistics on for this thread until the guard drops.
    pub fn enable(group: Arc<ProcessGroup>) -> SyncBatchNorm {
        SYNC_GROUP.with(|slot| *slot.borrow_mut() = Some(group));
        SyncBatchNorm(())
    }

    /// Returns the first error of a synchronised normalisation on this thread since the last
    /// call, and clears it.
    ///
    /// # Errors
    ///
    /// The kept [`Error::Distributed`].
    pub fn check() -> Result<()> {
        match SYNC_ERROR.with(|slot| slot.borrow_mut().take()) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Drop for SyncBatchNorm {
    fn drop(&mut self) {
        SYNC_GROUP.with(|slot| *slot.borrow_mut() = None);
    }
}

impl BatchNorm2d {
    /// Builds the layer under `path` with PyTorch's momentum 0.1 and the given `eps`.
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, channels: i64, eps: f64) -> Self {
        let path = path.borrow();
        let config = nn::BatchNormConfig {
            eps,
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let inner = nn::batch_norm2d(path, channels, config);
        BatchNorm2d { inner, eps, name: path_name(path) }
    }

    /// Normalises with batch statistics when `train`, else with the running statistics. The
    /// statistics cover all ranks' batches while a [`SyncBatchNorm`] guard lives.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = match (train, SYNC_GROUP.with(|slot| slot.borrow().clone())) {
            (true, Some(group)) => self.forward_synchronised(&group, xs),
            _ => xs.apply_t(&self.inner, train),
        };
        if recording() {
            let params =
                self.inner.ws.as_ref().map_or(0, numel) + self.inner.bs.as_ref().map_or(0, numel);
            record(&self.name, "BatchNorm2d", &out, params, 0);
        }
        out
    }
}

impl BatchNorm2d {
    fn forward_synchronised(&self, group: &ProcessGroup, xs: &Tensor) -> Tensor {
        let (Some(weight), Some(bias)) = (&self.inner.ws, &self.inner.bs) else {
            return xs.apply_t(&self.inner, true);
        };
        let running = (&self.inner.running_mean, &self.inner.running_var);
        match group.sync_batch_norm(xs, weight, bias, running, BN_MOMENTUM, self.eps) {
            Ok(out) => out,
            Err(error) => {
                SYNC_ERROR.with(|slot| {
                    slot.borrow_mut().get_or_insert(error);
                });
                xs.apply_t(&self.inner, true)
            }
        }
    }
}

/// A fully connected layer; records `in_features * out_features` multiply-adds per sample.
#[derive(Debug)]
pub struct Linear {
    inner: nn::Linear,
    name: String,
}

impl Linear {
    /// Builds the layer under `path` (variables `weight` and `bias`).
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(
        path: P,
        in_features: i64,
        out_features: i64,
        config: nn::LinearConfig,
    ) -> Self {
        let path = path.borrow();
        let inner = nn::linear(path, in_features, out_features, config);
        Linear { inner, name: path_name(path) }
    }

    /// Builds the layer with PyTorch's default initialisation.
    pub fn pytorch_default<'a, P: Borrow<nn::Path<'a>>>(
        path: P,
        in_features: i64,
        out_features: i64,
    ) -> Self {
        let init = pytorch_default(in_features);
        let config = nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true };
        Linear::new(path, in_features, out_features, config)
    }

    /// Applies the layer to `N x in_features` inputs.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let out = self.inner.forward(xs);
        if recording() {
            let in_features = self.inner.ws.size()[1] as u64;
            let params = numel(&self.inner.ws) + self.inner.bs.as_ref().map_or(0, numel);
            record(&self.name, "Linear", &out, params, numel(&out) * in_features);
        }
        out
    }
}

/// A 2-D max pooling; records 0 multiply-adds.
#[derive(Debug)]
pub struct MaxPool2d {
    name: String,
    kernel: i64,
    stride: i64,
    padding: i64,
    ceil_mode: bool,
}

impl MaxPool2d {
    /// Describes the pooling; `path` only names it, no variables are created.
    pub fn new(path: &nn::Path, kernel: i64, stride: i64, padding: i64, ceil_mode: bool) -> Self {
        MaxPool2d { name: path_name(path), kernel, stride, padding, ceil_mode }
    }

    /// Applies the pooling.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let out = xs.max_pool2d(
            [self.kernel, self.kernel],
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            self.ceil_mode,
        );
        if recording() {
            record(&self.name, "MaxPool2d", &out, 0, 0);
        }
        out
    }
}

/// An adaptive average pooling to a fixed output size; records 0 multiply-adds.
#[derive(Debug)]
pub struct AdaptiveAvgPool2d {
    name: String,
    size: [i64; 2],
}

impl AdaptiveAvgPool2d {
    /// Describes the pooling to `size` (height, width); `path` only names it.
    pub fn new(path: &nn::Path, size: [i64; 2]) -> Self {
        AdaptiveAvgPool2d { name: path_name(path), size }
    }

    /// Applies the pooling.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let out = xs.adaptive_avg_pool2d(self.size);
        if recording() {
            record(&self.name, "AdaptiveAvgPool2d", &out, 0, 0);
        }
        out
    }
}

/// Local response normalisation across channels, as PyTorch's `LocalResponseNorm`:
/// `x / (k + alpha / size * sum of x^2 over size neighbouring channels)^beta`. The sum is an
/// average pooling over the channel axis, so it costs no variables; it records 0
/// multiply-adds.
#[derive(Debug)]
pub struct LocalResponseNorm {
    name: String,
    size: i64,
    alpha: f64,
    beta: f64,
    k: f64,
}

impl LocalResponseNorm {
    /// Describes the normalisation; `path` only names it.
    pub fn new(path: &nn::Path, size: i64, alpha: f64, beta: f64, k: f64) -> Self {
        LocalResponseNorm { name: path_name(path), size, alpha, beta, k }
    }

    /// Applies the normalisation to an NCHW tensor.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        // Pad the channel axis as PyTorch does: size / 2 before, (size - 1) / 2 after, so
        // channel c averages channels c - size/2 ..= c + (size - 1)/2 and zeros past the ends.
        let squares = xs.square().unsqueeze(1);
        let padded = squares.constant_pad_nd([0, 0, 0, 0, self.size / 2, (self.size - 1) / 2]);
        let mean = padded
            .avg_pool3d([self.size, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None::<i64>)
            .squeeze_dim(1);
        let out = xs / (mean * self.alpha + self.k).pow_tensor_scalar(self.beta);
        if recording() {
            record(&self.name, "LocalResponseNorm", &out, 0, 0);
        }
        out
    }
}

/// Computes the option A shortcut of He et al. 2015: `xs` subsampled by `stride` (every
/// `stride`-th row and column) with `extra_channels` zero channels, split evenly before and
/// after the input's own, so it has no variables.
pub(crate) fn zero_padded_shortcut(xs: &Tensor, stride: i64, extra_channels: i64) -> Tensor {
    if stride == 1 && extra_channels == 0 {
        return xs.shallow_clone();
    }
    let (h, w) = (xs.size()[2], xs.size()[3]);
    let sub = xs.slice(2, 0, h, stride).slice(3, 0, w, stride);
    let before = extra_channels / 2;
    sub.constant_pad_nd([0, 0, 0, 0, before, extra_channels - before])
}
