//! The training loop: train an epoch, evaluate, log, checkpoint; resume from a run directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use expanse_dataset::loader::{Batch, Loader, LoaderState, PlanOptions, SampleSource};
use expanse_dataset::shard::ShardSet;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

use crate::checkpoint::{self, TrainState, CHECKPOINT_FILE};
use crate::metrics::{self, EpochMetrics, Tally, WaitTimes};
use crate::model::{CifarResNet, CifarResNetSpec};
use crate::optim::Sgd;
use crate::{Error, Result, TrainConfig};

/// Receives progress events; the command-line tools draw progress bars with them.
pub trait Observer {
    /// Called when a pass over `split` with `batches` batches starts (`done` of them already
    /// done when resuming mid-epoch).
    fn pass_started(&mut self, _epoch: usize, _split: &str, _batches: usize, _done: usize) {}

    /// Called when a batch of a pass finished, with the running mean loss of the pass.
    fn batch_finished(&mut self, _samples: usize, _mean_loss: f64) {}

    /// Called when a pass finished, with its metrics.
    fn pass_finished(&mut self, _metrics: &EpochMetrics) {}

    /// Asked after every training step; `true` stops the run there, after a checkpoint of
    /// that position (as on Ctrl-C), and [`Trainer::fit`] returns with
    /// [`RunSummary::stopped`] set.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// Serialises seeding and weight initialisation across trainers of one process.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// An observer that ignores every event.
pub struct Quiet;

impl Observer for Quiet {}

/// A model with its optimizer, data and run directory.
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
    shards: Arc<ShardSet>,
    vs: nn::VarStore,
    model: CifarResNet,
    sgd: Sgd,
    state: TrainState,
}

/// Final figures of a run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Epochs completed, counting those of earlier sessions of a resumed run.
    pub epochs: usize,
    /// Metrics of the last evaluation, if any.
    pub last_eval: Option<EpochMetrics>,
    /// Best evaluation top-1 over the run's logged epochs.
    pub best_top1: Option<f64>,
    /// Seconds spent in this session.
    pub seconds: f64,
    /// Whether the observer stopped the run before its last epoch (see
    /// [`Observer::stop_requested`]). The checkpoint contains the position to resume from.
    pub stopped: bool,
}

impl Trainer {
    /// Starts a new run in `run_dir`, writing its resolved `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the folder already contains a checkpoint (resume it instead) or the
    /// configuration is invalid; dataset errors when the shards cannot be opened.
    pub fn create(config: TrainConfig, run_dir: &Path) -> Result<Self> {
        config.validate()?;
        if run_dir.join(CHECKPOINT_FILE).exists() {
            return Err(Error::Config(format!(
                "{} already contains a run; resume it with --resume or choose another --run-dir",
                run_dir.display()
            )));
        }
        // Build first, so that a bad model name or data path leaves no folder behind.
        let trainer = Self::build(config, run_dir)?;
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        trainer.config.save(run_dir)?;
        Ok(trainer)
    }

