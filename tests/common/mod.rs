//! Shared by the end-to-end tests: shard sets of real Fashion-MNIST images and a small
//! ResNet configuration.
//!
//! Needs Debian's `dataset-fashion-mnist` (installed by `scripts/test.sh`).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use expanse::augment::CropFlipNormalize;
use expanse::dataset::shard::{
    write_record_set, RecordSet, RecordSplit, SampleSchema, WriteOptions,
};
use expanse::trainer::optim::{LearningRate, Schedule};
use expanse::trainer::TrainConfig;

pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Reads `count` images (28x28) and labels from a gzipped Fashion-MNIST IDX pair.
pub fn read_idx_subset(prefix: &str, count: usize) -> (Vec<u8>, Vec<u32>) {
    let read = |name: String| {
        let file = std::fs::File::open(Path::new(FASHION_MNIST).join(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}; install dataset-fashion-mnist"));
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(file).read_to_end(&mut bytes).unwrap();
        bytes
    };
    let images = read(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels = read(format!("{prefix}-labels-idx1-ubyte.gz"));
    let pixels = images[16..16 + count * 784].to_vec();
    let labels = labels[8..8 + count].iter().map(|&l| u32::from(l)).collect();
    (pixels, labels)
}

/// Writes a shard set of the first `train` training and `test` test images.
pub fn subset_shards(dir: &Path, train: usize, test: usize) -> PathBuf {
    let (train_pixels, train_labels) = read_idx_subset("train", train);
    let (test_pixels, test_labels) = read_idx_subset("t10k", test);
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let schema = SampleSchema::raw_u8(28, 28, 1);
    let set = RecordSet {
        source_kind: "idx",
        classes: &classes,
        coarse_classes: None,
        splits: vec![
            RecordSplit {
                name: "train",
                schema,
                pixels: &train_pixels,
                labels: &train_labels,
                coarse_labels: None,
            },
            RecordSplit {
                name: "test",
                schema,
                pixels: &test_pixels,
                labels: &test_labels,
                coarse_labels: None,
            },
        ],
    };
    let out = dir.join("shards");
    write_record_set(&set, &out, &WriteOptions::default()).unwrap();
    out
}

pub fn config(data: PathBuf, epochs: usize, batch_size: usize) -> TrainConfig {
    let (mean, std) = (vec![72.94], vec![90.02]);
    TrainConfig {
        data,
        train_split: "train".into(),
        eval_split: "test".into(),
        train_content_hash: String::new(),
        model: "resnet8".into(),
        epochs,
        batch_size,
        eval_batch_size: 256,
        lr: LearningRate { base: 0.05, schedule: Schedule::Cosine, warmup_epochs: 0 },
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        decay_bn_and_bias: false,
        label_smoothing: 0.0,
        l1_decay: 0.0,
        dropout: None,
        selection: None,
        seed: 5,
        threads: 2,
        prefetch: 2,
        checkpoint_every: 0,
        log_every: 0,
        compute: Default::default(),
        sync_batch_norm: false,
        train_augment: CropFlipNormalize::cifar(2, mean.clone(), std.clone()).into(),
        eval_augment: CropFlipNormalize::eval(mean, std).into(),
    }
}
