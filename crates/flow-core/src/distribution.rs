//! Base distributions of a flow.

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Distribution as Sampler, Tensor, backend::Backend},
};

use crate::ops::{std_normal_log_prob, sum_rows};

/// A distribution over `ℝ^dim` with a tractable density and reparameterized samples.
pub trait Distribution<B: Backend> {
    /// Dimension of a sample.
    fn dim(&self) -> usize;

    /// `ln p(x)` per row: `[batch, dim] -> [batch]`.
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 1>;

    /// `n` reparameterized samples and their log-density, `([n, dim], [n])`.
    ///
    /// Gradients flow from the samples to the distribution's parameters.
    fn sample_with_log_prob(&self, n: usize, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 1>);

    /// `n` reparameterized samples, `[n, dim]`.
    fn sample(&self, n: usize, device: &B::Device) -> Tensor<B, 2> {
        self.sample_with_log_prob(n, device).0
    }
}

/// The standard normal `N(0, I)` on `ℝ^dim` (no parameters).
///
/// `ln p(x) = −½‖x‖² − (dim/2) ln 2π`.
#[derive(Module, Debug, Clone)]
pub struct StandardNormal {
    dim: usize,
}

impl StandardNormal {
    /// `N(0, I)` on `ℝ^dim`, `dim ≥ 1`.
    pub fn new(dim: usize) -> crate::Result<Self> {
        crate::error::check_dim("a distribution", dim)?;
        Ok(Self { dim })
    }
}

impl<B: Backend> Distribution<B> for StandardNormal {
    fn dim(&self) -> usize {
        self.dim
    }
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        std_normal_log_prob(x)
    }
    fn sample_with_log_prob(&self, n: usize, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let x = Tensor::random([n, self.dim], Sampler::Normal(0.0, 1.0), device);
        let lp = std_normal_log_prob(x.clone());
        (x, lp)
    }
}

/// Configuration of a [`DiagNormal`].
#[derive(Config, Debug)]
pub struct DiagNormalConfig {
    /// Dimension.
    pub dim: usize,
}

impl DiagNormalConfig {
    /// A learnable diagonal normal that starts at `N(0, I)`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<DiagNormal<B>> {
        crate::error::check_dim("a distribution", self.dim)?;
        Ok(DiagNormal {
            loc: Param::from_tensor(Tensor::zeros([1, self.dim], device)),
            log_scale: Param::from_tensor(Tensor::zeros([1, self.dim], device)),
        })
    }
}

/// A diagonal normal `N(μ, diag(σ²))` with learnable `μ` and `ln σ`.
///
/// `ln p(x) = Σᵢ [−½((xᵢ − μᵢ)/σᵢ)² − ln σᵢ] − (dim/2) ln 2π`; samples `x = μ + σ ⊙ ε`,
/// `ε ~ N(0, I)`, are reparameterized.
#[derive(Module, Debug)]
pub struct DiagNormal<B: Backend> {
    /// `μ`, `[1, dim]`.
    pub loc: Param<Tensor<B, 2>>,
    /// `ln σ`, `[1, dim]`.
    pub log_scale: Param<Tensor<B, 2>>,
}

/// Log-density of `N(loc, diag(exp(log_scale))²)` for standardized noise `eps = (x − μ)/σ`.
fn diag_log_prob<B: Backend>(eps: Tensor<B, 2>, log_scale: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, d] = eps.dims();
    let ls = sum_rows(log_scale.expand([n, d]));
    std_normal_log_prob(eps) - ls
}

impl<B: Backend> Distribution<B> for DiagNormal<B> {
    fn dim(&self) -> usize {
        self.loc.dims()[1]
    }
    fn log_prob(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let ls = self.log_scale.val();
        let eps = (x - self.loc.val()) * ls.clone().neg().exp();
        diag_log_prob(eps, ls)
    }
    fn sample_with_log_prob(&self, n: usize, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let d = Distribution::<B>::dim(self);
        let eps = Tensor::random([n, d], Sampler::Normal(0.0, 1.0), device);
        let ls = self.log_scale.val();
        let x = self.loc.val() + eps.clone() * ls.clone().exp();
        (x, diag_log_prob(eps, ls))
    }
}
