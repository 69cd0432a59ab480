//! The one place flow-core reaches its fast paths (the `flow-kernels` crate).
//!
//! Each math file calls its op once through this module (a spline's shape goes as
//! `RqSpline::kernel_shape`), and runs its tensor-op reference
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

pub(crate) use flow_kernels::{
    affine::affine_params,
    bernoulli::bernoulli_log_likelihood,
    mlp::{relu_mlp, relu_mlp_masked},
    planar::{planar, planar_stack},
    spline::{rq_spline, rq_spline_params},
    sylvester::{Basis, orthogonalize, sylvester_stack},
};
pub use flow_kernels::{enabled, set_enabled, with_reference};
