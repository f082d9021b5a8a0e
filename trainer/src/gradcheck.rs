//! Finite-difference check of the analytic (autograd) gradients of every layer type the
//! trainer builds, in f64 on the CPU with tiny inputs.
//!
//! [`check`] compares autograd's gradient of `sum(output * R)`, with `R` a fixed random tensor
//! of the output's shape, against central differences `(f(v + h) - f(v - h)) / 2h` with step
//! [`STEP`], for the input and every trainable parameter. Tensors of at most
//! [`MAX_ENTRIES_PER_TENSOR`] entries are checked entry by entry, and larger ones on a seeded
//! random sample of that many entries. Each entry's relative error is
//! `|a - n| / max(|a|, |n|, FLOOR)` (see [`FLOOR`]). A layer passes when the largest one is at
//! most the threshold ([`DEFAULT_THRESHOLD`] unless the caller picks another).
//!
//! [`check_layers`] builds each layer type of [`layer_names`] with the model's own code
//! ([`Conv2d`], [`BatchNorm2d`], the ResNet block, the GoogLeNet inception module, ...),
//! converts its variables to f64 and fills them and the input with values drawn from the seed.
//!
//! ReLU and max pooling have kinks: ReLU at 0 and max pooling where two window entries tie.
//! A central difference that straddles a kink disagrees with autograd's one-sided gradient.
//! Inputs and parameters are continuous random values, so ties have probability 0, and the
//! step moves a pre-activation by about [`STEP`]. A crossing therefore needs a pre-activation
//! that close to 0, which is unlikely but possible for some seeds (none of seeds 0 to 99).
//! When a layer type with ReLU or pooling fails on one seed but passes on others, suspect such
//! a crossing rather than a wrong gradient.

use std::collections::HashSet;

use tch::nn::{self, ConvConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::model::googlenet::{Inception, Variant};
use crate::model::layers::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, LocalResponseNorm, MaxPool2d,
};
use crate::model::resnet::{Block, ResNetSpec, Shortcut};
use crate::{Error, Result};

/// Step `h` of the central differences.
///
/// The truncation error of a central difference is about `h^2` times the third derivative,
/// and the rounding error of the two forward passes divided by `2h`. On these layers in f64 the
/// rounding error dominates: with `h = 1e-6` it reached 5e-9 absolute, with `h = 3e-6` 3e-9.
/// A larger step crosses more ReLU kinks (see the module documentation): with `h = 1e-5`,
/// `inception-paper` failed with an error of 2e-2 on one of seeds 0 to 19.
pub const STEP: f64 = 3e-6;

/// Smallest denominator of the relative error, so that entries whose gradient is (close to)
/// zero are compared by absolute error instead.
///
/// Some gradients are exactly zero, such as that of a convolution bias followed by batch
/// normalisation in training mode, and then the central difference is only rounding noise of a
/// few 1e-9. Against a floor of 1e-3 such noise counts as a few 1e-6. The gradients of the checked
/// layers are of order 1e-3 to 1, so a wrong gradient still shows as a large relative error.
pub const FLOOR: f64 = 1e-3;

/// Default maximum relative error that passes, for f64 with [`STEP`] and [`FLOOR`].
///
/// Over seeds 0 to 99 of [`check_layers`] the maximum error of any layer type was 2.9e-6
/// (`basic-block-c`), from rounding. A wrong gradient gives errors of order 1e-2 to 1.
pub const DEFAULT_THRESHOLD: f64 = 1e-5;

/// Maximum number of entries checked per tensor. Larger tensors are checked on a seeded random
/// sample.
pub const MAX_ENTRIES_PER_TENSOR: usize = 128;

/// Seed of the output weights `R` and of the entry samples in [`check`], so that a check only
/// depends on its arguments.
const CHECK_SEED: u64 = 0x6772_6164_6368_6563;

