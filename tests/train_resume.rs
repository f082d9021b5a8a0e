//! End to end through the libraries on real Fashion-MNIST images: shards, loader, ResNet
//! training, checkpoint and resume.
//!
//! Needs Debian's `dataset-fashion-mnist` (installed by `scripts/test.sh`).

mod common;

use std::path::{Path, PathBuf};

use expanse::trainer::metrics::{read_metrics, EpochMetrics};
use expanse::trainer::run::{Observer, Quiet};
use expanse::trainer::{TrainConfig, Trainer};

use common::{config, subset_shards};

/// Returns every variable of the model and its exact bits, sorted by name.
fn weights(trainer: &Trainer) -> Vec<(String, Vec<u32>)> {
    let mut all: Vec<(String, Vec<u32>)> = trainer
        .var_store()
        .variables()
        .into_iter()
        .map(|(name, tensor)| {
            let values = Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap();
            (name, values.iter().map(|v| v.to_bits()).collect())
        })
        .collect();
    all.sort();
    all
}

/// Metrics without the wall-clock fields, which differ run to run.
fn timeless(metrics: Vec<EpochMetrics>) -> Vec<(usize, String, u64, u64, u64, u64)> {
    metrics
        .into_iter()
        .map(|m| {
            (m.epoch, m.split, m.loss.to_bits(), m.top1.to_bits(), m.top5.to_bits(), m.samples)
        })
        .collect()
}

#[test]
fn training_loss_falls_on_real_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 4096, 1000);
    let run_dir = dir.path().join("run");

    // 3 epochs of 128 steps of 32 images: 384 steps.
    let mut trainer = Trainer::create(config(data, 3, 32), &run_dir).unwrap();
    trainer.fit(&mut Quiet).unwrap();

    let metrics = read_metrics(&run_dir).unwrap();
    let train: Vec<&EpochMetrics> = metrics.iter().filter(|m| m.split == "train").collect();
    let test: Vec<&EpochMetrics> = metrics.iter().filter(|m| m.split == "test").collect();
    assert_eq!(train.len(), 3);
    assert_eq!(test.len(), 3);
    assert!(train[2].loss < 0.75 * train[0].loss, "train losses {:?}", train);
    // Ten balanced classes: chance is 10%.
    assert!(test[2].top1 > 0.70, "test top-1 {}", test[2].top1);
    assert!(test[2].top5 > test[2].top1);
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 512, 256);

    let straight_dir = dir.path().join("straight");
    let mut straight = Trainer::create(config(data.clone(), 2, 64), &straight_dir).unwrap();
    straight.fit(&mut Quiet).unwrap();

    let resumed_dir = dir.path().join("resumed");
    let mut first = Trainer::create(config(data, 2, 64), &resumed_dir).unwrap();
    first.fit_until(1, &mut Quiet).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&resumed_dir).unwrap();
    assert_eq!(resumed.state().epochs_done, 1);
    resumed.fit(&mut Quiet).unwrap();

    assert_eq!(resumed.state(), straight.state());
    assert_eq!(weights(&resumed), weights(&straight));
    assert_eq!(
        timeless(read_metrics(&resumed_dir).unwrap()),
        timeless(read_metrics(&straight_dir).unwrap())
    );
}

/// Asks the run to stop after a number of training steps, as Ctrl-C would.
struct StopAfter(usize);

impl Observer for StopAfter {
    fn stop_requested(&mut self) -> bool {
        self.0 -= 1;
        self.0 == 0
    }
}

