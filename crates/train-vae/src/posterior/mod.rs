//! Posterior flows: what transforms the Gaussian sample `z₀` of `q₀(z|x)`.
//!
//! Each kind is an ordinary flow-core transform, given its context by the VAE:
//! - planar and radial steps are [`flow_core::Amortized`]: the encoder emits every step's
//!   parameters for every data point (Rezende & Mohamed 2015, §4; van den Berg et al.
//!   2018), and they are the transform's context;
//! - IAF steps ([`iaf`]) own their MADEs (weights shared by all data points) and read the
//!   encoder's last hidden layer as context.
//!
//! Adding an amortized family is a variant of [`flow_core::AmortizedStep`] (its kernel and
//! parameter count) and one of [`FlowKind`] here.

use burn::tensor::backend::Backend;
use flow_core::{Amortized, AmortizedStep};
use serde::{Deserialize, Serialize};

pub mod iaf;

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
    /// The amortized family of this kind, if it is one.
    pub fn amortized(self) -> Option<AmortizedStep> {
        match self {
            FlowKind::None | FlowKind::Iaf => None,
            FlowKind::Planar => Some(AmortizedStep::Planar),
            FlowKind::Radial => Some(AmortizedStep::Radial),
        }
    }

    /// Number of encoder outputs one step consumes per data point.
    pub fn params_per_step(self, latent: usize) -> usize {
        self.amortized()
            .map_or(0, |step| step.params_per_step(latent))
    }

    /// The amortized transform of `n_flows` steps on `latent` features, for the kinds whose
    /// parameters the encoder emits (`None` for the others, or without steps).
    pub fn amortized_flow<B: Backend>(self, latent: usize, n_flows: usize) -> Option<Amortized<B>> {
        let step = self.amortized()?;
        Amortized::new(step, latent, n_flows).ok()
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
