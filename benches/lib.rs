//! Shared inputs and models for the criterion benchmarks in this directory (`cargo bench
//! -p flow-benches`, `--features wgpu` for the GPU ones) and for the ports of the peer
//! benchmarks (`cargo run --release -p flow-benches --bin ports`).

use burn::tensor::{Distribution, Tensor, backend::Backend};
use flow_core::{
    Coupling, CouplingConfig, Elementwise, Flow, MaskedAutoregressive, MaskedAutoregressiveConfig,
    Order, Permutation, StandardNormal,
};

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

/// A stack of couplings, each followed by a reversal of the features.
pub type Couplings<B> = Vec<(Coupling<B>, Permutation<B>)>;

/// `layers` couplings of `kind` on ℝ^`dim` with conditioners of two hidden layers of
/// `hidden`, each followed by a reversal (the peers alternate which half is transformed).
pub fn couplings<B: Backend>(
    dim: usize,
    layers: usize,
    hidden: usize,
    kind: Elementwise,
    device: &B::Device,
) -> Flow<B, StandardNormal, Couplings<B>> {
    let stack = (0..layers)
        .map(|_| {
            let coupling = CouplingConfig::new(dim, kind)
                .with_hidden(hidden)
                .init(device)
                .expect("a valid coupling");
            (
                coupling,
                Permutation::reverse(dim, device).expect("a valid permutation"),
            )
        })
        .collect();
    Flow::new(StandardNormal::new(dim).expect("dim ≥ 1"), stack).expect("a valid flow")
}

/// realnvp-moons: 8 affine couplings on ℝ², conditioners 1-256-256-2 (534,544 parameters).
pub fn realnvp_moons<B: Backend>(device: &B::Device) -> Flow<B, StandardNormal, Couplings<B>> {
    couplings(2, 8, 256, Elementwise::affine(), device)
}

/// nsf-mog: 4 rational-quadratic spline couplings on ℝ⁸, 8 bins on [−5, 5], conditioners
/// 4-128-128-92 (116,080 parameters, as nflows).
pub fn nsf_mog<B: Backend>(device: &B::Device) -> Flow<B, StandardNormal, Couplings<B>> {
    couplings(8, 4, 128, Elementwise::spline(8, 5.0), device)
}

/// maf-mnist: 5 affine MADE layers on ℝ⁷⁸⁴ (784-512-512-1568, orders alternating;
/// 7,344,800 parameters).
pub fn maf_mnist<B: Backend>(
    device: &B::Device,
) -> Flow<B, StandardNormal, Vec<MaskedAutoregressive<B>>> {
    let stack = (0..5)
        .map(|i| {
            MaskedAutoregressiveConfig::new(784, Elementwise::affine())
                .with_hidden(512)
                .with_order(if i % 2 == 0 {
                    Order::Natural
                } else {
                    Order::Reversed
                })
                .init(device)
                .expect("a valid MAF layer")
        })
        .collect();
    Flow::new(StandardNormal::new(784).expect("dim ≥ 1"), stack).expect("a valid flow")
}
