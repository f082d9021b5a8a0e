//! Runs the real `train` binary on a tiny shard set (256 train and 64 test images of 28x28,
//! 10 classes, made with `shardify`): the files of a run, resuming, and rejected settings.
//!
//! Runs that train use resnet8, batch size 64 and one thread, to keep them short.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_exit, assert_mentions, assert_no_panic, assert_one_line_error, tiny_shard_set,
};
use serde_json::Value;

const TRAIN_RECORDS: u64 = 256;
const TEST_RECORDS: u64 = 64;

/// The settings every run shares: the smallest model, one epoch, one thread.
const FAST: [&str; 8] =
    ["--model", "resnet8", "--epochs", "1", "--batch-size", "64", "--threads", "1"];

/// Builds the arguments of a new run on `data` in `run_dir`: `FAST`, then `extra`.
///
/// `extra` must not repeat a flag of `FAST`, because clap rejects a repeated flag.
fn new_run_args(data: &Path, run_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--data".to_owned(),
        data.display().to_string(),
        "--run-dir".to_owned(),
        run_dir.display().to_string(),
    ];
    args.extend(FAST.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs one epoch of a new run in `temp/run` and asserts it succeeded.
fn one_epoch_run(temp: &Path) -> (PathBuf, PathBuf) {
    let data = tiny_shard_set(temp, TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let run_dir = temp.join("run");

    let run = common::train(&new_run_args(&data, &run_dir, &[]));

    assert_exit(&run, 0);
    (data, run_dir)
}

/// Reads `metrics.jsonl` of a run, one JSON object per line.
fn read_metrics(run_dir: &Path) -> Vec<Value> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("invalid metrics line {line}: {e}"))
        })
        .collect()
}

/// Returns the (epoch, split) of each metrics line, in file order.
fn epochs_and_splits(metrics: &[Value]) -> Vec<(u64, String)> {
    metrics
        .iter()
        .map(|line| {
            let epoch = line["epoch"].as_u64().unwrap_or_else(|| panic!("no epoch in {line}"));
            let split = line["split"].as_str().unwrap_or_else(|| panic!("no split in {line}"));
            (epoch, split.to_owned())
        })
        .collect()
}

fn read_config(run_dir: &Path) -> Value {
    let path = run_dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("config.json is not JSON: {e}\n{text}"))
}

#[test]
fn run_writes_config_metrics_checkpoint() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let run_dir = temp.path().join("run");

    let run = common::train(&new_run_args(&data, &run_dir, &[]));

    assert_exit(&run, 0);
    assert_no_panic(&run);

    let config = read_config(&run_dir);
    assert_eq!(config["model"], "resnet8", "config.json: {config:#}");
    assert_eq!(config["epochs"], 1, "config.json: {config:#}");
    assert!(config["train_augment"].is_object(), "config.json: {config:#}");

    let metrics = read_metrics(&run_dir);
    let expected = [(1, "train".to_owned()), (1, "test".to_owned())];
    assert_eq!(epochs_and_splits(&metrics), expected, "metrics.jsonl lines");
    for line in &metrics {
        for key in ["loss", "top1", "top5", "seconds"] {
            let value = line[key].as_f64().unwrap_or_else(|| panic!("no number {key} in {line}"));
            assert!(value.is_finite(), "{key} = {value} is not finite in {line}");
            assert!(value >= 0.0, "{key} = {value} is negative in {line}");
        }
        let top1 = line["top1"].as_f64().unwrap();
        let top5 = line["top5"].as_f64().unwrap();
        assert!(top1 <= top5, "top1 {top1} above top5 {top5} in {line}");
        assert!(top5 <= 1.0, "top5 {top5} above 1 in {line}");
    }
    assert_eq!(metrics[0]["samples"], TRAIN_RECORDS, "train samples: {}", metrics[0]);
    assert_eq!(metrics[1]["samples"], TEST_RECORDS, "test samples: {}", metrics[1]);

    let checkpoint = std::fs::metadata(run_dir.join("checkpoint.ot"));
    assert!(checkpoint.is_ok_and(|m| m.len() > 0), "checkpoint.ot is missing or empty");

    assert_mentions(&run.stdout, "model resnet8 on");
    assert_mentions(&run.stdout, "epochs 1");
    assert_mentions(&run.stdout, "final test top1");
    assert_mentions(&run.stdout, "best test top1");

    let stderr_lines: Vec<&str> = run.stderr.lines().collect();
    let has_line = |prefix: &str| stderr_lines.iter().any(|line| line.starts_with(prefix));
    assert!(has_line("epoch 1 train "), "no plain train line\n{}", run.describe());
    assert!(has_line("epoch 1 test "), "no plain test line\n{}", run.describe());
    // A progress bar would redraw with carriage returns and escape sequences.
    assert!(!run.stderr.contains('\r'), "stderr has carriage returns\n{}", run.describe());
    assert!(!run.stderr.contains('\x1b'), "stderr has escape sequences\n{}", run.describe());
}

