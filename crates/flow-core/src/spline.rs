//! Monotone rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows"), as pure
//! kernels: [`rq_spline`] and its analytic inverse [`rq_spline_inverse`].
//!
//! # Math
//! On `[−B, B]` the spline has `K` bins with knots `(x_k, y_k)`, `k = 0..K`,
//! `x_0 = y_0 = −B`, `x_K = y_K = B`, and positive derivatives `δ_k` at the knots.
//! Widths come from unnormalized parameters through `w = m_w + (1 − K·m_w)·softmax(ŵ)`
//! (scaled by `2B`), heights likewise, interior derivatives through
//! `δ = m_δ + softplus(δ̂ + c)` with `c = ln(e^{1−m_δ} − 1)`, so that `δ̂ = 0` gives
//! `δ = 1`; the boundary derivatives are `δ_0 = δ_K = 1`, which makes the spline meet the
//! identity tails with a continuous derivative. All-zero parameters give the identity.
//!
//! In bin `k`, with `w_k = x_{k+1} − x_k`, `h_k = y_{k+1} − y_k` (both computed as `2B` times
//! the bin's size, not as differences of rounded knots), `s_k = h_k / w_k`,
//! `ξ = (x − x_k) / w_k` and `t = ξ(1 − ξ)`:
//!
//! ```text
//! y      = y_k + h_k (s_k ξ² + δ_k t) / (s_k + (δ_{k+1} + δ_k − 2 s_k) t)
//! dy/dx  = s_k² (δ_{k+1} ξ² + 2 s_k t + δ_k (1 − ξ)²) / (s_k + (δ_{k+1} + δ_k − 2 s_k) t)²
//! ```
//!
//! Outside `[−B, B]` the map is the identity (`ln|dy/dx| = 0`). The inverse finds the bin
//! of `y` among the `y_k` and solves the quadratic `a ξ² + b ξ + c = 0` with
//! `a = h_k (s_k − δ_k) + (y − y_k) β`, `b = h_k δ_k − (y − y_k) β`, `c = −s_k (y − y_k)`,
//! `β = δ_{k+1} + δ_k − 2 s_k`, through the cancellation-free root `ξ = 2c / (−b − √(b² − 4ac))`;
//! its log-determinant is `−ln dy/dx` at that `ξ`.
//!
//! # The traps, and how they are avoided
//! - Inputs exactly at `±B` and at knots: the bin search counts interior knots `≤ x`, so
//!   `x = B` falls in the last bin with `ξ = 1` and `x = x_k` in bin `k` with `ξ = 0`; both
//!   formulas are finite there and match the neighbouring piece.
//! - Inputs far outside: the spline branch is evaluated at `0` for those entries (not at
//!   the input), so no overflow reaches the discarded branch, whose gradient would
//!   otherwise be `NaN · 0 = NaN`.
//! - The inverse's root: the discriminant is clamped at 0 against rounding; `b > 0` at
//!   `y = y_k`, so the root's denominator never vanishes.
//!
//! # Precision
//! The inverse is as accurate as the map's conditioning allows: an output rounded by `ε|y|`
//! moves the input by `ε|y| / (dy/dx)`, so in f32 a nearly flat bin (`dy/dx ~ 10⁻⁵`, which
//! steep random parameters produce) round-trips to about `10⁻²`. The formulas themselves
//! stay within a small multiple of that bound (checked in f32 and f64).
//!
//! Everything runs on the device; the bin search is a comparison against the knots and a
//! `gather`, with no host round trip.

use burn::tensor::{Bool, Int, Tensor, activation::softmax, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::{
    error::{FlowError, Result},
    kernels,
    ops::{softplus, sum_rows},
};

/// The shape of a rational-quadratic spline: number of bins, interval and minimum sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RqSpline {
    /// Number of bins `K ≥ 2`.
    pub bins: usize,
    /// Half-width `B` of the interval `[−B, B]`; identity outside.
    pub bound: f64,
    /// Minimum bin width, as a fraction of `2B` (`K · min_bin_width < 1`).
    pub min_bin_width: f64,
    /// Minimum bin height, as a fraction of `2B` (`K · min_bin_height < 1`).
    pub min_bin_height: f64,
    /// Minimum derivative at the interior knots (`< 1`).
    pub min_derivative: f64,
}

impl RqSpline {
    /// `bins` bins on `[−bound, bound]` with minimum sizes `10⁻³` (those of nflows).
    pub fn new(bins: usize, bound: f64) -> Self {
        Self {
            bins,
            bound,
            min_bin_width: 1e-3,
            min_bin_height: 1e-3,
            min_derivative: 1e-3,
        }
    }

