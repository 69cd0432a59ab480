//! The concrete backends with kernels, and how an op generic over `B: Backend` finds out
//! that `B` is one of them.
//!
//! - CPU (feature `cpu`): `burn::backend::Flex` (feature `flex`) and `burn::backend::NdArray`
//!   (feature `ndarray`), and `Autodiff` of either;
//! - CubeCL (feature `cubecl`): burn's unfused [`WgpuInner`] (feature `wgpu`) and
//!   [`CudaInner`] (feature `cuda`), and `Autodiff` of either. burn's fusion-wrapped
//!   `burn::backend::Wgpu` / `Cuda` take the references (their own fuser merges element-wise
//!   chains into fewer kernels).

use burn::tensor::backend::Backend;

/// burn's unfused wgpu backend (f32), the one with CubeCL kernels.
#[cfg(feature = "wgpu")]
pub type WgpuInner =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// burn's unfused CUDA backend (f32), the one with CubeCL kernels.
#[cfg(feature = "cuda")]
pub type CudaInner = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// `x` as type `U`, which the caller has checked is `T` itself (`TypeId` equality): how an
/// op takes a generic backend's tensors as their concrete type without copying. `None`
/// when the types differ.
pub fn same_type<T: 'static, U: 'static>(x: T) -> Option<U> {
    let mut slot = Some(x);
    (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

/// True when `B` is exactly `C`.
pub fn is<B: 'static, C: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<C>()
}

/// Whether `B`'s tensors live in host memory: `B` is one of the CPU backends this build
/// has (`Flex`, `NdArray`), not a GPU backend nor an `Autodiff` wrapper.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// assert!(flow_kernels::backends::host_resident::<NdArray>());
/// assert!(!flow_kernels::backends::host_resident::<Autodiff<NdArray>>());
/// ```
pub fn host_resident<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    if is::<B, burn::backend::Flex>() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    if is::<B, burn::backend::NdArray>() {
        return true;
    }
    false
}
