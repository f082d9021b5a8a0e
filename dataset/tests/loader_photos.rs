//! The loader on photo shards: JPEG and raw records of differing sizes, decoded and augmented
//! by a recipe, with exact resume, rank splits and channels-last output.

use std::fs;
use std::path::Path;

use expanse_augment::geometry::ScaleJitter;
use expanse_augment::pipeline::{Output, Recipe, Step, Views};
use expanse_augment::{HorizontalFlip, Normalize, PadMode, RandomCrop};
use expanse_dataset::convert::{convert_images, PhotoOptions, Silent};
use expanse_dataset::image::{ConvertOptions, Store};
use expanse_dataset::loader::{Batch, Layout, Loader, PlanOptions};
use expanse_dataset::shard::{ShardSet, Split};
use expanse_dataset::source::list_class_folders;

/// Writes a `width` x `height` RGB JPEG with smooth gradients and texture that depend on
/// `seed`, so that crops, flips and resampling all change the pixels.
fn write_jpeg(path: &Path, width: u16, height: u16, seed: u32) {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            let texture = ((x * x + y * 3 + seed * 13) % 37) * 2;
            pixels.push((x * 255 / u32::from(width) + texture) as u8);
            pixels.push((y * 255 / u32::from(height)) as u8);
            pixels.push(((x + y + seed * 29) % 256) as u8);
        }
    }
    let encoder = jpeg_encoder::Encoder::new_file(path, 90).expect("create jpeg");
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode jpeg");
}

/// Converts `count` photos per class in 3 classes, sizes from about `side` to `2 * side`, into a
/// shard set stored as `store`.
fn photo_set(dir: &Path, side: u16, count: u32, store: Store) -> ShardSet {
    let src = dir.join("photos");
    let mut seed = 0;
    for class in ["cat", "dog", "owl"] {
        fs::create_dir_all(src.join(class)).expect("class folder");
        for i in 0..count {
            seed += 1;
            let width = side + (seed * 37 % u32::from(side)) as u16;
            let height = side + (seed * 53 % u32::from(side)) as u16;
            write_jpeg(&src.join(class).join(format!("{i:03}.jpg")), width, height, seed);
        }
    }
    let list = list_class_folders(&src).expect("list");
    let out = dir.join("shards");
    let options = PhotoOptions {
        image: ConvertOptions { store, max_side: None, ..ConvertOptions::default() },
        shard_size_bytes: 64 * 1024,
        strict: true,
        overwrite: false,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    convert_images(&list, &out, "train", &options, &pool, &mut Silent).expect("convert");
    ShardSet::open(&out).expect("open")
}

/// Scale jitter of the shorter side to 40..=56, random 32 x 32 crop, flip, normalise.
fn recipe() -> Recipe {
    Recipe {
        name: Some("small-jitter".into()),
        steps: vec![
            Step::ScaleJitter(ScaleJitter::new(40, 56)),
            Step::RandomCrop(RandomCrop::new(32, 32, 0, PadMode::Zero)),
            Step::HorizontalFlip(HorizontalFlip::new(0.5)),
        ],
        views: Views::Single,
        output: Output::Normalize(Normalize::new(vec![120.0, 115.0, 100.0], vec![60.0; 3])),
    }
}

fn options(batch_size: usize, rank: usize, world_size: usize) -> PlanOptions {
    PlanOptions { seed: 5, shuffle: true, batch_size, rank, world_size, ..PlanOptions::default() }
}

/// Every batch of `epoch` from `start`: (record indices, labels, pixel bits).
type Batches = Vec<(Vec<u32>, Vec<i64>, Vec<u32>)>;

fn collect(loader: &Loader<'_, Split>, epoch: u64, start: usize) -> Batches {
    let mut batches = Vec::new();
    loader
        .run_epoch(epoch, start, |batch: &Batch| -> expanse_dataset::Result<()> {
            let bits = batch.pixels().iter().map(|v| v.to_bits()).collect();
            batches.push((batch.indices.clone(), batch.labels.clone(), bits));
            Ok(())
        })
        .expect("epoch");
    batches
}

#[test]
fn jpeg_resume_matches_uninterrupted_epoch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 48, 9, Store::Keep);
    let split = set.split("train").expect("split");
    assert!(split.schema().to_string().contains("jpeg"), "{}", split.schema());

    let full = Loader::new(split, recipe(), options(4, 0, 1), 2).expect("loader");
    let full = collect(&full.with_threads(2).expect("pool"), 1, 0);
    assert_eq!(full.len(), 7, "27 records in batches of 4");
    for threads in [1, 2] {
        let loader = Loader::new(split, recipe(), options(4, 0, 1), 2)
            .expect("loader")
            .with_threads(threads)
            .expect("pool");
        for start in [0, 1, 3, 6, 7] {
            let tail = collect(&loader, 1, start);
            assert_eq!(tail, full[start..], "resume at batch {start} with {threads} threads");
        }
    }
}

