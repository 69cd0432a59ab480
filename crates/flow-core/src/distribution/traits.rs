//! [`Distribution`]: what a flow's base offers (density, samples, an optional context).

use burn::tensor::{Tensor, backend::Backend};

/// A distribution over `ℝ^dim` with a tractable density and samples, optionally
/// conditioned on a context `c` (`p(x | c)`).
///
/// An unconditional distribution ([`Distribution::context_dim`] = 0) ignores the context.
/// A conditional one reads one context row per row of `x` (or per sample); [`crate::Flow`]
/// checks the shapes before calling, so implementations may assume them.
pub trait Distribution<B: Backend> {
    /// Dimension of a sample.
    fn dim(&self) -> usize;

    /// Width of the context this distribution is conditioned on (0: unconditional).
    fn context_dim(&self) -> usize {
        0
    }

    /// `ln p(x | c)` per row: `[batch, dim] -> [batch]`.
    fn log_prob(&self, x: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> Tensor<B, 1>;

    /// `n` samples and their log-density, `([n, dim], [n])`.
    ///
    /// Gradients flow from the samples to the distribution's parameters (reparameterized
    /// samples), except through discrete choices (see [`GaussianMixture`](crate::GaussianMixture)).
    fn sample_with_log_prob(
        &self,
        n: usize,
        context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1>);

    /// `n` samples, `[n, dim]`.
    fn sample(&self, n: usize, context: Option<&Tensor<B, 2>>, device: &B::Device) -> Tensor<B, 2> {
        self.sample_with_log_prob(n, context, device).0
    }
}
