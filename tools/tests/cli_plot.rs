//! `plot` on hand-written run folders: the PNG's size and colours, the summary table, the
//! x-axis choice, and the errors for bad runs, bad options and a missing font.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// Colours of the first two runs, as the binary draws them (matplotlib "tab10").
const FIRST_COLOUR: [u8; 3] = [31, 119, 180];
const SECOND_COLOUR: [u8; 3] = [255, 127, 14];

/// Runs the `plot` binary with `args`.
fn plot<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> RunOutput {
    plot_with_env(args, &[])
}

/// Builds an argument list from paths and option strings.
fn args(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<std::ffi::OsString> {
    parts.iter().map(|part| part.as_ref().to_os_string()).collect()
}

/// Returns one metrics.jsonl line as `train` writes it, with fields the plot does not read.
fn metrics_line(epoch: usize, split: &str, loss: f64, top1: f64) -> String {
    format!(
        "{{\"epoch\":{epoch},\"split\":\"{split}\",\"loss\":{loss},\"top1\":{top1},\"top5\":1.0,\
         \"samples\":1000,\"seconds\":2.5,\"images_per_second\":400.0,\
         \"data_wait_seconds\":0.1,\"peak_rss_mib\":512.0,\"lr\":0.1}}\n"
    )
}

/// Writes a run folder `dir/name` with one epoch per entry of `train_top1` and `test_top1`,
/// the top-1 accuracy of each epoch's passes, and with steps.jsonl (10 steps per epoch, a
/// window every 5 steps) when `with_steps` is set. Returns the folder.
fn write_run(
    dir: &Path,
    name: &str,
    train_top1: &[f64],
    test_top1: &[f64],
    with_steps: bool,
) -> PathBuf {
    let run = dir.join(name);
    fs::create_dir_all(&run).unwrap();
    let mut metrics = String::new();
    for (index, (&train, &test)) in train_top1.iter().zip(test_top1).enumerate() {
        metrics.push_str(&metrics_line(index + 1, "train", 1.0 - train, train));
        metrics.push_str(&metrics_line(index + 1, "test", 1.2 - test, test));
    }
    fs::write(run.join("metrics.jsonl"), metrics).unwrap();

    if with_steps {
        let mut steps = String::new();
        for (index, &train) in train_top1.iter().enumerate() {
            let epoch = index + 1;
            for window in 1..=2 {
                let step = index * 10 + window * 5;
                let top1 = train - 0.05 * (2 - window) as f64;
                steps.push_str(&format!(
                    "{{\"step\":{step},\"epoch\":{epoch},\"samples\":{},\"loss\":{},\
                     \"top1\":{top1},\"lr\":0.1}}\n",
                    window * 640,
                    1.0 - top1
                ));
            }
        }
        fs::write(run.join("steps.jsonl"), steps).unwrap();
    }
    run
}

/// Returns the decoded RGB image at `path`.
fn read_png(path: &Path) -> image::RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())).to_rgb8()
}

/// Counts the pixels of `image` equal to `colour` in columns `columns`.
fn count_colour(image: &image::RgbImage, colour: [u8; 3], columns: std::ops::Range<u32>) -> usize {
    image
        .enumerate_pixels()
        .filter(|(x, _, pixel)| columns.contains(x) && pixel.0 == colour)
        .count()
}

/// Returns the table row of stdout that starts with `label`, split into columns.
fn table_row(out: &RunOutput, label: &str) -> Vec<String> {
    let line = out
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no table row for {label}\n{}", out.describe()));
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn plot_png_size_and_run_colours() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_run(dir.path(), "plain20", &[0.5, 0.7, 0.8], &[0.55, 0.65, 0.6], true);
    let second = write_run(dir.path(), "resnet20", &[0.6, 0.8, 0.9], &[0.6, 0.75, 0.85], true);
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[
        &first,
        &second,
        &"--out",
        &png,
        &"--width",
        &"640",
        &"--height",
        &"400",
        &"--title",
        &"degradation",
    ]));
    assert_exit(&out, 0);
    assert_no_panic(&out);

    let image = read_png(&png);
    assert_eq!(image.dimensions(), (640, 400));
    let white = count_colour(&image, [255, 255, 255], 0..640);
    assert!(white > 640 * 400 / 2, "the background is not mostly white: {white} white pixels");
    let first_pixels = count_colour(&image, FIRST_COLOUR, 0..640);
    let second_pixels = count_colour(&image, SECOND_COLOUR, 0..640);
    assert!(first_pixels > 100, "first run colour drawn on only {first_pixels} pixels");
    assert!(second_pixels > 100, "second run colour drawn on only {second_pixels} pixels");
}

