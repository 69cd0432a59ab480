//! Amortized planar step (Rezende & Mohamed 2015, eq. 10–12).
//!
//! Parameters per data point, in the encoder's column order: `u` (`d`), `w` (`d`), `b` (1),
//! the layout of the PyTorch peer (`vae_planar.py --variant amortised`).
//!
//! - forward: `f(z) = z + û · tanh(wᵀz + b)`, with `û = u + (softplus(wᵀu) − 1 − wᵀu) · w/‖w‖²`
//!   so that `wᵀû > −1` and `f` is invertible;
//! - log-det: `ln|1 + (wᵀû)(1 − tanh²(wᵀz + b))|`;
//! - inverse: not needed (the posterior only runs forward) and not analytic.

use burn::tensor::{Tensor, backend::Backend};

/// `2·latent + 1`.
pub fn params_per_step(latent: usize) -> usize {
    2 * latent + 1
}

/// `steps` planar steps with `theta: [n, steps·(2d + 1)]`, step `k` reading columns
/// `[k(2d + 1), (k + 1)(2d + 1))`: one fused kernel on the CPU backends
/// ([`flow_core::planar_stack`]).
pub fn run<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    flow_core::planar_stack(z, theta, steps)
}
