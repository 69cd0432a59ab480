//! Planar flow (Rezende & Mohamed 2015, §4.1).
//!
//! # Math
//! Forward: `f(z) = z + û · h(wᵀz + b)` with `h = tanh`, parameters `u, w ∈ ℝᵈ`, `b ∈ ℝ`.
//!
//! Log-determinant (matrix determinant lemma): with `ψ(z) = h'(wᵀz + b) · w`,
//! `ln|det ∂f/∂z| = ln|1 + ûᵀψ(z)| = ln|1 + h'(wᵀz + b) · wᵀû|`.
//!
//! Invertibility: `f` is invertible iff `wᵀû ≥ −1` (for `h = tanh`). The constraint is built
//! in: `û = u + (m(wᵀu) − wᵀu) · w / ‖w‖²` with `m(a) = −1 + softplus(a)`, so that
//! `wᵀû = m(wᵀu) > −1` for every `u, w`.
//!
//! Inverse: not analytic (a 1-D root find along `w`), so [`Planar`] implements
//! [`Transform`] only.

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Distribution, Tensor, backend::Backend},
};

use crate::{
    kernels,
    ops::{dot_rows, softplus},
    transform::Transform,
};

/// Guards `w / ‖w‖²` at `w = 0`, where the map is a translation and û does not matter.
const W_NORM_EPS: f64 = flow_kernels::PLANAR_EPS;
/// Guards `ln|·|` when `1 + h'·wᵀû` rounds to zero in f32.
const LADJ_EPS: f64 = flow_kernels::PLANAR_EPS;

/// The planar kernel with batched or broadcast parameters.
///
/// Shapes: `z: [n, d]`; `u, w: [m, d]`; `b: [m, 1]` with `m ∈ {1, n}` (one parameter set for
/// the batch, or one per row, as produced by an amortizing encoder).
/// Returns `(f(z): [n, d], ln|det ∂f/∂z|: [n])`. The invertibility constraint on `u` is
/// applied here, so any raw `u` gives an invertible map.
///
/// On the backends with a fused kernel ([`crate::kernels`]) this is one pass forward and
/// one backward: a GPU launch on `wgpu` and `cuda`, a pass over host memory on `flex` and
/// `ndarray`; elsewhere it is [`planar_reference`].
pub fn planar<B: Backend>(
    z: Tensor<B, 2>,
    u: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    kernels::planar(&z, &u, &w, &b).unwrap_or_else(|| planar_reference(z, u, w, b))
}

/// [`planar()`] as a chain of tensor operations: the reference for the fused kernel and the
/// path on every backend without one.
pub fn planar_reference<B: Backend>(
    z: Tensor<B, 2>,
    u: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, _] = z.dims();
    let wu = dot_rows(w.clone(), u.clone());
    let w_sq = dot_rows(w.clone(), w.clone()).add_scalar(W_NORM_EPS);
    let m = softplus(wu.clone()).sub_scalar(1.0);
    let u_hat = u + w.clone() * ((m - wu) / w_sq);
    // wᵀû equals m(wᵀu) up to the ε guarding ‖w‖²; computing it from û keeps the ladj
    // exact for the map as implemented, also for w ≈ 0 (where the map is a translation).
    let w_dot_u_hat = dot_rows(w.clone(), u_hat.clone());
    let h = (dot_rows(z.clone(), w) + b).tanh();
    let h_prime = h.clone().square().neg().add_scalar(1.0);
    let ladj = (h_prime * w_dot_u_hat)
        .add_scalar(1.0)
        .abs()
        .add_scalar(LADJ_EPS)
        .log()
        .reshape([n]);
    (z + u_hat * h, ladj)
}