#[test]
fn resume_continues_to_more_epochs() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let run_text = run_dir.display().to_string();

    // The thread count may change on resume: it changes no batch.
    let resumed = common::train(&["--resume", &run_text, "--epochs", "2", "--threads", "2"]);

    assert_exit(&resumed, 0);
    assert_no_panic(&resumed);
    assert_mentions(&resumed.stdout, "epochs 2");
    assert_eq!(read_config(&run_dir)["epochs"], 2, "config.json epochs after resume");
    let expected = [
        (1, "train".to_owned()),
        (1, "test".to_owned()),
        (2, "train".to_owned()),
        (2, "test".to_owned()),
    ];
    assert_eq!(epochs_and_splits(&read_metrics(&run_dir)), expected, "metrics after resume");

    // The run is complete, so resuming again trains nothing and logs nothing new.
    let again = common::train(&["--resume", &run_text]);

    assert_exit(&again, 0);
    assert_eq!(epochs_and_splits(&read_metrics(&run_dir)), expected, "metrics after no-op");
}

#[test]
fn resume_below_run_epochs_rejected() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let run_text = run_dir.display().to_string();
    let resumed = common::train(&["--resume", &run_text, "--epochs", "2"]);
    assert_exit(&resumed, 0);

    let run = common::train(&["--resume", &run_text, "--epochs", "1"]);

    assert_eq!(read_config(&run_dir)["epochs"], 2, "config.json epochs after the rejection");
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--epochs 1");
}

#[test]
fn failed_resume_keeps_config() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    std::fs::remove_file(run_dir.join("checkpoint.ot")).unwrap();

    let run = common::train(&["--resume", &run_dir.display().to_string(), "--epochs", "7"]);

    assert_exit(&run, 2);
    assert_eq!(read_config(&run_dir)["epochs"], 1, "config.json epochs after a failed resume");
}

#[test]
fn resume_from_other_directory() {
    let temp = tempfile::tempdir().unwrap();
    tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let elsewhere = temp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    // `--data` and `--run-dir` relative to the first working directory.
    let started =
        common::train_in(temp.path(), &new_run_args(Path::new("shards"), Path::new("run"), &[]));
    assert_exit(&started, 0);
    let run_dir = temp.path().join("run").display().to_string();

    let resumed = common::train_in(&elsewhere, &["--resume", &run_dir, "--epochs", "2"]);

    assert_exit(&resumed, 0);
    let metrics = read_metrics(&temp.path().join("run"));
    assert_eq!(metrics.len(), 4, "metrics lines after resuming from another directory");
}

#[test]
fn step_schedule_needs_milestones() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let run_dir = temp.path().join("run");

    let run = common::train(&new_run_args(&data, &run_dir, &["--schedule", "step"]));

    assert!(!run_dir.join("config.json").exists(), "config.json written for a rejected run");
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--milestones");
}

#[test]
fn io_error_cause_printed_once() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("no-such-shards");
    let run_dir = temp.path().join("run");

    let run = common::train(&new_run_args(&missing, &run_dir, &[]));

    let line = assert_one_line_error(&run, 1);
    assert_eq!(line.matches("No such file or directory").count(), 1, "cause repeated: {line}");
}

#[test]
fn resume_without_checkpoint() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    std::fs::remove_file(run_dir.join("checkpoint.ot")).unwrap();
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    // config.json is there, the checkpoint is not: a configuration error.
    let no_checkpoint = common::train(&["--resume", &run_dir.display().to_string()]);
    let line = assert_one_line_error(&no_checkpoint, 2);
    assert_mentions(&line, "no checkpoint");

    // Neither file is there: config.json cannot be read, a failure while running.
    let empty_dir = common::train(&["--resume", &empty.display().to_string()]);
    let line = assert_one_line_error(&empty_dir, 1);
    assert_mentions(&line, "config.json");
}

#[test]
fn run_dir_with_checkpoint_rejected() {
    let temp = tempfile::tempdir().unwrap();
    let (data, run_dir) = one_epoch_run(temp.path());
    let metrics_before = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();

    let run = common::train(&new_run_args(&data, &run_dir, &[]));

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--resume");
    let metrics_after = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();
    assert!(metrics_before == metrics_after, "metrics.jsonl of the old run changed");
}

