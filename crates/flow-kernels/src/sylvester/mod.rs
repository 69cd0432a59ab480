//! Sylvester steps (van den Berg et al. 2018): `z' = z + Q R tanh(R̃ Qᵀ z + b)` with
//! `ln|det| = Σᵢ ln|1 + Rᵢᵢ R̃ᵢᵢ h'ᵢ|`; flow-core's `sylvester` module has the math, the
//! parameter layout and the tensor-op reference.
//!
//! - CPU: the `K` steps of a row in one pass (`f64`), `R` and `R̃` read in place from the
//!   encoder's output (no masked or transposed copies), `Q` applied as the reflections or
//!   the permutation it is, or as the orthonormalized matrix the caller passes; one pass
//!   backward, which recomputes the row's intermediate points. The tensor-op reference
//!   takes about 30 operations per step on `[n, M, M]` tensors, forward and backward.

mod basis;
#[cfg(feature = "cpu")]
mod cpu;

pub use basis::Basis;

use burn::tensor::{Tensor, backend::Backend};

/// `steps` Sylvester steps on `z: [n, d]` with per-row parameters `theta: [n, steps·P]`
/// (and, for [`Basis::Columns`], the orthonormal `q: [n, steps·d·M]`):
/// `(z_K [n, d], Σ_k ln|det J_k| [n])`, or `None` when `B` has no body, the shapes do not
/// fit, or the kernels are off.
pub fn sylvester_stack<B: Backend>(
    z: &Tensor<B, 2>,
    theta: &Tensor<B, 2>,
    q: Option<&Tensor<B, 2>>,
    steps: usize,
    basis: Basis,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    #[cfg(feature = "cpu")]
    if let Some(out) = cpu::sylvester_stack(z, theta, q, steps, basis) {
        return Some(out);
    }
    let _ = (z, theta, q, steps, basis);
    None
}
