//! c. MAF (5 MADE layers) on dequantized logit-space MNIST.

use std::time::Instant;

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module},
    tensor::{Distribution, Tensor, TensorData, backend::Backend},
};
use density::data::mnist_logit;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};
use tracing::info;

use crate::common::{flow_params, host, mean, sync, table, train};

/// `[rows, 784]` MNIST grey levels of `rows` (indices into `pixels`) on the device.
pub fn gather<B: Backend>(pixels: &[u8], rows: &[usize]) -> Tensor<B, 2> {
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|&r| pixels[r * 784..(r + 1) * 784].iter().map(|&p| f32::from(p)))
        .collect();
    Tensor::from_data(
        TensorData::new(values, [rows.len(), 784]),
        &Default::default(),
    )
}

/// Dequantize and map to logit space on the device (`maf_mnist.py`'s `to_logit`):
/// `y = logit(α + (1 − 2α)(pixel + u)/256)`, `u ~ U(0, 1)`, `α = 10⁻⁶`.
pub fn to_logit<B: Backend>(pixels: Tensor<B, 2>) -> Tensor<B, 2> {
    const ALPHA: f64 = 1e-6;
    let u = Tensor::random(pixels.shape(), Distribution::Default, &pixels.device());
    let s = (pixels + u)
        .div_scalar(256.0)
        .mul_scalar(1.0 - 2.0 * ALPHA)
        .add_scalar(ALPHA);
    s.clone().log() - s.neg().log1p()
}

pub fn maf_mnist<B: Backend>(
    run: (usize, usize, usize),
    lr: f64,
    batches: (usize, usize, usize),
    val_seed: u64,
    seed: u64,
) -> Value {
    let (steps, warmup, batch) = run;
    let images = train_vae::data::embedded_images().expect("the embedded MNIST subset");
    let (train_px, val_px) = images.pixels.split_at(9000 * 784);
    let (val, val_log_det) = mnist_logit(val_px, 784, &mut StdRng::seed_from_u64(val_seed));
    let val = table::<B>(&val);
    let mut rng = StdRng::seed_from_u64(seed);
    <Autodiff<B> as Backend>::seed(&Default::default(), seed);
    let model = flow_benches::maf_mnist::<Autodiff<B>>(&Default::default());
    let params = model.num_params();
    let layers = flow_params(&model);
    info!(bench = "maf-mnist", params, "model built");
    let per_epoch = 9000 / batch;
    let mut order: Vec<usize> = (0..9000).collect();
    let (model, steps_per_s, wall, losses) = train(model, (steps, warmup), lr, |m, step| {
        let i = step % per_epoch;
        if i == 0 {
            order.shuffle(&mut rng);
        }
        let x = to_logit(gather::<Autodiff<B>>(
            train_px,
            &order[i * batch..(i + 1) * batch],
        ));
        m.log_prob(x, None).expect("valid input").mean().neg()
    });
    let model = model.valid();
    let (lp_batch, lp_passes, sample_batch) = batches;
    let n = val.dims()[0];
    let log_prob_all = || {
        let parts: Vec<Tensor<B, 1>> = (0..n)
            .step_by(lp_batch)
            .map(|i| {
                model
                    .log_prob(val.clone().narrow(0, i, lp_batch.min(n - i)), None)
                    .expect("valid input")
            })
            .collect();
        Tensor::cat(parts, 0)
    };
    let _ = log_prob_all();
    sync::<B>();
    let mut rates = Vec::new();
    let mut lp = None;
    for _ in 0..lp_passes.max(1) {
        let t = Instant::now();
        lp = Some(log_prob_all());
        sync::<B>();
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let log_prob = rates[rates.len() / 2];
    let lp = host(lp.expect("at least one pass"));
    let val_ll = mean(&lp);
    let val_bpd = -(val_ll + mean(&val_log_det)) / (784.0 * std::f64::consts::LN_2);
    let device = Default::default();
    let _ = model.sample(2, None, &device).expect("n ≥ 1");
    sync::<B>();
    let t = Instant::now();
    let s = model.sample(sample_batch, None, &device).expect("n ≥ 1");
    sync::<B>();
    let sample_time = t.elapsed().as_secs_f64();
    assert_eq!(s.dims(), [sample_batch, 784]);
    info!(
        steps_per_s,
        log_prob,
        sample = sample_batch as f64 / sample_time,
        val_ll,
        val_bpd,
        "done"
    );
    json!({
        "bench": "maf-mnist", "params": params, "params_per_layer": layers,
        "batch": batch, "steps": steps, "warmup_steps": warmup,
        "train_steps_per_s": steps_per_s, "train_samples_per_s": steps_per_s * batch as f64,
        "train_wall_s": wall,
        "final_train_loss_avg25": mean(&losses[losses.len().saturating_sub(25)..]),
        "logprob_samples_per_s": log_prob, "logprob_batch": lp_batch, "logprob_passes": lp_passes.max(1),
        "sample_samples_per_s": sample_batch as f64 / sample_time, "sample_batch": sample_batch,
        "sample_time_s": sample_time,
        "val_ll_logit_nats": val_ll, "val_bits_per_dim_pixel": val_bpd,
    })
}
