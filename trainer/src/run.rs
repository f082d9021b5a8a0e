//! The training loop: train an epoch, evaluate, log, checkpoint; resume from a run directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use expanse_augment::pipeline::Output as RecipeOutput;
use expanse_dataset::loader::{
    Augmentation, Batch, Loader, LoaderState, PlanOptions, SampleSource, Subset,
};
use expanse_dataset::shard::{ShardSet, Split};
use tch::nn;
use tch::{Device, Kind, Reduction, Tensor};

use crate::checkpoint::{self, TrainState, CHECKPOINT_FILE};
use crate::device::{self, LossScaler, Precision};
use crate::dist::{GradientReducer, ProcessGroup};
use crate::metrics::{self, EpochMetrics, StepMetrics, Tally, WaitTimes};
use crate::model::{self, Network};
use crate::optim::Sgd;
use crate::protocol::Protocol;
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

    /// Called when epoch `epoch` (from 1) is trained, evaluated, logged to `metrics.jsonl` in
    /// `run_dir` and checkpointed.
    fn epoch_finished(&mut self, _epoch: usize, _run_dir: &Path) {}

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
    model: Box<dyn Network>,
    device: Device,
    sgd: Sgd,
    state: TrainState,
    /// Training and evaluated record indices of the training split under
    /// [`TrainConfig::selection`].
    selected: Option<Selected>,
    /// The process group of a data-parallel run.
    parallel: Option<Parallel>,
    /// The step after which [`Trainer::fit`] stops as on a stop request.
    stop_after_step: Option<usize>,
    /// The gradient averaging of a data-parallel run.
    reducer: Option<GradientReducer>,
}

/// Settings of one rank of a data-parallel run.
///
/// Every rank builds the same model from the same seed and trains on its share of each batch:
/// `config.batch_size` is the global batch, split equally over the ranks, and the loader gives
/// rank `r` positions `r, r + world, ...` of the epoch's order. Gradients are averaged after
/// the backward pass, so `world` ranks take the steps one process would take on the global
/// batch (exactly so with [`TrainConfig::sync_batch_norm`], whose statistics then cover the
/// global batch too). Only rank 0 writes the run folder; every rank reads its checkpoint on resume.
#[derive(Clone, Debug)]
pub struct Parallel {
    /// The group of all ranks.
    pub group: Arc<ProcessGroup>,
    /// Bytes of gradient per all-reduce bucket.
    pub bucket_bytes: usize,
}

