//! The loader: plan, augment in parallel, prefetch on a background thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Mutex;
use std::time::Instant;

use expanse_augment::{CropFlipNormalize, CropFlipNormalizePlan, ImageRef, SampleKey};

use super::{Batch, EpochPlan, PlanOptions};
use crate::{Error, Result};

/// Random-access samples of one split: u8 HWC images of one shape, with labels.
pub trait SampleSource: Sync {
    /// Number of records.
    fn len(&self) -> usize;

    /// Whether there is no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Height, width and channels shared by every record.
    fn shape(&self) -> (usize, usize, usize);

    /// Pixels of record `index`, u8 HWC. Callers keep `index < len()`.
    fn image(&self, index: usize) -> &[u8];

    /// Label of record `index`.
    fn label(&self, index: usize) -> u32;
}

/// The position of a loader: enough to continue an epoch exactly where it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderState {
    /// Seed of the run.
    pub seed: u64,
    /// Epoch in progress.
    pub epoch: u64,
    /// Next batch position in that epoch's plan.
    pub position: usize,
}

/// Streams augmented batches of a [`SampleSource`].
///
/// Sample `i` of epoch `e` is augmented with the key (seed, e, i), so a batch's bytes depend
/// only on (seed, epoch, position) and not on the rayon thread count or on where a run resumed.
pub struct Loader<'a, S: SampleSource> {
    source: &'a S,
    plan: CropFlipNormalizePlan,
    options: PlanOptions,
    prefetch: usize,
    sample_shape: [usize; 3],
    buffers: Mutex<Vec<Batch>>,
    pool: Option<rayon::ThreadPool>,
}

impl<'a, S: SampleSource> Loader<'a, S> {
    /// Builds a loader that keeps up to `prefetch` batches ready ahead of the consumer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty source or a zero batch size, and
    /// [`Error::Augment`] when `op` does not fit the source's image shape.
    pub fn new(
        source: &'a S,
        op: CropFlipNormalize,
        options: PlanOptions,
        prefetch: usize,
    ) -> Result<Self> {
        if source.is_empty() {
            return Err(Error::InvalidArgument("cannot load batches from an empty split".into()));
        }
        if options.batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }

