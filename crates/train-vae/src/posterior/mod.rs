//! Amortized posterior flows: the encoder emits every flow parameter for every data point.
//!
//! A posterior flow is a list of `K` steps `z_k = f_k(z_{k−1}; θ_k(x))` whose parameters
//! `θ_k(x)` are columns of the encoder's output (Rezende & Mohamed 2015, §4; van den Berg
//! et al. 2018). The steps run on the device through `flow_core`'s batched kernels, which
//! take one parameter row per data point.
//!
//! Adding an amortized flow is one file: a module with `params_per_step(latent)` and
//! `step(z, θ) -> (z', ln|det ∂z'/∂z|)`, plus one variant in [`FlowKind`]. A flow with
//! learned weights of its own (IAF, [`iaf`]) is one file too: its steps are a module of
//! the VAE, built from the config, that reads the encoder's hidden layer as context.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

pub mod iaf;
pub mod planar;
pub mod radial;

/// Which flow transforms the Gaussian sample `z₀` of the posterior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// No flow: the diagonal Gaussian `q₀` is the posterior.
    None,
    /// Planar flows (`flow_core::planar`), `2·latent + 1` parameters per step.
    Planar,
    /// Radial flows (`flow_core::radial`), `latent + 2` parameters per step.
    Radial,
    /// Inverse autoregressive flows ([`iaf`]): MADE steps conditioned on the encoder's
    /// hidden layer; no encoder outputs per step.
    Iaf,
}

impl FlowKind {
    /// Number of encoder outputs one step consumes per data point.
    pub fn params_per_step(self, latent: usize) -> usize {
        match self {
            FlowKind::None | FlowKind::Iaf => 0,
            FlowKind::Planar => planar::params_per_step(latent),
            FlowKind::Radial => radial::params_per_step(latent),
        }
    }

    /// Applies one step with per-row parameters `theta: [n, params_per_step]`.
    pub fn step<B: Backend>(
        self,
        z: Tensor<B, 2>,
        theta: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        match self {
            // IAF steps are modules of the VAE and run through `iaf::run`.
            FlowKind::None | FlowKind::Iaf => {
                let ladj = Tensor::zeros([z.dims()[0]], &z.device());
                (z, ladj)
            }
            FlowKind::Planar => planar::run(z, theta, 1),
            FlowKind::Radial => radial::step(z, theta),
        }
    }
}

impl std::fmt::Display for FlowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlowKind::None => "none",
            FlowKind::Planar => "planar",
            FlowKind::Radial => "radial",
            FlowKind::Iaf => "iaf",
        })
    }
}

/// Runs `n_flows` steps of `kind` on `z₀`, step `k` reading columns
/// `[k·P, (k+1)·P)` of `theta: [n, n_flows·P]`. Returns `(z_K, Σ_k ln|det J_k|)`.
pub fn run<B: Backend>(
    kind: FlowKind,
    n_flows: usize,
    z0: Tensor<B, 2>,
    theta: Option<Tensor<B, 2>>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, latent] = z0.dims();
    let p = kind.params_per_step(latent);
    let mut ladj = Tensor::zeros([n], &z0.device());
    let mut z = z0;
    if let Some(theta) = theta.filter(|_| p > 0 && n_flows > 0) {
        if kind == FlowKind::Planar {
            return planar::run(z, theta, n_flows);
        }
        for k in 0..n_flows {
            let (next, l) = kind.step(z, theta.clone().slice([0..n, k * p..(k + 1) * p]));
            z = next;
            ladj = ladj + l;
        }
    }
    (z, ladj)
}
