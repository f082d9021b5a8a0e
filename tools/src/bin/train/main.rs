//! `train`: trains a CIFAR-style ResNet on a shard set and evaluates it after every epoch.
//!
//! ```text
//! train --data shards/fashion-mnist --model resnet20 --epochs 8 --run-dir runs/fm
//! train --data shards/photos --recipe resnet-imagenet --eval-recipe eval-center --run-dir runs/p
//! train --resume runs/fm
//! train --eval-only runs/p --protocol 10crop
//! ```
//!
//! Ctrl-C stops a run after the current step with a checkpoint of that position. `--resume`
//! then continues with exactly the batches the run would have seen.

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use expanse_augment::{CropFlipNormalize, HorizontalFlip, PadMode, RandomCrop};
use expanse_dataset::loader::{Augmentation, ResidentMemory};
use expanse_dataset::shard::{Layout, ShardSet};
use expanse_tools::{load_recipe, recipe_help, PrecisionArg, UsageError};
use expanse_trainer::config::Compute;
use expanse_trainer::optim::{LearningRate, Schedule};
use expanse_trainer::protocol::Protocol;
use expanse_trainer::{TrainConfig, Trainer};

use crate::progress::PassProgress;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train ResNet, GoogLeNet or AlexNet on an expanse shard set, or evaluate a run",
    args_override_self = true
)]
struct Args {
    /// Shard set folder written by `shardify`.
    #[arg(long, required_unless_present_any = ["resume", "eval_only"], conflicts_with_all = ["resume", "eval_only"])]
    data: Option<PathBuf>,

