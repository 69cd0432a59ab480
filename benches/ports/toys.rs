//! b. and d.: RealNVP on two moons and spline couplings on the 8-D Gaussian mixture
//! (the density benchmarks on toy data).

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module},
    tensor::{Tensor, backend::Backend},
};
use density::data::Toy;
use flow_core::{Flow, Invertible, StandardNormal};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tracing::info;

use crate::cli::DensityRun;
use crate::common::{flow_params, host, mean, sync, table, throughput, train};

/// The density benchmarks' shared second half: test log-likelihood, then `log_prob` and
/// `sample` throughput on the whole test set, as `realnvp_moons.py` and `nsf_mog.py`; or,
/// with `passes` > 0, that many untimed `log_prob` passes (throughputs NaN).
pub fn evaluate_density<B: Backend, T: Invertible<B>>(
    model: &Flow<B, StandardNormal, T>,
    test: Tensor<B, 2>,
    passes: usize,
) -> (f64, f64, f64) {
    let n = test.dims()[0];
    let device = Default::default();
    let test_ll = mean(&host(
        model.log_prob(test.clone(), None).expect("valid input"),
    ));
    if passes > 0 {
        for _ in 1..passes {
            let _ = model.log_prob(test.clone(), None).expect("valid input");
        }
        sync::<B>();
        return (test_ll, f64::NAN, f64::NAN);
    }
    let log_prob = throughput(n, || {
        let _ = model.log_prob(test.clone(), None).expect("valid input");
        sync::<B>();
    });
    let sample = throughput(n, || {
        let _ = model.sample(n, None, &device).expect("n ≥ 1");
        sync::<B>();
    });
    (test_ll, log_prob, sample)
}

/// Trains `toy`'s model (`Toy::Mog8`: the spline couplings; otherwise RealNVP) for
/// `steps`, then evaluates it as the peers do.
pub fn density_bench<B: Backend>(
    name: &str,
    toy: Toy,
    steps: usize,
    run: DensityRun,
    seed: u64,
) -> Value {
    let DensityRun {
        warmup_steps: warmup,
        batch,
        lr,
        test_n,
        test_seed,
        logprob_passes,
    } = run;
    let mut rng = StdRng::seed_from_u64(seed);
    // Fresh batches for every step, drawn before the timed loop (as the peers).
    let batches: Vec<Tensor<Autodiff<B>, 2>> = (0..steps)
        .map(|_| table(&toy.sample(batch, &mut rng)))
        .collect();
    let test_table = toy.sample(test_n, &mut StdRng::seed_from_u64(test_seed));
    <Autodiff<B> as Backend>::seed(&Default::default(), seed);
    let device = Default::default();
    let model = if toy == Toy::Mog8 {
        flow_benches::nsf_mog::<Autodiff<B>>(&device)
    } else {
        flow_benches::realnvp_moons::<Autodiff<B>>(&device)
    };
    let layers = flow_params(&model);
    let params = model.num_params();
    info!(bench = name, params, "model built");
    let (model, steps_per_s, wall, losses) = train(model, (steps, warmup), lr, |m, step| {
        m.log_prob(batches[step].clone(), None)
            .expect("valid input")
            .mean()
            .neg()
    });
    let (test_ll, log_prob, sample) =
        evaluate_density(&model.valid(), table(&test_table), logprob_passes);
    info!(steps_per_s, test_ll, log_prob, sample, "done");
    let mut out = json!({
        "bench": name, "params": params, "params_per_layer": layers,
        "batch": batch, "steps": steps, "warmup_steps": warmup,
        "train_steps_per_s": steps_per_s, "train_samples_per_s": steps_per_s * batch as f64,
        "train_wall_s": wall,
        "final_train_loss_avg100": mean(&losses[losses.len().saturating_sub(100)..]),
        "test_ll": test_ll, "test_n": test_n,
        "logprob_samples_per_s": log_prob, "sample_samples_per_s": sample,
    });
    if let Some(true_ll) = toy.exact_log_prob(&test_table) {
        out["test_ll_true_density"] = json!(true_ll);
    }
    out
}
