use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::*;
use crate::image::{ConvertOptions, Store};
use crate::shard::{verify_shard_set, Encoding, ShardSet};
use crate::source::{list_class_folders, ImageList};

/// Writes a `width` x `height` RGB JPEG whose pixels depend on `seed`.
fn write_jpeg(path: &Path, width: u16, height: u16, seed: u32) {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            pixels.push((x * 7 + seed * 31) as u8);
            pixels.push((y * 5 + seed * 17) as u8);
            pixels.push(((x + y) * 3 + seed) as u8);
        }
    }
    let encoder = jpeg_encoder::Encoder::new_file(path, 90).expect("create jpeg");
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode jpeg");
}

/// Builds `root/<class>/img-<i>.jpg` with sizes that differ per image, plus one file that is
/// not an image in the first class.
fn photo_tree(root: &Path, per_class: &[(&str, u32)]) {
    let mut seed = 0;
    for (class, count) in per_class {
        let dir = root.join(class);
        fs::create_dir_all(&dir).expect("class folder");
        for i in 0..*count {
            seed += 1;
            let width = 24 + (seed * 7 % 40) as u16;
            let height = 20 + (seed * 11 % 30) as u16;
            write_jpeg(&dir.join(format!("img-{i:03}.jpg")), width, height, seed);
        }
    }
    let first = per_class[0].0;
    fs::write(root.join(first).join("notes.jpg"), b"not an image at all").expect("bad file");
}

fn options(store: Store) -> PhotoOptions {
    PhotoOptions {
        image: ConvertOptions {
            store,
            max_side: Some(40),
            quality: 85,
            ..ConvertOptions::default()
        },
        shard_size_bytes: 8 * 1024,
        strict: false,
        overwrite: false,
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
}

/// Reads every file of `dir` into a map from name to bytes.
fn folder_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("read output")
        .map(|entry| {
            let entry = entry.expect("entry");
            (entry.file_name().into_string().expect("utf-8"), fs::read(entry.path()).expect("read"))
        })
        .collect()
}

/// Runs a conversion that stops after `images` images, as a killed process would, and checks
/// that it did stop.
fn interrupted_conversion(list: &ImageList, out: &Path, opts: &PhotoOptions, images: u64) {
    let stopped = catch_unwind(AssertUnwindSafe(|| {
        convert_images(list, out, "train", opts, &pool(2), &mut StopAfter(images))
    }));
    assert!(stopped.is_err(), "the observer stops the run");
}

/// Panics after a number of images, as a killed process would stop.
struct StopAfter(u64);

impl ConvertObserver for StopAfter {
    fn advanced(&mut self, _bytes_in: u64) {
        self.0 -= 1;
        if self.0 == 0 {
            panic!("simulated interruption");
        }
    }
}

#[test]
fn class_folders_become_verified_split() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("cat", 5), ("dog", 4)]);
    let list = list_class_folders(&src).expect("list");
    let out = tmp.path().join("out");

    let summary =
        convert_images(&list, &out, "train", &options(Store::Keep), &pool(2), &mut Silent)
            .expect("convert");
    assert_eq!(summary.counts.read, 10);
    assert_eq!(summary.counts.written, 9);
    assert_eq!(summary.counts.skipped, 1);
    assert!(summary.shards > 1, "8 KiB shards should split 9 photos, got {}", summary.shards);

    let skipped = fs::read_to_string(out.join("train.skipped.tsv")).expect("skipped list");
    let lines: Vec<&str> = skipped.lines().collect();
    assert_eq!(lines[0], "path\treason");
    assert!(lines[1].starts_with("cat/notes.jpg\t"), "{skipped}");
    assert_eq!(lines.len(), 2);

    verify_shard_set(&out).expect("verify");
    let set = ShardSet::open(&out).expect("open");
    let split = set.split("train").expect("split");
    assert_eq!(split.len(), 9);
    assert_eq!(set.manifest().classes, ["cat", "dog"]);
    assert_eq!(set.manifest().source_kind, IMAGES_SOURCE_KIND);
    let labels: Vec<u32> = (0..9).map(|i| split.label(i)).collect();
    assert_eq!(labels, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(split.source_path(0).expect("path"), "cat/img-000.jpg");
    assert_eq!(split.source_path(8).expect("path"), "dog/img-003.jpg");
    for i in 0..9 {
        let meta = split.meta(i);
        assert_eq!(meta.encoding, Encoding::Jpeg);
        assert!(meta.width.max(meta.height) <= 40, "record {i} is {}x{}", meta.width, meta.height);
        let decoded = ::image::load_from_memory(split.record(i)).expect("payload decodes");
        assert_eq!((decoded.width(), decoded.height()), (meta.width, meta.height));
    }
    let stats = split.stats();
    assert_eq!(stats.skipped, Some(1));
    let eigenvalues = stats.rgb_eigenvalues.expect("eigenvalues");
    assert!(eigenvalues[0] >= eigenvalues[1], "{eigenvalues:?}");
    assert!(eigenvalues[1] >= eigenvalues[2], "{eigenvalues:?}");
    assert!(eigenvalues[0] > 0.0);
}