/// Returns the names of the checked layer types, in the order they are checked.
///
/// - `conv`: a 3x3 stride-2 convolution with bias and padding 1 ([`Conv2d`]).
/// - `batchnorm`: batch normalisation in training mode, with batch statistics
///   ([`BatchNorm2d`]).
/// - `linear`: a fully connected layer ([`Linear`]).
/// - `maxpool`: 3x3 stride-2 max pooling with padding 1 and ceil mode ([`MaxPool2d`]).
/// - `avgpool`: adaptive average pooling of 7x8 maps to 3x3, with uneven, overlapping windows
///   ([`AdaptiveAvgPool2d`]).
/// - `relu`: ReLU.
/// - `lrn`: local response normalisation as in GoogLeNet of Szegedy et al. 2014 (size 5,
///   beta 0.75, k 1) but with alpha 1 instead of 1e-4, so that the normalising term is not
///   negligible ([`LocalResponseNorm`]).
/// - `basic-block`: a ResNet-18 block with option B, where the stride and channel change need
///   a 1x1 projection with batch norm.
/// - `basic-block-a`: the same block with option A, the subsampled, zero-padded shortcut.
/// - `basic-block-c`: a block with option C, a projection although the shape is unchanged.
/// - `plain-block`: the block of the plain networks, without shortcut.
/// - `bottleneck-block`: a ResNet-50 block (1x1, 3x3, 1x1) with option B and stride 2.
/// - `inception`: torchvision's inception module (batch norm, 3x3 third branch).
/// - `inception-paper`: the paper's module (convolution bias, 5x5 third branch).
/// - `cross-entropy`: the training loss, mean cross-entropy with label smoothing 0.1.
///
/// Every batch norm runs in training mode, as in a training step.
pub fn layer_names() -> Vec<&'static str> {
    LAYER_NAMES.to_vec()
}

const LAYER_NAMES: [&str; 15] = [
    "conv",
    "batchnorm",
    "linear",
    "maxpool",
    "avgpool",
    "relu",
    "lrn",
    "basic-block",
    "basic-block-a",
    "basic-block-c",
    "plain-block",
    "bottleneck-block",
    "inception",
    "inception-paper",
    "cross-entropy",
];

/// Result of checking one layer type.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerCheck {
    /// Layer type, one of [`layer_names`] or the name given to [`check`].
    pub layer: String,
    /// Maximum relative error over the checked entries (infinite when a value is not finite).
    pub max_relative_error: f64,
    /// Entries checked, over the input and all parameters.
    pub entries: usize,
    /// Whether `max_relative_error` is at most the threshold.
    pub passed: bool,
    /// Entry with the largest relative error, as `input[17]` or `conv.weight[5]` (flat
    /// index).
    pub worst_entry: String,
    /// Autograd's gradient at `worst_entry`.
    pub worst_analytic: f64,
    /// Central-difference gradient at `worst_entry`.
    pub worst_numeric: f64,
}

