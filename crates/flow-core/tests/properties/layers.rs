//! Every layer through the verification harness, on every backend CI runs.

use crate::common;

use burn::module::{AutodiffModule, Module};
use burn::tensor::TensorData;
use common::*;
use flow_core::{
    ActNormConfig, Amortized, AmortizedStep, BatchNormConfig, CouplingConfig, Elementwise,
    HouseholderConfig, Inverse, Invertible, Layer, LuLinearConfig, MaskedAutoregressiveConfig,
    Order, Permutation, PlanarConfig, RadialConfig, RqSpline, SylvesterQ, Transform, orthogonalize,
    rq_spline, rq_spline_inverse,
    testing::{self, check_invertible, check_transform, randomize, standard_inputs},
};

const N: usize = 8;

fn planar_layer<B: AutodiffBackend>(device: &B::Device) {
    for dim in [1, 2, 5] {
        let layer = PlanarConfig::new(dim)
            .with_init_std(0.7)
            .init::<B>(device)
            .unwrap();
        let layer = randomize(layer, 0.3);
        let x = standard_inputs::<B>(N, dim, 1, device).mul_scalar(1.5);
        let report = check_transform(&layer, x, None, TOL).unwrap();
        assert_eq!(report.params_checked, 3);
    }
}

/// Every amortized family with per-row parameters from the context: the harness, and a
/// gradient that reaches every column of the context (the parameters an encoder learns
/// through).
fn amortized<B: AutodiffBackend>(device: &B::Device) {
    for (step, dim) in [
        (AmortizedStep::Planar, 1),
        (AmortizedStep::Planar, 4),
        (AmortizedStep::Radial, 1),
        (AmortizedStep::Radial, 4),
        (AmortizedStep::Householder, 1),
        (AmortizedStep::Householder, 4),
        (AmortizedStep::Sylvester(SylvesterQ::Triangular), 1),
        (AmortizedStep::Sylvester(SylvesterQ::Triangular), 4),
        (
            AmortizedStep::Sylvester(SylvesterQ::Householder { reflections: 2 }),
            4,
        ),
        (
            AmortizedStep::Sylvester(SylvesterQ::Orthogonal { columns: 2 }),
            4,
        ),
        (
            AmortizedStep::Sylvester(SylvesterQ::Orthogonal { columns: 3 }),
            3,
        ),
    ] {
        let flow = Amortized::<B>::new(step, dim, 3).unwrap();
        let width = flow.context_dim();
        assert_eq!(width, 3 * step.params_per_step(dim));
        let x = standard_inputs::<B>(N, dim, 3, device).mul_scalar(1.5);
        let theta = standard_inputs::<B>(N, width, 4, device).mul_scalar(0.7);
        let report = check_transform(&flow, x.clone(), Some(&theta), TOL).unwrap();
        assert_eq!(
            report.params_checked, 0,
            "{step:?}: no parameters of its own"
        );
        let theta = theta.require_grad();
        let (y, ladj) = flow.forward(x, Some(&theta));
        let grads = (y.powi_scalar(3).sum() + ladj.sum()).backward();
        let g = host(theta.grad(&grads).expect("the context gets a gradient"));
        for c in 0..width {
            let column: Vec<f64> = (0..N).map(|i| g[i * width + c]).collect();
            assert!(
                column.iter().all(|v| v.is_finite()) && column.iter().any(|&v| v != 0.0),
                "{step:?} dim {dim}: context column {c} gets no gradient"
            );
        }
        // Three samples per row, parameters prepared once: the repeated context's result.
        let theta = theta.detach();
        let z = standard_inputs::<B>(3 * N, dim, 6, device);
        let (tiled, tiled_ladj) = flow.forward_tiled(z.clone(), theta.clone(), 3);
        let (whole, whole_ladj) = flow.forward(z, Some(&theta.repeat_dim(0, 3)));
        let pairs = [
            (host(tiled), host(whole)),
            (host(tiled_ladj), host(whole_ladj)),
        ];
        for (got, want) in pairs {
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{step:?}: tiled {g} against repeated {w}"
                );
            }
        }
    }
    assert!(Amortized::<B>::new(AmortizedStep::Planar, 0, 2).is_err());
    assert!(Amortized::<B>::new(AmortizedStep::Radial, 2, 0).is_err());
    for q in [
        SylvesterQ::Orthogonal { columns: 5 },
        SylvesterQ::Orthogonal { columns: 0 },
        SylvesterQ::Householder { reflections: 0 },
    ] {
        let err = Amortized::<B>::new(AmortizedStep::Sylvester(q), 4, 2).unwrap_err();
        assert!(err.to_string().contains("Sylvester"), "{err}");
    }
}

