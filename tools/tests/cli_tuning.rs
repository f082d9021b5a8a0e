//! `train overfit` and `train lr-find` on real Fashion-MNIST images.
//!
//! Needs Debian's `dataset-fashion-mnist` (installed by `scripts/test.sh`).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_exit, assert_one_line_error};

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Converts the real Fashion-MNIST training split into a shard set under `dir`.
fn fashion_mnist(dir: &Path) -> PathBuf {
    let out = dir.join("fashion-mnist");
    let run = common::shardify(&[
        FASHION_MNIST,
        out.to_str().unwrap(),
        "--split",
        "train",
        "--classes",
        "t-shirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot",
    ]);
    assert_exit(&run, 0);
    out
}

#[test]
fn overfit_reaches_zero_error() {
    let temp = tempfile::tempdir().unwrap();
    let data = fashion_mnist(temp.path());
    let run_dir = temp.path().join("overfit");
    let run = common::train(&[
        "overfit",
        "--data",
        data.to_str().unwrap(),
        "--model",
        "resnet8",
        "--samples",
        "64",
        "--lr",
        "0.05",
        "--threads",
        "2",
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    assert_exit(&run, 0);
    assert!(
        run.stdout.contains("verdict: reached zero training error on 64 examples"),
        "{}",
        run.describe()
    );
    // The last evaluation of the 64 examples has no error.
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(metrics.lines().rfind(|l| l.contains("\"subset\"")).unwrap()).unwrap();
    assert_eq!(last["top1"], 1.0, "{last}");
    assert_eq!(last["samples"], 64, "{last}");
}

#[test]
fn overfit_one_epoch_fails_verdict() {
    let temp = tempfile::tempdir().unwrap();
    let data = fashion_mnist(temp.path());
    let run = common::train(&[
        "overfit",
        "--data",
        data.to_str().unwrap(),
        "--model",
        "resnet8",
        "--samples",
        "64",
        "--max-epochs",
        "1",
        "--threads",
        "2",
    ]);
    assert_exit(&run, 1);
    assert!(
        run.stdout.contains("verdict: did not reach zero training error"),
        "{}",
        run.describe()
    );
}

#[test]
fn overfit_rejects_too_many_samples() {
    let temp = tempfile::tempdir().unwrap();
    let data = fashion_mnist(temp.path());
    let run = common::train(&["overfit", "--data", data.to_str().unwrap(), "--samples", "70000"]);
    let line = assert_one_line_error(&run, 2);
    assert!(line.contains("70000 samples from a split of 60000"), "{line}");
}

#[test]
fn lr_sweep_writes_plot_and_points() {
    let temp = tempfile::tempdir().unwrap();
    let data = fashion_mnist(temp.path());
    let out = temp.path().join("sweep.png");
    let run = common::train(&[
        "lr-find",
        "--sweep",
        "--data",
        data.to_str().unwrap(),
        "--model",
        "resnet8",
        "--batch-size",
        "32",
        "--steps",
        "60",
        "--min",
        "1e-4",
        "--max",
        "100",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);

    assert_exit(&run, 0);
    assert!(run.stdout.contains("recommended learning rate"), "{}", run.describe());
    let image = image::open(&out).unwrap();
    assert_eq!(image.width(), 1000);
    assert_eq!(image.height(), 600);

    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    let rates: Vec<f64> =
        csv.lines().skip(1).map(|line| line.split(',').next().unwrap().parse().unwrap()).collect();
    assert!(rates.len() >= 10, "{} points", rates.len());
    assert!(rates.windows(2).all(|pair| pair[0] < pair[1]), "rates do not rise: {rates:?}");
    // A rate of 100 diverges, so the sweep stops before its end.
    assert!(*rates.last().unwrap() < 100.0, "the sweep reached {}", rates.last().unwrap());
}

#[test]
fn lr_find_rejects_min_above_max() {
    let temp = tempfile::tempdir().unwrap();
    let data = fashion_mnist(temp.path());
    let run =
        common::train(&["lr-find", "--data", data.to_str().unwrap(), "--min", "1", "--max", "0.1"]);
    let line = assert_one_line_error(&run, 2);
    assert!(line.contains("got --min 1 and --max 0.1"), "{line}");
}

#[test]
fn lr_find_rejects_csv_out_and_big_batch() {
    let temp = tempfile::tempdir().unwrap();
    let data = common::tiny_shard_set(temp.path(), 64, 16);
    let data = data.to_str().unwrap();
    let csv = temp.path().join("sweep.csv");

    let csv = csv.to_str().unwrap();
    let run =
        common::train(&["lr-find", "--sweep", "--data", data, "--batch-size", "32", "--out", csv]);
    let line = assert_one_line_error(&run, 2);
    assert!(line.contains("names the CSV"), "{line}");

    let batch = common::train(&["lr-find", "--data", data, "--batch-size", "65"]);
    let line = assert_one_line_error(&batch, 2);
    assert!(line.contains("batch size 65 exceeds the 64 training records"), "{line}");
}

#[test]
fn overfit_rejects_zero_samples() {
    let temp = tempfile::tempdir().unwrap();
    let data = common::tiny_shard_set(temp.path(), 64, 16);
    let run = common::train(&["overfit", "--data", data.to_str().unwrap(), "--samples", "0"]);
    let line = assert_one_line_error(&run, 2);
    assert!(line.contains("--samples must be at least 1, got 0"), "{line}");
}
