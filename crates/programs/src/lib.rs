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
//! - [`args`]: the parsers of the programs' numeric flags (positive, a learning rate, …);
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
pub use flow_kernels::backends::{WgpuFused, WgpuInner, wgpu_software};
pub mod adamax;
pub mod args;
pub mod choice;
pub mod devices;
pub mod files;
pub mod interrupt;

pub use adamax::{Adamax, AdamaxConfig};
pub use choice::{Choice, Program, UnknownBackend};
pub use devices::Devices;
pub use flow_kernels::{
    adam::{FusedAdam, FusedAdamConfig},
    workers::with_hot_workers_on,
};

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
