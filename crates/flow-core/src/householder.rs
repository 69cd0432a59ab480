//! Householder flow (Tomczak & Welling 2016): reflections of `z` through hyperplanes.
//!
//! # Math
//! One reflection with vector `v ∈ ℝᵈ`: `H(v) z = z − 2 v (vᵀz) / ‖v‖²`. `H(v)` is
//! orthogonal and symmetric, so it is its own inverse and `ln|det H(v)| = 0`. `T`
//! reflections `z_T = H(v_T) ⋯ H(v_1) z` compose any orthogonal map (Cartan–Dieudonné), and
//! their inverse is the same reflections in reverse order.
//!
//! In a VAE (`q₀ = N(μ, diag σ²)` followed by reflections whose `v` the encoder produces per
//! data point) this turns the diagonal posterior into one with a full covariance
//! `U diag(σ²) Uᵀ` at no cost in the log-density.
//!
//! A vector with `‖v‖² < 10⁻³⁰` (where `2/‖v‖²` would overflow in f32) reflects nothing: the
//! step is the identity, so the map stays exactly orthogonal for every `v`. The gradient
//! of the tensor-op path goes through `d(1/‖v‖²) = −1/‖v‖⁴`, which overflows f32 below
//! `‖v‖² ≈ 2·10⁻¹⁹` (every component of `v` under ~10⁻⁹·⁵): a training step there gets an
//! infinite gradient, and the programs report the divergence and keep their last good
//! checkpoint. The fused Sylvester kernels compute the scale in f64 (CPU) or in an order
//! whose intermediates stay finite (CubeCL).

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Distribution, Tensor, backend::Backend},
};

use crate::{
    ops::{dot_rows, zero_ladj},
    transform::{Invertible, Transform},
};

/// Below this squared norm a reflection vector means "no reflection".
const MIN_SQ_NORM: f64 = flow_kernels::HOUSEHOLDER_MIN_SQ_NORM;

/// One reflection `z − 2 v (vᵀz)/‖v‖²` with `z: [n, d]` and `v: [m, d]`, `m ∈ {1, n}` (one
/// vector for the batch, or one per row as an encoder emits them). `ln|det| = 0`.
pub fn householder<B: Backend>(z: Tensor<B, 2>, v: Tensor<B, 2>) -> Tensor<B, 2> {
    let sq = dot_rows(v.clone(), v.clone());
    let vanishing = sq.clone().lower_elem(MIN_SQ_NORM);
    let scale = sq
        .clamp_min(MIN_SQ_NORM)
        .recip()
        .mul_scalar(2.0)
        .mask_fill(vanishing, 0.0);
    let proj = dot_rows(z.clone(), v.clone()) * scale;
    z - v * proj
}

/// `steps` reflections one after the other, reflection `k` with vector
/// `theta[:, k·d .. (k + 1)·d]` (`theta: [m, steps·d]`, `m ∈ {1, n}`). With `inverse`, the
/// same reflections in reverse order (the inverse map). `ln|det| = 0` either way.
///
/// # Panics
/// When `theta` does not have `steps·d` columns or its rows are neither 1 nor `n`.
///
/// ```
/// use burn::{backend::NdArray, tensor::{Distribution, Tensor}};
///
/// let device = Default::default();
/// let z = Tensor::<NdArray, 2>::random([5, 3], Distribution::Default, &device);
/// let v = Tensor::random([5, 2 * 3], Distribution::Default, &device);
/// let y = flow_core::householder_stack(z.clone(), v.clone(), 2, false);
/// let back = flow_core::householder_stack(y, v, 2, true);
/// let err: f32 = (back - z).abs().max().into_scalar();
/// assert!(err < 1e-5);
/// ```
pub fn householder_stack<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
    inverse: bool,
) -> Tensor<B, 2> {
    let ([n, d], [m, p]) = (z.dims(), theta.dims());
    assert!(
        p == steps * d && (m == 1 || m == n),
        "householder_stack: {steps} reflections on z: [{n}, {d}] need theta: [1 or {n}, {}], \
         got [{m}, {p}]",
        steps * d
    );
    let mut order: Vec<usize> = (0..steps).collect();
    if inverse {
        order.reverse();
    }
    order
        .into_iter()
        .fold(z, |z, k| householder(z, theta.clone().narrow(1, k * d, d)))
}

/// Configuration of a [`Householder`] layer.
#[derive(Config, Debug)]
pub struct HouseholderConfig {
    /// Feature dimension `d`.
    pub dim: usize,
    /// Number of reflections `T`.
    #[config(default = 2)]
    pub reflections: usize,
    /// Standard deviation of the initial vectors.
    #[config(default = 1.0)]
    pub init_std: f64,
}

impl HouseholderConfig {
    /// Builds the layer with learned (global) reflection vectors.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Householder<B>> {
        crate::error::check_dim("Householder flow", self.dim)?;
        crate::error::check_init_std("Householder", self.init_std)?;
        if self.reflections == 0 {
            return Err(crate::FlowError::InvalidConfig(
                "a Householder flow needs at least one reflection".into(),
            ));
        }
        let normal = Distribution::Normal(0.0, self.init_std);
        Ok(Householder {
            v: Param::from_tensor(Tensor::random(
                [1, self.reflections * self.dim],
                normal,
                device,
            )),
            dim: self.dim,
            reflections: self.reflections,
        })
    }
}

/// `T` reflections with learned vectors; see the [module docs](self) for the math. An
/// orthogonal map: `ln|det| = 0`, exact inverse.
#[derive(Module, Debug)]
pub struct Householder<B: Backend> {
    /// The vectors `v_1 … v_T`, concatenated: `[1, T·d]`.
    pub v: Param<Tensor<B, 2>>,
    dim: usize,
    reflections: usize,
}

impl<B: Backend> Transform<B> for Householder<B> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn forward(
        &self,
        z: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let ladj = zero_ladj(&z);
        (
            householder_stack(z, self.v.val(), self.reflections, false),
            ladj,
        )
    }
}

impl<B: Backend> Invertible<B> for Householder<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let ladj = zero_ladj(&y);
        (
            householder_stack(y, self.v.val(), self.reflections, true),
            ladj,
        )
    }
}
