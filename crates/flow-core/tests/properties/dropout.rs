//! Dropout in the conditioners: active only where gradients are recorded, the identity in
//! evaluation, and it keeps a MADE autoregressive.

use crate::common;

use burn::module::AutodiffModule;
use common::*;
use flow_core::{
    CouplingConfig, Elementwise, Flow, FlowError, MadeConfig, MaskedAutoregressiveConfig,
    StandardNormal,
    testing::{randomize, standard_inputs},
};

fn bits(v: Vec<f64>) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn dropout_acts_in_training_only() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let build = |p: f64, coupling: bool| {
        NdAd::seed(&device, 5);
        let layer: flow_core::Layer<NdAd> = if coupling {
            CouplingConfig::new(4, Elementwise::affine())
                .with_hidden(16)
                .with_dropout(p)
                .init(&device)
                .unwrap()
                .into()
        } else {
            MaskedAutoregressiveConfig::new(4, Elementwise::affine())
                .with_hidden(16)
                .with_dropout(p)
                .init(&device)
                .unwrap()
                .into()
        };
        NdAd::seed(&device, 6);
        Flow::new(StandardNormal::new(4).unwrap(), vec![randomize(layer, 0.3)]).unwrap()
    };
    for coupling in [false, true] {
        let (with, without) = (build(0.5, coupling), build(0.0, coupling));
        let x = standard_inputs::<NdAd>(32, 4, 1, &device);
        let a = host(with.log_prob(x.clone(), None).unwrap());
        let b = host(with.log_prob(x.clone(), None).unwrap());
        assert_ne!(bits(a), bits(b), "training passes draw new masks");
        let x = standard_inputs::<NdArray>(32, 4, 1, &device);
        let eval = with.valid().log_prob(x.clone(), None).unwrap();
        let plain = without.valid().log_prob(x, None).unwrap();
        assert_eq!(
            bits(host(eval)),
            bits(host(plain)),
            "evaluation has no dropout"
        );
    }
}

/// With the same dropout masks (same seed), changing the last feature leaves every output
/// unchanged and changing the first leaves the first feature's parameters unchanged.
#[test]
fn dropout_keeps_made_autoregressive() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let made = randomize(
        MadeConfig::new(3, 2)
            .with_hidden(12)
            .with_dropout(0.3)
            .init::<NdAd>(&device)
            .unwrap(),
        0.5,
    );
    let out = |x: Vec<f32>| {
        NdAd::seed(&device, 9);
        let x = Tensor::<NdAd, 2>::from_data(burn::tensor::TensorData::new(x, [1, 3]), &device);
        host(made.forward(x, None))
    };
    let base = out(vec![0.3, -0.7, 1.1]);
    assert_eq!(
        bits(out(vec![0.3, -0.7, 1.1])),
        bits(base.clone()),
        "same seed, same masks"
    );
    assert_eq!(bits(out(vec![0.3, -0.7, -2.0])), bits(base.clone()));
    let moved = out(vec![1.9, -0.7, 1.1]);
    // Parameter-major [P·D]: feature 0's parameters are columns 0 and 3.
    for col in [0, 3] {
        assert_eq!(moved[col].to_bits(), base[col].to_bits(), "column {col}");
    }
    assert_ne!(bits(moved), bits(base), "the other features see feature 0");
}

#[test]
fn impossible_dropout_is_refused() {
    let device = Default::default();
    for p in [1.0, -0.1, f64::NAN] {
        let e = MaskedAutoregressiveConfig::new(2, Elementwise::affine())
            .with_dropout(p)
            .init::<NdAd>(&device)
            .unwrap_err();
        assert!(matches!(e, FlowError::InvalidConfig(_)), "{e}");
        assert!(
            CouplingConfig::new(2, Elementwise::affine())
                .with_dropout(p)
                .init::<NdAd>(&device)
                .is_err()
        );
    }
}
