//! Runs the real `train` binary on a tiny JPEG photo set made with `shardify`: the loader
//! decodes and augments with recipes, the run records them, and Ctrl-C-style stops resume.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_exit, assert_one_line_error};
use serde_json::Value;

/// Writes a `width` x `height` JPEG whose colours depend on `class` (so the classes differ)
/// and whose texture depends on `seed`.
fn write_photo(path: &Path, width: u16, height: u16, class: u32, seed: u32) {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            let texture = (x * 7 + y * 13 + seed * 31) % 40;
            pixels.push((class * 100 + texture) as u8);
            pixels.push((200 - class * 80 + texture) as u8);
            pixels.push(((x + y) % 64 + class * 60) as u8);
        }
    }
    let encoder = jpeg_encoder::Encoder::new_file(path, 90).expect("create jpeg");
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode jpeg");
}

/// Builds a photo set with a `train` split (class folders) and a `val` split (a flat folder and a
/// labels file), 2 classes, sizes 40..71 pixels a side. `train` evaluates on `val` by default
/// when there is no `test` split.
fn photo_set(dir: &Path) -> PathBuf {
    let (train, val) = (dir.join("train"), dir.join("val"));
    std::fs::create_dir_all(&val).expect("val folder");
    let mut labels = String::new();
    for (class, name) in ["blue", "red"].iter().enumerate() {
        let class_dir = train.join(name);
        std::fs::create_dir_all(&class_dir).expect("class folder");
        for i in 0..12u32 {
            let side = |k: u32| 40 + ((i * 7 + k + class as u32 * 5) % 32) as u16;
            write_photo(&class_dir.join(format!("{i}.jpg")), side(1), side(2), class as u32, i);
        }
        for i in 0..4u32 {
            let file = format!("{name}-{i}.jpg");
            write_photo(&val.join(&file), 48, 44 + i as u16, class as u32, 100 + i);
            labels.push_str(&format!("{file} {name}\n"));
        }
    }
    std::fs::write(dir.join("val.txt"), labels).expect("labels file");
    let out = dir.join("shards");
    let shardify = |args: &[&str]| {
        let run = common::shardify(args);
        assert_exit(&run, 0);
    };
    shardify(&[train.to_str().unwrap(), out.to_str().unwrap()]);
    let labels = dir.join("val.txt");
    shardify(&[val.to_str().unwrap(), out.to_str().unwrap(), "--labels", labels.to_str().unwrap()]);
    out
}

/// Writes a training recipe at 32 x 32 and an evaluation recipe with ten views.
fn recipes(dir: &Path) -> (PathBuf, PathBuf) {
    let train = dir.join("train-recipe.json");
    std::fs::write(
        &train,
        r#"{"name": "small",
            "steps": [{"op": "scale_jitter", "min_shorter_side": 36, "max_shorter_side": 44},
                      {"op": "random_crop", "height": 32, "width": 32},
                      {"op": "horizontal_flip", "probability": 0.5}],
            "output": {"kind": "normalize", "mean": [120, 120, 120], "std": [60, 60, 60]}}"#,
    )
    .expect("train recipe");
    let eval = dir.join("eval-recipe.json");
    std::fs::write(
        &eval,
        r#"{"steps": [{"op": "resize", "size": {"shorter_side": 36}}],
            "views": {"kind": "ten_crop", "size": 32},
            "output": {"kind": "normalize", "mean": [120, 120, 120], "std": [60, 60, 60]}}"#,
    )
    .expect("eval recipe");
    (train, eval)
}

