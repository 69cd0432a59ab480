//! Sylvester normalizing flows (van den Berg, Hasenclever, Tomczak & Welling 2018).
//!
//! # Math
//! One step on `z ∈ ℝᴰ` with `M ≤ D`:
//!
//! `f(z) = z + Q R h(R̃ Qᵀ z + b)`, `h = tanh`,
//!
//! with `Q ∈ ℝ^{D×M}` of orthonormal columns, `R, R̃ ∈ ℝ^{M×M}` upper triangular and
//! `b ∈ ℝᴹ`. By Sylvester's determinant identity
//! `det(I_D + Q R H' R̃ Qᵀ) = det(I_M + H' R̃ QᵀQ R) = det(I_M + H' R̃ R)` with
//! `H' = diag h'(R̃ Qᵀ z + b)`, and `R̃ R` is upper triangular with diagonal `R̃ᵢᵢ Rᵢᵢ`, so
//!
//! `ln|det ∂f/∂z| = Σᵢ ln|1 + Rᵢᵢ R̃ᵢᵢ h'(R̃ Qᵀ z + b)ᵢ|`.
//!
//! Invertibility (the paper's Theorem 2): with `h' ∈ (0, 1]`, `Rᵢᵢ R̃ᵢᵢ > −1` suffices. The
//! diagonals are `tanh` of raw values, as in the paper's code, so `|Rᵢᵢ R̃ᵢᵢ| < 1` for every
//! parameter. There is no analytic inverse: the steps are [`crate::Transform`]s, like planar.
//!
//! # Parameters of one step (one row per data point, or one shared row)
//! With `M` the number of columns of `Q` ([`SylvesterQ::columns`]), `P` values in this order:
//! - `A ∈ ℝ^{M×M}` (row-major, `M²`): `R`'s strictly upper part is `A`'s, `Rᵢᵢ = tanh Aᵢᵢ`,
//!   and `R̃`'s strictly upper part is the strictly lower part of `A` transposed (`R̃ᵢⱼ = Aⱼᵢ`
//!   for `i < j`), the paper's sharing of one full matrix between `R` and `R̃`;
//! - `d̃ ∈ ℝᴹ`: `R̃ᵢᵢ = tanh d̃ᵢ`;
//! - `b ∈ ℝᴹ`;
//! - what builds `Q`, by kind ([`SylvesterQ`]):
//!   - **orthogonal** (O-SNF): a raw `D×M` matrix (row-major), orthonormalized by the
//!     paper's iteration ([`orthogonalize`]);
//!   - **Householder** (H-SNF): `H` vectors of `ℝᴰ`, `Q = H(v_H) ⋯ H(v_1)`
//!     ([`crate::householder()`]), `M = D`;
//!   - **triangular** (T-SNF): nothing; `Q` is the identity on even steps and the reversal
//!     permutation on odd ones, `M = D`.

use burn::tensor::{ElementConversion, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::{
    householder::householder_stack,
    kernels,
    ops::{sum_rows, tile_rows},
};

/// Guards `ln|·|` when `1 + Rᵢᵢ R̃ᵢᵢ h'` rounds to zero in f32 (both diagonals saturated).
const LADJ_EPS: f64 = flow_kernels::PLANAR_EPS;

/// [`orthogonalize`] stops when every entry of `QᵀQ − I` is at most this in magnitude.
pub const ORTHOGONAL_TOLERANCE: f64 = 1e-5;

/// [`orthogonalize`] gives up after this many iterations (the paper's cap).
pub const ORTHOGONAL_MAX_ITERATIONS: usize = 100;

/// Iterations between two convergence checks of [`orthogonalize`] (each check reads one
/// number back from the device).
const CHECK_EVERY: usize = 4;

/// How a Sylvester step's `Q` is built (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SylvesterQ {
    /// O-SNF: `M` orthonormal columns from a raw `D×M` matrix.
    Orthogonal {
        /// `M`, the number of columns (`1 ≤ M ≤ D`).
        columns: usize,
    },
    /// H-SNF: the product of `H ≥ 1` Householder reflections (`M = D`).
    Householder {
        /// `H`, reflections per step.
        reflections: usize,
    },
    /// T-SNF: identity and reversal permutation, alternating (`M = D`).
    Triangular,
}