#[test]
fn bad_settings_one_line_errors() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let missing = temp.path().join("no-such-shards");

    // (case, --data, extra flags, exit code, text the message must contain)
    let cases: [(&str, &Path, &[&str], i32, &str); 8] = [
        ("missing data", &missing, &[], 1, "no-such-shards"),
        ("negative lr", &data, &["--lr=-1"], 2, "learning rate"),
        ("zero eval batch size", &data, &["--eval-batch-size", "0"], 2, "eval batch size"),
        ("momentum of 1", &data, &["--momentum", "1"], 2, "momentum"),
        ("unknown device", &data, &["--device", "tpu"], 2, "unknown device \"tpu\""),
        // The lean CPU libtorch has no libtorch_cuda.so: the message names where it looked.
        ("CUDA on a CPU build", &data, &["--device", "cuda:0"], 2, "EXPANSE_TORCH_CUDA_LIB"),
        ("bf16 on the CPU", &data, &["--precision", "bf16"], 2, "bf16 needs a CUDA device"),
        ("accumulation above the batch", &data, &["--accumulation", "65"], 2, "accumulation 65"),
    ];
    for (index, (case, data_dir, extra, code, text)) in cases.into_iter().enumerate() {
        let run_dir = temp.path().join(format!("run-{index}"));

        let run = common::train(&new_run_args(data_dir, &run_dir, extra));

        let line = assert_one_line_error(&run, code);
        assert!(line.contains(text), "{case}: message lacks {text:?}: {line}");
        assert!(!run_dir.join("checkpoint.ot").exists(), "{case}: a checkpoint was written");
    }
}

#[test]
fn unknown_models_rejected() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);

    for model in ["vgg16", "resnet21"] {
        let run_dir = temp.path().join(model);
        let mut args = vec![
            "--data".to_owned(),
            data.display().to_string(),
            "--run-dir".to_owned(),
            run_dir.display().to_string(),
            "--model".to_owned(),
            model.to_owned(),
        ];
        args.extend(["--epochs", "1", "--threads", "1"].map(str::to_owned));

        let run = common::train(&args);

        let line = assert_one_line_error(&run, 2);
        assert!(line.contains(model), "{model}: message lacks the model name: {line}");
    }
}

#[test]
fn negative_lr_as_separate_value() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let run_dir = temp.path().join("run");

    let run = common::train(&new_run_args(&data, &run_dir, &["--lr", "-1"]));

    // Either clap rejects "-1" as an unknown flag or the configuration check rejects the value;
    // both are usage errors.
    assert_exit(&run, 2);
    assert_no_panic(&run);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "first stderr line is not an error\n{}", run.describe());
    assert!(!run_dir.join("checkpoint.ot").exists(), "a checkpoint was written");
}

#[test]
fn resume_rejects_training_options() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let run_text = run_dir.display().to_string();
    let before = std::fs::read(run_dir.join("config.json")).unwrap();

    let rejected = common::train(&["--resume", &run_text, "--epochs", "2", "--lr", "0.5"]);

    let line = assert_one_line_error(&rejected, 2);
    assert_mentions(&line, "--lr");
    assert_eq!(std::fs::read(run_dir.join("config.json")).unwrap(), before, "config.json changed");
}

#[test]
fn repeated_option_last_wins() {
    let temp = tempfile::tempdir().unwrap();
    let data = common::tiny_shard_set(temp.path(), 64, 32);
    let run_dir = temp.path().join("run");
    let mut args = new_run_args(&data, &run_dir, &[]);
    args.extend(["--epochs".to_owned(), "1".to_owned()]);

    let run = common::train(&args);

    assert_exit(&run, 0);
    assert_eq!(read_config(&run_dir)["epochs"], 1, "the last --epochs must win");
}

#[test]
fn corrupt_checkpoint_is_one_line_error() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let checkpoint = run_dir.join("checkpoint.ot");
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    // Every 512th byte: some land in tensor data, some in the archive's own structure.
    for byte in bytes.iter_mut().step_by(512).skip(1) {
        *byte ^= 0x55;
    }
    std::fs::write(&checkpoint, &bytes).unwrap();

    let run_text = run_dir.display().to_string();
    let resumed = common::train(&["--resume", &run_text, "--epochs", "2"]);

    let line = assert_one_line_error(&resumed, 1);
    assert_mentions(&line, "checkpoint.ot");
}

