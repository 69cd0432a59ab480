//! Data-parallel training's arithmetic: a batch split across devices computes the
//! one-device step. burn-train's multi-device strategy splits the loader with
//! `split_dataloader`, runs the training step on each part and sums the parts' gradients
//! (`GradientsAccumulator`) before one optimizer step; this runs the same pieces on one
//! device and compares the summed gradient with the whole batch's, parameter by parameter.

use std::sync::Arc;

use burn::{
    backend::{Autodiff, NdArray},
    data::dataloader::{DataLoader, split::split_dataloader},
    module::{Module, ModuleVisitor, Param},
    optim::{GradientsAccumulator, GradientsParams},
    tensor::{
        Tensor,
        backend::{AutodiffBackend, Backend},
    },
};
use burn_train::TrainStep;
use train_vae::{
    arch::Arch,
    model::{ModelConfig, Vae},
    posterior::{FlowKind, iaf::IafUpdate},
    training::{MnistLoader, VaeStats},
};

type Ad = Autodiff<NdArray>;

const DIM: usize = 6;
const ROWS: usize = 12;

fn config() -> ModelConfig {
    ModelConfig {
        input: DIM,
        arch: Arch::Mlp,
        encoder_hidden: vec![8],
        decoder_hidden: vec![8],
        latent: 2,
        flow: FlowKind::Planar,
        n_flows: 2,
        iaf_hidden: 8,
        iaf_layers: 1,
        iaf_update: IafUpdate::Gated,
        iaf_forget_bias: 1.0,
        ortho_vecs: 1,
        householder: 2,
    }
}

/// A fresh training loader over the same images, batch = every row, warm-up on (β < 1).
fn loader(device: &burn::tensor::Device<Ad>) -> MnistLoader<Ad> {
    let probs: Vec<f32> = (0..ROWS * DIM)
        .map(|i| ((i * 37) % 11) as f32 / 10.0)
        .collect();
    MnistLoader::train(
        probs,
        (DIM, config().latent),
        ROWS,
        7,
        3,
        1,
        Arc::default(),
        *device,
    )
}

/// Every parameter's gradient in `grads`, flattened, in visiting order.
struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<(String, Vec<f64>)>,
}

impl ModuleVisitor<Ad> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Ad, D>>) {
        let g = self
            .grads
            .get::<NdArray, D>(p.id)
            .unwrap_or_else(|| panic!("no gradient for {}", p.id));
        let g: Vec<f64> = g.into_data().convert::<f64>().into_vec().unwrap();
        self.out.push((p.id.to_string(), g));
    }
}

fn collect(model: &Vae<Ad>, grads: &GradientsParams) -> Vec<(String, Vec<f64>)> {
    let mut c = Collect {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

/// The largest difference between two gradient sets, relative to the largest entry.
fn max_relative_difference(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) -> f64 {
    let scale = a
        .iter()
        .flat_map(|(_, g)| g.iter().map(|v| v.abs()))
        .fold(0.0f64, f64::max);
    a.iter()
        .zip(b)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(u, v)| (u - v).abs()))
        .fold(0.0f64, f64::max)
        / scale
}

fn step<B: AutodiffBackend>(
    model: &Vae<B>,
    batch: train_vae::training::VaeBatch<B>,
) -> (GradientsParams, VaeStats) {
    let out = TrainStep::step(model, batch);
    (out.grads, out.item)
}

#[test]
fn a_batch_split_across_devices_computes_the_one_device_step() {
    let _rng = flow_core::testing::exclusive_device();
    let device = Default::default();
    Ad::seed(&device, 3);
    let model: Vae<Ad> = config().init(&device).unwrap();

    let whole = loader(&device);
    let batch = whole.iter().next().expect("one batch");
    assert_eq!(batch.x.dims(), [ROWS, DIM]);
    let (full, full_stats) = step(&model, batch);
    let full = collect(&model, &full);

    // burn-train's split of the loader over three devices (here all the same one: the
    // arithmetic does not depend on where it runs), one step on each part, gradients summed.
    let parts = split_dataloader::<Ad, _>(Arc::new(loader(&device)), &[device, device, device]);
    let mut accumulator = GradientsAccumulator::<Vae<Ad>>::new();
    let (mut images, mut neg_elbo) = (0, 0.0);
    let mut one_part = None;
    for part in &parts {
        let batch = part.iter().next().expect("one batch per part");
        assert_eq!(batch.x.dims(), [ROWS / 3, DIM]);
        assert!((batch.weight - 1.0 / 3.0).abs() < 1e-12);
        let (grads, stats) = step(&model, batch);
        one_part.get_or_insert_with(|| collect(&model, &grads));
        images += stats.n;
        neg_elbo += stats.n as f64 * stats.neg_elbo;
        accumulator.accumulate(&model, grads);
    }
    let summed = collect(&model, &accumulator.grads());

    // The parts drew the whole batch's images and noise: same ELBO, same gradient.
    assert_eq!(images, full_stats.n);
    let neg_elbo = neg_elbo / images as f64;
    assert!(
        (neg_elbo - full_stats.neg_elbo).abs() < 1e-4 * full_stats.neg_elbo.abs(),
        "−ELBO {neg_elbo} vs {}",
        full_stats.neg_elbo
    );
    let diff = max_relative_difference(&full, &summed);
    assert!(diff < 1e-5, "summed gradient off by {diff:e} (relative)");
    // One part alone is not the whole step (the comparison above can fail).
    let alone = max_relative_difference(&full, one_part.as_ref().unwrap());
    assert!(
        alone > 1e-2,
        "one part's gradient equals the whole's ({alone:e})"
    );
}
