//! The ImageNet networks against torchvision's figures: output shapes, parameter counts, mult-adds
//! at 224 pixels, gradients, shortcut options A/B/C, plain networks and GoogLeNet's auxiliary
//! classifiers.
//!
//! The reference figures are those of torchvision's model pages (pytorch.org/vision/stable/models:
//! `num_params`, and `GFLOPS`, which counts multiply-adds) and the parameter count of
//! torchvision's `googlenet(aux_logits=True)`.

use std::collections::BTreeSet;

use expanse_trainer::model::{self, summarize, Network};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Every ImageNet model name with torchvision's parameters (without GoogLeNet's auxiliary
/// classifiers) and mult-adds at 3x224x224, 1000 classes.
const TORCHVISION: [(&str, u64, f64); 7] = [
    ("resnet18", 11_689_512, 1.81e9),
    ("resnet34", 21_797_672, 3.66e9),
    ("resnet50", 25_557_032, 4.09e9),
    ("resnet101", 44_549_160, 7.80e9),
    ("resnet152", 60_192_808, 11.51e9),
    ("googlenet", 6_624_904, 1.50e9),
    ("alexnet", 61_100_840, 0.71e9),
];

/// torchvision's `googlenet(aux_logits=True)` parameters at 1000 classes.
const GOOGLENET_WITH_AUX: u64 = 13_004_888;

/// Names of every ImageNet model and variant.
const IMAGENET_NAMES: [&str; 18] = [
    "resnet18",
    "resnet18-a",
    "resnet18-c",
    "resnet34",
    "resnet50",
    "resnet50-a",
    "resnet50-c",
    "resnet101",
    "resnet152",
    "plain18",
    "plain34",
    "plain50",
    "plain101",
    "plain152",
    "googlenet",
    "googlenet-paper",
    "alexnet",
    "resnet34-a",
];

fn build(name: &str, in_channels: usize, classes: usize) -> (VarStore, Box<dyn Network>) {
    let vs = VarStore::new(Device::Cpu);
    let network = model::build(&vs.root(), name, in_channels, classes)
        .unwrap_or_else(|e| panic!("cannot build {name}: {e}"));
    (vs, network)
}

fn parameters(vs: &VarStore) -> u64 {
    vs.trainable_variables().iter().map(|t| t.numel() as u64).sum()
}

fn names(vs: &VarStore) -> BTreeSet<String> {
    vs.variables().into_keys().collect()
}

fn images(n: i64, channels: i64, side: i64) -> Tensor {
    Tensor::randn([n, channels, side, side], (Kind::Float, Device::Cpu))
}

#[test]
fn summary_totals_match_torchvision() {
    for (name, params, macs) in TORCHVISION {
        let summary = summarize(name, 3, 1000, 224, 224).unwrap();
        let last = summary.layers.last().unwrap();
        assert_eq!(last.output, vec![1, 1000], "{name}: output of {}", last.name);

        let run_params = summary.params - summary.params_not_run();
        assert_eq!(run_params, params, "{name}: parameters of the eval forward pass");
        let error = (summary.macs as f64 - macs).abs() / macs;
        assert!(error < 0.015, "{name}: {} mult-adds, torchvision {macs:e}", summary.macs);
    }
}

#[test]
fn parameter_counts_match_torchvision() {
    for (name, expected, _) in TORCHVISION {
        let (vs, _) = build(name, 3, 1000);
        let aux: u64 = vs
            .variables()
            .iter()
            .filter(|(key, t)| key.starts_with("aux") && t.requires_grad())
            .map(|(_, t)| t.numel() as u64)
            .sum();
        let all = parameters(&vs);
        if name == "googlenet" {
            assert_eq!(all, GOOGLENET_WITH_AUX, "googlenet with auxiliary classifiers");
        }
        assert_eq!(all - aux, expected, "{name}");
    }
}

#[test]
fn googlenet_summary_reports_aux_parameters() {
    let summary = summarize("googlenet", 3, 1000, 224, 224).unwrap();
    assert_eq!(summary.params, GOOGLENET_WITH_AUX);
    assert_eq!(summary.params_not_run(), GOOGLENET_WITH_AUX - 6_624_904);
    assert!(summary.to_string().contains("6,624,904"), "{summary}");
}

#[test]
fn output_shapes_for_small_inputs() {
    for name in IMAGENET_NAMES {
        let (_vs, network) = build(name, 1, 7);
        for train in [false, true] {
            let out = network.forward(&images(2, 1, 64), train);
            assert_eq!(out.logits.size(), vec![2, 7], "{name}, train {train}");
            for aux in &out.aux {
                assert_eq!(aux.size(), vec![2, 7], "{name} auxiliary, train {train}");
            }
        }
    }
}