    /// Run directory to create: config.json, metrics.jsonl, steps.jsonl and checkpoint.ot go
    /// there.
    #[arg(long, required_unless_present_any = ["resume", "eval_only"], conflicts_with_all = ["resume", "eval_only"])]
    run_dir: Option<PathBuf>,

    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "eval_only")]
    resume: Option<PathBuf>,

    /// Evaluate the last checkpoint of this run directory (or its checkpoint.ot) with
    /// --protocol, and train nothing.
    #[arg(long, value_name = "RUN_DIR")]
    eval_only: Option<PathBuf>,

    /// Evaluation protocol of --eval-only: the run's own evaluation, a centre crop, ten crops
    /// (corners, centre and mirrors) or multi-scale centre squares at --scales.
    #[arg(long, value_enum, default_value_t = ProtocolKind::Run, requires = "eval_only")]
    protocol: ProtocolKind,

    /// Crop side of the center and 10crop protocols (shorter side scaled to 8/7 of it).
    #[arg(long, default_value_t = 224, requires = "eval_only")]
    crop: usize,

    /// Shorter sides of the multiscale protocol (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "224,256,384,480,640",
        requires = "eval_only"
    )]
    scales: Vec<usize>,

    /// Do not add the mirror of each multiscale view.
    #[arg(long, requires = "eval_only")]
    no_mirror: bool,

    /// Split evaluated by --eval-only (default: the run's evaluation split).
    #[arg(long, requires = "eval_only")]
    split: Option<String>,

    /// Settings of a paper's recipe; options given explicitly override them. resnet-imagenet:
    /// scale jitter 256..480, 224 crop, flip, PCA lighting, batch 256, lr 0.1 divided by 10
    /// on plateaus, 120 epochs. resnet-cifar: pad-4 crop and flip, batch 128, lr 0.1 divided
    /// by 10 at epochs 82 and 123 of 164.
    #[arg(long, value_enum)]
    preset: Option<Preset>,

    /// Model: resnet18|34|50|101|152 (suffix -a, -b, -c picks the shortcut option),
    /// plain18..152, resnetD/plainD for CIFAR (D = 6n + 2), googlenet, googlenet-paper,
    /// alexnet; `model list` shows them all.
    #[arg(long, default_value = "resnet20")]
    model: String,

    /// Device: cpu, cuda, cuda:N or auto (CUDA when usable).
    #[arg(long, default_value = "cpu")]
    device: String,

    /// Arithmetic: f32, or mixed precision on CUDA (bf16, or f16 with loss scaling).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,

    /// Keep images and convolution weights in channels-last (NHWC) memory layout.
    #[arg(long)]
    channels_last: bool,

    /// Let cuDNN benchmark convolution algorithms (CUDA only).
    #[arg(long)]
    cudnn_benchmark: bool,

    /// Cut each batch into this many micro-batches whose gradients add up before one update,
    /// for batches that do not fit in memory.
    #[arg(long, default_value_t = 1)]
    accumulation: usize,

    /// Training steps between lines of steps.jsonl (0: none).
    #[arg(long, default_value_t = 50)]
    log_every: usize,

    /// Epochs to train (default 10); with --resume, raises the run's total.
    #[arg(long)]
    epochs: Option<usize>,

    /// Samples per training step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,

    /// Samples per evaluation batch.
    #[arg(long, default_value_t = 500)]
    eval_batch_size: usize,

    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,

    /// Learning-rate schedule after warm-up.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    schedule: ScheduleKind,

    /// Epochs at which the step schedule multiplies the rate by --gamma (comma separated).
    #[arg(long, value_delimiter = ',')]
    milestones: Vec<usize>,

    /// Multiplier of the step and plateau schedules.
    #[arg(long, default_value_t = 0.1)]
    gamma: f64,

    /// Epochs without improvement of the evaluation error before the plateau schedule
    /// multiplies the rate by --gamma.
    #[arg(long, default_value_t = 5)]
    patience: usize,

    /// Epochs of linear learning-rate warm-up.
    #[arg(long, default_value_t = 0)]
    warmup_epochs: usize,

    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,

    /// Use Nesterov momentum.
    #[arg(long)]
    nesterov: bool,

    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,

    /// Exempt batch-norm parameters and biases from weight decay.
    #[arg(long)]
    no_decay_bn_bias: bool,

    /// Label smoothing of the loss, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,

    /// Training augmentation recipe (default: for fixed-shape sets, the crop and flip of
    /// --padding and --no-flip with the set's mean and std; for photo sets, resnet-imagenet).
    #[arg(long, value_name = "NAME|FILE", long_help = recipe_help())]
    recipe: Option<String>,

    /// Evaluation recipe (default: the set's mean and std for fixed-shape sets, eval-center
    /// for photo sets). A recipe with several views (eval-10crop) averages their scores.
    #[arg(long, value_name = "NAME|FILE")]
    eval_recipe: Option<String>,

    /// Zero padding, in pixels, of the default random-crop augmentation; 0 disables cropping.
    #[arg(long, default_value_t = 4, conflicts_with = "recipe")]
    padding: usize,

    /// Disable random horizontal flips of the default augmentation.
    #[arg(long, conflicts_with = "recipe")]
    no_flip: bool,

    /// Optimizer steps between mid-epoch checkpoints (0: at epoch ends only).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,

    /// Seed of initialisation, epoch order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Threads for libtorch and augmentation (default: all cores).
    #[arg(long)]
    threads: Option<usize>,

    /// Batches prepared ahead of the training step.
    #[arg(long, default_value_t = 2)]
    prefetch: usize,

    /// Split to train on.
    #[arg(long, default_value = "train")]
    train_split: String,

    /// Split to evaluate after each epoch (default: `test`, or `val` when the set has no
    /// `test` split, as photo sets converted with a labelled validation folder).
    #[arg(long)]
    eval_split: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScheduleKind {
    Constant,
    Step,
    Cosine,
    Plateau,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtocolKind {
    Run,
    Center,
    #[value(name = "10crop")]
    TenCrop,
    Multiscale,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    ResnetImagenet,
    ResnetCifar,
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let matches = Args::command().get_matches();
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    apply_preset(&mut args, &matches);
    let result = check_resume_options(&args, &matches).and_then(|()| match &args.eval_only {
        Some(path) => evaluate(path, &args),
        None => run(args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => expanse_tools::report_with(&error, &is_config_error),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut trainer = match &args.resume {
        Some(run_dir) => Trainer::resume_with_epochs(run_dir, args.epochs)
            .with_context(|| format!("cannot resume {}", run_dir.display()))?,
        None => {
            let config = resolve_config(&args)?;
            let run_dir = args.run_dir.clone().expect("clap requires --run-dir without --resume");
            Trainer::create(config, &run_dir)
                .with_context(|| format!("cannot start a run in {}", run_dir.display()))?
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    // Without a handler Ctrl-C still ends the run, at the last checkpoint.
    if let Err(error) = ctrlc::set_handler(move || handler_stop.store(true, Ordering::Relaxed)) {
        log::warn!("Ctrl-C will not checkpoint the run: {error}");
    }
    let mut progress = PassProgress::new(expanse_tools::interactive(), stop);
    let summary = trainer.fit(&mut progress)?;

    let config = trainer.config();
    println!("model {} on {}", config.model, config.data.display());
    println!("epochs {}  session wall time {:.1} s", summary.epochs, summary.seconds);
    if let Some(memory) = ResidentMemory::read() {
        println!("peak resident memory {:.0} MiB", memory.peak as f64 / (1024.0 * 1024.0));
    }
    if summary.stopped {
        let state = trainer.state();
        println!(
            "stopped in epoch {} before batch {} (step {}); the checkpoint holds that position: \
             continue with train --resume {}",
            state.epochs_done + 1,
            state.loader.position,
            state.step,
            trainer.run_dir().display()
        );
        return Ok(());
    }
    if let Some(eval) = &summary.last_eval {
        println!(
            "final {} top1 {:.2}%  top5 {:.2}%  loss {:.4}",
            eval.split,
            100.0 * eval.top1,
            100.0 * eval.top5,
            eval.loss
        );
    }
    if let Some(best) = summary.best_top1 {
        println!("best {} top1 {:.2}%", config.eval_split, 100.0 * best);
    }
    Ok(())
}

/// Fills the options a preset sets, unless they were given on the command line.
fn apply_preset(args: &mut Args, matches: &ArgMatches) {
    let Some(preset) = args.preset else { return };
    let on_command_line = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    if !on_command_line("lr") {
        args.lr = 0.1;
    }
    if !on_command_line("momentum") {
        args.momentum = 0.9;
    }
    if !on_command_line("weight_decay") {
        args.weight_decay = 1e-4;
    }
    match preset {
        Preset::ResnetImagenet => {
            if !on_command_line("recipe") {
                args.recipe = Some("resnet-imagenet".into());
            }
            if !on_command_line("eval_recipe") {
                args.eval_recipe = Some("eval-center".into());
            }
            if !on_command_line("batch_size") {
                args.batch_size = 256;
            }
            if !on_command_line("schedule") {
                args.schedule = ScheduleKind::Plateau;
                if !on_command_line("gamma") {
                    args.gamma = 0.1;
                }
            }
            if !on_command_line("epochs") {
                args.epochs = Some(120);
            }
        }
        Preset::ResnetCifar => {
            if !on_command_line("batch_size") {
                args.batch_size = 128;
            }
            if !on_command_line("schedule") {
                args.schedule = ScheduleKind::Step;
                if !on_command_line("milestones") {
                    args.milestones = vec![82, 123];
                }
                if !on_command_line("gamma") {
                    args.gamma = 0.1;
                }
            }
            if !on_command_line("epochs") {
                args.epochs = Some(164);
            }
        }
    }
}

/// Evaluates the last checkpoint of a run with the chosen protocol.
fn evaluate(path: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    // A checkpoint file stands for its run directory.
    let run_dir = if path.is_file() { path.parent().unwrap_or(path) } else { path };
    let trainer = Trainer::open_for_evaluation(run_dir)
        .with_context(|| format!("cannot open the run {}", run_dir.display()))?;
    let protocol = match args.protocol {
        ProtocolKind::Run => Protocol::Run,
        ProtocolKind::Center => Protocol::Center { crop: args.crop },
        ProtocolKind::TenCrop => Protocol::TenCrop { crop: args.crop },
        ProtocolKind::Multiscale => {
            Protocol::MultiScale { sides: args.scales.clone(), mirror: !args.no_mirror }
        }
    };
    let split = args.split.clone().unwrap_or_else(|| trainer.config().eval_split.clone());
    let mut progress =
        PassProgress::new(expanse_tools::interactive(), Arc::new(AtomicBool::new(false)));
    let epoch = trainer.state().epochs_done;
    let metrics = trainer.evaluate_with(&protocol, &split, epoch, &mut progress)?;
    println!(
        "{} after epoch {epoch} (step {}), split {split}, protocol {protocol}",
        trainer.config().model,
        trainer.state().step
    );
    println!(
        "top1 {:.2}%  top5 {:.2}%  loss {:.4}  ({} images, {:.1} s)",
        100.0 * metrics.top1,
        100.0 * metrics.top5,
        metrics.loss,
        metrics.samples,
        metrics.seconds
    );
    Ok(())
}

/// Rejects training options given together with `--resume`: the run's config.json fixes
/// them, and silently ignoring them would mislead.
fn check_resume_options(args: &Args, matches: &ArgMatches) -> anyhow::Result<()> {
    // clap's `requires` does not fire for options with default values.
    let evaluation_only = ["protocol", "crop", "scales", "no_mirror", "split"];
    if args.eval_only.is_none() {
        let stray: Vec<String> = evaluation_only
            .iter()
            .filter(|&&id| matches.value_source(id) == Some(ValueSource::CommandLine))
            .map(|id| format!("--{}", id.replace('_', "-")))
            .collect();
        if !stray.is_empty() {
            return Err(UsageError(format!(
                "only --eval-only RUN_DIR takes {}; without it, this would train",
                stray.join(", ")
            ))
            .into());
        }
    }
    let (mode, allowed): (&str, &[&str]) = if args.resume.is_some() {
        ("resuming", &["resume", "epochs"])
    } else if args.eval_only.is_some() {
        ("evaluating", &["eval_only", "protocol", "crop", "scales", "no_mirror", "split"][..])
    } else {
        return Ok(());
    };
    let command = Args::command();
    let fixed: Vec<String> = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| !allowed.contains(id))
        .filter(|&id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !fixed.is_empty() {
        let only = if args.resume.is_some() {
            "only --epochs can be raised"
        } else {
            "only --protocol, --crop, --scales, --no-mirror and --split apply"
        };
        return Err(UsageError(format!(
            "{} cannot be changed when {mode}: the run's config.json fixes it; {only}",
            fixed.join(", ")
        ))
        .into());
    }
    Ok(())
}

fn resolve_config(args: &Args) -> anyhow::Result<TrainConfig> {
    let data = args.data.clone().expect("clap requires --data without --resume");
    let shards = ShardSet::open(&data)
        .with_context(|| format!("cannot open the shard set {}", data.display()))?;
    // Stored absolute, so that `--resume` works from any working directory.
    let data = std::fs::canonicalize(&data)
        .with_context(|| format!("cannot resolve the path {}", data.display()))?;
    let split = shards.split(&args.train_split)?;
    let (train_augment, eval_augment) = resolve_augmentation(args, split)?;
    let has = |name: &str| shards.manifest().splits.iter().any(|s| s.name == name);
    let eval_split = match &args.eval_split {
        Some(name) => name.clone(),
        None if !has("test") && has("val") => "val".to_string(),
        None => "test".to_string(),
    };

    if !args.milestones.is_empty() && !matches!(args.schedule, ScheduleKind::Step) {
        return Err(UsageError("--milestones needs --schedule step".into()).into());
    }
    let schedule = match args.schedule {
        ScheduleKind::Constant => Schedule::Constant,
        ScheduleKind::Cosine => Schedule::Cosine,
        ScheduleKind::Plateau => {
            Schedule::Plateau { factor: args.gamma, patience: args.patience, threshold: 1e-4 }
        }
        ScheduleKind::Step => {
            if args.milestones.is_empty() {
                return Err(UsageError(
                    "--schedule step needs --milestones, for example --milestones 82,123".into(),
                )
                .into());
            }
            Schedule::Step { milestones: args.milestones.clone(), gamma: args.gamma }
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(1));

    Ok(TrainConfig {
        data,
        train_split: args.train_split.clone(),
        train_content_hash: split.stats().content_hash.clone(),
        eval_split,
        model: args.model.clone(),
        epochs: args.epochs.unwrap_or(10),
        batch_size: args.batch_size,
        eval_batch_size: args.eval_batch_size,
        lr: LearningRate { base: args.lr, schedule, warmup_epochs: args.warmup_epochs },
        momentum: args.momentum,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        decay_bn_and_bias: !args.no_decay_bn_bias,
        label_smoothing: args.label_smoothing,
        seed: args.seed,
        threads,
        prefetch: args.prefetch,
        checkpoint_every: args.checkpoint_every,
        log_every: args.log_every,
        compute: Compute {
            device: args.device.clone(),
            precision: args.precision.into(),
            channels_last: args.channels_last,
            cudnn_benchmark: args.cudnn_benchmark,
            accumulation: args.accumulation,
        },
        train_augment,
        eval_augment,
    })
}

/// Chooses the training and evaluation augmentation: the recipes given, else the defaults of
/// the split's layout.
fn resolve_augmentation(
    args: &Args,
    split: &expanse_dataset::shard::Split,
) -> anyhow::Result<(Augmentation, Augmentation)> {
    let recipe = |spec: &Option<String>, default: &str| -> anyhow::Result<Augmentation> {
        Ok(load_recipe(spec.as_deref().unwrap_or(default))?.into())
    };
    if split.schema().layout == Layout::Variable {
        let train = recipe(&args.recipe, "resnet-imagenet")?;
        let eval = recipe(&args.eval_recipe, "eval-center")?;
        return Ok((train, eval));
    }

    let stats = split.stats();
    let mean: Vec<f32> = stats.channel_mean.iter().map(|&m| m as f32).collect();
    let std: Vec<f32> = stats.channel_std.iter().map(|&s| s as f32).collect();
    let (height, width, _) = split.fixed_shape()?;
    let eval = CropFlipNormalize::eval(mean, std);
    let train = match &args.recipe {
        Some(spec) => load_recipe(spec)?.into(),
        None => {
            let mut train = eval.clone();
            if args.padding > 0 {
                train.crop = Some(RandomCrop::new(height, width, args.padding, PadMode::Zero));
            }
            if !args.no_flip {
                train.flip = Some(HorizontalFlip::new(0.5));
            }
            train.into()
        }
    };
    let eval = match &args.eval_recipe {
        Some(spec) => load_recipe(spec)?.into(),
        None => eval.into(),
    };
    Ok((train, eval))
}

/// Returns whether `cause` is a trainer configuration error, which exits like a bad command
/// line.
fn is_config_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        cause.downcast_ref::<expanse_trainer::Error>(),
        Some(expanse_trainer::Error::Config(_))
    )
}
