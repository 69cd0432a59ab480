//! Fused CubeCL kernels (`flow_kernels`) against their tensor-op references
//! (`flow_core::reference`), on the backend the features select (`Inner`, `Train` below:
//! burn's unfused `CubeBackend` for wgpu, or for CUDA with `--features cuda`; in CI, wgpu on
//! Mesa's lavapipe).
//!
//! Inputs are fresh each run (the seed is printed; `FLOW_TEST_SEED` replays one) and include
//! the kernels' edge cases: saturated `tanh`, `w = 0`, the linear branch of softplus,
//! spline tails, knots and interval ends, shared and per-row parameters, and row counts
//! that do not fill the last cube.
//!
//! One module per kernel (`planar`, `sylvester`: GPU features only; `spline`); this file
//! holds what they share: the backend under test, fresh seeds and the agreement check.
//!
//! # Agreement
//! Values and gradients agree to relative `1e-5` (floor 1 near zero). Two correct f32
//! programs that sum in different orders can differ by more on ill-conditioned entries, so
//! every comparison also evaluates the reference in f64 on the same inputs: an entry that
//! differs from the reference by more than `1e-5` passes only if it is within `1e-5` of the
//! f64 value, or (where f32 cannot get that close) within twice the f32 reference's own
//! worst error in that output (four times for the `K`-step Sylvester stack); the number of
//! such entries is printed. A wrong term fails
//! all three: it is off by orders of magnitude more.
//!
//! With `--features flex` (and neither GPU feature) the spline tests check the CPU kernel
//! the same way: `cargo test -p flow-core --features flex --test fused`.
#![cfg(any(feature = "wgpu", feature = "cuda", feature = "flex"))]

#[path = "../common/mod.rs"]
mod common;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod planar;
mod spline;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod sylvester;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use common::host;

/// The backend under test: the unfused CubeCL backend of the GPU feature, else `Flex`.
#[cfg(feature = "cuda")]
type Inner = flow_kernels::backends::CudaInner;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
type Inner = flow_kernels::backends::WgpuInner;
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
type Inner = burn::backend::Flex;
/// [`Inner`] with autodiff.
type Train = burn::backend::Autodiff<Inner>;

/// Values and gradients agree to this (relative, floor 1 near zero; f32).
const REL: f64 = 1e-5;

type Ad64 = burn::backend::Autodiff<burn::backend::NdArray<f64>>;

fn fresh_seed() -> u64 {
    let seed = std::env::var("FLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_nanos() as u64)
                .unwrap_or(0)
        });
    eprintln!("fused kernels: seed {seed} (replay with FLOW_TEST_SEED={seed})");
    seed
}

/// `t` on another backend (through the host). The f64 CPU backend is safe here: this binary
/// creates no f32 ndarray tensors, so the CPU device's float type is f64.
fn moved<A: Backend, B: Backend, const D: usize>(
    t: &Tensor<A, D>,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(host(t.clone()), t.shape()), device)
}

/// Compares named output vectors of the fused kernel with the reference's; see the module
/// docs for the f64 fallback.
fn assert_agree(
    case: &str,
    names: &[&str],
    fused: &[Vec<f64>],
    reference: &[Vec<f64>],
    truth: &[Vec<f64>],
) {
    assert_agree_within(case, names, fused, reference, truth, 2.0);
}

/// [`assert_agree`] with the fallback's allowance `slack` times the reference's worst
/// error instead of twice.
fn assert_agree_within(
    case: &str,
    names: &[&str],
    fused: &[Vec<f64>],
    reference: &[Vec<f64>],
    truth: &[Vec<f64>],
    slack: f64,
) {
    let scaled = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
    let mut explained = 0;
    for (k, name) in names.iter().enumerate() {
        let (f, r, t) = (&fused[k], &reference[k], &truth[k]);
        assert_eq!(f.len(), r.len(), "{name} ({case}): lengths");
        // The f32 reference's worst error anywhere in this output.
        let worst_ref = r
            .iter()
            .zip(t)
            .map(|(r, t)| scaled(*r, *t))
            .fold(0.0, f64::max);
        for i in 0..f.len() {
            let diff = scaled(f[i], r[i]);
            if diff <= REL {
                continue;
            }
            let error = scaled(f[i], t[i]);
            assert!(
                error <= REL || error <= slack * worst_ref,
                "{name}[{i}] ({case}): fused {}, reference {}, f64 {}: relative difference \
                 {diff:.2e} > {REL:.0e}, fused error {error:.2e}, the reference's worst \
                 {worst_ref:.2e}",
                f[i],
                r[i],
                t[i]
            );
            explained += 1;
        }
    }
    if explained > 0 {
        eprintln!("{case}: {explained} entries beyond {REL:.0e} of the reference, as close to f64");
    }
}
