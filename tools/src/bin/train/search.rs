//! `train search`: hyperparameter search with k-fold cross-validation on the training split.
//!
//! Each trial takes a point from the strategy (grid, random or Bayesian, see [`expanse_tune`]).
//! For each fold it trains one run on the other folds and evaluates it on the held-out fold.
//! The point's score is the mean final error over the folds. The folds are stratified by class
//! and the same for every trial. Everything is written to `--out`:
//! `search.json` (the settings), `trials.jsonl` (one line per finished trial),
//! `results.md` (the table), `search.png` (error per trial and best so far) and one run
//! directory per trial and fold. A stopped search continues where it stopped when the same
//! command runs again: finished trials are read from `trials.jsonl` and an unfinished fold
//! resumes from its checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use expanse_trainer::config::Selection;
use expanse_trainer::run::Observer;
use expanse_trainer::{TrainConfig, Trainer};
use expanse_tune::{propose, Param, Point, Space, Strategy, Trial, TrialLog, Value};
use serde::{Deserialize, Serialize};

use crate::lrplot::{LogChart, Series};
use crate::options::{resolve_config, TrainOptions};
use expanse_tools::UsageError;

/// Names of the parameters a search can vary, for error messages.
const PARAMS: &str = "lr, momentum, weight-decay, l1-decay, batch-size, epochs, model, depth \
    (CIFAR ResNet depth: model resnetD), augment-strength, dropout, label-smoothing";

/// Options of `train search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub train: TrainOptions,

    /// A parameter and its range, repeated: NAME=log:LOW..HIGH (log-uniform), NAME=lin:LOW..HIGH,
    /// NAME=int:LOW..HIGH, NAME=logint:LOW..HIGH or NAME=choice:A,B,C. Names: lr, momentum,
    /// weight-decay, l1-decay, batch-size, epochs, model, depth, augment-strength, dropout,
    /// label-smoothing.
    #[arg(long = "param", value_name = "SPEC", required = true)]
    pub params: Vec<String>,

    /// Search strategy: grid (3 values per range), grid:N, random, bayes (Gaussian process and
    /// expected improvement after max(3, 2 x parameters) random trials) or bayes:N (N random
    /// trials first).
    #[arg(long, default_value = "bayes")]
    pub strategy: String,

    /// Total number of trials, including those of earlier runs of the same search. A grid
    /// search stops early when it is exhausted.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,

    /// Cross-validation folds of the training split.
    #[arg(long, default_value_t = 3)]
    pub folds: usize,

    /// Use only this many training records (drawn by --seed) for the folds, for a faster
    /// search.
    #[arg(long)]
    pub records: Option<usize>,

    /// Search folder. It is created when missing, and an existing one with the same settings
    /// is resumed.
    #[arg(long)]
    pub out: PathBuf,
}

/// Settings that define a search. A resumed search must have the same settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    params: Vec<String>,
    strategy: Strategy,
    folds: usize,
    records: Option<usize>,
    seed: u64,
    /// The training configuration before a point's values apply.
    base: TrainConfig,
}

const SETTINGS_FILE: &str = "search.json";
const TRIALS_FILE: &str = "trials.jsonl";
const TABLE_FILE: &str = "results.md";
const PLOT_FILE: &str = "search.png";

/// Runs the search and returns whether at least one trial succeeded.
pub fn run(args: &SearchArgs) -> anyhow::Result<bool> {
    let space = Space::parse(&args.params).map_err(|error| UsageError(error.to_string()))?;
    for param in &space.params {
        check_name(param)?;
    }
    let strategy: Strategy = args
        .strategy
        .parse()
        .map_err(|error: expanse_tune::Error| UsageError(error.to_string()))?;
    if args.folds < 2 {
        return Err(UsageError(format!("--folds must be at least 2, got {}", args.folds)).into());
    }
    let base = resolve_config(&args.train)?;
    check_records(args, &base)?;
    check_values(args, &space)?;
    let settings = Settings {
        params: args.params.clone(),
        strategy: strategy.clone(),
        folds: args.folds,
        records: args.records,
        seed: base.seed,
        base,
    };
    open_search(&args.out, &settings)?;
    let log = TrialLog::open(&args.out.join(TRIALS_FILE))?;
    let mut history = log.load()?;

    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    if let Err(error) = ctrlc::set_handler(move || handler_stop.store(true, Ordering::Relaxed)) {
        log::warn!("Ctrl-C will not stop the search cleanly: {error}");
    }
    println!(
        "search of {} parameters, {} trials of {}-fold cross-validation on {}{}; {} done",
        space.params.len(),
        args.trials,
        args.folds,
        settings.base.data.display(),
        args.records.map_or(String::new(), |n| format!(" ({n} records)")),
        history.len()
    );
    while history.len() < args.trials {
        let Some(point) = propose(&space, &strategy, settings.seed, &history)? else {
            println!("the grid is exhausted after {} trials", history.len());
            break;
        };
        let index = history.len();
        let Some(trial) = run_trial(args, &settings, index, point, &stop)? else {
            println!("stopped in trial {}; run the same command again to continue", index + 1);
            return Ok(expanse_tune::best(&history).is_some());
        };
        println!("{}", trial_line(&trial, args.trials));
        log.append(&trial)?;
        history.push(trial);
        write_reports(&args.out, &space, &history)?;
    }
    write_reports(&args.out, &space, &history)?;
    match expanse_tune::best(&history) {
        Some(best) => {
            let values: Vec<String> =
                best.point.iter().map(|(name, value)| format!("{name}={}", short(value))).collect();
            println!(
                "best trial {}: {}  cross-validation error {:.2}%",
                best.index + 1,
                values.join(" "),
                100.0 * best.score.unwrap_or(f64::NAN)
            );
            println!("table {}", args.out.join(TABLE_FILE).display());
            Ok(true)
        }
        None => {
            println!("no trial succeeded");
            Ok(false)
        }
    }
}