impl SylvesterQ {
    /// `M`, the columns of `Q` (the size of `R`), on `dim` features.
    pub fn columns(self, dim: usize) -> usize {
        match self {
            SylvesterQ::Orthogonal { columns } => columns,
            SylvesterQ::Householder { .. } | SylvesterQ::Triangular => dim,
        }
    }

    /// Values that build `Q` per step.
    fn q_params(self, dim: usize) -> usize {
        match self {
            SylvesterQ::Orthogonal { columns } => dim * columns,
            SylvesterQ::Householder { reflections } => dim * reflections,
            SylvesterQ::Triangular => 0,
        }
    }

    /// Parameters `P` of one step on `dim` features: `M² + 2M` and `Q`'s.
    pub fn params_per_step(self, dim: usize) -> usize {
        let m = self.columns(dim);
        m * m + 2 * m + self.q_params(dim)
    }

    /// Rejects `M = 0`, `M > D` and `H = 0`, naming the knob.
    pub fn validate(self, dim: usize) -> crate::Result<()> {
        let bad = |reason: String| Err(crate::FlowError::InvalidConfig(reason));
        match self {
            SylvesterQ::Orthogonal { columns } if columns == 0 || columns > dim => bad(format!(
                "an orthogonal Sylvester flow needs 1 ≤ M ≤ {dim} orthonormal columns \
                 (the latent dimension), got M = {columns}"
            )),
            SylvesterQ::Householder { reflections: 0 } => {
                bad("a Householder Sylvester flow needs at least one reflection".into())
            }
            _ => Ok(()),
        }
    }
}

/// Orthonormalizes the columns of every matrix in `q: [n, D, M]` (`M ≤ D`) by the iteration
/// of the paper's code (Björck & Bowie 1971, Kovarik 1970):
/// `Q ← Q / ‖Q‖_F`, then `Q ← Q (I + ½ (I − QᵀQ))` until every entry of `QᵀQ − I` is within
/// [`ORTHOGONAL_TOLERANCE`] or [`ORTHOGONAL_MAX_ITERATIONS`] have run (then a warning
/// through `tracing`). The Frobenius scaling puts every singular value in `(0, 1]`, where
/// the iteration converges to the orthogonal polar factor of `q` (for `q` of full column
/// rank). Differentiable (the gradient flows through the iterations).
///
/// On the backends with a CPU kernel ([`crate::kernels`]: `flex`, `ndarray`) each matrix
/// iterates until it has converged, in one pass forward and one backward; elsewhere the
/// batch iterates together in tensor operations
/// ([`crate::reference::orthogonalize`]), checking the largest entry over the batch every
/// few iterations (one number read back from the device per check).
pub fn orthogonalize<B: Backend>(q: Tensor<B, 3>) -> Tensor<B, 3> {
    let [n, d, m] = q.dims();
    let fused = kernels::orthogonalize(
        &q.clone().reshape([n, d * m]),
        d,
        m,
        ORTHOGONAL_TOLERANCE,
        ORTHOGONAL_MAX_ITERATIONS,
    );
    match fused {
        Some((a, unconverged)) => {
            if unconverged > 0 {
                warn_unconverged(format!("{unconverged} of {n} matrices"));
            }
            a.reshape([n, d, m])
        }
        None => orthogonalize_reference(q),
    }
}

fn warn_unconverged(which: String) {
    tracing::warn!(
        which,
        "orthogonalization not converged after {ORTHOGONAL_MAX_ITERATIONS} iterations: \
         a Q of deficient rank?"
    );
}

