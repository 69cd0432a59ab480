//! The soft-clamped affine map of couplings and autoregressive layers (flow-core's
//! `Elementwise::Affine`): `y = x·eˢ + t` with `s = S·tanh(ŝ/S)`, and its inverse.
//!
//! - CPU: one vectorized pass over the entries for the values, one for the
//!   log-determinant, one each backward ([`cpu`](self) has the math);
//! - CubeCL: none (burn's fusion merges the element-wise chain).

#[cfg(feature = "cpu")]
mod cpu;

use burn::tensor::{Tensor, backend::Backend};

/// The map (forward, or inverse when `inverse`) of `v: [n, d]` with the parameter-major
/// `params: [m, 2, d]` (shift, raw log-scale; `m ∈ {1, n}`) and the log-scale bound
/// `max_log_scale`: `(values [n, d], ladj [n])`, or `None` when `B` has no body, the shapes
/// do not fit, or the kernels are off.
pub fn affine_params<B: Backend>(
    v: &Tensor<B, 2>,
    params: &Tensor<B, 3>,
    max_log_scale: f64,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::affine_params(v, params, max_log_scale, inverse) {
        return Some(out);
    }
    let _ = (v, params, max_log_scale, inverse);
    None
}
