//! The spline's shape: what flow-core's `RqSpline` hands the kernels.

/// The spline's shape as the kernels read it (flow-core's `RqSpline`, validated there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spline {
    /// Number of bins `K ≥ 2`.
    pub bins: usize,
    /// Half-width `B` of the interval `[−B, B]`; identity outside.
    pub bound: f64,
    /// Minimum bin width, as a fraction of `2B`.
    pub min_bin_width: f64,
    /// Minimum bin height, as a fraction of `2B`.
    pub min_bin_height: f64,
    /// Minimum derivative at the interior knots.
    pub min_derivative: f64,
}

#[cfg(test)]
impl Spline {
    /// `bins` bins on `[−bound, bound]`, minimum sizes `10⁻³` (flow-core's defaults).
    pub(crate) fn new(bins: usize, bound: f64) -> Self {
        Self {
            bins,
            bound,
            min_bin_width: 1e-3,
            min_bin_height: 1e-3,
            min_derivative: 1e-3,
        }
    }
}
