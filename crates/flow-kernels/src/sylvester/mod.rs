//! Sylvester steps (van den Berg et al. 2018): `z' = z + Q R tanh(R̃ Qᵀ z + b)` with
//! `ln|det| = Σᵢ ln|1 + Rᵢᵢ R̃ᵢᵢ h'ᵢ|`; flow-core's `sylvester` module has the math, the
//! parameter layout and the tensor-op reference.
//!
//! - CPU: the `K` steps of a row in one pass (`f64`), `R` and `R̃` read in place from the
//!   encoder's output (no masked or transposed copies), `Q` applied as the reflections or
//!   the permutation it is, or as the orthonormalized matrix the caller passes; one pass
//!   backward, which recomputes the row's intermediate points. The tensor-op reference
//!   takes about 30 operations per step on `[n, M, M]` tensors, forward and backward.
//! - CubeCL: the `K` steps in one launch, one GPU thread per row, and one launch backward
//!   (per-row parameter gradients, summed over the rows that share a parameter row); the
//!   reference takes about 30 launches per step each way. On a software wgpu adapter
//!   (lavapipe), whose shader loops stop after 65,535 iterations, only stacks within a loop
//!   budget (`backends::wgpu_software`, feature `wgpu`); the reference runs the rest.
//! - CPU, O-SNF's orthogonalization ([`orthogonalize`]): each matrix's iteration in one pass,
//!   stopping when that matrix has converged, and one pass backward through its iterates.

mod basis;
#[cfg(feature = "cpu")]
mod cpu;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "cpu")]
mod orthogonal;

pub use basis::Basis;

use burn::tensor::{Tensor, backend::Backend};

/// `steps` Sylvester steps on `z: [n, d]` with parameters `theta: [r, steps·P]` (and, for
/// [`Basis::Columns`], the orthonormal `q: [r, steps·d·M]`), `r` dividing `n`: row `i`
/// takes parameter row `i mod r` (`r = n`: per row; `r = 1`: shared; else `n/r` samples of
/// each of `r` data points, in blocks):
/// `(z_K [n, d], Σ_k ln|det J_k| [n])`, or `None` when `B` has no body, the shapes do not
/// fit, or the kernels are off.
pub fn sylvester_stack<B: Backend>(
    z: &Tensor<B, 2>,
    theta: &Tensor<B, 2>,
    q: Option<&Tensor<B, 2>>,
    steps: usize,
    basis: Basis,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    if !fits(z.dims(), theta.dims(), q.map(Tensor::dims), steps, basis) {
        return None;
    }
    #[cfg(feature = "cubecl")]
    if let Some(out) = cube::sylvester_stack(z, theta, q, steps, basis) {
        return Some(out);
    }
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::sylvester_stack(z, theta, q, steps, basis) {
        return Some(out);
    }
    let _ = (z, theta, q, steps, basis);
    None
}

/// Whether `z: [n, d]`, `θ: [r, K·P]` and `q` fit [`sylvester_stack`]'s contract: `r`
/// divides `n`, `1 ≤ M ≤ d`, and `q: [r, K·d·M]` given exactly for [`Basis::Columns`].
fn fits(
    [n, d]: [usize; 2],
    [rows, cols]: [usize; 2],
    q: Option<[usize; 2]>,
    steps: usize,
    basis: Basis,
) -> bool {
    let m = basis.columns(d);
    let shapes = steps > 0
        && m > 0
        && m <= d
        && rows > 0
        && n % rows == 0
        && cols == steps * basis.params_per_step(d);
    shapes
        && match (basis, q) {
            (Basis::Columns(_), Some(q)) => q == [rows, steps * d * m],
            (Basis::Columns(_), None) => false,
            (_, q) => q.is_none(),
        }
}

/// The orthonormalized `q: [n, d·m]` (row `i` a `d×m` matrix, row-major) by flow-core's
/// `orthogonalize` iteration, each matrix iterated until every entry of `QᵀQ − I` is within
/// `tolerance` or `max_iterations` have run, with the number of matrices that ran out; or
/// `None` when `B` has no body, the shapes do not fit, or the kernels are off.
pub fn orthogonalize<B: Backend>(
    q: &Tensor<B, 2>,
    d: usize,
    m: usize,
    tolerance: f64,
    max_iterations: usize,
) -> Option<(Tensor<B, 2>, usize)> {
    #[cfg(feature = "cpu")]
    if let Some(out) = orthogonal::orthogonalize(q, d, m, tolerance, max_iterations) {
        return Some(out);
    }
    let _ = (q, d, m, tolerance, max_iterations);
    None
}
