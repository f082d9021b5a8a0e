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

mod gradcheck;
mod inspect;
mod launch;
mod lrfind;
mod lrplot;
mod options;
mod overfit;
mod progress;
mod search;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use expanse_dataset::loader::ResidentMemory;
use expanse_tools::UsageError;
use expanse_trainer::diagnose::{self, Thresholds};
use expanse_trainer::dist::{self, Launch, ProcessGroup};
use expanse_trainer::metrics::read_metrics;
use expanse_trainer::protocol::Protocol;
use expanse_trainer::run::Parallel;
use expanse_trainer::Observer;
use expanse_trainer::Trainer;

use crate::options::{apply_preset, resolve_config, TrainOptions};
use crate::progress::PassProgress;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train ResNet, GoogLeNet or AlexNet on an expanse shard set, or evaluate a run",
    args_override_self = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

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

    /// Start N worker processes of this run on this machine (ranks 0..N on 127.0.0.1, as
    /// torchrun --nproc-per-node does) and train data-parallel. --batch-size stays the global
    /// batch.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024), conflicts_with = "eval_only")]
    nproc_per_node: Option<u32>,

    /// In a data-parallel run, normalise batches with statistics over all ranks' batches
    /// (synchronised batch norm) instead of each rank's own. config.json keeps the setting.
    #[arg(long, conflicts_with = "eval_only")]
    sync_bn: bool,

    /// In a data-parallel run, seconds to wait for the other ranks at the rendezvous and at
    /// every collective before failing.
    #[arg(long, value_name = "SECONDS", default_value_t = dist::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "eval_only")]
    dist_timeout: u64,

    /// In a data-parallel run, MiB of gradient per all-reduce bucket.
    #[arg(long, value_name = "MIB", default_value_t = (dist::DEFAULT_BUCKET_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=4096), conflicts_with = "eval_only")]
    bucket_mib: u64,

    /// Stop after global step N (counted from the run's start) with a checkpoint of that
    /// position, as Ctrl-C does; continue later with --resume.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "eval_only")]
    stop_after_step: Option<u64>,

    #[command(flatten)]
    train: TrainOptions,
}

