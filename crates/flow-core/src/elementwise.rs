//! The element-wise bijections that coupling and autoregressive layers apply, each
//! feature with its own parameters: additive, affine, rational-quadratic spline.
//!
//! # Math
//! For one feature `x` with parameters `θ` (produced by a conditioner):
//! - additive: `y = x + t`, `ln|dy/dx| = 0`;
//! - affine: `y = x·exp(s) + t` with `s = S·tanh(ŝ/S)` soft-clamped (`S` = `max_log_scale`),
//!   `ln|dy/dx| = s`;
//! - spline: `y = RQS(x; ŵ, ĥ, δ̂)` ([`crate::spline`]), identity outside `[−B, B]`;
//! - gated (the IAF paper's numerically stable update, Kingma et al. 2016, eq. 14): with
//!   `σ = sigmoid(a)`, `a = G·tanh((ŝ + β)/G)` (`β` the forget-gate bias; the logit
//!   soft-clamped to `(−G, G)`, `G = 8`, so that the expanding direction stays finite at
//!   any input: `1/σ < 3000`), the inverse is the convex combination
//!   `x = σ·y + (1 − σ)·m` and the forward `y = (x − (1 − σ)·m)/σ`, so
//!   `ln|dy/dx| = −ln σ = softplus(−ŝ − β)`. An IAF (`Inverse` of a MAF) samples with the
//!   inverse: `z' = σ ⊙ z + (1 − σ) ⊙ m`, a step that never amplifies `z`.
//!
//! Parameters arrive *parameter-major*: `params: [m, P, d]` holds parameter `p` of feature
//! `j` at `[·, p, j]` (`P` = [`Elementwise::params_per_dim`]). For the affine map `p = 0`
//! is the shift and `p = 1` the log-scale; for the spline `0..K` are the widths, `K..2K`
//! the heights and `2K..3K−1` the interior derivatives; for the gated map `p = 0` is `m` and
//! `p = 1` is `ŝ`. All-zero parameters are the identity for every kind but the gated one,
//! so a conditioner whose last layer starts at zero makes a new layer start at the identity
//! (a new gated layer starts at `x = σ(β)·y`, as in the IAF paper).

use burn::tensor::{Tensor, activation::sigmoid, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::{
    error::{FlowError, Result},
    kernels,
    ops::{soft_clamp, softplus, sum_rows, zero_ladj},
    spline::{RqSpline, rq_spline_inverse_reference, rq_spline_reference},
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

/// Which element-wise bijection a coupling or autoregressive layer applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Elementwise {
    /// NICE: `y = x + t` (volume preserving).
    Additive,
    /// RealNVP / MAF: `y = x·exp(s) + t`, the log-scale soft-clamped to `(−S, S)`.
    Affine {
        /// The bound `S` of the log-scale.
        max_log_scale: f64,
    },
    /// Neural spline flows: a rational-quadratic spline per feature.
    Spline(RqSpline),
    /// The IAF paper's gated update: inverse `x = σ·y + (1 − σ)·m`, `σ = sigmoid(a)` with
    /// `a` the soft-clamped `ŝ + β` (see the [module docs](self)).
    Gated {
        /// The forget-gate bias `β` (the paper initialises the gate towards keeping `y`).
        forget_bias: f64,
    },
    /// The affine maps of zuko and nflows, written (as they are) in the density direction:
    /// inverse `x = y·σ(ŝ) + m`, `ln|dx/dy| = ln σ`; forward `y = (x − m)/σ`. Parameter 0
    /// is the shift `m`, 1 the raw scale `ŝ`. For models imported from those libraries
    /// ([`crate::import`]).
    ScaleShift {
        /// How the scale comes from `ŝ`.
        scale: Scale,
    },
    /// zuko's monotonic rational-quadratic spline (`MonotonicRQSTransform`), whose density
    /// direction is the spline's forward formula: the raw parameters soft-clamped
    /// (`v/(1 + 2|v|/c)` for widths and heights, `v/(1 + |v|/c)` for the derivatives,
    /// `c = ln 1000`), sizes `softmax` with no minimum, interior derivatives `exp`; then
    /// inverse = the spline [`crate::rq_spline`], forward = its inverse. For models imported
    /// from zuko ([`crate::import`]).
    ZukoSpline {
        /// Number of bins `K ≥ 2`.
        bins: usize,
        /// Half-width `B` of the interval `[−B, B]` (zuko: 5).
        bound: f64,
    },
}

/// The scale `σ(ŝ)` of [`Elementwise::ScaleShift`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Scale {
    /// zuko's `MonotonicAffineTransform`: `σ = exp(ŝ / (1 + |ŝ|/c))`, `c = −ln(slope)`.
    RationalExp {
        /// The bound `c` of `ln σ` (zuko: `−ln 10⁻³`).
        bound: f64,
    },
    /// nflows' `MaskedAffineAutoregressiveTransform`: `σ = softplus(ŝ) + ε`.
    SoftplusPlus {
        /// The floor `ε` of the scale (nflows: `10⁻³`).
        epsilon: f64,
    },
}