/// Rejects a parameter the search cannot apply.
fn check_name(param: &Param) -> anyhow::Result<()> {
    let known = [
        "lr",
        "momentum",
        "weight-decay",
        "l1-decay",
        "batch-size",
        "epochs",
        "model",
        "depth",
        "augment-strength",
        "dropout",
        "label-smoothing",
    ];
    if !known.contains(&param.name()) {
        let name = param.name();
        bail!(UsageError(format!("unknown search parameter {name:?}; expected one of: {PARAMS}")));
    }
    Ok(())
}

/// Checks `--records` and `--folds` against the training split, so that no trial can fail on
/// them.
fn check_records(args: &SearchArgs, base: &TrainConfig) -> anyhow::Result<()> {
    let shards = expanse_dataset::shard::ShardSet::open(&base.data)?;
    let available = shards.split(&base.train_split)?.len();
    let records = args.records.unwrap_or(available);
    if records == 0 || records > available {
        bail!(UsageError(format!(
            "--records must be in 1..={available} (the records of split {} of {}), got {records}",
            base.train_split,
            base.data.display()
        )));
    }
    if args.folds > records {
        bail!(UsageError(format!(
            "--folds {} exceeds the {records} records to split; use fewer folds or more records",
            args.folds
        )));
    }
    Ok(())
}

/// Checks, before any trial, that every value each parameter can take gives a valid training
/// configuration: both ends of a real range, every value of an integer range or a choice.
fn check_values(args: &SearchArgs, space: &Space) -> anyhow::Result<()> {
    let names: Vec<&str> = space.params.iter().map(|param| param.name()).collect();
    if names.contains(&"model") && names.contains(&"depth") {
        bail!(UsageError(
            "search parameters model and depth both choose the network; search only one of them"
                .into()
        ));
    }
    let whole_numbers = ["batch-size", "epochs", "depth"];
    for param in &space.params {
        let name = param.name();
        let values: Vec<Value> = match param {
            Param::Float { low, high, .. } if whole_numbers.contains(&name) => {
                bail!(UsageError(format!(
                    "search parameter {name} takes whole numbers: use int:, logint: or choice:, \
                     got a real range {low}..{high}"
                )))
            }
            Param::Float { low, high, .. } => vec![Value::Float(*low), Value::Float(*high)],
            Param::Int { low, high, .. } if high - low <= 10_000 => {
                (*low..=*high).map(Value::Int).collect()
            }
            Param::Int { low, high, .. } => vec![Value::Int(*low), Value::Int(*high)],
            Param::Choice { .. } => param.grid(1),
        };
        for value in values {
            let point: Point = [(name.to_string(), value.clone())].into_iter().collect();
            let checked = configure(args, &point).and_then(|config| {
                config.validate()?;
                // Only these two change the network, and building one is the check of its name.
                if name == "model" || name == "depth" {
                    let store = tch::nn::VarStore::new(tch::Device::Cpu);
                    expanse_trainer::model::build(&store.root(), &config.model, 1, 2)?;
                }
                Ok(())
            });
            if let Err(error) = checked {
                bail!(UsageError(format!(
                    "search parameter {name} can take the invalid value {value}: {error:#}"
                )));
            }
        }
    }
    Ok(())
}

