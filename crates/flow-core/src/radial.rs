//! Radial flow (Rezende & Mohamed 2015, §4.1).
//!
//! # Math
//! Forward: `f(z) = z + β h(α, r) (z − z₀)` with `r = ‖z − z₀‖`, `h(α, r) = 1 / (α + r)`,
//! parameters `z₀ ∈ ℝᵈ`, `α > 0`, `β ∈ ℝ`.
//!
//! Log-determinant: `∂f/∂z = (1 + βh) I + βh' (z − z₀)(z − z₀)ᵀ / r` with
//! `h' = −1/(α + r)²`, a rank-one update of a scaled identity, so
//! `ln|det ∂f/∂z| = (d − 1) ln(1 + βh) + ln(1 + βh + βh' r)`.
//!
//! Invertibility: `f` is invertible iff `β ≥ −α`. The constraint is built in:
//! `α = softplus(α̃)`, `β = −α + softplus(β̃)` for raw parameters `α̃, β̃`.
//!
//! Numerics: `r = √(‖z − z₀‖² + ε)` with `ε = 10⁻¹²`, so the gradient is finite at `z = z₀`;
//! the log-determinant above is evaluated for exactly this `r` (the `βh' r` term becomes
//! `βh' ‖z − z₀‖² / r`), so it is the exact log-determinant of the implemented map.
//!
//! Inverse: not analytic in closed form, so [`Radial`] implements [`Transform`] only.

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Distribution, Tensor, backend::Backend},
};

use crate::{
    ops::{dot_rows, softplus},
    transform::Transform,
};

const RADIUS_EPS: f64 = 1e-12;

/// The radial kernel with batched or broadcast parameters.
///
/// Shapes: `z: [n, d]`; `z0: [m, d]`; `alpha_raw, beta_raw: [m, 1]` with `m ∈ {1, n}`.
/// Returns `(f(z): [n, d], ln|det ∂f/∂z|: [n])`. The constraints `α > 0`, `β ≥ −α` are
/// applied here to the raw parameters.
pub fn radial<B: Backend>(
    z: Tensor<B, 2>,
    z0: Tensor<B, 2>,
    alpha_raw: Tensor<B, 2>,
    beta_raw: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = z.dims();
    let alpha = softplus(alpha_raw);
    let beta = softplus(beta_raw) - alpha.clone();
    let diff = z.clone() - z0;
    let sq = dot_rows(diff.clone(), diff.clone());
    let r = sq.clone().add_scalar(RADIUS_EPS).sqrt();
    let alpha_r = alpha + r.clone();
    let beta_h = beta.clone() / alpha_r.clone();
    // βh' · ‖z − z₀‖² / r with h' = −1/(α + r)².
    let beta_h_prime_r = (beta / alpha_r.square()).neg() * sq / r;
    let one_plus_beta_h = beta_h.clone().add_scalar(1.0);
    let ladj = one_plus_beta_h
        .clone()
        .log()
        .mul_scalar(d.saturating_sub(1) as f64)
        + (one_plus_beta_h + beta_h_prime_r).log();
    (z + diff * beta_h, ladj.reshape([n]))
}

/// Configuration of a [`Radial`] layer.
#[derive(Config, Debug)]
pub struct RadialConfig {
    /// Feature dimension `d`.
    pub dim: usize,
    /// Standard deviation of the initial reference point `z₀` and of the raw `α̃, β̃`.
    #[config(default = 0.1)]
    pub init_std: f64,
}

impl RadialConfig {
    /// Builds one radial layer with global (learned, not amortized) parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Radial<B>> {
        crate::error::check_dim("radial flow", self.dim)?;
        crate::error::check_init_std("radial", self.init_std)?;
        let normal = Distribution::Normal(0.0, self.init_std);
        Ok(Radial {
            z0: Param::from_tensor(Tensor::random([1, self.dim], normal, device)),
            alpha_raw: Param::from_tensor(Tensor::random([1, 1], normal, device)),
            beta_raw: Param::from_tensor(Tensor::random([1, 1], normal, device)),
        })
    }

    /// Builds `k ≥ 1` radial layers, applied in order.
    pub fn init_stack<B: Backend>(
        &self,
        k: usize,
        device: &B::Device,
    ) -> crate::Result<Vec<Radial<B>>> {
        crate::error::init_stack("radial", k, || self.init(device))
    }
}

/// A radial layer with learned parameters; see the [module docs](self) for the math.
#[derive(Module, Debug)]
pub struct Radial<B: Backend> {
    /// Reference point `z₀`, `[1, d]`.
    pub z0: Param<Tensor<B, 2>>,
    /// Raw `α̃`, `[1, 1]`; `α = softplus(α̃)`.
    pub alpha_raw: Param<Tensor<B, 2>>,
    /// Raw `β̃`, `[1, 1]`; `β = −α + softplus(β̃)`.
    pub beta_raw: Param<Tensor<B, 2>>,
}

impl<B: Backend> Transform<B> for Radial<B> {
    fn dim(&self) -> usize {
        self.z0.dims()[1]
    }
    fn forward(
        &self,
        z: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        radial(z, self.z0.val(), self.alpha_raw.val(), self.beta_raw.val())
    }
}
