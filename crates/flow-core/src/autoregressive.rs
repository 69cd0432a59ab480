//! Masked autoregressive flows: MAF (Papamakarios et al. 2017) and, as its [`Inverse`],
//! IAF (Kingma et al. 2016), with affine or rational-quadratic spline (Durkan et al. 2019)
//! element-wise maps.
//!
//! # Math
//! A [`Made`] conditioner reads the *data side* `y` and gives every feature `j` parameters
//! `θ_j(y_{<j}, context)` that depend only on the features before `j` in the MADE's order.
//! With `τ` an element-wise bijection ([`Elementwise`]):
//!
//! - forward (noise → data, sampling): `y_j = τ(x_j; θ_j(y_{<j}))`. Each `y_j` needs the
//!   earlier `y`, so this takes `D` sequential steps, one per feature in increasing
//!   degree, each computing only that feature's parameters ([`crate::made::Sequential`]:
//!   a rank-1 update of the first hidden layer, the other hidden layers, and `P` output
//!   columns).
//! - inverse (data → noise, density): `x_j = τ⁻¹(y_j; θ_j(y_{<j}))`, all `θ` from one pass
//!   of the MADE on `y`.
//! - `ln|det ∂y/∂x| = Σ_j ln|τ'(x_j; θ_j)|`: the Jacobian is triangular in the order.
//!
//! So a MAF evaluates densities in one pass and samples in `D`. Wrapped in [`Inverse`] the
//! directions swap: an IAF samples in one pass and gets the density of its own samples in
//! the same pass (`x_j = τ⁻¹(z_j; θ_j(z_{<j}))`, the conditioner reading the noise side),
//! which is what a VAE posterior needs, while the density of an arbitrary point takes `D`
//! passes.
//!
//! | layer | `log_prob(x)` | `sample` / `sample_with_log_prob` |
//! |---|---|---|
//! | `MaskedAutoregressive` (MAF) | 1 pass | `D` passes |
//! | `Inverse<MaskedAutoregressive>` (IAF) | `D` passes | 1 pass |

use burn::{
    config::Config,
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{
    elementwise::Elementwise,
    made::{Made, MadeConfig, Order},
    transform::{Invertible, Transform},
};

#[allow(unused_imports)] // for the docs
use crate::transform::Inverse;

/// Configuration of a [`MaskedAutoregressive`] layer.
#[derive(Config, Debug)]
pub struct MaskedAutoregressiveConfig {
    /// Feature dimension `D ≥ 1`.
    pub dim: usize,
    /// The element-wise map (affine for MAF/IAF, spline for autoregressive NSF).
    pub kind: Elementwise,
    /// Width of the MADE's hidden layers.
    #[config(default = 64)]
    pub hidden: usize,
    /// Number of hidden layers of the MADE.
    #[config(default = 2)]
    pub n_hidden: usize,
    /// Width of the context (0 = unconditional).
    #[config(default = 0)]
    pub context_dim: usize,
    /// The autoregressive order; alternate [`Order::Natural`] and [`Order::Reversed`] (or
    /// put a [`crate::Permutation`] between layers) so that every feature conditions on
    /// every other somewhere in the stack.
    #[config(default = "Order::Natural")]
    pub order: Order,
    /// Dropout probability on the MADE's hidden activations in training (the MAF paper's
    /// regularization for small data sets; 0: none).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl MaskedAutoregressiveConfig {
    /// Builds the layer; its MADE's outputs are zero, so it starts at the identity.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<MaskedAutoregressive<B>> {
        self.kind.validate()?;
        let made = MadeConfig::new(self.dim, self.kind.params_per_dim())
            .with_hidden(self.hidden)
            .with_n_hidden(self.n_hidden)
            .with_context_dim(self.context_dim)
            .with_order(self.order)
            .with_dropout(self.dropout)
            .init(device)?;
        Ok(MaskedAutoregressive {
            made,
            kind: self.kind,
        })
    }
}

/// A masked autoregressive layer; see the [module docs](self) for the math and directions.
#[derive(Module, Debug)]
pub struct MaskedAutoregressive<B: Backend> {
    made: Made<B>,
    #[module(skip)]
    kind: Elementwise,
}

impl<B: Backend> MaskedAutoregressive<B> {
    /// The conditioner.
    pub fn made(&self) -> &Made<B> {
        &self.made
    }

    /// Parameters `[n, P, D]` of every feature, from the data side `y`.
    fn params(&self, y: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> Tensor<B, 3> {
        let [n, d] = y.dims();
        self.made
            .forward(y, context)
            .reshape([n, self.kind.params_per_dim(), d])
    }
}

impl<B: Backend> Transform<B> for MaskedAutoregressive<B> {
    fn dim(&self) -> usize {
        self.made.dim()
    }
    fn context_dim(&self) -> usize {
        self.made.context_dim()
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        // One feature at a time in increasing degree: feature j's parameters only see
        // the features fixed before it (see `Sequential`).
        let [n, d] = x.dims();
        let mut made = self.made.sequential(n, context, &x.device());
        let order = made.order().to_vec();
        let mut columns: Vec<Option<Tensor<B, 2>>> = vec![None; d];
        let mut ladj = None;
        for (k, &j) in order.iter().enumerate() {
            let (y_j, l_j) = self.kind.forward(x.clone().narrow(1, j, 1), made.params(j));
            if k + 1 < d {
                made.fix(j, y_j.clone());
            }
            columns[j] = Some(y_j);
            ladj = Some(match ladj {
                Some(acc) => acc + l_j,
                None => l_j,
            });
        }
        let y = Tensor::cat(
            columns
                .into_iter()
                .map(|c| c.expect("every feature is fixed"))
                .collect(),
            1,
        );
        (y, ladj.expect("dim ≥ 1"))
    }
}

impl<B: Backend> Invertible<B> for MaskedAutoregressive<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let params = self.params(y.clone(), context);
        self.kind.inverse(y, params)
    }
}