/// Learned reflections: an exact inverse and `ln|det| = 0`, checked against the Jacobian.
fn householder_layer<B: AutodiffBackend>(device: &B::Device) {
    for (dim, reflections) in [(1, 1), (3, 2), (5, 4)] {
        let layer = HouseholderConfig::new(dim)
            .with_reflections(reflections)
            .init::<B>(device)
            .unwrap();
        let x = standard_inputs::<B>(N, dim, 5, device).mul_scalar(1.5);
        let report = check_invertible(&layer, x, None, TOL).unwrap();
        assert_eq!(report.params_checked, 1);
    }
}

/// The paper's orthogonalization converges to `QᵀQ = I` (1e-5), and to the polar factor
/// of its input: `Qᵀq` is symmetric (`q = Q S`, `S` symmetric positive definite).
fn orthogonalization<B: AutodiffBackend>(device: &B::Device) {
    for (d, m) in [(5, 3), (8, 8), (32, 32)] {
        let n = 6;
        let q = standard_inputs::<B>(n * d, m, 7, device).reshape([n, d, m]);
        let ortho = orthogonalize(q.clone());
        let gram = host(ortho.clone().swap_dims(1, 2).matmul(ortho.clone()));
        let s = host(ortho.swap_dims(1, 2).matmul(q));
        for b in 0..n {
            for i in 0..m {
                for j in 0..m {
                    let at = b * m * m + i * m + j;
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (gram[at] - want).abs() <= 1e-5,
                        "{d}×{m}: QᵀQ[{b},{i},{j}] = {}",
                        gram[at]
                    );
                    let (sij, sji) = (s[at], s[b * m * m + j * m + i]);
                    assert!(
                        (sij - sji).abs() <= 1e-4 * (1.0 + sij.abs()),
                        "Qᵀq asymmetric"
                    );
                }
            }
        }
    }
}

fn radial_layer<B: AutodiffBackend>(device: &B::Device) {
    for dim in [1, 2, 5] {
        let layer = RadialConfig::new(dim)
            .with_init_std(0.8)
            .init::<B>(device)
            .unwrap();
        let layer = randomize(layer, 0.3);
        let x = standard_inputs::<B>(N, dim, 2, device);
        let report = check_transform(&layer, x, None, TOL).unwrap();
        assert_eq!(report.params_checked, 3);
    }
}

fn coupling<B: AutodiffBackend>(
    kind: Elementwise,
    dim: usize,
    context_dim: usize,
    device: &B::Device,
) {
    let layer = CouplingConfig::new(dim, kind)
        .with_hidden(16)
        .with_context_dim(context_dim)
        .init::<B>(device)
        .unwrap();
    let layer = randomize(layer, 0.3);
    let x = standard_inputs::<B>(N, dim, 3, device);
    let context = (context_dim > 0).then(|| standard_inputs::<B>(N, context_dim, 4, device));
    let report = check_invertible(&layer, x, context.as_ref(), TOL).unwrap();
    // 2 hidden layers + output layer, weight and bias each.
    assert_eq!(report.params_checked, 6);
}

fn additive_coupling<B: AutodiffBackend>(device: &B::Device) {
    coupling::<B>(Elementwise::Additive, 4, 0, device);
}

fn affine_coupling<B: AutodiffBackend>(device: &B::Device) {
    coupling::<B>(Elementwise::affine(), 2, 0, device);
    coupling::<B>(Elementwise::affine(), 5, 0, device);
}

fn conditional_affine_coupling<B: AutodiffBackend>(device: &B::Device) {
    coupling::<B>(Elementwise::affine(), 3, 2, device);
}

