//! Coupling layers: NICE additive coupling (Dinh et al. 2014) and RealNVP affine coupling
//! (Dinh et al. 2017), with an optional context input to the conditioner.
//!
//! # Math
//! Split `x = [x_a, x_b]` with `x_a` the first `⌊d/2⌋` features. A conditioner network
//! reads `c = [x_a, context]`.
//! - Affine: `y_a = x_a`, `y_b = x_b ⊙ exp(s(c)) + t(c)`; `ln|det| = Σ s(c)`.
//!   Inverse: `x_b = (y_b − t(c)) ⊙ exp(−s(c))`, `ln|det| = −Σ s(c)`.
//!   The log-scale is soft-clamped, `s = S · tanh(s̃ / S)` (`S` = `max_log_scale`), so one
//!   layer can never scale by more than `e^{±S}`.
//! - Additive: `y_b = x_b + t(c)`; `ln|det| = 0` (volume preserving).
//!
//! The conditioner's last layer starts at zero: a new coupling layer is the identity.
//! Alternate couplings with a [`crate::Permutation`] so that every feature gets transformed.

use burn::{
    config::Config,
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{
    error::FlowError,
    nets::Mlp,
    ops::{soft_clamp, sum_rows, zero_ladj},
    transform::{Invertible, Transform},
};

/// Element-wise affine kernel: `y = x ⊙ exp(log_scale) + shift`, `ladj = Σ log_scale`.
///
/// Shapes: `x: [n, d]`; `shift, log_scale: [m, d]` with `m ∈ {1, n}`. Returns `([n, d], [n])`.
pub fn affine<B: Backend>(
    x: Tensor<B, 2>,
    shift: Tensor<B, 2>,
    log_scale: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = x.dims();
    let ladj = sum_rows(log_scale.clone().expand([n, d]));
    (x * log_scale.exp() + shift, ladj)
}

/// Inverse of [`affine`]: `x = (y − shift) ⊙ exp(−log_scale)`, `ladj = −Σ log_scale`.
pub fn affine_inverse<B: Backend>(
    y: Tensor<B, 2>,
    shift: Tensor<B, 2>,
    log_scale: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = y.dims();
    let ladj = sum_rows(log_scale.clone().expand([n, d])).neg();
    ((y - shift) * log_scale.neg().exp(), ladj)
}

/// Which coupling function transforms `x_b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CouplingKind {
    /// NICE: `y_b = x_b + t(c)`.
    Additive,
    /// RealNVP: `y_b = x_b ⊙ exp(s(c)) + t(c)` with a soft-clamped log-scale.
    Affine,
}

/// Configuration of a [`Coupling`] layer.
#[derive(Config, Debug)]
pub struct CouplingConfig {
    /// Feature dimension `d ≥ 2`.
    pub dim: usize,
    /// Additive (NICE) or affine (RealNVP).
    pub kind: CouplingKind,
    /// Width of the conditioner's hidden layers.
    #[config(default = 64)]
    pub hidden: usize,
    /// Number of hidden layers of the conditioner.
    #[config(default = 2)]
    pub n_hidden: usize,
    /// Width of the context fed to the conditioner (0 = unconditional).
    #[config(default = 0)]
    pub context_dim: usize,
    /// Bound `S` of the soft-clamped log-scale (affine only).
    #[config(default = 3.0)]
    pub max_log_scale: f64,
}

impl CouplingConfig {
    /// Builds the layer; its conditioner's last layer is zero, so it starts at the identity.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Coupling<B>> {
        if self.dim < 2 {
            return Err(FlowError::InvalidConfig(format!(
                "coupling needs dim ≥ 2 (one half conditions the other), got {}",
                self.dim
            )));
        }
        if self.kind == CouplingKind::Affine
            && !(self.max_log_scale.is_finite() && self.max_log_scale > 0.0)
        {
            return Err(FlowError::InvalidConfig(format!(
                "max_log_scale must be finite and > 0, got {}",
                self.max_log_scale
            )));
        }
        let d_a = self.dim / 2;
        let d_b = self.dim - d_a;
        let outputs = match self.kind {
            CouplingKind::Additive => d_b,
            CouplingKind::Affine => 2 * d_b,
        };
        Ok(Coupling {
            conditioner: Mlp::new(
                d_a + self.context_dim,
                self.hidden,
                self.n_hidden,
                outputs,
                device,
            )?,
            dim: self.dim,
            context_dim: self.context_dim,
            affine: self.kind == CouplingKind::Affine,
            max_log_scale: self.max_log_scale,
        })
    }
}

/// A coupling layer; see the [module docs](self) for the math.
#[derive(Module, Debug)]
pub struct Coupling<B: Backend> {
    conditioner: Mlp<B>,
    dim: usize,
    context_dim: usize,
    affine: bool,
    max_log_scale: f64,
}

impl<B: Backend> Coupling<B> {
    /// Splits `x` and returns `(x_a, x_b, shift, log_scale)` (log-scale `None` if additive).
    #[allow(clippy::type_complexity)]
    fn split(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (
        Tensor<B, 2>,
        Tensor<B, 2>,
        Tensor<B, 2>,
        Option<Tensor<B, 2>>,
    ) {
        let d_a = self.dim / 2;
        let d_b = self.dim - d_a;
        let x_a = x.clone().narrow(1, 0, d_a);
        let x_b = x.narrow(1, d_a, d_b);
        let input = match (self.context_dim, context) {
            (0, _) => x_a.clone(),
            (_, Some(c)) => Tensor::cat(vec![x_a.clone(), c.clone()], 1),
            (_, None) => panic!(
                "this coupling layer needs a context of width {}",
                self.context_dim
            ),
        };
        let params = self.conditioner.forward(input);
        if self.affine {
            let shift = params.clone().narrow(1, 0, d_b);
            let log_scale = soft_clamp(params.narrow(1, d_b, d_b), self.max_log_scale);
            (x_a, x_b, shift, Some(log_scale))
        } else {
            (x_a, x_b, params, None)
        }
    }
}

impl<B: Backend> Transform<B> for Coupling<B> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn context_dim(&self) -> usize {
        self.context_dim
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (x_a, x_b, shift, log_scale) = self.split(x, context);
        let (y_b, ladj) = match log_scale {
            Some(s) => affine(x_b, shift, s),
            None => {
                let ladj = zero_ladj(&x_b);
                (x_b + shift, ladj)
            }
        };
        (Tensor::cat(vec![x_a, y_b], 1), ladj)
    }
}

impl<B: Backend> Invertible<B> for Coupling<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (y_a, y_b, shift, log_scale) = self.split(y, context);
        let (x_b, ladj) = match log_scale {
            Some(s) => affine_inverse(y_b, shift, s),
            None => {
                let ladj = zero_ladj(&y_b);
                (y_b - shift, ladj)
            }
        };
        (Tensor::cat(vec![y_a, x_b], 1), ladj)
    }
}
