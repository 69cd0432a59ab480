//! The sinh-arcsinh map (Jones & Pewsey 2009), element-wise, written outside flow-core.
//!
//! # Math
//! Per feature `i`, a skewness `εᵢ` and a tail weight `δᵢ > 0`. Forward, in flow-core's
//! generative direction (noise → data):
//!
//! ```text
//! a = asinh(x),   u = (a + ε) / δ,   y = sinh(u)
//! ```
//!
//! so for `x ~ N(0, 1)`, `y` has the sinh-arcsinh distribution of Jones & Pewsey: `ε > 0`
//! skews it to the right, `δ < 1` gives heavier tails than the normal's and `δ > 1`
//! lighter ones; `ε = 0, δ = 1` is the identity. Inverse:
//!
//! ```text
//! b = asinh(y),   v = δ·b − ε,   x = sinh(v)
//! ```
//!
//! Log-determinants. The map is element-wise, so the Jacobian is diagonal with
//! `∂y/∂x = cosh(u) · (1/δ) · 1/√(1 + x²)`, and `√(1 + x²) = cosh(asinh x) = cosh(a)`:
//!
//! ```text
//! forward:  ladj = Σᵢ ln cosh(uᵢ) − ln cosh(aᵢ) − ln δᵢ
//! inverse:  ladj = Σᵢ ln cosh(vᵢ) − ln cosh(bᵢ) + ln δᵢ
//! ```
//!
//! (for `y = f(x)`: `b = u` and `v = a`, so the two are negatives of each other).
//!
//! # Parametrization and numerical guards
//! The layer learns `ε` and a raw `θ` per feature and uses
//! `ln δ = 2·tanh(θ / 2)` ([`flow_core::ops::soft_clamp`]): `δ ∈ (e⁻², e²)`, so neither
//! direction can blow up through a vanishing or exploding `δ` (with `|x| ≤ 10⁴`,
//! `|u| ≤ e²·(10 + |ε|)`, far from `sinh`'s overflow at 89 in `f32`), and `θ = 0` is
//! `δ = 1` with slope 1. `ln cosh t` is taken as `|t| + softplus(−2|t|) − ln 2`
//! ([`flow_core::ops::softplus`]), finite wherever `t` is, where `cosh(t).log()` would
//! overflow for `|t| > 89`; `ln cosh(asinh x)` stands in for `½ ln(1 + x²)`, which would
//! overflow for `|x| > 10¹⁹`.

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Tensor, backend::Backend},
};
use flow_core::{
    FlowError, Invertible, Transform,
    ops::{soft_clamp, softplus, sum_rows},
};

/// `|ln δ| < LOG_DELTA_BOUND`: the soft bound on the tail weight's logarithm.
pub const LOG_DELTA_BOUND: f64 = 2.0;

/// `ln cosh t`, element-wise, finite for every finite `t` (see the [module docs](self)).
pub fn ln_cosh<B: Backend>(t: Tensor<B, 2>) -> Tensor<B, 2> {
    let abs = t.abs();
    abs.clone() + softplus(abs.mul_scalar(-2.0)) - core::f64::consts::LN_2
}

/// The forward kernel: `y = sinh((asinh(x) + ε) / δ)` and its `ladj`.
///
/// `x: [n, d]`; `epsilon`, `log_delta: [m, d]` with `m ∈ {1, n}` (one row broadcast over
/// the batch, or one per row); returns `([n, d], [n])`. A pure function of tensors, as
/// flow-core's own kernels are, so the same code would serve parameters produced by a
/// network from a context.
pub fn sinh_arcsinh<B: Backend>(
    x: Tensor<B, 2>,
    epsilon: Tensor<B, 2>,
    log_delta: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = x.dims();
    let log_delta = log_delta.expand([n, d]);
    let a = x.asinh();
    let u = (a.clone() + epsilon) * log_delta.clone().neg().exp();
    let ladj = sum_rows(ln_cosh(u.clone()) - ln_cosh(a) - log_delta);
    (u.sinh(), ladj)
}

