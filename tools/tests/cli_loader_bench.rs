//! `loader-bench` on a small JPEG photo shard set made by the real `shardify`: the printed and
//! JSON figures, ranks, layouts and orders, and the errors for bad options and missing data.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Photos per class and classes of the test set.
const PER_CLASS: usize = 4;
const CLASSES: [&str; 3] = ["n01", "n02", "n03"];
const RECORDS: usize = PER_CLASS * CLASSES.len();

/// A random-resized crop to 24 x 24, flip and normalisation: the RRC pipeline at a size that
/// keeps the test fast.
const SMALL_RRC: &str = r#"{
  "name": "small-rrc",
  "steps": [
    {"op": "random_resized_crop", "height": 24, "width": 24},
    {"op": "horizontal_flip", "probability": 0.5}
  ],
  "output": {"kind": "normalize", "mean": [123.675, 116.28, 103.53],
             "std": [58.395, 57.12, 57.375]}
}"#;

/// Writes a `width` x `height` RGB JPEG whose pixels depend on `seed`.
fn write_jpeg(path: &Path, width: u16, height: u16, seed: u32) {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            pixels.push((x * 3 + seed * 29) as u8);
            pixels.push((y * 2 + seed * 13) as u8);
            pixels.push(((x ^ y) + seed) as u8);
        }
    }
    let encoder = jpeg_encoder::Encoder::new_file(path, 90).expect("create jpeg");
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode jpeg");
}

/// Writes `dir/photos/<class>/<n>.jpg` photos of varied sizes, converts them with
/// `shardify --store keep` (JPEG records) into `dir/shards`, writes the small RRC recipe to
/// `dir/small-rrc.json`, and returns (shards, recipe).
fn photo_shards(dir: &Path) -> (PathBuf, PathBuf) {
    let photos = dir.join("photos");
    let mut seed = 0;
    for class in CLASSES {
        fs::create_dir_all(photos.join(class)).expect("class folder");
        for i in 0..PER_CLASS {
            seed += 1;
            let width = 48 + (seed % 5) as u16 * 7;
            let height = 40 + (seed % 3) as u16 * 5;
            write_jpeg(&photos.join(class).join(format!("{i:04}.jpg")), width, height, seed);
        }
    }
    let shards = dir.join("shards");
    let run =
        shardify(&[photos.as_os_str(), shards.as_os_str(), "--store".as_ref(), "keep".as_ref()]);
    assert_exit(&run, 0);

    let recipe = write_file(dir, "small-rrc.json", SMALL_RRC.as_bytes());
    (shards, recipe)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn number(value: &Value, field: &str) -> f64 {
    value[field].as_f64().unwrap_or_else(|| panic!("{field} is not a number in {value}"))
}

#[test]
fn figures_printed_and_written() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, recipe) = photo_shards(temp.path());
    let json = temp.path().join("figures.json");

    let run = loader_bench(&[
        shards.as_os_str(),
        "--recipe".as_ref(),
        recipe.as_os_str(),
        "--threads".as_ref(),
        "2".as_ref(),
        "--batch-size".as_ref(),
        "5".as_ref(),
        "--epochs".as_ref(),
        "3".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);

    assert_exit(&run, 0);
    assert_no_panic(&run);
    for text in ["img/s", "RSS", "peak RSS (VmHWM)", "warm-up", "class mix", "small-rrc"] {
        assert_mentions(&run.stdout, text);
    }
    let report = read_json(&json);
    assert_eq!(report["records"], RECORDS);
    assert_eq!(report["sample_shape"], serde_json::json!([3, 24, 24]));
    assert_eq!(report["threads"], 2);
    let epochs = report["epochs"].as_array().expect("epochs array");
    assert_eq!(epochs.len(), 3);
    let images: u64 = epochs.iter().map(|e| e["images"].as_u64().expect("images")).sum();
    assert_eq!(images, 3 * RECORDS as u64, "images over 3 epochs");
    for epoch in epochs {
        assert_eq!(epoch["batches"], RECORDS.div_ceil(5), "{epoch}");
        assert!(number(epoch, "images_per_second") > 0.0, "{epoch}");
        assert!(number(epoch, "rss_mib") > 0.0, "{epoch}");
        let wait = &epoch["wait_ms"];
        assert!(number(wait, "p50") <= number(wait, "p99"), "{epoch}");
        assert!(number(wait, "p99") <= number(wait, "max"), "{epoch}");
    }
    let steady = &report["steady"];
    assert_eq!(steady["epochs"], 2);
    assert_eq!(steady["images"], 2 * RECORDS);
    assert!(number(&report, "peak_rss_mib") >= number(&epochs[2], "rss_mib"));

    let mix = &report["class_mix"];
    assert_eq!(mix["batches"], RECORDS.div_ceil(5));
    let distinct = number(mix, "mean_distinct");
    assert!((1.0..=3.0).contains(&distinct), "mean distinct classes {distinct}");
    let share = number(mix, "mean_top_share");
    assert!((1.0 / 3.0..=1.0).contains(&share), "mean top class share {share}");
}

