//! Planar steps (Rezende & Mohamed 2015): `z' = z + û·tanh(wᵀz + b)` with the constraint
//! on `û` built in, and `ln|1 + h'·wᵀû|`; flow-core's `planar` module has the math and the
//! tensor-op reference.
//!
//! - CPU: `K` steps in one pass per row (the constraint, `tanh`, the step and its
//!   log-determinant, in `f64`), and one pass backward, which recomputes the row's
//!   intermediate points; in the VAE's amortized posterior that replaces about 20 tensor
//!   operations per step, forward and backward, and the slices of the encoder's output that
//!   feed each step;
//! - CubeCL: one step in one launch, one GPU thread per row, forward and backward (per-row
//!   parameter gradients, summed over rows afterwards when the parameters are shared).

#[cfg(feature = "cpu")]
mod cpu;
#[cfg(feature = "cubecl")]
mod cube;

use burn::tensor::{Tensor, backend::Backend};

/// One planar step with parameters `u, w: [m, d]`, `b: [m, 1]` (`m ∈ {1, n}`) on
/// `z: [n, d]`: `(z' [n, d], ladj [n])`, or `None` when `B` has no body, the shapes do not
/// fit the CPU body, or the kernels are off (the CubeCL body trusts the caller's shapes).
pub fn planar<B: Backend>(
    z: &Tensor<B, 2>,
    u: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    b: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    #[cfg(feature = "cubecl")]
    if let Some(out) = cube::planar(z, u, w, b) {
        return Some(out);
    }
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::planar(z, u, w, b) {
        return Some(out);
    }
    let _ = (z, u, w, b);
    None
}

/// `steps` planar steps on `z: [n, d]`, step `k` reading `u, w, b` from columns
/// `k(2d + 1) + [0, d)`, `[d, 2d)`, `2d` of `theta: [m, steps·(2d + 1)]` (`m ∈ {1, n}`):
/// `(z_K, Σ_k ln|det J_k|)`, or `None` when `B` has no body for the whole stack (the CPU
/// backends have one; elsewhere the caller runs [`planar`] step by step).
pub fn planar_stack<B: Backend>(
    z: &Tensor<B, 2>,
    theta: &Tensor<B, 2>,
    steps: usize,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::planar_stack(z, theta, steps) {
        return Some(out);
    }
    let _ = (z, theta, steps);
    None
}