/// [`orthogonalize`] as tensor operations, the whole batch iterating together: the
/// reference for the CPU kernel and the path on every other backend.
pub fn orthogonalize_reference<B: Backend>(q: Tensor<B, 3>) -> Tensor<B, 3> {
    let [_, _, m] = q.dims();
    let device = q.device();
    let eye = Tensor::<B, 2>::eye(m, &device).unsqueeze::<3>();
    let norm = q
        .clone()
        .square()
        .sum_dim(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-30);
    let mut a = q / norm;
    let gram = |a: &Tensor<B, 3>| a.clone().swap_dims(1, 2).matmul(a.clone());
    let mut residual = f64::INFINITY;
    for iteration in 1..=ORTHOGONAL_MAX_ITERATIONS {
        // A (I + ½(I − AᵀA)) = A (3I − AᵀA)/2, the matrix product last: written as
        // 1.5·A − ½·A(AᵀA), burn 0.21's fused wgpu backend (matmul with an element-wise
        // epilogue) returned run-to-run different values for 8×8 matrices, and the
        // iteration diverged to NaN (the unfused backend was right).
        let step = (eye.clone().mul_scalar(3.0) - gram(&a)).mul_scalar(0.5);
        a = a.matmul(step);
        if iteration % CHECK_EVERY == 0 {
            let off = (gram(&a.clone().detach()) - eye.clone()).abs().max();
            residual = off.into_scalar().elem::<f64>();
            if residual <= ORTHOGONAL_TOLERANCE {
                return a;
            }
        }
    }
    warn_unconverged(format!("largest |QᵀQ − I| entry {residual:e}"));
    a
}

/// `K = steps` Sylvester steps of one kind, step `k` with the parameters in columns
/// `[kP, (k + 1)P)` of `theta: [r, K·P]` (layout in the [module docs](self)), `r` dividing
/// `n`: row `i` of `z` takes parameter row `i mod r` (`r = n`: per row; `r = 1`: shared;
/// otherwise `n/r` samples of each of `r` data points, in blocks, as in an
/// importance-weighted bound). Returns `(z_K: [n, D], Σ_k ln|det ∂z_k/∂z_{k−1}|: [n])`. For
/// O-SNF the `K` matrices `Q` of every parameter row are orthonormalized together (one
/// [`orthogonalize`] call, once per parameter row). On the backends with a fused kernel
/// ([`crate::kernels`]: `flex`, `ndarray`, and burn's unfused wgpu and CUDA backends) the
/// `K` steps are then one pass (one launch) forward and one backward, reading the
/// parameter rows in place; elsewhere they are [`crate::reference::sylvester_stack`].
///
/// # Panics
/// When `theta` does not have `K·P` columns, its rows do not divide `n`, or `q` is invalid
/// for `D` ([`SylvesterQ::validate`]).
///
/// ```
/// use burn::{backend::NdArray, tensor::{Distribution, Tensor}};
/// use flow_core::{SylvesterQ, sylvester_stack};
///
/// let device = Default::default();
/// let q = SylvesterQ::Orthogonal { columns: 2 };
/// let z = Tensor::<NdArray, 2>::random([5, 3], Distribution::Default, &device);
/// let theta = Tensor::random([5, 4 * q.params_per_step(3)], Distribution::Default, &device);
/// let (z_k, ladj) = sylvester_stack(z, theta, 4, q);
/// assert_eq!((z_k.dims(), ladj.dims()), ([5, 3], [5]));
/// ```
pub fn sylvester_stack<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
    q: SylvesterQ,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let (theta, columns) = prepare(&z, theta, steps, q, orthogonalize);
    let ([n, d], rows) = (z.dims(), theta.dims()[0]);
    let basis = match q {
        SylvesterQ::Orthogonal { columns } => kernels::Basis::Columns(columns),
        SylvesterQ::Householder { reflections } => kernels::Basis::Reflections(reflections),
        SylvesterQ::Triangular => kernels::Basis::Alternating,
    };
    // The kernel takes every step's Q of a parameter row side by side: [rows, K·D·M].
    let flat = columns.as_ref().map(|all| {
        let [_, _, m] = all.dims();
        all.clone()
            .reshape([steps, rows, d * m])
            .swap_dims(0, 1)
            .reshape([rows, steps * d * m])
    });
    kernels::sylvester_stack(&z, &theta, flat.as_ref(), steps, basis).unwrap_or_else(|| {
        let (theta, columns) = spread(theta, columns, steps, n);
        run_reference(z, theta, columns, steps, q)
    })
}

