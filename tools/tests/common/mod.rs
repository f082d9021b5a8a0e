//! Helpers shared by the command-line tests: running the real binaries, checking their error
//! output, and writing small IDX and CIFAR-10 source folders.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;

/// The exit status and captured output of one run of a binary.
#[derive(Debug)]
pub struct RunOutput {
    /// The command line, for assert messages.
    pub command: String,
    /// The exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl RunOutput {
    /// Formats the command and both streams for an assert message.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the `shardify` binary with `args`.
pub fn shardify<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> RunOutput {
    run(env!("CARGO_BIN_EXE_shardify"), args, None, &[])
}

/// Runs the `loader-bench` binary with `args`.
pub fn loader_bench<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> RunOutput {
    run(env!("CARGO_BIN_EXE_loader-bench"), args, None, &[])
}

/// Runs the `train` binary with `args`.
pub fn train<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> RunOutput {
    run(env!("CARGO_BIN_EXE_train"), args, None, &[])
}

/// Runs the `train` binary with `args` in the working directory `dir`.
pub fn train_in<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> RunOutput {
    run(env!("CARGO_BIN_EXE_train"), args, Some(dir), &[])
}

/// Runs the `train` binary with `args` and the extra environment variables `env`.
pub fn train_with_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> RunOutput {
    run(env!("CARGO_BIN_EXE_train"), args, None, env)
}

/// Runs the `plot` binary with `args` and the extra environment variables `env`.
pub fn plot_with_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> RunOutput {
    run(env!("CARGO_BIN_EXE_plot"), args, None, env)
}

/// Runs `program` with `args` in `working_dir` (or the test's own) with the extra environment
/// variables `env`, stdin closed and stdout and stderr captured, so stderr is not a terminal.
///
/// `RUST_LOG` is removed so that only warnings reach stderr. `RUST_BACKTRACE=1` is set so that
/// a panic, or an error printed with its backtrace, shows up in the captured stderr.
fn run<S: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: &[S],
    working_dir: Option<&Path>,
    env: &[(&str, &str)],
) -> RunOutput {
    let arg_texts: Vec<String> =
        args.iter().map(|arg| arg.as_ref().to_string_lossy().into_owned()).collect();
    let command = format!("{program} {}", arg_texts.join(" "));

    let mut process = Command::new(program);
    if let Some(dir) = working_dir {
        process.current_dir(dir);
    }
    let output = process
        .args(args)
        .envs(env.iter().copied())
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

/// Asserts a run exited with `code`.
pub fn assert_exit(out: &RunOutput, code: i32) {
    assert_eq!(out.code, Some(code), "unexpected exit code\n{}", out.describe());
}

/// Asserts that stderr contains no panic message and no backtrace.
pub fn assert_no_panic(out: &RunOutput) {
    assert!(!out.stderr.contains("panicked"), "stderr shows a panic\n{}", out.describe());
    assert!(
        !out.stderr.to_lowercase().contains("backtrace"),
        "stderr shows a backtrace\n{}",
        out.describe()
    );
}

/// Asserts a failed run: exit `code`, stderr exactly one line starting with `error:`, no panic
/// text, and nothing on stdout. Returns the error line.
pub fn assert_one_line_error(out: &RunOutput, code: i32) -> String {
    assert_exit(out, code);
    assert_no_panic(out);

    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line\n{}", out.describe());
    assert!(
        lines[0].starts_with("error: "),
        "stderr does not start with error:\n{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "a failed run printed to stdout\n{}", out.describe());
    lines[0].to_owned()
}

/// Asserts that `line` contains `expected`.
pub fn assert_mentions(line: &str, expected: &str) {
    assert!(line.contains(expected), "message does not mention {expected:?}: {line}");
}

/// Parses stdout of a run as JSON, failing the test with the output when it is not.
pub fn stdout_json(out: &RunOutput) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", out.describe()))
}

/// A splitmix64 generator: fixed, reproducible pixel values without a dependency.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Encodes an IDX file: the big-endian magic, one big-endian u32 per dimension, then `data`.
pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for dim in dims {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// Encodes an IDX images file (magic 0x00000803) of `count` images of `rows` x `columns`.
pub fn idx_images(count: u32, rows: u32, columns: u32, pixels: &[u8]) -> Vec<u8> {
    idx_bytes(0x0803, &[count, rows, columns], pixels)
}

/// Encodes an IDX labels file (magic 0x00000801).
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    idx_bytes(0x0801, &[labels.len() as u32], labels)
}

/// Compresses `bytes` as one gzip member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// One split of an IDX dataset: u8 images of `rows` x `columns`, back to back, and labels.
#[derive(Clone, Debug)]
pub struct IdxSplit {
    /// Image height in pixels.
    pub rows: u32,
    /// Image width in pixels.
    pub columns: u32,
    /// The images back to back, row-major.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl IdxSplit {
    /// Returns the number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns the pixels of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let len = (self.rows * self.columns) as usize;
        &self.pixels[index * len..(index + 1) * len]
    }

    /// Returns the records per label, for labels `0..classes`.
    pub fn class_counts(&self, classes: usize) -> Vec<u64> {
        let mut counts = vec![0u64; classes];
        for &label in &self.labels {
            counts[usize::from(label)] += 1;
        }
        counts
    }

    /// Returns the mean of every pixel value, in 0..255 units.
    pub fn pixel_mean(&self) -> f64 {
        let sum: f64 = self.pixels.iter().map(|&p| f64::from(p)).sum();
        sum / self.pixels.len() as f64
    }

    /// Returns the population standard deviation of every pixel value, in 0..255 units.
    pub fn pixel_std(&self) -> f64 {
        let mean = self.pixel_mean();
        let squares: f64 = self.pixels.iter().map(|&p| (f64::from(p) - mean).powi(2)).sum();
        (squares / self.pixels.len() as f64).sqrt()
    }
}

