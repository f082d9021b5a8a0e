//! `--nproc-per-node N`: starts N worker processes of this run on this machine, as torchrun
//! does, and waits for them.
//!
//! Each worker is this program again with the same arguments less `--nproc-per-node`, and
//! torchrun's variables set: `MASTER_ADDR=127.0.0.1`, `MASTER_PORT` (the caller's, else a free
//! port), `RANK` = `LOCAL_RANK` = its index and `WORLD_SIZE=N`. Without `--threads`, each
//! worker gets an equal share of the cores.
//!
//! When a worker fails, the others are stopped and the launcher exits with the failed
//! worker's status (128 + the signal for a worker a signal ended). Ctrl-C, SIGTERM or SIGHUP
//! sent to the launcher reach every worker as SIGINT, so they stop together at the same step
//! with a checkpoint. A worker also gets SIGTERM when the launcher itself dies.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::{Arc, Mutex};
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

/// Returns whether `args` set `--threads`.
fn sets_threads(args: &[OsString]) -> bool {
    args.iter().any(|arg| {
        arg.to_str().is_some_and(|text| text == "--threads" || text.starts_with("--threads="))
    })
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
    let mut args = without_launcher_option(std::env::args_os().skip(1));
    if !sets_threads(&args) {
        // Workers that each took every core would oversubscribe them, as torchrun's
        // OMP_NUM_THREADS=1 avoids.
        let cores = thread::available_parallelism().map(usize::from).unwrap_or(1);
        args.push("--threads".into());
        args.push((cores / workers).max(1).to_string().into());
    }
    let port = match std::env::var("MASTER_PORT") {
        Ok(port) => port,
        Err(_) => free_port()?.to_string(),
    };

    let pids: Arc<Mutex<Vec<u32>>> = Arc::default();
    let handler_pids = Arc::clone(&pids);
    let handler = ctrlc::set_handler(move || {
        let pids = handler_pids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for &pid in pids.iter() {
            // SAFETY: kill(2) only sends a signal; a worker that already ended is ignored.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        }
    });
    if let Err(error) = handler {
        log::warn!("a signal to the launcher will not reach its workers: {error}");
    }
    eprintln!("starting {workers} workers on 127.0.0.1:{port}");

    let mut children: Vec<Child> = Vec::with_capacity(workers);
    for rank in 0..workers {
        let mut command = Command::new(&program);
        command
            .args(&args)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", workers.to_string())
            .env("LOCAL_WORLD_SIZE", workers.to_string());
        // SAFETY: prctl(2) is async-signal-safe, as code between fork and exec must be.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => {
                pids.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(child.id());
                children.push(child);
            }
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
        let failed = statuses
            .iter()
            .enumerate()
            .find_map(|(rank, status)| status.filter(|s| !s.success()).map(|s| (rank, s)));
        if let Some((rank, status)) = failed {
            stop_all(&mut children);
            eprintln!("worker {rank} failed ({status}); stopped the others");
            return Ok(ExitCode::from(exit_code(status)));
        }
        if statuses.iter().all(Option::is_some) {
            return Ok(ExitCode::SUCCESS);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Returns a failed worker's exit code, or 128 + the signal that ended it, as shells report.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(1, 255) as u8,
        (None, Some(signal)) => (128 + signal).clamp(1, 255) as u8,
        (None, None) => 1,
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
        let expected = strings(&["--data", "d", "--epochs", "1"]);
        assert_eq!(without_launcher_option(args.into_iter()), expected);
        let args = strings(&["--nproc-per-node=4", "--run-dir", "r"]);
        assert_eq!(without_launcher_option(args.into_iter()), strings(&["--run-dir", "r"]));
    }

    #[test]
    fn finds_a_threads_option() {
        assert!(sets_threads(&strings(&["--threads", "1"])));
        assert!(sets_threads(&strings(&["--data", "d", "--threads=2"])));
        assert!(!sets_threads(&strings(&["--data", "d"])));
    }

    #[test]
    fn signal_deaths_exit_with_128_plus_the_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
    }
}
