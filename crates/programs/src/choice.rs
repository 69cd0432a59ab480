//! The backend a program runs on, chosen at run time: [`Choice`] (the programs' `--backend`)
//! and [`Program`], code generic over it.

#[cfg(feature = "cuda")]
use flow_kernels::backends::{CudaFused, CudaInner};
#[cfg(feature = "wgpu")]
use flow_kernels::backends::{WgpuFused, WgpuInner};

/// A `--backend` name this build does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend `{name}` is not in this build (it has: {available}; cargo features add others)")]
pub struct UnknownBackend {
    /// The name asked for.
    pub name: String,
    /// The names this build has, comma-separated.
    pub available: String,
}

/// A backend compiled into this build, chosen at run time (the programs' `--backend`).
///
/// Parsed from its name (`"ndarray"`, `"flex"`, `"wgpu"`, `"wgpu-unfused"`, `"cuda"`,
/// `"cuda-unfused"`); a name this build
/// lacks is an error naming the ones it has. The default is the compile-time choice
/// [`Inner`](crate::Inner) ([`NAME`](crate::NAME)).
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