fn permutations<B: AutodiffBackend>(device: &B::Device) {
    let x = standard_inputs::<B>(N, 5, 5, device);
    for perm in [
        Permutation::<B>::reverse(5, device).unwrap(),
        Permutation::<B>::random(5, 42, device).unwrap(),
    ] {
        check_invertible(&perm, x.clone(), None, TOL).unwrap();
    }
    let reversed = host(
        Permutation::<B>::reverse(5, device)
            .unwrap()
            .forward(x.clone(), None)
            .0,
    );
    let xs = host(x);
    for i in 0..N {
        for k in 0..5 {
            assert_eq!(reversed[i * 5 + k], xs[i * 5 + 4 - k]);
        }
    }
}

fn actnorm<B: AutodiffBackend>(device: &B::Device) {
    let layer = ActNormConfig::new(3).init::<B>(device).unwrap();
    let data = standard_inputs::<B>(64, 3, 6, device)
        .mul_scalar(2.0)
        .add_scalar(3.0);
    let (layer, z) = layer.data_init(data.clone(), None);
    // The inverse now standardises the data.
    let z = host(z);
    for k in 0..3 {
        let col: Vec<f64> = (0..64).map(|i| z[i * 3 + k]).collect();
        let mean = col.iter().sum::<f64>() / 64.0;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 64.0;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "mean {mean}, var {var}"
        );
    }
    let report = check_invertible(&layer, data.narrow(0, 0, N), None, TOL).unwrap();
    assert_eq!(report.params_checked, 2);
}

fn compositions<B: AutodiffBackend>(device: &B::Device) {
    let c = |seed| {
        randomize(
            CouplingConfig::new(3, Elementwise::affine())
                .with_hidden(8)
                .init::<B>(device)
                .unwrap(),
            0.3 + seed as f64 * 0.01,
        )
    };
    let layers = vec![
        (c(0), Permutation::random(3, 1, device).unwrap()),
        (c(1), Permutation::random(3, 2, device).unwrap()),
    ];
    let x = standard_inputs::<B>(N, 3, 7, device);
    check_invertible(&layers, x.clone(), None, TOL).unwrap();
    let triple = (
        c(2),
        Permutation::reverse(3, device).unwrap(),
        ActNormConfig::new(3).init(device).unwrap(),
    );
    check_invertible(&randomize(triple, 0.2), x.clone(), None, TOL).unwrap();
    // Inverse<T> is a transform with T's directions swapped.
    let inverse = Inverse::new(c(3));
    check_invertible(&inverse, x.clone(), None, TOL).unwrap();
    let (y, l) = inverse.forward(x.clone(), None);
    let (y2, l2) = inverse.inner.inverse(x, None);
    assert_eq!(host(y), host(y2));
    assert_eq!(host(l), host(l2));
    // A stack of planar layers composes too.
    let planars: Vec<_> = PlanarConfig::new(3)
        .with_init_std(0.5)
        .init_stack::<B>(4, device)
        .unwrap();
    check_transform(&planars, standard_inputs::<B>(N, 3, 8, device), None, TOL).unwrap();
}

fn spline_coupling<B: AutodiffBackend>(device: &B::Device) {
    // A narrow interval, so that some inputs fall in the identity tails.
    let kind = Elementwise::spline(5, 1.5);
    for (dim, context_dim) in [(2, 0), (3, 2)] {
        let layer = CouplingConfig::new(dim, kind)
            .with_hidden(16)
            .with_context_dim(context_dim)
            .init::<B>(device)
            .unwrap();
        // Moderate parameters: a steep random spline makes the inverse ill-conditioned in
        // f32 (|Δx| ≈ ε|y| / y′, see the spline module), which is not what this checks.
        let layer = randomize(layer, 0.25);
        let x = standard_inputs::<B>(N, dim, 9, device).mul_scalar(1.5);
        let context = (context_dim > 0).then(|| standard_inputs::<B>(N, context_dim, 4, device));
        let report = check_invertible(&layer, x, context.as_ref(), SPLINE_TOL).unwrap();
        assert_eq!(report.params_checked, 6);
    }
}