fn run_args(data: &Path, run_dir: &Path, train: &Path, eval: &Path) -> Vec<String> {
    [
        "--data",
        data.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--recipe",
        train.to_str().unwrap(),
        "--eval-recipe",
        eval.to_str().unwrap(),
        "--model",
        "resnet8",
        "--epochs",
        "2",
        "--batch-size",
        "6",
        "--eval-batch-size",
        "3",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("metrics");
    text.lines().map(|line| serde_json::from_str(line).expect("json line")).collect()
}

#[test]
fn trains_on_jpeg_shards_with_recipes() {
    let temp = tempfile::tempdir().expect("tempdir");
    let data = photo_set(temp.path());
    let (train, eval) = recipes(temp.path());
    let run_dir = temp.path().join("run");

    let run = common::train(&run_args(&data, &run_dir, &train, &eval));
    assert_exit(&run, 0);

    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("config.json")).expect("config"),
    )
    .expect("config json");
    assert_eq!(config["train_augment"]["name"], "small", "{config:#}");
    assert_eq!(config["train_augment"]["steps"][0]["op"], "scale_jitter", "{config:#}");
    assert_eq!(config["eval_augment"]["views"]["kind"], "ten_crop", "{config:#}");

    let metrics = read_json_lines(&run_dir.join("metrics.jsonl"));
    let splits: Vec<(u64, &str, u64)> = metrics
        .iter()
        .map(|m| {
            (
                m["epoch"].as_u64().unwrap(),
                m["split"].as_str().unwrap(),
                m["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(splits, [(1, "train", 24), (1, "val", 8), (2, "train", 24), (2, "val", 8)]);
    for m in &metrics {
        assert!(
            m["data_wait_ms"]["max"].as_f64().unwrap()
                >= m["data_wait_ms"]["p50"].as_f64().unwrap(),
            "{m}"
        );
        assert!(m["peak_rss_mib"].as_f64().unwrap() > 1.0, "{m}");
    }
    assert!(run.stdout.contains("peak resident memory"), "{}", run.stdout);

    // The paper's evaluation protocols on the trained run.
    let run_text = run_dir.to_str().unwrap();
    for (protocol, extra, label) in [
        ("center", ["--crop", "32"], "protocol center-32"),
        ("10crop", ["--crop", "32"], "protocol 10crop-32"),
        ("multiscale", ["--scales", "32,40"], "protocol multiscale-32,40+mirror"),
    ] {
        let mut args = vec!["--eval-only", run_text, "--protocol", protocol];
        args.extend(extra);
        let evaluated = common::train(&args);
        assert_exit(&evaluated, 0);
        assert!(evaluated.stdout.contains(label), "{protocol}: {}", evaluated.stdout);
        assert!(evaluated.stdout.contains("(8 images"), "{protocol}: {}", evaluated.stdout);
    }
}

#[test]
fn imagenet_networks_train_on_jpeg_shards() {
    let temp = tempfile::tempdir().expect("tempdir");
    let data = photo_set(temp.path());
    let (train, eval) = recipes(temp.path());

    for model in ["resnet18", "googlenet"] {
        let run_dir = temp.path().join(model);
        let mut args = run_args(&data, &run_dir, &train, &eval);
        args.extend(["--model", model, "--epochs", "1", "--log-every", "2"].map(String::from));

        let run = common::train(&args);

        assert_exit(&run, 0);
        let metrics = read_json_lines(&run_dir.join("metrics.jsonl"));
        assert_eq!(metrics.len(), 2, "{model}: {metrics:?}");
        for m in &metrics {
            let loss = m["loss"].as_f64().unwrap();
            assert!(loss.is_finite(), "{model}: {m}");
            assert!(loss > 0.0, "{model}: {m}");
        }
        // 24 images in batches of 6: 4 steps, logged in windows of 2.
        let steps = read_json_lines(&run_dir.join("steps.jsonl"));
        let numbers: Vec<u64> = steps.iter().map(|s| s["step"].as_u64().unwrap()).collect();
        assert_eq!(numbers, [2, 4], "{model}");
        assert!(run.stdout.contains(&format!("model {model} on")), "{}", run.stdout);
    }
}

#[test]
fn padding_conflicts_with_recipe() {
    let temp = tempfile::tempdir().expect("tempdir");
    let data = photo_set(temp.path());
    let (train, eval) = recipes(temp.path());
    let mut args = run_args(&data, &temp.path().join("run"), &train, &eval);
    args.extend(["--padding".to_string(), "2".to_string()]);

    let run = common::train(&args);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("--padding"), "{}", run.stderr);
}

#[test]
fn varying_output_shape_rejected() {
    let temp = tempfile::tempdir().expect("tempdir");
    let data = photo_set(temp.path());
    let (_, eval) = recipes(temp.path());
    let varying = temp.path().join("varying.json");
    std::fs::write(&varying, r#"{"steps": [{"op": "horizontal_flip", "probability": 0.5}]}"#)
        .expect("recipe");

    let run = common::train(&run_args(&data, &temp.path().join("run"), &varying, &eval));
    let line = assert_one_line_error(&run, 1);
    assert!(line.contains("fixed-size crop"), "{line}");
    assert!(!temp.path().join("run").exists(), "a failed start leaves no run folder");
}