/// Checks the named layer types (all of [`layer_names`] when `names` is empty), in the order
/// given, with inputs and parameters drawn from `seed`.
///
/// # Errors
///
/// [`Error::Config`] for a name that is not a layer type, listing the known ones, or for a
/// threshold that is negative or not a number. [`Error::Torch`] when libtorch fails.
pub fn check_layers(names: &[String], threshold: f64, seed: u64) -> Result<Vec<LayerCheck>> {
    if threshold.is_nan() || threshold < 0.0 {
        return Err(Error::Config(format!(
            "invalid gradient-check threshold {threshold}; expected a number of at least 0"
        )));
    }
    let names: Vec<&str> = if names.is_empty() {
        LAYER_NAMES.to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = names.iter().find(|name| !LAYER_NAMES.contains(name)) {
        return Err(Error::Config(format!(
            "unknown layer type {unknown:?} for the gradient check; expected one of: {}",
            LAYER_NAMES.join(", ")
        )));
    }
    names.iter().map(|name| check_layer(name, threshold, seed)).collect()
}

/// Compares autograd's gradient of `sum(forward(input) * R)` with respect to `input` and every
/// tensor of `params` against central differences, as the module documentation describes.
///
/// `input` and `params` must be f64. The check runs `forward` on a copy of `input` that
/// requires the gradient. It perturbs `params` in place (under `no_grad`) and restores each
/// entry to its exact value afterwards, so they must be leaf tensors, and every one must
/// take part in the output. Parameter entries are named `parameter 2[5]` in
/// [`LayerCheck::worst_entry`].
///
/// # Errors
///
/// [`Error::Config`] when `input`, a parameter or the output is not f64.
/// [`Error::Torch`] when libtorch fails, for example on a parameter that `forward` does not
/// use.
pub fn check(
    name: &str,
    forward: &dyn Fn(&Tensor) -> Tensor,
    input: &Tensor,
    params: &[Tensor],
    threshold: f64,
) -> Result<LayerCheck> {
    let named: Vec<(String, Tensor)> = params
        .iter()
        .enumerate()
        .map(|(i, param)| (format!("parameter {i}"), param.shallow_clone()))
        .collect();
    check_named(name, forward, input, &named, threshold)
}

/// Runs [`check`] with a name per parameter for [`LayerCheck::worst_entry`].
fn check_named(
    name: &str,
    forward: &dyn Fn(&Tensor) -> Tensor,
    input: &Tensor,
    params: &[(String, Tensor)],
    threshold: f64,
) -> Result<LayerCheck> {
    require_f64(name, "input", input)?;
    for (param_name, param) in params {
        require_f64(name, param_name, param)?;
    }

    let input = input.detach().copy().set_requires_grad(true);
    let output = forward(&input);
    require_f64(name, "output", &output)?;

    // The output weights R make every output entry matter, with a different weight each, so
    // that a gradient routed to the wrong output entry shows.
    let mut rng = SplitMix64::new(CHECK_SEED);
    let weights = uniform_tensor(&output.size(), &mut rng, -1.0, 1.0);
    let objective = |xs: &Tensor| (forward(xs) * &weights).sum(Kind::Double).double_value(&[]);

    let mut tensors = vec![("input".to_owned(), input.shallow_clone())];
    tensors.extend(params.iter().map(|(name, param)| (name.clone(), param.shallow_clone())));
    let sources: Vec<&Tensor> = tensors.iter().map(|(_, tensor)| tensor).collect();
    let total = (&output * &weights).sum(Kind::Double);
    let gradients = Tensor::f_run_backward(&[total], &sources, false, false)?;

    let mut result = LayerCheck {
        layer: name.to_owned(),
        max_relative_error: 0.0,
        entries: 0,
        passed: false,
        worst_entry: String::new(),
        worst_analytic: 0.0,
        worst_numeric: 0.0,
    };
    for ((tensor_name, tensor), gradient) in tensors.iter().zip(&gradients) {
        let analytic = Vec::<f64>::try_from(gradient.flatten(0, -1))?;
        // A view, so that writing an entry of it writes the tensor itself.
        let flat = tensor.f_view([-1])?;
        for index in sample_indices(analytic.len(), &mut rng) {
            let numeric = central_difference(&flat, index, &|| objective(&input));
            let error = relative_error(analytic[index], numeric);
            result.entries += 1;
            if error > result.max_relative_error || result.worst_entry.is_empty() {
                result.max_relative_error = error;
                result.worst_entry = format!("{tensor_name}[{index}]");
                result.worst_analytic = analytic[index];
                result.worst_numeric = numeric;
            }
        }
    }
    result.passed = result.max_relative_error <= threshold;
    log::debug!(
        "gradient check of {name}: {} entries, max relative error {:.3e} at {}",
        result.entries,
        result.max_relative_error,
        result.worst_entry
    );
    Ok(result)
}

/// Returns `(f(v + h) - f(v - h)) / 2h` for entry `index` of `flat` (a flat view of a leaf
/// tensor), and restores the entry to its exact value.
fn central_difference(flat: &Tensor, index: usize, objective: &dyn Fn() -> f64) -> f64 {
    tch::no_grad(|| {
        let mut entry = flat.get(index as i64);
        let value = entry.double_value(&[]);
        let _ = entry.fill_(value + STEP);
        let plus = objective();
        let _ = entry.fill_(value - STEP);
        let minus = objective();
        let _ = entry.fill_(value);
        (plus - minus) / (2.0 * STEP)
    })
}

/// Returns `|a - n| / max(|a|, |n|, FLOOR)`, or infinity when either value is not finite.
fn relative_error(analytic: f64, numeric: f64) -> f64 {
    if !analytic.is_finite() || !numeric.is_finite() {
        return f64::INFINITY;
    }
    (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(FLOOR)
}

/// Returns all indices below `len` when there are at most [`MAX_ENTRIES_PER_TENSOR`], else a
/// random sample of that many distinct ones, in increasing order.
fn sample_indices(len: usize, rng: &mut SplitMix64) -> Vec<usize> {
    if len <= MAX_ENTRIES_PER_TENSOR {
        return (0..len).collect();
    }
    let mut chosen = HashSet::with_capacity(MAX_ENTRIES_PER_TENSOR);
    while chosen.len() < MAX_ENTRIES_PER_TENSOR {
        chosen.insert((rng.next_u64() % len as u64) as usize);
    }
    let mut indices: Vec<usize> = chosen.into_iter().collect();
    indices.sort_unstable();
    indices
}

fn require_f64(layer: &str, role: &str, tensor: &Tensor) -> Result<()> {
    match tensor.kind() {
        Kind::Double => Ok(()),
        kind => Err(Error::Config(format!(
            "gradient check of {layer}: {role} must be f64 (Double), found {kind:?}"
        ))),
    }
}

/// A layer type built for the check: its input shape and forward pass.
struct Case {
    input_shape: Vec<i64>,
    forward: Box<dyn Fn(&Tensor) -> Tensor>,
}

/// Builds layer type `name` in a fresh f64 variable store, fills its variables and input from
/// `seed` and checks it.
fn check_layer(name: &str, threshold: f64, seed: u64) -> Result<LayerCheck> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut rng = SplitMix64::new(seed);
    let case = build_case(name, &vs.root(), &mut rng);
    vs.double();

    let mut params: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, tensor)| tensor.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, param) in &params {
        fill_parameter(param, &mut rng);
    }
    let input = uniform_tensor(&case.input_shape, &mut rng, -1.0, 1.0);

    check_named(name, case.forward.as_ref(), &input, &params, threshold)
}

