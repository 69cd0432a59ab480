//! Inverse autoregressive flow posterior (Kingma et al. 2016).
//!
//! Unlike planar and radial steps, whose parameters are encoder outputs, an IAF step owns
//! a MADE (learned weights shared by all data points) that reads the current `z` and, as
//! context, the encoder's last hidden layer `h(x)`:
//!
//! - step `k` ([`IafUpdate::Gated`], the default; the IAF paper's numerically stable
//!   update): `z_k = σ ⊙ z_{k−1} + (1 − σ) ⊙ m`, `σ = sigmoid(s + β)` (the logit `s + β`
//!   soft-clamped to ±8, so that `ln σ` stays finite in f32), with `(m_j, s_j)`
//!   depending only on the features before `j` in the step's order (and on `h`), so
//!   `ln|det J_k| = Σ_j ln σ_j`; the forget-gate bias `β` (`--iaf-forget-bias`, default 1
//!   as in the Sylvester paper's code) starts every step close to keeping `z`
//!   (`σ(1) ≈ 0.73`, `σ(2) ≈ 0.88`);
//! - [`IafUpdate::Affine`]: `z_k = (z_{k−1} − t) ⊙ exp(−s)`, `ln|det J_k| = −Σ_j s_j` (the
//!   log-scale soft-clamped to ±3), which a new step starts as the identity;
//! - either is `flow_core::Inverse<MaskedAutoregressive>`: the IAF samples and scores its
//!   own samples in one pass of each MADE;
//! - orders alternate natural / reversed between steps, so every latent dimension
//!   conditions on every other after two steps.
//!
//! The MADE's output and context layers start at zero.

use burn::tensor::backend::Backend;
use flow_core::{Elementwise, Inverse, MaskedAutoregressive, MaskedAutoregressiveConfig, Order};
use serde::{Deserialize, Serialize};

/// The element-wise update of an IAF step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IafUpdate {
    /// `σ ⊙ z + (1 − σ) ⊙ m` (`flow_core::Elementwise::gated`).
    Gated,
    /// `(z − t) ⊙ exp(−s)` (`flow_core::Elementwise::affine`).
    Affine,
}

impl IafUpdate {
    /// [`IafUpdate::Affine`], what runs written before the gated update read as.
    pub fn affine() -> Self {
        IafUpdate::Affine
    }

    fn elementwise(self, forget_bias: f64) -> Elementwise {
        match self {
            IafUpdate::Gated => Elementwise::Gated { forget_bias },
            IafUpdate::Affine => Elementwise::affine(),
        }
    }
}

/// One IAF step.
pub type Step<B> = Inverse<B, MaskedAutoregressive<B>>;

/// `n_flows` steps on a `latent`-dimensional `z`, each a MADE with `n_hidden` hidden layers
/// of width `hidden`, conditioned on a context of width `context`, with the update `update`
/// (the gated one with the forget-gate bias `forget_bias`).
#[allow(clippy::too_many_arguments)]
pub fn build<B: Backend>(
    n_flows: usize,
    latent: usize,
    hidden: usize,
    n_hidden: usize,
    update: IafUpdate,
    forget_bias: f64,
    context: usize,
    device: &B::Device,
) -> flow_core::Result<Vec<Step<B>>> {
    (0..n_flows)
        .map(|k| {
            let order = if k % 2 == 0 {
                Order::Natural
            } else {
                Order::Reversed
            };
            let maf = MaskedAutoregressiveConfig::new(latent, update.elementwise(forget_bias))
                .with_hidden(hidden)
                .with_n_hidden(n_hidden)
                .with_context_dim(context)
                .with_order(order)
                .init(device)?;
            Ok(Inverse::new(maf))
        })
        .collect()
}