#[test]
fn mid_epoch_stop_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 512, 256);

    let logged = |data: PathBuf| TrainConfig { log_every: 2, ..config(data, 2, 64) };
    let straight_dir = dir.path().join("straight");
    let mut straight = Trainer::create(logged(data.clone()), &straight_dir).unwrap();
    straight.fit(&mut Quiet).unwrap();

    // 8 steps per epoch: stop at step 11, in the middle of epoch 2, then at step 13 again.
    let resumed_dir = dir.path().join("resumed");
    let mut first = Trainer::create(logged(data), &resumed_dir).unwrap();
    let summary = first.fit(&mut StopAfter(11)).unwrap();
    assert!(summary.stopped);
    assert_eq!((first.state().epochs_done, first.state().step), (1, 11));
    drop(first);
    let mut second = Trainer::resume(&resumed_dir).unwrap();
    assert_eq!(second.state().loader.position, 3);
    assert!(second.fit(&mut StopAfter(2)).unwrap().stopped);
    drop(second);
    let mut resumed = Trainer::resume(&resumed_dir).unwrap();
    assert_eq!(resumed.state().loader.position, 5);
    assert!(!resumed.fit(&mut Quiet).unwrap().stopped);

    assert_eq!(resumed.state(), straight.state());
    assert_eq!(weights(&resumed), weights(&straight));

    // steps.jsonl has a line every 2 steps either way. Windows cut by a stop cover fewer
    // samples; the lines before the first stop are identical.
    let steps = |run_dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(run_dir.join("steps.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let (straight_steps, resumed_steps) = (steps(&straight_dir), steps(&resumed_dir));
    let numbers = |lines: &[serde_json::Value]| -> Vec<u64> {
        lines.iter().map(|line| line["step"].as_u64().unwrap()).collect()
    };
    assert_eq!(numbers(&straight_steps), (1..=8).map(|i| 2 * i).collect::<Vec<u64>>());
    assert_eq!(numbers(&resumed_steps), numbers(&straight_steps));
    assert_eq!(resumed_steps[..5], straight_steps[..5]);
    assert_eq!(resumed_steps[5]["samples"], 64, "the window after the stop at step 11");
}

#[test]
fn second_create_in_same_run_dir_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 128, 64);
    let run_dir = dir.path().join("run");

    Trainer::create(config(data.clone(), 1, 64), &run_dir).unwrap().fit(&mut Quiet).unwrap();
    let error = Trainer::create(config(data, 1, 64), &run_dir).err().unwrap();
    assert!(error.to_string().contains("--resume"), "{error}");
}

/// Rewrites one field of a run's `config.json`.
fn edit_config(run_dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = run_dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn divergence_stops_and_keeps_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 256, 64);
    let run_dir = dir.path().join("run");
    Trainer::create(config(data, 1, 64), &run_dir).unwrap().fit(&mut Quiet).unwrap();
    let checkpoint = std::fs::read(run_dir.join("checkpoint.ot")).unwrap();

    edit_config(&run_dir, |c| {
        c["lr"]["base"] = serde_json::json!(1e30);
        c["epochs"] = serde_json::json!(2);
    });
    let error = Trainer::resume(&run_dir).unwrap().fit(&mut Quiet).err().unwrap();
    assert!(
        matches!(error, expanse::trainer::Error::Diverged { epoch: 2, .. }),
        "expected divergence in epoch 2, got {error}"
    );
    assert_eq!(std::fs::read(run_dir.join("checkpoint.ot")).unwrap(), checkpoint);
}

#[test]
fn checkpoint_of_other_model_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 128, 64);
    let run_dir = dir.path().join("run");
    Trainer::create(config(data, 1, 64), &run_dir).unwrap().fit(&mut Quiet).unwrap();

    edit_config(&run_dir, |c| c["model"] = serde_json::json!("resnet26"));
    let error = Trainer::resume(&run_dir).err().unwrap().to_string();
    assert!(error.contains("checkpoint.ot"), "{error}");
    assert!(error.contains("missing"), "{error}");
}

#[test]
fn checkpoint_with_extra_layers_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 128, 64);
    let run_dir = dir.path().join("run");
    let mut deeper = config(data, 1, 64);
    deeper.model = "resnet14".into();
    Trainer::create(deeper, &run_dir).unwrap().fit(&mut Quiet).unwrap();

    // resnet8's variables are a subset of resnet14's: the leftover entries must not pass.
    edit_config(&run_dir, |c| c["model"] = serde_json::json!("resnet8"));
    let error = Trainer::resume(&run_dir).err().unwrap().to_string();
    assert!(error.contains("not in the model"), "{error}");
}

#[test]
fn changed_training_data_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 128, 64);
    let mut stale = config(data, 1, 64);
    stale.train_content_hash = "0".repeat(64);

    let error = Trainer::create(stale, &dir.path().join("run")).err().unwrap().to_string();
    assert!(error.contains("changed since the run started"), "{error}");
}