/// Creates the search folder with its settings, or checks that an existing one has the same.
fn open_search(out: &Path, settings: &Settings) -> anyhow::Result<()> {
    let path = out.join(SETTINGS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let stored: Settings = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a search settings file", path.display()))?;
        // The thread count and prefetch depth change no result, so a search may continue with
        // others, for example on another machine.
        let mut requested = settings.clone();
        requested.base.threads = stored.base.threads;
        requested.base.prefetch = stored.base.prefetch;
        if stored != requested {
            let differences = differing_fields(&stored, &requested)?;
            bail!(UsageError(format!(
                "{} contains a search with other settings ({}: stored vs requested); choose \
                 another --out or repeat its command",
                out.display(),
                differences.join(", ")
            )));
        }
        return Ok(());
    }
    if out.exists() && std::fs::read_dir(out).map(|mut dir| dir.next().is_some()).unwrap_or(true) {
        bail!(UsageError(format!(
            "{} exists and is not a search folder; choose another --out",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    let text = serde_json::to_string_pretty(settings)? + "\n";
    expanse_tools::write_file_atomically(&path, text.as_bytes())
}

/// Returns `name stored vs requested` for each setting that differs, training options by their
/// configuration key (`base.lr`).
fn differing_fields(stored: &Settings, requested: &Settings) -> anyhow::Result<Vec<String>> {
    let mut differences = Vec::new();
    if stored.strategy != requested.strategy {
        differences.push(format!("strategy {} vs {}", stored.strategy, requested.strategy));
    }
    let stored = serde_json::to_value(stored)?;
    let requested = serde_json::to_value(requested)?;
    let null = serde_json::Value::Null;
    let keys = |value: &serde_json::Value| -> Vec<String> {
        value.as_object().map(|map| map.keys().cloned().collect()).unwrap_or_default()
    };
    let mut names = keys(&stored);
    names.extend(keys(&requested).into_iter().filter(|key| stored.get(key).is_none()));
    for name in names {
        let (old, new) =
            (stored.get(&name).unwrap_or(&null), requested.get(&name).unwrap_or(&null));
        if old == new || name == "strategy" {
            continue;
        }
        if name == "base" && old.is_object() && new.is_object() {
            let mut fields = keys(old);
            fields.extend(keys(new).into_iter().filter(|key| old.get(key).is_none()));
            for field in fields {
                let (a, b) = (old.get(&field).unwrap_or(&null), new.get(&field).unwrap_or(&null));
                if a != b {
                    differences.push(format!("base.{field} {} vs {}", clip(a), clip(b)));
                }
            }
        } else {
            differences.push(format!("{name} {} vs {}", clip(old), clip(new)));
        }
    }
    Ok(differences)
}

/// Formats a JSON value for a message, cut to 60 characters (augmentation recipes are long).
fn clip(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// Applies a point's values to the base options and returns the configuration.
fn configure(args: &SearchArgs, point: &Point) -> anyhow::Result<TrainConfig> {
    let mut options = args.train.clone();
    for (name, value) in point {
        let number = || -> anyhow::Result<f64> {
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
                .with_context(|| format!("search parameter {name}: {value} is not a number"))
        };
        let whole = || -> anyhow::Result<usize> {
            let n = number()?;
            if n < 1.0 || n.fract() != 0.0 {
                bail!("search parameter {name}: {value} is not a positive whole number");
            }
            Ok(n as usize)
        };
        match name.as_str() {
            "lr" => options.lr = number()?,
            "momentum" => options.momentum = number()?,
            "weight-decay" => options.weight_decay = number()?,
            "l1-decay" => options.l1_decay = number()?,
            "batch-size" => options.batch_size = whole()?,
            "epochs" => options.epochs = Some(whole()?),
            "model" => options.model = value.to_string(),
            "depth" => options.model = format!("resnet{}", whole()?),
            "augment-strength" => options.augment_strength = number()?,
            "dropout" => options.dropout = Some(number()?),
            "label-smoothing" => options.label_smoothing = number()?,
            other => bail!("unknown search parameter {other:?}; expected one of: {PARAMS}"),
        }
    }
    resolve_config(&options)
}

/// Stops a fold's training when Ctrl-C was pressed.
struct StopFlag<'a>(&'a AtomicBool);

impl Observer for StopFlag<'_> {
    fn stop_requested(&mut self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs every fold of trial `index` and returns the trial, or `None` when Ctrl-C stopped it.
/// A configuration error or a diverged fold gives a failed trial with a note.
fn run_trial(
    args: &SearchArgs,
    settings: &Settings,
    index: usize,
    point: Point,
    stop: &AtomicBool,
) -> anyhow::Result<Option<Trial>> {
    let started = Instant::now();
    let mut trial = Trial {
        index,
        point: point.clone(),
        score: None,
        fold_scores: Vec::new(),
        figures: Default::default(),
        note: String::new(),
    };
    let mut config = match configure(args, &point) {
        Ok(config) => config,
        Err(error) => {
            trial.note = format!("{error:#}");
            return Ok(Some(trial));
        }
    };
    let mut train_errors = Vec::new();
    for fold in 0..settings.folds {
        let selection = Selection::Fold {
            folds: settings.folds,
            fold,
            seed: settings.seed,
            records: settings.records,
        };
        config.eval_split = selection.eval_name();
        config.selection = Some(selection);
        let trial_dir = args.out.join(format!("trial-{:03}", index + 1));
        let run_dir = trial_dir.join(format!("fold-{}", fold + 1));
        let trainer = if run_dir.join(expanse_trainer::checkpoint::CHECKPOINT_FILE).exists() {
            Trainer::resume(&run_dir)
        } else {
            Trainer::create(config.clone(), &run_dir)
        };
        let mut trainer = match trainer {
            Ok(trainer) => trainer,
            Err(expanse_trainer::Error::Config(message)) => {
                trial.note = message;
                return Ok(Some(trial));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("failed to start {}", run_dir.display()))
            }
        };
        let summary = match trainer.fit(&mut StopFlag(stop)) {
            Ok(summary) => summary,
            Err(expanse_trainer::Error::Diverged { epoch, loss, .. }) => {
                trial.note = format!("diverged in fold {} epoch {epoch} (loss {loss})", fold + 1);
                return Ok(Some(trial));
            }
            Err(error) => return Err(error.into()),
        };
        if summary.stopped {
            return Ok(None);
        }
        let metrics = expanse_trainer::metrics::read_metrics(&run_dir)?;
        let eval = summary.last_eval.context("a finished fold has an evaluation")?;
        trial.fold_scores.push(1.0 - eval.top1);
        if let Some(train) = metrics.iter().rev().find(|m| m.split == config.train_split) {
            train_errors.push(1.0 - train.top1);
        }
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    trial.score = Some(mean(&trial.fold_scores));
    trial.figures.insert("train error %".into(), (1e4 * mean(&train_errors)).round() / 100.0);
    trial.figures.insert("seconds".into(), started.elapsed().as_secs_f64().round());
    Ok(Some(trial))
}

/// Formats the progress line of a finished trial.
fn trial_line(trial: &Trial, total: usize) -> String {
    let values: Vec<String> =
        trial.point.iter().map(|(name, value)| format!("{name}={}", short(value))).collect();
    let result = match trial.score {
        Some(score) => {
            let folds: Vec<String> =
                trial.fold_scores.iter().map(|e| format!("{:.2}", 100.0 * e)).collect();
            format!("error {:.2}% (folds {})", 100.0 * score, folds.join(" "))
        }
        None => format!("failed: {}", trial.note),
    };
    format!("trial {}/{total}  {}  {result}", trial.index + 1, values.join(" "))
}

/// Formats a value, rounding a float to 4 significant digits.
fn short(value: &Value) -> String {
    match value {
        // Rounding through scientific notation keeps small values such as 1.2345e-5 readable.
        Value::Float(v) => format!("{v:.3e}").parse::<f64>().unwrap_or(*v).to_string(),
        other => other.to_string(),
    }
}

/// Rewrites the table and the plot.
fn write_reports(out: &Path, space: &Space, history: &[Trial]) -> anyhow::Result<()> {
    // "score" is the mean cross-validation error.
    let table =
        expanse_tune::markdown_table(space, history, true).replacen("| score |", "| cv error |", 1);
    expanse_tools::write_file_atomically(&out.join(TABLE_FILE), table.as_bytes())?;
    let scored: Vec<(f64, f64)> =
        history.iter().filter_map(|t| t.score.map(|s| ((t.index + 1) as f64, 100.0 * s))).collect();
    let mut best = f64::INFINITY;
    let best_so_far: Vec<(f64, f64)> = scored
        .iter()
        .map(|&(x, y)| {
            best = best.min(y);
            (x, best)
        })
        .collect();
    let chart = LogChart {
        title: "hyperparameter search",
        x_desc: "trial",
        y_desc: "cross-validation error (%)",
        log_x: false,
        series: vec![
            Series { label: "trial", points: scored, width: 3, scatter: true },
            Series { label: "best so far", points: best_so_far, width: 2, scatter: false },
        ],
        marks: Vec::new(),
    };
    let png =
        chart.render().map_err(|error| anyhow::anyhow!("failed to draw the plot: {error}"))?;
    expanse_tools::write_file_atomically(&out.join(PLOT_FILE), &png)
}
