//! Throughput of every augmentation op and of the named recipes, one image per iteration on
//! the calling thread, on decoded photos held in memory.
//!
//! Run: `source scripts/env.sh && cargo bench --bench ops` (about 4 minutes; building the
//! bench links libtorch through the facade crate). A quick look:
//! `cargo bench --bench ops -- --warm-up-time 0.3 --measurement-time 0.5 flip`.
//! `scripts/bench-augment.sh` runs this bench and the Python peers alternately and prints a
//! table of ratios.
//!
//! Inputs, prepared once before timing:
//! - `500x375`: every `*.jpg` in `$EXPANSE_PHOTOS` (default `/tmp/peers-work/photos500`),
//!   decoded to RGB with the EXIF orientation applied, centre-cropped to 4:3 and resized to
//!   exactly 500x375 with [`Filter::Area`], as the Python peers prepare theirs. Without
//!   photos the bench prints a warning and uses 8 synthetic images (gradients and stripes).
//! - `224x224`: each 500x375 image resized to 224x224 with [`Filter::Area`].
//! - `28x28 gray (F-MNIST)`: the first 1,000 Fashion-MNIST training images from
//!   `$EXPANSE_FASHION_MNIST` (a `train-images-idx3-ubyte.gz` file), else from the Debian
//!   `dataset-fashion-mnist` locations, else synthetic with a warning.
//!
//! Names: each criterion group is an op named as in the peers' `ops_table.py` rows and each
//! benchmark is an input label, so `scripts/bench-augment.sh` can join the two. A suffix in
//! square brackets marks a variant of the same op (in place, exact smoothing). Throughput is
//! in elements, one element per image. Random ops draw from one generator created before
//! timing, so each call draws new parameters, as the peers do. Ops run through
//! [`Transform::transform`], which allocates the output image as the peers do. The
//! `[in place]` rows run [`Transform::transform_in_place`] on working copies that every call
//! changes further. The pixel-wise ops cost the same on any pixel values, so the drift does
//! not change their timing.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::Throughput;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use expanse::augment::colour::{ColorJitter, PcaLighting};
use expanse::augment::elastic::{Elastic, Smoothing};
use expanse::augment::erase::{Cutout, RandomErasing};
use expanse::augment::geometry::{
    self, Affine, CenterCrop, Filter, RandomResizedCrop, Resize, ScaleJitter,
};
use expanse::augment::noise::GaussianNoise;
use expanse::augment::pipeline::Recipe;
use expanse::augment::{
    flip_horizontal, CropWindow, HorizontalFlip, ImageBuf, ImageRef, Normalize, OpRng, PadMode,
    RandomCrop, SampleKey, Transform, VerticalFlip,
};
use expanse::dataset::image::{convert_image, ConvertOptions, Store};

const PHOTOS_DEFAULT: &str = "/tmp/peers-work/photos500";
const FASHION_MNIST_DEFAULTS: [&str; 2] = [
    "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
    "/tmp/peers-work/root/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
];
const FASHION_MNIST_IMAGES: usize = 1000;
/// ImageNet channel statistics in 0..255 units (torchvision's [0, 1] values times 255).
const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// Images per call in the rows that time a whole batch on a 2-thread pool.
const BATCH: usize = 64;

/// The decoded inputs of every row.
struct Inputs {
    large: Vec<ImageBuf>,
    small: Vec<ImageBuf>,
    digits: Vec<ImageBuf>,
}

impl Inputs {
    fn load() -> Self {
        let large = load_photos();
        let small = large
            .iter()
            .map(|image| {
                geometry::resize(image.as_image_ref(), 224, 224, Filter::Area)
                    .expect("resize a 500x375 input to 224x224")
            })
            .collect();
        let digits = load_fashion_mnist();
        Inputs { large, small, digits }
    }
}

/// Decodes the photos and brings each to 500x375: centre 4:3 window, then area resize.
fn load_photos() -> Vec<ImageBuf> {
    let folder = std::env::var_os("EXPANSE_PHOTOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PHOTOS_DEFAULT));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "jpg"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    if paths.is_empty() {
        eprintln!(
            "warning: no *.jpg photos in {}; set EXPANSE_PHOTOS to a folder of photos. \
             Timing 8 synthetic 500x375 images instead, which makes the figures \
             incomparable with the peers'",
            folder.display()
        );
        return (0..8).map(|i| synthetic_image(375, 500, 3, i)).collect();
    }

    let options = ConvertOptions { store: Store::Raw, ..ConvertOptions::default() };
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path)
                .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
            let decoded = convert_image(&bytes, &options)
                .unwrap_or_else(|skip| panic!("failed to decode {}: {skip:?}", path.display()));
            let (height, width) = (decoded.height as usize, decoded.width as usize);
            let image = ImageBuf::new(decoded.payload, height, width, 3).expect("RGB8 payload");
            to_500x375(&image)
        })
        .collect()
}

