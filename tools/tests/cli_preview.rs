//! `preview` on image folders, files and shard sets: grid geometry, reproducibility, recipe
//! files, and the errors for bad recipes, inputs and options.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use expanse_augment::pipeline::Recipe;

/// Pixels between cells and around the grid, as the binary draws them.
const GAP: u32 = 4;
/// Height of the label strip under each cell, as the binary draws it.
const LABEL_HEIGHT: u32 = 14;

/// Runs the `preview` binary with `args`, stdin closed and both streams captured.
fn preview<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> RunOutput {
    let arg_texts: Vec<String> =
        args.iter().map(|arg| arg.as_ref().to_string_lossy().into_owned()).collect();
    let program = env!("CARGO_BIN_EXE_preview");
    let command = format!("{program} {}", arg_texts.join(" "));
    let output = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    RunOutput {
        command,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `preview` with `args` followed by `-o out` and `inputs`, and asserts success.
fn preview_ok(args: &[&str], out: &Path, inputs: &[&Path]) -> RunOutput {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.push("-o".as_ref());
    all.push(out.as_os_str());
    all.extend(inputs.iter().map(|p| p.as_os_str()));
    let run = preview(&all);
    assert_exit(&run, 0);
    assert_no_panic(&run);
    run
}

/// Writes a `width` x `height` RGB JPEG of gradients and a diagonal edge that depend on `seed`.
fn write_jpeg(path: &Path, width: u16, height: u16, seed: u32) {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            let edge = if x * u32::from(height) > y * u32::from(width) { 200 } else { 0 };
            pixels.push((x * 2 + seed * 29) as u8);
            pixels.push((y * 3 + seed * 13) as u8);
            pixels.push((edge + seed) as u8);
        }
    }
    let encoder = jpeg_encoder::Encoder::new_file(path, 92).expect("create jpeg");
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode jpeg");
}

/// Writes `count` photos of assorted non-square sizes into `dir` and returns `dir`.
fn photo_folder(dir: &Path, count: u32) -> PathBuf {
    fs::create_dir_all(dir).expect("photo folder");
    for i in 0..count {
        let (width, height) = (300 + 20 * i as u16, 260 - 10 * i as u16);
        write_jpeg(&dir.join(format!("{i:03}.jpg")), width, height, i);
    }
    dir.to_path_buf()
}

/// Returns the width and height of the PNG at `path`.
fn png_size(path: &Path) -> (u32, u32) {
    let image = image::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (image.width(), image.height())
}

/// Returns the grid size the binary should produce for `rows` x `columns` cells of `cell`.
fn expected_size(rows: u32, columns: u32, cell: u32) -> (u32, u32) {
    (GAP + columns * (cell + GAP), GAP + rows * (cell + LABEL_HEIGHT + GAP))
}

/// Asserts a failed run with one error line and no grid left behind, and returns the line.
fn assert_failed(run: &RunOutput, code: i32, out: &Path) -> String {
    let line = assert_one_line_error(run, code);
    assert!(!out.exists(), "a failed run wrote {}", out.display());
    let folder = out.parent().expect("output folder");
    let leftovers: Vec<String> =
        file_names(folder).into_iter().filter(|name| name.ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    line
}

#[test]
fn grid_rows_and_columns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 3);
    let out = tmp.path().join("grid.png");

    let run = preview_ok(
        &["--recipe", "resnet-imagenet", "--rows", "2", "--draws", "3", "--cell", "32"],
        &out,
        &[&photos],
    );

    assert_eq!(png_size(&out), expected_size(2, 4, 32));
    assert_mentions(&run.stdout, "2 rows x 4 columns");
    assert_eq!(file_names(tmp.path()), vec!["grid.png".to_owned()], "temporary files left");
}

#[test]
fn grid_default_draws() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 2);
    let out = tmp.path().join("grid.png");

    preview_ok(&["--recipe", "inception", "--cell", "48"], &out, &[&photos]);

    assert_eq!(png_size(&out), expected_size(2, 7, 48), "2 images, original + 6 draws");
}

#[test]
fn ten_crop_shows_each_view() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let out = tmp.path().join("grid.png");

    let run = preview_ok(&["--recipe", "eval-10crop", "--cell", "40"], &out, &[&photos]);

    assert_eq!(png_size(&out), expected_size(1, 11, 40), "original + 1 draw x 10 views");
    assert_mentions(&run.stdout, "1 draw(s) x 10 view(s)");
}

