//! Coupling layers: NICE additive coupling (Dinh et al. 2014), RealNVP affine coupling
//! (Dinh et al. 2017) and rational-quadratic spline coupling (Durkan et al. 2019), with an
//! optional context input to the conditioner.
//!
//! # Math
//! Split `x = [x_a, x_b]` with `x_a` the first `⌊d/2⌋` features. A conditioner network
//! reads `c = [x_a, context]` and emits the parameters `θ(c)` of an element-wise bijection
//! `τ` ([`Elementwise`]): `y_a = x_a`, `y_b = τ(x_b; θ(c))`, and
//! `ln|det| = Σ_j ln|τ'(x_{b,j})|` (the Jacobian is block-triangular with identity on
//! `x_a`). The inverse is `x_b = τ⁻¹(y_b; θ(c))`, with `c` read from `y_a = x_a`.
//! - Affine: `y_b = x_b ⊙ exp(s(c)) + t(c)`; `ln|det| = Σ s(c)`. The log-scale is
//!   soft-clamped, `s = S · tanh(s̃ / S)`, so one layer never scales by more than `e^{±S}`.
//! - Additive: `y_b = x_b + t(c)`; `ln|det| = 0` (volume preserving).
//! - Spline: `y_b = RQS(x_b; θ(c))` with identity tails outside `[−B, B]`.
//!
//! The conditioner's last layer starts at zero: a new coupling layer is the identity.
//! Alternate couplings with a [`crate::Permutation`] so that every feature gets transformed.

use burn::{
    config::Config,
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{
    elementwise::Elementwise,
    error::FlowError,
    nets::Mlp,
    transform::{Invertible, Transform},
};

/// Configuration of a [`Coupling`] layer.
#[derive(Config, Debug)]
pub struct CouplingConfig {
    /// Feature dimension `d ≥ 2`.
    pub dim: usize,
    /// The element-wise bijection: additive (NICE), affine (RealNVP) or spline (NSF).
    pub kind: Elementwise,
    /// Width of the conditioner's hidden layers.
    #[config(default = 64)]
    pub hidden: usize,
    /// Number of hidden layers of the conditioner.
    #[config(default = 2)]
    pub n_hidden: usize,
    /// Width of the context fed to the conditioner (0 = unconditional).
    #[config(default = 0)]
    pub context_dim: usize,
    /// Dropout probability on the conditioner's hidden activations in training (0: none).
    #[config(default = 0.0)]
    pub dropout: f64,
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
        self.kind.validate()?;
        let d_a = self.dim / 2;
        let d_b = self.dim - d_a;
        let outputs = self.kind.params_per_dim() * d_b;
        Ok(Coupling {
            conditioner: Mlp::new(
                d_a + self.context_dim,
                self.hidden,
                self.n_hidden,
                outputs,
                device,
            )?
            .with_dropout(self.dropout)?,
            dim: self.dim,
            context_dim: self.context_dim,
            kind: self.kind,
        })
    }
}

/// A coupling layer; see the [module docs](self) for the math.
#[derive(Module, Debug)]
pub struct Coupling<B: Backend> {
    conditioner: Mlp<B>,
    dim: usize,
    context_dim: usize,
    #[module(skip)]
    kind: Elementwise,
}

impl<B: Backend> Coupling<B> {
    /// Splits `x` into `(x_a, x_b)` and computes the parameters `[n, P, d_b]` of `x_b`'s map.
    fn split(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 3>) {
        let [n, _] = x.dims();
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
        let params = self
            .conditioner
            .forward(input)
            .reshape([n, self.kind.params_per_dim(), d_b]);
        (x_a, x_b, params)
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
        let (x_a, x_b, params) = self.split(x, context);
        let (y_b, ladj) = self.kind.forward(x_b, params);
        (Tensor::cat(vec![x_a, y_b], 1), ladj)
    }
}

impl<B: Backend> Invertible<B> for Coupling<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (y_a, y_b, params) = self.split(y, context);
        let (x_b, ladj) = self.kind.inverse(y_b, params);
        (Tensor::cat(vec![y_a, x_b], 1), ladj)
    }
}
