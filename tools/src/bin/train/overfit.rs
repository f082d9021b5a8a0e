//! `train overfit`: checks that the network can drive the training error to zero on a few
//! examples.
//!
//! A network that cannot fit a few dozen examples has a bug (labels, loss, a layer) or far
//! too little capacity or learning rate. One that can is ready for the full data. The check
//! trains on `--samples` records of the training split with augmentation, weight decay, L1
//! decay, dropout and label smoothing off, at a constant learning rate, and after every epoch
//! evaluates the same records with the evaluation preprocessing. It stops at the first epoch
//! with no error.

use std::path::PathBuf;

use anyhow::Context;
use expanse_trainer::config::Selection;
use expanse_trainer::optim::Schedule;
use expanse_trainer::run::Quiet;
use expanse_trainer::Trainer;

use crate::options::{resolve_config, TrainOptions};
use expanse_tools::UsageError;

/// Options of `train overfit`.
#[derive(clap::Args, Debug)]
pub struct OverfitArgs {
    #[command(flatten)]
    pub train: TrainOptions,

    /// Number of training examples, drawn from the training split by --seed.
    #[arg(long, default_value_t = 64)]
    pub samples: usize,

    /// Maximum number of epochs (passes over the examples) before the verdict.
    #[arg(long, default_value_t = 200)]
    pub max_epochs: usize,

    /// Run directory for config.json, metrics.jsonl and the checkpoint (default: a temporary
    /// folder, removed at the end).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

/// Runs the check, prints the verdict and returns whether the error reached zero.
pub fn run(args: &OverfitArgs) -> anyhow::Result<bool> {
    if args.samples == 0 {
        return Err(UsageError("--samples must be at least 1, got 0".into()).into());
    }
    if args.max_epochs == 0 {
        return Err(UsageError("--max-epochs must be at least 1, got 0".into()).into());
    }
    let mut config = resolve_config(&args.train)?;
    // The options switched off below must still be valid, so that a typo is not hidden.
    config.validate()?;
    let selection = Selection::Samples { count: args.samples, seed: config.seed };
    config.eval_split = selection.eval_name();
    config.selection = Some(selection);
    config.train_augment = config.eval_augment.clone();
    config.weight_decay = 0.0;
    config.l1_decay = 0.0;
    config.dropout = Some(0.0);
    config.label_smoothing = 0.0;
    config.lr.schedule = Schedule::Constant;
    config.lr.warmup_epochs = 0;
    config.epochs = args.max_epochs;
    config.batch_size = config.batch_size.min(args.samples);
    config.log_every = 0;

    let temporary;
    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("failed to create a temporary run folder")?;
            temporary.path().join("overfit")
        }
    };
    let mut trainer = Trainer::create(config, &run_dir)
        .with_context(|| format!("failed to start a run in {}", run_dir.display()))?;
    let config = trainer.config().clone();
    println!(
        "{} on {} examples of {} (split {}), batch {}, lr {}, up to {} epochs",
        config.model,
        args.samples,
        config.data.display(),
        config.train_split,
        config.batch_size,
        config.lr.base,
        config.epochs
    );

    let mut best: Option<(usize, f64)> = None;
    for epoch in 1..=config.epochs {
        let summary = trainer.fit_until(epoch, &mut Quiet)?;
        let Some(eval) = summary.last_eval else { continue };
        let error = 1.0 - eval.top1;
        let wrong = (error * eval.samples as f64).round() as u64;
        if best.is_none_or(|(_, best_error)| error < best_error) {
            best = Some((epoch, error));
        }
        if epoch == 1 || epoch % 10 == 0 || wrong == 0 || epoch == config.epochs {
            println!(
                "epoch {epoch:>4}  training error {:6.2}% ({wrong} of {} wrong)  loss {:.4}",
                100.0 * error,
                eval.samples,
                eval.loss
            );
        }
        if wrong == 0 {
            println!(
                "verdict: reached zero training error on {} examples after {epoch} epochs ({} \
                 steps)",
                eval.samples,
                trainer.state().step
            );
            return Ok(true);
        }
    }
    let (epoch, error) = best.unwrap_or((0, 1.0));
    println!(
        "verdict: did not reach zero training error in {} epochs (best {:.2}% after epoch \
         {epoch}); check that labels match images, the loss and the last layer, and try a \
         larger learning rate, more epochs or a larger model",
        config.epochs,
        100.0 * error
    );
    Ok(false)
}