#[test]
fn same_seed_same_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 3);
    let args = ["--recipe", "resnet-imagenet", "--cell", "48", "--draws", "4"];
    let first = tmp.path().join("first.png");
    let again = tmp.path().join("again.png");
    let other_seed = tmp.path().join("other.png");

    preview_ok(&args, &first, &[&photos]);
    preview_ok(&args, &again, &[&photos]);
    preview_ok(&[&args[..], &["--seed", "1"]].concat(), &other_seed, &[&photos]);

    let first = fs::read(&first).expect("first grid");
    assert!(first == fs::read(&again).expect("second grid"), "same seed gave other bytes");
    assert!(first != fs::read(&other_seed).expect("seed 1 grid"), "seed 1 gave the same bytes");
}

#[test]
fn draws_differ_from_each_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let out = tmp.path().join("grid.png");
    let cell = 64;

    preview_ok(&["--recipe", "resnet-imagenet", "--cell", "64", "--draws", "6"], &out, &[&photos]);

    let grid = image::open(&out).expect("grid").to_rgb8();
    let cell_pixels = |column: u32| -> Vec<u8> {
        let left = GAP + column * (cell + GAP);
        image::imageops::crop_imm(&grid, left, GAP, cell, cell).to_image().into_raw()
    };
    let draws: Vec<Vec<u8>> = (1..7).map(cell_pixels).collect();
    for column in 1..draws.len() {
        assert!(draws[column] != draws[0], "draw {column} equals draw 0");
    }
}

#[test]
fn files_and_folders_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 2);
    fs::create_dir_all(photos.join("nested")).expect("nested folder");
    write_jpeg(&photos.join("nested").join("a.jpg"), 90, 70, 9);
    fs::write(photos.join(".hidden.jpg"), b"not an image").expect("hidden file");
    fs::write(photos.join("notes.txt"), b"not an image").expect("text file");
    let single = tmp.path().join("single.photo");
    write_jpeg(&single, 64, 48, 5);
    let out = tmp.path().join("grid.png");

    let run = preview_ok(
        &["--recipe", "eval-center", "--cell", "32", "--draws", "1"],
        &out,
        &[&single, &photos],
    );

    assert_eq!(png_size(&out), expected_size(4, 2, 32), "the file, 2 photos and nested/a.jpg");
    assert_mentions(&run.stdout, "4 rows");
}

#[test]
fn symlink_loop_searched_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 2);
    std::os::unix::fs::symlink(&photos, photos.join("a_loop")).expect("symlink");
    let out = tmp.path().join("grid.png");

    preview_ok(&["--recipe", "eval-center", "--cell", "32", "--draws", "1"], &out, &[&photos]);

    assert_eq!(png_size(&out), expected_size(2, 2, 32), "each photo once");
}

#[test]
fn first_and_rows_select() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 5);
    let out = tmp.path().join("grid.png");
    let shifted = tmp.path().join("shifted.png");

    preview_ok(&["--recipe", "resnet-imagenet", "--cell", "32", "--rows", "8"], &out, &[&photos]);
    preview_ok(
        &["--recipe", "resnet-imagenet", "--cell", "32", "--first", "3"],
        &shifted,
        &[&photos],
    );

    assert_eq!(png_size(&out), expected_size(5, 7, 32), "all 5 photos");
    assert_eq!(png_size(&shifted), expected_size(2, 7, 32), "photos 3 and 4");
}

#[test]
fn recipe_file_matches_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 2);
    let recipe = Recipe::named("resnet-imagenet").expect("named recipe");
    let file = write_file(
        tmp.path(),
        "recipe.json",
        serde_json::to_string_pretty(&recipe).expect("recipe json").as_bytes(),
    );
    let by_name = tmp.path().join("by_name.png");
    let by_file = tmp.path().join("by_file.png");

    preview_ok(&["--recipe", "resnet-imagenet", "--cell", "32"], &by_name, &[&photos]);
    preview_ok(
        &["--recipe", file.to_str().expect("utf-8 path"), "--cell", "32"],
        &by_file,
        &[&photos],
    );

    let by_name = fs::read(&by_name).expect("grid by name");
    assert!(by_name == fs::read(&by_file).expect("grid by file"), "file and name differ");
}

#[test]
fn shard_set_fixed_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shards = tiny_shard_set(tmp.path(), 6, 4);
    let out = tmp.path().join("grid.png");

    preview_ok(
        &["--recipe", "mnist-elastic", "--split", "test", "--rows", "8", "--cell", "28"],
        &out,
        &[&shards],
    );

    assert_eq!(png_size(&out), expected_size(4, 7, 28), "the 4 test records");
}

