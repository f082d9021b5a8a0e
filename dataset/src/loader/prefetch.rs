//! The loader: plan, augment in parallel, prefetch on a background thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Mutex;
use std::time::Instant;

use expanse_augment::SampleKey;
use rayon::prelude::*;

use super::augmentation::{Prepared, SampleOut};
use super::batch::Values;
use super::{
    Augmentation, Batch, Element, EpochPlan, Layout, PlanOptions, SampleShape, SampleSource,
};
use crate::{Error, Result};

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
///
/// # Memory
///
/// The loader allocates `prefetch + 1` batch buffers once. Each rayon thread keeps one decode
/// buffer (and, for [`Layout::Nhwc`], one sample of planar values) that grows to the largest
/// record it has met and is then reused. The recipe steps' intermediate images come from the
/// allocator and go back to it per sample, so the resident size settles after the first
/// batches and stays flat over epochs (the loader benchmark measures it).
pub struct Loader<'a, S: SampleSource> {
    source: &'a S,
    prepared: Prepared,
    options: PlanOptions,
    prefetch: usize,
    sample_shape: SampleShape,
    layout: Layout,
    element: Element,
    buffers: Mutex<Vec<Batch>>,
    pool: Option<rayon::ThreadPool>,
}

impl<'a, S: SampleSource> Loader<'a, S> {
    /// Builds a loader that keeps up to `prefetch` batches ready ahead of the consumer.
    ///
    /// Record 0 sets the sample shape. On a source of varying sizes, a recipe whose output
    /// shape follows the input's is rejected here, and a record that still gets another shape
    /// fails its batch with an error that names it.
    ///
    /// JPEG records are decoded at the coarsest DCT scale (1, 1/2, 1/4 or 1/8) whose shorter
    /// side stays at or above
    /// [`Recipe::min_input_side`](expanse_augment::pipeline::Recipe::min_input_side). The
    /// recipe's draws are unchanged, and only its resampling starts from fewer pixels.
    /// [`Loader::with_full_size_decode`] turns that off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty source, a zero batch size or a recipe whose
    /// output shape varies, and [`Error::Augment`] when the augmentation does not fit the
    /// records' shape.
    pub fn new(
        source: &'a S,
        augmentation: impl Into<Augmentation>,
        options: PlanOptions,
        prefetch: usize,
    ) -> Result<Self> {
        if source.is_empty() {
            return Err(Error::InvalidArgument("cannot load batches from an empty split".into()));
        }
        if options.batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        options.order.validate()?;

        let (prepared, sample_shape) = Prepared::new(source, augmentation.into(), true)?;
        let prefetch = prefetch.max(1);
        let (layout, element) = (Layout::Nchw, Element::F32);
        let mut loader = Loader {
            source,
            prepared,
            options,
            prefetch,
            sample_shape,
            layout,
            element,
            buffers: Mutex::new(Vec::new()),
            pool: None,
        };
        loader.allocate()?;
        Ok(loader)
    }

    /// (Re)allocates the batch ring for the current layout and element type.
    fn allocate(&mut self) -> Result<()> {
        // Free the old ring first, so that both never live at once.
        self.buffers = Mutex::new(Vec::new());
        // A batch never contains more samples than the split (or one rank's share of it).
        let capacity = self.options.batch_size.min(self.source.len());
        let (shape, layout, element) = (self.sample_shape, self.layout, self.element);
        let buffers = (0..=self.prefetch)
            .map(|_| Batch::with_capacity(capacity, shape, layout, element))
            .collect::<Result<Vec<Batch>>>()?;
        self.buffers = Mutex::new(buffers);
        Ok(())
    }

