//! [`ConditionalDiagNormal`]: a diagonal normal whose mean and scale are functions of a
//! context, the base of a conditional flow `p(x | c)`.

use burn::{
    config::Config,
    module::{Module, Param},
    nn::{Initializer, Linear, LinearConfig},
    tensor::{Tensor, TensorData, backend::Backend},
};

use super::{
    normal::{diag_log_prob, diag_sample},
    traits::Distribution,
};
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
        let linear = LinearConfig::new(self.context_dim, 2 * self.dim)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Ok(ConditionalDiagNormal {
            net: Mlp::new(
                self.context_dim,
                self.hidden,
                self.n_hidden,
                2 * self.dim,
                device,
            )?,
            linear,
            dim: self.dim,
            context_dim: self.context_dim,
            max_log_scale: self.max_log_scale,
        })
    }
}

impl ConditionalDiagNormalConfig {
    /// The distribution starting at the linear-Gaussian regression
    /// `p(x | c) = N(c W + b, I)`: the linear path's mean part set to `weight`
    /// (`[context_dim, dim]`, row-major) and `bias` (`[dim]`), every other output zero.
    /// With `x` whitened by the regression's residual covariance, a flow on this base
    /// starts at the least-squares fit of `x` on `c`.
    pub fn init_linear<B: Backend>(
        &self,
        weight: &[f64],
        bias: &[f64],
        device: &B::Device,
    ) -> crate::Result<ConditionalDiagNormal<B>> {
        let (c, d) = (self.context_dim, self.dim);
        if weight.len() != c * d || bias.len() != d {
            return Err(FlowError::InvalidConfig(format!(
                "a linear start for context {c} and dimension {d} needs {} weights and {d} \
                 biases, got {} and {}",
                c * d,
                weight.len(),
                bias.len()
            )));
        }
        if let Some(v) = weight.iter().chain(bias).find(|v| !v.is_finite()) {
            return Err(FlowError::InvalidConfig(format!(
                "a linear start must be finite, got {v}"
            )));
        }
        let mut base = self.init::<B>(device)?;
        // [c, 2d]: the mean part in the first d columns, the log-scale part zero.
        let w: Vec<f32> = (0..c * 2 * d)
            .map(|k| {
                let (i, j) = (k / (2 * d), k % (2 * d));
                if j < d { weight[i * d + j] as f32 } else { 0.0 }
            })
            .collect();
        let b: Vec<f32> = (0..2 * d)
            .map(|j| if j < d { bias[j] as f32 } else { 0.0 })
            .collect();
        base.linear.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(w, [c, 2 * d]), device));
        base.linear.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [2 * d]),
            device,
        )));
        Ok(base)
    }
}

/// `p(x | c) = N(x; μ(c), diag(σ(c)²))`, with `[μ(c), ŝ(c)] = MLP(c) + c W + b` (a ReLU
/// network of the context plus a linear path) and `ln σ = S·tanh(ŝ/S)` soft-clamped.
/// Both start at zero (`N(0, I)` for every context), or, through
/// [`ConditionalDiagNormalConfig::init_linear`], at a linear-Gaussian regression.
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
    /// The linear path `c ↦ c W + b` added to the network's output.
    pub linear: Linear<B>,
    dim: usize,
    context_dim: usize,
    max_log_scale: f64,
}

impl<B: Backend> ConditionalDiagNormal<B> {
    /// `(μ(c), ln σ(c))`, each `[n, dim]`.
    pub fn parameters(&self, context: &Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let out = self.net.forward(context.clone()) + self.linear.forward(context.clone());
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