#[test]
fn raw_photo_records_fill_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let raw = photo_set(&tmp.path().join("raw"), 40, 4, Store::Raw);
    let split = raw.split("train").expect("split");
    assert!(split.schema().to_string().contains("raw"), "{}", split.schema());
    let loader = Loader::new(split, recipe(), options(5, 0, 1), 1).expect("loader");
    let batches = collect(&loader, 0, 0);
    let samples: usize = batches.iter().map(|b| b.0.len()).sum();
    assert_eq!(samples, 12);
    let values = batches.iter().flat_map(|b| &b.2).count();
    assert_eq!(values, 12 * 3 * 32 * 32);
}

#[test]
fn ranks_share_epoch_equally() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 40, 5, Store::Keep);
    let split = set.split("train").expect("split");
    let single = Loader::new(split, recipe(), options(3, 0, 1), 1).expect("loader");
    let mut expected: Vec<u32> = collect(&single, 2, 0).into_iter().flat_map(|b| b.0).collect();
    expected.sort_unstable();

    for world_size in 1..=4 {
        let mut union = Vec::new();
        let mut counts = Vec::new();
        for rank in 0..world_size {
            let loader =
                Loader::new(split, recipe(), options(3, rank, world_size), 1).expect("loader");
            let batches = collect(&loader, 2, 0);
            counts.push(batches.len());
            union.extend(batches.into_iter().flat_map(|b| b.0));
        }
        assert!(counts.iter().all(|&c| c == counts[0]), "world {world_size}: {counts:?}");
        union.sort_unstable();
        union.dedup();
        assert_eq!(union, expected, "world {world_size}");
    }
}

#[test]
fn epochs_differ_and_repeat_exactly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 40, 4, Store::Keep);
    let split = set.split("train").expect("split");
    let loader = Loader::new(split, recipe(), options(6, 0, 1), 1).expect("loader");

    let (first, again, second) =
        (collect(&loader, 0, 0), collect(&loader, 0, 0), collect(&loader, 1, 0));
    assert_eq!(first, again);
    assert_ne!(
        first.iter().map(|b| &b.0).collect::<Vec<_>>(),
        second.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    assert_ne!(
        first.iter().map(|b| &b.2).collect::<Vec<_>>(),
        second.iter().map(|b| &b.2).collect::<Vec<_>>()
    );
}

#[test]
fn channels_last_transposes_planar() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 40, 2, Store::Keep);
    let split = set.split("train").expect("split");
    let planar = Loader::new(split, recipe(), options(6, 0, 1), 1).expect("loader");
    let last = Loader::new(split, recipe(), options(6, 0, 1), 1)
        .expect("loader")
        .with_layout(Layout::Nhwc);

    let mut shapes = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    planar
        .run_epoch(0, 0, |batch: &Batch| -> expanse_dataset::Result<()> {
            shapes.push(batch.shape());
            a.extend_from_slice(batch.pixels());
            Ok(())
        })
        .expect("planar");
    last.run_epoch(0, 0, |batch: &Batch| -> expanse_dataset::Result<()> {
        shapes.push(batch.shape());
        b.extend_from_slice(batch.pixels());
        Ok(())
    })
    .expect("channels last");
    assert_eq!(shapes, [[6, 3, 32, 32], [6, 32, 32, 3]]);
    let plane = 32 * 32;
    for sample in 0..6 {
        for k in 0..3 {
            for p in 0..plane {
                let nchw = a[sample * 3 * plane + k * plane + p];
                let nhwc = b[sample * 3 * plane + p * 3 + k];
                assert_eq!(nchw.to_bits(), nhwc.to_bits(), "sample {sample} channel {k} pixel {p}");
            }
        }
    }
}

