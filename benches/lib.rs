//! Shared inputs for the criterion benchmarks in this directory (`cargo bench -p
//! flow-benches`, `--features wgpu` for the GPU ones).

use burn::tensor::{Distribution, Tensor, backend::Backend};

/// Planar-step inputs `(z, u, w, b)` with one parameter row per sample (amortized), at the
/// scale a trained layer has.
pub fn planar_inputs<B: Backend>(n: usize, d: usize, device: &B::Device) -> [Tensor<B, 2>; 4] {
    let scale = 1.0 / (d as f64).sqrt();
    let normal = |cols, std| Tensor::random([n, cols], Distribution::Normal(0.0, std), device);
    [
        normal(d, 1.0),
        normal(d, scale),
        normal(d, scale),
        normal(1, 1.0),
    ]
}

/// Spline inputs `(x, widths, heights, derivatives)` with `bins` bins per entry.
pub fn spline_inputs<B: Backend>(
    n: usize,
    d: usize,
    bins: usize,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
    let normal = |k| Tensor::random([n, d, k], Distribution::Normal(0.0, 0.5), device);
    (
        Tensor::random([n, d], Distribution::Normal(0.0, 1.5), device),
        normal(bins),
        normal(bins),
        normal(bins - 1),
    )
}