impl Scale {
    /// `ln σ(ŝ)`, element-wise.
    fn log_scale<B: Backend>(&self, raw: Tensor<B, 2>) -> Tensor<B, 2> {
        match *self {
            Scale::RationalExp { bound } => {
                raw.clone() / raw.abs().div_scalar(bound).add_scalar(1.0)
            }
            Scale::SoftplusPlus { epsilon } => softplus(raw).add_scalar(epsilon).log(),
        }
    }
}

/// zuko's spline constants: `c = −ln(slope)`, `slope = 10⁻³`.
const ZUKO_SLOPE_BOUND: f64 = 6.907_755_278_982_137;

/// The minimum sizes that stand in for zuko's none: every `m ≤ 10⁻⁹` gives the same `f32`
/// spline, and [`RqSpline::validate`] wants them positive.
const NO_MINIMUM: f64 = 1e-12;

/// The [`RqSpline`] of a zuko spline.
fn zuko_spline(bins: usize, bound: f64) -> RqSpline {
    RqSpline {
        bins,
        bound,
        min_bin_width: NO_MINIMUM,
        min_bin_height: NO_MINIMUM,
        min_derivative: NO_MINIMUM,
    }
}

/// zuko's raw spline parameters `[m, 3K − 1, d]` in flow-core's parametrization: widths and
/// heights soft-clamped (a softmax takes them as they are), derivatives `δ = exp(d')` turned
/// into the `δ̂` with `m_δ + softplus(δ̂ + c₀) = δ`, `c₀ = ln(e^{1−m_δ} − 1)`.
fn zuko_params<B: Backend>(params: Tensor<B, 3>, bins: usize) -> Tensor<B, 3> {
    let c = ZUKO_SLOPE_BOUND;
    let sizes = params.clone().narrow(1, 0, 2 * bins);
    let sizes = sizes.clone() / sizes.abs().mul_scalar(2.0 / c).add_scalar(1.0);
    let d = params.narrow(1, 2 * bins, bins - 1);
    let delta = (d.clone() / d.abs().div_scalar(c).add_scalar(1.0))
        .exp()
        .sub_scalar(NO_MINIMUM);
    // softplus⁻¹(v) = v + ln(1 − e^{−v}), stable for the δ ∈ (10⁻³, 10³) zuko allows.
    let inverse_softplus = delta.clone() + delta.neg().exp().neg().log1p();
    let shift = ((1.0 - NO_MINIMUM).exp() - 1.0).ln();
    Tensor::cat(vec![sizes, inverse_softplus.sub_scalar(shift)], 1)
}

impl Elementwise {
    /// Affine with the log-scale bounded by 3 (one layer scales by at most `e³`).
    pub fn affine() -> Self {
        Elementwise::Affine { max_log_scale: 3.0 }
    }

    /// The gated update with forget-gate bias 1 (the Sylvester paper's IAF code).
    pub fn gated() -> Self {
        Elementwise::Gated { forget_bias: 1.0 }
    }

    /// A spline with `bins` bins on `[−bound, bound]` and nflows' minimum sizes.
    pub fn spline(bins: usize, bound: f64) -> Self {
        Elementwise::Spline(RqSpline::new(bins, bound))
    }

    /// Number of parameters `P` per transformed feature.
    pub fn params_per_dim(&self) -> usize {
        match self {
            Elementwise::Additive => 1,
            Elementwise::Affine { .. }
            | Elementwise::Gated { .. }
            | Elementwise::ScaleShift { .. } => 2,
            Elementwise::Spline(spec) => spec.params_per_dim(),
            Elementwise::ZukoSpline { bins, .. } => 3 * bins - 1,
        }
    }

    /// Checks the kind's own settings.
    pub fn validate(&self) -> Result<()> {
        match self {
            Elementwise::Additive => Ok(()),
            Elementwise::Affine { max_log_scale } => {
                if max_log_scale.is_finite() && *max_log_scale > 0.0 {
                    Ok(())
                } else {
                    Err(FlowError::InvalidConfig(format!(
                        "max_log_scale must be finite and > 0, got {max_log_scale}"
                    )))
                }
            }
            Elementwise::Spline(spec) => spec.validate(),
            Elementwise::Gated { forget_bias } if !forget_bias.is_finite() => Err(
                FlowError::InvalidConfig(format!("forget_bias must be finite, got {forget_bias}")),
            ),
            Elementwise::Gated { .. } => Ok(()),
            Elementwise::ScaleShift {
                scale: Scale::RationalExp { bound: v } | Scale::SoftplusPlus { epsilon: v },
            } if !(v.is_finite() && *v > 0.0) => Err(FlowError::InvalidConfig(format!(
                "the scale's constant must be finite and > 0, got {v}"
            ))),
            Elementwise::ScaleShift { .. } => Ok(()),
            Elementwise::ZukoSpline { bins, bound } => zuko_spline(*bins, *bound).validate(),
        }
    }

