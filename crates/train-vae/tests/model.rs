//! The VAE's bounds against independent references.

use burn::tensor::ElementConversion;
use burn::{
    backend::{Autodiff, NdArray},
    module::{Module, ModuleVisitor, Param},
    record::Recorder,
    tensor::{
        Tensor, TensorData,
        backend::{AutodiffBackend, Backend},
    },
};
use train_vae::{
    VaeError,
    arch::Arch,
    checkpoint,
    model::{ModelConfig, Vae},
    posterior::{FlowKind, iaf::IafUpdate},
};

type B = NdArray<f64>;
type Ad = Autodiff<NdArray>;

fn tiny(flow: FlowKind, n_flows: usize) -> ModelConfig {
    ModelConfig {
        input: 4,
        arch: Arch::Mlp,
        encoder_hidden: vec![8],
        decoder_hidden: vec![8],
        latent: 1,
        flow,
        n_flows,
        iaf_hidden: 8,
        iaf_layers: 1,
        // The gated update starts contracting (σ(1) per step): a posterior more than √2
        // narrower than the true one gives importance weights of infinite variance, and the
        // quadrature comparison would measure the estimator, not the density. Its
        // log-determinant is checked by flow-core's harness; the gradient test below runs it.
        iaf_update: IafUpdate::Affine,
        iaf_forget_bias: 1.0,
        ortho_vecs: 1,
        householder: 2,
    }
}

/// Every posterior kind.
const KINDS: [FlowKind; 8] = [
    FlowKind::None,
    FlowKind::Planar,
    FlowKind::Radial,
    FlowKind::Iaf,
    FlowKind::Householder,
    FlowKind::SylvesterO,
    FlowKind::SylvesterH,
    FlowKind::SylvesterT,
];

/// A model whose IAF steps (zero-initialised outputs: the identity) are perturbed, so that
/// the IAF posterior differs from `q₀`; other flows are returned as built.
fn perturbed<Bk: burn::tensor::backend::Backend>(flow: FlowKind, model: Vae<Bk>) -> Vae<Bk> {
    if flow == FlowKind::Iaf {
        flow_core::testing::randomize(model, 0.1)
    } else {
        model
    }
}

