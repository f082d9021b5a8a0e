//! Runs the real `train inspect` on a one-epoch ResNet-8 run of a tiny shard set (256 train
//! and 64 test images of 28x28, 10 classes, made with `shardify`): the pictures and numbers it
//! writes, its options, and its errors.

mod common;

use std::path::Path;

use common::{assert_exit, assert_mentions, assert_one_line_error, tiny_shard_set};
use serde_json::Value;

/// Pictures that `train inspect` writes for a network with convolutions and batch norms.
const PICTURES: [&str; 4] = ["filters.png", "activations.png", "weights.png", "gradients.png"];

/// Trains resnet8 for one epoch in `temp/run` and returns the run directory.
fn one_epoch_run(temp: &Path) -> std::path::PathBuf {
    let data = tiny_shard_set(temp, 256, 64);
    let run_dir = temp.join("run");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--model",
        "resnet8",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--threads",
        "1",
    ];
    let out = common::train(&args);
    assert_exit(&out, 0);
    run_dir
}

/// Asserts that `path` is a PNG of at least 100 x 100 pixels with more than one colour.
fn assert_picture(path: &Path) {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("failed to decode {}: {e}", path.display()))
        .to_rgb8();
    assert!(image.width() >= 100, "{} is {} pixels wide", path.display(), image.width());
    assert!(image.height() >= 100, "{} is {} pixels high", path.display(), image.height());
    let first = *image.get_pixel(0, 0);
    assert!(image.pixels().any(|pixel| *pixel != first), "{} is blank", path.display());
}

/// Reads and parses `dir/inspect.json`.
fn read_json(dir: &Path) -> Value {
    let path = dir.join("inspect.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("inspect.json is not JSON: {e}"))
}

#[test]
fn inspect_writes_pictures_and_numbers() {
    let temp = tempfile::tempdir().unwrap();
    let run_dir = one_epoch_run(temp.path());

    let out = common::train(&["inspect", run_dir.to_str().unwrap(), "--samples", "64"]);

    assert_exit(&out, 0);
    let folder = run_dir.join("inspect");
    for name in PICTURES {
        assert_picture(&folder.join(name));
    }
    let json = read_json(&folder);
    assert_eq!(json["model"], "resnet8");
    assert_eq!(json["epochs_done"], 1);
    assert_eq!(json["samples"], 64);
    assert_eq!(json["split"], "train");
    let activations = json["activations"].as_array().expect("no activations array");
    // ResNet-8 has 7 batch norms: one in the stem and two in each of three one-block stages.
    assert_eq!(activations.len(), 7, "{activations:?}");
    for row in activations {
        let dead =
            row["dead_fraction"].as_f64().unwrap_or_else(|| panic!("no dead fraction: {row}"));
        assert!((0.0..=1.0).contains(&dead), "{row}");
        assert_eq!(row["kind"], "BatchNorm2d");
        let layer = row["layer"].as_str().unwrap();
        assert!(
            out.stdout.lines().any(|line| line.starts_with(layer)),
            "{layer} not in the table\n{}",
            out.stdout
        );
    }
    assert_eq!(json["weights"].as_array().unwrap().len(), 8);
    assert_eq!(json["gradients"].as_array().unwrap().len(), 8);
    assert_eq!(json["filters"]["shape"], serde_json::json!([16, 1, 3, 3]));

    // A checkpoint file selects its run directory, and --out, --split and --layers apply.
    let checkpoint = run_dir.join("checkpoint.ot");
    let elsewhere = temp.path().join("pictures");
    let args = [
        "inspect",
        checkpoint.to_str().unwrap(),
        "--out",
        elsewhere.to_str().unwrap(),
        "--split",
        "test",
        "--samples",
        "1000",
        "--layers",
        "layer1.0.bn1,layer3.0.conv2",
    ];
    let out = common::train(&args);

    assert_exit(&out, 0);
    let json = read_json(&elsewhere);
    assert_eq!(json["split"], "test");
    assert_eq!(json["samples"], 64);
    let layers: Vec<&str> = json["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["layer"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["layer1.0.bn1", "layer3.0.conv2"]);

    let out = common::train(&["inspect", run_dir.to_str().unwrap(), "--layers", "layer7.bn"]);
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "unknown layer layer7.bn");
    assert_mentions(&line, &run_dir.display().to_string());
}

#[test]
fn inspect_missing_run_one_line_error() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("no-such-run");

    let out = common::train(&["inspect", missing.to_str().unwrap()]);

    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, &missing.display().to_string());
    assert_mentions(&line, "not found");
}

#[test]
fn inspect_folder_without_checkpoint() {
    let temp = tempfile::tempdir().unwrap();

    let out = common::train(&["inspect", temp.path().to_str().unwrap()]);

    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &temp.path().display().to_string());
}

#[test]
fn inspect_failure_creates_no_folder() {
    let temp = tempfile::tempdir().unwrap();
    let run_dir = one_epoch_run(temp.path());
    let out = temp.path().join("pictures");

    let run = common::train(&[
        "inspect",
        run_dir.to_str().unwrap(),
        "--split",
        "nosuch",
        "--out",
        out.to_str().unwrap(),
    ]);

    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "nosuch");
    assert!(!out.exists(), "a failed inspection created {}", out.display());
}
