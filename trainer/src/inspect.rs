//! Inspection of a checkpoint: first-layer filters, activation statistics of chosen layers,
//! and histograms of weights and gradients.
//!
//! Definitions:
//! - A unit is a channel (a feature for a fully connected layer).
//! - Activation statistics are taken on `max(0, output)` of a recorded layer, in an eval-mode
//!   forward pass (running batch-norm statistics, no dropout). At a `BatchNorm2d` that a ReLU
//!   follows, this is the activation the next layer receives. The second batch norm of a
//!   residual block is the exception. Its ReLU comes after the shortcut is added, so the
//!   statistics describe the residual branch alone.
//! - A dead unit is a channel whose `max(0, output)` is 0 for every sample and position of the
//!   batch.
//! - The correlation of a layer is the mean absolute Pearson correlation over pairs of distinct
//!   channels, between the per-sample spatial means of `max(0, output)`. Channels that do not
//!   vary over the batch (dead ones included) have no correlation and are left out.
//! - Gradients come from one training-mode forward and backward pass of the run's loss
//!   (cross-entropy with its label smoothing, plus weighted auxiliary losses) on the batch, in
//!   micro-batches of the run's batch size divided by its accumulation, in f32.
//!
//! Inspection leaves the model as it found it. The batch-norm running statistics that the
//! training-mode pass updates are restored, and the gradients are zeroed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use serde::Serialize;
use tch::{Device, Kind, Reduction, Tensor};

use crate::model::layers::Recording;
use crate::model::LayerRow;
use crate::{Error, Result, Trainer};

/// Settings of [`inspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectOptions {
    /// Number of samples taken from the start of `split`, capped at its length.
    pub samples: usize,
    /// Split the samples come from, passed through the run's evaluation preprocessing.
    pub split: String,
    /// Dotted layer names (as `model summary` prints them) whose activations are measured.
    /// Empty selects every `BatchNorm2d`, or every `Conv2d` in a network without batch norm.
    pub layers: Vec<String>,
    /// Number of bins per histogram.
    pub bins: usize,
}

impl InspectOptions {
    /// Returns the default settings for `split`: 256 samples, the default layers, 40 bins.
    pub fn new(split: impl Into<String>) -> Self {
        InspectOptions { samples: 256, split: split.into(), layers: Vec::new(), bins: 40 }
    }
}

/// Everything [`inspect`] measures.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// Model name of the run.
    pub model: String,
    /// Number of epochs the checkpoint has completed.
    pub epochs_done: usize,
    /// Number of optimizer steps the checkpoint has taken.
    pub step: u64,
    /// Split the batch came from.
    pub split: String,
    /// Number of samples in the batch.
    pub samples: usize,
    /// Mean training loss of the batch in the gradient pass.
    pub loss: f64,
    /// Weights of the first convolution, if the network has one.
    pub filters: Option<Filters>,
    /// Statistics of the selected layers, in the order the forward pass runs them.
    pub activations: Vec<ActivationStats>,
    /// Histograms of the convolution and fully connected weights (every trainable tensor with
    /// at least two dimensions), in forward order.
    pub weights: Vec<Histogram>,
    /// Histograms of the gradients of the same tensors, where the loss reaches them.
    pub gradients: Vec<Histogram>,
}

/// The weights of a convolution, `out x in x kh x kw`, f32, row-major.
#[derive(Clone, Debug, Serialize)]
pub struct Filters {
    /// Variable name (`conv1.weight`).
    pub name: String,
    /// Output channels, input channels, kernel height, kernel width.
    pub shape: [usize; 4],
    /// The weights, `shape.iter().product()` of them.
    pub values: Vec<f32>,
}

impl Filters {
    /// Returns the weights of filter `output` for input channel `input`, `kh x kw` row-major.
    pub fn kernel(&self, output: usize, input: usize) -> &[f32] {
        let [_, inputs, kh, kw] = self.shape;
        let start = (output * inputs + input) * kh * kw;
        &self.values[start..start + kh * kw]
    }
}

/// Activation statistics of one layer (see the module documentation for the definitions).
#[derive(Clone, Debug, Serialize)]
pub struct ActivationStats {
    /// Dotted layer name.
    pub layer: String,
    /// PyTorch class name of the layer (`BatchNorm2d`, `Conv2d`, `Linear`, ...).
    pub kind: String,
    /// Number of channels (units) of the layer.
    pub channels: usize,
    /// Mean of `max(0, output)` over samples, positions and channels.
    pub mean: f64,
    /// Fraction of channels in [0, 1] that are dead on the batch.
    pub dead_fraction: f64,
    /// Mean absolute correlation between channels, or `None` when fewer than two channels
    /// vary or the batch has one sample.
    pub mean_abs_correlation: Option<f64>,
}

