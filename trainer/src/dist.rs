//! Data-parallel training across processes on libtorch's distributed engine (c10d).
//!
//! Processes find each other the way PyTorch's `env://` initialisation does: rank 0 serves a
//! TCP store at `MASTER_ADDR:MASTER_PORT`, every process names its `RANK` out of `WORLD_SIZE`,
//! and a Gloo process group connects them all. torchrun, SLURM scripts and Kubernetes
//! operators set these variables; [`Launch::from_env`] reads them.
//!
//! The engine is reached through a small C++ bridge (`csrc/c10d.cpp`) because tch binds ATen
//! but not c10d. [`ProcessGroup`] owns the bridge's handle and offers what data-parallel
//! training needs: broadcasts, sums of counters and batch normalisation with statistics over
//! all ranks. [`GradientReducer`] is PyTorch DDP's reducer, which averages gradients in
//! buckets while the backward pass runs.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

use crate::error::{Error, Result};

/// Bytes of gradient reduced per bucket, PyTorch DDP's default of 25 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Time a rendezvous or a collective waits for the other ranks before failing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

const ERROR_BYTES: usize = 2048;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    use tch::Tensor;

    /// tch's tensor handle, which the bridge reads as an `at::Tensor*`.
    pub type RawTensor = *mut c_void;

    /// Returns the raw handle of `tensor` for the bridge.
    pub fn raw(tensor: &Tensor) -> RawTensor {
        tensor.as_ptr() as RawTensor
    }

    extern "C" {
        pub fn expanse_c10d_group_new(
            host: *const c_char,
            port: u16,
            rank: c_int,
            size: c_int,
            timeout_ms: i64,
            agent_store: c_int,
            prefix: *const c_char,
            interface: *const c_char,
            err: *mut c_char,
            len: usize,
        ) -> *mut c_void;
        pub fn expanse_c10d_group_free(group: *mut c_void);
        pub fn expanse_c10d_all_reduce(
            group: *mut c_void,
            tensors: *const RawTensor,
            count: usize,
            average: c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn expanse_c10d_broadcast(
            group: *mut c_void,
            tensors: *const RawTensor,
            count: usize,
            root: c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn expanse_c10d_barrier(group: *mut c_void, err: *mut c_char, len: usize) -> c_int;
        pub fn expanse_c10d_reducer_new(
            group: *mut c_void,
            params: *const RawTensor,
            count: usize,
            bucket_bytes: i64,
            err: *mut c_char,
            len: usize,
        ) -> *mut c_void;
        pub fn expanse_c10d_reducer_free(reducer: *mut c_void);
        pub fn expanse_c10d_reducer_prepare(
            reducer: *mut c_void,
            sync: c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub fn expanse_c10d_sync_batch_norm(
            group: *mut c_void,
            input: RawTensor,
            weight: RawTensor,
            bias: RawTensor,
            running_mean: RawTensor,
            running_var: RawTensor,
            momentum: f64,
            eps: f64,
            err: *mut c_char,
            len: usize,
        ) -> RawTensor;
    }
}

/// Where this process sits in a data-parallel job: torchrun's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Host of rank 0's TCP store (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of rank 0's TCP store (`MASTER_PORT`).
    pub master_port: u16,
    /// This process's rank, `0..world_size` (`RANK`).
    pub rank: usize,
    /// Number of processes (`WORLD_SIZE`).
    pub world_size: usize,
    /// This process's rank among those on its machine (`LOCAL_RANK`, else `RANK`). It would
    /// pick the GPU of a multi-GPU run, which this build does not offer yet.
    pub local_rank: usize,
    /// Whether torchrun's agent serves the TCP store (`TORCHELASTIC_USE_AGENT_STORE=True`), so
    /// that rank 0 connects to it like the others instead of serving its own.
    pub agent_store: bool,
    /// How often torchrun has restarted the workers (`TORCHELASTIC_RESTART_COUNT`), which
    /// keeps each attempt's keys apart in the agent's store.
    pub restart_count: usize,
}

impl Launch {
    /// Reads `MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE` and `LOCAL_RANK` from the
    /// environment. Returns `None` when neither `WORLD_SIZE` nor `RANK` is set: a
    /// single-process run.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable that is missing or malformed, or a `RANK` outside
    /// `0..WORLD_SIZE`.
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Launch::from_env`] with the variables given by `lookup`.
    ///
    /// # Errors
    ///
    /// As [`Launch::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let Some(world) = lookup("WORLD_SIZE") else {
            // PyTorch's env:// rejects this too: a forgotten WORLD_SIZE would train alone.
            if let Some(rank) = lookup("RANK") {
                return Err(Error::Config(format!(
                    "RANK={rank} is set but WORLD_SIZE is not; set WORLD_SIZE for a \
                     data-parallel run, or unset RANK"
                )));
            }
            return Ok(None);
        };

        let number = |name: &str, text: &str| -> Result<usize> {
            text.trim().parse::<usize>().map_err(|_| {
                Error::Config(format!("{name}={text:?} is not a non-negative whole number"))
            })
        };
        let required = |name: &str| -> Result<String> {
            lookup(name).filter(|value| !value.trim().is_empty()).ok_or_else(|| {
                Error::Config(format!(
                    "{name} is not set, but WORLD_SIZE={world} asks for a data-parallel run; \
                     set MASTER_ADDR, MASTER_PORT and RANK too (torchrun sets them all)"
                ))
            })
        };

        let world_size = number("WORLD_SIZE", &world)?;
        if world_size == 0 {
            return Err(Error::Config("WORLD_SIZE=0: a run needs at least one process".into()));
        }
        let rank = number("RANK", &required("RANK")?)?;
        if rank >= world_size {
            return Err(Error::Config(format!(
                "RANK={rank} is outside 0..{world_size} (WORLD_SIZE={world_size})"
            )));
        }

        let master_addr = required("MASTER_ADDR")?.trim().to_string();
        let port_text = required("MASTER_PORT")?;
        let master_port = match port_text.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(Error::Config(format!(
                    "MASTER_PORT={port_text:?} is not a port number in 1..=65535"
                )))
            }
        };

        let local_rank = match lookup("LOCAL_RANK") {
            Some(text) => number("LOCAL_RANK", &text)?,
            None => rank,
        };
        let agent_store = lookup("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        let restart_count = match lookup("TORCHELASTIC_RESTART_COUNT") {
            Some(text) => number("TORCHELASTIC_RESTART_COUNT", &text)?,
            None => 0,
        };
        Ok(Some(Launch {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            agent_store,
            restart_count,
        }))
    }

    /// Returns the launch of the only process of a single-process run.
    pub fn single() -> Launch {
        Launch {
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            agent_store: false,
            restart_count: 0,
        }
    }
}