/// [`sylvester_stack()`] as tensor operations: the reference for the fused kernel and the
/// path on every backend without one.
pub fn sylvester_stack_reference<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
    q: SylvesterQ,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let n = z.dims()[0];
    let (theta, columns) = prepare(&z, theta, steps, q, orthogonalize_reference);
    let (theta, columns) = spread(theta, columns, steps, n);
    run_reference(z, theta, columns, steps, q)
}

/// Checks the shapes (`theta`'s rows divide `z`'s) and, for O-SNF, orthonormalizes the `K`
/// matrices of every parameter row together with `ortho`: `[K·r, D, M]` for `r` parameter
/// rows, step `k`'s at `k·r`.
fn prepare<B: Backend>(
    z: &Tensor<B, 2>,
    theta: Tensor<B, 2>,
    steps: usize,
    q: SylvesterQ,
    ortho: fn(Tensor<B, 3>) -> Tensor<B, 3>,
) -> (Tensor<B, 2>, Option<Tensor<B, 3>>) {
    let ([n, d], [rows, cols]) = (z.dims(), theta.dims());
    let p = q.params_per_step(d);
    assert!(
        q.validate(d).is_ok() && cols == steps * p && rows >= 1 && n % rows == 0,
        "sylvester_stack: {steps} steps of {q:?} on z: [{n}, {d}] need theta: [r, {}] with \
         r dividing {n}, got [{rows}, {cols}]",
        steps * p
    );
    let columns = match q {
        SylvesterQ::Orthogonal { columns } => {
            let at = columns * columns + 2 * columns;
            let raw = (0..steps)
                .map(|k| theta.clone().narrow(1, k * p + at, d * columns))
                .collect();
            Some(ortho(Tensor::cat(raw, 0).reshape([
                steps * rows,
                d,
                columns,
            ])))
        }
        _ => None,
    };
    (theta, columns)
}

/// [`prepare`]'s parameters repeated to `n` rows (row `i` is parameter row `i mod r`), for
/// the tensor-op reference.
fn spread<B: Backend>(
    theta: Tensor<B, 2>,
    columns: Option<Tensor<B, 3>>,
    steps: usize,
    n: usize,
) -> (Tensor<B, 2>, Option<Tensor<B, 3>>) {
    let rows = theta.dims()[0];
    if rows == n {
        return (theta, columns);
    }
    let times = n / rows;
    let columns = columns.map(|all| {
        let [_, d, m] = all.dims();
        // Step k's rows of every copy together: [K, times·r, D·M].
        all.reshape([steps, 1, rows * d * m])
            .expand([steps, times, rows * d * m])
            .reshape([steps * n, d, m])
    });
    let theta = tile_rows(theta, times);
    (theta, columns)
}

/// The steps as tensor operations, given [`prepare`]'s output.
fn run_reference<B: Backend>(
    z: Tensor<B, 2>,
    theta: Tensor<B, 2>,
    columns: Option<Tensor<B, 3>>,
    steps: usize,
    q: SylvesterQ,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d] = z.dims();
    let p = q.params_per_step(d);
    let m = q.columns(d);
    let q_at = m * m + 2 * m;
    let step = |k: usize| theta.clone().narrow(1, k * p, p);
    let basis = |k: usize| match (q, &columns) {
        (SylvesterQ::Orthogonal { .. }, Some(all)) => {
            Basis::Columns(all.clone().narrow(0, k * n, n))
        }
        (SylvesterQ::Householder { reflections }, _) => {
            Basis::Reflections(step(k).narrow(1, q_at, d * reflections), reflections)
        }
        _ => Basis::Permutation(k % 2 == 1),
    };
    let mut ladj = Tensor::zeros([n], &z.device());
    let mut z = z;
    for k in 0..steps {
        let (next, l) = sylvester(z, step(k).narrow(1, 0, q_at), &basis(k));
        z = next;
        ladj = ladj + l;
    }
    (z, ladj)
}

