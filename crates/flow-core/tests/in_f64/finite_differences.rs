//! An independent second reference for every layer: central differences in f64 (in the
//! `in_f64` test binary: its `main.rs` says why f64 needs a binary of its own).

use crate::common::*;
use flow_core::{
    ActNormConfig, BatchNormConfig, CouplingConfig, Elementwise, Inverse, LuLinearConfig,
    MaskedAutoregressiveConfig, Order, Permutation, PlanarConfig, RadialConfig,
    testing::{self, randomize, standard_inputs},
};

/// An independent second reference: central differences in f64 for every layer.
#[test]
fn ladj_matches_central_differences_in_f64() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let x = standard_inputs::<Nd64>(6, 4, 11, &device).mul_scalar(1.3);
    let (h, tol) = (1e-5, 1e-7);
    let planar = randomize(
        PlanarConfig::new(4)
            .with_init_std(0.7)
            .init::<Nd64>(&device)
            .unwrap(),
        0.3,
    );
    testing::check_ladj_finite_diff(&planar, x.clone(), None, h, tol).unwrap();
    let radial = randomize(
        RadialConfig::new(4)
            .with_init_std(0.8)
            .init::<Nd64>(&device)
            .unwrap(),
        0.3,
    );
    testing::check_ladj_finite_diff(&radial, x.clone(), None, h, tol).unwrap();
    for kind in [
        Elementwise::Additive,
        Elementwise::affine(),
        Elementwise::spline(5, 1.5),
    ] {
        let coupling = randomize(
            CouplingConfig::new(4, kind)
                .with_hidden(8)
                .with_context_dim(2)
                .init::<Nd64>(&device)
                .unwrap(),
            0.3,
        );
        let ctx = standard_inputs::<Nd64>(6, 2, 12, &device);
        let (h, tol) = step_and_tol(&kind, h, tol);
        testing::check_ladj_finite_diff(&coupling, x.clone(), Some(&ctx), h, tol).unwrap();
        let inverse = Inverse::new(coupling);
        testing::check_ladj_finite_diff(&inverse, x.clone(), Some(&ctx), h, tol).unwrap();
    }
    let actnorm = randomize(ActNormConfig::new(4).init::<Nd64>(&device).unwrap(), 0.5);
    testing::check_ladj_finite_diff(&actnorm, x.clone(), None, h, tol).unwrap();
    let perm = Permutation::<Nd64>::random(4, 3, &device).unwrap();
    testing::check_ladj_finite_diff(&perm, x.clone(), None, h, tol).unwrap();
    // MAF (D-pass forward) and IAF (its inverse), affine and spline, with a context.
    for kind in [Elementwise::affine(), Elementwise::spline(4, 2.0)] {
        let maf = randomize(
            MaskedAutoregressiveConfig::new(4, kind)
                .with_hidden(12)
                .with_context_dim(2)
                .with_order(Order::Random(5))
                .init::<Nd64>(&device)
                .unwrap(),
            0.5,
        );
        let ctx = standard_inputs::<Nd64>(6, 2, 14, &device);
        let (h, tol) = step_and_tol(&kind, h, tol);
        testing::check_ladj_finite_diff(&maf, x.clone(), Some(&ctx), h, tol).unwrap();
        let iaf = Inverse::new(maf);
        testing::check_ladj_finite_diff(&iaf, x.clone(), Some(&ctx), h, tol).unwrap();
    }
    let lu = randomize(
        LuLinearConfig::new(4)
            .with_permutation_seed(Some(2))
            .init::<Nd64>(&device)
            .unwrap(),
        0.5,
    );
    testing::check_ladj_finite_diff(&lu, x.clone(), None, h, tol).unwrap();
    testing::check_ladj_finite_diff(&Inverse::new(lu), x.clone(), None, h, tol).unwrap();
    // Batch norm in evaluation (no autodiff: running averages), both directions.
    // (randomize perturbs the running averages too: 0.2 keeps the variance positive)
    let bn = randomize(BatchNormConfig::new(4).init::<Nd64>(&device).unwrap(), 0.2);
    testing::check_ladj_finite_diff(&bn, x.clone(), None, h, tol).unwrap();
    testing::check_round_trip(&bn, x.clone(), None, 1e-12).unwrap();
    testing::check_ladj_finite_diff(&Inverse::new(bn), x, None, h, tol).unwrap();
}

/// Step and tolerance for a layer with elementwise transform `kind`.
///
/// Steep random splines (derivatives down to e⁻⁶) bound how well central differences do in
/// f64: the truncation error h²·y‴/6 needs a small step, and the rounding in y (~1e-12 in
/// the D-pass direction of an autoregressive layer, which inverts each spline from
/// already-rounded outputs) is divided by h. Sweeping 40 seeds at h = 1e-6, the worst scaled
/// error was 2.5e-6 (1e-5 at h = 1e-7, 6e-4 at h = 1e-4); a wrong term in a ladj is off by
/// O(1), so 1e-5 still rejects every real mistake.
fn step_and_tol(kind: &Elementwise, h: f64, tol: f64) -> (f64, f64) {
    match kind {
        Elementwise::Spline(_) => (1e-6, 1e-5),
        _ => (h, tol),
    }
}

/// The finite-difference check can fail: a flipped-sign ladj is rejected.
#[test]
fn central_differences_reject_a_wrong_ladj() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let x = standard_inputs::<Nd64>(6, 4, 13, &device);
    let inner = randomize(
        CouplingConfig::new(4, Elementwise::affine())
            .with_hidden(8)
            .init::<Nd64>(&device)
            .unwrap(),
        0.3,
    );
    testing::check_ladj_finite_diff(&inner, x.clone(), None, 1e-5, 1e-7).unwrap();
    let err =
        testing::check_ladj_finite_diff(&FlippedSign { inner }, x, None, 1e-5, 1e-7).unwrap_err();
    assert!(err.check.contains("central differences"), "{err}");
}
