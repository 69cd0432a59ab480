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

/// One planar step with `theta: [n, 2d + 1]`.
pub fn step<B: Backend>(z: Tensor<B, 2>, theta: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = z.dims();
    let u = theta.clone().slice([0..n, 0..d]);
    let w = theta.clone().slice([0..n, d..2 * d]);
    let b = theta.slice([0..n, 2 * d..2 * d + 1]);
    flow_core::planar(z, u, w, b)
}
