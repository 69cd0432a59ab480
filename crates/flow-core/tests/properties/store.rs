//! Safetensors files: a model round-trips bit for bit, names its tensors as documented, and
//! a file that does not fit is an error naming the tensor.

use crate::common;

use burn::tensor::backend::Backend;
use common::*;
use flow_core::{
    Base, BatchNormConfig, CouplingConfig, Elementwise, Flow, FlowError, GaussianMixtureConfig,
    Layer, LuLinearConfig, MaskedAutoregressiveConfig, Permutation, store,
    testing::{randomize, standard_inputs},
};

type Model = Flow<Nd, Base<Nd>, Vec<Layer<Nd>>>;
type Nd = NdArray<f32>;

/// A model with every kind of tensor a density fit has: spline coupling, MAF, batch norm
/// (running statistics), LU, a reversal, a mixture base; `seed` draws the parameters (the
/// structure, permutations included, is the same for every seed).
fn model(hidden: usize, seed: u64) -> Model {
    let device = Default::default();
    Nd::seed(&device, seed);
    let layers: Vec<Layer<Nd>> = vec![
        CouplingConfig::new(3, Elementwise::spline(4, 3.0))
            .with_hidden(hidden)
            .init(&device)
            .unwrap()
            .into(),
        Permutation::reverse(3, &device).unwrap().into(),
        MaskedAutoregressiveConfig::new(3, Elementwise::affine())
            .with_hidden(hidden)
            .init(&device)
            .unwrap()
            .into(),
        BatchNormConfig::new(3).init(&device).unwrap().into(),
        LuLinearConfig::new(3)
            .with_permutation_seed(Some(7))
            .init(&device)
            .unwrap()
            .into(),
    ];
    let base = GaussianMixtureConfig::new(3, 2).init(&device).unwrap();
    randomize(Flow::new(base.into(), layers).unwrap(), 0.3)
}

#[test]
fn a_model_round_trips_bit_for_bit() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let trained = model(8, 1);
    let bytes = store::to_safetensors(&trained, &[("what", "test")]).unwrap();
    assert_eq!(store::metadata(&bytes).unwrap()["what"], "test");
    let loaded = store::from_safetensors(model(8, 2), bytes).unwrap();
    let x = standard_inputs::<Nd>(64, 3, 4, &device);
    let a = trained.log_prob(x.clone(), None).unwrap().into_data();
    let b = loaded.log_prob(x, None).unwrap().into_data();
    let bits = |d: burn::tensor::TensorData| -> Vec<u32> {
        d.into_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(a), bits(b));
    // A different draw really differs (the test could fail).
    let other = model(8, 3).log_prob(standard_inputs::<Nd>(64, 3, 4, &device), None);
    assert_ne!(
        bits(other.unwrap().into_data()),
        bits(
            trained
                .log_prob(standard_inputs::<Nd>(64, 3, 4, &device), None)
                .unwrap()
                .into_data()
        )
    );
}

#[test]
fn tensor_names_follow_the_module_paths() {
    let _rng = seeded_ndarray();
    let names: Vec<String> = store::tensor_names(&model(8, 1))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for expected in [
        "base.Mixture.means",
        "base.Mixture.logits",
        "transform.0.Coupling.conditioner.out.weight",
        "transform.2.Autoregressive.made.layers.0.weight",
        "transform.4.Lu.log_diag",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

#[test]
fn files_that_do_not_fit_are_named() {
    let _rng = seeded_ndarray();
    let small = store::to_safetensors(&model(8, 1), &[]).unwrap();
    // Another width: a shape mismatch, named.
    let e = store::from_safetensors(model(16, 1), small.clone()).unwrap_err();
    assert!(
        matches!(&e, FlowError::Weights(m) if m.contains("conditioner") && m.contains("16")),
        "{e}"
    );
    // Fewer layers in the model than in the file: unexpected tensors.
    let device = Default::default();
    let short = || -> Model {
        let base = GaussianMixtureConfig::new(3, 2).init(&device).unwrap();
        let layers = vec![Permutation::reverse(3, &device).unwrap().into()];
        Flow::new(base.into(), layers).unwrap()
    };
    let e = store::from_safetensors(short(), small.clone()).unwrap_err();
    assert!(
        matches!(&e, FlowError::Weights(m) if m.contains("does not")),
        "{e}"
    );
    // More tensors in the model than in the file: missing.
    let short_bytes = store::to_safetensors(&short(), &[]).unwrap();
    let e = store::from_safetensors(model(8, 1), short_bytes).unwrap_err();
    assert!(
        matches!(&e, FlowError::Weights(m) if m.contains("missing")),
        "{e}"
    );
    // Not a safetensors file at all, or a truncated one.
    for bytes in [b"not a file".to_vec(), small[..small.len() / 2].to_vec()] {
        let e = store::from_safetensors(model(8, 1), bytes.clone()).unwrap_err();
        assert!(matches!(&e, FlowError::Weights(_)), "{e}");
        assert!(store::metadata(&bytes).is_err() || bytes.len() > 100);
    }
}