/// A histogram of the finite values of a tensor, with equal-width bins from `low` to `high`.
#[derive(Clone, Debug, Serialize)]
pub struct Histogram {
    /// Variable name (`layer1.0.conv1.weight`).
    pub name: String,
    /// Shape of the tensor.
    pub shape: Vec<i64>,
    /// Lower edge of the first bin: the smallest finite value.
    pub low: f64,
    /// Upper edge of the last bin: the largest finite value. When every finite value is equal,
    /// `low` and `high` are that value minus and plus 0.5. With no finite value both are 0.
    pub high: f64,
    /// Number of values per bin. The last bin includes `high`.
    pub counts: Vec<u64>,
    /// Mean of the finite values.
    pub mean: f64,
    /// Population standard deviation of the finite values.
    pub std: f64,
    /// Number of values that are exactly 0.
    pub zeros: u64,
    /// Number of NaN and infinite values, which no bin counts.
    pub non_finite: u64,
}

impl Histogram {
    /// Counts `values` into `bins` equal-width bins (at least 1).
    pub fn from_values(
        name: impl Into<String>,
        shape: Vec<i64>,
        values: &[f32],
        bins: usize,
    ) -> Self {
        let bins = bins.max(1);
        let finite: Vec<f64> =
            values.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v)).collect();
        let non_finite = (values.len() - finite.len()) as u64;
        let zeros = values.iter().filter(|&&v| v == 0.0).count() as u64;

        let mut counts = vec![0u64; bins];
        if finite.is_empty() {
            let (low, high, mean, std) = (0.0, 0.0, f64::NAN, f64::NAN);
            let name = name.into();
            return Histogram { name, shape, low, high, counts, mean, std, zeros, non_finite };
        }
        let mut low = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let mut high = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if low == high {
            low -= 0.5;
            high += 0.5;
        }

        let width = (high - low) / bins as f64;
        for &value in &finite {
            let bin = ((value - low) / width) as usize;
            counts[bin.min(bins - 1)] += 1;
        }
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let variance = finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / finite.len() as f64;
        let std = variance.sqrt();
        Histogram { name: name.into(), shape, low, high, counts, mean, std, zeros, non_finite }
    }
}

/// Sums over the batch of one layer's `max(0, output)`, filled by the recorder's hook.
struct LayerTally {
    kind: String,
    channels: usize,
    /// Per-sample spatial means, one `n x channels` f32 CPU tensor per micro-batch.
    sample_means: Vec<Tensor>,
    /// Per-channel maximum so far, f32 CPU.
    channel_max: Option<Tensor>,
    sum: f64,
    elements: u64,
}

/// Layer tallies by name, shared with the recorder's hook.
type Tallies = Rc<RefCell<BTreeMap<String, LayerTally>>>;

/// Inspects the model of `trainer` at its checkpoint on the first `options.samples` samples of
/// `options.split`.
///
/// # Errors
///
/// [`Error::Config`] for zero samples or bins, for a layer name that the forward pass does
/// not record, or for a layer whose output is not `N x C` or `N x C x H x W`. Dataset and
/// libtorch errors pass through.
pub fn inspect(trainer: &Trainer, options: &InspectOptions) -> Result<Inspection> {
    if options.samples == 0 || options.bins == 0 {
        return Err(Error::Config(format!(
            "inspection needs at least one sample and one bin, got {} samples and {} bins",
            options.samples, options.bins
        )));
    }
    let (images, labels) = trainer.sample_batch(&options.split, options.samples, false)?;
    let samples = labels.size()[0] as usize;

    let (rows, activations) = activation_pass(trainer, &images, options)?;
    let filters = first_filters(trainer, &rows)?;
    let order = parameter_order(trainer, &rows);
    let weights = order
        .iter()
        .map(|(name, tensor)| histogram_of(name, tensor, options.bins))
        .collect::<Result<Vec<_>>>()?;
    let loss = gradient_pass(trainer, &images, &labels)?;
    let mut gradients = Vec::new();
    for (name, tensor) in &order {
        let gradient = tensor.grad();
        if gradient.defined() {
            gradients.push(histogram_of(name, &gradient, options.bins)?);
        }
    }
    zero_gradients(trainer);

    Ok(Inspection {
        model: trainer.config().model.clone(),
        epochs_done: trainer.state().epochs_done,
        step: trainer.state().step as u64,
        split: options.split.clone(),
        samples,
        loss,
        filters,
        activations,
        weights,
        gradients,
    })
}