    /// The spline's shape as the kernels read it ([`crate::kernels`]; `flow_kernels`' own
    /// tests build theirs this way too).
    pub fn kernel_shape(&self) -> flow_kernels::spline::Spline {
        flow_kernels::spline::Spline {
            bins: self.bins,
            bound: self.bound,
            min_bin_width: self.min_bin_width,
            min_bin_height: self.min_bin_height,
            min_derivative: self.min_derivative,
        }
    }

    /// Unnormalized parameters per transformed feature: `K` widths, `K` heights and
    /// `K − 1` interior derivatives.
    pub fn params_per_dim(&self) -> usize {
        3 * self.bins - 1
    }

    /// Checks that the shape describes a valid spline.
    pub fn validate(&self) -> Result<()> {
        let k = self.bins as f64;
        let bad = |what: String| Err(FlowError::InvalidConfig(format!("spline: {what}")));
        if self.bins < 2 {
            return bad(format!("needs at least 2 bins, got {}", self.bins));
        }
        if !(self.bound.is_finite() && self.bound > 0.0) {
            return bad(format!("bound must be finite and > 0, got {}", self.bound));
        }
        for (name, m) in [
            ("min_bin_width", self.min_bin_width),
            ("min_bin_height", self.min_bin_height),
        ] {
            if !(m > 0.0 && m * k < 1.0) {
                return bad(format!(
                    "{name} must be > 0 and < 1/bins = {}, got {m}",
                    1.0 / k
                ));
            }
        }
        if !(self.min_derivative > 0.0 && self.min_derivative < 1.0) {
            return bad(format!(
                "min_derivative must be in (0, 1), got {}",
                self.min_derivative
            ));
        }
        Ok(())
    }
}

/// Knot positions `[n, d, K + 1]` from unnormalized sizes `[n, d, K]` (`−B`, the interior
/// cumulative sums, and exactly `B` last), and the bin sizes `[n, d, K]` themselves (scaled to
/// `2B`): a bin's width is taken from its size, not as a difference of two rounded knots,
/// which would lose digits to cancellation in narrow bins.
fn knots<B: Backend>(
    unnormalized: Tensor<B, 3>,
    min: f64,
    bound: f64,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let [n, d, k] = unnormalized.dims();
    let sizes = softmax(unnormalized, 2)
        .mul_scalar(1.0 - min * k as f64)
        .add_scalar(min);
    let interior = sizes
        .clone()
        .cumsum(2)
        .narrow(2, 0, k - 1)
        .mul_scalar(2.0 * bound)
        .sub_scalar(bound);
    // The ends in the input's precision (an `f64` reference stays `f64`).
    let at = (&interior.device(), interior.dtype());
    let knots = Tensor::cat(
        vec![
            Tensor::full([n, d, 1], -bound, at),
            interior,
            Tensor::full([n, d, 1], bound, at),
        ],
        2,
    );
    (knots, sizes.mul_scalar(2.0 * bound))
}

/// Knot derivatives `[n, d, K + 1]`: 1 at both ends, `m_δ + softplus(δ̂ + c)` inside.
fn derivatives<B: Backend>(unnormalized: Tensor<B, 3>, min: f64) -> Tensor<B, 3> {
    let [n, d, _] = unnormalized.dims();
    let shift = ((1.0 - min).exp() - 1.0).ln();
    let interior = softplus(unnormalized.add_scalar(shift)).add_scalar(min);
    let at = (&interior.device(), interior.dtype());
    let one = || Tensor::ones([n, d, 1], at);
    Tensor::cat(vec![one(), interior, one()], 2)
}

/// The knots, bin sizes and derivatives of a spline, broadcast to the input's `[n, d]`.
struct Knots<B: Backend> {
    x: Tensor<B, 3>,
    y: Tensor<B, 3>,
    widths: Tensor<B, 3>,
    heights: Tensor<B, 3>,
    delta: Tensor<B, 3>,
}

impl<B: Backend> Knots<B> {
    fn new(
        n: usize,
        widths: Tensor<B, 3>,
        heights: Tensor<B, 3>,
        derivs: Tensor<B, 3>,
        spec: &RqSpline,
    ) -> Self {
        let [m, d, k] = widths.dims();
        debug_assert!(
            m == 1 || m == n,
            "spline parameters need 1 or {n} rows, got {m}"
        );
        let widths = widths.expand([n, d, k]);
        let heights = heights.expand([n, d, k]);
        let derivs = derivs.expand([n, d, k - 1]);
        let (x, widths) = knots(widths, spec.min_bin_width, spec.bound);
        let (y, heights) = knots(heights, spec.min_bin_height, spec.bound);
        Self {
            x,
            y,
            widths,
            heights,
            delta: derivatives(derivs, spec.min_derivative),
        }
    }
}