#[test]
fn large_jpegs_decode_reduced_near_full() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Shorter sides 160..320: at least 2x the recipe's largest shorter side (56), so the
    // loader decodes them at 1/2 or less.
    let set = photo_set(tmp.path(), 160, 2, Store::Keep);
    let split = set.split("train").expect("split");
    let reduced = Loader::new(split, recipe(), options(6, 0, 1), 1).expect("loader");
    let full =
        Loader::new(split, recipe(), options(6, 0, 1), 1).expect("loader").with_full_size_decode();

    let (reduced, full) = (collect(&reduced, 0, 0), collect(&full, 0, 0));
    assert_eq!(reduced.len(), 1);
    assert_eq!(reduced[0].0, full[0].0, "same order");
    let (a, b) = (&reduced[0].2, &full[0].2);
    assert!(a != b, "a reduced decode changes the resampling source");
    // Normalised units (std 60): the mean absolute difference stays below 4 levels of 255.
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from((f32::from_bits(x) - f32::from_bits(y)).abs()))
        .sum::<f64>()
        / a.len() as f64;
    assert!(diff * 60.0 < 4.0, "mean difference {:.2} levels", diff * 60.0);
}

#[test]
fn damaged_jpeg_error_names_shard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 40, 2, Store::Keep);
    let shard = set.split("train").expect("split").shards()[0].path().to_path_buf();
    drop(set);

    // Flip a byte in the middle of the second record's payload: inside JPEG data,
    // covered by the record checksum.
    let mut bytes = fs::read(&shard).expect("read shard");
    let reopened = ShardSet::open(&tmp.path().join("shards")).expect("open");
    let record = reopened.split("train").expect("split").record(1).to_vec();
    let at = bytes.windows(record.len()).position(|w| w == record.as_slice()).expect("payload");
    drop(reopened);
    bytes[at + record.len() / 2] ^= 0x55;
    fs::write(&shard, &bytes).expect("write shard");

    let set = ShardSet::open(&tmp.path().join("shards")).expect("open");
    let split = set.split("train").expect("split");
    let loader =
        Loader::new(split, recipe(), PlanOptions { shuffle: false, ..options(6, 0, 1) }, 1)
            .expect("loader");
    let error = loader
        .run_epoch(0, 0, |_: &Batch| -> expanse_dataset::Result<()> { Ok(()) })
        .expect_err("damaged record");
    let message = format!("{error:#}");
    let name = shard.file_name().unwrap().to_string_lossy().into_owned();
    assert!(message.contains(&name), "{message}");
}

#[test]
fn u8_batches_hold_recipe_pixels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 40, 2, Store::Keep);
    let split = set.split("train").expect("split");
    let pixels = Recipe { output: Output::None, ..recipe() };

    let floats = Loader::new(split, pixels.clone(), options(6, 0, 1), 1).expect("loader");
    let bytes = Loader::new(split, pixels, options(6, 0, 1), 1)
        .expect("loader")
        .with_layout(Layout::Nhwc)
        .with_u8_output()
        .expect("u8 output");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    floats
        .run_epoch(0, 0, |batch: &Batch| -> expanse_dataset::Result<()> {
            a.extend_from_slice(batch.pixels());
            Ok(())
        })
        .expect("f32 epoch");
    bytes
        .run_epoch(0, 0, |batch: &Batch| -> expanse_dataset::Result<()> {
            assert!(batch.pixels().is_empty());
            b.extend_from_slice(batch.bytes());
            Ok(())
        })
        .expect("u8 epoch");
    assert_eq!(b.len(), 6 * 3 * 32 * 32);
    let plane = 32 * 32;
    for (i, &value) in a.iter().enumerate() {
        let (sample, k, p) = (i / (3 * plane), i / plane % 3, i % plane);
        assert_eq!(value, f32::from(b[sample * 3 * plane + p * 3 + k]), "value {i}");
    }

    let normalised = Loader::new(split, recipe(), options(6, 0, 1), 1).expect("loader");
    let error = normalised.with_u8_output().err().expect("normalised output rejected");
    assert!(error.to_string().contains("none"), "{error}");
}

#[test]
fn huge_crop_is_an_error_not_an_abort() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = photo_set(tmp.path(), 40, 1, Store::Keep);
    let split = set.split("train").expect("split");
    let mut huge = recipe();
    huge.steps[1] = Step::RandomCrop(RandomCrop::new(1 << 20, 1 << 20, 0, PadMode::Zero));

    let error = Loader::new(split, huge, options(64, 0, 1), 2).err().expect("allocation fails");
    assert!(error.to_string().contains("cannot allocate a batch"), "{error}");
}