/// Runs the eval-mode forward pass in micro-batches of the run's evaluation batch size with a
/// recorder hook, and returns the recorded rows and the statistics of the selected layers.
fn activation_pass(
    trainer: &Trainer,
    images: &Tensor,
    options: &InspectOptions,
) -> Result<(Vec<LayerRow>, Vec<ActivationStats>)> {
    let requested: BTreeSet<String> = options.layers.iter().cloned().collect();
    let tallies: Tallies = Rc::default();
    let chunk = trainer.config().eval_batch_size.max(1) as i64;
    let mut rows = Vec::new();
    for part in images.split(chunk, 0) {
        let hook_tallies = Rc::clone(&tallies);
        let hook_requested = requested.clone();
        let recording = Recording::start_with_outputs(Box::new(move |row, output| {
            let tracked = if hook_requested.is_empty() {
                row.kind == "BatchNorm2d" || row.kind == "Conv2d"
            } else {
                hook_requested.contains(&row.name)
            };
            let dims = output.dim();
            if tracked && (dims == 2 || dims == 4) {
                add_to_tally(&mut hook_tallies.borrow_mut(), row, output);
            }
        }));
        tch::no_grad(|| {
            let _ = trainer.network().forward(&part, false);
        });
        let part_rows = recording.finish();
        if rows.is_empty() {
            rows = part_rows;
        }
    }

    let selected = select_layers(&rows, &options.layers)?;
    let tallies = tallies.borrow();
    let mut activations = Vec::with_capacity(selected.len());
    for row in selected {
        let tally = tallies.get(&row.name).ok_or_else(|| {
            Error::Config(format!(
                "layer {} ({}) has output shape {:?}, but activation statistics need N x C or \
                 N x C x H x W; choose another layer",
                row.name, row.kind, row.output
            ))
        })?;
        activations.push(layer_stats(&row.name, tally)?);
    }
    Ok((rows, activations))
}

/// Adds one micro-batch output of `row` to its tally.
fn add_to_tally(tallies: &mut BTreeMap<String, LayerTally>, row: &LayerRow, output: &Tensor) {
    let active = output.to_kind(Kind::Float).relu();
    let channels = active.size()[1] as usize;
    let (sample_means, channel_max) = if active.dim() == 4 {
        let means = active.mean_dim([2, 3].as_slice(), false, Kind::Float);
        (means, active.amax([0, 2, 3].as_slice(), false))
    } else {
        (active.shallow_clone(), active.amax([0].as_slice(), false))
    };
    let sum = f64::try_from(active.sum(Kind::Double)).unwrap_or(f64::NAN);
    let elements = active.numel() as u64;

    let tally = tallies.entry(row.name.clone()).or_insert_with(|| LayerTally {
        kind: row.kind.clone(),
        channels,
        sample_means: Vec::new(),
        channel_max: None,
        sum: 0.0,
        elements: 0,
    });
    tally.sample_means.push(sample_means.to_device(Device::Cpu));
    let channel_max = channel_max.to_device(Device::Cpu);
    tally.channel_max = Some(match tally.channel_max.take() {
        Some(previous) => previous.maximum(&channel_max),
        None => channel_max,
    });
    tally.sum += sum;
    tally.elements += elements;
}

/// Returns the rows of the layers named in `names`, or with `names` empty every batch norm
/// (every convolution when there is none), in forward order.
fn select_layers<'a>(rows: &'a [LayerRow], names: &[String]) -> Result<Vec<&'a LayerRow>> {
    if names.is_empty() {
        let batch_norms: Vec<&LayerRow> =
            rows.iter().filter(|row| row.kind == "BatchNorm2d").collect();
        if !batch_norms.is_empty() {
            return Ok(batch_norms);
        }
        return Ok(rows.iter().filter(|row| row.kind == "Conv2d").collect());
    }

    let known: BTreeSet<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    let unknown: Vec<&str> =
        names.iter().map(String::as_str).filter(|name| !known.contains(name)).collect();
    if !unknown.is_empty() {
        let examples: Vec<&str> = rows.iter().take(4).map(|row| row.name.as_str()).collect();
        return Err(Error::Config(format!(
            "unknown layer {}; the forward pass records {} layers such as {}; `model summary` \
             lists them all",
            unknown.join(", "),
            rows.len(),
            examples.join(", ")
        )));
    }
    let requested: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    Ok(rows.iter().filter(|row| requested.contains(row.name.as_str())).collect())
}

