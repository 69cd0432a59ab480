//! # flow-programs
//!
//! What the flow programs (train-vae, density, potentials, the benchmarks' ports) share and
//! the library does not need:
//! - the backends this build's cargo features compile in (`ndarray`, `flex`, `wgpu`,
//!   `cuda`); library code stays generic over `B: Backend`, this crate names concrete
//!   choices;
//! - [`with_hot_workers_on`], the CPU backends' threads kept polling for a training run;
//! - [`keep_freed_memory`], the allocator advice of the programs' mimalloc;
//! - [`FusedAdamConfig`], the optimizer the programs train with, and [`AdamaxConfig`] for
//!   the protocols that ask for Adamax;
//! - [`interrupt`]: Ctrl-C as a request to stop after the current step;
//! - [`Devices`]: the `--devices` flag (several GPUs training together);
//! - [`files::write_atomic`]: every file the programs write, atomically, with a
//!   fault-injection hook (a full disk) for their tests.
//!
//! Backends:
//! - at compile time, [`Inner`] and [`Train`]: the preferred backend of the build (`cuda`
//!   wins over `wgpu`, `wgpu` over `flex`, `flex` over `ndarray`);
//! - at run time, [`Choice`]: any backend the build has (a program's `--backend` flag),
//!   handed to a [`Program`] generic over the backend.
//!
//! The GPU choices come twice: `wgpu` and `cuda` are burn's fused backends (burn-fusion
//! compiles chains of element-wise ops into single kernels); `wgpu-unfused` and
//! `cuda-unfused` are the plain `CubeBackend`s, on which flow-kernels' CubeCL kernels run.
//!
//! ```
//! use burn::tensor::{Tensor, backend::Backend};
//! use flow_programs::{Choice, Program};
//!
//! /// Sums a vector on whichever backend the user picked.
//! struct Sum(Vec<f32>);
//!
//! impl Program for Sum {
//!     type Output = f32;
//!     fn run<B: Backend>(self, _name: &'static str) -> f32 {
//!         let device = Default::default();
//!         let x = Tensor::<B, 1>::from_floats(self.0.as_slice(), &device);
//!         x.sum().into_scalar().elem()
//!     }
//! }
//!
//! # use burn::tensor::ElementConversion;
//! let choice: Choice = "ndarray".parse().unwrap();
//! assert_eq!(choice.run(Sum(vec![1.0, 2.0, 3.5])), 6.5);
//! assert!("tpu".parse::<Choice>().is_err());
//! ```

#![warn(missing_docs)]

/// The inference backend chosen by features: burn's fused wgpu backend ([`WgpuFused`]).
///
/// burn 0.21's fusion loses tensor handles ("Should have handle for tensor",
/// tracel-ai/burn#4347) when a tensor is used or dropped on a second thread while its own
/// thread still has ops queued on it; the programs keep every tensor op on their training
/// thread (docs/architecture.md, "Threads and burn-fusion"). The unfused backend, which runs
/// flow-kernels' CubeCL kernels, is [`Choice::WgpuUnfused`].
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Inner = WgpuFused;
/// The inference backend chosen by features: burn's fused CUDA backend ([`CudaFused`]).
#[cfg(feature = "cuda")]
pub type Inner = CudaFused;
/// The inference backend chosen by features.
#[cfg(all(feature = "flex", not(any(feature = "wgpu", feature = "cuda"))))]
pub type Inner = burn::backend::Flex;
/// The inference backend chosen by features.
#[cfg(all(
    feature = "ndarray",
    not(any(feature = "wgpu", feature = "flex", feature = "cuda"))
))]
pub type Inner = burn::backend::NdArray;

/// The training backend: [`Inner`] with autodiff.
pub type Train = burn::backend::Autodiff<Inner>;

/// Human-readable backend name, for logs and reports.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "flex") {
    "flex"
} else {
    "ndarray"
};

/// The default device of the backend.
pub fn device() -> burn::tensor::Device<Inner> {
    Default::default()
}

#[cfg(feature = "cuda")]
pub use flow_kernels::backends::{CudaFused, CudaInner};
#[cfg(feature = "wgpu")]
pub use flow_kernels::backends::{WgpuFused, WgpuInner};
pub mod adamax;
pub mod devices;
pub mod files;
pub mod interrupt;

pub use adamax::{Adamax, AdamaxConfig};
pub use devices::Devices;
pub use flow_kernels::{
    adam::{FusedAdam, FusedAdamConfig},
    workers::with_hot_workers_on,
};

/// A `--backend` name this build does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend `{name}` is not in this build (it has: {available}; cargo features add others)")]
pub struct UnknownBackend {
    /// The name asked for.
    pub name: String,
    /// The names this build has, comma-separated.
    pub available: String,
}

/// Turns off mimalloc's purging of freed memory, which otherwise hands pages back to the
/// kernel 10 ms after a free and faults them in again, zeroed, for the next tensor
/// (docs/benchmarks.md measures the cost). For programs whose global allocator
/// is mimalloc; without it this only sets an unused option.
///
/// # Safety
/// Call it before the program starts any other thread (first thing in `main`): mimalloc's
/// options are plain process-wide values that its threads read without synchronisation.
pub unsafe fn keep_freed_memory() {
    // `mi_option_purge_delay` is 15 in mimalloc 3's `mi_option_e` (libmimalloc-sys names
    // no constant for it); −1: never purge.
    // SAFETY: no pointer arguments; the caller guarantees no other thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
}

