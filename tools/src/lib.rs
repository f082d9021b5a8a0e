//! Shared pieces of the command-line tools: logging set-up, progress display and exit codes.

pub mod progress;

use std::io::IsTerminal;

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
    eprintln!("error: {error:#}");
    std::process::ExitCode::from(exit_code(error, also_usage) as u8)
}
