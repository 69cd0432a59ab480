//! Batch normalization as a flow layer (Dinh et al. 2017; Papamakarios et al. 2017).
//!
//! # Math
//! With statistics `(μ, v)` of the data side and learned `γ̂, β`:
//! - inverse (data → noise): `x = (y − μ) / √(v + ε) ⊙ exp(γ̂) + β`,
//!   `ln|det| = Σ_j (γ̂_j − ½ ln(v_j + ε))`;
//! - forward (noise → data): `y = (x − β) ⊙ exp(−γ̂) ⊙ √(v + ε) + μ`, minus that.
//!
//! Which statistics: in training (burn's convention: the backend has autodiff enabled),
//! the inverse uses the batch's mean and (biased) variance, differentiated through as in
//! ordinary batch normalization, and updates running averages
//! `r ← (1 − m) r + m · batch` (momentum `m`). The forward, and the inverse in evaluation
//! (a backend without autodiff, for example after `module.valid()`), use the running
//! averages. The log-determinant is exact for the map applied: with batch statistics it is
//! the Jacobian of each row's map with the statistics held fixed, as in the papers.
//!
//! A new layer is the identity in evaluation (`μ = 0`, `v = 1 − ε`, `γ̂ = β = 0`).

use burn::{
    config::Config,
    module::{Module, Param, RunningState},
    tensor::{Tensor, backend::Backend},
};

use crate::{
    error::FlowError,
    ops::sum_rows,
    transform::{Invertible, Transform},
};

/// Configuration of a [`BatchNorm`] layer.
#[derive(Config, Debug)]
pub struct BatchNormConfig {
    /// Feature dimension `D ≥ 1`.
    pub dim: usize,
    /// Weight `m` of the current batch in the running averages.
    #[config(default = 0.1)]
    pub momentum: f64,
    /// `ε` added to the variance.
    #[config(default = 1e-5)]
    pub eps: f64,
}

impl BatchNormConfig {
    /// Builds the layer (the identity in evaluation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<BatchNorm<B>> {
        if self.dim == 0 {
            return Err(FlowError::InvalidConfig("batch norm of dimension 0".into()));
        }
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return Err(FlowError::InvalidConfig(format!(
                "batch norm momentum must be in (0, 1], got {}",
                self.momentum
            )));
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return Err(FlowError::InvalidConfig(format!(
                "batch norm eps must be in (0, 1), got {}",
                self.eps
            )));
        }
        let d = self.dim;
        Ok(BatchNorm {
            log_gamma: Param::from_tensor(Tensor::zeros([d], device)),
            beta: Param::from_tensor(Tensor::zeros([d], device)),
            running_mean: RunningState::new(Tensor::zeros([d], device)),
            running_var: RunningState::new(Tensor::full([d], 1.0 - self.eps, device)),
            momentum: self.momentum,
            eps: self.eps,
            dim: d,
        })
    }
}

/// The batch-normalization flow layer; see the [module docs](self).
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    log_gamma: Param<Tensor<B, 1>>,
    beta: Param<Tensor<B, 1>>,
    running_mean: RunningState<Tensor<B, 1>>,
    running_var: RunningState<Tensor<B, 1>>,
    momentum: f64,
    eps: f64,
    dim: usize,
}

impl<B: Backend> BatchNorm<B> {
    /// `[1, D]` log-scale of the inverse, `γ̂ − ½ ln(v + ε)`.
    fn log_scale(&self, var: Tensor<B, 2>) -> Tensor<B, 2> {
        self.log_gamma.val().unsqueeze::<2>() - var.add_scalar(self.eps).log().mul_scalar(0.5)
    }

    /// The running mean and variance, `[1, D]` each.
    pub fn running_stats(&self) -> (Tensor<B, 2>, Tensor<B, 2>) {
        (
            self.running_mean.value_sync().unsqueeze(),
            self.running_var.value_sync().unsqueeze(),
        )
    }
}

impl<B: Backend> Transform<B> for BatchNorm<B> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let [n, _] = x.dims();
        let (mean, var) = self.running_stats();
        let log_scale = self.log_scale(var);
        let y = (x - self.beta.val().unsqueeze()) * log_scale.clone().neg().exp() + mean;
        (y, sum_rows(log_scale).neg().expand([n]))
    }
}

impl<B: Backend> Invertible<B> for BatchNorm<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let [n, _] = y.dims();
        let (mean, var) = if B::ad_enabled(&y.device()) {
            let mean = y.clone().mean_dim(0);
            let var = (y.clone() - mean.clone()).square().mean_dim(0);
            let m = self.momentum;
            let (old_mean, old_var) = self.running_stats();
            let blend = |old: Tensor<B, 2>, new: Tensor<B, 2>| {
                (old.mul_scalar(1.0 - m) + new.detach().mul_scalar(m)).reshape([self.dim])
            };
            self.running_mean.update(blend(old_mean, mean.clone()));
            self.running_var.update(blend(old_var, var.clone()));
            (mean, var)
        } else {
            self.running_stats()
        };
        let log_scale = self.log_scale(var);
        let x = (y - mean) * log_scale.clone().exp() + self.beta.val().unsqueeze();
        (x, sum_rows(log_scale).expand([n]))
    }
}
