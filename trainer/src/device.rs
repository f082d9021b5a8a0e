//! The device a run computes on (`cpu`, `cuda`, `cuda:N`, `auto`) and its precision.
//!
//! The default libtorch of this project is the lean CPU build, without `libtorch_cuda.so`.
//! A binary built against it can still train on a GPU: when a run requests CUDA, the library
//! is loaded at run time with `dlopen` before libtorch first looks for CUDA, and its static
//! initialisers register the CUDA backend. [`cuda_library_dirs`] lists where it is looked
//! for; the README explains how to get it from PyPI's `torch` wheel.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// Environment variable naming a folder that contains `libtorch_cuda.so` (for example the `lib`
/// folder of a `pip install torch` with CUDA).
pub const CUDA_LIB_ENV: &str = "EXPANSE_TORCH_CUDA_LIB";

/// File name of libtorch's CUDA library.
const CUDA_LIBRARY: &str = "libtorch_cuda.so";

/// Resolves a device name: `cpu`, `cuda` (device 0), `cuda:N` or `auto` (the first CUDA
/// device when one is usable, else the CPU).
///
/// # Errors
///
/// [`Error::Config`] for another name, or for a CUDA device that is not there. The message
/// states whether `libtorch_cuda.so` was found and where it was looked for.
pub fn resolve(name: &str) -> Result<Device> {
    let requested = parse(name)?;
    match requested {
        Requested::Cpu => Ok(Device::Cpu),
        Requested::Auto => Ok(match cuda_devices() {
            Ok(count) if count > 0 => Device::Cuda(0),
            _ => Device::Cpu,
        }),
        Requested::Cuda(index) => {
            let count = cuda_devices()
                .map_err(|why| Error::Config(format!("device {name:?} is not usable: {why}")))?;
            if index >= count {
                return Err(Error::Config(format!(
                    "device {name:?} is not usable: libtorch sees {count} CUDA device(s)"
                )));
            }
            Ok(Device::Cuda(index))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requested {
    Cpu,
    Cuda(usize),
    Auto,
}

fn parse(name: &str) -> Result<Requested> {
    match name {
        "cpu" => Ok(Requested::Cpu),
        "cuda" => Ok(Requested::Cuda(0)),
        "auto" => Ok(Requested::Auto),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Ok(Requested::Cuda(index)),
            _ => Err(Error::Config(format!(
                "unknown device {name:?}: expected cpu, cuda, cuda:N (N = 0, 1, ...) or auto"
            ))),
        },
    }
}

/// Folders searched for `libtorch_cuda.so`, in order: [`CUDA_LIB_ENV`], `$LIBTORCH/lib`, then
/// the dynamic linker's own search (`LD_LIBRARY_PATH`, the binary's run path).
pub fn cuda_library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(CUDA_LIB_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(root) = std::env::var_os("LIBTORCH") {
        dirs.push(PathBuf::from(root).join("lib"));
    }
    dirs
}

/// Number of CUDA devices libtorch can use, loading `libtorch_cuda.so` first when the
/// binary was linked without it.
///
/// # Errors
///
/// A sentence saying why CUDA is not usable.
pub fn cuda_devices() -> std::result::Result<usize, String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(load_cuda_library).clone()?;
    let count = tch::Cuda::device_count().max(0) as usize;
    if count == 0 {
        return Err("libtorch_cuda.so is loaded but no CUDA device is visible (driver, \
                    CUDA_VISIBLE_DEVICES?)"
            .to_string());
    }
    Ok(count)
}

/// Loads `libtorch_cuda.so` for the rest of the process. Must run before libtorch's first
/// CUDA query, which caches its result: [`cuda_devices`] is the only caller.
fn load_cuda_library() -> std::result::Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

    let mut candidates: Vec<PathBuf> =
        cuda_library_dirs().into_iter().map(|dir| dir.join(CUDA_LIBRARY)).collect();
    candidates.retain(|path| path.exists());
    // A bare name lets the dynamic linker search LD_LIBRARY_PATH and the run path; when the
    // binary already links the library this returns the loaded copy.
    candidates.push(PathBuf::from(CUDA_LIBRARY));
    let mut failures = Vec::new();
    for path in candidates {
        // SAFETY: libtorch_cuda.so is the CUDA half of the libtorch this binary links. Loading it
        // runs its static initialisers, which register the CUDA backend and nothing else.
        match unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(library) => {
                // Kept loaded for the life of the process: its kernels are now registered.
                std::mem::forget(library);
                return Ok(());
            }
            Err(error) => failures.push(format!("{}: {error}", path.display())),
        }
    }
    Err(format!(
        "{CUDA_LIBRARY} could not be loaded ({}); this libtorch is CPU-only: set {CUDA_LIB_ENV} to \
         the lib folder of a CUDA build of torch 2.11 (see the README, \"Training on a GPU\")",
        failures.join("; ")
    ))
}

/// Arithmetic of the forward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Automatic mixed precision with bfloat16: f32 weights, bf16 matrix products and
    /// convolutions on CUDA. No loss scaling is needed.
    Bf16,
    /// Automatic mixed precision with float16 and dynamic loss scaling.
    F16,
}

impl Precision {
    /// Returns whether the forward pass runs under autocast.
    pub fn is_mixed(self) -> bool {
        self != Precision::F32
    }

