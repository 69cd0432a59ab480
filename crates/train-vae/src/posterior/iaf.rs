//! Inverse autoregressive flow posterior (Kingma et al. 2016).
//!
//! Unlike planar and radial steps, whose parameters are encoder outputs, an IAF step owns
//! a MADE (learned weights shared by all data points) that reads the current `z` and, as
//! context, the encoder's last hidden layer `h(x)`:
//!
//! - step `k`: `z_k = (z_{k−1} − t(z_{k−1}, h)) ⊙ exp(−s(z_{k−1}, h))`, every `(t_j, s_j)`
//!   depending only on the features before `j` in the step's order, so
//!   `ln|det J_k| = −Σ_j s_j` (the log-scale soft-clamped to ±3);
//! - this is `flow_core::Inverse<MaskedAutoregressive>` with an affine map: the IAF samples
//!   and scores its own samples in one pass of each MADE;
//! - orders alternate natural / reversed between steps, so every latent dimension
//!   conditions on every other after two steps.
//!
//! The MADE's output and context layers start at zero: a new IAF posterior is `q₀`.

use burn::tensor::backend::Backend;
use flow_core::{Elementwise, Inverse, MaskedAutoregressive, MaskedAutoregressiveConfig, Order};

/// One IAF step.
pub type Step<B> = Inverse<B, MaskedAutoregressive<B>>;

/// `n_flows` steps on a `latent`-dimensional `z`, each a MADE with `n_hidden` hidden layers
/// of width `hidden`, conditioned on a context of width `context`.
pub fn build<B: Backend>(
    n_flows: usize,
    latent: usize,
    hidden: usize,
    n_hidden: usize,
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
            let maf = MaskedAutoregressiveConfig::new(latent, Elementwise::affine())
                .with_hidden(hidden)
                .with_n_hidden(n_hidden)
                .with_context_dim(context)
                .with_order(order)
                .init(device)?;
            Ok(Inverse::new(maf))
        })
        .collect()
}