/// A Gloo process group of all ranks of a job.
///
/// Collectives must be called by every rank in the same order; a rank that stops calling them
/// makes the others fail after the group's timeout.
#[derive(Debug)]
pub struct ProcessGroup {
    handle: NonNull<c_void>,
    rank: usize,
    size: usize,
}

// SAFETY: c10d backends are used from several threads by PyTorch itself; the handle is only
// freed on drop.
unsafe impl Send for ProcessGroup {}
// SAFETY: as above; the bridge's functions take the handle without mutating it.
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the job `launch` describes. Rank 0 serves the TCP store and waits up to `timeout`
    /// for the others; the others retry connecting for as long. Gloo binds to the network
    /// interface named by `GLOO_SOCKET_IFNAME` when set, as in PyTorch.
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] naming `MASTER_ADDR`, `MASTER_PORT`, `RANK` and `WORLD_SIZE` when
    /// the rendezvous fails or times out.
    pub fn join(launch: &Launch, timeout: Duration) -> Result<ProcessGroup> {
        let describe = || {
            format!(
                "rendezvous at MASTER_ADDR={} MASTER_PORT={} as RANK={} of WORLD_SIZE={}",
                launch.master_addr, launch.master_port, launch.rank, launch.world_size
            )
        };
        let host = CString::new(launch.master_addr.as_str()).map_err(|_| {
            Error::Config(format!("MASTER_ADDR={:?} contains a NUL byte", launch.master_addr))
        })?;
        let prefix = CString::new(format!("expanse/{}/", launch.restart_count))
            .expect("the prefix has no NUL");
        let interface = std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default();
        let interface = CString::new(interface)
            .map_err(|_| Error::Config("GLOO_SOCKET_IFNAME contains a NUL byte".into()))?;
        let mut err = vec![0 as c_char; ERROR_BYTES];
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: the strings are NUL-terminated and outlive the call; `err` has `len` bytes.
        let handle = unsafe {
            ffi::expanse_c10d_group_new(
                host.as_ptr(),
                launch.master_port,
                launch.rank as c_int,
                launch.world_size as c_int,
                timeout_ms,
                c_int::from(launch.agent_store),
                prefix.as_ptr(),
                interface.as_ptr(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        match NonNull::new(handle) {
            Some(handle) => Ok(ProcessGroup { handle, rank: launch.rank, size: launch.world_size }),
            None => Err(Error::Distributed(format!(
                "{} failed within {} s: {}",
                describe(),
                timeout.as_secs(),
                message(&err)
            ))),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sums `tensors` over all ranks in place.
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when a rank fails or the group's timeout passes.
    pub fn all_reduce_sum(&self, tensors: &[&Tensor]) -> Result<()> {
        self.all_reduce(tensors, false)
    }

    /// Averages `tensors` over all ranks in place.
    ///
    /// # Errors
    ///
    /// As [`ProcessGroup::all_reduce_sum`].
    pub fn all_reduce_mean(&self, tensors: &[&Tensor]) -> Result<()> {
        self.all_reduce(tensors, true)
    }

    fn all_reduce(&self, tensors: &[&Tensor], average: bool) -> Result<()> {
        let raw: Vec<ffi::RawTensor> = tensors.iter().map(|t| ffi::raw(t)).collect();
        let mut err = vec![0 as c_char; ERROR_BYTES];
        // SAFETY: the handles point at live tensors borrowed for the call.
        let status = unsafe {
            ffi::expanse_c10d_all_reduce(
                self.handle.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                c_int::from(average),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        self.check(status, "all-reduce", &err)
    }

    /// Overwrites `tensors` on every rank with rank `root`'s.
    ///
    /// # Errors
    ///
    /// As [`ProcessGroup::all_reduce_sum`].
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        let raw: Vec<ffi::RawTensor> = tensors.iter().map(|t| ffi::raw(t)).collect();
        let mut err = vec![0 as c_char; ERROR_BYTES];
        // SAFETY: as in `all_reduce`.
        let status = unsafe {
            ffi::expanse_c10d_broadcast(
                self.handle.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                root as c_int,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        self.check(status, "broadcast", &err)
    }

    /// Waits until every rank has called it.
    ///
    /// # Errors
    ///
    /// As [`ProcessGroup::all_reduce_sum`].
    pub fn barrier(&self) -> Result<()> {
        let mut err = vec![0 as c_char; ERROR_BYTES];
        // SAFETY: `err` has `len` bytes.
        let status =
            unsafe { ffi::expanse_c10d_barrier(self.handle.as_ptr(), err.as_mut_ptr(), err.len()) };
        self.check(status, "barrier", &err)
    }

    /// Sums `values` over all ranks, through an f64 tensor.
    ///
    /// # Errors
    ///
    /// As [`ProcessGroup::all_reduce_sum`].
    pub fn sum_values(&self, values: &mut [f64]) -> Result<()> {
        let tensor = Tensor::from_slice(values);
        self.all_reduce_sum(&[&tensor])?;
        tensor.copy_data(values, values.len());
        Ok(())
    }

    /// Batch normalisation in training mode with mean and variance over the batches of all
    /// ranks, as PyTorch's `SyncBatchNorm`; updates the running statistics with `momentum`.
    /// Every rank must call it for the same layers in the same order, forward and backward.
    ///
    /// # Errors
    ///
    /// As [`ProcessGroup::all_reduce_sum`], and for input that is not N x C x H x W.
    pub fn sync_batch_norm(
        &self,
        input: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        running: (&Tensor, &Tensor),
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        let mut err = vec![0 as c_char; ERROR_BYTES];
        // SAFETY: the handles point at live tensors; a non-null result is a new `at::Tensor`
        // that the returned `Tensor` owns.
        unsafe {
            let out = ffi::expanse_c10d_sync_batch_norm(
                self.handle.as_ptr(),
                ffi::raw(input),
                ffi::raw(weight),
                ffi::raw(bias),
                ffi::raw(running.0),
                ffi::raw(running.1),
                momentum,
                eps,
                err.as_mut_ptr(),
                err.len(),
            );
            if out.is_null() {
                return Err(self.failure("synchronised batch norm", &err));
            }
            Ok(Tensor::from_ptr(out.cast()))
        }
    }

    fn check(&self, status: c_int, what: &str, err: &[c_char]) -> Result<()> {
        if status == 0 {
            Ok(())
        } else {
            Err(self.failure(what, err))
        }
    }

    fn failure(&self, what: &str, err: &[c_char]) -> Error {
        Error::Distributed(format!(
            "{what} failed on rank {} of {}: {}",
            self.rank,
            self.size,
            message(err)
        ))
    }
}

/// PyTorch DDP's reducer: averages the gradients of a fixed list of parameters over all ranks
/// during the backward pass.
///
/// Autograd hooks copy each gradient into its bucket as soon as backward produces it, and a
/// full bucket's all-reduce starts at once, so communication overlaps the rest of backward.
/// When backward returns, every parameter's gradient is the average over the ranks.
#[derive(Debug)]
pub struct GradientReducer {
    handle: NonNull<c_void>,
    // Collectives go through the group's process group, which the reducer keeps alive itself.
    rank: usize,
    size: usize,
}

// SAFETY: the reducer is used from the training thread and from libtorch's autograd engine,
// which PyTorch's DDP does too.
unsafe impl Send for GradientReducer {}

impl GradientReducer {
    /// Registers the hooks on `params`, which every rank must pass in the same order, in
    /// buckets of about `bucket_bytes` (the first of 1 MiB, so that it starts early).
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when libtorch rejects the parameters (for example, some on
    /// another device).
    pub fn new(group: &ProcessGroup, params: &[Tensor], bucket_bytes: usize) -> Result<Self> {
        let raw: Vec<ffi::RawTensor> = params.iter().map(ffi::raw).collect();
        let mut err = vec![0 as c_char; ERROR_BYTES];
        let bucket_bytes = i64::try_from(bucket_bytes).unwrap_or(i64::MAX);
        // SAFETY: the handles point at live tensors; the reducer keeps its own references.
        let handle = unsafe {
            ffi::expanse_c10d_reducer_new(
                group.handle.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                bucket_bytes,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        match NonNull::new(handle) {
            Some(handle) => Ok(GradientReducer { handle, rank: group.rank, size: group.size }),
            None => Err(group.failure("gradient reducer setup", &err)),
        }
    }

    /// Readies the next backward pass: with `sync` it averages the gradients over all ranks,
    /// without it (the earlier micro-batches of an accumulated batch) it only accumulates them
    /// locally. Every rank must make the same calls.
    ///
    /// # Errors
    ///
    /// [`Error::Distributed`] when the collective that reorders the buckets fails.
    pub fn prepare(&self, sync: bool) -> Result<()> {
        let mut err = vec![0 as c_char; ERROR_BYTES];
        // SAFETY: `err` has `len` bytes; the handle is live until drop.
        let status = unsafe {
            ffi::expanse_c10d_reducer_prepare(
                self.handle.as_ptr(),
                c_int::from(sync),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if status == 0 {
            return Ok(());
        }
        Err(Error::Distributed(format!(
            "gradient reducer failed on rank {} of {}: {}",
            self.rank,
            self.size,
            message(&err)
        )))
    }
}

impl Drop for GradientReducer {
    fn drop(&mut self) {
        // SAFETY: the handle came from `expanse_c10d_reducer_new` and is freed once.
        unsafe { ffi::expanse_c10d_reducer_free(self.handle.as_ptr()) }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from `expanse_c10d_group_new` and is freed once.
        unsafe { ffi::expanse_c10d_group_free(self.handle.as_ptr()) }
    }
}

fn message(err: &[c_char]) -> String {
    // SAFETY: the bridge always NUL-terminates the buffer, which starts zeroed.
    let text = unsafe { CStr::from_ptr(err.as_ptr()) };
    let text = text.to_string_lossy();
    let text = text.trim();
    if text.is_empty() {
        "no message from libtorch".into()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
    }

    #[test]
    fn no_world_size_is_a_single_process_run() {
        assert_eq!(Launch::from_lookup(lookup(&[("LOCAL_RANK", "3")])).unwrap(), None);
        let error = Launch::from_lookup(lookup(&[("RANK", "3")])).unwrap_err().to_string();
        assert!(error.contains("RANK=3 is set but WORLD_SIZE is not"), "{error}");
    }

    #[test]
    fn reads_torchrun_variables() {
        let vars = [
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "10.0.0.5"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "1"),
        ];
        let launch = Launch::from_lookup(lookup(&vars)).unwrap().unwrap();
        assert_eq!(
            launch,
            Launch {
                master_addr: "10.0.0.5".into(),
                master_port: 29400,
                rank: 2,
                world_size: 4,
                local_rank: 0,
                agent_store: true,
                restart_count: 1,
            }
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")], "RANK is not set"),
            (&[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_PORT", "1")], "MASTER_ADDR is not set"),
            (
                &[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")],
                "RANK=2 is outside 0..2",
            ),
            (
                &[("WORLD_SIZE", "two"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")],
                "WORLD_SIZE=\"two\"",
            ),
            (
                &[
                    ("WORLD_SIZE", "2"),
                    ("RANK", "0"),
                    ("MASTER_ADDR", "h"),
                    ("MASTER_PORT", "70000"),
                ],
                "MASTER_PORT=\"70000\"",
            ),
        ];
        for (vars, expected) in cases {
            let error = Launch::from_lookup(lookup(vars)).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
        }
    }

    #[test]
    fn one_rank_group_reduces_to_itself() {
        // A group of one on a free port: the reductions are identities, the averaging too.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let launch = Launch { master_port: port, ..Launch::single() };
        let group = ProcessGroup::join(&launch, Duration::from_secs(30)).unwrap();
        let values = Tensor::from_slice(&[1.0f32, -2.0, 3.5]);
        group.all_reduce_mean(&[&values]).unwrap();
        assert_eq!(Vec::<f32>::try_from(&values).unwrap(), vec![1.0, -2.0, 3.5]);
        let mut counts = [4.0, 5.0];
        group.sum_values(&mut counts).unwrap();
        assert_eq!(counts, [4.0, 5.0]);
        group.barrier().unwrap();
    }

    #[test]
    fn ranks_join_through_an_agent_store() {
        // A one-rank group serves the store, as torchrun's agent does. Two ranks then join as
        // its clients under their own key prefix and average a tensor.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let agent = Launch { master_port: port, ..Launch::single() };
        let _agent = ProcessGroup::join(&agent, Duration::from_secs(30)).unwrap();

        let ranks: Vec<_> = (0..2)
            .map(|rank| {
                let launch = Launch {
                    master_port: port,
                    rank,
                    world_size: 2,
                    agent_store: true,
                    restart_count: 1,
                    ..Launch::single()
                };
                std::thread::spawn(move || {
                    let group = ProcessGroup::join(&launch, Duration::from_secs(30)).unwrap();
                    let values = Tensor::from_slice(&[rank as f32 * 2.0]);
                    group.all_reduce_mean(&[&values]).unwrap();
                    Vec::<f32>::try_from(&values).unwrap()
                })
            })
            .collect();
        for rank in ranks {
            assert_eq!(rank.join().unwrap(), vec![1.0]);
        }
    }

    #[test]
    fn sync_batch_norm_matches_the_global_batch() {
        // Two ranks each normalise half of a batch whose mean is large against its spread.
        // Outputs, input gradients and summed weight gradients must equal those of plain
        // batch norm on the whole batch.
        tch::manual_seed(3);
        let opts = (tch::Kind::Float, tch::Device::Cpu);
        let batch = Tensor::randn([8, 3, 5, 5], opts) * 3.0 + 40.0;
        let upstream = Tensor::randn([8, 3, 5, 5], opts);
        let weight = Tensor::from_slice(&[1.5f32, 0.5, -1.0]);
        let bias = Tensor::from_slice(&[0.1f32, 0.0, -0.2]);

        let full_input = batch.copy().set_requires_grad(true);
        let full_weight = weight.copy().set_requires_grad(true);
        let full_bias = bias.copy().set_requires_grad(true);
        let (mean, var) = (Tensor::zeros([3], opts), Tensor::ones([3], opts));
        let full = full_input.batch_norm(
            Some(&full_weight),
            Some(&full_bias),
            Some(&mean),
            Some(&var),
            true,
            0.1,
            1e-5,
            false,
        );
        (&full * &upstream).sum(tch::Kind::Float).backward();

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let halves: Vec<_> = (0..2)
            .map(|rank| {
                let input = batch.narrow(0, 4 * rank as i64, 4).copy();
                let upstream = upstream.narrow(0, 4 * rank as i64, 4).copy();
                let (weight, bias) = (weight.copy(), bias.copy());
                std::thread::spawn(move || {
                    let launch =
                        Launch { master_port: port, rank, world_size: 2, ..Launch::single() };
                    let group = ProcessGroup::join(&launch, Duration::from_secs(30)).unwrap();
                    let input = input.set_requires_grad(true);
                    let weight = weight.set_requires_grad(true);
                    let bias = bias.set_requires_grad(true);
                    let running = (Tensor::zeros([3], opts), Tensor::ones([3], opts));
                    let out = group
                        .sync_batch_norm(
                            &input,
                            &weight,
                            &bias,
                            (&running.0, &running.1),
                            0.1,
                            1e-5,
                        )
                        .unwrap();
                    (&out * &upstream).sum(tch::Kind::Float).backward();
                    (out.detach(), input.grad(), weight.grad(), bias.grad(), running.0)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();

        let close = |a: &Tensor, b: &Tensor| f64::try_from((a - b).abs().max()).unwrap();
        let out = Tensor::cat(&[&halves[0].0, &halves[1].0], 0);
        assert!(close(&out, &full) < 1e-5, "outputs differ by {}", close(&out, &full));
        let grad = Tensor::cat(&[&halves[0].1, &halves[1].1], 0);
        let full_grad = full_input.grad();
        assert!(
            close(&grad, &full_grad) < 1e-4,
            "input gradients differ by {}",
            close(&grad, &full_grad)
        );
        let weight_grad = &halves[0].2 + &halves[1].2;
        assert!(close(&weight_grad, &full_weight.grad()) < 1e-3, "weight gradients differ");
        let bias_grad = &halves[0].3 + &halves[1].3;
        assert!(close(&bias_grad, &full_bias.grad()) < 1e-3, "bias gradients differ");
        assert!(close(&halves[0].4, &mean) < 1e-4, "running means differ");
    }

    #[test]
    fn unreachable_store_names_the_variables() {
        // Nothing listens on the port: the rank must fail within the timeout, not hang.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let launch = Launch { master_port: port, rank: 1, world_size: 2, ..Launch::single() };
        let error = ProcessGroup::join(&launch, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(error.contains(&format!("MASTER_PORT={port}")), "{error}");
        assert!(error.contains("RANK=1 of WORLD_SIZE=2"), "{error}");
    }
}
