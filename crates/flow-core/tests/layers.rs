//! Every layer through the verification harness, on every backend CI runs.

mod common;

use burn::module::Module;
use common::*;
use flow_core::{
    ActNormConfig, CouplingConfig, CouplingKind, Inverse, Invertible, Permutation, PlanarConfig,
    RadialConfig, Transform,
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
    kind: CouplingKind,
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
    coupling::<B>(CouplingKind::Additive, 4, 0, device);
}

fn affine_coupling<B: AutodiffBackend>(device: &B::Device) {
    coupling::<B>(CouplingKind::Affine, 2, 0, device);
    coupling::<B>(CouplingKind::Affine, 5, 0, device);
}

fn conditional_affine_coupling<B: AutodiffBackend>(device: &B::Device) {
    coupling::<B>(CouplingKind::Affine, 3, 2, device);
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
            CouplingConfig::new(3, CouplingKind::Affine)
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

on_backends! {
    planar_passes_harness => planar_layer;
    radial_passes_harness => radial_layer;
    additive_coupling_passes_harness => additive_coupling;
    affine_coupling_passes_harness => affine_coupling;
    conditional_affine_coupling_passes_harness => conditional_affine_coupling;
    permutations_pass_harness => permutations;
    actnorm_passes_harness => actnorm;
    compositions_pass_harness => compositions;
}

/// Radial's gradient is finite even exactly at its reference point.
#[test]
fn radial_gradient_finite_at_reference_point() {
    let device = Default::default();
    let layer = RadialConfig::new(3).init::<NdAd>(&device).unwrap();
    let x = layer.z0.val().detach();
    let report = testing::check_gradients(&layer, x.clone(), None);
    // The map's output at z₀ is z₀ itself; gradients must exist and be finite.
    assert!(report.is_ok(), "{report:?}");
    let _ = layer.num_params();
}
