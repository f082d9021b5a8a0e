//! The options that define a training run, shared by `train` and its subcommands that train
//! (`lr-find`, `overfit`, `search`), and their resolution into a [`TrainConfig`].

use std::path::PathBuf;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};

use expanse_augment::{CropFlipNormalize, HorizontalFlip, PadMode, RandomCrop};
use expanse_dataset::loader::Augmentation;
use expanse_dataset::shard::{Layout, ShardSet};
use expanse_tools::{load_recipe, recipe_help, PrecisionArg, UsageError};
use expanse_trainer::config::Compute;
use expanse_trainer::optim::{LearningRate, Schedule};
use expanse_trainer::TrainConfig;

/// Data, model, optimisation, regularisation and compute options of a run.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainOptions {
    /// Shard set folder written by `shardify`.
    #[arg(long)]
    pub data: Option<PathBuf>,

    /// Settings of a paper's recipe. Options given explicitly override them. resnet-imagenet:
    /// scale jitter 256..480, 224 crop, flip, PCA lighting, batch 256, lr 0.1 divided by 10
    /// on plateaus, 120 epochs. resnet-cifar: pad-4 crop and flip, batch 128, lr 0.1 divided
    /// by 10 at epochs 82 and 123 of 164.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,

    /// Model: resnet18|34|50|101|152 (suffix -a, -b, -c picks the shortcut option),
    /// plain18..152, resnetD/plainD for CIFAR (D = 6n + 2), googlenet, googlenet-paper,
    /// alexnet. `model list` shows them all.
    #[arg(long, default_value = "resnet20")]
    pub model: String,

    /// Device: cpu, cuda, cuda:N or auto (CUDA when usable).
    #[arg(long, default_value = "cpu")]
    pub device: String,

    /// Arithmetic: f32, or mixed precision on CUDA (bf16, or f16 with loss scaling).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,

    /// Keep images and convolution weights in channels-last (NHWC) memory layout.
    #[arg(long)]
    pub channels_last: bool,

    /// Let cuDNN benchmark convolution algorithms (CUDA only).
    #[arg(long)]
    pub cudnn_benchmark: bool,

    /// Cut each batch into this many micro-batches whose gradients add up before one update,
    /// for batches that do not fit in memory.
    #[arg(long, default_value_t = 1)]
    pub accumulation: usize,

    /// Training steps between lines of steps.jsonl (0: none).
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,

    /// Epochs to train (default 10). With --resume, this raises the run's total.
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Samples per training step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,

    /// Samples per evaluation batch.
    #[arg(long, default_value_t = 500)]
    pub eval_batch_size: usize,

    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,

    /// Learning-rate schedule after warm-up.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    pub schedule: ScheduleKind,

    /// Epochs at which the step schedule multiplies the rate by --gamma (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<usize>,

    /// Multiplier of the step and plateau schedules.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,

    /// Epochs without improvement of the evaluation error before the plateau schedule
    /// multiplies the rate by --gamma.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,

    /// Epochs of linear learning-rate warm-up.
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,

    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,

    /// Use Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,

    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,

    /// Exempt batch-norm parameters and biases from weight decay.
    #[arg(long)]
    pub no_decay_bn_bias: bool,

    /// Label smoothing of the loss, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,

    /// L1 weight decay (added to the gradient as decay x sign(w)), on the same parameters as
    /// --weight-decay.
    #[arg(long, default_value_t = 0.0)]
    pub l1_decay: f64,

    /// Dropout rate before the classifier (default: the model's, 0 for ResNets).
    #[arg(long)]
    pub dropout: Option<f64>,

    /// Strength of the default crop-and-flip augmentation, from 0 to 4. The padding is
    /// --padding times it (rounded) and the flip probability 0.5 times it (at most 0.5), so 0
    /// turns both off.
    #[arg(long, default_value_t = 1.0, conflicts_with = "recipe")]
    pub augment_strength: f64,

    /// Training augmentation recipe. The default is resnet-imagenet for photo sets, and for
    /// fixed-shape sets the crop and flip of --padding and --no-flip with the set's mean and std.
    #[arg(long, value_name = "NAME|FILE", long_help = recipe_help())]
    pub recipe: Option<String>,

    /// Evaluation recipe (default: the set's mean and std for fixed-shape sets, eval-center
    /// for photo sets). A recipe with several views (eval-10crop) averages their scores.
    #[arg(long, value_name = "NAME|FILE")]
    pub eval_recipe: Option<String>,

    /// Zero padding, in pixels, of the default random-crop augmentation. 0 disables cropping.
    #[arg(long, default_value_t = 4, conflicts_with = "recipe")]
    pub padding: usize,

    /// Disable random horizontal flips of the default augmentation.
    #[arg(long, conflicts_with = "recipe")]
    pub no_flip: bool,

    /// Optimizer steps between mid-epoch checkpoints (0: at epoch ends only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,

    /// Seed of initialisation, epoch order and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Threads for libtorch and augmentation (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Batches prepared ahead of the training step.
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,

    /// Split to train on.
    #[arg(long, default_value = "train")]
    pub train_split: String,

    /// Split to evaluate after each epoch (default: `test`, or `val` when the set has no
    /// `test` split, such as photo sets converted with a labelled validation folder).
    #[arg(long)]
    pub eval_split: Option<String>,
}

/// Learning-rate schedule of --schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKind {
    Constant,
    Step,
    Cosine,
    Plateau,
}

/// Paper recipe of --preset.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    ResnetImagenet,
    ResnetCifar,
}

/// Fills the options a preset sets, unless they were given on the command line.
pub fn apply_preset(args: &mut TrainOptions, matches: &ArgMatches) {
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

/// Builds the run configuration: opens the shard set, picks the evaluation split and the
/// augmentation, and checks the schedule options.
pub fn resolve_config(args: &TrainOptions) -> anyhow::Result<TrainConfig> {
    let Some(data) = args.data.clone() else {
        return Err(UsageError(
            "--data is missing: give the shard set folder written by shardify (plain `train` \
             also takes --resume RUN or --eval-only RUN instead)"
                .into(),
        )
        .into());
    };
    let shards = ShardSet::open(&data)
        .with_context(|| format!("failed to open the shard set {}", data.display()))?;
    // Stored absolute, so that `--resume` works from any working directory.
    let data = std::fs::canonicalize(&data)
        .with_context(|| format!("failed to resolve the path {}", data.display()))?;
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
        sync_batch_norm: false,
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
        l1_decay: args.l1_decay,
        dropout: args.dropout,
        selection: None,
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
    args: &TrainOptions,
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
            let strength = args.augment_strength;
            if !(strength.is_finite() && (0.0..=4.0).contains(&strength)) {
                return Err(UsageError(format!(
                    "--augment-strength must be in [0, 4], got {strength}"
                ))
                .into());
            }
            let padding = (args.padding as f64 * strength).round() as usize;
            if padding > 0 {
                train.crop = Some(RandomCrop::new(height, width, padding, PadMode::Zero));
            }
            let flip = (0.5 * strength).min(0.5);
            if !args.no_flip && flip > 0.0 {
                train.flip = Some(HorizontalFlip::new(flip));
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
