//! The backend this build's cargo features select, for binaries and examples
//! (`ndarray`, `flex`, `wgpu` or `cuda`; `cuda` wins over `wgpu`, `wgpu` over `flex`, `flex`
//! over `ndarray`). Library code stays generic over `B: Backend`; this module only names one
//! concrete choice. The CubeCL choices (`wgpu`, `cuda`) have [`crate::fused`] kernels.

/// The inference backend chosen by features.
///
/// For `wgpu` this is the unfused `CubeBackend`, not `burn::backend::Wgpu`: burn 0.21's
/// fusion layer loses tensor handles when a tensor is used from a second thread
/// ("Should have handle for tensor", tracel-ai/burn#4328, #4347), and burn-train reads
/// tensors from its checkpointer and metric threads. Seen here: `train-vae` on wgpu
/// aborted within a few epochs with fusion, and runs clean without it.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Inner = WgpuInner;
/// The inference backend chosen by features: burn's unfused CUDA `CubeBackend` (same
/// reason as for `wgpu`).
#[cfg(feature = "cuda")]
pub type Inner = CudaInner;
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

/// burn's unfused wgpu backend (f32), the one with [`crate::fused`] kernels.
#[cfg(feature = "wgpu")]
pub type WgpuInner =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// burn's unfused CUDA backend (f32), the one with [`crate::fused`] kernels.
#[cfg(feature = "cuda")]
pub type CudaInner = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
