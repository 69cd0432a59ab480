//! What every benchmark shares: the training loop with the peers' timing window, the
//! throughput loop, and moving values between host and device.

use std::time::Instant;

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module},
    optim::{GradientsParams, Optimizer},
    tensor::{Tensor, TensorData, backend::Backend},
};
use density::data::Table;
use flow_core::{Flow, StandardNormal};
use flow_programs::FusedAdamConfig;
use serde_json::{Value, json};
use tracing::info;

pub fn sync<B: Backend>() {
    B::sync(&Default::default()).expect("the device finishes its queue");
}

pub fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec()
        .expect("a float tensor")
}

pub fn table<B: Backend>(t: &Table) -> Tensor<B, 2> {
    let values: Vec<f32> = t.values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(
        TensorData::new(values, [t.rows(), t.dim]),
        &Default::default(),
    )
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Adam with torch's defaults (β = (0.9, 0.999), ε = 1e-8), fused on the CPU backends.
pub fn adam() -> FusedAdamConfig {
    FusedAdamConfig::new()
}

/// `steps` Adam steps on `loss(model, step)`, timing steps `warmup..steps` (the peers'
/// window). Losses are read from the device every 100 steps, and once at the end.
/// Returns the model, steps/s over the window, the whole loop's seconds and the losses.
pub fn train<B: Backend, M: AutodiffModule<Autodiff<B>>>(
    mut model: M,
    run: (usize, usize),
    lr: f64,
    mut loss: impl FnMut(&M, usize) -> Tensor<Autodiff<B>, 1>,
) -> (M, f64, f64, Vec<f64>) {
    let (steps, warmup) = run;
    assert!(warmup < steps, "--warmup-steps must be below --steps");
    let mut optim = adam().init::<Autodiff<B>, M>();
    let mut pending = Vec::new();
    let mut losses = Vec::new();
    let all = Instant::now();
    let mut timed = all;
    for step in 0..steps {
        if step == warmup {
            sync::<Autodiff<B>>();
            timed = Instant::now();
        }
        let l = loss(&model, step);
        pending.push(l.clone().detach().inner());
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(lr, model, grads);
        if (step + 1) % 100 == 0 || step + 1 == steps {
            losses.extend(host(Tensor::cat(std::mem::take(&mut pending), 0)));
            let recent = &losses[losses.len().saturating_sub(100)..];
            info!(
                step = step + 1,
                loss = format!("{:.4}", mean(recent)),
                "training"
            );
        }
    }
    let window = timed.elapsed().as_secs_f64();
    let wall = all.elapsed().as_secs_f64();
    let last = losses.last().copied().unwrap_or(f64::NAN);
    assert!(
        last.is_finite(),
        "training diverged: the last loss is {last}"
    );
    (model, (steps - warmup) as f64 / window, wall, losses)
}

/// Items per second of `f` (which returns after the device is done): one warm-up call,
/// then calls until 1 s or 50 calls, as the peers' `throughput`.
pub fn throughput(items: usize, mut f: impl FnMut()) -> f64 {
    f();
    let (mut reps, mut seconds) = (0, 0.0);
    while seconds < 1.0 && reps < 50 {
        let t = Instant::now();
        f();
        seconds += t.elapsed().as_secs_f64();
        reps += 1;
    }
    (items * reps) as f64 / seconds
}

/// Parameter counts per top-level module of a flow (one entry per layer; a coupling's
/// reversal has none).
pub fn flow_params<B: Backend, T: Module<Autodiff<B>>>(
    flow: &Flow<Autodiff<B>, StandardNormal, Vec<T>>,
) -> Value {
    let per: Vec<usize> = flow.transform.iter().map(Module::num_params).collect();
    json!(per)
}
