//! Data-parallel training through the real `train` binary: two Gloo worker processes on
//! 127.0.0.1 against one process on the same global batch, resume of a two-process run, and
//! the errors of a broken launch.
//!
//! The shard set is tiny: 256 train and 64 test images of 28x28 in 10 classes. Runs use
//! resnet8, a global batch of 64 and one thread per process.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exit, assert_mentions, assert_no_panic, tiny_shard_set};
use tch::Tensor;

const TRAIN_RECORDS: usize = 256;
const TEST_RECORDS: usize = 64;

/// Arguments of a new resnet8 run on `data` in `run_dir`, then `extra`.
fn run_args(data: &Path, run_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--data",
        &data.display().to_string(),
        "--run-dir",
        &run_dir.display().to_string(),
        "--model",
        "resnet8",
        "--batch-size",
        "64",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Reads the weights, batch-norm statistics and momentum buffers of a run's checkpoint as f64
/// values, sorted by name. The `state` entry is left out, because its checksum changes with
/// any weight.
fn checkpoint(run_dir: &Path) -> Vec<(String, Vec<f64>)> {
    let path = run_dir.join("checkpoint.ot");
    let mut named =
        Tensor::load_multi(&path).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .filter(|(name, _)| name != "state")
        .map(|(name, tensor)| {
            let values = tensor.to_kind(tch::Kind::Double).flatten(0, -1);
            (name, Vec::<f64>::try_from(&values).unwrap())
        })
        .collect()
}

/// The largest absolute difference between two checkpoints, which must hold the same
/// tensors, and the name of the tensor where it occurs.
fn largest_difference(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) -> (f64, String) {
    let names = |c: &[(String, Vec<f64>)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "the checkpoints hold different tensors");
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "{name} differs in size");
        for (u, v) in x.iter().zip(y) {
            let difference = (u - v).abs();
            assert!(difference.is_finite(), "{name} is not finite: {u} vs {v}");
            if difference > worst.0 {
                worst = (difference, name.clone());
            }
        }
    }
    worst
}

fn train_ok(args: &[String]) -> common::RunOutput {
    let out = common::train(args);
    assert_exit(&out, 0);
    assert_no_panic(&out);
    out
}

fn temp_data() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), TRAIN_RECORDS, TEST_RECORDS);
    (temp, data)
}