        let (height, width, channels) = source.shape();
        let plan = op.prepare(height, width, channels)?;
        let (out_channels, out_height, out_width) = plan.output_shape();
        let sample_shape = [out_channels, out_height, out_width];
        let prefetch = prefetch.max(1);
        // A batch never contains more samples than the split (or one rank's share of it).
        let capacity = options.batch_size.min(source.len());
        let buffers =
            (0..=prefetch).map(|_| Batch::with_capacity(capacity, sample_shape)).collect();
        let buffers = Mutex::new(buffers);
        Ok(Loader { source, plan, options, prefetch, sample_shape, buffers, pool: None })
    }

    /// Augments on a pool of its own with `threads` threads instead of rayon's global pool.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero threads or when the pool cannot start.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(Error::InvalidArgument("loader threads must be at least 1".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("expanse-loader-{i}"))
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start {threads} loader threads: {e}"))
            })?;
        self.pool = Some(pool);
        Ok(self)
    }

    /// Output shape of one sample: channels, height, width.
    pub fn sample_shape(&self) -> [usize; 3] {
        self.sample_shape
    }

    /// Returns the plan options the loader follows.
    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    /// Builds the order of `epoch`.
    pub fn plan(&self, epoch: u64) -> Result<EpochPlan> {
        EpochPlan::new(self.source.len(), epoch, &self.options)
    }

    /// Fills `batch` with position `position` of `plan`, augmenting on the loader's pool (see
    /// [`Loader::with_threads`]) or else on the current rayon pool.
    pub fn fill(
        &self,
        plan: &EpochPlan,
        epoch: u64,
        position: usize,
        batch: &mut Batch,
    ) -> Result<()> {
        let indices = plan.batch(position);
        let (height, width, channels) = self.source.shape();

        let mut images = Vec::with_capacity(indices.len());
        for &index in indices {
            let image = ImageRef::new(self.source.image(index as usize), height, width, channels)?;
            images.push(image);
        }
        let keys: Vec<SampleKey> = indices
            .iter()
            .map(|&index| SampleKey { seed: self.options.seed, epoch, index: u64::from(index) })
            .collect();

        batch.position = position;
        batch.epoch = epoch;
        batch.indices.clear();
        batch.indices.extend_from_slice(indices);
        batch.labels.clear();
        batch.labels.extend(indices.iter().map(|&i| i64::from(self.source.label(i as usize))));
        let out = batch.pixels_mut(indices.len());
        match &self.pool {
            Some(pool) => pool.install(|| self.plan.par_apply_batch(&images, &keys, out))?,
            None => self.plan.par_apply_batch(&images, &keys, out)?,
        }
        Ok(())
    }

    /// Runs `consume` on every batch of `epoch` from position `start` to the end of the plan.
    ///
    /// Batches are prepared on a scoped background thread, at most `prefetch` ahead. The
    /// consumer's first error stops the epoch and is returned; the background thread then stops
    /// before its next batch. Every buffer returns to the loader's pool, so steady state
    /// allocates no pixel buffer.
    pub fn run_epoch<E, F>(&self, epoch: u64, start: usize, mut consume: F) -> Result<(), E>
    where
        E: From<Error> + Send,
        F: FnMut(&Batch) -> Result<(), E>,
    {
        let plan = self.plan(epoch)?;
        if start > plan.batches() {
            return Err(Error::InvalidArgument(format!(
                "resume position {start} is past the {} batches of epoch {epoch}",
                plan.batches()
            ))
            .into());
        }

        let mut pool = std::mem::take(&mut *self.buffers.lock().expect("buffer pool poisoned"));
        let stop = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let (full_tx, full_rx) = sync_channel::<(Batch, Result<()>)>(self.prefetch);
            let (free_tx, free_rx) = channel::<Batch>();
            for batch in pool.drain(..) {
                free_tx.send(batch).expect("receiver is alive");
            }

            let (plan, stop) = (&plan, &stop);
            let producer = scope.spawn(move || {
                let mut idle = Vec::new();
                for position in start..plan.batches() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut batch) = free_rx.recv() else { break };
                    let filled = self.fill(plan, epoch, position, &mut batch);
                    if let Err(returned) = full_tx.send((batch, filled)) {
                        idle.push(returned.0 .0);
                        break;
                    }
                }
                // Wait for the consumer to hand back every buffer before leaving.
                drop(full_tx);
                idle.extend(free_rx);
                idle
            });

            let mut outcome = Ok(());
            for _ in start..plan.batches() {
                let requested = Instant::now();
                let Ok((mut batch, filled)) = full_rx.recv() else {
                    outcome =
                        Err(Error::InvalidArgument("loader thread stopped early".into()).into());
                    break;
                };
                batch.waited = requested.elapsed();
                let consumed = match filled {
                    Ok(()) => consume(&batch),
                    Err(e) => Err(e.into()),
                };
                free_tx.send(batch).expect("producer keeps its receiver until the end");
                if let Err(e) = consumed {
                    outcome = Err(e);
                    break;
                }
            }

            stop.store(true, Ordering::Relaxed);
            drop(free_tx);
            pool.extend(full_rx.iter().map(|(batch, _)| batch));
            pool.extend(producer.join().expect("loader thread panicked"));
            outcome
        });

        *self.buffers.lock().expect("buffer pool poisoned") = pool;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images whose pixels all differ, so that any change of crop, flip or order shows.
    struct Synthetic {
        pixels: Vec<u8>,
        height: usize,
        width: usize,
    }

    impl Synthetic {
        fn new(len: usize, height: usize, width: usize) -> Self {
            let pixels = (0..len * height * width).map(|i| (i * 7 % 251) as u8).collect();
            Synthetic { pixels, height, width }
        }
    }

    impl SampleSource for Synthetic {
        fn len(&self) -> usize {
            self.pixels.len() / (self.height * self.width)
        }

        fn shape(&self) -> (usize, usize, usize) {
            (self.height, self.width, 1)
        }

        fn image(&self, index: usize) -> &[u8] {
            let n = self.height * self.width;
            &self.pixels[index * n..(index + 1) * n]
        }

        fn label(&self, index: usize) -> u32 {
            (index % 10) as u32
        }
    }

    fn options(batch_size: usize) -> PlanOptions {
        PlanOptions {
            seed: 11,
            shuffle: true,
            batch_size,
            drop_last: false,
            rank: 0,
            world_size: 1,
        }
    }

    /// Collects every batch of `epoch` from `start`, as (labels, pixel bits).
    fn collect(
        loader: &Loader<'_, Synthetic>,
        epoch: u64,
        start: usize,
    ) -> Vec<(Vec<i64>, Vec<u32>)> {
        let mut batches = Vec::new();
        loader
            .run_epoch(epoch, start, |batch: &Batch| -> Result<()> {
                let bits = batch.pixels().iter().map(|v| v.to_bits()).collect();
                batches.push((batch.labels.clone(), bits));
                Ok(())
            })
            .unwrap();
        batches
    }

    #[test]
    fn same_batches_with_one_and_two_threads() {
        let source = Synthetic::new(100, 9, 7);
        let op = CropFlipNormalize::cifar(2, vec![100.0], vec![50.0]);
        let one =
            Loader::new(&source, op.clone(), options(16), 2).unwrap().with_threads(1).unwrap();
        let two = Loader::new(&source, op, options(16), 2).unwrap().with_threads(2).unwrap();

        let (one, two) = (collect(&one, 3, 0), collect(&two, 3, 0));
        assert_eq!(one.len(), 7);
        assert_eq!(one, two);
    }

    #[test]
    fn resume_matches_uninterrupted_tail() {
        let source = Synthetic::new(100, 9, 7);
        let op = CropFlipNormalize::cifar(2, vec![100.0], vec![50.0]);
        let full =
            Loader::new(&source, op.clone(), options(16), 1).unwrap().with_threads(2).unwrap();
        let full = collect(&full, 1, 0);
        for threads in [1, 2] {
            let loader = Loader::new(&source, op.clone(), options(16), 1)
                .unwrap()
                .with_threads(threads)
                .unwrap();
            for start in [0, 1, 4, 6, 7] {
                let tail = collect(&loader, 1, start);
                assert_eq!(tail, full[start..], "resume at batch {start} with {threads} threads");
            }
        }
    }

    #[test]
    fn epochs_differ_in_order_and_crops() {
        let source = Synthetic::new(64, 9, 7);
        let op = CropFlipNormalize::cifar(2, vec![100.0], vec![50.0]);
        let loader = Loader::new(&source, op, options(64), 1).unwrap();

        let (a, b) = (collect(&loader, 0, 0), collect(&loader, 1, 0));
        assert_ne!(a[0].0, b[0].0, "labels in the same order");

        // Sort samples by record index to compare crops of the same records.
        let per_epoch = |epoch| {
            let mut samples = Vec::new();
            loader
                .run_epoch(epoch, 0, |batch: &Batch| -> Result<()> {
                    let n = batch.sample_len();
                    for (k, &index) in batch.indices.iter().enumerate() {
                        samples.push((index, batch.pixels()[k * n..(k + 1) * n].to_vec()));
                    }
                    Ok(())
                })
                .unwrap();
            samples.sort_by_key(|s| s.0);
            samples
        };
        let (x, y) = (per_epoch(0), per_epoch(1));
        let differing = x.iter().zip(&y).filter(|(p, q)| p.1 != q.1).count();
        assert!(differing > 32, "only {differing} of 64 records got other crops or flips");
    }

    #[test]
    fn consumer_error_stops_epoch_and_keeps_buffers() {
        let source = Synthetic::new(100, 9, 7);
        let op = CropFlipNormalize::eval(vec![0.0], vec![1.0]);
        let loader = Loader::new(&source, op, options(10), 2).unwrap();

        let mut seen = 0;
        let outcome = loader.run_epoch(0, 0, |_: &Batch| -> Result<()> {
            seen += 1;
            if seen == 3 {
                return Err(Error::InvalidArgument("stop".into()));
            }
            Ok(())
        });
        assert!(outcome.is_err());
        assert_eq!(seen, 3);
        assert_eq!(loader.buffers.lock().unwrap().len(), 3);
        assert_eq!(collect(&loader, 0, 0).len(), 10);
    }

    #[test]
    fn batch_larger_than_split_allocates_split() {
        let source = Synthetic::new(10, 4, 4);
        let op = CropFlipNormalize::eval(vec![0.0], vec![1.0]);
        let loader = Loader::new(&source, op, options(usize::MAX / 64), 1).unwrap();
        let batches = collect(&loader, 0, 0);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0.len(), 10);
    }

    #[test]
    fn resume_past_end_is_rejected() {
        let source = Synthetic::new(10, 4, 4);
        let op = CropFlipNormalize::eval(vec![0.0], vec![1.0]);
        let loader = Loader::new(&source, op, options(5), 1).unwrap();
        let outcome = loader.run_epoch(0, 3, |_: &Batch| -> Result<()> { Ok(()) });
        assert!(outcome.is_err());
    }
}
