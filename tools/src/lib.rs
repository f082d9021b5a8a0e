//! Shared pieces of the command-line tools: logging set-up, progress display, exit codes,
//! recipe loading and option values.

pub mod charts;
pub mod progress;

use std::io::IsTerminal;
use std::path::Path;

use expanse_augment::pipeline::Recipe;

/// Exit code for a command line or configuration that cannot be used.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a failure while running (bad input data, I/O, divergence).
pub const EXIT_FAILURE: i32 = 1;

/// Installs the logger: warnings and errors by default, more with `RUST_LOG`.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
}

/// Whether progress should be drawn as bars (an interactive terminal on stderr).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// Writes `text` to stdout. A closed pipe (as with `| head`) ends the output quietly instead of
/// failing.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;

    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A command line that cannot be used, such as contradictory options; exits with
/// [`EXIT_USAGE`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns [`EXIT_USAGE`] for a [`UsageError`] anywhere in the chain of `error`, or for a
/// cause that `also_usage` accepts (such as a trainer configuration error), [`EXIT_FAILURE`]
/// otherwise.
pub fn exit_code(
    error: &anyhow::Error,
    also_usage: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> i32 {
    if error.chain().any(|cause| cause.is::<UsageError>() || also_usage(cause)) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// Prints `error` with its chain of causes on one line, as `error: a: b: c`, and returns the
/// process exit code: [`EXIT_USAGE`] for a [`UsageError`], [`EXIT_FAILURE`] otherwise.
pub fn report(error: &anyhow::Error) -> std::process::ExitCode {
    report_with(error, &|_| false)
}

/// As [`report`], with `also_usage` choosing further causes that mean a usage error.
pub fn report_with(
    error: &anyhow::Error,
    also_usage: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> std::process::ExitCode {
    // One write, so that the lines of workers sharing a terminal do not interleave.
    let line = format!("error: {error:#}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    std::process::ExitCode::from(exit_code(error, also_usage) as u8)
}

/// Rejects an output file path given to option `flag` whose folder does not exist or that
/// names a folder, before any work starts.
///
/// # Errors
///
/// A [`UsageError`] naming the option, the path and what is wrong.
pub fn check_output_file(flag: &str, path: &Path) -> anyhow::Result<()> {
    let folder = output_folder(path);
    if !folder.is_dir() {
        let message = format!("{flag} {}: folder {} not found", path.display(), folder.display());
        return Err(UsageError(message).into());
    }
    if path.is_dir() {
        let message = format!("{flag} {} is a folder; give a file name", path.display());
        return Err(UsageError(message).into());
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it to `path`, so
/// `path` is either the old file or the complete new one.
///
/// # Errors
///
/// The I/O error, with `path` in its context; the temporary file is removed.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;

    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = output_folder(path).join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> anyhow::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        error.context(format!("cannot write {}", path.display()))
    })
}

/// Returns the folder a file path is in (`.` for a bare file name).
fn output_folder(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Returns the help text of a `--recipe NAME|FILE` option, listing [`Recipe::NAMES`].
pub fn recipe_help() -> String {
    format!(
        "A named recipe ({}) or a JSON file with one recipe object: `steps`, and optionally \
         `name`, `views` and `output`",
        Recipe::NAMES.join(", ")
    )
}

/// Returns the recipe called `spec`, or the recipe in the JSON file `spec`.
///
/// `spec` is read as a file when a file of that name exists or when it ends in `.json`; else
/// it is a name of [`Recipe::named`].
///
/// # Errors
///
/// A [`UsageError`] for an unknown name, a file that cannot be read, or invalid recipe JSON.
pub fn load_recipe(spec: &str) -> anyhow::Result<Recipe> {
    let path = Path::new(spec);
    let looks_like_file = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !path.is_file() && !looks_like_file {
        return Recipe::named(spec).map_err(|_| {
            UsageError(format!(
                "unknown recipe {spec:?}; named recipes: {}; or give a JSON file",
                Recipe::NAMES.join(", ")
            ))
            .into()
        });
    }

    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read the recipe file {spec}: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{spec}: invalid recipe JSON: {e}")).into())
}

/// The `--precision` values of `train` and `step-bench`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Everything in f32.
    F32,
    /// Mixed precision with bfloat16 (CUDA).
    Bf16,
    /// Mixed precision with float16 and loss scaling (CUDA).
    F16,
}

impl From<PrecisionArg> for expanse_trainer::device::Precision {
    fn from(arg: PrecisionArg) -> Self {
        match arg {
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::Bf16 => Self::Bf16,
            PrecisionArg::F16 => Self::F16,
        }
    }
}