#[test]
fn preset_fills_unset_options_and_logs_steps() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let run_dir = temp.path().join("run");
    let extra = ["--preset", "resnet-cifar", "--accumulation", "2", "--log-every", "2"];

    let run = common::train(&new_run_args(&data, &run_dir, &extra));

    assert_exit(&run, 0);
    let config = read_config(&run_dir);
    // Given on the command line: kept. Left out: the preset's.
    assert_eq!(config["batch_size"], 64, "{config:#}");
    assert_eq!(config["epochs"], 1, "{config:#}");
    assert_eq!(config["lr"]["schedule"]["kind"], "step", "{config:#}");
    assert_eq!(config["lr"]["schedule"]["milestones"], serde_json::json!([82, 123]));
    assert_eq!(config["compute"]["accumulation"], 2, "{config:#}");
    assert_eq!(config["compute"]["device"], "cpu", "{config:#}");
    // 256 images in batches of 64: 4 steps, a line every 2.
    let steps = std::fs::read_to_string(run_dir.join("steps.jsonl")).unwrap();
    let numbers: Vec<u64> = steps
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 4], "{steps}");
}

#[test]
fn eval_only_repeats_the_last_evaluation() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let run_text = run_dir.display().to_string();
    let before = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();

    let run = common::train(&["--eval-only", &run_text]);

    assert_exit(&run, 0);
    let logged = read_metrics(&run_dir).pop().unwrap();
    let expected = format!("top1 {:.2}%", 100.0 * logged["top1"].as_f64().unwrap());
    assert!(run.stdout.contains(&expected), "{expected:?} not in\n{}", run.stdout);
    assert!(run.stdout.contains("protocol run"), "{}", run.stdout);
    assert_eq!(std::fs::read(run_dir.join("metrics.jsonl")).unwrap(), before, "metrics changed");

    // A checkpoint file names its run too.
    let checkpoint = run_dir.join("checkpoint.ot").display().to_string();
    let by_file = common::train(&["--eval-only", &checkpoint]);
    assert_exit(&by_file, 0);
    assert!(by_file.stdout.contains(&expected), "{}", by_file.stdout);
}

#[test]
fn eval_only_rejects_bad_options() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let run_text = run_dir.display().to_string();

    let crops = common::train(&["--eval-only", &run_text, "--protocol", "10crop"]);
    let line = assert_one_line_error(&crops, 2);
    assert!(line.contains("protocol 10crop-224 needs a photo set"), "{line}");

    let training = common::train(&["--eval-only", &run_text, "--lr", "0.5"]);
    let line = assert_one_line_error(&training, 2);
    assert_mentions(&line, "--lr");

    // Evaluation options without --eval-only would otherwise start a training run.
    let data = temp.path().join("data").display().to_string();
    let new_run = temp.path().join("new-run").display().to_string();
    let stray = common::train(&["--data", &data, "--run-dir", &new_run, "--protocol", "center"]);
    let line = assert_one_line_error(&stray, 2);
    assert!(line.contains("only --eval-only RUN_DIR takes --protocol"), "{line}");
    assert!(!Path::new(&new_run).exists(), "a run folder was created");

    let missing = temp.path().join("no-run").display().to_string();
    let line = assert_one_line_error(&common::train(&["--eval-only", &missing]), 1);
    assert!(line.contains("no-run"), "{line}");
}

#[test]
fn run_draws_its_curves_after_every_epoch() {
    let temp = tempfile::tempdir().unwrap();
    let (_, run_dir) = one_epoch_run(temp.path());
    let curves = run_dir.join("curves.png");
    let image = image::open(&curves).unwrap_or_else(|e| panic!("{}: {e}", curves.display()));
    assert!(image.width() > 0);
    let first = std::fs::read(&curves).unwrap();

    let resumed = common::train(&["--resume", run_dir.to_str().unwrap(), "--epochs", "2"]);
    assert_exit(&resumed, 0);
    assert_ne!(std::fs::read(&curves).unwrap(), first, "the second epoch did not redraw");
}

#[test]
fn run_ends_with_a_diagnosis_line() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS as usize, TEST_RECORDS as usize);
    let run = common::train(&new_run_args(&data, &temp.path().join("run"), &[]));
    assert_exit(&run, 0);
    let line = run.stdout.lines().last().unwrap_or_default();
    // Random pixels and labels: nothing to learn, so the network underfits or collapses.
    assert!(line.starts_with("diagnosis: "), "{}", run.describe());
    assert!(
        line.contains("underfitting") || line.contains("collapsed to one class"),
        "{}",
        run.describe()
    );
}