    /// Checks that `device` supports this precision.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for mixed precision on the CPU.
    pub fn check(self, device: Device) -> Result<()> {
        if self.is_mixed() && device == Device::Cpu {
            return Err(Error::Config(format!(
                "precision {} needs a CUDA device; the CPU trains in f32",
                self.name()
            )));
        }
        Ok(())
    }

    /// Returns the name used on the command line and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Runs `f` under CUDA autocast with this precision's reduced type; f32 runs it as is.
    pub fn autocast<T>(self, f: impl FnOnce() -> T) -> T {
        let kind = match self {
            Precision::F32 => return f(),
            Precision::Bf16 => Kind::BFloat16,
            Precision::F16 => Kind::Half,
        };
        set_cuda_autocast_kind(kind);
        tch::autocast(true, f)
    }
}

/// Sets the reduced type CUDA autocast casts to, which tch does not expose.
fn set_cuda_autocast_kind(kind: Kind) {
    // c10::DeviceType::CUDA and c10::ScalarType::{Half, BFloat16}; both enums are int8_t.
    const CUDA: i8 = 1;
    let scalar_type: i8 = match kind {
        Kind::BFloat16 => 15,
        _ => 5,
    };
    extern "C" {
        // at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType) of libtorch_cpu,
        // by its Itanium-mangled name. It stores the type in a thread-local table and cannot
        // throw.
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        fn at_set_autocast_dtype(device: i8, dtype: i8);
    }
    // SAFETY: the symbol has the declared signature in libtorch 2.11 (the version tch 0.24
    // links); both arguments are valid enum values.
    unsafe { at_set_autocast_dtype(CUDA, scalar_type) }
}

/// Returns `tensor` (4-D) with channels-last strides: the same shape, NHWC in memory.
pub fn channels_last(tensor: &Tensor) -> Tensor {
    tensor.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Converts every 4-D variable of `vs` (the convolution weights) to channels-last layout in
/// place. Call it before creating the optimizer, whose buffers copy the layout.
pub fn convert_to_channels_last(vs: &tch::nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut variable) in vs.variables() {
            if variable.dim() == 4 {
                variable.set_data(&channels_last(&variable));
            }
        }
    });
}

/// Dynamic loss scaling for float16 training: the loss is multiplied by `scale` before the
/// backward pass so that small gradients do not underflow, and the gradients are divided by
/// it before the update. A step whose gradients overflow is skipped and the scale halved;
/// after `growth_interval` good steps in a row the scale doubles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Current multiplier of the loss.
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub good_steps: usize,
    /// Good steps after which the scale doubles.
    pub growth_interval: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: 65536.0, good_steps: 0, growth_interval: 2000 }
    }
}

impl LossScaler {
    /// Divides every gradient in `grads` by the scale and returns whether all are finite.
    /// When some are not, the gradients are left as they are, the scale halves and the
    /// caller skips the update.
    pub fn unscale(&mut self, grads: &mut [Tensor]) -> bool {
        let finite = tch::no_grad(|| {
            grads.iter().filter(|g| g.defined()).all(|g| {
                let all: bool = g.isfinite().all().try_into().unwrap_or(false);
                all
            })
        });
        if !finite {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
            return false;
        }
        let inverse = 1.0 / self.scale;
        tch::no_grad(|| {
            for grad in grads.iter_mut().filter(|g| g.defined()) {
                let _ = grad.g_mul_scalar_(inverse);
            }
        });
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_reject() {
        assert_eq!(parse("cpu").unwrap(), Requested::Cpu);
        assert_eq!(parse("cuda").unwrap(), Requested::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), Requested::Cuda(3));
        assert_eq!(parse("auto").unwrap(), Requested::Auto);
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""] {
            let message = parse(bad).unwrap_err().to_string();
            assert!(message.contains("unknown device"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn mixed_precision_is_refused_on_the_cpu() {
        assert!(Precision::F32.check(Device::Cpu).is_ok());
        let message = Precision::Bf16.check(Device::Cpu).unwrap_err().to_string();
        assert!(message.contains("bf16 needs a CUDA device"), "{message}");
        assert!(Precision::F16.check(Device::Cuda(0)).is_ok());
    }

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let y = channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(x.equal(&y));
    }

    #[test]
    fn loss_scaler_skips_overflow_and_unscales_finite_gradients() {
        let mut scaler = LossScaler { scale: 8.0, good_steps: 0, growth_interval: 2 };
        let mut grads = vec![Tensor::from_slice(&[8.0f32, f32::INFINITY])];
        assert!(!scaler.unscale(&mut grads));
        assert_eq!(scaler.scale, 4.0);

        let mut grads = vec![Tensor::from_slice(&[8.0f32, -4.0])];
        assert!(scaler.unscale(&mut grads));
        assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), vec![2.0, -1.0]);
        assert_eq!(scaler.scale, 4.0);
        let mut grads = vec![Tensor::from_slice(&[1.0f32])];
        assert!(scaler.unscale(&mut grads));
        assert_eq!(scaler.scale, 8.0, "two good steps in a row double the scale");
    }

    #[test]
    fn cuda_on_a_cpu_only_build_says_why() {
        // On a machine with a GPU and its libraries the request succeeds instead.
        if let Err(error) = resolve("cuda:0") {
            let message = error.to_string();
            assert!(message.contains("device \"cuda:0\" is not usable"), "{message}");
            assert_eq!(resolve("auto").unwrap(), Device::Cpu);
        }
    }
}
