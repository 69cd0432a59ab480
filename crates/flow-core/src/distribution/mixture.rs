//! [`GaussianMixture`]: a learnable mixture of diagonal normals, the standard base for
//! multi-modal targets (normflows' `GaussianMixture`, Pyro's `MixtureSameFamily`).

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Distribution as Sampler, Int, Tensor, activation::log_softmax, backend::Backend},
};

use super::traits::Distribution;
use crate::{
    error::FlowError,
    ops::{HALF_LN_2PI, logsumexp},
};

/// Configuration of a [`GaussianMixture`].
#[derive(Config, Debug)]
pub struct GaussianMixtureConfig {
    /// Dimension.
    pub dim: usize,
    /// Number of components `K ≥ 1`.
    pub components: usize,
    /// Standard deviation of the initial means around 0 (drawn with the backend's seeded
    /// generator); the scales start at 1 and the weights equal.
    #[config(default = 1.0)]
    pub spread: f64,
}

impl GaussianMixtureConfig {
    /// A mixture with equal weights, unit scales and means drawn from `N(0, spread² I)`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<GaussianMixture<B>> {
        crate::error::check_dim("a distribution", self.dim)?;
        if self.components == 0 {
            return Err(FlowError::InvalidConfig(
                "a Gaussian mixture needs at least one component".into(),
            ));
        }
        if !(self.spread.is_finite() && self.spread >= 0.0) {
            return Err(FlowError::InvalidConfig(format!(
                "a Gaussian mixture's spread must be finite and ≥ 0, got {}",
                self.spread
            )));
        }
        let (k, d) = (self.components, self.dim);
        let means = if self.spread > 0.0 {
            Tensor::random([k, d], Sampler::Normal(0.0, self.spread), device)
        } else {
            Tensor::zeros([k, d], device)
        };
        Ok(GaussianMixture {
            logits: Param::from_tensor(Tensor::zeros([1, k], device)),
            means: Param::from_tensor(means),
            log_scales: Param::from_tensor(Tensor::zeros([k, d], device)),
        })
    }
}

/// A mixture of `K` diagonal normals with learnable weights, means and scales.
///
/// # Math
/// With weights `π = softmax(a)`,
/// `p(x) = Σₖ πₖ N(x; μₖ, diag(σₖ²))`, evaluated stably in log space:
/// `ln p(x) = logsumexpₖ [ln πₖ + Σⱼ(−½ εₖⱼ² − ln σₖⱼ) − (D/2) ln 2π]`,
/// `εₖⱼ = (xⱼ − μₖⱼ)/σₖⱼ` (the largest term is factored out, so no component's density
/// underflows the sum).
///
/// # Sampling
/// A sample picks a component `k ~ Categorical(π)` (the Gumbel-max trick, on the device:
/// `k = argmaxₖ(ln πₖ + gₖ)`, `gₖ` Gumbel noise), then `x = μₖ + σₖ ⊙ ε`. The choice of `k` is
/// discrete, so it cannot be reparameterized: [`Distribution::sample_with_log_prob`]
/// returns `x` and the mixture's `ln p(x)`, with gradients through `x` to the chosen
/// component's mean and scale and through `ln p(x)` to every parameter, but none through
/// the choice itself (the score-function term is left out). Fitting by likelihood
/// (`log_prob`, density estimation) is exact; a variational objective that needs unbiased
/// gradients for the weights should keep them fixed or use a normal base.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
/// use flow_core::{Distribution, GaussianMixtureConfig};
///
/// let device = Default::default();
/// let mog = GaussianMixtureConfig::new(2, 3).init::<NdArray>(&device).unwrap();
/// let x = mog.sample(4, None, &device);
/// assert_eq!(mog.log_prob(x, None).dims(), [4]);
/// ```
#[derive(Module, Debug)]
pub struct GaussianMixture<B: Backend> {
    /// Unnormalized log-weights `a`, `[1, K]`.
    pub logits: Param<Tensor<B, 2>>,
    /// Means `μ`, `[K, dim]`.
    pub means: Param<Tensor<B, 2>>,
    /// Log-scales `ln σ`, `[K, dim]`.
    pub log_scales: Param<Tensor<B, 2>>,
}

impl<B: Backend> GaussianMixture<B> {
    /// Number of components.
    pub fn components(&self) -> usize {
        self.means.dims()[0]
    }

    /// `ln πₖ + ln N(x; μₖ, σₖ)` for every row and component, `[n, K]`.
    fn joint(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [n, d] = x.dims();
        let k = self.components();
        let ls = self.log_scales.val().reshape([1, k, d]).expand([n, k, d]);
        let mu = self.means.val().reshape([1, k, d]).expand([n, k, d]);
        let x = x.reshape([n, 1, d]).expand([n, k, d]);
        let eps = (x - mu) * ls.clone().neg().exp();
        let per_component = (eps.square().mul_scalar(-0.5) - ls)
            .sum_dim(2)
            .reshape([n, k])
            .sub_scalar(d as f64 * HALF_LN_2PI);
        per_component + log_softmax(self.logits.val(), 1)
    }
}

impl<B: Backend> Distribution<B> for GaussianMixture<B> {
    fn dim(&self) -> usize {
        self.means.dims()[1]
    }

    fn log_prob(&self, x: Tensor<B, 2>, _context: Option<&Tensor<B, 2>>) -> Tensor<B, 1> {
        let n = x.dims()[0];
        logsumexp(self.joint(x), 1).reshape([n])
    }

    fn sample_with_log_prob(
        &self,
        n: usize,
        _context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (k, d) = (self.components(), Distribution::<B>::dim(self));
        // Gumbel-max: argmax(ln π + g), g = −ln(−ln u), u away from 0 so g stays finite.
        let u = Tensor::<B, 2>::random([n, k], Sampler::Uniform(1e-7, 1.0), device);
        let gumbel = u.log().neg().log().neg();
        let log_w = log_softmax(self.logits.val(), 1).detach();
        let chosen = (log_w + gumbel).argmax(1).expand([n, k]);
        let ids = Tensor::<B, 1, Int>::arange(0..k as i64, device)
            .reshape([1, k])
            .expand([n, k]);
        let one_hot = chosen.equal(ids).float();
        let mu = one_hot.clone().matmul(self.means.val());
        let log_sigma = one_hot.matmul(self.log_scales.val());
        let eps = Tensor::random([n, d], Sampler::Normal(0.0, 1.0), device);
        let x = mu + eps * log_sigma.exp();
        let log_p = Distribution::<B>::log_prob(self, x.clone(), None);
        (x, log_p)
    }
}