#[test]
fn gradient_reaches_every_parameter() {
    tch::manual_seed(0);
    for name in IMAGENET_NAMES {
        let (vs, network) = build(name, 3, 10);
        let out = network.forward(&images(2, 3, 64), true);
        let mut loss = out.logits.sum(Kind::Float);
        for aux in &out.aux {
            loss += aux.sum(Kind::Float);
        }
        loss.backward();

        let mut missing = Vec::new();
        for (key, variable) in vs.variables() {
            if !variable.requires_grad() {
                continue;
            }
            let grad = variable.grad();
            if !grad.defined() || f64::try_from(grad.abs().sum(Kind::Double)).unwrap() == 0.0 {
                missing.push(key);
            }
        }
        missing.sort();
        assert!(missing.is_empty(), "{name}: no gradient reaches {missing:?}");
    }
}

/// Blocks (`layer2.0`) that have `downsample` variables.
fn projected_blocks(vs: &VarStore) -> BTreeSet<String> {
    names(vs)
        .into_iter()
        .filter_map(|key| key.split_once(".downsample.").map(|(block, _)| block.to_owned()))
        .collect()
}

/// Blocks of ResNet-18 or 50 (stage sizes 2,2,2,2 or 3,4,6,3).
fn all_blocks(stages: [usize; 4]) -> BTreeSet<String> {
    let mut blocks = BTreeSet::new();
    for (stage, count) in stages.into_iter().enumerate() {
        for i in 0..count {
            blocks.insert(format!("layer{}.{i}", stage + 1));
        }
    }
    blocks
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn shortcut_options_place_projections() {
    let cases = [
        ("resnet18", [2, 2, 2, 2], set(&["layer2.0", "layer3.0", "layer4.0"])),
        ("resnet50", [3, 4, 6, 3], set(&["layer1.0", "layer2.0", "layer3.0", "layer4.0"])),
    ];
    for (name, stages, changes) in cases {
        let (vs_a, _) = build(&format!("{name}-a"), 3, 10);
        let (vs_b, _) = build(&format!("{name}-b"), 3, 10);
        let (vs_default, _) = build(name, 3, 10);
        let (vs_c, _) = build(&format!("{name}-c"), 3, 10);

        assert!(projected_blocks(&vs_a).is_empty(), "{name}-a has projections");
        assert_eq!(projected_blocks(&vs_b), changes, "{name}-b");
        assert_eq!(names(&vs_default), names(&vs_b), "{name} is {name}-b");
        assert_eq!(projected_blocks(&vs_c), all_blocks(stages), "{name}-c");

        let (a, b, c) = (parameters(&vs_a), parameters(&vs_b), parameters(&vs_c));
        assert!(a < b, "{name}: A has {a} parameters, B {b}");
        assert!(b < c, "{name}: B has {b} parameters, C {c}");
    }
}

/// Returns the logits of `name` in eval mode after copying the shared variables from `source`.
fn logits_with_weights_of(name: &str, source: &VarStore, xs: &Tensor) -> Tensor {
    let (mut vs, network) = build(name, 3, 10);
    vs.copy(source).unwrap();
    network.forward(xs, false).logits
}

#[test]
fn shortcut_options_change_outputs() {
    tch::manual_seed(1);
    let xs = images(2, 3, 64);
    let (vs_c, network_c) = build("resnet18-c", 3, 10);
    let c = network_c.forward(&xs, false).logits;
    let b = logits_with_weights_of("resnet18-b", &vs_c, &xs);
    let a = logits_with_weights_of("resnet18-a", &vs_c, &xs);
    let plain = logits_with_weights_of("plain18", &vs_c, &xs);

    let differ = |x: &Tensor, y: &Tensor| f64::try_from((x - y).abs().max()).unwrap() > 1e-6;
    assert!(differ(&a, &b), "A and B give the same logits");
    assert!(differ(&b, &c), "B and C give the same logits");
    assert!(differ(&a, &plain), "A and plain give the same logits");
}

#[test]
fn plain_nets_lack_only_projections() {
    for depth in [18, 34, 50, 101, 152] {
        let (vs_plain, _) = build(&format!("plain{depth}"), 3, 10);
        let (vs_res, _) = build(&format!("resnet{depth}"), 3, 10);
        let expected: BTreeSet<String> =
            names(&vs_res).into_iter().filter(|key| !key.contains(".downsample.")).collect();
        assert_eq!(names(&vs_plain), expected, "plain{depth}");
    }
}

#[test]
fn resnet_keys_match_torchvision() {
    let (vs, _) = build("resnet50", 3, 1000);
    let keys = names(&vs);
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer4.2.bn3.weight",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(keys.contains(key), "resnet50 lacks {key}");
    }
    assert_eq!(vs.variables()["layer2.0.conv2.weight"].size(), vec![128, 128, 3, 3]);
}