/// The bin of each entry of `v: [n, d]` among `knots: [n, d, K + 1]`, as `[n, d, 1]`:
/// the number of interior knots `≤ v` (so `v = B` lands in the last bin).
fn bin_of<B: Backend>(v: &Tensor<B, 2>, knots: &Tensor<B, 3>) -> Tensor<B, 3, Int> {
    let [n, d, k1] = knots.dims();
    let interior = knots.clone().narrow(2, 1, k1 - 2);
    v.clone()
        .unsqueeze_dim::<3>(2)
        .expand([n, d, k1 - 2])
        .greater_equal(interior)
        .int()
        .sum_dim(2)
}

/// `t[..., bin]` and `t[..., bin + 1]` as `[n, d]`.
fn pick<B: Backend>(t: &Tensor<B, 3>, bin: &Tensor<B, 3, Int>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [n, d, _] = t.dims();
    let lo = t.clone().gather(2, bin.clone()).reshape([n, d]);
    let hi = t
        .clone()
        .gather(2, bin.clone().add_scalar(1))
        .reshape([n, d]);
    (lo, hi)
}

/// The per-bin quantities at the chosen bins: `x_k, w_k, y_k, h_k, δ_k, δ_{k+1}`, the slope
/// `s = h_k / w_k` and `β = δ_{k+1} + δ_k − 2s`.
struct Bin<B: Backend> {
    x_k: Tensor<B, 2>,
    w: Tensor<B, 2>,
    y_k: Tensor<B, 2>,
    h: Tensor<B, 2>,
    d_k: Tensor<B, 2>,
    d_k1: Tensor<B, 2>,
    s: Tensor<B, 2>,
    beta: Tensor<B, 2>,
}

impl<B: Backend> Bin<B> {
    fn new(knots: &Knots<B>, bin: &Tensor<B, 3, Int>) -> Self {
        let [n, d, _] = knots.widths.dims();
        let at = |t: &Tensor<B, 3>| t.clone().gather(2, bin.clone()).reshape([n, d]);
        let (x_k, w) = (at(&knots.x), at(&knots.widths));
        let (y_k, h) = (at(&knots.y), at(&knots.heights));
        let (d_k, d_k1) = pick(&knots.delta, bin);
        let s = h.clone() / w.clone();
        let beta = d_k1.clone() + d_k.clone() - s.clone() * 2.0;
        Self {
            x_k,
            w,
            y_k,
            h,
            d_k,
            d_k1,
            s,
            beta,
        }
    }

    /// `(t, 1 − ξ, s + β t)` at `ξ`, with `t = ξ(1 − ξ)`: the pieces both `y` and `dy/dx`
    /// are built from.
    fn terms(&self, xi: &Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
        let one_minus = xi.clone().neg().add_scalar(1.0);
        let t = xi.clone() * one_minus.clone();
        let denom = self.s.clone() + self.beta.clone() * t.clone();
        (t, one_minus, denom)
    }

    /// `ln dy/dx` at `ξ` (see the module docs), from [`Bin::terms`] at `ξ`.
    fn log_derivative(
        &self,
        xi: Tensor<B, 2>,
        (t, one_minus, denom): (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>),
    ) -> Tensor<B, 2> {
        let numer = self.d_k1.clone() * xi.square()
            + self.s.clone() * t * 2.0
            + self.d_k.clone() * one_minus.square();
        self.s.clone().log() * 2.0 + numer.log() - denom.log() * 2.0
    }
}

/// `v_in` and `ladj_in` where `inside`, the identity (`v`, 0) elsewhere; `ladj` summed per row.
fn with_tails<B: Backend>(
    v: Tensor<B, 2>,
    inside: Tensor<B, 2, Bool>,
    v_in: Tensor<B, 2>,
    ladj_in: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let ladj = ladj_in.zeros_like().mask_where(inside.clone(), ladj_in);
    (v.mask_where(inside, v_in), sum_rows(ladj))
}

/// Entries of `v` inside `[−B, B]` (`true`), and `v` with the others replaced by 0 so that
/// the spline branch stays finite for them.
fn inside<B: Backend>(v: &Tensor<B, 2>, bound: f64) -> (Tensor<B, 2, Bool>, Tensor<B, 2>) {
    let inside = v
        .clone()
        .greater_equal_elem(-bound)
        .bool_and(v.clone().lower_equal_elem(bound));
    let safe = v.clone().mask_fill(inside.clone().bool_not(), 0.0);
    (inside, safe)
}