/// Writes `split` as `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` in `dir`,
/// gzipping (and adding `.gz` to) the images and labels files as requested.
pub fn write_idx_split(
    dir: &Path,
    prefix: &str,
    split: &IdxSplit,
    gzip_images: bool,
    gzip_labels: bool,
) {
    let images = idx_images(split.len() as u32, split.rows, split.columns, &split.pixels);
    let labels = idx_labels(&split.labels);

    let (images, images_suffix) = if gzip_images { (gzip(&images), ".gz") } else { (images, "") };
    let (labels, labels_suffix) = if gzip_labels { (gzip(&labels), ".gz") } else { (labels, "") };
    write_file(dir, &format!("{prefix}-images-idx3-ubyte{images_suffix}"), &images);
    write_file(dir, &format!("{prefix}-labels-idx1-ubyte{labels_suffix}"), &labels);
}

/// Builds an IDX split of `count` random images of 28x28 with labels `index % classes`.
pub fn random_idx_split(rng: &mut SplitMix64, count: usize, classes: u8) -> IdxSplit {
    IdxSplit {
        rows: 28,
        columns: 28,
        pixels: rng.bytes(count * 28 * 28),
        labels: (0..count).map(|i| (i % usize::from(classes)) as u8).collect(),
    }
}

/// Writes a 28x28, 10-class IDX folder in `dir/source` (`train_count` train and `test_count`
/// test images of fixed random pixels), converts it with `shardify` into `dir/shards` and
/// returns that folder.
pub fn tiny_shard_set(dir: &Path, train_count: usize, test_count: usize) -> PathBuf {
    let source = dir.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let mut rng = SplitMix64(0x5eed);
    write_idx_split(&source, "train", &random_idx_split(&mut rng, train_count, 10), false, false);
    write_idx_split(&source, "t10k", &random_idx_split(&mut rng, test_count, 10), false, false);

    let shards = dir.join("shards");
    let out = shardify(&[source.as_os_str(), shards.as_os_str()]);
    assert_exit(&out, 0);
    shards
}

/// Returns the names of the regular files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
