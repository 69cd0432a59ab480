//! The Bernoulli log-likelihood of `x` under logits, `Σ_j x_j l_j − softplus(l_j)` per row:
//! the VAE's reconstruction term.
//!
//! - CPU: one vectorized pass forward and one backward ([`cpu`](self) has the math);
//! - CubeCL: none (burn's fusion merges the element-wise chain).

#[cfg(feature = "cpu")]
mod cpu;

use burn::tensor::{Tensor, backend::Backend};

/// `ln p(x | l)` per row of `x, logits: [n, d]`, as `[n]`, or `None` when `B` has no body,
/// the shapes differ, or the kernels are off.
pub fn bernoulli_log_likelihood<B: Backend>(
    x: &Tensor<B, 2>,
    logits: &Tensor<B, 2>,
) -> Option<Tensor<B, 1>> {
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::bernoulli_log_likelihood(x, logits) {
        return Some(out);
    }
    let _ = (x, logits);
    None
}