/// Rational-quadratic spline `y = RQS(x)` element-wise, with identity tails.
///
/// Shapes: `x: [n, d]`; `widths, heights: [m, d, K]`; `derivatives: [m, d, K − 1]` (the
/// interior knots), `m ∈ {1, n}`, all unnormalized (see the module docs). Returns `y: [n, d]`
/// and `ladj = Σ_j ln|∂y_j/∂x_j|: [n]`. `spec` must be valid ([`RqSpline::validate`]).
///
/// On the backends with a fused kernel ([`crate::kernels`]) this is one pass: one GPU
/// launch (plus the ladj's sum) forward and one backward on `wgpu` and `cuda`, one pass over
/// host memory on `flex` and `ndarray`; elsewhere [`rq_spline_reference`].
pub fn rq_spline<B: Backend>(
    x: Tensor<B, 2>,
    widths: Tensor<B, 3>,
    heights: Tensor<B, 3>,
    derivatives: Tensor<B, 3>,
    spec: &RqSpline,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    kernels::rq_spline(
        &x,
        &widths,
        &heights,
        &derivatives,
        &spec.kernel_shape(),
        false,
    )
    .unwrap_or_else(|| rq_spline_reference(x, widths, heights, derivatives, spec))
}

/// [`rq_spline`] as a chain of tensor operations: the reference for the fused kernel and
/// the path on every backend without one. It computes in its inputs' float type (`f64`
/// tensors give an `f64` reference).
pub fn rq_spline_reference<B: Backend>(
    x: Tensor<B, 2>,
    widths: Tensor<B, 3>,
    heights: Tensor<B, 3>,
    derivatives: Tensor<B, 3>,
    spec: &RqSpline,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, _] = x.dims();
    let knots = Knots::new(n, widths, heights, derivatives, spec);
    let (inside, xs) = inside(&x, spec.bound);
    let bin = Bin::new(&knots, &bin_of(&xs, &knots.x));
    let xi = (xs - bin.x_k.clone()) / bin.w.clone();
    let terms = bin.terms(&xi);
    let (t, denom) = (terms.0.clone(), terms.2.clone());
    let y_in = bin.y_k.clone()
        + bin.h.clone() * (bin.s.clone() * xi.clone().square() + bin.d_k.clone() * t) / denom;
    let ladj_in = bin.log_derivative(xi, terms);
    with_tails(x, inside, y_in, ladj_in)
}

/// Inverse of [`rq_spline`]: `x = RQS⁻¹(y)`, with `ladj = Σ_j ln|∂x_j/∂y_j|` (the negative
/// of the forward's at that point). Same shapes and parameters as [`rq_spline`].
pub fn rq_spline_inverse<B: Backend>(
    y: Tensor<B, 2>,
    widths: Tensor<B, 3>,
    heights: Tensor<B, 3>,
    derivatives: Tensor<B, 3>,
    spec: &RqSpline,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    kernels::rq_spline(
        &y,
        &widths,
        &heights,
        &derivatives,
        &spec.kernel_shape(),
        true,
    )
    .unwrap_or_else(|| rq_spline_inverse_reference(y, widths, heights, derivatives, spec))
}

/// [`rq_spline_inverse`] as a chain of tensor operations (the fused kernel's reference).
pub fn rq_spline_inverse_reference<B: Backend>(
    y: Tensor<B, 2>,
    widths: Tensor<B, 3>,
    heights: Tensor<B, 3>,
    derivatives: Tensor<B, 3>,
    spec: &RqSpline,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, _] = y.dims();
    let knots = Knots::new(n, widths, heights, derivatives, spec);
    let (inside, ys) = inside(&y, spec.bound);
    let bin = Bin::new(&knots, &bin_of(&ys, &knots.y));
    let dy = ys - bin.y_k.clone();
    let a = bin.h.clone() * (bin.s.clone() - bin.d_k.clone()) + dy.clone() * bin.beta.clone();
    let b = bin.h.clone() * bin.d_k.clone() - dy.clone() * bin.beta.clone();
    let c = bin.s.clone().neg() * dy;
    let disc = (b.clone().square() - a * c.clone() * 4.0).clamp_min(0.0);
    let xi = c * 2.0 / (b.neg() - disc.sqrt());
    let x_in = xi.clone() * bin.w.clone() + bin.x_k.clone();
    let terms = bin.terms(&xi);
    let ladj_in = bin.log_derivative(xi, terms).neg();
    with_tails(y, inside, x_in, ladj_in)
}