    /// `y = τ(x; θ)`, `ladj = Σ_j ln|∂y_j/∂x_j|`: `x: [n, d]`, `params: [m, P, d]` with
    /// `m ∈ {1, n}` → `([n, d], [n])`.
    pub fn forward<B: Backend>(
        &self,
        x: Tensor<B, 2>,
        params: Tensor<B, 3>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        match self {
            Elementwise::Additive => {
                let ladj = zero_ladj(&x);
                (x + param(&params, 0), ladj)
            }
            Elementwise::Affine { max_log_scale } => {
                kernels::affine_params(&x, &params, *max_log_scale, false).unwrap_or_else(|| {
                    let log_scale = soft_clamp(param(&params, 1), *max_log_scale);
                    affine(x, param(&params, 0), log_scale)
                })
            }
            Elementwise::Spline(spec) => {
                kernels::rq_spline_params(&x, &params, &spec.kernel_shape(), false).unwrap_or_else(
                    || {
                        let [w, h, d] = spline_params(params, spec.bins);
                        rq_spline_reference(x, w, h, d, spec)
                    },
                )
            }
            Elementwise::Gated { forget_bias } => {
                let a = gate_logit(&params, *forget_bias);
                let neg_log_gate = softplus(a.clone().neg());
                let [n, d] = x.dims();
                let ladj = sum_rows(neg_log_gate.clone().expand([n, d]));
                let keep = sigmoid(a.neg()) * param(&params, 0);
                ((x - keep) * neg_log_gate.exp(), ladj)
            }
            Elementwise::ScaleShift { scale } => {
                let log_scale = scale.log_scale(param(&params, 1));
                affine_inverse(x, param(&params, 0), log_scale)
            }
            Elementwise::ZukoSpline { bins, bound } => {
                Elementwise::Spline(zuko_spline(*bins, *bound))
                    .inverse(x, zuko_params(params, *bins))
            }
        }
    }

    /// `x = τ⁻¹(y; θ)`, `ladj = Σ_j ln|∂x_j/∂y_j|`; shapes as in [`Elementwise::forward`].
    pub fn inverse<B: Backend>(
        &self,
        y: Tensor<B, 2>,
        params: Tensor<B, 3>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        match self {
            Elementwise::Additive => {
                let ladj = zero_ladj(&y);
                (y - param(&params, 0), ladj)
            }
            Elementwise::Affine { max_log_scale } => {
                kernels::affine_params(&y, &params, *max_log_scale, true).unwrap_or_else(|| {
                    let log_scale = soft_clamp(param(&params, 1), *max_log_scale);
                    affine_inverse(y, param(&params, 0), log_scale)
                })
            }
            Elementwise::Spline(spec) => {
                kernels::rq_spline_params(&y, &params, &spec.kernel_shape(), true).unwrap_or_else(
                    || {
                        let [w, h, d] = spline_params(params, spec.bins);
                        rq_spline_inverse_reference(y, w, h, d, spec)
                    },
                )
            }
            Elementwise::Gated { forget_bias } => {
                let a = gate_logit(&params, *forget_bias);
                let [n, d] = y.dims();
                let ladj = sum_rows(softplus(a.clone().neg()).expand([n, d])).neg();
                let m = param(&params, 0);
                (sigmoid(a.clone()) * y + sigmoid(a.neg()) * m, ladj)
            }
            Elementwise::ScaleShift { scale } => {
                let log_scale = scale.log_scale(param(&params, 1));
                affine(y, param(&params, 0), log_scale)
            }
            Elementwise::ZukoSpline { bins, bound } => {
                Elementwise::Spline(zuko_spline(*bins, *bound))
                    .forward(y, zuko_params(params, *bins))
            }
        }
    }
}

/// Bound `G` of the gated map's logit: `σ ∈ (3.4·10⁻⁴, 1 − 3.4·10⁻⁴)`.
const GATE_LOGIT_BOUND: f64 = 8.0;

/// The gated map's logit `a = G·tanh((ŝ + β)/G)`: `[m, d]`.
fn gate_logit<B: Backend>(params: &Tensor<B, 3>, forget_bias: f64) -> Tensor<B, 2> {
    soft_clamp(param(params, 1).add_scalar(forget_bias), GATE_LOGIT_BOUND)
}

/// Parameter `p` of every feature: `[m, P, d] -> [m, d]`.
fn param<B: Backend>(params: &Tensor<B, 3>, p: usize) -> Tensor<B, 2> {
    let [m, _, d] = params.dims();
    params.clone().narrow(1, p, 1).reshape([m, d])
}

/// Widths, heights and derivatives `[m, d, ·]` from parameter-major `[m, 3K − 1, d]`.
fn spline_params<B: Backend>(params: Tensor<B, 3>, bins: usize) -> [Tensor<B, 3>; 3] {
    let per_dim = params.swap_dims(1, 2);
    [
        per_dim.clone().narrow(2, 0, bins),
        per_dim.clone().narrow(2, bins, bins),
        per_dim.narrow(2, 2 * bins, bins - 1),
    ]
}
