//! The rational-quadratic spline (Durkan et al. 2019), forward and inverse, with identity
//! tails: flow-core's `spline` module has the math and the tensor-op reference.
//!
//! - CPU ([`cpu`](self)): one pass over the entries, four at a time in `f64` lanes (the
//!   normalisation of the raw parameters, the bin search, the map and its log-derivative),
//!   and one pass for the backward;
//! - CubeCL: one launch, one GPU thread per entry, forward; one launch backward.

#[cfg(feature = "cpu")]
mod cpu;
#[cfg(feature = "cubecl")]
mod cube;
mod shape;

pub use shape::Spline;

use burn::tensor::{Tensor, backend::Backend};

/// The spline of `v: [n, d]` (its inverse when `inverse`) with the unnormalized
/// `widths, heights: [m, d, K]` and `derivatives: [m, d, K − 1]`, `m ∈ {1, n}`:
/// `(values [n, d], ladj [n])`, or `None` when `B` has no body (or the kernels are off).
pub fn rq_spline<B: Backend>(
    v: &Tensor<B, 2>,
    widths: &Tensor<B, 3>,
    heights: &Tensor<B, 3>,
    derivatives: &Tensor<B, 3>,
    spec: &Spline,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    #[cfg(feature = "cubecl")]
    if let Some(out) = cube::rq_spline(v, widths, heights, derivatives, spec, inverse) {
        return Some(out);
    }
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::rq_spline(v, widths, heights, derivatives, spec, inverse) {
        return Some(out);
    }
    let _ = (v, widths, heights, derivatives, spec, inverse);
    None
}

/// [`rq_spline`] on the parameters as a conditioner emits them, parameter-major
/// `[m, 3K − 1, d]` (widths, heights, interior derivatives). The CPU body reads them in this
/// layout (skipping the transposed copies that splitting them into `[m, d, K]` tensors
/// costs there); the CubeCL body takes them split.
pub fn rq_spline_params<B: Backend>(
    v: &Tensor<B, 2>,
    params: &Tensor<B, 3>,
    spec: &Spline,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::rq_spline_params(v, params, spec, inverse) {
        return Some(out);
    }
    #[cfg(feature = "cubecl")]
    if cube::has_body::<B>() {
        let [w, h, d] = split(params, spec.bins);
        return cube::rq_spline(v, &w, &h, &d, spec, inverse);
    }
    let _ = (v, params, spec, inverse);
    None
}

/// Widths, heights and derivatives `[m, d, ·]` from parameter-major `[m, 3K − 1, d]`.
#[cfg(feature = "cubecl")]
fn split<B: Backend>(params: &Tensor<B, 3>, bins: usize) -> [Tensor<B, 3>; 3] {
    let per_dim = params.clone().swap_dims(1, 2);
    [
        per_dim.clone().narrow(2, 0, bins),
        per_dim.clone().narrow(2, bins, bins),
        per_dim.narrow(2, 2 * bins, bins - 1),
    ]
}