    /// Hands out u8 batches ([`Batch::bytes`]) instead of f32 ones: the augmented pixels, for
    /// a consumer that converts and normalises on its device.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] unless the augmentation is a recipe whose output is
    /// [`Output::None`](expanse_augment::pipeline::Output::None): a normalised value does not
    /// fit a u8.
    pub fn with_u8_output(mut self) -> Result<Self> {
        if !self.prepared.writes_pixels() {
            return Err(Error::InvalidArgument(
                "u8 batches need a recipe whose output is {\"kind\": \"none\"}; normalise on \
                 the device instead"
                    .into(),
            ));
        }
        self.element = Element::U8;
        self.allocate()?;
        Ok(self)
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

    /// Writes each view channels-last ([`Layout::Nhwc`]) or planar ([`Layout::Nchw`], the
    /// default).
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        for batch in self.buffers.get_mut().expect("buffer pool poisoned") {
            batch.layout = layout;
        }
        self
    }

    /// Decodes every JPEG at full size, whatever the recipe needs.
    pub fn with_full_size_decode(mut self) -> Self {
        if let Prepared::Recipe { min_side, .. } = &mut self.prepared {
            *min_side = usize::MAX;
        }
        self
    }

    /// Output shape of one sample.
    pub fn sample_shape(&self) -> SampleShape {
        self.sample_shape
    }

    /// Memory order of each view in the batches.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Element type of the batches' values.
    pub fn element(&self) -> Element {
        self.element
    }

    /// Returns the plan options the loader follows.
    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    /// Builds the order of `epoch`.
    pub fn plan(&self, epoch: u64) -> Result<EpochPlan> {
        EpochPlan::new(self.source.len(), epoch, &self.options)
    }

    /// Fills `batch` with position `position` of `plan`, decoding and augmenting on the
    /// loader's pool (see [`Loader::with_threads`]) or else on the current rayon pool.
    ///
    /// # Errors
    ///
    /// The error of a failing sample, naming its record (with several failing samples, any
    /// one of them).
    pub fn fill(
        &self,
        plan: &EpochPlan,
        epoch: u64,
        position: usize,
        batch: &mut Batch,
    ) -> Result<()> {
        let started = Instant::now();
        let indices = plan.batch(position);
        batch.position = position;
        batch.epoch = epoch;
        batch.indices.clear();
        batch.indices.extend_from_slice(indices);
        batch.labels.clear();
        batch.labels.extend(indices.iter().map(|&i| i64::from(self.source.label(i as usize))));

        let (shape, layout, seed) = (self.sample_shape, self.layout, self.options.seed);
        let (prepared, source) = (&self.prepared, self.source);
        let key = |index: u32| SampleKey { seed, epoch, index: u64::from(index) };
        let values = batch.values_mut(indices.len());
        let work = move || match values {
            Values::F32(out) => out
                .par_chunks_mut(shape.len())
                .zip(indices.par_iter())
                .try_for_each(|(sample, &index)| {
                    let out = SampleOut::F32(sample);
                    prepared.apply(source, index as usize, key(index), shape, layout, out)
                }),
            Values::U8(out) => out
                .par_chunks_mut(shape.len())
                .zip(indices.par_iter())
                .try_for_each(|(sample, &index)| {
                    let out = SampleOut::U8(sample);
                    prepared.apply(source, index as usize, key(index), shape, layout, out)
                }),
        };
        match &self.pool {
            Some(pool) => pool.install(work)?,
            None => work()?,
        }
        batch.fill_time = started.elapsed();
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
    use expanse_augment::CropFlipNormalize;

    use super::*;
    use crate::loader::Record;
    use crate::shard::Encoding;

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

        fn record(&self, index: usize) -> Result<Record<'_>> {
            let n = self.height * self.width;
            Ok(Record {
                bytes: &self.pixels[index * n..(index + 1) * n],
                height: self.height,
                width: self.width,
                channels: 1,
                encoding: Encoding::Raw,
            })
        }

        fn label(&self, index: usize) -> u32 {
            (index % 10) as u32
        }
    }

    fn options(batch_size: usize) -> PlanOptions {
        PlanOptions { seed: 11, batch_size, ..PlanOptions::default() }
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