#[test]
fn plot_table_values() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_run(dir.path(), "plain20", &[0.5, 0.75], &[0.6, 0.55], true);
    let second = write_run(dir.path(), "resnet20", &[0.6, 0.875], &[0.7, 0.9], false);
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&first, &second, &"-o", &png, &"--label", &"A", &"--label", &"B"]));
    assert_exit(&out, 0);

    // Columns: run, epochs, train error, split, eval error, best eval error, best epoch.
    let a = table_row(&out, "A");
    assert_eq!(a, ["A", "2", "25.00%", "test", "45.00%", "40.00%", "1"], "{}", out.describe());
    let b = table_row(&out, "B");
    assert_eq!(b, ["B", "2", "12.50%", "test", "10.00%", "10.00%", "2"], "{}", out.describe());
}

#[test]
fn plot_default_label_is_folder_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "resnet56", &[0.5], &[0.6], true);
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run.join("."), &"--out", &png]));
    assert_exit(&out, 0);
    let row = table_row(&out, "resnet56");
    assert_eq!(row[2], "50.00%");
}

#[test]
fn plot_resumed_epoch_uses_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "resumed", &[0.5], &[0.6], false);
    let mut metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    metrics.push_str(&metrics_line(1, "train", 0.3, 0.7));
    metrics.push_str(&metrics_line(1, "test", 0.3, 0.8));
    fs::write(run.join("metrics.jsonl"), metrics).unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    assert_exit(&out, 0);
    let row = table_row(&out, "resumed");
    assert_eq!(
        row,
        ["resumed", "1", "30.00%", "test", "20.00%", "20.00%", "1"],
        "{}",
        out.describe()
    );
}

#[test]
fn plot_null_loss_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "diverged", &[0.5, 0.6], &[0.6, 0.6], true);
    let mut metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    metrics.push_str(
        "{\"epoch\":3,\"split\":\"train\",\"loss\":null,\"top1\":0.1,\"top5\":0.5,\"samples\":1}\n",
    );
    fs::write(run.join("metrics.jsonl"), metrics).unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png, &"--metric", &"loss", &"--x", &"epoch"]));
    assert_exit(&out, 0);
    assert!(png.is_file(), "no PNG written\n{}", out.describe());
}

#[test]
fn plot_without_steps_uses_epoch_axis() {
    let dir = tempfile::tempdir().unwrap();
    let with_steps = write_run(dir.path(), "new", &[0.5, 0.6], &[0.6, 0.7], true);
    let without_steps = write_run(dir.path(), "old", &[0.5, 0.6], &[0.6, 0.7], false);
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&with_steps, &without_steps, &"--out", &png]));
    assert_exit(&out, 0);
    assert!(png.is_file(), "no PNG written\n{}", out.describe());

    let out = plot(&args(&[&with_steps, &without_steps, &"--out", &png, &"--x", &"step"]));
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "steps.jsonl");
    assert_mentions(&line, &without_steps.display().to_string());
    assert_mentions(&line, "--x epoch");
}

#[test]
fn plot_y_max_clips_curves() {
    let dir = tempfile::tempdir().unwrap();
    // Every error is at least 40%, so nothing of the curves lies below --y-max 5.
    let run = write_run(dir.path(), "run", &[0.5, 0.6], &[0.55, 0.6], true);
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png, &"--width", &"800", &"--height", &"500"]));
    assert_exit(&out, 0);
    // The legend is in the upper right, so the left half shows only curves.
    let unclipped = count_colour(&read_png(&png), FIRST_COLOUR, 0..400);
    assert!(unclipped > 0, "no curve drawn in the left half without --y-max");

    let out = plot(&args(&[
        &run,
        &"--out",
        &png,
        &"--width",
        &"800",
        &"--height",
        &"500",
        &"--y-max",
        &"5",
    ]));
    assert_exit(&out, 0);
    let clipped = count_colour(&read_png(&png), FIRST_COLOUR, 0..400);
    assert_eq!(clipped, 0, "curves above --y-max drawn on {clipped} pixels");
}

#[test]
fn plot_malformed_metrics_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "run", &[0.5, 0.6], &[0.6, 0.7], true);
    let metrics_path = run.join("metrics.jsonl");
    let mut metrics = fs::read_to_string(&metrics_path).unwrap();
    metrics.push_str("{\"epoch\":3,\"split\":\"tr");
    fs::write(&metrics_path, metrics).unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &metrics_path.display().to_string());
    assert_mentions(&line, "line 5");
}