    /// Reopens the run in `run_dir` at its last checkpoint.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        Self::resume_with_epochs(run_dir, None)
    }

    /// Reopens the run in `run_dir` at its last checkpoint, raising its total epochs to
    /// `epochs` when given. `config.json` is rewritten only once the checkpoint has loaded.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `epochs` is below the run's epochs or there is no checkpoint.
    pub fn resume_with_epochs(run_dir: &Path, epochs: Option<usize>) -> Result<Self> {
        let mut config = TrainConfig::load(run_dir)?;
        config.validate()?;
        let raised = match epochs {
            Some(epochs) if epochs < config.epochs => {
                return Err(Error::Config(format!(
                    "--epochs {epochs} is below the run's {} epochs",
                    config.epochs
                )));
            }
            Some(epochs) => {
                let raised = epochs != config.epochs;
                config.epochs = epochs;
                raised
            }
            None => false,
        };
        let mut trainer = Self::build(config, run_dir)?;

        let path = run_dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(Error::Config(format!(
                "{} has no checkpoint yet: nothing to resume; start the run again",
                run_dir.display()
            )));
        }
        trainer.state = checkpoint::load(&path, &trainer.vs, &mut trainer.sgd)?;
        metrics::truncate_metrics(run_dir, trainer.state.epochs_done)?;
        if raised {
            trainer.config.save(run_dir)?;
        }
        log::info!(
            "resumed {} after epoch {} (step {})",
            run_dir.display(),
            trainer.state.epochs_done,
            trainer.state.step
        );
        Ok(trainer)
    }

    fn build(config: TrainConfig, run_dir: &Path) -> Result<Self> {
        tch::set_num_threads(config.threads as i32);

        let shards = Arc::new(ShardSet::open(&config.data)?);
        let train = shards.split(&config.train_split)?;
        let found = &train.stats().content_hash;
        if !config.train_content_hash.is_empty() && &config.train_content_hash != found {
            return Err(Error::Config(format!(
                "split {} of {} changed since the run started: content hash {found}, the run \
                 expects {}; restore the original shards or start a new run",
                config.train_split,
                config.data.display(),
                config.train_content_hash
            )));
        }
        let channels = train.schema().channels as usize;
        let classes = shards.manifest().classes.len();
        let spec = CifarResNetSpec::from_name(&config.model, channels, classes)?;
        // Check that the augmentations fit the splits now, before a run folder exists.
        let eval = shards.split(&config.eval_split)?;
        Loader::new(train, config.train_augment.clone(), PlanOptions::default(), 1)?;
        Loader::new(eval, config.eval_augment.clone(), PlanOptions::default(), 1)?;

        let vs = nn::VarStore::new(Device::Cpu);
        let model = {
            // tch initialises weights from libtorch's process-wide generator; holding the lock
            // from seeding to the last draw keeps concurrent trainers from interleaving draws.
            let _guard = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tch::manual_seed(config.seed as i64);
            CifarResNet::new(&vs.root(), spec)
        };
        let sgd = Sgd::new(
            &vs,
            config.momentum,
            config.nesterov,
            config.weight_decay,
            config.decay_bn_and_bias,
        );
        let state = TrainState {
            epochs_done: 0,
            step: 0,
            loader: LoaderState { seed: config.seed, epoch: 0, position: 0 },
        };
        Ok(Trainer { config, run_dir: run_dir.to_path_buf(), shards, vs, model, sgd, state })
    }

    /// Returns the run's configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Returns the run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Returns the position of the run.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Returns the model's variables.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Trains up to `config.epochs`, evaluating, logging and checkpointing after each epoch.
    pub fn fit(&mut self, observer: &mut dyn Observer) -> Result<RunSummary> {
        self.fit_until(self.config.epochs, observer)
    }

    /// Like [`Trainer::fit`] but stops after epoch `last_epoch` (at most `config.epochs`), as
    /// an interrupted run would.
    pub fn fit_until(
        &mut self,
        last_epoch: usize,
        observer: &mut dyn Observer,
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let last_epoch = last_epoch.min(self.config.epochs);
        // A second handle, so that the loader's borrow of the split leaves `self` free.
        let shards = Arc::clone(&self.shards);
        let train = shards.split(&self.config.train_split)?;
        let options = PlanOptions {
            seed: self.config.seed,
            batch_size: self.config.batch_size,
            ..PlanOptions::default()
        };
        let loader =
            Loader::new(train, self.config.train_augment.clone(), options, self.config.prefetch)?
                .with_threads(self.config.threads)?;
        let steps_per_epoch = loader.plan(0)?.batches();

        let mut last_eval = None;
        let mut stopped = false;
        while self.state.epochs_done < last_epoch {
            let epoch = self.state.epochs_done;
            let position = self.state.loader.position;
            let train_metrics =
                match self.train_epoch(&loader, epoch, position, steps_per_epoch, observer) {
                    Err(Error::Stopped) => {
                        checkpoint::save(&self.run_dir, &self.vs, &self.sgd, &self.state)?;
                        stopped = true;
                        break;
                    }
                    other => other?,
                };
            metrics::append_metrics(&self.run_dir, &train_metrics)?;

            let eval_metrics = self.evaluate(epoch + 1, observer)?;
            metrics::append_metrics(&self.run_dir, &eval_metrics)?;
            last_eval = Some(eval_metrics);

            self.state.epochs_done = epoch + 1;
            self.state.loader =
                LoaderState { seed: self.config.seed, epoch: epoch as u64 + 1, position: 0 };
            checkpoint::save(&self.run_dir, &self.vs, &self.sgd, &self.state)?;
        }

        let logged = metrics::read_metrics(&self.run_dir)?;
        let eval_split = &self.config.eval_split;
        let best_top1 =
            logged.iter().filter(|m| &m.split == eval_split).map(|m| m.top1).reduce(f64::max);
        if last_eval.is_none() {
            last_eval = logged.into_iter().rev().find(|m| &m.split == eval_split);
        }
        Ok(RunSummary {
            epochs: self.state.epochs_done,
            last_eval,
            best_top1,
            seconds: started.elapsed().as_secs_f64(),
            stopped,
        })
    }

    fn train_epoch<S: SampleSource>(
        &mut self,
        loader: &Loader<'_, S>,
        epoch: usize,
        start: usize,
        steps_per_epoch: usize,
        observer: &mut dyn Observer,
    ) -> Result<EpochMetrics> {
        let started = Instant::now();
        let mut tally = Tally::default();
        let mut waits = WaitTimes::default();
        let mut lr = self.config.lr.at(self.state.step, steps_per_epoch, self.config.epochs);
        observer.pass_started(epoch + 1, &self.config.train_split, steps_per_epoch, start);

        loader.run_epoch(epoch as u64, start, |batch: &Batch| -> Result<()> {
            waits.push(batch.waited);
            lr = self.config.lr.at(self.state.step, steps_per_epoch, self.config.epochs);
            let (images, labels) = batch_tensors(batch);

            let logits = self.model.forward_t(&images, true);
            let loss = logits.cross_entropy_loss::<Tensor>(
                &labels,
                None,
                Reduction::Mean,
                -100,
                self.config.label_smoothing,
            );
            self.sgd.zero_grad();
            loss.backward();

            let loss_value = f64::try_from(&loss)?;
            if !loss_value.is_finite() {
                return Err(Error::Diverged {
                    epoch: epoch + 1,
                    position: batch.position,
                    loss: loss_value,
                    lr,
                });
            }
            self.sgd.step(lr);
            self.state.step += 1;
            self.state.loader.position = batch.position + 1;

            tally.add(&logits.detach(), &labels, loss_value * batch.len() as f64);
            observer.batch_finished(batch.len(), tally.loss());
            let every = self.config.checkpoint_every;
            if every > 0
                && self.state.step.is_multiple_of(every)
                && self.state.loader.position < steps_per_epoch
            {
                checkpoint::save(&self.run_dir, &self.vs, &self.sgd, &self.state)?;
            }
            if observer.stop_requested() {
                return Err(Error::Stopped);
            }
            Ok(())
        })?;

        let split = &self.config.train_split;
        let metrics = tally.metrics(epoch + 1, split, started.elapsed(), &waits, Some(lr));
        observer.pass_finished(&metrics);
        Ok(metrics)
    }

    /// Evaluates the model on the evaluation split: loss, top-1, top-5 (no augmentation).
    pub fn evaluate(&self, epoch: usize, observer: &mut dyn Observer) -> Result<EpochMetrics> {
        let started = Instant::now();
        let split = self.shards.split(&self.config.eval_split)?;
        let options = PlanOptions::sequential(self.config.eval_batch_size);
        let loader =
            Loader::new(split, self.config.eval_augment.clone(), options, self.config.prefetch)?;
        let batches = loader.plan(0)?.batches();
        observer.pass_started(epoch, &self.config.eval_split, batches, 0);

        let mut tally = Tally::default();
        let mut waits = WaitTimes::default();
        tch::no_grad(|| {
            loader.run_epoch(0, 0, |batch: &Batch| -> Result<()> {
                waits.push(batch.waited);
                let (images, labels) = batch_tensors(batch);
                let logits = view_averaged_log_scores(
                    &self.model.forward_t(&images, false),
                    batch.sample_shape.views,
                );
                let loss = logits.g_nll_loss::<Tensor>(&labels, None, Reduction::Sum, -100);
                let loss_value = f64::try_from(&loss)?;
                if !loss_value.is_finite() {
                    let position = batch.position;
                    return Err(Error::NonFiniteEval { epoch, position, loss: loss_value });
                }
                tally.add(&logits, &labels, loss_value);
                observer.batch_finished(batch.len(), tally.loss());
                Ok(())
            })
        })?;

        let split = &self.config.eval_split;
        let metrics = tally.metrics(epoch, split, started.elapsed(), &waits, None);
        observer.pass_finished(&metrics);
        Ok(metrics)
    }
}

/// Returns per-sample log-probabilities from the logits of `views` consecutive views per
/// sample: the log of the views' mean softmax, as ten-crop testing averages the scores.
/// With one view it is the log-softmax, whose negative log-likelihood is the cross-entropy.
fn view_averaged_log_scores(logits: &Tensor, views: usize) -> Tensor {
    let log_probs = logits.log_softmax(-1, Kind::Float);
    if views <= 1 {
        return log_probs;
    }
    let classes = log_probs.size()[1];
    let views = views as i64;
    log_probs.view([-1, views, classes]).logsumexp([1].as_slice(), false) - (views as f64).ln()
}

/// Wraps a batch as tensors: images N x C x H x W f32 and labels N int64 (one copy each).
fn batch_tensors(batch: &Batch) -> (Tensor, Tensor) {
    let shape: Vec<i64> = batch.shape().iter().map(|&d| d as i64).collect();
    let images = Tensor::from_slice(batch.pixels()).view(shape.as_slice());
    let labels = Tensor::from_slice(&batch.labels).to_kind(Kind::Int64);
    (images, labels)
}