#[test]
fn raw_store_keeps_decoded_pixels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 3)]);
    let list = list_class_folders(&src).expect("list");
    let out = tmp.path().join("out");
    convert_images(&list, &out, "train", &options(Store::Raw), &pool(1), &mut Silent)
        .expect("convert");

    let set = ShardSet::open(&out).expect("open");
    let split = set.split("train").expect("split");
    for i in 0..split.len() {
        let meta = split.meta(i);
        assert_eq!(meta.encoding, Encoding::Raw);
        assert_eq!(split.record(i).len() as u64, u64::from(meta.width * meta.height) * 3);
    }
}

#[test]
fn thread_count_does_not_change_a_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 6), ("b", 7), ("c", 5)]);
    let list = list_class_folders(&src).expect("list");
    for store in [Store::Keep, Store::Reencode, Store::Raw] {
        let single = tmp.path().join(format!("single-{store:?}"));
        let triple = tmp.path().join(format!("triple-{store:?}"));
        convert_images(&list, &single, "train", &options(store), &pool(1), &mut Silent)
            .expect("1 thread");
        convert_images(&list, &triple, "train", &options(store), &pool(3), &mut Silent)
            .expect("3 threads");
        assert_eq!(folder_bytes(&single), folder_bytes(&triple), "{store:?}");
    }
}

#[test]
fn interrupted_run_resumes_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 12), ("b", 12)]);
    let list = list_class_folders(&src).expect("list");
    let opts = options(Store::Reencode);

    let whole = tmp.path().join("whole");
    let reference =
        convert_images(&list, &whole, "train", &opts, &pool(2), &mut Silent).expect("whole run");

    let out = tmp.path().join("out");
    interrupted_conversion(&list, &out, &opts, 17);
    assert!(out.join("train.journal.json").exists(), "a shard was journalled");
    assert!(!out.join("manifest.json").exists());
    // A killed writer leaves its temporary file behind.
    fs::write(out.join("train-00009.shard.tmp-4242"), b"half a shard").expect("leftover");

    let resumed =
        convert_images(&list, &out, "train", &opts, &pool(1), &mut Silent).expect("resume");
    assert!(resumed.resumed > 0, "nothing was resumed");
    assert!(resumed.resumed < 17, "resumed {} of 17 images read", resumed.resumed);
    assert_eq!(resumed.counts, reference.counts);
    assert_eq!(folder_bytes(&out), folder_bytes(&whole));
}

#[test]
fn journal_of_other_options_starts_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 10), ("b", 10)]);
    let list = list_class_folders(&src).expect("list");
    let out = tmp.path().join("out");
    interrupted_conversion(&list, &out, &options(Store::Reencode), 15);

    let mut other = options(Store::Reencode);
    other.image.quality = 60;
    let again = convert_images(&list, &out, "train", &other, &pool(2), &mut Silent).expect("rerun");
    assert_eq!(again.resumed, 0);
    let fresh = tmp.path().join("fresh");
    convert_images(&list, &fresh, "train", &other, &pool(2), &mut Silent).expect("fresh");
    assert_eq!(folder_bytes(&out), folder_bytes(&fresh));
}

#[test]
fn strict_conversion_names_the_bad_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 3)]);
    let list = list_class_folders(&src).expect("list");
    let mut opts = options(Store::Keep);
    opts.strict = true;
    let error =
        convert_images(&list, &tmp.path().join("out"), "train", &opts, &pool(2), &mut Silent)
            .expect_err("strict stops");
    let message = error.to_string();
    assert!(message.contains("notes.jpg"), "{message}");
    assert!(!tmp.path().join("out/manifest.json").exists());
}

