//! Posterior flows: what transforms the Gaussian sample `z₀` of `q₀(z|x)`.
//!
//! Each kind is an ordinary flow-core transform, given its context by the VAE:
//! - planar, radial, Householder and Sylvester steps are [`flow_core::Amortized`]: the
//!   encoder emits every step's parameters for every data point (Rezende & Mohamed 2015,
//!   §4; Tomczak & Welling 2016; van den Berg et al. 2018), and they are the transform's
//!   context ([`sylvester`] for the three Sylvester kinds and their knobs);
//! - IAF steps ([`iaf`]) own their MADEs (weights shared by all data points) and read the
//!   encoder's last hidden layer as context.
//!
//! Adding an amortized family is a variant of [`flow_core::AmortizedStep`] (its kernel and
//! parameter count) and one of [`FlowKind`] here.

use flow_core::{AmortizedStep, SylvesterQ};
use serde::{Deserialize, Serialize};

pub mod iaf;
pub mod sylvester;

/// Which flow transforms the Gaussian sample `z₀` of the posterior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
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
    /// Householder flows (`flow_core::householder`): one reflection per step, `latent`
    /// parameters per step, volume preserving.
    Householder,
    /// Orthogonal Sylvester flows (O-SNF, [`sylvester`]): `--ortho-vecs M` orthonormal
    /// columns per step.
    SylvesterO,
    /// Householder Sylvester flows (H-SNF, [`sylvester`]): `Q` from `--householder H`
    /// reflections per step.
    SylvesterH,
    /// Triangular Sylvester flows (T-SNF, [`sylvester`]): `Q` the identity or the
    /// reversal, alternating.
    SylvesterT,
}

impl FlowKind {
    /// Steps `K` when `--flow` is given without `--n-flows`: 10 for planar, radial and IAF,
    /// 16 (the Sylvester paper's tables) for Householder and Sylvester flows, 0 for none.
    pub fn default_steps(self) -> usize {
        match self {
            FlowKind::None => 0,
            FlowKind::Planar | FlowKind::Radial | FlowKind::Iaf => 10,
            FlowKind::Householder
            | FlowKind::SylvesterO
            | FlowKind::SylvesterH
            | FlowKind::SylvesterT => 16,
        }
    }

    /// The amortized family of this kind, with the Sylvester knobs `ortho_vecs` (`M`) and
    /// `householder` (`H`); `None` for the kinds whose steps are not amortized (none, IAF).
    pub fn amortized(self, ortho_vecs: usize, householder: usize) -> Option<AmortizedStep> {
        match self {
            FlowKind::None | FlowKind::Iaf => None,
            FlowKind::Planar => Some(AmortizedStep::Planar),
            FlowKind::Radial => Some(AmortizedStep::Radial),
            FlowKind::Householder => Some(AmortizedStep::Householder),
            FlowKind::SylvesterO => Some(AmortizedStep::Sylvester(SylvesterQ::Orthogonal {
                columns: ortho_vecs,
            })),
            FlowKind::SylvesterH => Some(AmortizedStep::Sylvester(SylvesterQ::Householder {
                reflections: householder,
            })),
            FlowKind::SylvesterT => Some(AmortizedStep::Sylvester(SylvesterQ::Triangular)),
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
            FlowKind::Householder => "householder",
            FlowKind::SylvesterO => "sylvester-o",
            FlowKind::SylvesterH => "sylvester-h",
            FlowKind::SylvesterT => "sylvester-t",
        })
    }
}