/// `steps` planar steps one after the other, step `k` with the parameters in columns
/// `k(2d + 1) + [0, d)` (`u`), `[d, 2d)` (`w`) and `2d` (`b`) of `theta: [m, steps·(2d + 1)]`
/// (`m ∈ {1, n}`: shared, or per row as an amortizing encoder emits them, the layout of
/// Rezende & Mohamed's and the PyTorch peer's amortized planar posterior).
///
/// Returns `(z_K: [n, d], Σ_k ln|det ∂z_{k+1}/∂z_k|: [n])`: [`planar()`] `steps` times with
/// the log-determinants added. On `flex` and `ndarray` this is one kernel forward and one
/// backward for all the steps (each row runs through every step in `f64`, its points in a
/// small scratch buffer; the backward recomputes them), instead of `steps` kernels, their
/// parameter slices and the slices' backward scatter.
///
/// # Panics
/// When `steps = 0`, `theta` does not have `steps·(2d + 1)` columns, or its rows are
/// neither 1 nor `n`.
///
/// ```
/// use burn::{backend::NdArray, tensor::{Distribution, Tensor}};
///
/// let device = Default::default();
/// let z = Tensor::<NdArray, 2>::random([5, 3], Distribution::Default, &device);
/// let theta = Tensor::random([5, 4 * 7], Distribution::Normal(0.0, 0.5), &device);
/// let (z_k, ladj) = flow_core::planar_stack(z, theta, 4);
/// assert_eq!((z_k.dims(), ladj.dims()), ([5, 3], [5]));
/// ```
pub fn planar_stack<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    check_stack(&z, &theta, steps);
    kernels::planar_stack(&z, &theta, steps).unwrap_or_else(|| stack_with(z, theta, steps, planar))
}

/// [`planar_stack()`] as [`planar_reference`] `steps` times.
pub fn planar_stack_reference<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    check_stack(&z, &theta, steps);
    stack_with(z, theta, steps, planar_reference)
}

fn check_stack<B: Backend>(z: &Tensor<B, 2>, theta: &Tensor<B, 2>, steps: usize) {
    let ([n, d], [m, p]) = (z.dims(), theta.dims());
    assert!(
        steps > 0 && p == steps * (2 * d + 1) && (m == 1 || m == n),
        "planar_stack: {steps} steps on z: [{n}, {d}] need theta: [1 or {n}, {}], got [{m}, {p}]",
        steps * (2 * d + 1)
    );
}

/// The steps as a loop of `step` on column slices of `theta`.
fn stack_with<B: Backend>(
    mut z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
    step: impl Fn(
        Tensor<B, 2>,
        Tensor<B, 2>,
        Tensor<B, 2>,
        Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>),
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = z.dims();
    let mut ladj = Tensor::zeros([n], &z.device());
    for k in 0..steps {
        let col = |c: usize, w: usize| theta.clone().narrow(1, k * (2 * d + 1) + c, w);
        let (next, l) = step(z, col(0, d), col(d, d), col(2 * d, 1));
        z = next;
        ladj = ladj + l;
    }
    (z, ladj)
}

/// Configuration of a [`Planar`] layer.
#[derive(Config, Debug)]
pub struct PlanarConfig {
    /// Feature dimension `d`.
    pub dim: usize,
    /// Standard deviation of the initial `u` and `w` (`b` starts at 0). Small values start
    /// the flow near the identity.
    #[config(default = 0.01)]
    pub init_std: f64,
}

impl PlanarConfig {
    /// Builds one planar layer with global (learned, not amortized) parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<Planar<B>> {
        crate::error::check_dim("planar flow", self.dim)?;
        crate::error::check_init_std("planar", self.init_std)?;
        let normal = Distribution::Normal(0.0, self.init_std);
        Ok(Planar {
            u: Param::from_tensor(Tensor::random([1, self.dim], normal, device)),
            w: Param::from_tensor(Tensor::random([1, self.dim], normal, device)),
            b: Param::from_tensor(Tensor::zeros([1, 1], device)),
        })
    }

    /// Builds `k ≥ 1` planar layers, applied in order.
    pub fn init_stack<B: Backend>(
        &self,
        k: usize,
        device: &B::Device,
    ) -> crate::Result<Vec<Planar<B>>> {
        crate::error::init_stack("planar", k, || self.init(device))
    }
}

/// A planar layer with learned parameters; see the [module docs](self) for the math.
#[derive(Module, Debug)]
pub struct Planar<B: Backend> {
    /// Raw `u`, `[1, d]` (constrained to û inside the kernel).
    pub u: Param<Tensor<B, 2>>,
    /// `w`, `[1, d]`.
    pub w: Param<Tensor<B, 2>>,
    /// `b`, `[1, 1]`.
    pub b: Param<Tensor<B, 2>>,
}

impl<B: Backend> Transform<B> for Planar<B> {
    fn dim(&self) -> usize {
        self.w.dims()[1]
    }
    fn forward(
        &self,
        z: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        planar(z, self.u.val(), self.w.val(), self.b.val())
    }
}
