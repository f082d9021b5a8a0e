//! Inspection of a ResNet-8 on a small shard set of fixed random 28x28 images: activation
//! statistics against hand-computed values, histograms, filters, and that inspecting leaves
//! the model unchanged.

use std::path::{Path, PathBuf};

use expanse_augment::CropFlipNormalize;
use expanse_dataset::shard::{
    write_record_set, RecordSet, RecordSplit, SampleSchema, WriteOptions,
};
use expanse_trainer::inspect::{inspect, InspectOptions};
use expanse_trainer::optim::{LearningRate, Schedule};
use expanse_trainer::{TrainConfig, Trainer};
use tch::Tensor;

const TRAIN_RECORDS: usize = 48;
const TEST_RECORDS: usize = 16;

/// Writes a shard set of random 28x28 grey images with labels `index % 10`.
fn random_shards(dir: &Path) -> PathBuf {
    let mut state = 0x9e37_79b9_u32;
    let mut pixels = |count: usize| -> Vec<u8> {
        (0..count * 784)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    };

    let train_pixels = pixels(TRAIN_RECORDS);
    let test_pixels = pixels(TEST_RECORDS);
    let labels = |count: usize| -> Vec<u32> { (0..count as u32).map(|i| i % 10).collect() };
    let (train_labels, test_labels) = (labels(TRAIN_RECORDS), labels(TEST_RECORDS));

    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let schema = SampleSchema::raw_u8(28, 28, 1);
    let split =
        |name, pixels, labels| RecordSplit { name, schema, pixels, labels, coarse_labels: None };
    let set = RecordSet {
        source_kind: "idx",
        classes: &classes,
        coarse_classes: None,
        splits: vec![
            split("train", &train_pixels, &train_labels),
            split("test", &test_pixels, &test_labels),
        ],
    };

    let out = dir.join("shards");
    write_record_set(&set, &out, &WriteOptions::default()).unwrap();
    out
}

/// Creates an untrained ResNet-8 run in `dir/run` on random shards.
fn untrained(dir: &Path) -> Trainer {
    let (mean, std) = (vec![127.5], vec![73.6]);
    let config = TrainConfig {
        data: random_shards(dir),
        train_split: "train".into(),
        eval_split: "test".into(),
        train_content_hash: String::new(),
        model: "resnet8".into(),
        epochs: 1,
        batch_size: 16,
        eval_batch_size: 20,
        lr: LearningRate { base: 0.1, schedule: Schedule::Constant, warmup_epochs: 0 },
        momentum: 0.9,
        nesterov: false,
        weight_decay: 1e-4,
        decay_bn_and_bias: true,
        l1_decay: 0.0,
        dropout: None,
        selection: None,
        label_smoothing: 0.0,
        seed: 3,
        threads: 1,
        prefetch: 1,
        checkpoint_every: 0,
        log_every: 0,
        compute: Default::default(),
        sync_batch_norm: false,
        train_augment: CropFlipNormalize::cifar(2, mean.clone(), std.clone()).into(),
        eval_augment: CropFlipNormalize::eval(mean, std).into(),
    };
    Trainer::create(config, &dir.join("run")).unwrap()
}

/// Fills the variable `name` of the trainer's model with `value`.
fn fill(trainer: &Trainer, name: &str, value: f64) {
    let variables = trainer.var_store().variables();
    let mut tensor =
        variables.get(name).unwrap_or_else(|| panic!("no variable {name}")).shallow_clone();
    tch::no_grad(|| {
        let _ = tensor.fill_(value);
    });
}

fn options(layers: &[&str]) -> InspectOptions {
    InspectOptions {
        samples: 40,
        split: "train".into(),
        layers: layers.iter().map(|name| name.to_string()).collect(),
        bins: 10,
    }
}

#[test]
fn negative_bias_kills_every_channel() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = untrained(dir.path());
    // max(0, BN(x)) = 0 everywhere once beta is far below any normalised value.
    fill(&trainer, "layer1.0.bn1.bias", -1e4);

    let inspection = inspect(&trainer, &options(&["bn1", "layer1.0.bn1"])).unwrap();

    let layers: Vec<&str> = inspection.activations.iter().map(|s| s.layer.as_str()).collect();
    assert_eq!(layers, ["bn1", "layer1.0.bn1"]);
    let dead = &inspection.activations[1];
    assert_eq!(dead.kind, "BatchNorm2d");
    assert_eq!(dead.channels, 16);
    assert_eq!(dead.dead_fraction, 1.0);
    assert_eq!(dead.mean, 0.0);
    assert_eq!(dead.mean_abs_correlation, None);
    let alive = &inspection.activations[0];
    assert!(alive.dead_fraction < 1.0, "bn1 dead fraction {}", alive.dead_fraction);
    assert!(alive.mean > 0.0, "bn1 mean {}", alive.mean);
}