#[test]
fn plot_malformed_steps_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "run", &[0.5], &[0.6], true);
    let steps_path = run.join("steps.jsonl");
    let mut steps = fs::read_to_string(&steps_path).unwrap();
    steps.push_str("{\"step\":15,\"epoch\":2,\"loss\":0.4}\n");
    fs::write(&steps_path, steps).unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &steps_path.display().to_string());
    assert_mentions(&line, "line 3");
    assert_mentions(&line, "top1");
}

#[test]
fn plot_top1_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "run", &[0.5], &[0.6], false);
    let metrics_path = run.join("metrics.jsonl");
    let mut metrics = fs::read_to_string(&metrics_path).unwrap();
    metrics.push_str(&metrics_line(2, "test", 0.5, 85.0));
    fs::write(&metrics_path, metrics).unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &metrics_path.display().to_string());
    assert_mentions(&line, "line 3");
    assert_mentions(&line, "85");
}

#[test]
fn plot_missing_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-run");
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&missing, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &missing.display().to_string());
    assert_mentions(&line, "not found");
}

#[test]
fn plot_missing_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("empty-run");
    fs::create_dir_all(&run).unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &run.join("metrics.jsonl").display().to_string());
    assert_mentions(&line, "not found");
}

#[test]
fn plot_empty_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("new-run");
    fs::create_dir_all(&run).unwrap();
    fs::write(run.join("metrics.jsonl"), "").unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, "no records");
}

#[test]
fn plot_bad_options_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "run", &[0.5], &[0.6], true);
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png, &"--label", &"a", &"--label", &"b"]));
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "--label");

    let out = plot(&args(&[&run, &"--out", &dir.path().join("missing/curves.png")]));
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "--out");

    let out = plot(&args(&[&run, &"--out", &png, &"--y-max", &"0"]));
    let line = assert_one_line_error(&out, 2);
    assert_mentions(&line, "--y-max");

    let out = plot(&args(&[&run, &"--out", &png, &"--metric", &"accuracy"]));
    assert_exit(&out, 2);
    assert_no_panic(&out);

    let out = plot(&args(&[&run, &"--out", &png, &"--width", &"10"]));
    assert_exit(&out, 2);
    assert_no_panic(&out);
    assert!(!png.exists(), "a PNG was written after a usage error");
}

#[test]
fn plot_missing_font_names_package() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "run", &[0.5], &[0.6], true);
    let png = dir.path().join("curves.png");
    let font = dir.path().join("NoSuchFont.ttf");

    let out = plot_with_env(
        &args(&[&run, &"--out", &png]),
        &[("EXPANSE_PLOT_FONT", font.to_str().unwrap())],
    );
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &font.display().to_string());
    assert_mentions(&line, "fonts-dejavu-core");
    assert!(!png.exists(), "a PNG was written without a font");
}

#[test]
fn plot_output_never_partial() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_run(dir.path(), "good", &[0.5], &[0.6], true);
    let bad = write_run(dir.path(), "bad", &[0.5], &[0.6], true);
    fs::write(bad.join("metrics.jsonl"), "not json\n").unwrap();
    let out_dir = dir.path().join("plots");
    fs::create_dir_all(&out_dir).unwrap();
    let png = out_dir.join("curves.png");
    fs::write(&png, b"old contents").unwrap();

    // A failing run leaves the old file as it was and no temporary file beside it.
    let out = plot(&args(&[&good, &bad, &"--out", &png]));
    assert_one_line_error(&out, 1);
    assert_eq!(fs::read(&png).unwrap(), b"old contents");
    assert_eq!(file_names(&out_dir), ["curves.png"]);

    // A successful run replaces it with a complete PNG, again with no temporary file left.
    let out = plot(&args(&[&good, &"--out", &png]));
    assert_exit(&out, 0);
    assert_eq!(read_png(&png).dimensions(), (1200, 700));
    assert_eq!(file_names(&out_dir), ["curves.png"]);
}

#[test]
fn plot_reads_batch_size_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), "run", &[0.5, 0.6], &[0.6, 0.7], true);
    fs::write(run.join("config.json"), "{\"model\":\"resnet20\",\"batch_size\":100}").unwrap();
    let png = dir.path().join("curves.png");

    let out = plot(&args(&[&run, &"--out", &png]));
    assert_exit(&out, 0);
    assert!(png.is_file(), "no PNG written\n{}", out.describe());

    fs::write(run.join("config.json"), "{\"model\":").unwrap();
    let out = plot(&args(&[&run, &"--out", &png]));
    let line = assert_one_line_error(&out, 1);
    assert_mentions(&line, &run.join("config.json").display().to_string());
}
