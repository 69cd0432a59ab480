//! The normal bases: [`StandardNormal`] and the learnable [`DiagNormal`].

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Distribution as Sampler, Tensor, backend::Backend},
};

use super::traits::Distribution;
use crate::ops::{std_normal_log_prob, sum_rows};

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
    fn log_prob(&self, x: Tensor<B, 2>, _context: Option<&Tensor<B, 2>>) -> Tensor<B, 1> {
        std_normal_log_prob(x)
    }
    fn sample_with_log_prob(
        &self,
        n: usize,
        _context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
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

/// `ln N(x; μ, diag(σ²))` per row from `ln p = ln N(ε; 0, I) − Σ ln σ`, `ε = (x − μ)/σ`.
/// `loc, log_scale: [m, d]` with `m ∈ {1, n}` (global or per-row parameters).
pub(super) fn diag_log_prob<B: Backend>(
    x: Tensor<B, 2>,
    loc: Tensor<B, 2>,
    log_scale: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let eps = (x - loc) * log_scale.clone().neg().exp();
    diag_log_prob_of_noise(eps, log_scale)
}

fn diag_log_prob_of_noise<B: Backend>(eps: Tensor<B, 2>, log_scale: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, d] = eps.dims();
    std_normal_log_prob(eps) - sum_rows(log_scale.expand([n, d]))
}

/// `n` reparameterized samples `x = μ + σ ⊙ ε` of `N(μ, diag(σ²))` and their log-density
/// (`loc, log_scale: [m, d]`, `m ∈ {1, n}`).
pub(super) fn diag_sample<B: Backend>(
    n: usize,
    loc: Tensor<B, 2>,
    log_scale: Tensor<B, 2>,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let d = loc.dims()[1];
    let eps = Tensor::random([n, d], Sampler::Normal(0.0, 1.0), device);
    let x = loc + eps.clone() * log_scale.clone().exp();
    (x, diag_log_prob_of_noise(eps, log_scale))
}

impl<B: Backend> Distribution<B> for DiagNormal<B> {
    fn dim(&self) -> usize {
        self.loc.dims()[1]
    }
    fn log_prob(&self, x: Tensor<B, 2>, _context: Option<&Tensor<B, 2>>) -> Tensor<B, 1> {
        diag_log_prob(x, self.loc.val(), self.log_scale.val())
    }
    fn sample_with_log_prob(
        &self,
        n: usize,
        _context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        diag_sample(n, self.loc.val(), self.log_scale.val(), device)
    }
}