/// A backend compiled into this build, chosen at run time (the programs' `--backend`).
///
/// Parsed from its name (`"ndarray"`, `"flex"`, `"wgpu"`, `"cuda"`); a name this build
/// lacks is an error naming the ones it has. The default is the compile-time choice
/// [`Inner`] ([`NAME`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// burn's `NdArray` (CPU).
    #[cfg(feature = "ndarray")]
    Ndarray,
    /// burn's `Flex` (CPU, pure Rust).
    #[cfg(feature = "flex")]
    Flex,
    /// burn's fused wgpu backend ([`WgpuFused`]): element-wise chains compiled into
    /// single kernels.
    #[cfg(feature = "wgpu")]
    Wgpu,
    /// burn's unfused wgpu `CubeBackend` ([`WgpuInner`]), with flow-kernels' CubeCL
    /// kernels (planar, splines).
    #[cfg(feature = "wgpu")]
    WgpuUnfused,
    /// burn's fused CUDA backend ([`CudaFused`]).
    #[cfg(feature = "cuda")]
    Cuda,
    /// burn's unfused CUDA `CubeBackend` ([`CudaInner`]), with flow-kernels' kernels.
    #[cfg(feature = "cuda")]
    CudaUnfused,
}

/// Code generic over the backend, run on a [`Choice`] made at run time
/// ([`Choice::run`]): a generic closure, which Rust has no syntax for.
pub trait Program {
    /// What the program returns.
    type Output;
    /// Runs on backend `B` (the inference backend; `burn::backend::Autodiff<B>` trains),
    /// named `name` for logs and reports.
    fn run<B: burn::tensor::backend::Backend>(self, name: &'static str) -> Self::Output;
}

impl Choice {
    /// Every backend this build has, in order of preference (the first is the default).
    pub fn available() -> Vec<Choice> {
        vec![
            #[cfg(feature = "cuda")]
            Choice::Cuda,
            #[cfg(feature = "cuda")]
            Choice::CudaUnfused,
            #[cfg(feature = "wgpu")]
            Choice::Wgpu,
            #[cfg(feature = "wgpu")]
            Choice::WgpuUnfused,
            #[cfg(feature = "flex")]
            Choice::Flex,
            #[cfg(feature = "ndarray")]
            Choice::Ndarray,
        ]
    }

    /// The backend's name, as parsed.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "ndarray")]
            Choice::Ndarray => "ndarray",
            #[cfg(feature = "flex")]
            Choice::Flex => "flex",
            #[cfg(feature = "wgpu")]
            Choice::Wgpu => "wgpu",
            #[cfg(feature = "wgpu")]
            Choice::WgpuUnfused => "wgpu-unfused",
            #[cfg(feature = "cuda")]
            Choice::Cuda => "cuda",
            #[cfg(feature = "cuda")]
            Choice::CudaUnfused => "cuda-unfused",
        }
    }

    /// Whether this is a GPU backend (wgpu or CUDA, fused or not).
    pub fn is_gpu(self) -> bool {
        !matches!(self.name(), "ndarray" | "flex")
    }

    /// Whether this is one of burn's fused (burn-fusion) backends.
    pub fn is_fused(self) -> bool {
        matches!(self.name(), "wgpu" | "cuda")
    }

    /// Whether this is a CUDA backend.
    pub fn is_cuda(self) -> bool {
        self.name().starts_with("cuda")
    }

    /// Whether this backend can run on this machine: for `wgpu`, that a GPU adapter
    /// exists (`flow_kernels::backends::wgpu_adapter`; without one, burn would panic on
    /// the first tensor). The error is one line saying what to install or choose instead.
    pub fn ready(self) -> Result<(), String> {
        match self {
            #[cfg(feature = "wgpu")]
            Choice::Wgpu | Choice::WgpuUnfused => flow_kernels::backends::wgpu_adapter()
                .map(|_| ())
                .map_err(|why| format!("--backend {self}: {why}")),
            _ => Ok(()),
        }
    }

    /// The backends of the build that tests run on: [`Choice::available`], less `wgpu`
    /// where no adapter exists (skipped with one line on stderr, or a panic when
    /// `FLOW_REQUIRE_GPU` is set: `flow_kernels::backends::wgpu_for_tests`).
    pub fn testable() -> Vec<Choice> {
        Choice::available()
            .into_iter()
            .filter(|c| match c {
                #[cfg(feature = "wgpu")]
                Choice::Wgpu | Choice::WgpuUnfused => flow_kernels::backends::wgpu_for_tests(),
                _ => true,
            })
            .collect()
    }

    /// Runs `program` on this backend.
    pub fn run<P: Program>(self, program: P) -> P::Output {
        match self {
            #[cfg(feature = "ndarray")]
            Choice::Ndarray => program.run::<burn::backend::NdArray>(self.name()),
            #[cfg(feature = "flex")]
            Choice::Flex => program.run::<burn::backend::Flex>(self.name()),
            #[cfg(feature = "wgpu")]
            Choice::Wgpu => program.run::<WgpuFused>(self.name()),
            #[cfg(feature = "wgpu")]
            Choice::WgpuUnfused => program.run::<WgpuInner>(self.name()),
            #[cfg(feature = "cuda")]
            Choice::Cuda => program.run::<CudaFused>(self.name()),
            #[cfg(feature = "cuda")]
            Choice::CudaUnfused => program.run::<CudaInner>(self.name()),
        }
    }
}

impl Default for Choice {
    fn default() -> Self {
        Choice::available()[0]
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Choice {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let available = Choice::available();
        available
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = available.iter().map(|c| c.name()).collect();
                UnknownBackend {
                    name: s.to_string(),
                    available: names.join(", "),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_compile_time_choice_and_names_round_trip() {
        assert_eq!(Choice::default().name(), NAME);
        for c in Choice::available() {
            assert_eq!(c.to_string().parse::<Choice>().unwrap(), c);
        }
        let err = "tpu".parse::<Choice>().unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains(NAME), "{err}");
    }
}