/// The spline's traps: inputs exactly at ±B, exactly at every knot, far outside; the
/// inverse at the same points. Values, round trips and every gradient stay finite.
fn spline_edges<B: AutodiffBackend>(device: &B::Device) {
    let spec = RqSpline::new(4, 2.0);
    // Zero widths and heights put the knots at −2, −1, 0, 1, 2 (exact in binary); random
    // interior derivatives keep the map non-trivial.
    let points = [-2.0f32, -1.0, 0.0, 1.0, 2.0, -1e30, 1e30, -2.5, 2.5, 0.5];
    let n = points.len();
    let x = Tensor::<B, 2>::from_data(TensorData::new(points.to_vec(), [n, 1]), device);
    let zeros = || Tensor::<B, 3>::zeros([1, 1, 4], device).require_grad();
    let derivs =
        Tensor::<B, 3>::from_data(TensorData::new(vec![0.9f32, -1.3, 2.0], [1, 1, 3]), device)
            .require_grad();
    for inverse in [false, true] {
        let (w, h) = (zeros(), zeros());
        let x = x.clone().require_grad();
        let run = if inverse {
            rq_spline_inverse
        } else {
            rq_spline
        };
        let (y, ladj) = run(x.clone(), w.clone(), h.clone(), derivs.clone(), &spec);
        let grads = (y.clone().sum() + ladj.clone().sum()).backward();
        for (name, g) in [
            ("x", host(x.grad(&grads).unwrap())),
            ("widths", host(w.grad(&grads).unwrap())),
            ("heights", host(h.grad(&grads).unwrap())),
            ("derivatives", host(derivs.grad(&grads).unwrap())),
        ] {
            assert!(
                g.iter().all(|v| v.is_finite()),
                "inverse={inverse}: d/d{name} = {g:?}"
            );
        }
        let (yv, lv) = (host(y.clone()), host(ladj));
        assert!(yv.iter().chain(&lv).all(|v| v.is_finite()), "{yv:?} {lv:?}");
        // Knots map to knots; the tails are the identity.
        for (i, &p) in points.iter().enumerate() {
            if p.abs() >= 2.0 {
                assert_eq!(yv[i], f64::from(p));
                assert_eq!(lv[i], 0.0);
            } else if p.fract() == 0.0 {
                assert!((yv[i] - f64::from(p)).abs() < 1e-5, "knot {p} -> {}", yv[i]);
            }
        }
        let back = if inverse {
            rq_spline
        } else {
            rq_spline_inverse
        };
        let (x2, ladj2) = back(
            y.detach(),
            w.detach(),
            h.detach(),
            derivs.clone().detach(),
            &spec,
        );
        for ((a, b), (l, l2)) in host(x2).iter().zip(points).zip(lv.iter().zip(host(ladj2))) {
            assert!(
                (a - f64::from(b)).abs() <= 1e-5 * f64::from(b).abs().max(1.0),
                "{a} vs {b}"
            );
            assert!((l + l2).abs() < 1e-5, "ladj {l} vs {l2}");
        }
    }
}

fn autoregressive<B: AutodiffBackend>(kind: Elementwise, tol: f64, device: &B::Device) {
    // (Reversed orders: the MADE's own test; each case here costs minutes on lavapipe.)
    for (dim, context_dim, order) in [(3, 0, Order::Natural), (4, 3, Order::Random(7))] {
        let layer = MaskedAutoregressiveConfig::new(dim, kind)
            .with_hidden(12)
            .with_context_dim(context_dim)
            .with_order(order)
            .init::<B>(device)
            .unwrap();
        let layer = randomize(layer, 0.25);
        let x = standard_inputs::<B>(N, dim, 10, device);
        let context = (context_dim > 0).then(|| standard_inputs::<B>(N, context_dim, 11, device));
        // 2 hidden + output layer (weight, bias); a context adds two weights.
        let params = 6 + if context_dim > 0 { 2 } else { 0 };
        let report = check_invertible(&layer, x.clone(), context.as_ref(), tol).unwrap();
        assert_eq!(report.params_checked, params);
        // IAF: the same layer the other way round.
        let iaf = Inverse::new(layer);
        check_invertible(&iaf, x, context.as_ref(), tol).unwrap();
    }
}

