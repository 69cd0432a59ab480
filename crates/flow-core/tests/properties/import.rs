//! Models from zuko and nflows: `log_prob` equals the library's on the committed fixtures
//! (`tests/fixtures/import`, made by `scripts/import_fixtures.py` with torch 2.15, zuko 1.6,
//! nflows 0.14), sampling agrees with the density, the new element-wise maps pass the
//! harness, and state dicts that do not fit are errors naming the tensor.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use flow_core::{
    Elementwise, FlowError, MaskedAutoregressiveConfig, ResidualAutoregressive, ResidualMadeConfig,
    Scale, import,
    testing::{check_invertible, randomize, standard_inputs},
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import");

fn fixture(name: &str) -> (Vec<u8>, serde_json::Value) {
    let bytes = std::fs::read(format!("{FIXTURES}/{name}.safetensors")).unwrap();
    let json = std::fs::read_to_string(format!("{FIXTURES}/{name}.json")).unwrap();
    (bytes, serde_json::from_str(&json).unwrap())
}

type Nd = NdArray<f32>;

/// Our `log_prob` on the fixture's inputs against the library's (float64 evaluation of
/// the same float32 weights), to 1e-4, relative beyond 1; returns the largest absolute
/// difference on rows 0–11 (data-like inputs) and the largest relative one on all rows.
fn agrees(flow: &import::Imported<Nd>, json: &serde_json::Value) -> (f64, f64) {
    let device = Default::default();
    let rows = json["x"].as_array().unwrap();
    let x: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let d = x.len() / rows.len();
    let x = Tensor::<Nd, 2>::from_data(TensorData::new(x, [rows.len(), d]), &device);
    let got = host(flow.log_prob(x, None).unwrap());
    let (mut abs, mut rel): (f64, f64) = (0.0, 0.0);
    for (i, (g, w)) in got
        .iter()
        .zip(json["log_prob_f64"].as_array().unwrap())
        .enumerate()
    {
        let w = w.as_f64().unwrap();
        let diff = (g - w).abs();
        assert!(
            diff <= 1e-4 * w.abs().max(1.0),
            "row {i}: ours {g}, library {w}"
        );
        if i < 12 {
            abs = abs.max(diff);
        }
        rel = rel.max(diff / w.abs().max(1.0));
    }
    (abs, rel)
}

#[test]
fn zuko_and_nflows_models_match_their_libraries() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    for (name, nflows) in [
        ("zuko-maf", false),
        ("zuko-nsf", false),
        ("nflows-maf", true),
        ("nflows-maf-ff", true),
    ] {
        let (bytes, json) = fixture(name);
        let flow = if nflows {
            import::nflows::<Nd>(&bytes, &device)
        } else {
            import::zuko::<Nd>(&bytes, &device)
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (abs, rel) = agrees(&flow, &json);
        println!("{name}: max |diff| {abs:.2e} (rows 0-11), max relative {rel:.2e} (all rows)");
        // Sampling runs the other direction and agrees with the density.
        let (x, log_q) = flow.sample_with_log_prob(64, None, &device).unwrap();
        let log_p = flow.log_prob(x, None).unwrap();
        for (a, b) in host(log_q).iter().zip(host(log_p)) {
            assert!(
                (a - b).abs() < 1e-3 * a.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
    }
}

/// The imported element-wise maps, in a randomized MAF layer, pass the harness.
fn imported_maps_check<B: AutodiffBackend>(device: &B::Device) {
    for kind in [
        Elementwise::ScaleShift {
            scale: Scale::RationalExp { bound: 6.9 },
        },
        Elementwise::ScaleShift {
            scale: Scale::SoftplusPlus { epsilon: 1e-3 },
        },
        Elementwise::ZukoSpline {
            bins: 5,
            bound: 3.0,
        },
    ] {
        let layer = randomize(
            MaskedAutoregressiveConfig::new(3, kind)
                .with_hidden(12)
                .init::<B>(device)
                .unwrap(),
            0.4,
        );
        let x = standard_inputs::<B>(16, 3, 7, device).mul_scalar(1.5);
        let tol = if matches!(kind, Elementwise::ZukoSpline { .. }) {
            SPLINE_TOL
        } else {
            TOL
        };
        check_invertible(&layer, x, None, tol).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
    // nflows' residual MADE under its affine map.
    let made = ResidualMadeConfig::new(3, 2, 12, 2)
        .init::<B>(device)
        .unwrap();
    let kind = Elementwise::ScaleShift {
        scale: Scale::SoftplusPlus { epsilon: 1e-3 },
    };
    let layer = randomize(ResidualAutoregressive::new(made, kind).unwrap(), 0.3);
    let x = standard_inputs::<B>(16, 3, 8, device);
    check_invertible(&layer, x, None, TOL).unwrap_or_else(|e| panic!("residual: {e}"));
}

on_backends! {
    imported_maps_pass_the_harness => imported_maps_check;
}

/// Rewrites a safetensors file: drops `drop`, renames `rename`, adds a tensor `extra`.
fn edit(bytes: &[u8], drop: Option<&str>, extra: Option<&str>) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| Some(n.as_str()) != drop)
        .collect();
    let zeros = [0u8; 4];
    if let Some(name) = extra {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &zeros).unwrap();
        views.push((name.to_string(), view));
    }
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn state_dicts_that_do_not_fit_are_named() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let message = |r: Result<import::Imported<Nd>, FlowError>| match r {
        Err(FlowError::Weights(m)) => m,
        Err(e) => panic!("not a weights error: {e}"),
        Ok(_) => panic!("accepted"),
    };
    let (zuko, _) = fixture("zuko-maf");
    let missing = "transform.transforms.1.hyper.2.bias";
    let m = message(import::zuko::<Nd>(
        &edit(&zuko, Some(missing), None),
        &device,
    ));
    assert!(m.contains(missing) && m.contains("missing"), "{m}");
    let m = message(import::zuko::<Nd>(
        &edit(&zuko, None, Some("extra.weight")),
        &device,
    ));
    assert!(m.contains("extra.weight"), "{m}");
    let m = message(import::zuko::<Nd>(
        &edit(&zuko, Some("base.scale"), None),
        &device,
    ));
    assert!(m.contains("base.scale"), "{m}");
    // A residual block's layer missing, and a zuko file given to the nflows reader.
    let (residual, _) = fixture("nflows-maf");
    let gone = "_transform._transforms.1.autoregressive_net.blocks.1.linear_layers.1.mask";
    let m = message(import::nflows::<Nd>(
        &edit(&residual, Some(gone), None),
        &device,
    ));
    assert!(m.contains(gone), "{m}");
    let m = message(import::nflows::<Nd>(&zuko, &device));
    assert!(m.contains("not an nflows"), "{m}");
    let m = message(import::zuko::<Nd>(b"not a file", &device));
    assert!(m.contains("safetensors"), "{m}");
    // A wrong shape: the NSF's final layer given to the MAF's place.
    let (nsf, _) = fixture("zuko-nsf");
    let file = safetensors::SafeTensors::deserialize(&nsf).unwrap();
    let bias = file.tensor("transform.transforms.0.hyper.4.bias").unwrap();
    let views: Vec<_> = safetensors::SafeTensors::deserialize(&zuko)
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            if n == "transform.transforms.0.hyper.4.bias" {
                (n, bias.clone())
            } else {
                (n, v)
            }
        })
        .collect();
    let m = message(import::zuko::<Nd>(
        &safetensors::serialize(views, None).unwrap(),
        &device,
    ));
    assert!(m.contains("transform.transforms.0.hyper.4.bias"), "{m}");
}