/// Computes the statistics of one layer from its tally.
fn layer_stats(layer: &str, tally: &LayerTally) -> Result<ActivationStats> {
    let dead = match &tally.channel_max {
        Some(max) => i64::try_from(max.le(0.0).sum(Kind::Int64))? as usize,
        None => 0,
    };
    let means = Tensor::cat(&tally.sample_means, 0);
    Ok(ActivationStats {
        layer: layer.to_owned(),
        kind: tally.kind.clone(),
        channels: tally.channels,
        mean: tally.sum / tally.elements.max(1) as f64,
        dead_fraction: dead as f64 / tally.channels.max(1) as f64,
        mean_abs_correlation: mean_abs_correlation(&means)?,
    })
}

/// Returns the mean absolute Pearson correlation between distinct columns of the `n x c`
/// matrix `values`, over the columns that vary. Returns `None` when fewer than two columns
/// vary or `n < 2`.
pub fn mean_abs_correlation(values: &Tensor) -> Result<Option<f64>> {
    let values = values.to_kind(Kind::Double).to_device(Device::Cpu);
    let n = values.size()[0];
    if n < 2 {
        return Ok(None);
    }
    let centred = &values - values.mean_dim([0].as_slice(), true, Kind::Double);
    let std = centred.square().mean_dim([0].as_slice(), false, Kind::Double).sqrt();
    let mean_magnitude = values.mean_dim([0].as_slice(), false, Kind::Double).abs();
    // A constant column's centred values are rounding noise around 0, not a signal.
    let varying = std.gt_tensor(&(mean_magnitude * 1e-9)).logical_and(&std.gt(0.0));
    let columns = varying.nonzero().squeeze_dim(1);
    let count = columns.size()[0];
    if count < 2 {
        return Ok(None);
    }
    let standardised = centred.index_select(1, &columns) / std.index_select(0, &columns);
    let correlation = standardised.tr().matmul(&standardised) / n as f64;
    let total = f64::try_from(correlation.abs().sum(Kind::Double))?;
    let diagonal = f64::try_from(correlation.diagonal(0, 0, 1).abs().sum(Kind::Double))?;
    Ok(Some((total - diagonal) / (count * (count - 1)) as f64))
}

/// Returns the weights of the first convolution the forward pass ran.
fn first_filters(trainer: &Trainer, rows: &[LayerRow]) -> Result<Option<Filters>> {
    let Some(row) = rows.iter().find(|row| row.kind == "Conv2d") else {
        return Ok(None);
    };
    let name = format!("{}.weight", row.name);
    let variables = trainer.var_store().variables();
    let Some(weight) = variables.get(&name) else {
        return Ok(None);
    };
    let size = weight.size();
    if size.len() != 4 {
        return Ok(None);
    }
    let shape = [size[0] as usize, size[1] as usize, size[2] as usize, size[3] as usize];
    let values = cpu_values(weight)?;
    Ok(Some(Filters { name, shape, values }))
}

/// Returns the trainable variables with at least two dimensions, those of the recorded layers
/// in forward order first, then the rest by name.
fn parameter_order(trainer: &Trainer, rows: &[LayerRow]) -> Vec<(String, Tensor)> {
    let mut variables: HashMap<String, Tensor> = trainer
        .var_store()
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.requires_grad() && tensor.dim() >= 2)
        .collect();
    let mut order = Vec::with_capacity(variables.len());
    for row in rows {
        let name = format!("{}.weight", row.name);
        if let Some(tensor) = variables.remove(&name) {
            order.push((name, tensor));
        }
    }
    let mut rest: Vec<(String, Tensor)> = variables.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    order.extend(rest);
    order
}