/// Cuts the centre 4:3 window (rounding as the peers' Python does) and resizes it to 500x375.
fn to_500x375(image: &ImageBuf) -> ImageBuf {
    let (height, width) = (image.height(), image.width());
    let (crop_height, crop_width) =
        if width * 3 >= height * 4 { (height, height * 4 / 3) } else { (width * 3 / 4, width) };
    let window = CropWindow {
        top: (height - crop_height) / 2,
        left: (width - crop_width) / 2,
        height: crop_height,
        width: crop_width,
    };

    let centre = geometry::crop(image.as_image_ref(), window).expect("4:3 window inside photo");
    geometry::resize(centre.as_image_ref(), 375, 500, Filter::Area).expect("resize to 500x375")
}

/// Reads the first Fashion-MNIST training images as 28x28 one-channel images.
fn load_fashion_mnist() -> Vec<ImageBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("EXPANSE_FASHION_MNIST") {
        Some(path) => vec![PathBuf::from(path)],
        None => FASHION_MNIST_DEFAULTS.iter().map(PathBuf::from).collect(),
    };
    for path in &candidates {
        if let Some(images) = read_idx_images(path) {
            return images;
        }
    }

    eprintln!(
        "warning: no Fashion-MNIST file at {}; set EXPANSE_FASHION_MNIST to \
         train-images-idx3-ubyte.gz. Timing synthetic 28x28 images instead",
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
    );
    (0..FASHION_MNIST_IMAGES).map(|i| synthetic_image(28, 28, 1, i)).collect()
}

/// Parses a gzipped IDX image file (magic 0x803), or returns `None` if it is missing or not one.
fn read_idx_images(path: &Path) -> Option<Vec<ImageBuf>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut bytes).ok()?;

    let word =
        |i: usize| bytes.get(4 * i..4 * i + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()));
    let (magic, count, rows, cols) = (word(0)?, word(1)?, word(2)? as usize, word(3)? as usize);
    if magic != 0x803 || rows == 0 || cols == 0 {
        return None;
    }

    let images = (count as usize).min(FASHION_MNIST_IMAGES);
    let pixels = bytes.get(16..16 + images * rows * cols)?;
    pixels
        .chunks_exact(rows * cols)
        .map(|data| ImageBuf::new(data.to_vec(), rows, cols, 1).ok())
        .collect()
}

/// Builds a deterministic image of gradients and stripes, so that no op gets a flat input.
fn synthetic_image(height: usize, width: usize, channels: usize, seed: usize) -> ImageBuf {
    let data = (0..height * width * channels)
        .map(|i| {
            let (pixel, k) = (i / channels, i % channels);
            let (y, x) = (pixel / width, pixel % width);
            ((x * 255 / width + y * 3 + ((x / 7 + y / 5 + seed) % 2) * 40 + k * 50) % 256) as u8
        })
        .collect();
    ImageBuf::new(data, height, width, channels).expect("synthetic image shape")
}

/// The generator every random op draws from: one stream for the whole row.
fn op_rng() -> OpRng {
    SampleKey::new(0, 0, 0).rng(0)
}

/// Times `op.transform` on `images` in turn, one image per iteration.
fn bench_transform<T: Transform>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    images: &[ImageBuf],
    op: &T,
) {
    let mut rng = op_rng();
    op.transform(images[0].as_image_ref(), &mut rng)
        .unwrap_or_else(|error| panic!("{} on {label}: {error}", op.name()));

    let mut next = 0;
    group.bench_function(BenchmarkId::from_parameter(label), |bencher| {
        bencher.iter(|| {
            let image = images[next % images.len()].as_image_ref();
            next += 1;
            black_box(op.transform(image, &mut rng).expect("transform"))
        })
    });
}

/// Times `op.transform_in_place` on working copies of `images`, one image per iteration.
fn bench_in_place<T: Transform>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    images: &[ImageBuf],
    op: &T,
) {
    let mut rng = op_rng();
    let mut work = images.to_vec();

    let mut next = 0;
    group.bench_function(BenchmarkId::from_parameter(label), |bencher| {
        bencher.iter(|| {
            let index = next % work.len();
            next += 1;
            op.transform_in_place(&mut work[index], &mut rng).expect("transform in place");
            black_box(&work[index]);
        })
    });
}

