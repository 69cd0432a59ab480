//! Fused CubeCL kernels against their tensor-op references, on the wgpu backend that has
//! them (`flow_core::backend::{Inner, Train}`: burn's unfused `CubeBackend`; in CI, Mesa's
//! lavapipe).
//!
//! Inputs are fresh each run (the seed is printed; `FLOW_TEST_SEED` replays one) and include
//! the kernels' edge cases: saturated `tanh`, `w = 0`, the linear branch of softplus,
//! shared and per-row parameters, and a row count that does not fill the last cube.
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use common::host;
use flow_core::{
    PlanarConfig,
    backend::{Inner, Train},
    planar, planar_reference,
    testing::{self, exclusive_device, randomize},
};

/// Values and gradients must agree to this (relative, floor 1 near zero; f32).
const REL: f64 = 1e-5;

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

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(
            err <= REL,
            "{what}[{i}]: fused {g}, reference {w}, relative error {err:.2e} > {REL:.0e}"
        );
    }
}

/// Planar inputs `(z, u, w, b)` with `n` rows and `m ∈ {1, n}` parameter rows, edge rows
/// planted when `m = n`: row 0 saturates tanh, row 1 has `w = 0`, row 2 has `wᵀu > 20`.
fn planar_inputs<B: Backend>(
    n: usize,
    d: usize,
    m: usize,
    device: &B::Device,
) -> [Tensor<B, 2>; 4] {
    let normal = |rows, cols, std| {
        Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, std), device)
    };
    // Parameters at the scale a trained layer has (wᵀu of order 1): with wᵀu ≪ 0 the
    // ladj's 1/(1 + h'·wᵀû) is ill-conditioned in f32 (1 + wᵀû = softplus(wᵀu) → 0) and no
    // two f32 implementations agree to 1e-5 there.
    let scale = 1.0 / (d as f64).sqrt();
    let z = normal(n, d, 1.5);
    let (mut u, mut w, mut b) = (normal(m, d, scale), normal(m, d, scale), normal(m, 1, 1.0));
    if m == n && n >= 3 {
        let mut wv = host(w.clone());
        let mut uv = host(u.clone());
        let mut bv = host(b.clone());
        bv[0] = 40.0; // a = wᵀz + b far in tanh's flat tail
        wv[d..2 * d].fill(0.0); // a translation: û is irrelevant, w/‖w‖² guarded
        for k in 0..d {
            wv[2 * d + k] = 5.0; // wᵀu = 25·d > 20: softplus' linear branch
            uv[2 * d + k] = 5.0;
        }
        let t = |v: Vec<f64>, cols| {
            Tensor::from_data(
                TensorData::new(v.iter().map(|&x| x as f32).collect(), [m, cols]),
                device,
            )
        };
        (u, w, b) = (t(uv, d), t(wv, d), t(bv, 1));
    }
    [z, u, w, b]
}

/// Fused and reference planar steps agree in values (both backends) and in the gradients
/// of every input (autodiff, the fused backward against autodiff of the reference).
#[test]
fn planar_step_matches_reference() {
    let _gpu = exclusive_device();
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    for (n, d, shared) in [
        (37, 5, false),
        (37, 5, true),
        (1, 3, false),
        (130, 16, false),
    ] {
        let m = if shared { 1 } else { n };
        // Inference backend: values only.
        let [z, u, w, b] = planar_inputs::<Inner>(n, d, m, &device);
        assert!(
            flow_core::fused::planar(&z, &u, &w, &b).is_some(),
            "no fused kernel taken"
        );
        let (y, l) = planar(z.clone(), u.clone(), w.clone(), b.clone());
        let (y_ref, l_ref) = planar_reference(z, u, w, b);
        assert_close("z' (inner)", &host(y), &host(y_ref));
        assert_close("ladj (inner)", &host(l), &host(l_ref));

        // Training backend: values and the gradients of a loss weighting every output.
        let inputs = planar_inputs::<Train>(n, d, m, &device).map(|t| t.require_grad());
        let gy = Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
        let gl = Tensor::<Train, 1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let [z, u, w, b] = inputs.clone();
            let (y, l) = if fused {
                assert!(flow_core::fused::planar(&z, &u, &w, &b).is_some());
                planar(z, u, w, b)
            } else {
                planar_reference(z, u, w, b)
            };
            let loss = (y.clone() * gy.clone()).sum() + (l.clone() * gl.clone()).sum();
            let grads = loss.backward();
            let g: Vec<Vec<f64>> = inputs
                .iter()
                .map(|t| host(t.grad(&grads).expect("every input gets a gradient")))
                .collect();
            (host(y), host(l), g)
        };
        let (y, l, g) = run(true);
        let (y_ref, l_ref, g_ref) = run(false);
        let case = format!("n={n} d={d} shared={shared}");
        assert_close(&format!("z' ({case})"), &y, &y_ref);
        assert_close(&format!("ladj ({case})"), &l, &l_ref);
        for (name, (g, g_ref)) in ["∂z", "∂u", "∂w", "∂b"].iter().zip(g.iter().zip(&g_ref))
        {
            assert_close(&format!("{name} ({case})"), g, g_ref);
        }
    }
}

/// The planar layer on the fused backend passes the shared property checks: its ladj
/// against the autodiff Jacobian (which runs the fused backward), gradients to every
/// parameter, finite extremes, batch consistency.
#[test]
fn planar_layer_on_fused_backend_passes_the_harness() {
    let _gpu = exclusive_device();
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let layer = randomize(
        PlanarConfig::new(4)
            .with_init_std(0.7)
            .init::<Train>(&device)
            .unwrap(),
        0.3,
    );
    let x = testing::standard_inputs::<Train>(16, 4, 3, &device);
    let report = testing::check_transform(&layer, x, None, common::TOL).unwrap();
    assert_eq!(report.params_checked, 3);
}
