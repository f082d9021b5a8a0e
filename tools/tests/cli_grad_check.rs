//! Runs the real `train grad-check` binary: every layer type passes and is listed, an unknown
//! layer type is a usage error, and a threshold no check can meet fails.

mod common;

use common::{assert_exit, assert_mentions, assert_no_panic, assert_one_line_error};
use expanse_trainer::gradcheck::layer_names;

#[test]
fn grad_check_passes_every_layer() {
    let run = common::train(&["grad-check"]);

    assert_exit(&run, 0);
    assert_no_panic(&run);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("layer"), "no table header\n{}", run.describe());
    for name in layer_names() {
        let row = lines.iter().find(|line| line.split_whitespace().next() == Some(name));
        let row = row.unwrap_or_else(|| panic!("no row for {name}\n{}", run.describe()));
        assert!(row.ends_with(" ok"), "{name} did not pass\n{}", run.describe());
    }
    let summary = format!("{0} of {0} layer types pass", layer_names().len());
    assert!(run.stdout.contains(&summary), "no summary line\n{}", run.describe());
    assert!(run.stderr.is_empty(), "stderr is not empty\n{}", run.describe());
}

#[test]
fn grad_check_selects_layers() {
    let run = common::train(&["grad-check", "--layers", "linear,conv", "--seed", "5"]);

    assert_exit(&run, 0);
    let rows: Vec<&str> =
        run.stdout.lines().skip(1).filter_map(|line| line.split_whitespace().next()).collect();
    assert_eq!(rows, ["linear", "conv", "2"], "\n{}", run.describe());
}

#[test]
fn grad_check_unknown_layer_is_usage_error() {
    let run = common::train(&["grad-check", "--layers", "nosuch"]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "\"nosuch\"");
    for name in layer_names() {
        assert_mentions(&line, name);
    }
}

#[test]
fn grad_check_negative_threshold_is_usage_error() {
    let run = common::train(&["grad-check", "--threshold=-1"]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--threshold must be a positive number, got -1");

    let infinite = common::train(&["grad-check", "--threshold", "inf"]);
    let line = assert_one_line_error(&infinite, 2);
    assert_mentions(&line, "got inf");
}

#[test]
fn grad_check_failure_exits_one() {
    // Rounding alone gives every layer type a relative error above 1e-15.
    let run = common::train(&["grad-check", "--layers", "relu,conv", "--threshold", "1e-15"]);

    assert_exit(&run, 1);
    assert_no_panic(&run);
    assert!(run.stdout.contains("FAILED"), "no FAILED row\n{}", run.describe());
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 1, "not one error line\n{}", run.describe());
    assert_mentions(errors[0], "grad-check failed for 2 of 2 layer types at threshold 1e-15");
    assert_mentions(errors[0], "relu: max relative error");
    assert_mentions(errors[0], "conv: max relative error");
}