/// Builds the layer of type `name` (one of [`LAYER_NAMES`]) under `root`. `rng` draws the
/// labels of the loss.
fn build_case(name: &str, root: &nn::Path, rng: &mut SplitMix64) -> Case {
    let case = |input_shape: &[i64], forward: Box<dyn Fn(&Tensor) -> Tensor>| Case {
        input_shape: input_shape.to_vec(),
        forward,
    };
    let block = |depth, shortcut, cin, planes, stride| {
        let spec = ResNetSpec { depth, shortcut, in_channels: 3, classes: 10 };
        Block::new(root / "block", &spec, cin, planes, stride)
    };
    match name {
        "conv" => {
            let config = ConvConfig { stride: 2, padding: 1, bias: true, ..Default::default() };
            let conv = Conv2d::new(root / "conv", 3, 4, 3, config);
            case(&[2, 3, 7, 6], Box::new(move |xs| conv.forward(xs)))
        }
        "batchnorm" => {
            let bn = BatchNorm2d::new(root / "bn", 3, 1e-5);
            case(&[4, 3, 5, 6], Box::new(move |xs| bn.forward_t(xs, true)))
        }
        "linear" => {
            let linear = Linear::pytorch_default(root / "fc", 12, 5);
            case(&[3, 12], Box::new(move |xs| linear.forward(xs)))
        }
        "maxpool" => {
            let pool = MaxPool2d::new(&(root / "pool"), 3, 2, 1, true);
            case(&[2, 3, 7, 8], Box::new(move |xs| pool.forward(xs)))
        }
        "avgpool" => {
            let pool = AdaptiveAvgPool2d::new(&(root / "pool"), [3, 3]);
            case(&[2, 3, 7, 8], Box::new(move |xs| pool.forward(xs)))
        }
        "relu" => case(&[3, 4, 5, 6], Box::new(|xs| xs.relu())),
        "lrn" => {
            let lrn = LocalResponseNorm::new(&(root / "lrn"), 5, 1.0, 0.75, 1.0);
            case(&[2, 7, 4, 5], Box::new(move |xs| lrn.forward(xs)))
        }
        "basic-block" => {
            let block = block(18, Shortcut::B, 4, 6, 2);
            case(&[2, 4, 7, 6], Box::new(move |xs| block.forward(xs, true)))
        }
        "basic-block-a" => {
            let block = block(18, Shortcut::A, 4, 6, 2);
            case(&[2, 4, 7, 6], Box::new(move |xs| block.forward(xs, true)))
        }
        "basic-block-c" => {
            let block = block(18, Shortcut::C, 4, 4, 1);
            case(&[2, 4, 6, 5], Box::new(move |xs| block.forward(xs, true)))
        }
        "plain-block" => {
            let block = block(18, Shortcut::Plain, 4, 6, 2);
            case(&[2, 4, 7, 6], Box::new(move |xs| block.forward(xs, true)))
        }
        "bottleneck-block" => {
            let block = block(50, Shortcut::B, 4, 2, 2);
            case(&[2, 4, 7, 6], Box::new(move |xs| block.forward(xs, true)))
        }
        "inception" | "inception-paper" => {
            let variant = if name == "inception" { Variant::Torchvision } else { Variant::Paper };
            let module = Inception::new(root / "inception", variant, 4, [2, 2, 3, 2, 3, 2]);
            case(&[2, 4, 6, 5], Box::new(move |xs| module.forward(xs, true)))
        }
        "cross-entropy" => {
            let (batch, classes) = (4, 5);
            let labels: Vec<i64> =
                (0..batch).map(|_| (rng.next_u64() % classes as u64) as i64).collect();
            let labels = Tensor::from_slice(&labels);
            case(
                &[batch, classes],
                Box::new(move |logits| {
                    logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.1)
                }),
            )
        }
        _ => unreachable!("layer type {name:?} is not one of {LAYER_NAMES:?}"),
    }
}

