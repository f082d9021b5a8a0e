//! `train`: trains a CIFAR-style ResNet on a shard set and evaluates it after every epoch.
//!
//! ```text
//! train --data shards/fashion-mnist --model resnet20 --epochs 8 --run-dir runs/fm
//! train --data shards/photos --recipe resnet-imagenet --eval-recipe eval-center --run-dir runs/p
//! train --resume runs/fm
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
use expanse_tools::{load_recipe, recipe_help, UsageError};
use expanse_trainer::optim::{LearningRate, Schedule};
use expanse_trainer::{TrainConfig, Trainer};

use crate::progress::PassProgress;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train a CIFAR-style ResNet on an expanse shard set",
    args_override_self = true
)]
struct Args {
    /// Shard set folder written by `shardify`.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    data: Option<PathBuf>,

    /// Run directory to create: config.json, metrics.jsonl and checkpoint.ot go there.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    run_dir: Option<PathBuf>,

    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,

    /// Model: resnetD or plainD with D = 6n + 2 (20, 32, 44, 56, 110).
    #[arg(long, default_value = "resnet20")]
    model: String,

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

    /// Multiplier of the step schedule.
    #[arg(long, default_value_t = 0.1)]
    gamma: f64,

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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScheduleKind {
    Constant,
    Step,
    Cosine,
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    let result = check_resume_options(&args, &matches).and_then(|()| run(args));
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

/// Rejects training options given together with `--resume`: the run's config.json fixes
/// them, and silently ignoring them would mislead.
fn check_resume_options(args: &Args, matches: &ArgMatches) -> anyhow::Result<()> {
    if args.resume.is_none() {
        return Ok(());
    }
    let command = Args::command();
    let fixed: Vec<String> = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|&id| id != "resume" && id != "epochs")
        .filter(|&id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !fixed.is_empty() {
        return Err(UsageError(format!(
            "{} cannot be changed when resuming: the run's config.json fixes it; only --epochs \
             can be raised",
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
