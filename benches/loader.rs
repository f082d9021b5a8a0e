//! Loader throughput on CIFAR-shaped data: epoch plan, record gather from the memory-mapped
//! shards, zero-pad-4 random crop, horizontal flip and normalisation to f32 NCHW batches of
//! 128, with prefetching, as the trainer consumes them.
//!
//! Run: `cargo bench --bench loader` (after `source scripts/env.sh`). Compare with
//! `cifar_pipeline.py` of the Python peer baselines run in the same session: its data are
//! also 50,000 random 32x32x3 images held in memory. `EXPANSE_BENCH_THREADS` sets the rayon
//! pool size (default 2).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use expanse::augment::CropFlipNormalize;
use expanse::dataset::loader::{Batch, Loader, PlanOptions};
use expanse::dataset::shard::{
    write_record_set, RecordSet, RecordSplit, SampleSchema, ShardSet, WriteOptions,
};

const IMAGES: usize = 50_000;
const BATCH: usize = 128;

fn threads() -> usize {
    std::env::var("EXPANSE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2)
}

/// Writes 50,000 random-looking 32x32x3 images into a temporary shard set.
fn cifar_shaped_shards(dir: &std::path::Path) -> ShardSet {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let pixels: Vec<u8> = (0..IMAGES * 3072)
        .map(|_| {
            // xorshift64: fixed input, no dependency on an RNG crate's stream.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let labels: Vec<u32> = (0..IMAGES as u32).map(|i| i % 10).collect();
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let set = RecordSet {
        source_kind: "synthetic",
        classes: &classes,
        coarse_classes: None,
        splits: vec![RecordSplit {
            name: "train",
            schema: SampleSchema::raw_u8(32, 32, 3),
            pixels: &pixels,
            labels: &labels,
            coarse_labels: None,
        }],
    };
    write_record_set(&set, dir, &WriteOptions::default()).expect("temporary shard set");
    ShardSet::open(dir).expect("shard set just written")
}

fn loader(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let shards = cifar_shaped_shards(dir.path());
    let split = shards.split("train").expect("train split");
    let recipe = CropFlipNormalize::cifar(4, vec![125.3, 123.0, 113.9], vec![63.0, 62.1, 66.7]);
    let options = PlanOptions { batch_size: BATCH, ..PlanOptions::default() };
    let threads = threads();
    let loader = Loader::new(split, recipe, options, 2)
        .and_then(|loader| loader.with_threads(threads))
        .expect("valid loader");

    let mut group = c.benchmark_group("loader");
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.sample_size(10);
    let mut epoch = 0u64;
    group.bench_function(format!("cifar epoch pad4-crop-flip-normalize, {threads} threads"), |b| {
        b.iter(|| {
            epoch += 1;
            let mut checksum = 0.0f32;
            loader
                .run_epoch(epoch, 0, |batch: &Batch| -> expanse::dataset::Result<()> {
                    checksum += batch.pixels()[0];
                    Ok(())
                })
                .expect("epoch runs");
            checksum
        })
    });
    group.finish();
}

criterion_group!(benches, loader);
criterion_main!(benches);