fn maf_affine<B: AutodiffBackend>(device: &B::Device) {
    autoregressive::<B>(Elementwise::affine(), TOL, device);
}

/// The IAF paper's gated update (as a MAF and, through `Inverse`, as an IAF). Tensor ops
/// only (no kernel), so ndarray alone: on lavapipe each case costs minutes.
#[test]
fn maf_gated_passes_harness() {
    let _rng = seeded_ndarray();
    autoregressive::<NdAd>(Elementwise::gated(), TOL, &Default::default());
}

fn maf_spline<B: AutodiffBackend>(device: &B::Device) {
    autoregressive::<B>(Elementwise::spline(4, 2.0), SPLINE_TOL, device);
}

fn lu_linear<B: AutodiffBackend>(device: &B::Device) {
    for (dim, seed) in [(3, Some(1)), (17, None)] {
        let layer = LuLinearConfig::new(dim)
            .with_permutation_seed(seed)
            .init::<B>(device)
            .unwrap();
        let layer = randomize(layer, 0.3);
        let x = standard_inputs::<B>(N, dim, 12, device);
        let report = check_invertible(&layer, x.clone(), None, TOL).unwrap();
        assert_eq!(report.params_checked, 4);
        // The forward is the affine map x Wᵀ + b with W = P L U, W formed explicitly.
        let (y, _) = layer.forward(x.clone(), None);
        let w = layer.weight();
        let (b_only, _) = layer.forward(x.zeros_like(), None);
        let want = x.matmul(w.transpose()) + b_only;
        let err = host((y - want).abs().max());
        assert!(err[0] < 1e-4, "y differs from x Wᵀ + b by {}", err[0]);
    }
}

/// Batch norm in training mode: the inverse standardises the batch (to `exp(γ̂)`, `β`),
/// its ladj is the formula with the batch's statistics, and the running averages move.
fn batchnorm_training<B: AutodiffBackend>(device: &B::Device) {
    let layer = BatchNormConfig::new(3)
        .with_momentum(0.25)
        .init::<B>(device)
        .unwrap();
    // (randomize perturbs the running averages too: keep the variance positive)
    let layer = randomize(layer, 0.2);
    let y = standard_inputs::<B>(64, 3, 13, device)
        .mul_scalar(2.0)
        .add_scalar(1.0);
    let (mean_old, var_old) = layer.running_stats();
    let (mean_old, var_old) = (host(mean_old), host(var_old));
    let (x, ladj) = layer.inverse(y.clone(), None);
    let (ys, xs, l) = (host(y), host(x), host(ladj));
    let (mean_run, var_run) = layer.running_stats();
    let (mean_run, var_run) = (host(mean_run), host(var_run));
    let mut want_ladj = 0.0;
    for k in 0..3 {
        let col: Vec<f64> = (0..64).map(|i| ys[i * 3 + k]).collect();
        let mean = col.iter().sum::<f64>() / 64.0;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 64.0;
        let out: Vec<f64> = (0..64).map(|i| xs[i * 3 + k]).collect();
        let out_mean = out.iter().sum::<f64>() / 64.0;
        let out_std = (out.iter().map(|v| (v - out_mean).powi(2)).sum::<f64>() / 64.0).sqrt();
        // x = (y − μ)/σ · e^γ̂ + β: its spread is e^γ̂ · σ/√(σ² + ε) ≈ e^γ̂.
        let scale = out_std * (var + 1e-5).sqrt() / var.sqrt();
        want_ladj += scale.ln() - 0.5 * (var + 1e-5).ln();
        let want_mean = 0.75 * mean_old[k] + 0.25 * mean;
        assert!(
            (mean_run[k] - want_mean).abs() < 1e-4,
            "running mean {} vs {want_mean}",
            mean_run[k]
        );
        let want_var = 0.75 * var_old[k] + 0.25 * var;
        assert!(
            (var_run[k] - want_var).abs() < 1e-4,
            "running var {} vs {want_var}",
            var_run[k]
        );
    }
    for v in l {
        assert!((v - want_ladj).abs() < 1e-4, "ladj {v} vs {want_ladj}");
    }
    let report = testing::check_gradients(&layer, standard_inputs::<B>(N, 3, 14, device), None);
    assert!(report.is_ok(), "{report:?}");
    // Evaluation (no autodiff: running averages): the harness's checks that need no
    // autodiff, on this backend; the ladj against central differences in f64 is in
    // in_f64/finite_differences.rs.
    let eval = layer.valid();
    let x = standard_inputs::<B>(N, 3, 16, device)
        .inner()
        .mul_scalar(2.0);
    testing::check_round_trip(&eval, x.clone(), None, TOL).unwrap();
    testing::check_batch_consistency(&eval, x.clone(), None, TOL).unwrap();
    testing::check_extreme(&eval, &x, None, 1e4).unwrap();
    testing::check_inverse_extreme(&eval, &x, None, 1e4).unwrap();
    // f32 central differences with a coarse step: the map is affine, so they are exact
    // up to rounding.
    testing::check_ladj_finite_diff(&eval, x, None, 1e-2, 1e-3).unwrap();
}

