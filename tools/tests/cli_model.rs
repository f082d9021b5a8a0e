//! Runs the real `model` binary: the name list, table and JSON summaries, and rejected names
//! and input sizes.

mod common;

use std::process::{Command, Stdio};

use common::{assert_exit, assert_mentions, assert_no_panic, assert_one_line_error, RunOutput};

/// Runs the `model` binary with `args`, stdin closed, `RUST_LOG` removed.
fn model(args: &[&str]) -> RunOutput {
    let program = env!("CARGO_BIN_EXE_model");
    let output = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    RunOutput {
        command: format!("{program} {}", args.join(" ")),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn list_prints_families() {
    let out = model(&["list"]);
    assert_exit(&out, 0);
    for name in ["resnet18", "plain18", "cifar-resnetD", "googlenet-paper", "alexnet"] {
        assert_mentions(&out.stdout, name);
    }
}

#[test]
fn summary_table_of_resnet18() {
    let out = model(&["summary", "resnet18"]);
    assert_exit(&out, 0);
    assert_no_panic(&out);
    assert_mentions(&out.stdout, "layer4.1.conv2");
    assert_mentions(&out.stdout, "[1, 512, 7, 7]");
    assert_mentions(&out.stdout, "parameters: 11,689,512");
    assert_mentions(&out.stdout, "(1.81 G;");
}

#[test]
fn summary_json_with_input_and_classes() {
    let out = model(&["summary", "resnet20", "--input", "1x28x28", "--classes", "7", "--json"]);
    assert_exit(&out, 0);
    let summary = common::stdout_json(&out);
    assert_eq!(summary["model"], "resnet20");
    assert_eq!(summary["input"], serde_json::json!([1, 28, 28]));
    let layers = summary["layers"].as_array().unwrap();
    assert_eq!(layers.last().unwrap()["output"], serde_json::json!([1, 7]));
    assert_eq!(layers.first().unwrap()["name"], "conv1");
    assert!(summary["params"].as_u64().unwrap() > 0);
    assert!(summary["macs"].as_u64().unwrap() > 0);
}

#[test]
fn unknown_model_is_usage_error() {
    let out = model(&["summary", "vgg16"]);
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "\"vgg16\"");
    assert_mentions(&line, "googlenet-paper");
}

#[test]
fn bad_input_is_usage_error() {
    for input in ["3x224", "3x0x224", "ax224x224", "3x224x224x1"] {
        let out = model(&["summary", "resnet18", "--input", input]);
        let line = assert_one_line_error(&out, 2);
        assert_mentions(&line, "--input");
        assert_mentions(&line, input);
    }
}

#[test]
fn too_small_input_is_usage_error() {
    let out = model(&["summary", "alexnet", "--input", "3x16x16"]);
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "too small");
    assert_mentions(&line, "3x16x16");
}
