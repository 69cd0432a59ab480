//! Sylvester steps (van den Berg et al. 2018): `z' = z + Q R tanh(R̃ Qᵀ z + b)` with
//! `ln|det| = Σᵢ ln|1 + Rᵢᵢ R̃ᵢᵢ h'ᵢ|`; flow-core's `sylvester` module has the math, the
//! parameter layout and the tensor-op reference.
//!
//! - CPU: the `K` steps of a row in one pass (`f64`), `R` and `R̃` read in place from the
//!   encoder's output (no masked or transposed copies), `Q` applied as the reflections or
//!   the permutation it is, or as the orthonormalized matrix the caller passes; one pass
//!   backward, which recomputes the row's intermediate points. The tensor-op reference
//!   takes about 30 operations per step on `[n, M, M]` tensors, forward and backward.

#[cfg(feature = "cpu")]
mod cpu;

use burn::tensor::{Tensor, backend::Backend};

/// How the kernel applies a step's `Q` (flow-core's `SylvesterQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// `M` orthonormal columns, given by the caller as `q: [n, K·D·M]` (step `k`'s `D×M`
    /// matrix row-major at `k·D·M`); the raw values in `θ` are not read.
    Columns(usize),
    /// The product `H(v_H) ⋯ H(v_1)` of the `H` reflections stored after each step's
    /// triangular parameters.
    Reflections(usize),
    /// The identity on even steps, the reversal on odd ones.
    Alternating,
}

impl Basis {
    /// `M`, the columns of `Q`, on `d` features.
    pub fn columns(self, d: usize) -> usize {
        match self {
            Basis::Columns(m) => m,
            Basis::Reflections(_) | Basis::Alternating => d,
        }
    }

    /// Parameters of one step in `θ`: `M² + 2M` and what builds `Q`.
    pub fn params_per_step(self, d: usize) -> usize {
        let m = self.columns(d);
        m * m
            + 2 * m
            + match self {
                Basis::Columns(m) => d * m,
                Basis::Reflections(h) => d * h,
                Basis::Alternating => 0,
            }
    }
}

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
