//! a. The VAE with a 10-step amortized planar posterior on binarized MNIST.

use std::time::Instant;

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module},
    optim::{GradientsParams, Optimizer},
    tensor::{Tensor, TensorData, backend::Backend},
};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};
use tracing::info;
use train_vae::model::{ModelConfig, Vae};

use crate::common::{adam, host, mean};

pub fn vae_planar<B: Backend>(
    (epochs, throughput_epochs): (usize, usize),
    (batch, train_images): (usize, usize),
    lr: f64,
    iw_samples: usize,
    val_seed: u64,
    seed: u64,
) -> Value {
    assert!(
        epochs > throughput_epochs,
        "--epochs must exceed --throughput-epochs (epoch 1 is the warm-up)"
    );
    let images = train_vae::data::embedded_images().expect("the embedded MNIST subset");
    let train_p = images.slice(0..9000).intensities();
    let val = images.slice(9000..10_000).binarize(val_seed);
    let device = Default::default();
    <Autodiff<B> as Backend>::seed(&device, seed);
    let config = ModelConfig::default();
    let mut model: Vae<Autodiff<B>> = config.init(&device).expect("the default model");
    let mut breakdown = serde_json::Map::new();
    for (name, shape) in model.param_shapes() {
        let part = name.split('.').next().unwrap_or(&name).to_string();
        let count = shape.iter().product::<usize>() as u64;
        let entry = breakdown.entry(part).or_insert(json!(0));
        *entry = json!(entry.as_u64().unwrap_or(0) + count);
    }
    let params = model.num_params();
    info!(bench = "vae-planar", params, "model built");
    let mut optim = adam().init::<Autodiff<B>, Vae<Autodiff<B>>>();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train_images).collect();
    let per_epoch = train_images / batch;
    let (mut epoch_times, mut epoch_losses) = (Vec::new(), Vec::new());
    for epoch in 1..=epochs {
        let t = Instant::now();
        order.shuffle(&mut rng);
        let mut pending = Vec::with_capacity(per_epoch);
        for i in 0..per_epoch {
            let rows = &order[i * batch..(i + 1) * batch];
            // Dynamic binarization, fresh for every batch: x ~ Bernoulli(p), as train-vae's
            // loader draws it.
            let x = train_vae::data::binarize_rows(&train_p, 784, rows, &mut rng);
            let x = Tensor::<Autodiff<B>, 2>::from_data(TensorData::new(x, [batch, 784]), &device);
            let terms = model.terms(x);
            let loss = (terms.recon + terms.kl).mean();
            pending.push(loss.clone().detach().inner());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let loss = mean(&host(Tensor::cat(pending, 0)));
        epoch_times.push(t.elapsed().as_secs_f64());
        assert!(loss.is_finite(), "training diverged in epoch {epoch}");
        epoch_losses.push(loss);
        info!(
            epoch,
            neg_elbo = format!("{loss:.2}"),
            seconds = format!("{:.2}", t.elapsed().as_secs_f64()),
            "training"
        );
    }
    let timed: f64 = epoch_times[1..=throughput_epochs].iter().sum();
    let images_per_s = (throughput_epochs * per_epoch * batch) as f64 / timed;
    let mut out = json!({
        "bench": "vae-planar", "params": params, "param_breakdown": breakdown,
        "batch": batch, "epochs": epochs, "throughput_epochs": throughput_epochs,
        "train_images": train_images,
        "train_images_per_s": images_per_s, "epoch_times_s": epoch_times,
        "train_neg_elbo_per_epoch": epoch_losses,
    });
    if iw_samples > 0 {
        let model = model.valid();
        let x = Tensor::<B, 2>::from_data(TensorData::new(val, [1000, 784]), &device);
        let t = Instant::now();
        let (elbo, nll) = model.importance_weighted(x, iw_samples, 10_000);
        out["val_elbo"] = json!(mean(&host(elbo)));
        out["val_nll_iw"] = json!(mean(&host(nll)));
        out["iw_samples"] = json!(iw_samples);
        out["eval_time_s"] = json!(t.elapsed().as_secs_f64());
    }
    info!(images_per_s, "done");
    out
}
