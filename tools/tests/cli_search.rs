//! `train search`: trials, folds, the table and plot, resume, and bad settings.

mod common;

use std::path::Path;

use common::{assert_exit, assert_one_line_error, tiny_shard_set};

/// Runs a random search of `trials` trials of 2 folds on `data` into `out`, with `extra`.
fn search(data: &Path, out: &Path, trials: &str, extra: &[&str]) -> common::RunOutput {
    let mut args = vec![
        "search",
        "--data",
        data.to_str().unwrap(),
        "--model",
        "resnet8",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--param",
        "lr=log:0.01..0.2",
        "--param",
        "batch-size=choice:16,32",
        "--strategy",
        "random",
        "--folds",
        "2",
        "--trials",
        trials,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    common::train(&args)
}

fn trial_lines(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("trials.jsonl")).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn search_logs_and_resumes_trials() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), 128, 32);
    let out = temp.path().join("search");

    let first = search(&data, &out, "2", &[]);
    assert_exit(&first, 0);
    let trials = trial_lines(&out);
    assert_eq!(trials.len(), 2);
    for trial in &trials {
        assert_eq!(trial["fold_scores"].as_array().unwrap().len(), 2, "{trial}");
        let lr = trial["point"]["lr"].as_f64().unwrap();
        assert!((0.01..=0.2).contains(&lr), "{trial}");
    }
    // Both folds of a trial together hold out each of the 128 records once.
    let fold = |k: usize| -> u64 {
        let metrics = std::fs::read_to_string(
            out.join("trial-001").join(format!("fold-{k}")).join("metrics.jsonl"),
        )
        .unwrap();
        let held_out: serde_json::Value = serde_json::from_str(
            metrics.lines().find(|l| l.contains(&format!("\"fold-{k}\""))).unwrap(),
        )
        .unwrap();
        held_out["samples"].as_u64().unwrap()
    };
    assert_eq!(fold(1) + fold(2), 128);
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.starts_with("| trial | lr | batch-size | cv error |"), "{table}");
    let plot = image::open(out.join("search.png")).unwrap();
    assert_eq!(plot.width(), 1000);

    // The same command with a larger budget keeps the two trials and adds one.
    let second = search(&data, &out, "3", &[]);
    assert_exit(&second, 0);
    let resumed = trial_lines(&out);
    assert_eq!(resumed.len(), 3);
    assert_eq!(resumed[..2], trials[..]);
    assert!(second.stdout.contains("2 done"), "{}", second.describe());
}

#[test]
fn search_rejects_folder_with_other_settings() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), 64, 16);
    let out = temp.path().join("search");
    assert_exit(&search(&data, &out, "1", &[]), 0);

    let other = search(&data, &out, "1", &["--momentum", "0.8"]);
    let line = assert_one_line_error(&other, 2);
    assert!(line.contains("contains a search with other settings"), "{line}");
    assert!(line.contains("base.momentum 0.9 vs 0.8"), "{line}");
    assert_eq!(trial_lines(&out).len(), 1);

    let reseeded = search(&data, &out, "1", &["--seed", "9"]);
    let line = assert_one_line_error(&reseeded, 2);
    assert!(line.contains("seed 0 vs 9"), "{line}");
    assert_eq!(trial_lines(&out).len(), 1);
}

#[test]
fn search_rejects_unknown_param_and_strategy() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), 64, 16);
    let out = temp.path().join("search");

    let unknown = search(&data, &out, "1", &["--param", "colour=choice:red,blue"]);
    let line = assert_one_line_error(&unknown, 2);
    assert!(line.contains("unknown search parameter \"colour\""), "{line}");

    let strategy = search(&data, &out, "1", &["--strategy", "annealing"]);
    let line = assert_one_line_error(&strategy, 2);
    assert!(line.contains("annealing"), "{line}");
    assert!(!out.exists(), "a rejected search created {}", out.display());
}

#[test]
fn search_rejects_invalid_values_upfront() {
    let temp = tempfile::tempdir().unwrap();
    let data = tiny_shard_set(temp.path(), 64, 16);
    let out = temp.path().join("search");
    let cases: [(&[&str], &str); 6] = [
        (&["--param", "depth=int:8..20"], "depth can take the invalid value 9"),
        (&["--param", "epochs=lin:1..2"], "epochs takes whole numbers"),
        (&["--param", "dropout=lin:0..1.5"], "dropout can take the invalid value 1.5"),
        (&["--param", "model=choice:resnet8,nosuch"], "unknown model \"nosuch\""),
        (
            &["--param", "model=choice:resnet8,resnet14", "--param", "depth=choice:8,20"],
            "both choose",
        ),
        (&["--records", "65"], "--records must be in 1..=64"),
    ];
    for (extra, expected) in cases {
        let run = search(&data, &out, "1", extra);
        let line = assert_one_line_error(&run, 2);
        assert!(line.contains(expected), "{extra:?}: {line}");
    }
    let folds = search(&data, &out, "1", &["--records", "3", "--folds", "4"]);
    let line = assert_one_line_error(&folds, 2);
    assert!(line.contains("--folds 4 exceeds the 3 records"), "{line}");
    assert!(!out.exists(), "a rejected search created {}", out.display());
}
