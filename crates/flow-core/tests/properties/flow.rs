//! `Flow` and the distributions: densities that integrate to one, consistency between the
//! sampling and the density path, and typed errors for bad input.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use flow_core::{
    ActNormConfig, CouplingConfig, DiagNormalConfig, Distribution, Elementwise, Flow, FlowError,
    Permutation, PlanarConfig, RadialConfig, StandardNormal,
    testing::{randomize, standard_inputs},
};

fn realnvp<B: Backend>(
    dim: usize,
    layers: usize,
    std: f64,
    device: &B::Device,
) -> Vec<(flow_core::Coupling<B>, Permutation<B>)> {
    (0..layers)
        .map(|i| {
            let c = CouplingConfig::new(dim, Elementwise::affine())
                .with_hidden(16)
                .init::<B>(device)
                .unwrap();
            (
                randomize(c, std),
                Permutation::random(dim, i as u64, device).unwrap(),
            )
        })
        .collect()
}

/// A randomized RealNVP's density, summed over a fine grid (midpoint rule), equals the
/// fraction of its samples that land in the grid's box (Monte Carlo, 40k samples).
fn density_integrates_to_one<B: AutodiffBackend>(device: &B::Device) {
    let flow = Flow::new(
        StandardNormal::new(2).unwrap(),
        realnvp::<B>(2, 4, 0.15, device),
    )
    .unwrap();
    let (lo, hi) = (-6.0f64, 6.0f64);
    let mass = grid_mass::<B>(lo, hi, 300, device, |x| {
        host(flow.log_prob(x, None).unwrap())
    });
    let samples = host(flow.sample(40_000, None, device).unwrap().reshape([80_000]));
    let inside = samples
        .chunks_exact(2)
        .filter(|p| p.iter().all(|v| (lo..hi).contains(v)))
        .count() as f64
        / 40_000.0;
    assert!(
        inside > 0.9,
        "the box must hold most of the mass, holds {inside}"
    );
    // 4 standard errors of the Monte Carlo fraction, plus the quadrature error.
    let tol = 4.0 * (inside * (1.0 - inside) / 40_000.0).sqrt() + 2e-3;
    assert!(
        (mass - inside).abs() < tol,
        "grid mass {mass} vs sample fraction {inside}"
    );
}

/// The log-density of a sample from `sample_with_log_prob` equals `log_prob` at it.
fn sampling_and_density_agree<B: AutodiffBackend>(device: &B::Device) {
    let base = randomize(DiagNormalConfig::new(3).init::<B>(device).unwrap(), 0.3);
    let flow = Flow::new(base, realnvp::<B>(3, 3, 0.3, device)).unwrap();
    let (x, log_q) = flow.sample_with_log_prob(32, None, device).unwrap();
    let log_p = flow.log_prob(x, None).unwrap();
    for (a, b) in host(log_q).iter().zip(host(log_p)) {
        assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} vs {b}");
    }
}

/// A NaN row propagates to its own row only (the documented contract); the checked entry
/// point turns it into a typed error.
fn nan_contract<B: AutodiffBackend>(device: &B::Device) {
    let flow = Flow::new(
        StandardNormal::new(2).unwrap(),
        realnvp::<B>(2, 2, 0.3, device),
    )
    .unwrap();
    let x = Tensor::<B, 2>::from_data(
        TensorData::new(vec![0.5f32, -1.0, f32::NAN, 0.3, 1.0, 2.0], [3, 2]),
        device,
    );
    let lp = host(flow.log_prob(x.clone(), None).unwrap());
    assert!(
        lp[0].is_finite() && lp[1].is_nan() && lp[2].is_finite(),
        "{lp:?}"
    );
    assert_eq!(
        flow.log_prob_checked(x, None).unwrap_err(),
        FlowError::NonFinite { row: 1 }
    );
}

fn gradients_reach_base_and_layers<B: AutodiffBackend>(device: &B::Device) {
    let base = DiagNormalConfig::new(2).init::<B>(device).unwrap();
    let layers = PlanarConfig::new(2)
        .with_init_std(0.5)
        .init_stack::<B>(3, device)
        .unwrap();
    let flow = Flow::new(base, layers).unwrap();
    let (x, log_q) = flow.sample_with_log_prob(16, None, device).unwrap();
    let loss = log_q.mean() + x.square().sum().mul_scalar(0.01);
    let grads = loss.backward();
    for p in [&flow.base.loc, &flow.base.log_scale] {
        let g = host(p.val().grad(&grads).expect("base gradient"));
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
    }
    for layer in &flow.transform {
        for p in [&layer.u, &layer.w, &layer.b] {
            let g = host(p.val().grad(&grads).expect("layer gradient"));
            assert!(
                g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0),
                "{g:?}"
            );
        }
    }
}