#[test]
fn constant_output_mean_and_correlation() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = untrained(dir.path());
    // gamma 0 and beta 0.5 make every output 0.5 in eval mode, a constant channel.
    fill(&trainer, "bn1.weight", 0.0);
    fill(&trainer, "bn1.bias", 0.5);

    let inspection = inspect(&trainer, &options(&["bn1"])).unwrap();

    let stats = &inspection.activations[0];
    assert!((stats.mean - 0.5).abs() < 1e-6, "mean {}", stats.mean);
    assert_eq!(stats.dead_fraction, 0.0);
    assert_eq!(stats.mean_abs_correlation, None);
}

#[test]
fn default_layers_are_batch_norms() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = untrained(dir.path());

    let inspection = inspect(&trainer, &options(&[])).unwrap();

    // ResNet-8 has 7 batch norms: one in the stem and two in each of three one-block stages.
    assert_eq!(inspection.activations.len(), 7);
    for stats in &inspection.activations {
        assert_eq!(stats.kind, "BatchNorm2d", "{}", stats.layer);
        assert!((0.0..=1.0).contains(&stats.dead_fraction), "{stats:?}");
        if let Some(correlation) = stats.mean_abs_correlation {
            assert!((0.0..=1.0 + 1e-9).contains(&correlation), "{stats:?}");
        }
    }
    assert_eq!(inspection.samples, 40);
}

#[test]
fn histograms_filters_and_no_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = untrained(dir.path());
    let snapshot = |trainer: &Trainer| -> Vec<(String, Tensor)> {
        let mut all: Vec<(String, Tensor)> = trainer
            .var_store()
            .variables()
            .into_iter()
            .map(|(name, tensor)| (name, tensor.copy()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let before = snapshot(&trainer);

    let inspection = inspect(&trainer, &options(&[])).unwrap();

    // ResNet-8 has 7 convolutions and one fully connected layer.
    let names: Vec<&str> = inspection.weights.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert_eq!(names[0], "conv1.weight");
    assert_eq!(names[7], "fc.weight");
    for histogram in &inspection.weights {
        let elements: i64 = histogram.shape.iter().product();
        assert_eq!(histogram.counts.iter().sum::<u64>(), elements as u64, "{}", histogram.name);
        assert_eq!(histogram.counts.len(), 10);
        assert!(histogram.low < histogram.high, "{}", histogram.name);
    }
    assert_eq!(inspection.gradients.len(), 8);
    for histogram in &inspection.gradients {
        assert!(histogram.std > 0.0, "the gradient of {} is constant", histogram.name);
    }
    assert!(inspection.loss.is_finite(), "loss {}", inspection.loss);
    assert!(inspection.loss > 0.0, "loss {}", inspection.loss);

    let filters = inspection.filters.as_ref().expect("no filters");
    assert_eq!(filters.name, "conv1.weight");
    assert_eq!(filters.shape, [16, 1, 3, 3]);
    let weight = trainer.var_store().variables()["conv1.weight"].shallow_clone();
    let expected = Vec::<f32>::try_from(weight.flatten(0, -1)).unwrap();
    assert_eq!(filters.values, expected);
    assert_eq!(filters.kernel(1, 0), &expected[9..18]);

    let after = snapshot(&trainer);
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert!(old.equal(new), "inspection changed {name}");
    }
    for (name, tensor) in trainer.var_store().variables() {
        let gradient = tensor.grad();
        if gradient.defined() {
            let magnitude = f64::try_from(gradient.abs().sum(tch::Kind::Double)).unwrap();
            assert_eq!(magnitude, 0.0, "the gradient of {name} was not zeroed");
        }
    }
}

#[test]
fn samples_capped_at_split_length() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = untrained(dir.path());
    let options = InspectOptions { samples: 1000, split: "test".into(), ..options(&["bn1"]) };

    let inspection = inspect(&trainer, &options).unwrap();

    assert_eq!(inspection.samples, TEST_RECORDS);
    assert_eq!(inspection.split, "test");
}

#[test]
fn unknown_layer_named_in_error() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = untrained(dir.path());

    let error = inspect(&trainer, &options(&["bn1", "layer9.bn"])).unwrap_err().to_string();

    // Only the unknown name is reported as unknown.
    assert!(error.contains("unknown layer layer9.bn;"), "{error}");
    assert!(error.contains("model summary"), "{error}");
}
