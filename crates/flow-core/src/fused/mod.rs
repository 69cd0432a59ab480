//! Fused GPU kernels (CubeCL) for the hot log-determinant paths, with their backward passes.
//!
//! The pure tensor kernels ([`planar_reference`](crate::planar::planar_reference), …) are
//! the reference and the path of every backend; on the CubeCL backends this module names,
//! the public kernels ([`planar()`](crate::planar())) run one fused GPU kernel instead of a
//! chain of element-wise launches, and register a hand-written backward kernel with burn's
//! autodiff so training uses it too.
//!
//! # Dispatch
//! The library stays generic over `B: Backend`: a public kernel asks [`planar`] here whether
//! `B` is one of the backends with a fused kernel (a `TypeId` comparison, resolved per
//! monomorphisation) and moves its tensors to that concrete type without copying. Backends
//! with fused kernels:
//! - feature `wgpu`: `CubeBackend<WgpuRuntime, f32, i32, u32>` (`flow_core::backend::WgpuInner`,
//!   what [`crate::backend`] names for `wgpu`) and `Autodiff` of it;
//! - feature `cuda`: `CubeBackend<CudaRuntime, f32, i32, u8>` (`flow_core::backend::CudaInner`) and
//!   `Autodiff` of it.
//!
//! burn's fusion-wrapped `burn::backend::Wgpu` / `Cuda` take the reference path (their own
//! fuser already merges element-wise chains into fewer kernels).
//!
//! # Kernels
//! - planar step ([`planar`]): forward `z' = z + û·tanh(wᵀz + b)` and `ln|1 + h'·wᵀû|` in
//!   one launch, one GPU thread per row (the invertibility constraint on `û` included);
//!   backward: the gradients of `z`, `u`, `w`, `b` in one launch (per-row parameter
//!   gradients, summed over rows afterwards when the parameters are shared);
//! - rational-quadratic spline ([`rq_spline`]): normalisation of the raw bin parameters
//!   (softmax, cumulative sum, softplus), bin search, forward or inverse, and every entry's
//!   log-derivative in one launch, one thread per entry (a `sum` over features makes the
//!   ladj); backward: the gradients of the input and of the raw widths, heights and
//!   derivatives in one launch.

mod planar;
mod spline;

/// Helpers shared by the kernels.
mod util;

use burn::tensor::{Tensor, backend::Backend};

use crate::{
    ops::{is, same_type},
    spline::RqSpline,
};

#[cfg(feature = "wgpu")]
use crate::backend::WgpuInner;
#[cfg(feature = "wgpu")]
type WgpuTrain = burn::backend::Autodiff<WgpuInner>;
#[cfg(feature = "cuda")]
use crate::backend::CudaInner;
#[cfg(feature = "cuda")]
type CudaTrain = burn::backend::Autodiff<CudaInner>;

/// The fused planar step on `B`, or `None` when `B` has no fused kernel.
///
/// Same contract as [`crate::planar()`]: shapes `z: [n, d]`, `u, w: [m, d]`, `b: [m, 1]`
/// with `m ∈ {1, n}`.
pub fn planar<B: Backend>(
    z: &Tensor<B, 2>,
    u: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    b: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    fn on<B: Backend, C: Backend>(
        z: &Tensor<B, 2>,
        u: &Tensor<B, 2>,
        w: &Tensor<B, 2>,
        b: &Tensor<B, 2>,
        f: impl FnOnce(Tensor<C, 2>, Tensor<C, 2>, Tensor<C, 2>, Tensor<C, 2>) -> Tensor<C, 2>,
    ) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
        let cast = |t: &Tensor<B, 2>| same_type::<Tensor<B, 2>, Tensor<C, 2>>(t.clone());
        let packed = f(cast(z)?, cast(u)?, cast(w)?, cast(b)?);
        let packed = same_type::<Tensor<C, 2>, Tensor<B, 2>>(packed)?;
        Some(planar::unpack(packed))
    }
    #[cfg(feature = "wgpu")]
    if is::<B, WgpuInner>() {
        return on::<B, WgpuInner>(z, u, w, b, planar::forward_packed);
    } else if is::<B, WgpuTrain>() {
        return on::<B, WgpuTrain>(z, u, w, b, planar::forward_packed_autodiff);
    }
    #[cfg(feature = "cuda")]
    if is::<B, CudaInner>() {
        return on::<B, CudaInner>(z, u, w, b, planar::forward_packed);
    } else if is::<B, CudaTrain>() {
        return on::<B, CudaTrain>(z, u, w, b, planar::forward_packed_autodiff);
    }
    None
}

/// The fused rational-quadratic spline on `B` (forward, or inverse when `inverse`), or
/// `None` when `B` has no fused kernel.
///
/// Same contract as [`crate::rq_spline`] / [`crate::rq_spline_inverse`]: `v: [n, d]`;
/// `widths, heights: [m, d, K]`; `derivatives: [m, d, K − 1]`, `m ∈ {1, n}`; a valid `spec`.
pub fn rq_spline<B: Backend>(
    v: &Tensor<B, 2>,
    widths: &Tensor<B, 3>,
    heights: &Tensor<B, 3>,
    derivatives: &Tensor<B, 3>,
    spec: &RqSpline,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    type Args<B> = spline::Args<B>;
    fn on<B: Backend, C: Backend>(
        (v, w, h, d): (&Tensor<B, 2>, &Tensor<B, 3>, &Tensor<B, 3>, &Tensor<B, 3>),
        f: impl FnOnce(Args<C>) -> Tensor<C, 2>,
    ) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
        let args = (
            same_type::<_, Tensor<C, 2>>(v.clone())?,
            same_type::<_, Tensor<C, 3>>(w.clone())?,
            same_type::<_, Tensor<C, 3>>(h.clone())?,
            same_type::<_, Tensor<C, 3>>(d.clone())?,
        );
        let packed = same_type::<Tensor<C, 2>, Tensor<B, 2>>(f(args))?;
        Some(spline::unpack(packed))
    }
    let inputs = (v, widths, heights, derivatives);
    let spec = *spec;
    #[cfg(feature = "wgpu")]
    if is::<B, WgpuInner>() {
        return on::<B, WgpuInner>(inputs, |a| spline::forward_packed(a, spec, inverse));
    } else if is::<B, WgpuTrain>() {
        return on::<B, WgpuTrain>(inputs, |a| {
            spline::forward_packed_autodiff(a, spec, inverse)
        });
    }
    #[cfg(feature = "cuda")]
    if is::<B, CudaInner>() {
        return on::<B, CudaInner>(inputs, |a| spline::forward_packed(a, spec, inverse));
    } else if is::<B, CudaTrain>() {
        return on::<B, CudaTrain>(inputs, |a| {
            spline::forward_packed_autodiff(a, spec, inverse)
        });
    }
    let _ = (inputs, spec, inverse);
    None
}