#[test]
fn googlenet_aux_heads_train_only() {
    for name in ["googlenet", "googlenet-paper"] {
        let (_vs, network) = build(name, 3, 10);
        let xs = images(2, 3, 96);
        assert_eq!(network.forward(&xs, true).aux.len(), 2, "{name} in train mode");
        assert!(network.forward(&xs, false).aux.is_empty(), "{name} in eval mode");
        assert_eq!(network.aux_weight(), 0.3, "{name}");
    }
    for name in ["resnet18", "alexnet", "resnet20"] {
        let (_vs, network) = build(name, 3, 10);
        assert_eq!(network.aux_weight(), 0.0, "{name}");
        assert!(network.forward(&images(2, 3, 64), true).aux.is_empty(), "{name}");
    }
}

#[test]
fn googlenet_keys_match_torchvision() {
    let (vs, _) = build("googlenet", 3, 1000);
    let variables = vs.variables();
    let shape =
        |key: &str| variables.get(key).unwrap_or_else(|| panic!("googlenet lacks {key}")).size();
    assert_eq!(shape("conv1.conv.weight"), vec![64, 3, 7, 7]);
    assert_eq!(shape("conv1.bn.weight"), vec![64]);
    // torchvision's branch3 uses 3x3, where the Inception v1 paper (Szegedy et al. 2014) has 5x5.
    assert_eq!(shape("inception3a.branch3.1.conv.weight"), vec![32, 16, 3, 3]);
    assert_eq!(shape("inception5b.branch4.1.conv.weight"), vec![128, 832, 1, 1]);
    assert_eq!(shape("aux1.conv.conv.weight"), vec![128, 512, 1, 1]);
    assert_eq!(shape("aux2.fc1.weight"), vec![1024, 2048]);
    assert_eq!(shape("aux2.fc2.bias"), vec![1000]);
    assert_eq!(shape("fc.weight"), vec![1000, 1024]);
    assert!(!variables.contains_key("conv1.conv.bias"), "torchvision convolutions have no bias");
}

#[test]
fn googlenet_paper_uses_bias_and_5x5() {
    let (vs, _) = build("googlenet-paper", 3, 1000);
    let variables = vs.variables();
    assert_eq!(variables["inception3a.branch3.1.conv.weight"].size(), vec![32, 16, 5, 5]);
    assert!(variables.contains_key("conv1.conv.bias"));
    assert!(!variables.keys().any(|key| key.contains(".bn.")), "paper variant has batch norm");

    let summary = summarize("googlenet-paper", 3, 1000, 224, 224).unwrap();
    let lrn: Vec<&str> = summary
        .layers
        .iter()
        .filter(|layer| layer.kind == "LocalResponseNorm")
        .map(|layer| layer.name.as_str())
        .collect();
    assert_eq!(lrn, ["lrn1", "lrn2"]);
}

#[test]
fn alexnet_keys_match_torchvision() {
    let (vs, _) = build("alexnet", 3, 1000);
    let expected: BTreeSet<String> = ["features.0", "features.3", "features.6", "features.8"]
        .into_iter()
        .chain(["features.10", "classifier.1", "classifier.4", "classifier.6"])
        .flat_map(|layer| [format!("{layer}.weight"), format!("{layer}.bias")])
        .collect();
    assert_eq!(names(&vs), expected);
}

#[test]
fn local_response_norm_matches_formula() {
    // One pixel, 3 channels of values 1, 2, 3; size 2 averages channels c - 1 and c.
    let lrn =
        model::layers::LocalResponseNorm::new(&VarStore::new(Device::Cpu).root(), 2, 0.5, 1.0, 1.0);
    let xs = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).reshape([1, 3, 1, 1]);
    let out: Vec<f32> = Vec::try_from(lrn.forward(&xs).flatten(0, -1)).unwrap();
    // c = 0: 1 / (1 + 0.5 * (0 + 1) / 2); c = 1: 2 / (1 + 0.5 * (1 + 4) / 2);
    // c = 2: 3 / (1 + 0.5 * (4 + 9) / 2).
    let expected = [1.0 / 1.25, 2.0 / 2.25, 3.0 / 4.25];
    for (got, want) in out.iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{out:?} vs {expected:?}");
    }
}

#[test]
fn cifar_names_still_build() {
    let (vs, network) = build("resnet20", 3, 10);
    assert_eq!(parameters(&vs), 269_722);
    assert_eq!(network.forward(&images(2, 3, 32), false).logits.size(), vec![2, 10]);
}
