//! The planar step: fused kernel against the tensor-op reference, and the layer on the
//! fused backend through the harness.

use burn::tensor::{
    Distribution, Tensor, TensorData,
    backend::{AutodiffBackend, Backend},
};
use flow_core::{
    PlanarConfig, planar,
    reference::planar as planar_reference,
    testing::{self, gpu_test_device, randomize},
};

use super::{Ad64, Inner, Train, assert_agree, common, fresh_seed, host, moved};

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
    let mut z = normal(n, d, 1.5);
    let (mut u, mut w, mut b) = (normal(m, d, scale), normal(m, d, scale), normal(m, 1, 1.0));
    if m == n && n >= 3 {
        let mut zv = host(z.clone());
        let mut wv = host(w.clone());
        let mut uv = host(u.clone());
        let mut bv = host(b.clone());
        // Rows 0 and 2: a = wᵀz + b far in tanh's flat tail (h' = 0). Row 2 needs it: with
        // wᵀu > 20, wᵀû ≈ wᵀu − 1 multiplies any rounding of h' in the ladj; its z is 0 so
        // that its large w cannot pull a back out of the tail.
        bv[0] = 40.0;
        bv[2] = 40.0;
        zv[2 * d..3 * d].fill(0.0);
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
        z = Tensor::from_data(
            TensorData::new(zv.iter().map(|&x| x as f32).collect(), [n, d]),
            device,
        );
    }
    [z, u, w, b]
}

const PLANAR_OUTPUTS: [&str; 6] = ["z'", "ladj", "∂z", "∂u", "∂w", "∂b"];

/// Values, ladj and the gradients of `(z, u, w, b)` for the loss `Σ z'·gy + Σ ladj·gl`,
/// through the fused kernel or the reference.
fn planar_outputs<B: AutodiffBackend>(
    fused: bool,
    inputs: &[Tensor<B, 2>; 4],
    (gy, gl): (Tensor<B, 2>, Tensor<B, 1>),
) -> Vec<Vec<f64>> {
    let inputs = inputs.clone().map(|t| t.require_grad());
    let [z, u, w, b] = inputs.clone();
    let (y, l) = if fused {
        assert!(
            flow_kernels::planar::planar(&z, &u, &w, &b).is_some(),
            "no fused kernel taken"
        );
        planar(z, u, w, b)
    } else {
        planar_reference(z, u, w, b)
    };
    let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
    let mut out = vec![host(y), host(l)];
    out.extend(
        inputs
            .iter()
            .map(|t| host(t.grad(&grads).expect("every input gets a gradient"))),
    );
    out
}

/// Fused and reference planar steps agree in values (inference and training backends) and
/// in the gradients of every input (the fused backward against autodiff of the reference).
#[test]
fn planar_step_matches_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let cpu = Default::default();
    for (n, d, shared) in [
        (37, 5, false),
        (37, 5, true),
        (1, 3, false),
        (130, 16, false),
    ] {
        let case = format!("planar n={n} d={d} shared={shared}");
        let m = if shared { 1 } else { n };
        let inputs = planar_inputs::<Train>(n, d, m, &device);
        let weights = (
            Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device),
            Tensor::<Train, 1>::random([n], Distribution::Normal(0.0, 1.0), &device),
        );
        let truth = planar_outputs::<Ad64>(
            false,
            &inputs.clone().map(|t| moved(&t, &cpu)),
            (moved(&weights.0, &cpu), moved(&weights.1, &cpu)),
        );
        // Inference backend: values only.
        let [z, u, w, b] = inputs.clone().map(|t| moved::<_, Inner, 2>(&t, &device));
        assert!(
            flow_kernels::planar::planar(&z, &u, &w, &b).is_some(),
            "no fused kernel taken"
        );
        let (y, l) = planar(z.clone(), u.clone(), w.clone(), b.clone());
        let (y_ref, l_ref) = planar_reference(z, u, w, b);
        assert_agree(
            &format!("{case} inner"),
            &PLANAR_OUTPUTS[..2],
            &[host(y), host(l)],
            &[host(y_ref), host(l_ref)],
            &truth,
        );
        // Training backend: values and gradients.
        let fused = planar_outputs(true, &inputs, weights.clone());
        let reference = planar_outputs(false, &inputs, weights);
        assert_agree(&case, &PLANAR_OUTPUTS, &fused, &reference, &truth);
    }
}

/// The planar layer on the fused backend passes the shared property checks: its ladj
/// against the autodiff Jacobian (which runs the fused backward), gradients to every
/// parameter, finite extremes, batch consistency.
#[test]
fn planar_layer_on_fused_backend_passes_the_harness() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
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