#[test]
fn named_recipe_on_photos() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, _) = photo_shards(temp.path());
    let json = temp.path().join("figures.json");

    let run = loader_bench(&[
        shards.as_os_str(),
        "--recipe".as_ref(),
        "resnet-imagenet".as_ref(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);

    assert_exit(&run, 0);
    assert_mentions(&run.stdout, "steady: none");
    let report = read_json(&json);
    assert_eq!(report["sample_shape"], serde_json::json!([3, 224, 224]));
    assert_eq!(report["epochs"][0]["images"], RECORDS);
    assert_eq!(report["steady"], Value::Null);
}

#[test]
fn rank_loads_its_share() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, recipe) = photo_shards(temp.path());
    let json = temp.path().join("figures.json");

    let run = loader_bench(&[
        shards.as_os_str(),
        "--recipe".as_ref(),
        recipe.as_os_str(),
        "--rank".as_ref(),
        "1".as_ref(),
        "--world-size".as_ref(),
        "2".as_ref(),
        "--epochs".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);

    assert_exit(&run, 0);
    let report = read_json(&json);
    assert_eq!(report["rank"], 1);
    assert_eq!(report["world_size"], 2);
    for epoch in report["epochs"].as_array().expect("epochs array") {
        assert_eq!(epoch["images"], RECORDS / 2, "{epoch}");
    }
}

#[test]
fn layout_and_order_options() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, recipe) = photo_shards(temp.path());
    let json = temp.path().join("figures.json");

    let run = loader_bench(&[
        shards.as_os_str(),
        "--recipe".as_ref(),
        recipe.as_os_str(),
        "--layout".as_ref(),
        "nhwc".as_ref(),
        "--order".as_ref(),
        "blocks:3:2".as_ref(),
        "--epochs".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);

    assert_exit(&run, 0);
    let report = read_json(&json);
    assert_eq!(report["layout"], "nhwc");
    assert_eq!(report["order"], "blocks:3:2");
    for epoch in report["epochs"].as_array().expect("epochs array") {
        assert_eq!(epoch["images"], RECORDS, "{epoch}");
    }
}

#[test]
fn unknown_recipe_is_usage_error() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, _) = photo_shards(temp.path());

    let run = loader_bench(&[shards.as_os_str(), "--recipe".as_ref(), "resnet-50".as_ref()]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "\"resnet-50\"");
    assert_mentions(&line, "resnet-imagenet");
}

#[test]
fn missing_folder_is_data_error() {
    let temp = tempfile::tempdir().unwrap();
    let absent = temp.path().join("absent");

    let run = loader_bench(&[absent.as_os_str()]);

    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, &absent.display().to_string());
    assert_mentions(&line, "No such file or directory");
}

#[test]
fn rank_outside_world_size() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, _) = photo_shards(temp.path());

    let run = loader_bench(&[
        shards.as_os_str(),
        "--rank".as_ref(),
        "2".as_ref(),
        "--world-size".as_ref(),
        "2".as_ref(),
    ]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--rank 2");
    assert_mentions(&line, "0..2 (--world-size)");
}

#[test]
fn unknown_split_is_usage_error() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, _) = photo_shards(temp.path());

    let run = loader_bench(&[shards.as_os_str(), "--split".as_ref(), "val".as_ref()]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "\"val\"");
    assert_mentions(&line, "train");
}

#[test]
fn bad_options_are_usage_errors() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().to_string_lossy().into_owned();
    let cases: [(&str, Vec<&str>, &str); 4] = [
        ("no DATA", vec![], "<DATA>"),
        ("bad order", vec![&data, "--order", "blocks:0:4"], "blocks:BLOCK:WINDOW"),
        ("zero threads", vec![&data, "--threads", "0"], "--threads"),
        ("bad layout", vec![&data, "--layout", "chw"], "nhwc"),
    ];
    for (case, args, expected) in cases {
        let run = loader_bench(&args);

        assert_exit(&run, 2);
        assert_no_panic(&run);
        assert!(run.stderr.starts_with("error:"), "{case}\n{}", run.describe());
        assert!(run.stderr.contains(expected), "{case}: lacks {expected:?}\n{}", run.describe());
    }
}

#[test]
fn json_folder_missing_is_usage_error() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, recipe) = photo_shards(temp.path());
    let json = temp.path().join("no-folder").join("figures.json");

    let run = loader_bench(&[
        shards.as_os_str(),
        "--recipe".as_ref(),
        recipe.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "no-folder");
}

#[test]
fn corrupt_record_is_data_error() {
    let temp = tempfile::tempdir().unwrap();
    let (shards, recipe) = photo_shards(temp.path());
    let shard = shards.join("train-00000.shard");
    let mut bytes = fs::read(&shard).unwrap();
    // The first JPEG start-of-image marker is record 0's first bytes.
    let start = bytes.windows(3).position(|w| w == [0xff, 0xd8, 0xff]).expect("a JPEG record");
    bytes[start..start + 3].fill(0);
    fs::write(&shard, &bytes).unwrap();

    let run = loader_bench(&[shards.as_os_str(), "--recipe".as_ref(), recipe.as_os_str()]);

    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "train-00000.shard");
    assert_mentions(&line, "record 0");
}