on_backends! {
    density_integrates_to_one_on_grid => density_integrates_to_one;
    sample_log_prob_matches_log_prob => sampling_and_density_agree;
    nan_propagates_to_its_row_only => nan_contract;
    reparameterized_gradients_reach_everything => gradients_reach_base_and_layers;
}

#[test]
fn diag_normal_matches_closed_form() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let base = randomize(DiagNormalConfig::new(2).init::<NdAd>(&device).unwrap(), 0.5);
    let (mu, ls) = (host(base.loc.val()), host(base.log_scale.val()));
    let x = standard_inputs::<NdAd>(5, 2, 3, &device);
    let lp = host(base.log_prob(x.clone(), None));
    let xs = host(x);
    for i in 0..5 {
        let mut expected = 0.0;
        for k in 0..2 {
            let s = ls[k].exp();
            let z = (xs[i * 2 + k] - mu[k]) / s;
            expected += -0.5 * z * z - ls[k] - 0.5 * (2.0 * std::f64::consts::PI).ln();
        }
        assert!((lp[i] - expected).abs() < 1e-5, "{} vs {expected}", lp[i]);
    }
}

#[test]
fn actnorm_data_init_through_flow() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let layers = (
        ActNormConfig::new(2).init::<NdAd>(&device).unwrap(),
        // At initialisation a coupling layer is the identity, so the actnorm sees the data.
        CouplingConfig::new(2, Elementwise::affine())
            .init::<NdAd>(&device)
            .unwrap(),
    );
    let flow = Flow::new(StandardNormal::new(2).unwrap(), layers).unwrap();
    let data = standard_inputs::<NdAd>(256, 2, 9, &device)
        .mul_scalar(3.0)
        .add_scalar(-2.0);
    let flow = flow.data_init(data, None).unwrap();
    // loc ≈ E of what reaches the actnorm, which is near −2 for this data.
    let loc = host(flow.transform.0.shift.val());
    assert!(loc.iter().all(|m| m.is_finite()));
    let scale: Vec<f64> = host(flow.transform.0.log_scale.val())
        .iter()
        .map(|s| s.exp())
        .collect();
    assert!(scale.iter().all(|s| *s > 1.5 && *s < 5.0), "{scale:?}");
}

#[test]
fn bad_input_gets_typed_errors() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    type B = NdAd;
    let flow = Flow::new(
        StandardNormal::new(2).unwrap(),
        realnvp::<B>(2, 2, 0.3, &device),
    )
    .unwrap();
    let wide = Tensor::<B, 2>::zeros([4, 3], &device);
    assert_eq!(
        flow.log_prob(wide, None).unwrap_err(),
        FlowError::DimMismatch {
            expected: 2,
            got: 3,
            batch: 4
        }
    );
    let empty = Tensor::<B, 2>::zeros([0, 2], &device);
    assert!(matches!(
        flow.log_prob(empty, None).unwrap_err(),
        FlowError::EmptyBatch(_)
    ));
    assert!(matches!(
        flow.sample(0, None, &device).unwrap_err(),
        FlowError::EmptyBatch(_)
    ));
    let ctx = Tensor::<B, 2>::zeros([4, 1], &device);
    assert_eq!(
        flow.log_prob(Tensor::zeros([4, 2], &device), Some(&ctx))
            .unwrap_err(),
        FlowError::ContextMismatch {
            expected: 0,
            got: 1
        }
    );
    // K = 0 is rejected where it is meaningless.
    assert!(matches!(
        PlanarConfig::new(2)
            .init_stack::<B>(0, &device)
            .unwrap_err(),
        FlowError::InvalidConfig(_)
    ));
    assert!(RadialConfig::new(2).init_stack::<B>(0, &device).is_err());
    assert!(
        Flow::new(
            StandardNormal::new(2).unwrap(),
            Vec::<flow_core::Planar<B>>::new()
        )
        .is_err()
    );
    // Dimension mismatch between the base and a layer, naming the layer.
    let mut layers = PlanarConfig::new(2).init_stack::<B>(3, &device).unwrap();
    layers[2] = PlanarConfig::new(3).init(&device).unwrap();
    assert_eq!(
        Flow::new(StandardNormal::new(2).unwrap(), layers).unwrap_err(),
        FlowError::LayerDimMismatch {
            path: vec![2],
            expected: 2,
            got: 3
        }
    );
    // Nested compositions name the layer by its path.
    let nested = vec![
        (
            CouplingConfig::new(2, Elementwise::affine())
                .init::<B>(&device)
                .unwrap(),
            Permutation::reverse(2, &device).unwrap(),
        ),
        (
            CouplingConfig::new(2, Elementwise::affine())
                .init::<B>(&device)
                .unwrap(),
            Permutation::reverse(3, &device).unwrap(),
        ),
    ];
    let err = Flow::new(StandardNormal::new(2).unwrap(), nested).unwrap_err();
    assert_eq!(
        err,
        FlowError::LayerDimMismatch {
            path: vec![1, 1],
            expected: 2,
            got: 3
        }
    );
    assert!(err.to_string().contains("layer 1.1"), "{err}");
    // Layers that want contexts of different widths cannot be composed.
    let ctx = |w| {
        CouplingConfig::new(2, Elementwise::affine())
            .with_context_dim(w)
            .init::<B>(&device)
            .unwrap()
    };
    assert!(matches!(
        Flow::new(StandardNormal::new(2).unwrap(), vec![ctx(2), ctx(3)]).unwrap_err(),
        FlowError::LayerContextMismatch { .. }
    ));
    // Data-dependent initialisation needs a standard deviation: two rows at least.
    let flow = Flow::new(
        StandardNormal::new(2).unwrap(),
        flow_core::ActNormConfig::new(2).init::<B>(&device).unwrap(),
    )
    .unwrap();
    assert_eq!(
        flow.data_init(Tensor::zeros([1, 2], &device), None)
            .unwrap_err(),
        FlowError::TooFewRows {
            what: "data_init",
            needed: 2,
            got: 1
        }
    );
    // An initial scale of zero would freeze a layer.
    assert!(
        PlanarConfig::new(2)
            .with_init_std(0.0)
            .init::<B>(&device)
            .is_err()
    );
    // Impossible configurations.
    assert!(StandardNormal::new(0).is_err());
    assert!(
        CouplingConfig::new(1, Elementwise::affine())
            .init::<B>(&device)
            .is_err()
    );
    assert!(Permutation::<B>::from_order(&[0, 0, 1], &device).is_err());
    // A conditional flow without its context, or with a short one.
    let cond = CouplingConfig::new(2, Elementwise::affine())
        .with_context_dim(3)
        .init::<B>(&device)
        .unwrap();
    let flow = Flow::new(StandardNormal::new(2).unwrap(), cond).unwrap();
    let x = Tensor::<B, 2>::zeros([4, 2], &device);
    assert_eq!(
        flow.log_prob(x.clone(), None).unwrap_err(),
        FlowError::ContextMismatch {
            expected: 3,
            got: 0
        }
    );
    let short = Tensor::<B, 2>::zeros([2, 3], &device);
    assert_eq!(
        flow.log_prob(x, Some(&short)).unwrap_err(),
        FlowError::ContextBatchMismatch {
            input: 4,
            context: 2
        }
    );
}

