//! Amortized radial step (Rezende & Mohamed 2015, eq. 14).
//!
//! Parameters per data point, in column order: `z₀` (`d`), raw `α` (1), raw `β` (1).
//!
//! - forward: `f(z) = z + β h(α, r) (z − z₀)`, `r = ‖z − z₀‖`, `h = 1/(α + r)`, with
//!   `α = softplus(α_raw) > 0` and `β = softplus(β_raw) − α ≥ −α` (invertibility);
//! - log-det: `(d − 1) ln(1 + βh) + ln(1 + βh + βh′r)`.

use burn::tensor::{Tensor, backend::Backend};

/// `latent + 2`.
pub fn params_per_step(latent: usize) -> usize {
    latent + 2
}

/// One radial step with `theta: [n, d + 2]`.
pub fn step<B: Backend>(z: Tensor<B, 2>, theta: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = z.dims();
    let z0 = theta.clone().slice([0..n, 0..d]);
    let alpha = theta.clone().slice([0..n, d..d + 1]);
    let beta = theta.slice([0..n, d + 1..d + 2]);
    flow_core::radial(z, z0, alpha, beta)
}
