//! `--nproc-per-node N`: starts N worker processes of this run on this machine, as torchrun
//! does, and waits for them.
//!
//! Each worker is this program again with the same arguments less `--nproc-per-node`, and
//! torchrun's variables set: `MASTER_ADDR=127.0.0.1`, `MASTER_PORT` (the caller's, else a free
//! port), `RANK` = `LOCAL_RANK` = its index and `WORLD_SIZE=N`. When a worker fails, the others
//! are stopped and the launcher exits with the failed worker's status. Ctrl-C reaches every
//! worker through the terminal, and they stop together at the same step.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::thread;
use std::time::Duration;

use anyhow::Context;

/// Removes `--nproc-per-node N` (or `--nproc-per-node=N`) from `args`.
pub fn without_launcher_option(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        match arg.to_str() {
            Some("--nproc-per-node") => skip_value = true,
            Some(text) if text.starts_with("--nproc-per-node=") => {}
            _ => out.push(arg),
        }
    }
    out
}

/// Runs `workers` copies of this program as ranks `0..workers` and returns the exit code of
/// the first that failed, or success.
pub fn run_workers(workers: usize) -> anyhow::Result<ExitCode> {
    if std::env::var_os("WORLD_SIZE").is_some() {
        anyhow::bail!(
            "--nproc-per-node starts its own workers, but WORLD_SIZE is set: this process is \
             already a worker of a launcher; drop --nproc-per-node or unset WORLD_SIZE"
        );
    }
    let program = std::env::current_exe().context("cannot find this program to start workers")?;
    let args = without_launcher_option(std::env::args_os().skip(1));
    let port = match std::env::var("MASTER_PORT") {
        Ok(port) => port,
        Err(_) => free_port()?.to_string(),
    };
    // Workers stop on Ctrl-C themselves; the launcher only waits for them.
    if let Err(error) = ctrlc::set_handler(|| {}) {
        log::warn!("Ctrl-C may end the launcher before its workers: {error}");
    }
    eprintln!("starting {workers} workers on 127.0.0.1:{port}");

    let mut children: Vec<Child> = Vec::with_capacity(workers);
    for rank in 0..workers {
        let child = Command::new(&program)
            .args(&args)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", workers.to_string())
            .env("LOCAL_WORLD_SIZE", workers.to_string())
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(error) => {
                stop_all(&mut children);
                return Err(error).with_context(|| {
                    format!("cannot start worker {rank} ({})", program.display())
                });
            }
        }
    }

    let mut statuses: Vec<Option<ExitStatus>> = vec![None; workers];
    loop {
        for (rank, child) in children.iter_mut().enumerate() {
            if statuses[rank].is_none() {
                statuses[rank] = child.try_wait().context("cannot wait for a worker")?;
            }
        }
        if let Some((rank, status)) = statuses
            .iter()
            .enumerate()
            .find_map(|(r, s)| s.filter(|s| !s.success()).map(|s| (r, s)))
        {
            stop_all(&mut children);
            eprintln!("worker {rank} failed ({status}); stopped the others");
            let code = status.code().unwrap_or(1).clamp(1, 255) as u8;
            return Ok(ExitCode::from(code));
        }
        if statuses.iter().all(Option::is_some) {
            return Ok(ExitCode::SUCCESS);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the workers still running and reaps them.
fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// Returns a TCP port that is free on 127.0.0.1 now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port for the workers' rendezvous; set MASTER_PORT")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn strips_the_option_in_both_spellings() {
        let args = strings(&["--data", "d", "--nproc-per-node", "2", "--epochs", "1"]);
        assert_eq!(
            without_launcher_option(args.into_iter()),
            strings(&["--data", "d", "--epochs", "1"])
        );
        let args = strings(&["--nproc-per-node=4", "--run-dir", "r"]);
        assert_eq!(without_launcher_option(args.into_iter()), strings(&["--run-dir", "r"]));
    }
}
