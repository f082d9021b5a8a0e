//! Layer-by-layer summary of a network: output shapes, parameters and multiply-adds, measured
//! by running a forward pass of one image.
//!
//! Multiply-adds (MACs) count convolutions (`output elements * in_channels / groups * kh *
//! kw`) and fully connected layers (`in_features * out_features`) only. Batch norm, pooling,
//! local response norm, ReLU and the residual additions count 0, as in the GFLOPS column of
//! torchvision's model table, which counts multiply-adds the same way.

use std::fmt;

use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use super::layers::Recording;
use crate::{Error, Result};

/// One layer run by the forward pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRow {
    /// Dotted variable path of the layer (`layer1.0.conv1`), as in torchvision's keys.
    pub name: String,
    /// PyTorch class name of the layer (`Conv2d`, `BatchNorm2d`, `Linear`, `MaxPool2d`, ...).
    pub kind: String,
    /// Output shape, batch dimension first (1 in a summary).
    pub output: Vec<i64>,
    /// Trainable parameters of the layer.
    pub params: u64,
    /// Multiply-adds of the layer for the whole batch (one image in a summary).
    pub macs: u64,
}

/// Layers, parameters and multiply-adds of a network for one input size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Model name as given to [`super::build`].
    pub model: String,
    /// Input channels, height and width.
    pub input: [usize; 3],
    /// The layers in the order the eval-mode forward pass runs them.
    pub layers: Vec<LayerRow>,
    /// Trainable parameters of the whole network, including layers the eval-mode forward pass
    /// does not run (GoogLeNet's auxiliary classifiers).
    pub params: u64,
    /// Multiply-adds of one eval-mode forward pass of one image.
    pub macs: u64,
}

impl Summary {
    /// Returns the parameters of layers that the eval-mode forward pass does not run.
    pub fn params_not_run(&self) -> u64 {
        let run: u64 = self.layers.iter().map(|layer| layer.params).sum();
        self.params.saturating_sub(run)
    }
}

/// Builds `name` on the CPU for `in_channels` x `height` x `width` inputs and `classes`
/// classes, runs an eval-mode forward pass of one zero image and records every convolution,
/// batch norm, fully connected, pooling and local response norm layer.
///
/// # Errors
///
/// [`Error::Config`] for an unknown model name, a zero size, or an input too small for the
/// network (a pooling or convolution with an empty output).
pub fn summarize(
    name: &str,
    in_channels: usize,
    classes: usize,
    height: usize,
    width: usize,
) -> Result<Summary> {
    if in_channels == 0 || classes == 0 || height == 0 || width == 0 {
        return Err(Error::Config(format!(
            "model {name:?}: input {in_channels}x{height}x{width} with {classes} classes has a \
             zero size; every size must be at least 1"
        )));
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let network = super::build(&vs.root(), name, in_channels, classes)?;
    let params: u64 = vs.trainable_variables().iter().map(|t| t.numel() as u64).sum();

    let input = [1, in_channels as i64, height as i64, width as i64];
    // tch turns a libtorch shape error, such as a pooling window larger than its input, into
    // a panic. Catching it makes a too-small input a configuration error.
    // NOTE: the process's panic hook still prints that panic to stderr; the `model` binary
    // installs a silent hook around this call.
    let layers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let recording = Recording::start();
        tch::no_grad(|| {
            let xs = Tensor::zeros(input, (Kind::Float, Device::Cpu));
            let _ = network.forward(&xs, false);
        });
        recording.finish()
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown libtorch error");
        Error::Config(format!(
            "model {name:?}: forward pass of a {in_channels}x{height}x{width} input failed, \
             most likely because the input is too small for the network: {}",
            torch_message(message)
        ))
    })?;

    let macs = layers.iter().map(|layer| layer.macs).sum();
    Ok(Summary {
        model: name.to_owned(),
        input: [in_channels, height, width],
        layers,
        params,
        macs,
    })
}

/// Returns the first line of libtorch's error in the message of a panicking tch call
/// (`` called `Result::unwrap()` on an `Err` value: Torch("Given input size: ...\n...") ``),
/// without the C++ stack trace that follows it.
fn torch_message(panic_message: &str) -> &str {
    let message = panic_message.rsplit_once("Torch(\"").map_or(panic_message, |(_, m)| m);
    let message = message.split("\\n").next().unwrap_or_default();
    let message = message.lines().next().unwrap_or_default();
    message.trim_end_matches("\")").trim()
}

/// Formats `value` with a comma every three digits.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn shape(output: &[i64]) -> String {
    let dims: Vec<String> = output.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, w] = self.input;
        writeln!(f, "model {}, input {c}x{h}x{w}, batch 1", self.model)?;

        let headers = ["layer", "kind", "output", "params", "mult-adds"];
        let rows: Vec<[String; 5]> = self
            .layers
            .iter()
            .map(|layer| {
                [
                    layer.name.clone(),
                    layer.kind.clone(),
                    shape(&layer.output),
                    thousands(layer.params),
                    thousands(layer.macs),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }

        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| {
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            )
        };
        line(f, headers)?;
        for row in &rows {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
        }

        writeln!(f)?;
        writeln!(f, "parameters: {}", thousands(self.params))?;
        let not_run = self.params_not_run();
        if not_run > 0 {
            writeln!(
                f,
                "  of which {} in layers the eval-mode forward pass does not run (auxiliary \
                 classifiers); without them: {}",
                thousands(not_run),
                thousands(self.params - not_run)
            )?;
        }
        writeln!(
            f,
            "mult-adds: {} ({:.2} G; convolutions and fully connected layers only)",
            thousands(self.macs),
            self.macs as f64 / 1e9
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(61_100_840), "61,100,840");
    }

    #[test]
    fn torch_message_drops_stack_trace() {
        let panic = "called `Result::unwrap()` on an `Err` value: Torch(\"Given input size: \
                     (256x1x1). Output size is too small\\nException raised from foo\")";
        assert_eq!(torch_message(panic), "Given input size: (256x1x1). Output size is too small");
    }

    #[test]
    fn summary_rejects_zero_size() {
        let error = summarize("resnet18", 3, 1000, 0, 224).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error}");
    }

    #[test]
    fn summary_rejects_too_small_input() {
        let error = summarize("alexnet", 3, 1000, 16, 16).unwrap_err();
        assert!(error.to_string().contains("too small"), "{error}");
    }

    #[test]
    fn summary_table_ends_with_totals() {
        let summary = summarize("resnet8", 1, 10, 28, 28).unwrap();
        let text = summary.to_string();
        assert!(text.contains("layer1.0.conv1"), "{text}");
        assert!(text.contains("parameters: 75,002"), "{text}");
        assert!(text.contains("[1, 10]"), "{text}");
    }
}
