//! Base distributions of a flow: [`StandardNormal`], [`DiagNormal`], the Gaussian mixture
//! [`GaussianMixture`], and [`ConditionalDiagNormal`], whose mean and scale come from a
//! context; [`Base`] holds any of them.

mod base;
mod conditional;
mod mixture;
mod normal;
mod traits;

pub use base::Base;
pub use conditional::{ConditionalDiagNormal, ConditionalDiagNormalConfig};
pub use mixture::{GaussianMixture, GaussianMixtureConfig};
pub use normal::{DiagNormal, DiagNormalConfig, StandardNormal};
pub use traits::Distribution;
