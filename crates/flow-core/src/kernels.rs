//! The one place flow-core reaches its fast paths (the `flow-kernels` crate).
//!
//! Each math file calls its op once through this module, and runs its tensor-op reference
//! ([`crate::reference`]) when the op returns `None`: the backend has no body for it (any
//! backend but `ndarray`, `flex` and the unfused CubeCL `wgpu`/`cuda`), the arguments are
//! outside the body's contract, or the kernels are off. Which backends have bodies is a
//! matter of cargo features (flow-core's `ndarray`, `flex`, `wgpu`, `cuda`), never of a
//! `#[cfg]` in a math file.
//!
//! The switch is public: [`set_enabled`] (process-wide), [`with_reference`] (this thread,
//! for the duration of a closure), or `FLOW_KERNELS=off` in the environment.
//!
//! ```
//! use burn::{backend::NdArray, tensor::{Distribution, Tensor}};
//!
//! let device = Default::default();
//! let z = Tensor::<NdArray, 2>::random([4, 3], Distribution::Default, &device);
//! let theta = Tensor::random([4, 2 * 7], Distribution::Normal(0.0, 0.5), &device);
//! let fast = flow_core::planar_stack(z.clone(), theta.clone(), 2);
//! let reference = flow_core::kernels::with_reference(|| flow_core::planar_stack(z, theta, 2));
//! let off: f32 = (fast.1 - reference.1).abs().max().into_scalar();
//! assert!(off < 1e-5);
//! ```

use std::sync::Arc;

use burn::tensor::{Tensor, backend::Backend};

pub(crate) use flow_kernels::{
    affine::affine_params,
    bernoulli::bernoulli_log_likelihood,
    mlp::relu_mlp,
    planar::{planar, planar_stack},
};
pub use flow_kernels::{enabled, set_enabled, with_reference};

use crate::spline::RqSpline;

/// The rational-quadratic spline of `v` on split parameters (see [`crate::rq_spline`]).
pub(crate) fn rq_spline<B: Backend>(
    v: &Tensor<B, 2>,
    [widths, heights, derivatives]: [&Tensor<B, 3>; 3],
    spec: &RqSpline,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    flow_kernels::spline::rq_spline(v, widths, heights, derivatives, &shape(spec), inverse)
}

/// The rational-quadratic spline of `v` on a conditioner's parameter-major parameters
/// (see [`crate::Elementwise`]).
pub(crate) fn rq_spline_params<B: Backend>(
    v: &Tensor<B, 2>,
    params: &Tensor<B, 3>,
    spec: &RqSpline,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    flow_kernels::spline::rq_spline_params(v, params, &shape(spec), inverse)
}

/// A ReLU network whose layer `l` has the fixed 0/1 mask `masks[l]` (MADE's, as values).
pub(crate) fn relu_mlp_masked<B: Backend>(
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    masks: &[Option<Arc<[f32]>>],
) -> Option<Tensor<B, 2>> {
    flow_kernels::mlp::relu_mlp_masked(x, layers, masks, false)
}

/// The spline's shape as the kernels read it.
fn shape(spec: &RqSpline) -> flow_kernels::spline::Spline {
    flow_kernels::spline::Spline {
        bins: spec.bins,
        bound: spec.bound,
        min_bin_width: spec.min_bin_width,
        min_bin_height: spec.min_bin_height,
        min_derivative: spec.min_derivative,
    }
}
