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

/// Prints `error` with its chain of causes on one line, as `error: a: b: c`, and returns
/// `code` for `std::process::exit`.
pub fn report(error: &anyhow::Error, code: i32) -> i32 {
    eprintln!("error: {error:#}");
    code
}
