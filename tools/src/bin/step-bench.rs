//! `step-bench`: times training steps and evaluation forwards of a model on synthetic
//! batches, the work `train_step.py` of the Python peers times with PyTorch eager.
//!
//! ```text
//! step-bench --model resnet50 --batch 16 --threads 2
//! step-bench --model googlenet --batch 256 --device cuda --precision bf16 --channels-last
//! ```
//!
//! A training step is what `train` does per batch. It zeroes the gradients and runs the
//! forward pass (under autocast in mixed precision). The loss is the cross-entropy plus 0.3
//! times each auxiliary loss for GoogLeNet. Then come the backward pass and SGD with momentum
//! 0.9 and weight decay 1e-4, and the loss is read back. The
//! figure is the median of `--steps` steps after `--warmup` untimed ones.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use expanse_tools::{PrecisionArg, UsageError};
use expanse_trainer::device::{self, LossScaler, Precision};
use expanse_trainer::model;
use expanse_trainer::optim::Sgd;
use serde::Serialize;
use tch::nn;
use tch::{Device, Kind, Reduction, Tensor};

#[derive(Parser, Debug)]
#[command(version, about = "Time training steps of a model on synthetic batches")]
struct Args {
    /// Model name, as for `train --model`.
    #[arg(long)]
    model: String,

    /// Samples per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,

    /// Input shape CxHxW.
    #[arg(long, default_value = "3x224x224")]
    input: String,

    /// Number of classes.
    #[arg(long, default_value_t = 1000)]
    classes: usize,

    /// libtorch threads (CPU).
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,

    /// Arithmetic: f32, or mixed precision on CUDA.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,

    /// Channels-last memory layout of images and convolution weights.
    #[arg(long)]
    channels_last: bool,

    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,

    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    precision: &'static str,
    channels_last: bool,
    threads: usize,
    batch: usize,
    input: [usize; 3],
    params: u64,
    train_step_s: f64,
    train_img_per_s: f64,
    train_all_s: Vec<f64>,
    eval_batch_s: f64,
    eval_img_per_s: f64,
    eval_all_s: Vec<f64>,
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => expanse_tools::report(&error),
    }
}

fn parse_input(text: &str) -> anyhow::Result<[usize; 3]> {
    let parts: Vec<Result<usize, _>> = text.split('x').map(str::parse::<usize>).collect();
    match parts.as_slice() {
        [Ok(c), Ok(h), Ok(w)] if *c > 0 && *h > 0 && *w > 0 => Ok([*c, *h, *w]),
        _ => Err(UsageError(format!(
            "--input {text:?} is not CxHxW with positive sizes, for example 3x224x224"
        ))
        .into()),
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let input = parse_input(&args.input)?;
    for (name, value) in [("--batch", args.batch), ("--steps", args.steps)] {
        if value == 0 {
            return Err(UsageError(format!("{name} must be at least 1, got 0")).into());
        }
    }
    let precision = Precision::from(args.precision);
    let device = device::resolve(&args.device).map_err(|e| UsageError(e.to_string()))?;
    precision.check(device).map_err(|e| UsageError(e.to_string()))?;
    tch::set_num_threads(args.threads as i32);
    tch::manual_seed(0);
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }

    let vs = nn::VarStore::new(device);
    let net = model::build(&vs.root(), &args.model, input[0], args.classes)
        .map_err(|e| UsageError(e.to_string()))?;
    let layout = |t: Tensor| if args.channels_last { device::channels_last(&t) } else { t };
    if args.channels_last {
        device::convert_to_channels_last(&vs);
    }
    let mut sgd = Sgd::new(&vs, 0.9, false, 1e-4, true);
    let mut scaler = (precision == Precision::F16).then(LossScaler::default);
    let shape = [args.batch as i64, input[0] as i64, input[1] as i64, input[2] as i64];
    let images = layout(Tensor::randn(shape, (Kind::Float, device)));
    let labels = Tensor::randint(args.classes as i64, [args.batch as i64], (Kind::Int64, device));
    let cross_entropy = |logits: &Tensor| {
        logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
            &labels,
            None,
            Reduction::Mean,
            -100,
            0.0,
        )
    };

    let mut step = || -> anyhow::Result<f64> {
        sgd.zero_grad();
        let output = precision.autocast(|| net.forward(&images, true));
        let mut loss = cross_entropy(&output.logits);
        for aux in &output.aux {
            loss += cross_entropy(aux) * net.aux_weight();
        }
        let scale = scaler.map_or(1.0, |s| s.scale);
        (&loss * scale).backward();
        let apply = scaler.as_mut().is_none_or(|s| s.unscale(&mut sgd.gradients()));
        if apply {
            sgd.step(0.01);
        }
        Ok(f64::try_from(&loss)?)
    };
    let train_all = timed(args.warmup, args.steps, device, || step().map(drop))
        .context("training step failed")?;
    let eval_all = timed(args.warmup, args.steps, device, || {
        let _ = tch::no_grad(|| {
            precision.autocast(|| net.forward(&images, false)).logits.sum(Kind::Float)
        });
        Ok(())
    })
    .context("evaluation forward failed")?;

    let params = vs.trainable_variables().iter().map(|t| t.numel() as u64).sum();
    let (train, eval) = (median(&train_all), median(&eval_all));
    let report = Report {
        model: args.model.clone(),
        device: format!("{device:?}"),
        precision: precision.name(),
        channels_last: args.channels_last,
        threads: args.threads,
        batch: args.batch,
        input,
        params,
        train_step_s: train,
        train_img_per_s: args.batch as f64 / train,
        train_all_s: train_all,
        eval_batch_s: eval,
        eval_img_per_s: args.batch as f64 / eval,
        eval_all_s: eval_all,
    };
    if args.json {
        expanse_tools::print_stdout(&(serde_json::to_string(&report)? + "\n"))?;
    } else {
        expanse_tools::print_stdout(&format!(
            "{} {}x{}x{} batch {} on {} ({}, {} threads{}): {:.2} M parameters\n\
             train step {:.1} ms ({:.1} img/s), eval forward {:.1} ms ({:.1} img/s), median of {}\n",
            report.model,
            input[0],
            input[1],
            input[2],
            args.batch,
            report.device,
            report.precision,
            args.threads,
            if args.channels_last { ", channels-last" } else { "" },
            params as f64 / 1e6,
            train * 1e3,
            report.train_img_per_s,
            eval * 1e3,
            report.eval_img_per_s,
            args.steps
        ))?;
    }
    Ok(())
}

/// Runs `f` `warmup + steps` times and returns the seconds of the last `steps` runs, waiting
/// for the GPU to finish each one.
fn timed(
    warmup: usize,
    steps: usize,
    device: Device,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    let mut seconds = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let started = Instant::now();
        f()?;
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        if i >= warmup {
            seconds.push(started.elapsed().as_secs_f64());
        }
    }
    Ok(seconds)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}