/// Opens a group named `op` counting one element (image) per iteration.
fn op_group<'a>(criterion: &'a mut Criterion, op: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = criterion.benchmark_group(op);
    group.throughput(Throughput::Elements(1));
    group
}

/// Benchmarks one op: its transform row at each input size, then optionally its in-place rows.
fn bench_op<T: Transform>(
    criterion: &mut Criterion,
    op_name: &str,
    inputs: &[(&str, &[ImageBuf])],
    op: &T,
    in_place: bool,
) {
    let mut group = op_group(criterion, op_name);
    for (label, images) in inputs {
        bench_transform(&mut group, label, images, op);
    }
    group.finish();

    if in_place {
        let mut group = op_group(criterion, &format!("{op_name} [in place]"));
        for (label, images) in inputs {
            bench_in_place(&mut group, label, images, op);
        }
        group.finish();
    }
}

/// Benchmarks the ops that the peers' table also measures, under the same names and inputs.
fn bench_peer_ops(criterion: &mut Criterion, inputs: &Inputs) {
    let large: &[ImageBuf] = &inputs.large;
    let both: [(&str, &[ImageBuf]); 2] = [("500x375", large), ("224x224", &inputs.small)];

    bench_op(
        criterion,
        "resize shorter side U{256..480}",
        &[("500x375", large)],
        &ScaleJitter::new(256, 480),
        false,
    );
    bench_op(
        criterion,
        "random crop 224",
        &[("500x375", large)],
        &RandomCrop::new(224, 224, 0, PadMode::Zero),
        false,
    );
    bench_op(criterion, "horizontal flip (p=1)", &both, &HorizontalFlip::new(1.0), true);
    bench_op(criterion, "PCA colour (fancy PCA)", &both, &PcaLighting::default(), true);
    bench_op(criterion, "rotate U(-15,15) deg, bilinear", &both, &Affine::rotation(15.0), false);
    let noise = GaussianNoise { std: 25.5, per_channel: true };
    bench_op(criterion, "gaussian noise std 0.1*255", &both, &noise, true);
    bench_normalize(criterion, &both);

    let elastic = Elastic::new(34.0, 4.0);
    let exact = Elastic { smoothing: Smoothing::Exact, ..Elastic::new(34.0, 4.0) };
    let elastic_inputs: [(&str, &[ImageBuf]); 2] =
        [("224x224 RGB", &inputs.small), ("28x28 gray (F-MNIST)", &inputs.digits)];
    bench_op(criterion, "elastic alpha=34 sigma=4", &elastic_inputs, &elastic, false);
    bench_op(
        criterion,
        "elastic alpha=34 sigma=4 [exact smoothing]",
        &elastic_inputs,
        &exact,
        false,
    );
}