/// The inverse kernel: `x = sinh(δ·asinh(y) − ε)` and its `ladj = ln|det ∂x/∂y|`.
///
/// Shapes as in [`sinh_arcsinh`].
pub fn sinh_arcsinh_inverse<B: Backend>(
    y: Tensor<B, 2>,
    epsilon: Tensor<B, 2>,
    log_delta: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = y.dims();
    let log_delta = log_delta.expand([n, d]);
    let b = y.asinh();
    let v = b.clone() * log_delta.clone().exp() - epsilon;
    let ladj = sum_rows(ln_cosh(v.clone()) - ln_cosh(b) + log_delta);
    (v.sinh(), ladj)
}

/// Configuration of a [`SinhArcsinh`] layer.
#[derive(Config, Debug)]
pub struct SinhArcsinhConfig {
    /// Feature dimension `d ≥ 1`.
    pub dim: usize,
}

impl SinhArcsinhConfig {
    /// Builds the layer at the identity (`ε = 0`, `δ = 1`); a dimension of 0 is
    /// [`FlowError::InvalidConfig`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> flow_core::Result<SinhArcsinh<B>> {
        if self.dim == 0 {
            return Err(FlowError::InvalidConfig(
                "sinh-arcsinh needs dim ≥ 1".into(),
            ));
        }
        Ok(SinhArcsinh {
            epsilon: Param::from_tensor(Tensor::zeros([1, self.dim], device)),
            theta: Param::from_tensor(Tensor::zeros([1, self.dim], device)),
        })
    }
}

/// A learned element-wise sinh-arcsinh map; see the [module docs](self) for the math.
///
/// Unconditional: it ignores the context, so [`Transform::context_dim`] is 0.
#[derive(Module, Debug)]
pub struct SinhArcsinh<B: Backend> {
    /// The skewness `ε`, `[1, d]`.
    pub epsilon: Param<Tensor<B, 2>>,
    /// The raw tail weight `θ`, `[1, d]`; `ln δ = 2·tanh(θ/2)`.
    pub theta: Param<Tensor<B, 2>>,
}

impl<B: Backend> SinhArcsinh<B> {
    /// `ln δ`, `[1, d]`, each in `(−2, 2)`.
    pub fn log_delta(&self) -> Tensor<B, 2> {
        soft_clamp(self.theta.val(), LOG_DELTA_BOUND)
    }
}

impl<B: Backend> Transform<B> for SinhArcsinh<B> {
    fn dim(&self) -> usize {
        self.epsilon.dims()[1]
    }

    fn forward(
        &self,
        x: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        sinh_arcsinh(x, self.epsilon.val(), self.log_delta())
    }
}

impl<B: Backend> Invertible<B> for SinhArcsinh<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        sinh_arcsinh_inverse(y, self.epsilon.val(), self.log_delta())
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;

    use super::*;

    #[test]
    fn starts_at_the_identity() {
        let device = Default::default();
        let layer = SinhArcsinhConfig::new(3).init::<NdArray>(&device).unwrap();
        let x = Tensor::<NdArray, 2>::from_floats([[-2.0, 0.0, 5.0], [0.5, -0.1, 30.0]], &device);
        let (y, ladj) = layer.forward(x.clone(), None);
        y.into_data()
            .assert_approx_eq::<f32>(&x.into_data(), Default::default());
        assert!(ladj.abs().max().into_scalar() < 1e-5);
    }

    #[test]
    fn dim_zero_is_an_error() {
        let device = Default::default();
        assert!(matches!(
            SinhArcsinhConfig::new(0).init::<NdArray>(&device),
            Err(FlowError::InvalidConfig(_))
        ));
    }

    #[test]
    fn ln_cosh_is_finite_where_cosh_overflows() {
        let device = Default::default();
        let t = Tensor::<NdArray, 2>::from_floats([[0.0, 1.0, -1.0, 200.0]], &device);
        let values = ln_cosh(t).into_data().into_vec::<f32>().unwrap();
        let expected = [0.0, 1f32.cosh().ln(), 1f32.cosh().ln(), 200.0 - 2f32.ln()];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-5, "{v} vs {e}");
        }
    }
}