/// Overwrites `param` with seeded values: a weight of two or more dimensions uniform on
/// `±sqrt(3 / fan_in)` (variance `1 / fan_in`), a vector (bias, batch-norm scale or shift)
/// uniform on `[0.5, 1.5)`.
fn fill_parameter(param: &Tensor, rng: &mut SplitMix64) {
    let shape = param.size();
    let values = if shape.len() >= 2 {
        let fan_in: i64 = shape[1..].iter().product();
        let bound = (3.0 / fan_in as f64).sqrt();
        uniform_tensor(&shape, rng, -bound, bound)
    } else {
        uniform_tensor(&shape, rng, 0.5, 1.5)
    };
    tch::no_grad(|| {
        let mut param = param.shallow_clone();
        param.copy_(&values);
    });
}

/// Returns an f64 CPU tensor of `shape` with values uniform on `[low, high)`.
fn uniform_tensor(shape: &[i64], rng: &mut SplitMix64, low: f64, high: f64) -> Tensor {
    let len: i64 = shape.iter().product();
    let values: Vec<f64> = (0..len).map(|_| low + (high - low) * rng.next_f64()).collect();
    Tensor::from_slice(&values).view(shape)
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small seeded generator, so that the check
/// does not depend on libtorch's global generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a value uniform on `[0, 1)` with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_floors_tiny_gradients() {
        assert!((relative_error(1e-12, 0.0) - 1e-9).abs() < 1e-20);
        assert_eq!(relative_error(2.0, 1.0), 0.5);
        assert_eq!(relative_error(f64::NAN, 1.0), f64::INFINITY);
    }

    #[test]
    fn sample_indices_are_distinct_and_capped() {
        let mut rng = SplitMix64::new(3);
        assert_eq!(sample_indices(5, &mut rng), vec![0, 1, 2, 3, 4]);

        let sample = sample_indices(1000, &mut rng);
        assert_eq!(sample.len(), MAX_ENTRIES_PER_TENSOR);
        assert!(sample.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(sample.iter().all(|&index| index < 1000));
    }

    #[test]
    fn every_layer_name_builds() {
        for name in LAYER_NAMES {
            let vs = nn::VarStore::new(Device::Cpu);
            let case = build_case(name, &vs.root(), &mut SplitMix64::new(0));
            let input = Tensor::zeros(case.input_shape.as_slice(), (Kind::Float, Device::Cpu));
            let output = (case.forward)(&input);
            assert!(output.numel() > 0, "{name} has an empty output");
        }
    }
}
