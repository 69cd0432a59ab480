//! # flow-core
//!
//! Normalizing flows on [burn](https://burn.dev), generic over `B: Backend`: transforms with
//! verified log-determinants, base distributions, and [`Flow`], which pairs them.
//!
//! A flow maps noise `z ~ p(z)` to data `x = T(z)` through an invertible `T`;
//! `ln q(x) = ln p(z) − ln|det ∂T/∂z|`. Composed maps add their log-determinants.
//!
//! Layout:
//! - pure kernels ([`planar()`], [`radial()`], [`householder()`], [`sylvester_stack()`],
//!   [`affine()`], [`rq_spline()`] and [`rq_spline_inverse()`]): functions of tensors only, whose parameters carry a batch
//!   dimension or broadcast from one row, so one kernel serves global, amortized
//!   (encoder-produced) and conditional parameters;
//! - layers ([`Planar`], [`Radial`], [`Householder`], [`Coupling`] with an [`Elementwise`] map (additive,
//!   affine, spline), [`MaskedAutoregressive`] (MAF; IAF as its [`Inverse`]) on a [`Made`]
//!   conditioner, [`LuLinear`], [`BatchNorm`], [`Permutation`], [`ActNorm`]): burn modules
//!   built from a `Config`, implementing [`Transform`] (and [`Invertible`] where the inverse
//!   is analytic);
//! - amortized: [`Amortized`], `K` planar, radial, Householder or Sylvester (O, H, T)
//!   steps whose parameters are the context (an encoder's output), a transform like any
//!   other;
//! - composition: `Vec<T>` and tuples of transforms are transforms; [`Inverse`] flips one;
//!   [`Layer`] holds any invertible layer, for stacks chosen at run time;
//! - [`Distribution`]s: [`StandardNormal`], [`DiagNormal`], [`GaussianMixture`] and the
//!   conditional [`ConditionalDiagNormal`]; [`Base`] holds any of them;
//! - [`store`]: models as safetensors files (tensor names, strict loading); [`import`]:
//!   zuko and nflows state dicts as flow-core flows;
//! - `testing` (feature `testing`): the verification harness every layer passes;
//! - [`kernels`]: where the math reaches its fast paths (the `flow-kernels` crate: fused
//!   CPU kernels on `ndarray` and `flex`, CubeCL kernels on the unfused `wgpu` and `cuda`
//!   backends), and the switch that turns them off; [`reference`](mod@reference): the
//!   tensor-op form of every op that has a fast path, which runs on every other backend and
//!   which the kernels are tested against.
//!
//! Everything runs on the backend's device: no kernel reads tensors back to the host.
//!
//! ```
//! use burn::backend::NdArray;
//! use flow_core::{CouplingConfig, Elementwise, Flow, Permutation, StandardNormal};
//! type B = NdArray;
//! let device = Default::default();
//! // RealNVP on ℝ²: couplings alternating with a reversal of the features.
//! let layers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let coupling = CouplingConfig::new(2, Elementwise::affine()).init::<B>(&device)?;
//!         Ok((coupling, Permutation::reverse(2, &device)?))
//!     })
//!     .collect::<flow_core::Result<_>>()
//!     .unwrap();
//! let flow = Flow::new(StandardNormal::new(2).unwrap(), layers).unwrap();
//! let (x, log_q) = flow.sample_with_log_prob(5, None, &device).unwrap();
//! let log_p = flow.log_prob(x, None).unwrap(); // equals log_q up to rounding
//! # let err: f32 = (log_p - log_q).abs().max().into_scalar();
//! # assert!(err < 1e-4);
//! ```

#![warn(missing_docs)]

pub mod actnorm;
pub mod amortized;
pub mod autoregressive;
pub mod batchnorm;
pub mod coupling;
pub mod distribution;
pub mod elementwise;
pub mod error;
pub mod flow;
pub mod householder;
pub mod import;
pub mod kernels;
pub mod layer;
pub mod lu;
pub mod made;
pub mod nets;
pub mod ops;
pub mod permutation;
pub mod planar;
pub mod radial;
pub mod residual;
pub mod spline;
pub mod store;
pub mod sylvester;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transform;

/// The tensor-op form of every op that has a fast path in [`kernels`]: what runs on the
/// backends without one, and what the kernels are tested against. Each computes in its
/// inputs' float type (`f64` tensors give an `f64` reference).
pub mod reference {
    pub use crate::elementwise::{affine, affine_inverse};
    pub use crate::nets::relu_layers_reference as relu_layers;
    pub use crate::ops::bernoulli_log_likelihood_reference as bernoulli_log_likelihood;
    pub use crate::planar::{planar_reference as planar, planar_stack_reference as planar_stack};
    pub use crate::spline::{
        rq_spline_inverse_reference as rq_spline_inverse, rq_spline_reference as rq_spline,
    };
    pub use crate::sylvester::orthogonalize_reference as orthogonalize;
    pub use crate::sylvester::sylvester_stack_reference as sylvester_stack;
}

pub use actnorm::{ActNorm, ActNormConfig};
pub use amortized::{Amortized, AmortizedStep};
pub use autoregressive::{MaskedAutoregressive, MaskedAutoregressiveConfig};
pub use batchnorm::{BatchNorm, BatchNormConfig};
pub use coupling::{Coupling, CouplingConfig};
pub use distribution::{
    Base, ConditionalDiagNormal, ConditionalDiagNormalConfig, DiagNormal, DiagNormalConfig,
    Distribution, GaussianMixture, GaussianMixtureConfig, StandardNormal,
};
pub use elementwise::{Elementwise, Scale, affine, affine_inverse};
pub use error::{FlowError, Result};
pub use flow::{Flow, first_non_finite_row};
pub use householder::{Householder, HouseholderConfig, householder, householder_stack};
pub use layer::Layer;
pub use lu::{LuLinear, LuLinearConfig};
pub use made::{Made, MadeConfig, MaskedLinear, Order};
pub use permutation::Permutation;
pub use planar::{Planar, PlanarConfig, planar, planar_stack};
pub use radial::{Radial, RadialConfig, radial};
pub use residual::{ResidualAutoregressive, ResidualBlock, ResidualMade, ResidualMadeConfig};
pub use spline::{RqSpline, rq_spline, rq_spline_inverse};
pub use sylvester::{SylvesterQ, orthogonalize, sylvester_stack};
pub use transform::{Inverse, Invertible, TrainableTransform, Transform};
