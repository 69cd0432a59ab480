//! How a Sylvester step's `Q` is given to the kernel.

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