#[test]
fn two_workers_match_one_process() {
    let (temp, data) = temp_data();
    let single = temp.path().join("single");
    let parallel = temp.path().join("parallel");
    let unsynced = temp.path().join("unsynced");

    // 256 records in batches of 64: 4 steps, then evaluation. Training on random pixels
    // amplifies rounding differences quickly, so the tolerance is what rounding alone makes:
    // the distance between one process on 1 thread and on 2 threads, which sum in another
    // order. The runs use a rate of 0.01, which amplifies less than the default 0.1.
    let one_epoch = ["--epochs", "1", "--lr", "0.01"];
    let with = |extra: &[&'static str]| [&one_epoch[..], extra].concat();
    let two_threads = temp.path().join("two-threads");
    train_ok(&run_args(&data, &single, &one_epoch));
    let mut args = run_args(&data, &two_threads, &one_epoch);
    args.extend(["--threads".to_string(), "2".to_string()]);
    train_ok(&args);
    let out = train_ok(&run_args(&data, &parallel, &with(&["--nproc-per-node", "2", "--sync-bn"])));
    train_ok(&run_args(&data, &unsynced, &with(&["--nproc-per-node", "2"])));

    let reference = checkpoint(&single);
    let (rounding, _) = largest_difference(&reference, &checkpoint(&two_threads));
    let tolerance = (2.0 * rounding).max(1e-5);
    let (synced, name) = largest_difference(&reference, &checkpoint(&parallel));
    assert!(
        synced <= tolerance,
        "2 workers with synchronised batch norm differ from 1 process by {synced} in {name}; \
         1 and 2 threads differ by {rounding}"
    );
    // Without synchronised statistics each rank normalises its own half-batch, so the steps
    // are not those of the global batch: the comparison above can tell the two apart.
    let (difference, name) = largest_difference(&reference, &checkpoint(&unsynced));
    eprintln!("rounding {rounding:.2e}, synchronised {synced:.2e}, per-rank {difference:.2e}");
    assert!(
        difference > 10.0 * tolerance,
        "per-rank batch norm differs by only {difference} in {name} (tolerance {tolerance})"
    );

    // Rank 0 alone reports the run.
    assert_eq!(out.stdout.matches("final test").count(), 1, "{}", out.describe());
    assert_mentions(&out.stderr, "data-parallel run of 2 ranks");

    // Only rank 0 wrote, and the counts cover every record, not one rank's share.
    let metrics = std::fs::read_to_string(parallel.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> =
        metrics.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "one train and one test line: {metrics}");
    assert_eq!(lines[0]["samples"], TRAIN_RECORDS as u64, "{metrics}");
    assert_eq!(lines[1]["samples"], TEST_RECORDS as u64, "{metrics}");
    let steps = std::fs::read_to_string(parallel.join("steps.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(steps.lines().last().unwrap()).unwrap();
    assert_eq!(last["samples"], TRAIN_RECORDS as u64, "steps.jsonl counts every rank: {steps}");
    let single_metrics = std::fs::read_to_string(single.join("metrics.jsonl")).unwrap();
    let single_test: serde_json::Value =
        serde_json::from_str(single_metrics.lines().nth(1).unwrap()).unwrap();
    let top1 = |line: &serde_json::Value| line["top1"].as_f64().unwrap();
    assert!(
        (top1(&lines[1]) - top1(&single_test)).abs() <= 1.0 / TEST_RECORDS as f64,
        "test top-1 {} against {} in one process",
        top1(&lines[1]),
        top1(&single_test)
    );
}

#[test]
fn accumulation_averages_once() {
    let (temp, data) = temp_data();
    let single = temp.path().join("single");
    let parallel = temp.path().join("parallel");

    // One step of two micro-batches: the ranks accumulate the first locally and average the
    // sum in the second's backward pass. Averaging each would count the first twice.
    let step = ["--epochs", "1", "--lr", "0.01", "--accumulation", "2", "--stop-after-step", "1"];
    train_ok(&run_args(&data, &single, &step));
    let two = [&step[..], &["--nproc-per-node", "2", "--sync-bn"]].concat();
    train_ok(&run_args(&data, &parallel, &two));

    let (difference, name) = largest_difference(&checkpoint(&single), &checkpoint(&parallel));
    assert!(difference < 1e-5, "accumulated step differs by {difference} in {name}");
}

#[test]
fn resumed_workers_match_uninterrupted() {
    let (temp, data) = temp_data();
    let whole = temp.path().join("whole");
    let resumed = temp.path().join("resumed");
    let two = ["--epochs", "2", "--nproc-per-node", "2", "--sync-bn"];

    train_ok(&run_args(&data, &whole, &two));
    // Stop in the middle of the first epoch (step 3 of 4), then resume to the end.
    let mut first = two.to_vec();
    first.extend(["--stop-after-step", "3"]);
    let stopped = train_ok(&run_args(&data, &resumed, &first));
    assert_mentions(&stopped.stdout, "before batch 3 (step 3)");
    let resumed_text = resumed.display().to_string();
    train_ok(&["--resume".to_string(), resumed_text, "--nproc-per-node".into(), "2".into()]);

    // config.json keeps --sync-bn, so the resume does not repeat it.
    let config = std::fs::read_to_string(resumed.join("config.json")).unwrap();
    assert!(config.contains("\"sync_batch_norm\": true"), "{config}");
    let (difference, name) = largest_difference(&checkpoint(&whole), &checkpoint(&resumed));
    assert!(difference < 1e-6, "resumed run differs by {difference} in {name}");
    let steps =
        |dir: &Path| std::fs::read_to_string(dir.join("steps.jsonl")).unwrap().lines().count();
    assert_eq!(steps(&resumed), steps(&whole), "steps.jsonl lines after resume");
}

#[test]
fn unreachable_rendezvous_names_variables() {
    let (temp, data) = temp_data();
    let run_dir = temp.path().join("run");
    // Nothing serves this port: rank 1 must give up after --dist-timeout, not hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_text = port.to_string();
    let env = [
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", port_text.as_str()),
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
    ];
    let out = common::train_with_env(&run_args(&data, &run_dir, &["--dist-timeout", "2"]), &env);
    let line = common::assert_one_line_error(&out, 1);
    assert_mentions(&line, &format!("MASTER_PORT={port}"));
    assert_mentions(&line, "RANK=1 of WORLD_SIZE=2");
    assert!(!run_dir.exists(), "a failed rendezvous left {}", run_dir.display());
}

#[test]
fn broken_launch_variables_are_named() {
    let (temp, data) = temp_data();
    let run_dir = temp.path().join("run");
    let args = run_args(&data, &run_dir, &[]);
    let missing =
        common::train_with_env(&args, &[("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1")]);
    assert_mentions(&common::assert_one_line_error(&missing, 2), "RANK is not set");
    let outside = common::train_with_env(
        &args,
        &[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")],
    );
    assert_mentions(&common::assert_one_line_error(&outside, 2), "RANK=2 is outside 0..2");
}

#[test]
fn global_batch_must_split_over_the_workers() {
    let (temp, data) = temp_data();
    let run_dir = temp.path().join("run");
    let out =
        common::train(&run_args(&data, &run_dir, &["--epochs", "1", "--nproc-per-node", "3"]));
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert_no_panic(&out);
    assert_mentions(&out.stderr, "batch size 64 does not split equally over 3 ranks");
    assert!(!run_dir.exists(), "a rejected run left {}", run_dir.display());
}

#[test]
fn subcommands_reject_parallel_launch() {
    let env = [
        ("WORLD_SIZE", "2"),
        ("RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];
    let out = common::train_with_env(&["grad-check"], &env);
    let line = common::assert_one_line_error(&out, 2);
    assert_mentions(&line, "train grad-check runs in one process");
    assert_mentions(&line, "WORLD_SIZE=2");
    let out = common::train_with_env(&["--eval-only", "no-such-run"], &env);
    let line = common::assert_one_line_error(&out, 2);
    assert_mentions(&line, "--eval-only runs in one process");
}

/// Starts `train` as rank `rank` of 2 with the rendezvous on `port`, output captured.
fn start_rank(rank: usize, port: u16, args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn mismatched_rank_settings_rejected() {
    let (temp, data) = temp_data();
    let run_dir = temp.path().join("run");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = ["--epochs", "1", "--dist-timeout", "60"];
    let rank0 = start_rank(0, port, &run_args(&data, &run_dir, &base));
    let other = [&base[..], &["--lr", "0.5"]].concat();
    let rank1 = start_rank(1, port, &run_args(&data, &run_dir, &other));

    for child in [rank0, rank1] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("rank(s) 1 were started with other training settings"), "{stderr}");
    }
    assert!(!run_dir.join("checkpoint.ot").exists(), "a rejected run wrote a checkpoint");
}

#[test]
fn stop_step_before_checkpoint_rejected() {
    let (temp, data) = temp_data();
    let run_dir = temp.path().join("run");
    train_ok(&run_args(&data, &run_dir, &["--epochs", "2", "--stop-after-step", "3"]));

    let run_text = run_dir.display().to_string();
    let out = common::train(&["--resume", &run_text, "--stop-after-step", "3"]);
    let line = common::assert_one_line_error(&out, 2);
    assert_mentions(&line, "--stop-after-step 3 is not after the run's step 3");
}

#[test]
fn launcher_sigterm_stops_workers() {
    let (temp, data) = temp_data();
    let run_dir = temp.path().join("run");
    // Enough epochs that the run is still going when the signal comes.
    let args = run_args(&data, &run_dir, &["--epochs", "500", "--nproc-per-node", "2"]);
    let launcher = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the first epoch's checkpoint, so that the workers are training.
    let started = Instant::now();
    while !run_dir.join("checkpoint.ot").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) sends a signal to the launcher this test started.
    unsafe { libc::kill(launcher.id() as libc::pid_t, libc::SIGTERM) };

    let out = launcher.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("stopped in epoch"), "{stdout}\n{stderr}");
    let config = std::fs::read_to_string(run_dir.join("config.json")).unwrap();
    assert!(config.contains("\"epochs\": 500"), "the run was meant to go on: {config}");
}