/// Runs the training loss forward and backward over the batch and returns its mean. The
/// batch-norm running statistics are restored afterwards.
fn gradient_pass(trainer: &Trainer, images: &Tensor, labels: &Tensor) -> Result<f64> {
    let config = trainer.config();
    let frozen: Vec<(Tensor, Tensor)> = trainer
        .var_store()
        .variables()
        .into_values()
        .filter(|tensor| !tensor.requires_grad())
        .map(|tensor| {
            let saved = tensor.copy();
            (tensor, saved)
        })
        .collect();
    zero_gradients(trainer);
    // Dropout draws from libtorch's global generator, so a fixed seed makes the pass repeatable.
    tch::manual_seed(config.seed as i64);

    let samples = labels.size()[0];
    let micro_batch = (config.batch_size / config.compute.accumulation.max(1)).max(1) as i64;
    let smoothing = config.label_smoothing;
    let network = trainer.network();
    let mut loss_sum = 0.0;
    for (x, y) in images.split(micro_batch, 0).iter().zip(labels.split(micro_batch, 0).iter()) {
        let output = network.forward(x, true);
        let cross_entropy = |logits: &Tensor| {
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
                y,
                None,
                Reduction::Mean,
                -100,
                smoothing,
            )
        };
        let loss = cross_entropy(&output.logits);
        let mut objective = loss.shallow_clone();
        for aux in &output.aux {
            objective += cross_entropy(aux) * network.aux_weight();
        }
        let share = y.size()[0] as f64 / samples as f64;
        (&objective * share).backward();
        loss_sum += f64::try_from(&loss)? * y.size()[0] as f64;
    }

    tch::no_grad(|| {
        for (mut tensor, saved) in frozen {
            tensor.copy_(&saved);
        }
    });
    Ok(loss_sum / samples.max(1) as f64)
}

/// Zeroes the gradients of every trainable variable.
fn zero_gradients(trainer: &Trainer) {
    for mut tensor in trainer.var_store().trainable_variables() {
        tensor.zero_grad();
    }
}

/// Returns the histogram of `tensor`'s values, copied to the CPU as f32.
fn histogram_of(name: &str, tensor: &Tensor, bins: usize) -> Result<Histogram> {
    let values = cpu_values(tensor)?;
    Ok(Histogram::from_values(name, tensor.size(), &values, bins))
}

/// Copies `tensor` to the CPU as contiguous row-major f32 values.
fn cpu_values(tensor: &Tensor) -> Result<Vec<f32>> {
    let flat =
        tensor.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1);
    Ok(Vec::<f32>::try_from(&flat)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_and_moments() {
        let values = [0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN];
        let histogram = Histogram::from_values("w", vec![6], &values, 4);
        assert_eq!(histogram.low, 0.0);
        assert_eq!(histogram.high, 4.0);
        assert_eq!(histogram.counts, [1, 1, 1, 2]);
        assert_eq!(histogram.mean, 2.0);
        assert!((histogram.std - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(histogram.zeros, 1);
        assert_eq!(histogram.non_finite, 1);
    }

    #[test]
    fn histogram_of_constant_values() {
        let histogram = Histogram::from_values("b", vec![3], &[2.0, 2.0, 2.0], 5);
        assert_eq!(histogram.low, 1.5);
        assert_eq!(histogram.high, 2.5);
        assert_eq!(histogram.counts, [0, 0, 3, 0, 0]);
        assert_eq!(histogram.std, 0.0);
    }

    #[test]
    fn correlation_of_known_columns() {
        // Column 1 is 2 * column 0 (r = 1), and column 2 is its negative (r = -1 with both).
        // Column 3 is constant and left out, so the mean |r| over the pairs of 0..3 is 1.
        let rows = [[1.0, 2.0, -1.0, 5.0], [2.0, 4.0, -2.0, 5.0], [4.0, 8.0, -4.0, 5.0]];
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let values = Tensor::from_slice(&flat).view([3, 4]);
        let correlation = mean_abs_correlation(&values).unwrap().unwrap();
        assert!((correlation - 1.0).abs() < 1e-12, "correlation {correlation}");
    }

    #[test]
    fn correlation_of_uncorrelated_columns() {
        // x = (1, -1, 1, -1) and y = (1, 1, -1, -1) have covariance 0.
        let flat = [1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0];
        let values = Tensor::from_slice(&flat).view([4, 2]);
        let correlation = mean_abs_correlation(&values).unwrap().unwrap();
        assert!(correlation.abs() < 1e-12, "correlation {correlation}");
    }

    #[test]
    fn correlation_needs_two_varying_columns() {
        let values = Tensor::from_slice(&[1.0, 0.0, 2.0, 0.0]).view([2, 2]);
        assert_eq!(mean_abs_correlation(&values).unwrap(), None);
        let one_sample = Tensor::from_slice(&[1.0, 2.0]).view([1, 2]);
        assert_eq!(mean_abs_correlation(&one_sample).unwrap(), None);
    }
}