/// Record indices of the training split that a run on a selection trains and evaluates on.
#[derive(Clone, Debug)]
struct Selected {
    train: Vec<usize>,
    eval: Vec<usize>,
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
        Self::create_parallel(config, run_dir, None)
    }

    /// Like [`Trainer::create`], as one rank of a data-parallel run when `parallel` is given.
    /// Rank 0 writes the run folder; the others write nothing.
    ///
    /// # Errors
    ///
    /// As [`Trainer::create`], and [`Error::Distributed`] when the first broadcast of the
    /// weights fails.
    pub fn create_parallel(
        config: TrainConfig,
        run_dir: &Path,
        parallel: Option<Parallel>,
    ) -> Result<Self> {
        config.validate()?;
        if run_dir.join(CHECKPOINT_FILE).exists() {
            return Err(Error::Config(format!(
                "{} already contains a run; resume it with --resume or choose another --run-dir",
                run_dir.display()
            )));
        }
        // Build first, so that a bad model name or data path leaves no folder behind.
        let trainer = Self::build(config, run_dir, true, parallel)?;
        trainer.check_same_settings()?;
        trainer.broadcast_weights()?;
        if trainer.writes() {
            std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
            trainer.config.save(run_dir)?;
        }
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
        Self::resume_parallel(run_dir, epochs, None)
    }

    /// Like [`Trainer::resume_with_epochs`], as one rank of a data-parallel run when
    /// `parallel` is given. Every rank loads the checkpoint; only rank 0 rewrites the logs.
    ///
    /// # Errors
    ///
    /// As [`Trainer::resume_with_epochs`], and [`Error::Distributed`].
    pub fn resume_parallel(
        run_dir: &Path,
        epochs: Option<usize>,
        parallel: Option<Parallel>,
    ) -> Result<Self> {
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
        let mut trainer = Self::build(config, run_dir, true, parallel)?;

        let path = run_dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(Error::Config(format!(
                "{} has no checkpoint yet: nothing to resume; start the run again",
                run_dir.display()
            )));
        }
        trainer.state = checkpoint::load(&path, &trainer.vs, &mut trainer.sgd)?;
        trainer.check_same_settings()?;
        trainer.broadcast_weights()?;
        if trainer.writes() {
            metrics::truncate_metrics(run_dir, trainer.state.epochs_done)?;
            metrics::truncate_steps(run_dir, trainer.state.step)?;
            if raised {
                trainer.config.save(run_dir)?;
            }
        }
        log::info!(
            "resumed {} after epoch {} (step {})",
            run_dir.display(),
            trainer.state.epochs_done,
            trainer.state.step
        );
        Ok(trainer)
    }

    /// Opens the run in `run_dir` at its last checkpoint to evaluate it, writing nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when there is no checkpoint; checkpoint and dataset errors.
    pub fn open_for_evaluation(run_dir: &Path) -> Result<Self> {
        let config = TrainConfig::load(run_dir)?;
        config.validate()?;
        let mut trainer = Self::build(config, run_dir, true, None)?;
        let path = run_dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(Error::Config(format!(
                "{} has no checkpoint: nothing to evaluate",
                run_dir.display()
            )));
        }
        trainer.state = checkpoint::load(&path, &trainer.vs, &mut trainer.sgd)?;
        Ok(trainer)
    }

    /// Builds a trainer for `config` that writes no file: for short probes from fresh weights,
    /// such as the learning-rate search (see [`Trainer::probe_steps`]). The shard set needs
    /// only the training split.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration; dataset errors.
    pub fn probe(config: TrainConfig) -> Result<Self> {
        config.validate()?;
        Self::build(config, Path::new(""), false, None)
    }

    /// Takes `steps` optimizer steps from the current weights, step `i` at learning rate
    /// `rate(i)`, with the training augmentation and order of the run's seed, going on into
    /// further epochs as needed. Logs and checkpoints nothing. Returns the training loss of
    /// every step taken. A step whose loss is not finite ends the probe with that loss last,
    /// and `keep_going(step, loss)` returning `false` ends it after that step.
    ///
    /// # Errors
    ///
    /// Loader and libtorch errors.
    pub fn probe_steps(
        &mut self,
        steps: usize,
        rate: &dyn Fn(usize) -> f64,
        keep_going: &mut dyn FnMut(usize, f64) -> bool,
    ) -> Result<Vec<f64>> {
        let shards = Arc::clone(&self.shards);
        let train =
            select(&shards, &self.config, self.selected.as_ref(), &self.config.train_split)?;
        let loader = training_loader(&self.config, &train, None)?;
        let mut losses = Vec::with_capacity(steps);
        let mut epoch = 0u64;
        while losses.len() < steps {
            let outcome = loader.run_epoch(epoch, 0, |batch: &Batch| -> Result<()> {
                let step = losses.len();
                let (images, labels) = self.batch_tensors(batch);
                let loss =
                    match self.train_step(&images, &labels, rate(step), 0, batch.position, false) {
                        Ok(output) => output.loss_sum / batch.len().max(1) as f64,
                        Err(Error::Diverged { loss, .. }) => loss,
                        Err(other) => return Err(other),
                    };
                losses.push(loss);
                if !loss.is_finite() || !keep_going(step, loss) || losses.len() == steps {
                    return Err(Error::Stopped);
                }
                Ok(())
            });
            match outcome {
                Ok(()) => epoch += 1,
                Err(Error::Stopped) => break,
                Err(other) => return Err(other),
            }
        }
        Ok(losses)
    }

    /// Builds the trainer. `evaluates` is false for a probe, which never opens the evaluation
    /// split, so a set without one can still be probed.
    fn build(
        config: TrainConfig,
        run_dir: &Path,
        evaluates: bool,
        parallel: Option<Parallel>,
    ) -> Result<Self> {
        tch::set_num_threads(config.threads as i32);
        if config.compute.device.starts_with("cuda") && parallel.is_some() {
            return Err(Error::Config(format!(
                "data-parallel runs train on the CPU only (Gloo); --device {} needs the NCCL \
                 backend, which this build lacks; use --device cpu, or unset WORLD_SIZE for \
                 a single-process GPU run",
                config.compute.device
            )));
        }
        let device = device::resolve(&config.compute.device)?;
        if device.is_cuda() && parallel.is_some() {
            // NOTE: Gloo reduces CPU tensors, and ProcessGroupNCCL is in libtorch_cuda.so,
            // which the bridge does not link, so multi-GPU runs are not available yet.
            return Err(Error::Config(format!(
                "data-parallel runs train on the CPU only (Gloo); --device {} needs the NCCL \
                 backend, which this build lacks; use --device cpu, or unset WORLD_SIZE for \
                 a single-process GPU run",
                config.compute.device
            )));
        }
        config.compute.precision.check(device)?;
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(config.compute.cudnn_benchmark);
        }

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
        let selected = match &config.selection {
            Some(selection) => {
                let labels: Vec<u32> = (0..train.len()).map(|i| train.label(i)).collect();
                let (train, eval) = selection.indices(&labels)?;
                Some(Selected { train, eval })
            }
            None => None,
        };
        // Check that the augmentations fit the splits now, before a run folder exists.
        let train = select(&shards, &config, selected.as_ref(), &config.train_split)?;
        // A batch is never larger than the data, and a larger setting would only allocate
        // memory for records that do not exist.
        if config.batch_size > train.len() {
            return Err(Error::Config(format!(
                "batch size {} exceeds the {} training records of split {} of {}; use a batch \
                 size of at most {}",
                config.batch_size,
                train.len(),
                config.train_split,
                config.data.display(),
                train.len()
            )));
        }
        if let Some(parallel) = &parallel {
            let world = parallel.group.size();
            if !config.batch_size.is_multiple_of(world) {
                return Err(Error::Config(format!(
                    "batch size {} does not split equally over {world} ranks (WORLD_SIZE); the \
                     batch size is the global batch, so choose a multiple of {world}",
                    config.batch_size
                )));
            }
        }
        Loader::new(&train, config.train_augment.clone(), PlanOptions::default(), 1)?;
        if evaluates {
            let eval = select(&shards, &config, selected.as_ref(), &config.eval_split)?;
            Loader::new(&eval, config.eval_augment.clone(), PlanOptions::default(), 1)?;
        }

        let vs = nn::VarStore::new(device);
        let model = {
            // tch initialises weights from libtorch's process-wide generator; holding the lock
            // from seeding to the last draw keeps concurrent trainers from interleaving draws.
            let _guard = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tch::manual_seed(config.seed as i64);
            let mut model = model::build(&vs.root(), &config.model, channels, classes)?;
            if let Some(rate) = config.dropout {
                model.set_dropout(rate);
            }
            model
        };
        if config.compute.channels_last {
            device::convert_to_channels_last(&vs);
        }
        let sgd = Sgd::new(
            &vs,
            config.momentum,
            config.nesterov,
            config.weight_decay,
            config.decay_bn_and_bias,
        )
        .with_l1_decay(config.l1_decay);
        let loss_scaler = (config.compute.precision == Precision::F16).then(LossScaler::default);
        let state = TrainState {
            epochs_done: 0,
            step: 0,
            loader: LoaderState { seed: config.seed, epoch: 0, position: 0 },
            loss_scaler,
        };
        let reducer = match &parallel {
            Some(parallel) => Some(GradientReducer::new(
                &parallel.group,
                &sgd.parameters(),
                parallel.bucket_bytes,
            )?),
            None => None,
        };
        let run_dir = run_dir.to_path_buf();
        Ok(Trainer {
            config,
            run_dir,
            shards,
            vs,
            model,
            device,
            sgd,
            state,
            selected,
            parallel,
            stop_after_step: None,
            reducer,
        })
    }

    /// Makes [`Trainer::fit`] stop after global step `step` (counted from the run's start)
    /// with a checkpoint of that position, as on a stop request. `None` trains to the end.
    /// A job with a time limit can so end at a chosen step, and the next job resumes it.
    pub fn stop_after_step(&mut self, step: Option<usize>) {
        self.stop_after_step = step;
    }

    /// Returns whether this trainer writes the run folder: always, except on ranks other than 0
    /// of a data-parallel run.
    pub fn writes(&self) -> bool {
        self.parallel.as_ref().is_none_or(|parallel| parallel.group.rank() == 0)
    }

    /// Names this rank in a libtorch error of a data-parallel run, whose backward pass runs
    /// the gradient all-reduce.
    fn in_run(&self, error: tch::TchError) -> Error {
        match &self.parallel {
            Some(parallel) => Error::Distributed(format!(
                "backward pass failed on rank {} of {}: {error}",
                parallel.group.rank(),
                parallel.group.size()
            )),
            None => Error::Torch(error),
        }
    }

    /// Returns the number of ranks training together: 1 outside a data-parallel run.
    fn world_size(&self) -> usize {
        self.parallel.as_ref().map_or(1, |parallel| parallel.group.size())
    }

    /// Checks that every rank was started with the settings of rank 0: ranks that train
    /// different models, batches or schedules would fail later with a mismatched collective,
    /// or silently train apart. Threads and prefetch depth may differ.
    fn check_same_settings(&self) -> Result<()> {
        let Some(parallel) = &self.parallel else {
            return Ok(());
        };
        // The data may sit at another path on each machine; its content hash is compared.
        let mut config = self.config.clone();
        config.data = PathBuf::new();
        config.threads = 0;
        config.prefetch = 0;

        let text = serde_json::to_vec(&config)
            .map_err(|e| Error::Config(format!("cannot serialise the configuration: {e}")))?;
        let hash = blake3::hash(&text);
        // 48 bits of the hash fit an f64 exactly; each rank fills its own slot.
        let mut bytes = [0u8; 8];
        bytes[..6].copy_from_slice(&hash.as_bytes()[..6]);
        let own = u64::from_le_bytes(bytes) as f64;
        let (rank, world) = (parallel.group.rank(), parallel.group.size());
        let mut slots = vec![0.0; world];
        slots[rank] = own;
        parallel.group.sum_values(&mut slots)?;

        let differing: Vec<String> = slots
            .iter()
            .enumerate()
            .filter(|&(_, &slot)| slot != slots[0])
            .map(|(other, _)| other.to_string())
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "rank(s) {} were started with other training settings than rank 0 (model, data, \
             batch size, schedule, seed, --sync-bn ...); start every rank with the same options",
            differing.join(", ")
        )))
    }

    /// Copies rank 0's weights, batch-norm statistics and momentum buffers to every rank, so
    /// that the ranks start from one state even if their initialisation differed.
    fn broadcast_weights(&self) -> Result<()> {
        let Some(parallel) = &self.parallel else {
            return Ok(());
        };
        let variables = self.vs.variables();
        let mut names: Vec<&String> = variables.keys().collect();
        names.sort();
        let mut tensors: Vec<&Tensor> = names.iter().map(|name| &variables[*name]).collect();
        tensors.extend(self.sgd.buffers().map(|(_, buffer)| buffer));
        tch::no_grad(|| parallel.group.broadcast(&tensors, 0))
    }

    /// Sums the counts of `tally` over all ranks of a data-parallel run.
    fn reduce_tally(&self, tally: Tally) -> Result<Tally> {
        let Some(parallel) = &self.parallel else {
            return Ok(tally);
        };
        let classes = self.shards.manifest().classes.len();
        let mut values = vec![tally.loss_sum, tally.top1 as f64, tally.top5 as f64];
        values.push(tally.samples as f64);
        values.extend((0..classes).map(|c| tally.predicted.get(c).copied().unwrap_or(0) as f64));
        parallel.group.sum_values(&mut values)?;
        Ok(Tally {
            loss_sum: values[0],
            top1: values[1] as u64,
            top5: values[2] as u64,
            samples: values[3] as u64,
            predicted: values[4..].iter().map(|&count| count as u64).collect(),
        })
    }

    /// Sets the threads of libtorch and of the loader, for a run resumed on another machine.
    /// The batches stay the same, but libtorch may round sums differently with another count.
    /// `config.json` keeps the run's first setting, which a later resume uses unless
    /// `--threads` is given again.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for 0 threads.
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        if threads == 0 {
            return Err(Error::Config("threads must be at least 1, got 0".into()));
        }
        tch::set_num_threads(threads as i32);
        self.config.threads = threads;
        Ok(())
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

    /// Returns the device the run computes on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Returns the model's variables.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Returns the network.
    pub fn network(&self) -> &dyn Network {
        self.model.as_ref()
    }

    /// Returns the first `samples` records of `split` (at most its length) as a batch on the
    /// run's device: images through the evaluation preprocessing, or the training
    /// augmentation of epoch 0 when `augmented`, and int64 labels.
    ///
    /// # Errors
    ///
    /// Dataset errors for an unknown split, loader and libtorch errors.
    pub fn sample_batch(
        &self,
        split: &str,
        samples: usize,
        augmented: bool,
    ) -> Result<(Tensor, Tensor)> {
        let source = select(&self.shards, &self.config, self.selected.as_ref(), split)?;
        let samples = samples.clamp(1, source.len().max(1));
        let subset = Subset::new(&source, (0..samples).collect())?;
        let augmentation = if augmented {
            self.config.train_augment.clone()
        } else {
            self.config.eval_augment.clone()
        };
        let options = PlanOptions::sequential(samples);
        let loader =
            Loader::new(&subset, augmentation, options, 1)?.with_threads(self.config.threads)?;
        let mut tensors = None;
        loader.run_epoch(0, 0, |batch: &Batch| -> Result<()> {
            if tensors.is_none() {
                tensors = Some(self.batch_tensors(batch));
            }
            Ok(())
        })?;
        tensors.ok_or_else(|| Error::Config(format!("split {split} gave no batch")))
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
        let train =
            select(&shards, &self.config, self.selected.as_ref(), &self.config.train_split)?;
        let loader = training_loader(&self.config, &train, self.parallel.as_ref())?;
        let steps_per_epoch = loader.plan(0)?.batches();

        let mut last_eval = None;
        let mut stopped = false;
        while self.state.epochs_done < last_epoch {
            let epoch = self.state.epochs_done;
            let position = self.state.loader.position;
            let train_metrics =
                match self.train_epoch(&loader, epoch, position, steps_per_epoch, observer) {
                    Err(Error::Stopped) => {
                        self.save_checkpoint()?;
                        stopped = true;
                        break;
                    }
                    other => other?,
                };
            if self.writes() {
                metrics::append_metrics(&self.run_dir, &train_metrics)?;
            }

            let eval_metrics = self.evaluate(epoch + 1, observer)?;
            if self.writes() {
                metrics::append_metrics(&self.run_dir, &eval_metrics)?;
            }
            last_eval = Some(eval_metrics);

            self.state.epochs_done = epoch + 1;
            self.state.loader =
                LoaderState { seed: self.config.seed, epoch: epoch as u64 + 1, position: 0 };
            self.save_checkpoint()?;
            if self.writes() {
                observer.epoch_finished(epoch + 1, &self.run_dir);
            }
        }
        if let Some(parallel) = &self.parallel {
            // No rank leaves before rank 0 has written the last checkpoint and logs.
            parallel.group.barrier()?;
        }

        // Only rank 0 has the logs, which may be on a machine the others cannot read.
        let logged = if self.writes() { metrics::read_metrics(&self.run_dir)? } else { Vec::new() };
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

    /// Writes the checkpoint on the ranks that write (see [`Trainer::writes`]).
    fn save_checkpoint(&self) -> Result<()> {
        if self.writes() {
            checkpoint::save(&self.run_dir, &self.vs, &self.sgd, &self.state)?;
        }
        Ok(())
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
        let mut window = Tally::default();
        let mut waits = WaitTimes::default();
        let reductions = self.plateau_reductions(epoch)?;
        let schedule = self.config.lr.clone();
        let epochs = self.config.epochs;
        let rate = move |step| schedule.rate(step, steps_per_epoch, epochs, reductions);
        let mut lr = rate(self.state.step);
        observer.pass_started(epoch + 1, &self.config.train_split, steps_per_epoch, start);

        loader.run_epoch(epoch as u64, start, |batch: &Batch| -> Result<()> {
            waits.push(batch.waited);
            lr = rate(self.state.step);
            let (images, labels) = self.batch_tensors(batch);
            let stop =
                observer.stop_requested() || self.stop_after_step == Some(self.state.step + 1);
            let step = self.train_step(&images, &labels, lr, epoch, batch.position, stop)?;
            self.state.step += 1;
            self.state.loader.position = batch.position + 1;

            tally.add(&step.logits, &labels, step.loss_sum);
            window.add(&step.logits, &labels, step.loss_sum);
            // Every rank trains a share of the same size, so the progress counts them all.
            observer.batch_finished(batch.len() * self.world_size(), tally.loss());
            let log_every = self.config.log_every;
            let epoch_end = self.state.loader.position == steps_per_epoch;
            if log_every > 0 && (self.state.step.is_multiple_of(log_every) || epoch_end) {
                // A window also ends with its epoch, so every step is in some line. All ranks
                // add up their windows; rank 0 writes the line.
                let total = self.reduce_tally(std::mem::take(&mut window))?;
                if self.writes() {
                    let line = StepMetrics {
                        step: self.state.step,
                        epoch: epoch + 1,
                        samples: total.samples,
                        loss: total.loss(),
                        top1: total.top1(),
                        lr,
                    };
                    metrics::append_steps(&self.run_dir, &line)?;
                }
            }
            let every = self.config.checkpoint_every;
            if every > 0
                && self.state.step.is_multiple_of(every)
                && self.state.loader.position < steps_per_epoch
            {
                self.save_checkpoint()?;
            }
            if step.stop {
                return Err(Error::Stopped);
            }
            Ok(())
        })?;

        let split = &self.config.train_split;
        let tally = self.reduce_tally(tally)?;
        let metrics = tally.metrics(epoch + 1, split, started.elapsed(), &waits, Some(lr));
        observer.pass_finished(&metrics);
        Ok(metrics)
    }

    /// Plateau reductions of the learning rate before epoch `epoch` (0-based), from the
    /// evaluations logged for the earlier epochs.
    fn plateau_reductions(&self, epoch: usize) -> Result<u32> {
        if !matches!(self.config.lr.schedule, crate::optim::Schedule::Plateau { .. }) {
            return Ok(0);
        }
        let mut reductions = [0.0];
        if self.writes() {
            let errors: Vec<f64> = metrics::read_metrics(&self.run_dir)?
                .iter()
                .filter(|m| m.split == self.config.eval_split && m.epoch <= epoch)
                .map(|m| 1.0 - m.top1)
                .collect();
            reductions[0] = f64::from(self.config.lr.plateau_reductions(&errors));
        }
        if let Some(parallel) = &self.parallel {
            // Only rank 0 has the logs: the others take its count, which they need not read.
            parallel.group.sum_values(&mut reductions)?;
        }
        Ok(reductions[0] as u32)
    }

    /// Takes one optimizer step on a batch: forward and backward per micro-batch (the batch cut
    /// into `compute.accumulation` parts, their gradients added), auxiliary losses, loss
    /// scaling, then the update. Returns the main classifier's logits and summed loss.
    fn train_step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        epoch: usize,
        position: usize,
        stop: bool,
    ) -> Result<StepOutput> {
        let samples = labels.size()[0];
        let parts = (self.config.compute.accumulation as i64).clamp(1, samples.max(1));
        let precision = self.config.compute.precision;
        let scale = self.state.loss_scaler.map_or(1.0, |scaler| scaler.scale);
        let smoothing = self.config.label_smoothing;
        let cross_entropy = |logits: &Tensor, labels: &Tensor| {
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
                labels,
                None,
                Reduction::Mean,
                -100,
                smoothing,
            )
        };

        let _sync = self
            .parallel
            .as_ref()
            .filter(|_| self.config.sync_batch_norm)
            .map(|parallel| model::SyncBatchNorm::enable(Arc::clone(&parallel.group)));
        self.sgd.zero_grad();
        let mut logits_parts = Vec::with_capacity(parts as usize);
        let (mut loss_sum, mut objective_sum) = (0.0, 0.0);
        let micro_batches = images.chunk(parts, 0).into_iter().zip(labels.chunk(parts, 0));
        let last = parts as usize - 1;
        for (part, (x, y)) in micro_batches.enumerate() {
            let (x, y) = (&x, &y);
            let output = precision.autocast(|| self.model.forward(x, true));
            let loss = cross_entropy(&output.logits, y);
            let mut objective = loss.shallow_clone();
            for aux in &output.aux {
                objective += cross_entropy(aux, y) * self.model.aux_weight();
            }
            let share = y.size()[0] as f64 / samples as f64;
            model::SyncBatchNorm::check()?;
            if let Some(reducer) = &self.reducer {
                // Gradients are averaged over the ranks in the last micro-batch's backward.
                reducer.prepare(part == last)?;
            }
            (&objective * (share * scale)).f_backward().map_err(|error| self.in_run(error))?;
            model::SyncBatchNorm::check()?;
            let part = y.size()[0] as f64;
            loss_sum += f64::try_from(&loss)? * part;
            objective_sum += f64::try_from(&objective)? * part;
            logits_parts.push(output.logits.detach().to_kind(Kind::Float));
        }

        let mut objective = objective_sum / samples as f64;
        let mut stop = stop;
        if let Some(parallel) = &self.parallel {
            // Every rank learns whether any diverged or was asked to stop, so all take the
            // same branch and no rank waits on a collective the others never join.
            let mut values = [objective, f64::from(u8::from(stop))];
            parallel.group.sum_values(&mut values)?;
            objective = values[0] / parallel.group.size() as f64;
            stop = values[1] > 0.0;
        }
        if !objective.is_finite() {
            return Err(Error::Diverged { epoch: epoch + 1, position, loss: objective, lr });
        }
        let apply = match &mut self.state.loss_scaler {
            Some(scaler) => scaler.unscale(&mut self.sgd.gradients()),
            None => true,
        };
        if apply {
            self.sgd.step(lr);
        } else {
            log::debug!("float16 gradients overflowed at step {}: update skipped", self.state.step);
        }
        Ok(StepOutput { logits: Tensor::cat(&logits_parts, 0), loss_sum, stop })
    }

    /// Wraps a batch as tensors on the run's device: images N x C x H x W f32 (channels-last
    /// when configured) and labels N int64.
    fn batch_tensors(&self, batch: &Batch) -> (Tensor, Tensor) {
        let shape: Vec<i64> = batch.shape().iter().map(|&d| d as i64).collect();
        let images = Tensor::from_slice(batch.pixels()).view(shape.as_slice());
        let labels = Tensor::from_slice(&batch.labels).to_kind(Kind::Int64);
        let (images, labels) = if self.device == Device::Cpu {
            (images, labels)
        } else {
            (images.to_device(self.device), labels.to_device(self.device))
        };
        let images =
            if self.config.compute.channels_last { device::channels_last(&images) } else { images };
        (images, labels)
    }

    /// Evaluates the model on the evaluation split with the run's evaluation augmentation:
    /// loss, top-1, top-5.
    pub fn evaluate(&self, epoch: usize, observer: &mut dyn Observer) -> Result<EpochMetrics> {
        let split = self.config.eval_split.clone();
        self.evaluate_with(&Protocol::Run, &split, epoch, observer)
    }

    /// Evaluates the model on `split` with `protocol`. Scores (softmax) are averaged over the
    /// views of every pass the protocol makes. The loss is the negative log of the averaged
    /// score of the true class.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a protocol other than [`Protocol::Run`] on a set whose evaluation
    /// augmentation is not a recipe (fixed-size sets), and loader or libtorch errors.
    pub fn evaluate_with(
        &self,
        protocol: &Protocol,
        split: &str,
        epoch: usize,
        observer: &mut dyn Observer,
    ) -> Result<EpochMetrics> {
        let started = Instant::now();
        let passes: Vec<Augmentation> = match protocol {
            Protocol::Run => vec![self.config.eval_augment.clone()],
            other => {
                let Augmentation::Recipe(recipe) = &self.config.eval_augment else {
                    return Err(Error::Config(format!(
                        "protocol {other} needs a photo set evaluated through a recipe; this \
                         run evaluates fixed-size images whole"
                    )));
                };
                let output: &RecipeOutput = &recipe.output;
                other.recipes(output)?.into_iter().map(Augmentation::from).collect()
            }
        };

        let single_pass = passes.len() == 1;
        let whole = select(&self.shards, &self.config, self.selected.as_ref(), split)?;
        let source = match &self.parallel {
            // Each rank evaluates every world-th record and the counts are summed after.
            Some(parallel) if single_pass => {
                let (rank, world) = (parallel.group.rank(), parallel.group.size());
                let share = whole.indices().iter().copied().skip(rank).step_by(world).collect();
                Subset::new(whole.source(), share)?
            }
            _ => whole,
        };
        let mut pass_tally = Tally::default();
        let classes = self.shards.manifest().classes.len() as i64;
        let samples = source.len() as i64;
        // Summed probabilities per sample and class, over every view of every pass.
        let mut scores = Tensor::zeros([samples, classes], (Kind::Float, Device::Cpu));
        let mut views_total = 0usize;
        let mut waits = WaitTimes::default();
        for augmentation in passes {
            let options = PlanOptions::sequential(self.config.eval_batch_size);
            let loader = Loader::new(&source, augmentation, options, self.config.prefetch)?
                .with_threads(self.config.threads)?;
            let batches = loader.plan(0)?.batches();
            views_total += loader.sample_shape().views;
            observer.pass_started(epoch, split, batches, 0);
            let mut done = Tally::default();
            tch::no_grad(|| {
                loader.run_epoch(0, 0, |batch: &Batch| -> Result<()> {
                    waits.push(batch.waited);
                    let (images, labels) = self.batch_tensors(batch);
                    let precision = self.config.compute.precision;
                    let logits = precision.autocast(|| self.model.forward(&images, false)).logits;
                    let views = batch.sample_shape.views as i64;
                    let probabilities = logits
                        .to_kind(Kind::Float)
                        .softmax(-1, Kind::Float)
                        .view([-1, views, classes])
                        .sum_dim_intlist([1].as_slice(), false, Kind::Float)
                        .to_device(Device::Cpu);
                    let rows: Vec<i64> = batch.indices.iter().map(|&i| i64::from(i)).collect();
                    let rows = Tensor::from_slice(&rows);
                    let _ = scores.index_add_(0, &rows, &probabilities);
                    let labels = labels.to_device(Device::Cpu);
                    let log_scores =
                        view_averaged_log_scores(&logits.to_device(Device::Cpu), views as usize);
                    let loss = log_scores.g_nll_loss::<Tensor>(&labels, None, Reduction::Sum, -100);
                    let loss_value = f64::try_from(&loss)?;
                    if !loss_value.is_finite() {
                        let position = batch.position;
                        return Err(Error::NonFiniteEval { epoch, position, loss: loss_value });
                    }
                    done.add(&log_scores, &labels, loss_value);
                    observer.batch_finished(batch.len() * self.world_size(), done.loss());
                    Ok(())
                })
            })?;
            pass_tally = done;
        }

        let tally = if single_pass {
            self.reduce_tally(pass_tally)?
        } else {
            // The average over views and passes, counted like one pass.
            let log_scores = (scores / views_total.max(1) as f64).clamp_min(1e-30).log();
            let labels: Vec<i64> = (0..source.len()).map(|i| i64::from(source.label(i))).collect();
            let labels = Tensor::from_slice(&labels);
            let loss = log_scores.g_nll_loss::<Tensor>(&labels, None, Reduction::Sum, -100);
            let mut tally = Tally::default();
            tally.add(&log_scores, &labels, f64::try_from(loss)?);
            tally
        };
        let metrics = tally.metrics(epoch, split, started.elapsed(), &waits, None);
        observer.pass_finished(&metrics);
        Ok(metrics)
    }
}