/// A run-time stack of every layer kind, as `Vec<Layer>`, through the harness.
fn layer_stack<B: AutodiffBackend>(device: &B::Device) {
    let d = 4;
    let layers: Vec<Layer<B>> = vec![
        ActNormConfig::new(d).init(device).unwrap().into(),
        CouplingConfig::new(d, Elementwise::spline(4, 2.0))
            .with_hidden(8)
            .init(device)
            .unwrap()
            .into(),
        LuLinearConfig::new(d)
            .with_permutation_seed(Some(3))
            .init(device)
            .unwrap()
            .into(),
        MaskedAutoregressiveConfig::new(d, Elementwise::affine())
            .with_hidden(8)
            .init(device)
            .unwrap()
            .into(),
        Permutation::reverse(d, device).unwrap().into(),
        Inverse::new(
            MaskedAutoregressiveConfig::new(d, Elementwise::affine())
                .with_hidden(8)
                .init(device)
                .unwrap(),
        )
        .into(),
    ];
    let layers = randomize(layers, 0.2);
    let x = standard_inputs::<B>(N, d, 15, device);
    let report = check_invertible(&layers, x, None, SPLINE_TOL).unwrap();
    // actnorm 2, coupling 6, LU 4, MAF 6, IAF 6.
    assert_eq!(report.params_checked, 24);
}

on_backends! {
    layer_stack_passes_harness => layer_stack;
    spline_coupling_passes_harness => spline_coupling;
    spline_edges_are_finite => spline_edges;
    maf_affine_passes_harness => maf_affine;
    maf_spline_passes_harness => maf_spline;
    lu_linear_passes_harness => lu_linear;
    batchnorm_training_and_evaluation => batchnorm_training;
    planar_passes_harness => planar_layer;
    radial_passes_harness => radial_layer;
    amortized_steps_pass_harness => amortized;
    householder_passes_harness => householder_layer;
    orthogonalization_converges => orthogonalization;
    additive_coupling_passes_harness => additive_coupling;
    affine_coupling_passes_harness => affine_coupling;
    conditional_affine_coupling_passes_harness => conditional_affine_coupling;
    permutations_pass_harness => permutations;
    actnorm_passes_harness => actnorm;
    compositions_pass_harness => compositions;
}

on_gpu_kernels! {
    spline_coupling_passes_harness => spline_coupling;
    spline_edges_are_finite => spline_edges;
    maf_spline_passes_harness => maf_spline;
    planar_passes_harness => planar_layer;
    amortized_steps_pass_harness => amortized;
}

/// Radial's gradient is finite even exactly at its reference point.
#[test]
fn radial_gradient_finite_at_reference_point() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let layer = RadialConfig::new(3).init::<NdAd>(&device).unwrap();
    let x = layer.z0.val().detach();
    let report = testing::check_gradients(&layer, x.clone(), None);
    // The map's output at z₀ is z₀ itself; gradients must exist and be finite.
    assert!(report.is_ok(), "{report:?}");
    let _ = layer.num_params();
}
