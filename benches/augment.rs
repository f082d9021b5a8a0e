//! Throughput of the fused crop, flip and normalise recipe on batches of 128 images.
//!
//! Run with `cargo bench --bench augment` (add `-- --warm-up-time 1 --measurement-time 3` for
//! a quick look). Throughput is reported in elements, one element per image. Building the
//! bench builds the facade crate, which links libtorch through the trainer crate.
//!
//! Groups: `cifar_32x32x3` (zero padding 4, crop back to 32x32, flip p = 0.5, normalise to f32
//! CHW) and `mnist_28x28x1` (the same recipe on one channel), each run serially on the calling
//! thread and with `par_apply_batch` on a 2-thread rayon pool.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use expanse::augment::{apply_batch, par_apply_batch, CropFlipNormalize, ImageRef, SampleKey};

const BATCH: usize = 128;
const PADDING: usize = 4;

/// Fixed pixels: `BATCH` images whose bytes differ between images and along each row.
fn batch_pixels(height: usize, width: usize, channels: usize) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| (0..height * width * channels).map(|j| ((i * 31 + j * 7) % 256) as u8).collect())
        .collect()
}

fn bench_shape(
    criterion: &mut Criterion,
    group_name: &str,
    (height, width, channels): (usize, usize, usize),
    mean: &[f32],
    std: &[f32],
) {
    let pixels = batch_pixels(height, width, channels);
    let images: Vec<ImageRef<'_>> = pixels
        .iter()
        .map(|data| ImageRef::new(data, height, width, channels).expect("bench image shape"))
        .collect();
    let keys: Vec<SampleKey> = (0..BATCH as u64).map(|index| SampleKey::new(0, 0, index)).collect();
    let recipe = CropFlipNormalize::cifar(PADDING, mean.to_vec(), std.to_vec());
    let mut out = vec![0.0f32; BATCH * recipe.output_len(height, width, channels)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("2-thread pool");

    let mut group = criterion.benchmark_group(group_name);
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function(BenchmarkId::new("serial", BATCH), |bencher| {
        bencher.iter(|| apply_batch(&recipe, &images, &keys, &mut out).expect("serial batch"));
    });
    group.bench_function(BenchmarkId::new("par_2_threads", BATCH), |bencher| {
        bencher.iter(|| {
            pool.install(|| par_apply_batch(&recipe, &images, &keys, &mut out))
                .expect("parallel batch")
        });
    });
    group.finish();
}

fn augment_benches(criterion: &mut Criterion) {
    let cifar_mean = [125.307, 122.950, 113.865];
    let cifar_std = [62.993, 62.089, 66.705];
    bench_shape(criterion, "cifar_32x32x3", (32, 32, 3), &cifar_mean, &cifar_std);
    bench_shape(criterion, "mnist_28x28x1", (28, 28, 1), &[33.318], &[78.567]);
}

criterion_group!(benches, augment_benches);
criterion_main!(benches);