/// `ln p(x) = ln ∫ p(x|z) N(z; 0, 1) dz` by the trapezoid rule on [−12, 12] (f64, host),
/// with `ln p(x|z)` written out from the decoder's logits.
fn exact_log_marginal(model: &Vae<B>, x: &[f64]) -> f64 {
    let (m, lo, hi) = (6001usize, -12.0f64, 12.0f64);
    let h = (hi - lo) / (m - 1) as f64;
    let zs: Vec<f64> = (0..m).map(|i| lo + h * i as f64).collect();
    let logits = model.decode(Tensor::<B, 2>::from_data(
        TensorData::new(zs.clone(), [m, 1]),
        &Default::default(),
    ));
    let l: Vec<f64> = logits.into_data().convert::<f64>().into_vec().unwrap();
    let log_sig = |v: f64| {
        if v >= 0.0 {
            -(-v).exp().ln_1p()
        } else {
            v - v.exp().ln_1p()
        }
    };
    let terms: Vec<f64> = (0..m)
        .map(|i| {
            let ll: f64 = (0..x.len())
                .map(|j| {
                    let v = l[i * x.len() + j];
                    if x[j] > 0.5 { log_sig(v) } else { log_sig(-v) }
                })
                .sum();
            let w = if i == 0 || i == m - 1 { 0.5 } else { 1.0 };
            ll - 0.5 * zs[i] * zs[i] - 0.5 * (2.0 * std::f64::consts::PI).ln() + (w * h).ln()
        })
        .collect();
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

#[test]
fn importance_weighted_nll_converges_to_the_exact_marginal() {
    // The backend RNG is process-wide: keep other tests' draws out of this seeded stream.
    let _rng = flow_core::testing::exclusive_device();
    let device = Default::default();
    let xs = [
        [1.0, 0.0, 1.0, 1.0],
        [0.0, 0.0, 0.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
    ];
    for flow in KINDS {
        B::seed(&device, 3);
        let model = perturbed(flow, tiny(flow, 2).init::<B>(&device).unwrap());
        let flat: Vec<f64> = xs.iter().flatten().copied().collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(flat, [3, 4]), &device);
        let (elbo, nll) = model.importance_weighted(x.clone(), 20_000, 10_000);
        let elbo: Vec<f64> = elbo.into_data().convert::<f64>().into_vec().unwrap();
        let nll: Vec<f64> = nll.into_data().convert::<f64>().into_vec().unwrap();
        for (i, xi) in xs.iter().enumerate() {
            let exact = -exact_log_marginal(&model, xi);
            assert!(
                (nll[i] - exact).abs() < 0.02,
                "{flow} x{i}: IW-NLL {} vs exact {exact}",
                nll[i]
            );
            assert!(
                -elbo[i] >= exact - 0.02,
                "{flow} x{i}: −ELBO {} below the NLL {exact}",
                -elbo[i]
            );
        }
        // One sample: the IW bound is the ELBO sample itself.
        let (e1, n1) = model.importance_weighted(x, 1, 100);
        let e1: Vec<f64> = e1.into_data().convert::<f64>().into_vec().unwrap();
        let n1: Vec<f64> = n1.into_data().convert::<f64>().into_vec().unwrap();
        for i in 0..3 {
            assert!((e1[i] + n1[i]).abs() < 1e-9);
        }
    }
}

#[test]
fn log_likelihood_matches_the_bernoulli_formula() {
    let device = Default::default();
    let x = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0, 0.0, 1.0, 0.0], [2, 2]), &device);
    let l = Tensor::<B, 2>::from_data(
        TensorData::new(vec![2.0, -1.0, -30.0, 40.0], [2, 2]),
        &device,
    );
    let got: Vec<f64> = Vae::<B>::log_likelihood(x, l)
        .into_data()
        .convert::<f64>()
        .into_vec()
        .unwrap();
    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    let want0 = s(2.0).ln() + (1.0 - s(-1.0)).ln();
    let want1 = -30.0 - (1.0 + (-30.0f64).exp()).ln() + -40.0 - (1.0 + (-40.0f64).exp()).ln();
    assert!((got[0] - want0).abs() < 1e-6, "{} vs {want0}", got[0]);
    assert!((got[1] - want1).abs() < 1e-6, "{} vs {want1}", got[1]);
}

/// Collects the parameters whose gradient is missing, zero or non-finite.
struct Check<'a, A: AutodiffBackend> {
    grads: &'a A::Gradients,
    bad: Vec<String>,
    seen: usize,
}
impl<A: AutodiffBackend> ModuleVisitor<A> for Check<'_, A> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
        self.seen += 1;
        match p.val().grad(self.grads) {
            None => self.bad.push(format!("{} has no gradient", p.id)),
            Some(g) => {
                let g: Vec<f64> = g.into_data().convert::<f64>().into_vec().unwrap();
                if g.iter().any(|v| !v.is_finite()) || g.iter().all(|v| *v == 0.0) {
                    self.bad
                        .push(format!("{} has a zero or non-finite gradient", p.id));
                }
            }
        }
    }
}

/// Every parameter of encoder (including the flow columns) and decoder gets a finite,
/// non-zero gradient from the negative ELBO.
#[test]
fn the_elbo_gradient_reaches_every_parameter() {
    // The backend RNG is process-wide: keep other tests' draws out of this seeded stream.
    let _rng = flow_core::testing::exclusive_device();
    let device = Default::default();
    for flow in KINDS {
        Ad::seed(&device, 1);
        let cfg = ModelConfig {
            input: 6,
            arch: Arch::Mlp,
            encoder_hidden: vec![16],
            decoder_hidden: vec![16],
            latent: 3,
            flow,
            n_flows: 3,
            iaf_hidden: 8,
            iaf_layers: 1,
            iaf_update: IafUpdate::Gated,
            iaf_forget_bias: 1.0,
            ortho_vecs: 2,
            householder: 2,
        };
        let model = perturbed(flow, cfg.init::<Ad>(&device).unwrap());
        let x = Tensor::<Ad, 2>::from_data(
            TensorData::new(
                (0..48)
                    .map(|i| ((i * 7) % 3 == 0) as u8 as f32)
                    .collect::<Vec<_>>(),
                [8, 6],
            ),
            &device,
        );
        let t = model.terms(x);
        let grads = (t.recon + t.kl).mean().backward();
        let mut check = Check {
            grads: &grads,
            bad: Vec::new(),
            seen: 0,
        };
        model.visit(&mut check);
        // 4 linear layers, weight and bias each; IAF: per step a masked hidden and output
        // layer (weight, bias) and the two context weights.
        let iaf = if flow == FlowKind::Iaf { 3 * 6 } else { 0 };
        assert_eq!(check.seen, 8 + iaf, "{flow}: parameters seen");
        assert!(check.bad.is_empty(), "{flow}: {:?}", check.bad);
    }
}