/// Returns the records of `split` a run uses: the whole split, or under a selection the
/// training or evaluated part of the training split.
/// Builds the training loader of `config` over `train`: the run's seed, batch size,
/// augmentation, prefetch depth and threads, and the rank's share of each batch in a
/// data-parallel run.
fn training_loader<'a>(
    config: &TrainConfig,
    train: &'a Subset<'a, Split>,
    parallel: Option<&Parallel>,
) -> Result<Loader<'a, Subset<'a, Split>>> {
    let (rank, world_size) = parallel.map_or((0, 1), |p| (p.group.rank(), p.group.size()));
    let options = PlanOptions {
        seed: config.seed,
        batch_size: config.batch_size / world_size,
        rank,
        world_size,
        ..PlanOptions::default()
    };
    let loader = Loader::new(train, config.train_augment.clone(), options, config.prefetch)?
        .with_threads(config.threads)?;
    Ok(loader)
}

fn select<'a>(
    shards: &'a ShardSet,
    config: &TrainConfig,
    selected: Option<&Selected>,
    split: &str,
) -> Result<Subset<'a, Split>> {
    if let (Some(selection), Some(selected)) = (&config.selection, selected) {
        let train = shards.split(&config.train_split)?;
        if split == config.train_split {
            return Ok(Subset::new(train, selected.train.clone())?);
        }
        if split == selection.eval_name() {
            return Ok(Subset::new(train, selected.eval.clone())?);
        }
    }
    let whole = shards.split(split)?;
    Ok(Subset::new(whole, (0..whole.len()).collect())?)
}

/// The output of a training step, for the epoch's counts.
struct StepOutput {
    /// Main classifier logits, f32.
    logits: Tensor,
    /// Main classifier loss summed over the batch's samples.
    loss_sum: f64,
    /// Whether the run stops after this step (on any rank's request).
    stop: bool,
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