/// Tools to debug and tune a network.
#[derive(Subcommand, Debug)]
enum Command {
    /// Check the analytic gradients of every layer type against central differences in f64;
    /// exits with 1 when one exceeds --threshold.
    GradCheck(gradcheck::GradCheckArgs),
    /// Write pictures and numbers of a checkpoint's network: first-layer filters, activation
    /// statistics, and weight and gradient histograms.
    Inspect(inspect::InspectArgs),
    /// Find the largest learning rate that does not diverge (halving from --max), or sweep
    /// the rate up from --min to --max and plot the loss against it (--sweep).
    LrFind(lrfind::LrFindArgs),
    /// Train on a few examples with augmentation and regularisation off and report whether
    /// the training error reaches zero.
    Overfit(overfit::OverfitArgs),
    /// Search hyperparameters (grid, random or Bayesian) with k-fold cross-validation on the
    /// training split; a stopped search resumes when run again.
    Search(search::SearchArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtocolKind {
    Run,
    Center,
    #[value(name = "10crop")]
    TenCrop,
    Multiscale,
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let matches = Args::command().get_matches();
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    let result = match args.command.take() {
        Some(command) => run_command(command, &matches),
        None => {
            apply_preset(&mut args.train, &matches);
            check_resume_options(&args, &matches).and_then(|()| match &args.eval_only {
                Some(path) => evaluate(path, &args).map(|()| ExitCode::SUCCESS),
                None => match args.nproc_per_node {
                    Some(workers) => launch::run_workers(workers as usize),
                    None => run(args).map(|()| ExitCode::SUCCESS),
                },
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => expanse_tools::report_with(&error, &is_config_error),
    }
}

/// Runs a subcommand; its verdict (a check that failed) exits with 1.
fn run_command(command: Command, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let (name, sub_matches) = matches.subcommand().expect("clap parsed a subcommand");
    if let Some(launch) = Launch::from_env()?.filter(|launch| launch.world_size > 1) {
        // Every rank would repeat the whole job and write the same files.
        return Err(UsageError(format!(
            "train {name} runs in one process, but WORLD_SIZE={} starts a data-parallel run; \
             unset WORLD_SIZE or start it without torchrun",
            launch.world_size
        ))
        .into());
    }
    let verdict = match command {
        Command::GradCheck(args) => gradcheck::run(&args)?,
        Command::Inspect(args) => {
            inspect::run(&args)?;
            true
        }
        Command::LrFind(mut args) => {
            apply_preset(&mut args.train, sub_matches);
            lrfind::run(&args)?
        }
        Command::Overfit(mut args) => {
            apply_preset(&mut args.train, sub_matches);
            overfit::run(&args)?
        }
        Command::Search(mut args) => {
            apply_preset(&mut args.train, sub_matches);
            search::run(&args)?
        }
    };
    Ok(if verdict { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Joins the data-parallel run that torchrun's variables describe, if any.
fn join_run(args: &Args) -> anyhow::Result<Option<Parallel>> {
    let Some(launch) = Launch::from_env()? else {
        if args.sync_bn {
            log::warn!("--sync-bn has no effect in a single-process run (WORLD_SIZE is not set)");
        }
        return Ok(None);
    };
    let timeout = Duration::from_secs(args.dist_timeout);
    if launch.rank == 0 {
        eprintln!(
            "waiting up to {} s for {} ranks at {}:{}",
            args.dist_timeout, launch.world_size, launch.master_addr, launch.master_port
        );
    }
    let group = ProcessGroup::join(&launch, timeout)?;
    if launch.rank == 0 {
        eprintln!("data-parallel run of {} ranks", launch.world_size);
    }
    Ok(Some(Parallel { group: Arc::new(group), bucket_bytes: (args.bucket_mib as usize) << 20 }))
}

fn run(args: Args) -> anyhow::Result<()> {
    let parallel = join_run(&args)?;
    let rank = parallel.as_ref().map(|p| p.group.rank());
    let result = train(&args, parallel);
    match rank {
        Some(rank) if rank > 0 => result.with_context(|| format!("rank {rank}")),
        _ => result,
    }
}

fn train(args: &Args, parallel: Option<Parallel>) -> anyhow::Result<()> {
    let mut trainer = match &args.resume {
        Some(run_dir) => {
            let mut trainer = Trainer::resume_parallel(run_dir, args.train.epochs, parallel)
                .with_context(|| format!("cannot resume {}", run_dir.display()))?;
            if let Some(threads) = args.train.threads {
                trainer.set_threads(threads)?;
            }
            trainer
        }
        None => {
            let mut config = resolve_config(&args.train)?;
            config.sync_batch_norm = args.sync_bn;
            let run_dir = args.run_dir.clone().expect("clap requires --run-dir without --resume");
            Trainer::create_parallel(config, &run_dir, parallel)
                .with_context(|| format!("cannot start a run in {}", run_dir.display()))?
        }
    };

    if let Some(step) = args.stop_after_step {
        let done = trainer.state().step;
        if step as usize <= done {
            return Err(UsageError(format!(
                "--stop-after-step {step} is not after the run's step {done}; give a later \
                 step, or leave it out to train to the end"
            ))
            .into());
        }
        trainer.stop_after_step(Some(step as usize));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    // Without a handler Ctrl-C still ends the run, at the last checkpoint.
    if let Err(error) = ctrlc::set_handler(move || handler_stop.store(true, Ordering::Relaxed)) {
        log::warn!("Ctrl-C will not checkpoint the run: {error}");
    }
    if !trainer.writes() {
        // Ranks other than 0 train silently; rank 0 reports and writes for the run.
        trainer.fit(&mut StopFlag(stop))?;
        return Ok(());
    }
    let mut progress = PassProgress::new(expanse_tools::interactive(), stop).with_curves();
    let summary = match trainer.fit(&mut progress) {
        Err(expanse_trainer::Error::Diverged { epoch, position, loss, lr }) => {
            let error = expanse_trainer::Error::Diverged { epoch, position, loss, lr };
            println!("{}", diagnose::diverged(epoch, loss, lr));
            return Err(error.into());
        }
        other => other?,
    };

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
    let metrics = read_metrics(trainer.run_dir())?;
    let thresholds = Thresholds::default();
    if let Some(diagnosis) =
        diagnose::diagnose(&metrics, &config.train_split, &config.eval_split, &thresholds)
    {
        println!("{diagnosis}");
    }
    Ok(())
}

/// An observer that only passes on Ctrl-C.
struct StopFlag(Arc<AtomicBool>);

impl Observer for StopFlag {
    fn stop_requested(&mut self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Evaluates the last checkpoint of a run with the chosen protocol.
fn evaluate(path: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    if let Some(launch) = Launch::from_env()?.filter(|launch| launch.world_size > 1) {
        // Every rank would evaluate the whole split again.
        return Err(UsageError(format!(
            "--eval-only runs in one process, but WORLD_SIZE={} starts a data-parallel run; \
             unset WORLD_SIZE or start it without torchrun",
            launch.world_size
        ))
        .into());
    }
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
        let allowed = &[
            "resume",
            "epochs",
            "threads",
            "nproc_per_node",
            "dist_timeout",
            "bucket_mib",
            "stop_after_step",
        ];
        ("resuming", &allowed[..])
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
            "only --epochs can be raised, and --threads, --nproc-per-node, --dist-timeout, \
             --bucket-mib and --stop-after-step given"
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

/// Returns whether `cause` is a trainer configuration error, which exits like a bad command
/// line.
fn is_config_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        cause.downcast_ref::<expanse_trainer::Error>(),
        Some(expanse_trainer::Error::Config(_))
    )
}