#[test]
fn impossible_models_are_rejected() {
    let _rng = flow_core::testing::exclusive_device();
    let device = Default::default();
    let cases = [
        (
            ModelConfig {
                n_flows: 0,
                ..tiny(FlowKind::Planar, 0)
            },
            "n-flows",
        ),
        (
            ModelConfig {
                latent: 0,
                ..tiny(FlowKind::None, 0)
            },
            "latent",
        ),
        (
            ModelConfig {
                encoder_hidden: vec![8, 0],
                ..tiny(FlowKind::None, 0)
            },
            "encoder-hidden",
        ),
    ];
    for (cfg, field) in cases {
        match cfg.init::<B>(&device) {
            Err(VaeError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!(
                "{field}: expected a config error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // `none` with K = 0 is fine.
    assert!(tiny(FlowKind::None, 0).init::<B>(&device).is_ok());
}

#[test]
fn checkpoints_round_trip_atomically_and_reject_other_shapes() {
    let _rng = flow_core::testing::exclusive_device();
    let dir = std::env::temp_dir().join(format!("train-vae-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let device = Default::default();
    let cfg = tiny(FlowKind::Planar, 2);
    let model = cfg.init::<NdArray>(&device).unwrap();
    let path = checkpoint::file(&dir, "model", 3);
    checkpoint::CheckpointRecorder::default()
        .record(model.clone().into_record(), path.with_extension(""))
        .unwrap();
    assert!(path.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(checkpoint::dir(&dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let loaded = checkpoint::load_model::<NdArray>(&path, &cfg, &device).unwrap();
    let x = Tensor::<NdArray, 2>::from_data(TensorData::new(vec![0.3, -1.0], [2, 1]), &device);
    // Checkpoints store f32 (full precision for the f32 backends training uses).
    let a: Vec<f64> = model
        .decode(x.clone())
        .into_data()
        .convert::<f64>()
        .into_vec()
        .unwrap();
    let b: Vec<f64> = loaded
        .decode(x)
        .into_data()
        .convert::<f64>()
        .into_vec()
        .unwrap();
    assert!(
        a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-5),
        "{a:?} vs {b:?}"
    );

    let other = ModelConfig {
        decoder_hidden: vec![9],
        ..cfg.clone()
    };
    match checkpoint::load_model::<NdArray>(&path, &other, &device) {
        Err(VaeError::ShapeMismatch {
            param,
            found,
            expected,
            ..
        }) => {
            assert_eq!(param, "decoder.0.weight");
            assert_eq!((found, expected), (vec![1, 8], vec![1, 9]));
        }
        other => panic!("expected a shape mismatch, got {:?}", other.map(|_| ())),
    }
    let fewer = ModelConfig {
        n_flows: 1,
        ..cfg.clone()
    };
    assert!(matches!(
        checkpoint::load_model::<NdArray>(&path, &fewer, &device),
        Err(VaeError::ShapeMismatch { .. })
    ));

    // A checkpoint of one posterior kind loaded as another whose encoder differs.
    for flow in [FlowKind::Householder, FlowKind::SylvesterH, FlowKind::Iaf] {
        let other = ModelConfig {
            flow,
            ..cfg.clone()
        };
        let err = checkpoint::load_model::<NdArray>(&path, &other, &device)
            .err()
            .unwrap_or_else(|| panic!("a planar checkpoint loaded as {flow}"));
        assert!(
            matches!(err, VaeError::ShapeMismatch { .. }),
            "{flow}: {err}"
        );
    }

    // With the run's model description beside it, a kind whose shapes coincide (T-SNF on
    // one latent has planar's 3 parameters per step) is refused too.
    let same_shapes = ModelConfig {
        flow: FlowKind::SylvesterT,
        ..cfg.clone()
    };
    assert_eq!(same_shapes.encoder_outputs(), cfg.encoder_outputs());
    assert!(checkpoint::load_model::<NdArray>(&path, &same_shapes, &device).is_ok());
    checkpoint::write_description(&dir, &cfg).unwrap();
    let err = checkpoint::load_model::<NdArray>(&path, &same_shapes, &device)
        .expect_err("a planar checkpoint loaded as sylvester-t");
    assert!(err.to_string().contains("another model"), "{err}");
    assert!(checkpoint::load_model::<NdArray>(&path, &cfg, &device).is_ok());

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load_model::<NdArray>(&path, &cfg, &device).expect_err("truncated file");
    assert!(matches!(err, VaeError::Checkpoint { .. }), "{err}");
    let missing = checkpoint::load_model::<NdArray>(&dir.join("nope.mpk"), &cfg, &device)
        .err()
        .unwrap();
    assert!(missing.to_string().contains("no such file"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The gated convolutional architecture: the bounds are finite and every convolution,
/// the output layer and the IAF steps reading the convolutions' features get a gradient;
/// an MLP checkpoint does not load as a gated-conv model.
#[test]
fn gated_conv_model_reaches_every_parameter() {
    type Ad = Autodiff<burn_flex::Flex>;
    let _rng = flow_core::testing::exclusive_device();
    let device = Default::default();
    Ad::seed(&device, 2);
    let cfg = ModelConfig {
        arch: Arch::GatedConv,
        latent: 4,
        flow: FlowKind::Iaf,
        n_flows: 2,
        iaf_hidden: 8,
        ..ModelConfig::default()
    };
    let model = perturbed(FlowKind::Iaf, cfg.init::<Ad>(&device).unwrap());
    let pixels: Vec<f32> = (0..2 * 784)
        .map(|i| ((i * 13) % 5 == 0) as u8 as f32)
        .collect();
    let x = Tensor::<Ad, 2>::from_data(TensorData::new(pixels, [2, 784]), &device);
    let t = model.terms(x);
    let loss = (t.recon + t.kl).mean();
    let value: f64 = loss.clone().into_scalar().elem();
    assert!(value.is_finite() && value > 0.0, "−ELBO {value}");
    let grads = loss.backward();
    let mut check = Check {
        grads: &grads,
        bad: Vec::new(),
        seen: 0,
    };
    model.visit(&mut check);
    // 6 encoder and 6 decoder layers of two convolutions (weight, bias) = 48, the logits
    // convolution 2, the encoder's output layer 2, two IAF steps of 6.
    assert_eq!(check.seen, 48 + 2 + 2 + 12);
    assert!(check.bad.is_empty(), "{:?}", check.bad);
    assert!(
        ModelConfig {
            input: 100,
            ..cfg.clone()
        }
        .init::<Ad>(&device)
        .is_err()
    );

    let dir = std::env::temp_dir().join(format!("train-vae-conv-{}", std::process::id()));
    let path = checkpoint::file(&dir, "model", 1);
    let mlp = ModelConfig {
        input: 784,
        latent: 4,
        ..tiny(FlowKind::Iaf, 2)
    };
    checkpoint::CheckpointRecorder::default()
        .record(
            mlp.init::<NdArray>(&Default::default())
                .unwrap()
                .into_record(),
            path.with_extension(""),
        )
        .unwrap();
    let err = checkpoint::load_model::<NdArray>(&path, &cfg, &Default::default())
        .expect_err("an MLP checkpoint loaded as gated-conv");
    assert!(
        matches!(
            err,
            VaeError::ShapeMismatch { .. } | VaeError::Checkpoint { .. }
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
