//! The finite-difference gradient check: every layer type the trainer builds passes, and
//! layers whose autograd gradient is deliberately wrong fail.

use expanse_trainer::gradcheck::{self, check, check_layers, layer_names, DEFAULT_THRESHOLD};
use expanse_trainer::model::layers::Linear;
use expanse_trainer::Error;
use tch::{nn, Device, Kind, Tensor};

/// Returns an f64 tensor of `shape` with fixed pseudo-random values whose magnitudes lie in
/// `[0.1, 1)`, so that `2x` is never below the relative-error floor.
fn input(shape: &[i64]) -> Tensor {
    let len: i64 = shape.iter().product();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let values: Vec<f64> = (0..len)
        .map(|_| {
            // A 64-bit linear congruential generator (Knuth's MMIX constants).
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let magnitude = 0.1 + 0.9 * (state >> 11) as f64 / (1u64 << 53) as f64;
            if (state >> 10) & 1 == 1 {
                -magnitude
            } else {
                magnitude
            }
        })
        .collect();
    Tensor::from_slice(&values).view(shape)
}

/// Returns an f64 leaf tensor that requires the gradient, as a layer parameter.
fn parameter(shape: &[i64]) -> Tensor {
    input(shape).set_requires_grad(true)
}

#[test]
fn every_layer_type_passes() {
    for seed in [0, 1] {
        let checks = check_layers(&[], DEFAULT_THRESHOLD, seed).unwrap();

        let names: Vec<&str> = checks.iter().map(|check| check.layer.as_str()).collect();
        assert_eq!(names, layer_names());
        for check in &checks {
            assert!(check.passed, "seed {seed}: {check:?}");
            assert!(check.max_relative_error <= DEFAULT_THRESHOLD, "seed {seed}: {check:?}");
            assert!(check.entries > 0, "seed {seed}: {check:?}");
        }
    }
}

#[test]
fn layer_selection_keeps_order() {
    let names = vec!["inception".to_owned(), "conv".to_owned()];

    let checks = check_layers(&names, DEFAULT_THRESHOLD, 3).unwrap();

    let checked: Vec<&str> = checks.iter().map(|check| check.layer.as_str()).collect();
    assert_eq!(checked, ["inception", "conv"]);
}

#[test]
fn block_checks_parameters_and_input() {
    let names = vec!["basic-block".to_owned()];

    let checks = check_layers(&names, DEFAULT_THRESHOLD, 0).unwrap();

    // Input 2x4x7x6 (336 entries, sampled to 128), conv1 6x4x3x3 (216, sampled), conv2
    // 6x6x3x3 (324, sampled), the 1x1 projection 6x4 (24), and three batch norms with 6
    // scales and 6 shifts each (36).
    let expected = 128 + 128 + 128 + 24 + 36;
    assert_eq!(checks[0].entries, expected);
}

#[test]
fn unknown_layer_lists_known_names() {
    let names = vec!["conv".to_owned(), "nosuch".to_owned()];

    let error = check_layers(&names, DEFAULT_THRESHOLD, 0).unwrap_err();

    let message = error.to_string();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert!(message.contains("\"nosuch\""), "{message}");
    for name in layer_names() {
        assert!(message.contains(name), "{message} does not list {name}");
    }
}

#[test]
fn negative_threshold_is_rejected() {
    let error = check_layers(&[], -1.0, 0).unwrap_err();

    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert!(error.to_string().contains("-1"), "{error}");
}

#[test]
fn correct_square_passes() {
    let xs = input(&[3, 4]);

    let result = check("square", &|xs| xs * xs, &xs, &[], DEFAULT_THRESHOLD).unwrap();

    assert!(result.passed, "{result:?}");
    assert_eq!(result.entries, 12);
}

#[test]
fn wrong_input_gradient_fails() {
    // The value is x^2, but autograd treats one factor as a constant and returns x instead
    // of 2x, so every entry has relative error |x - 2x| / |2x| = 0.5.
    let xs = input(&[3, 4]);

    let result = check("wrong-square", &|xs| xs * xs.detach(), &xs, &[], DEFAULT_THRESHOLD);

    let result = result.unwrap();
    assert!(!result.passed, "{result:?}");
    assert!((result.max_relative_error - 0.5).abs() < 1e-6, "{result:?}");
    assert!(result.worst_entry.starts_with("input["), "{result:?}");
}

#[test]
fn wrong_parameter_gradient_fails() {
    // The weight enters the convolution as 2w - w with the first factor detached. The value
    // is conv(x, w), but autograd's weight gradient has the opposite sign, so the relative
    // error is 2.
    let xs = input(&[2, 3, 6, 5]);
    let weight = parameter(&[4, 3, 3, 3]);
    let forward = |xs: &Tensor| {
        let effective = weight.detach() * 2.0 - &weight;
        xs.conv2d(&effective, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
    };

    let result = check("wrong-conv", &forward, &xs, &[weight.shallow_clone()], DEFAULT_THRESHOLD);

    let result = result.unwrap();
    assert!(!result.passed, "{result:?}");
    assert!(result.max_relative_error > 1.9, "{result:?}");
    assert!(result.worst_entry.starts_with("parameter 0["), "{result:?}");
}

#[test]
fn correct_conv_passes() {
    let xs = input(&[2, 3, 6, 5]);
    let weight = parameter(&[4, 3, 3, 3]);
    let forward = |xs: &Tensor| xs.conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);

    let result = check("conv", &forward, &xs, &[weight.shallow_clone()], DEFAULT_THRESHOLD);

    let result = result.unwrap();
    assert!(result.passed, "{result:?}");
    // 180 input entries and 108 weight entries, each capped at the sample size.
    let cap = gradcheck::MAX_ENTRIES_PER_TENSOR;
    assert_eq!(result.entries, 180.min(cap) + 108.min(cap));
}

#[test]
fn parameters_are_restored_exactly() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let linear = Linear::pytorch_default(vs.root() / "fc", 5, 3);
    vs.double();
    let params = vs.trainable_variables();
    let before: Vec<Tensor> = params.iter().map(Tensor::copy).collect();
    let xs = input(&[2, 5]);

    let result = check("linear", &|xs| linear.forward(xs), &xs, &params, DEFAULT_THRESHOLD);

    assert!(result.unwrap().passed);
    for (param, original) in params.iter().zip(&before) {
        assert!(param.equal(original), "parameter changed by the check");
    }
}

#[test]
fn f32_input_is_rejected() {
    let xs = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));

    let error = check("relu", &|xs| xs.relu(), &xs, &[], DEFAULT_THRESHOLD).unwrap_err();

    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert!(error.to_string().contains("Float"), "{error}");
}