#[test]
fn shard_set_photo_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("train");
    photo_folder(&root.join("cat"), 2);
    photo_folder(&root.join("dog"), 2);
    let shards = tmp.path().join("shards");
    let convert = shardify(&[root.as_os_str(), shards.as_os_str()]);
    assert_exit(&convert, 0);
    let out = tmp.path().join("grid.png");
    let by_file = tmp.path().join("by_file.png");

    preview_ok(&["--recipe", "resnet-imagenet", "--cell", "32", "--rows", "3"], &out, &[&shards]);
    preview_ok(
        &["--recipe", "resnet-imagenet", "--cell", "32", "--rows", "3"],
        &by_file,
        &[&root.join("cat"), &root.join("dog")],
    );

    assert_eq!(png_size(&out), expected_size(3, 7, 32));
    // Kept JPEGs decode to the same pixels and records keep the source order, so the keys
    // and therefore the draws match those of the files.
    let records = fs::read(&out).expect("grid of records");
    assert!(records == fs::read(&by_file).expect("grid of files"), "records and files differ");
}

#[test]
fn unknown_recipe_lists_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let out = tmp.path().join("grid.png");

    let run = preview(&[
        "--recipe".as_ref(),
        "resnet-imagenett".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        photos.as_os_str(),
    ]);

    let line = assert_failed(&run, 2, &out);
    assert_mentions(&line, "\"resnet-imagenett\"");
    for name in Recipe::NAMES {
        assert_mentions(&line, name);
    }
}

#[test]
fn bad_recipe_json_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let file =
        write_file(tmp.path(), "recipe.json", b"{\n  \"steps\": [\n    {\"op\": }\n  ]\n}\n");
    let out = tmp.path().join("grid.png");

    let run = preview(&[
        "--recipe".as_ref(),
        file.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        photos.as_os_str(),
    ]);

    let line = assert_failed(&run, 2, &out);
    assert_mentions(&line, "recipe.json");
    assert_mentions(&line, "line 3 column");
}

#[test]
fn missing_recipe_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let out = tmp.path().join("grid.png");

    let run = preview(&[
        "--recipe".as_ref(),
        "absent.json".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        photos.as_os_str(),
    ]);

    let line = assert_failed(&run, 2, &out);
    assert_mentions(&line, "absent.json");
}

#[test]
fn corrupt_image_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 2);
    write_file(&photos, "001b.jpg", b"\xff\xd8\xff\xe0 cut short");
    let out = tmp.path().join("grid.png");

    let run = preview(&[
        "--recipe".as_ref(),
        "resnet-imagenet".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        photos.as_os_str(),
    ]);

    let line = assert_failed(&run, 1, &out);
    assert_mentions(&line, "001b.jpg");
}

#[test]
fn usage_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let shards = tiny_shard_set(tmp.path(), 2, 2);
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).expect("empty folder");
    let out = tmp.path().join("grid.png");
    let absent = tmp.path().join("absent");
    let photos_arg = photos.to_str().expect("utf-8 path");
    let shards_arg = shards.to_str().expect("utf-8 path");
    let out_arg = out.to_str().expect("utf-8 path");

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec![photos_arg, "--split", "train"], 2, "--split"),
        (vec![absent.to_str().unwrap()], 2, "absent"),
        (vec![shards_arg, "--split", "val"], 2, "no split \"val\""),
        (vec![shards_arg, "--max-side", "64"], 2, "--max-side"),
        (vec![shards_arg, "--first", "2"], 2, "--first 2"),
        (vec![shards_arg, photos_arg], 2, "only INPUT"),
        (vec![photos_arg, "--first", "5"], 1, "--first 5"),
        (vec![empty.to_str().unwrap()], 1, "found 0 image"),
        (vec![photos_arg, "--rows", "256", "--draws", "64", "--cell", "1024"], 2, "lower --rows"),
    ];
    for (extra, code, expected) in cases {
        let mut args = vec!["--recipe", "resnet-imagenet", "-o", out_arg];
        args.extend(extra);
        let run = preview(&args);
        let line = assert_failed(&run, code, &out);
        assert_mentions(&line, expected);
    }
}

#[test]
fn missing_output_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 1);
    let out = tmp.path().join("absent").join("grid.png");

    let run = preview(&[
        "--recipe".as_ref(),
        "resnet-imagenet".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        photos.as_os_str(),
    ]);

    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "not found");
}

#[test]
fn output_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(&tmp.path().join("photos"), 2);
    let out = write_file(tmp.path(), "grid.png", b"old contents");

    preview_ok(&["--recipe", "resnet-imagenet", "--cell", "32"], &out, &[&photos]);

    assert_eq!(png_size(&out), expected_size(2, 7, 32));
}