/// Times u8 HWC to f32 CHW with the ImageNet statistics, into a buffer allocated once.
fn bench_normalize(criterion: &mut Criterion, inputs: &[(&str, &[ImageBuf])]) {
    let normalize = Normalize::new(IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec());
    let table = normalize.table(3).expect("ImageNet normalisation table");

    let mut group = op_group(criterion, "normalize uint8 -> float32");
    for (label, images) in inputs {
        let mut out = vec![0.0f32; images[0].data().len()];
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(label), |bencher| {
            bencher.iter(|| {
                let image = images[next % images.len()].as_image_ref();
                next += 1;
                table.apply(image, &mut out).expect("normalise");
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// Benchmarks the ops that the peers' table lacks, so the comparison lists them without a peer.
fn bench_other_ops(criterion: &mut Criterion, inputs: &Inputs) {
    let large: &[ImageBuf] = &inputs.large;
    let both: [(&str, &[ImageBuf]); 2] = [("500x375", large), ("224x224", &inputs.small)];

    bench_op(criterion, "vertical flip (p=1)", &both, &VerticalFlip { probability: 1.0 }, true);
    bench_op(
        criterion,
        "resize shorter side 256",
        &[("500x375", large)],
        &Resize::shorter_side(256),
        false,
    );
    bench_op(
        criterion,
        "centre crop 224",
        &[("500x375", large)],
        &CenterCrop::new(224, 224),
        false,
    );
    bench_op(
        criterion,
        "random resized crop 224",
        &[("500x375", large)],
        &RandomResizedCrop::new(224, 224),
        false,
    );
    let jitter = ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4 };
    bench_op(criterion, "colour jitter 0.4/0.4/0.4", &both, &jitter, true);
    let erasing = RandomErasing { probability: 1.0, ..RandomErasing::default() };
    bench_op(criterion, "random erasing (p=1)", &both, &erasing, true);
    bench_op(criterion, "cutout 64 (p=1)", &both, &Cutout { size: 64, probability: 1.0 }, true);

    // The mirror alone, with no probability draw, on working copies.
    let mut group = op_group(criterion, "horizontal flip (p=1) [flip_horizontal in place]");
    for (label, images) in both {
        let mut work = images.to_vec();
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(label), |bencher| {
            bencher.iter(|| {
                let index = next % work.len();
                next += 1;
                flip_horizontal(&mut work[index]);
                black_box(&work[index]);
            })
        });
    }
    group.finish();
}

/// Benchmarks whole named recipes to f32 output through a `RecipePlan` prepared once, one
/// image per call with a new key each call. `resnet-imagenet` also runs as batches on a
/// 2-thread rayon pool.
fn bench_recipes(criterion: &mut Criterion, inputs: &Inputs) {
    let images: &[ImageBuf] = &inputs.large;
    let (height, width) = (images[0].height(), images[0].width());

    for name in ["resnet-imagenet", "inception", "eval-center", "eval-10crop"] {
        let recipe = Recipe::named(name).unwrap_or_else(|error| panic!("recipe {name}: {error}"));
        let Some((views, channels, out_height, out_width)) = recipe.output_shape(height, width, 3)
        else {
            eprintln!("warning: recipe {name} has no fixed output shape; skipped");
            continue;
        };
        let plan = recipe.plan(3, None).unwrap_or_else(|error| panic!("recipe {name}: {error}"));
        let mut out = vec![0.0f32; views * channels * out_height * out_width];

        let mut group = op_group(criterion, &format!("recipe {name}"));
        let mut index = 0u64;
        group.bench_function(BenchmarkId::from_parameter("500x375"), |bencher| {
            bencher.iter(|| {
                let image = images[index as usize % images.len()].as_image_ref();
                plan.apply(image, SampleKey::new(0, 0, index), &mut out).expect("recipe");
                index += 1;
                black_box(&out);
            })
        });
        group.finish();
    }

    bench_recipe_batch(criterion, images, "resnet-imagenet");
}

/// Times `RecipePlan::par_apply_batch` over `BATCH` images on a 2-thread pool, counting images.
fn bench_recipe_batch(criterion: &mut Criterion, images: &[ImageBuf], name: &str) {
    let recipe = Recipe::named(name).unwrap_or_else(|error| panic!("recipe {name}: {error}"));
    let (height, width) = (images[0].height(), images[0].width());
    let Some((views, channels, out_height, out_width)) = recipe.output_shape(height, width, 3)
    else {
        return;
    };
    let batch: Vec<ImageRef<'_>> =
        (0..BATCH).map(|i| images[i % images.len()].as_image_ref()).collect();
    let plan = recipe.plan(3, None).unwrap_or_else(|error| panic!("recipe {name}: {error}"));
    let mut out = vec![0.0f32; BATCH * views * channels * out_height * out_width];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("2-thread pool");

    let mut group = criterion.benchmark_group(format!("recipe {name} [par_apply_batch 2 threads]"));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut epoch = 0u64;
    group.bench_function(BenchmarkId::from_parameter("500x375"), |bencher| {
        bencher.iter(|| {
            let keys: Vec<SampleKey> =
                (0..BATCH as u64).map(|i| SampleKey::new(0, epoch, i)).collect();
            epoch += 1;
            pool.install(|| plan.par_apply_batch(&batch, &keys, &mut out)).expect("batch");
            black_box(&out);
        })
    });
    group.finish();
}

fn ops_benches(criterion: &mut Criterion) {
    let inputs = Inputs::load();
    eprintln!(
        "inputs: {} images of 500x375, {} of 224x224, {} of 28x28",
        inputs.large.len(),
        inputs.small.len(),
        inputs.digits.len()
    );

    bench_peer_ops(criterion, &inputs);
    bench_other_ops(criterion, &inputs);
    bench_recipes(criterion, &inputs);
}

criterion_group! {
    name = benches;
    // Short defaults keep the whole bench near 3 minutes; command-line flags override them.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = ops_benches
}
criterion_main!(benches);