#[test]
fn nothing_convertible_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos/a");
    fs::create_dir_all(&src).expect("folder");
    fs::write(src.join("x.jpg"), b"").expect("empty");
    fs::write(src.join("y.png"), b"text").expect("text");
    let list = list_class_folders(&tmp.path().join("photos")).expect("list");
    let out = tmp.path().join("out");
    let error = convert_images(&list, &out, "train", &options(Store::Keep), &pool(1), &mut Silent)
        .expect_err("nothing to write");
    assert!(error.to_string().contains("none of the 2 images"), "{error}");
    assert!(out.join("train.skipped.tsv").exists());
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn second_split_joins_same_classes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train_src = tmp.path().join("train");
    let val_src = tmp.path().join("val");
    let other_src = tmp.path().join("other");
    photo_tree(&train_src, &[("a", 4), ("b", 4)]);
    photo_tree(&val_src, &[("a", 2), ("b", 2)]);
    photo_tree(&other_src, &[("a", 2), ("z", 2)]);
    let out = tmp.path().join("out");
    let mut opts = options(Store::Keep);
    let train = list_class_folders(&train_src).expect("train list");
    let val = list_class_folders(&val_src).expect("val list");
    convert_images(&train, &out, "train", &opts, &pool(2), &mut Silent).expect("train");
    convert_images(&val, &out, "val", &opts, &pool(2), &mut Silent).expect("val");

    let set = ShardSet::open(&out).expect("open");
    let names: Vec<&str> = set.manifest().splits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["train", "val"]);
    assert_eq!(set.split("val").expect("val").len(), 4);
    drop(set);

    let other = list_class_folders(&other_src).expect("other list");
    let error = convert_images(&other, &out, "test", &opts, &pool(2), &mut Silent)
        .expect_err("classes differ");
    assert!(error.to_string().contains("class names and order must match"), "{error}");

    let error =
        convert_images(&train, &out, "val", &opts, &pool(2), &mut Silent).expect_err("val exists");
    assert!(error.to_string().contains("--overwrite"), "{error}");

    let mut raw = options(Store::Raw);
    raw.overwrite = true;
    let error =
        convert_images(&val, &out, "val", &raw, &pool(2), &mut Silent).expect_err("other schema");
    assert!(error.to_string().contains("would store"), "{error}");

    opts.overwrite = true;
    convert_images(&train, &out, "val", &opts, &pool(2), &mut Silent).expect("replace val");
    let set = ShardSet::open(&out).expect("open again");
    assert_eq!(set.split("val").expect("val").len(), 8);
    assert_eq!(set.split("train").expect("train").len(), 8);
    verify_shard_set(&out).expect("verify");
}

#[test]
fn corrupt_journalled_shard_starts_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 12), ("b", 12)]);
    let list = list_class_folders(&src).expect("list");
    let opts = options(Store::Reencode);
    let whole = tmp.path().join("whole");
    convert_images(&list, &whole, "train", &opts, &pool(2), &mut Silent).expect("whole run");

    let out = tmp.path().join("out");
    interrupted_conversion(&list, &out, &opts, 17);
    let first = out.join("train-00000.shard");
    let mut bytes = fs::read(&first).expect("first shard");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&first, bytes).expect("damage a record");

    let again = convert_images(&list, &out, "train", &opts, &pool(2), &mut Silent).expect("rerun");
    assert_eq!(again.resumed, 0);
    assert_eq!(folder_bytes(&out), folder_bytes(&whole));
}

#[test]
fn invalid_names_are_listed_as_skipped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("photos");
    photo_tree(&src, &[("a", 2)]);
    fs::write(src.join("a").join(OsStr::from_bytes(b"bad\xff.jpg")), b"x").expect("bad name");
    let list = list_class_folders(&src).expect("list");
    let out = tmp.path().join("out");

    let summary =
        convert_images(&list, &out, "train", &options(Store::Keep), &pool(1), &mut Silent)
            .expect("convert");
    assert_eq!(summary.counts.skipped, 2);
    assert_eq!(summary.counts.read, 4);
    let skipped = fs::read_to_string(out.join("train.skipped.tsv")).expect("skipped list");
    assert!(
        skipped.lines().nth(1).is_some_and(|l| l.starts_with("a/bad\u{fffd}.jpg\t")),
        "{skipped}"
    );

    let mut strict = options(Store::Keep);
    strict.strict = true;
    let error =
        convert_images(&list, &tmp.path().join("strict"), "train", &strict, &pool(1), &mut Silent)
            .expect_err("strict stops at the name");
    assert!(error.to_string().contains("not valid UTF-8"), "{error}");
}