/// A flow ending in an LU layer initialised at a covariance's Cholesky factor is the
/// Gaussian `N(shift, A Aᵀ)`: its weight is `A`, and its density the closed form.
#[test]
fn lower_triangular_lu_starts_at_the_gaussian() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    type B = NdAd;
    let a = [1.5, 0.0, 0.0, -0.4, 0.7, 0.0, 0.3, 0.2, 2.0];
    let shift = [1.0, -2.0, 0.5];
    let lu = flow_core::LuLinearConfig::new(3)
        .init_lower_triangular::<B>(&a, &shift, &device)
        .unwrap();
    for (w, e) in host(lu.weight()).iter().zip(a) {
        assert!((w - e).abs() < 1e-6, "{w} vs {e}");
    }
    let flow = Flow::new(StandardNormal::new(3).unwrap(), vec![lu]).unwrap();
    let x = standard_inputs::<B>(4, 3, 21, &device);
    let lp = host(flow.log_prob(x.clone(), None).unwrap());
    let xs = host(x);
    let log_det_a: f64 = [a[0], a[4], a[8]].iter().map(|v| v.ln()).sum();
    for (row, got) in xs.chunks_exact(3).zip(lp) {
        // Forward substitution: z = A⁻¹ (x − shift).
        let r: Vec<f64> = row.iter().zip(shift).map(|(x, s)| x - s).collect();
        let z0 = r[0] / a[0];
        let z1 = (r[1] - a[3] * z0) / a[4];
        let z2 = (r[2] - a[6] * z0 - a[7] * z1) / a[8];
        let expected = -0.5 * (z0 * z0 + z1 * z1 + z2 * z2)
            - 1.5 * (2.0 * std::f64::consts::PI).ln()
            - log_det_a;
        assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
    }
    let config = flow_core::LuLinearConfig::new(2);
    for (a, shift) in [
        (vec![1.0, 0.5, 0.0, 1.0], vec![0.0, 0.0]), // entry above the diagonal
        (vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 0.0]), // zero diagonal
        (vec![1.0, 0.0, 0.0], vec![0.0, 0.0]),      // wrong size
        (vec![1.0, 0.0, 0.0, 1.0], vec![f64::NAN, 0.0]),
    ] {
        assert!(matches!(
            config.init_lower_triangular::<B>(&a, &shift, &device),
            Err(FlowError::InvalidConfig(_))
        ));
    }
}