/// The `Q` of one step, in the form that applies it cheapest.
enum Basis<B: Backend> {
    /// Orthonormal columns, `[n, D, M]`.
    Columns(Tensor<B, 3>),
    /// `H` reflection vectors per row, `[n, H·D]`: `Q = H(v_H) ⋯ H(v_1)`.
    Reflections(Tensor<B, 2>, usize),
    /// The reversal permutation (`true`) or the identity.
    Permutation(bool),
}

impl<B: Backend> Basis<B> {
    /// `Qᵀ z` for rows `z: [n, D]`: `[n, M]`.
    fn project(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Basis::Columns(q) => {
                let [n, _, m] = q.dims();
                z.unsqueeze_dim::<3>(1).matmul(q.clone()).reshape([n, m])
            }
            Basis::Reflections(v, h) => householder_stack(z, v.clone(), *h, true),
            Basis::Permutation(true) => z.flip([1]),
            Basis::Permutation(false) => z,
        }
    }

    /// `Q y` for rows `y: [n, M]`: `[n, D]`.
    fn expand(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Basis::Columns(q) => {
                let [n, d, _] = q.dims();
                y.unsqueeze_dim::<3>(1)
                    .matmul(q.clone().swap_dims(1, 2))
                    .reshape([n, d])
            }
            Basis::Reflections(v, h) => householder_stack(y, v.clone(), *h, false),
            Basis::Permutation(true) => y.flip([1]),
            Basis::Permutation(false) => y,
        }
    }
}

/// One step given its triangular parameters `tri: [n, M² + 2M]` (`A`, `d̃`, `b`) and `Q`.
fn sylvester<B: Backend>(
    z: Tensor<B, 2>,
    tri: Tensor<B, 2>,
    q: &Basis<B>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, width] = tri.dims();
    // width = M² + 2M.
    let m = ((1.0 + width as f64).sqrt() - 1.0).round() as usize;
    let device = z.device();
    let a = tri.clone().narrow(1, 0, m * m).reshape([n, m, m]);
    let eye = Tensor::<B, 2>::eye(m, &device).unsqueeze::<3>();
    let upper = Tensor::<B, 2>::ones([m, m], &device)
        .triu(1)
        .unsqueeze::<3>();
    let lower = upper.clone().swap_dims(1, 2);
    let diag_r = (a.clone() * eye.clone()).sum_dim(2).reshape([n, m]).tanh();
    let diag_rt = tri.clone().narrow(1, m * m, m).tanh();
    let b = tri.narrow(1, m * m + m, m);
    let on_diagonal = |v: Tensor<B, 2>| v.unsqueeze_dim::<3>(2) * eye.clone();
    // Row vectors: x R̃ᵀ = (R̃ x)ᵀ and x Rᵀ = (R x)ᵀ.
    let r_t = (a.clone() * upper).swap_dims(1, 2) + on_diagonal(diag_r.clone());
    let rt_t = a * lower + on_diagonal(diag_rt.clone());
    let pre = q
        .project(z.clone())
        .unsqueeze_dim::<3>(1)
        .matmul(rt_t)
        .reshape([n, m])
        + b;
    let h = pre.tanh();
    let h_prime = h.clone().square().neg().add_scalar(1.0);
    let y = h.unsqueeze_dim::<3>(1).matmul(r_t).reshape([n, m]);
    let ladj = sum_rows(
        (diag_r * diag_rt * h_prime)
            .add_scalar(1.0)
            .abs()
            .add_scalar(LADJ_EPS)
            .log(),
    );
    (z + q.expand(y), ladj)
}
