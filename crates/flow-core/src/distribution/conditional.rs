//! [`ConditionalDiagNormal`]: a diagonal normal whose mean and scale are functions of a
//! context, the base of a conditional flow `p(x | c)`.

use burn::{
    config::Config,
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use super::{Distribution, diag_log_prob, diag_sample};
use crate::{error::FlowError, nets::Mlp, ops::soft_clamp};

/// Configuration of a [`ConditionalDiagNormal`].
#[derive(Config, Debug)]
pub struct ConditionalDiagNormalConfig {
    /// Dimension of `x`.
    pub dim: usize,
    /// Width of the context `c`.
    pub context_dim: usize,
    /// Width of the network's hidden layers.
    #[config(default = 64)]
    pub hidden: usize,
    /// Hidden layers of the network (0: the mean and log-scale are affine in `c`).
    #[config(default = 1)]
    pub n_hidden: usize,
    /// Bound `S` of the soft-clamped log-scale, `ln σ ∈ (−S, S)`.
    #[config(default = 6.0)]
    pub max_log_scale: f64,
}

impl ConditionalDiagNormalConfig {
    /// The network starts with a zero output layer: `N(0, I)` for every context.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<ConditionalDiagNormal<B>> {
        crate::error::check_dim("a distribution", self.dim)?;
        if self.context_dim == 0 {
            return Err(FlowError::InvalidConfig(
                "a conditional distribution needs a context of width ≥ 1".into(),
            ));
        }
        if !(self.max_log_scale.is_finite() && self.max_log_scale > 0.0) {
            return Err(FlowError::InvalidConfig(format!(
                "max_log_scale must be finite and positive, got {}",
                self.max_log_scale
            )));
        }
        Ok(ConditionalDiagNormal {
            net: Mlp::new(
                self.context_dim,
                self.hidden,
                self.n_hidden,
                2 * self.dim,
                device,
            )?,
            dim: self.dim,
            context_dim: self.context_dim,
            max_log_scale: self.max_log_scale,
        })
    }
}

/// `p(x | c) = N(x; μ(c), diag(σ(c)²))`, with `[μ(c), ŝ(c)]` the output of a ReLU network
/// of the context and `ln σ = S·tanh(ŝ/S)` soft-clamped.
///
/// # Math
/// `ln p(x | c) = Σⱼ [−½((xⱼ − μⱼ(c))/σⱼ(c))² − ln σⱼ(c)] − (D/2) ln 2π`; samples
/// `x = μ(c) + σ(c) ⊙ ε`, `ε ~ N(0, I)`, are reparameterized. The context is required:
/// called without one (outside [`crate::Flow`], which checks), it panics like a
/// conditional layer.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
/// use flow_core::{ConditionalDiagNormalConfig, Distribution};
///
/// let device = Default::default();
/// let base = ConditionalDiagNormalConfig::new(2, 1).init::<NdArray>(&device).unwrap();
/// let c = Tensor::<NdArray, 2>::from_floats([[0.5], [-1.0], [2.0]], &device);
/// let x = base.sample(3, Some(&c), &device);
/// assert_eq!(base.log_prob(x, Some(&c)).dims(), [3]);
/// ```
#[derive(Module, Debug)]
pub struct ConditionalDiagNormal<B: Backend> {
    /// The network `c ↦ [μ, ŝ]`, `[n, context_dim] -> [n, 2·dim]`.
    pub net: Mlp<B>,
    dim: usize,
    context_dim: usize,
    max_log_scale: f64,
}

impl<B: Backend> ConditionalDiagNormal<B> {
    /// `(μ(c), ln σ(c))`, each `[n, dim]`.
    pub fn parameters(&self, context: &Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let out = self.net.forward(context.clone());
        let loc = out.clone().narrow(1, 0, self.dim);
        let log_scale = soft_clamp(out.narrow(1, self.dim, self.dim), self.max_log_scale);
        (loc, log_scale)
    }

    fn context<'a>(&self, context: Option<&'a Tensor<B, 2>>) -> &'a Tensor<B, 2> {
        context.unwrap_or_else(|| {
            panic!(
                "this conditional distribution needs a context of width {}",
                self.context_dim
            )
        })
    }
}

impl<B: Backend> Distribution<B> for ConditionalDiagNormal<B> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.context_dim
    }

    fn log_prob(&self, x: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> Tensor<B, 1> {
        let (loc, log_scale) = self.parameters(self.context(context));
        diag_log_prob(x, loc, log_scale)
    }

    fn sample_with_log_prob(
        &self,
        n: usize,
        context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (loc, log_scale) = self.parameters(self.context(context));
        diag_sample(n, loc, log_scale, device)
    }
}
