//! Rust ports of the four PyTorch peer benchmarks in `shared/peer` (its README specifies
//! them): the same data formulas, layer sizes, parameter counts, batch sizes, optimizer
//! (Adam with torch's defaults) and timing windows, on the backend the features select
//! (`ndarray` by default, or `--features flex`). Each prints **one JSON line** on stdout
//! with the peer's metric names; progress goes to stderr.
//!
//! ```text
//! cargo run --release -p flow-benches --bin ports -- realnvp-moons --threads 2
//! ```
//!
//! `benches/side_by_side.py` (`just bench-peers`) runs them alternately with the peers.

use std::time::Instant;

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module},
    optim::{GradientsParams, Optimizer},
    tensor::{Distribution, Tensor, TensorData, backend::Backend},
};
use clap::{CommandFactory, Parser, Subcommand};
use density::data::{Table, Toy, mnist_logit};
use flow_core::{Flow, Invertible, StandardNormal};
use flow_programs::{Choice, FusedAdamConfig, Program};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};
use tracing::info;
use train_vae::model::{ModelConfig, Vae};

/// The peer benchmarks, ported.
#[derive(Parser, Debug)]
#[command(name = "ports", about)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// Worker threads of the CPU backend (rayon and the matmul's pool).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// Seed of the data stream and of the backend's initialization.
    #[arg(long, global = true, default_value_t = 0)]
    seed: u64,
    /// The backend: one this build has (`ndarray`, `flex`, `wgpu`, `wgpu-unfused`, `cuda`,
    /// `cuda-unfused`, by cargo feature); default the build's preferred one.
    #[arg(long, global = true, default_value_t = Choice::default())]
    backend: Choice,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// a. VAE with a 10-step amortized planar posterior on binarized MNIST (the peer's
    /// `--variant amortised`).
    VaePlanar {
        /// Training epochs (≥ 1 + throughput-epochs).
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Epochs timed after the first (the warm-up).
        #[arg(long, default_value_t = 2)]
        throughput_epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Training images per epoch (the first of the 9,000; fewer make short runs, such as
        /// the launch counts of benches/launches).
        #[arg(long, default_value_t = 9000)]
        train_images: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Posterior samples per validation image for the IW bound (0: no evaluation).
        #[arg(long, default_value_t = 100)]
        iw_samples: usize,
        #[arg(long, default_value_t = 1234)]
        val_seed: u64,
    },
    /// b. RealNVP (8 affine couplings) on two moons.
    RealnvpMoons {
        /// Training steps.
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        /// Steps before the timed window.
        #[arg(long, default_value_t = 20)]
        warmup_steps: usize,
        #[arg(long, default_value_t = 512)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 10_000)]
        test_n: usize,
        #[arg(long, default_value_t = 4321)]
        test_seed: u64,
        /// `log_prob` passes over the test set, untimed and without sampling, instead of
        /// the peers' timed throughput loops (0): a run whose work is fixed, as the launch
        /// counts of benches/launches need.
        #[arg(long, default_value_t = 0)]
        logprob_passes: usize,
    },
    /// c. MAF (5 MADE layers) on dequantized logit-space MNIST.
    MafMnist {
        /// Training steps.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Steps before the timed window.
        #[arg(long, default_value_t = 5)]
        warmup_steps: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        #[arg(long, default_value_t = 1000)]
        logprob_batch: usize,
        /// Timed log_prob passes over the validation set (the median is reported); the
        /// peer times one. More give a steadier number and a log_prob-heavy profile.
        #[arg(long, default_value_t = 1)]
        logprob_passes: usize,
        #[arg(long, default_value_t = 64)]
        sample_batch: usize,
        #[arg(long, default_value_t = 1234)]
        val_seed: u64,
    },
    /// The backend's f32 matmul rate (GFLOP/s) for 2048³ and the benchmarks' layer shapes,
    /// as `matmul_peak.py` measures torch's.
    Matmul {
        /// Timed repeats per shape (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Seconds per repeat (at least).
        #[arg(long, default_value_t = 0.2)]
        min_time: f64,
    },
    /// d. Rational-quadratic spline couplings on the 8-D Gaussian mixture.
    NsfMog {
        /// Training steps.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Steps before the timed window.
        #[arg(long, default_value_t = 20)]
        warmup_steps: usize,
        #[arg(long, default_value_t = 512)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 10_000)]
        test_n: usize,
        #[arg(long, default_value_t = 4321)]
        test_seed: u64,
        /// `log_prob` passes over the test set, untimed and without sampling, instead of
        /// the peers' timed throughput loops (0): a run whose work is fixed, as the launch
        /// counts of benches/launches need.
        #[arg(long, default_value_t = 0)]
        logprob_passes: usize,
    },
}

impl Bench {
    /// What is wrong with these flags, if anything: checked before anything runs, so that a
    /// bad command line is a usage error, not a panic halfway through.
    fn problem(&self) -> Option<String> {
        let window = |steps: usize, warmup: usize| {
            (warmup >= steps)
                .then(|| format!("--warmup-steps ({warmup}) must be below --steps ({steps})"))
        };
        let positive = |flags: &[(&str, usize)]| {
            flags
                .iter()
                .find(|(_, v)| *v == 0)
                .map(|(name, _)| format!("{name} must be at least 1"))
        };
        match *self {
            Bench::VaePlanar {
                epochs,
                throughput_epochs,
                batch,
                train_images,
                ..
            } => positive(&[
                ("--throughput-epochs", throughput_epochs),
                ("--batch", batch),
            ])
            .or_else(|| {
                (epochs <= throughput_epochs).then(|| {
                    format!(
                        "--epochs ({epochs}) must exceed --throughput-epochs \
                             ({throughput_epochs}): epoch 1 is the warm-up"
                    )
                })
            })
            .or_else(|| {
                (train_images > 9000)
                    .then(|| format!("--train-images ({train_images}) must be at most 9000"))
            })
            .or_else(|| {
                (batch > train_images).then(|| {
                    format!("--batch ({batch}) must be at most --train-images ({train_images})")
                })
            }),
            Bench::RealnvpMoons {
                steps,
                warmup_steps,
                batch,
                test_n,
                ..
            }
            | Bench::NsfMog {
                steps,
                warmup_steps,
                batch,
                test_n,
                ..
            } => positive(&[("--batch", batch), ("--test-n", test_n)])
                .or_else(|| window(steps, warmup_steps)),
            Bench::MafMnist {
                steps,
                warmup_steps,
                batch,
                logprob_batch,
                sample_batch,
                ..
            } => positive(&[
                ("--batch", batch),
                ("--logprob-batch", logprob_batch),
                ("--sample-batch", sample_batch),
            ])
            .or_else(|| window(steps, warmup_steps)),
            Bench::Matmul { repeats, min_time } => {
                positive(&[("--repeats", repeats)]).or_else(|| {
                    (!(min_time.is_finite() && min_time > 0.0)).then(|| {
                        format!("--min-time must be a positive number of seconds, got {min_time}")
                    })
                })
            }
        }
    }
}

fn sync<B: Backend>() {
    B::sync(&Default::default()).expect("the device finishes its queue");
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec()
        .expect("a float tensor")
}

fn table<B: Backend>(t: &Table) -> Tensor<B, 2> {
    let values: Vec<f32> = t.values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(
        TensorData::new(values, [t.rows(), t.dim]),
        &Default::default(),
    )
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Adam with torch's defaults (β = (0.9, 0.999), ε = 1e-8), fused on the CPU backends.
fn adam() -> FusedAdamConfig {
    FusedAdamConfig::new()
}

/// `steps` Adam steps on `loss(model, step)`, timing steps `warmup..steps` (the peers'
/// window). Losses are read from the device every 100 steps, and once at the end.
/// Returns the model, steps/s over the window, the whole loop's seconds and the losses.
fn train<B: Backend, M: AutodiffModule<Autodiff<B>>>(
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
fn throughput(items: usize, mut f: impl FnMut()) -> f64 {
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
fn flow_params<B: Backend, T: Module<Autodiff<B>>>(
    flow: &Flow<Autodiff<B>, StandardNormal, Vec<T>>,
) -> Value {
    let per: Vec<usize> = flow.transform.iter().map(Module::num_params).collect();
    json!(per)
}

/// The density benchmarks' shared second half: test log-likelihood, then `log_prob` and
/// `sample` throughput on the whole test set, as `realnvp_moons.py` and `nsf_mog.py`; or,
/// with `passes` > 0, that many untimed `log_prob` passes (throughputs NaN).
fn evaluate_density<B: Backend, T: Invertible<B>>(
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

fn density_bench<B: Backend>(
    name: &str,
    toy: Toy,
    run: (usize, usize, usize),
    lr: f64,
    test: (usize, u64, usize),
    seed: u64,
) -> Value {
    let (steps, warmup, batch) = run;
    let mut rng = StdRng::seed_from_u64(seed);
    // Fresh batches for every step, drawn before the timed loop (as the peers).
    let batches: Vec<Tensor<Autodiff<B>, 2>> = (0..steps)
        .map(|_| table(&toy.sample(batch, &mut rng)))
        .collect();
    let test_table = toy.sample(test.0, &mut StdRng::seed_from_u64(test.1));
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
    let (test_ll, log_prob, sample) = evaluate_density(&model.valid(), table(&test_table), test.2);
    info!(steps_per_s, test_ll, log_prob, sample, "done");
    let mut out = json!({
        "bench": name, "params": params, "params_per_layer": layers,
        "batch": batch, "steps": steps, "warmup_steps": warmup,
        "train_steps_per_s": steps_per_s, "train_samples_per_s": steps_per_s * batch as f64,
        "train_wall_s": wall,
        "final_train_loss_avg100": mean(&losses[losses.len().saturating_sub(100)..]),
        "test_ll": test_ll, "test_n": test.0,
        "logprob_samples_per_s": log_prob, "sample_samples_per_s": sample,
    });
    if let Some(true_ll) = toy.exact_log_prob(&test_table) {
        out["test_ll_true_density"] = json!(true_ll);
    }
    out
}

/// `(label, m, k, n, transposed)`: `[m, k] @ [k, n]`, the left operand stored transposed
/// (`[k, m]`, as in a backward pass's `xᵀ δ`) when `transposed`.
const MATMUL_SHAPES: [(&str, usize, usize, usize, bool); 9] = [
    ("square 2048", 2048, 2048, 2048, false),
    ("square 512", 512, 512, 512, false),
    ("moons hid 512x256@256x256", 512, 256, 256, false),
    ("moons dW hid 256x512@512x256 (xT)", 256, 512, 256, true),
    ("maf in 128x784@784x512", 128, 784, 512, false),
    ("maf hid 128x512@512x512", 128, 512, 512, false),
    ("maf out 128x512@512x1568", 128, 512, 1568, false),
    ("maf dW out 512x128@128x1568 (xT)", 512, 128, 1568, true),
    ("nsf hid 512x128@128x128", 512, 128, 128, false),
];

fn matmul<B: Backend>(repeats: usize, min_time: f64) -> Value {
    let device = Default::default();
    let rows: Vec<Value> = MATMUL_SHAPES
        .iter()
        .map(|&(label, m, k, n, transposed)| {
            let normal = |shape: [usize; 2]| {
                Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
            };
            let a = if transposed {
                normal([k, m])
            } else {
                normal([m, k])
            };
            let b = normal([k, n]);
            let product = || {
                let a = if transposed {
                    a.clone().transpose()
                } else {
                    a.clone()
                };
                let _ = a.matmul(b.clone());
                sync::<B>();
            };
            product();
            let mut rates: Vec<f64> = (0..repeats)
                .map(|_| {
                    let (t, mut calls) = (Instant::now(), 0);
                    while calls == 0 || t.elapsed().as_secs_f64() < min_time {
                        product();
                        calls += 1;
                    }
                    2.0 * (m * k * n * calls) as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .collect();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            info!(shape = label, gflops = format!("{median:.1}"), "matmul");
            json!({"label": label, "m": m, "k": k, "n": n, "gflops_median": median,
                   "gflops_max": rates[rates.len() - 1]})
        })
        .collect();
    json!({"bench": "matmul-peak", "peak_2048_gflops_median": rows[0]["gflops_median"], "rows": rows})
}

/// `[rows, 784]` MNIST grey levels of `rows` (indices into `pixels`) on the device.
fn gather<B: Backend>(pixels: &[u8], rows: &[usize]) -> Tensor<B, 2> {
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
fn to_logit<B: Backend>(pixels: Tensor<B, 2>) -> Tensor<B, 2> {
    const ALPHA: f64 = 1e-6;
    let u = Tensor::random(pixels.shape(), Distribution::Default, &pixels.device());
    let s = (pixels + u)
        .div_scalar(256.0)
        .mul_scalar(1.0 - 2.0 * ALPHA)
        .add_scalar(ALPHA);
    s.clone().log() - s.neg().log1p()
}

fn maf_mnist<B: Backend>(
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

fn vae_planar<B: Backend>(
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

/// mimalloc, as the project's programs (glibc's malloc returns large buffers to the
/// kernel on every free; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { flow_programs::keep_freed_memory() };
    let cli = Cli::parse();
    let problem = (cli.threads == 0)
        .then(|| "--threads must be at least 1".to_string())
        .or_else(|| cli.bench.problem());
    if let Some(problem) = problem {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, problem)
            .exit();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // The CPU backends' pools: rayon (element-wise work, flex's GEMM) and matrixmultiply's
    // own pool (ndarray's GEMM), both `--threads` wide, set before the first tensor op.
    // SAFETY: no other thread exists yet that could read the environment.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", cli.threads.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(cli.threads)
        .build_global()
        .expect("the first rayon pool");
    let load_start = load_average();
    let seed = cli.seed;
    let bench = cli.bench;
    let backend = cli.backend;
    if let Err(why) = backend.ready() {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, why)
            .exit();
    }
    let mut out = backend.run(Ports { bench, seed });
    out["variant"] = json!(format!("flow-rs/{backend}"));
    out["threads"] = json!(cli.threads);
    out["seed"] = json!(seed);
    out["argv"] = json!(std::env::args().skip(1).collect::<Vec<_>>());
    out["versions"] = json!({"flow-rs": env!("CARGO_PKG_VERSION"), "burn": "0.21.0"});
    out["loadavg_1m_at_start"] = json!(load_start);
    out["loadavg_1m_at_end"] = json!(load_average());
    println!("{out}");
}

/// A benchmark run on the backend chosen at run time.
struct Ports {
    bench: Bench,
    seed: u64,
}

impl Program for Ports {
    type Output = Value;

    fn run<B: Backend>(self, _name: &'static str) -> Value {
        let Ports { bench, seed } = self;
        let toy = match bench {
            Bench::RealnvpMoons { .. } => Some(("realnvp-moons", Toy::PeerMoons)),
            Bench::NsfMog { .. } => Some(("nsf-mog", Toy::Mog8)),
            _ => None,
        };
        // The benchmark runs on one of the pool's threads, so that the serial tensor ops
        // and the parallel kernels share the `--threads` threads: a main thread outside the
        // pool would hand every parallel region to a (possibly sleeping) worker and wait. On
        // the CPU backends the other threads poll for work meanwhile instead of sleeping
        // between the parallel regions, as the OpenMP threads behind the peers' PyTorch
        // operators spin between theirs.
        flow_programs::with_hot_workers_on::<B, _>(move || match bench {
            Bench::VaePlanar {
                epochs,
                throughput_epochs,
                batch,
                train_images,
                lr,
                iw_samples,
                val_seed,
            } => vae_planar::<B>(
                (epochs, throughput_epochs),
                (batch, train_images),
                lr,
                iw_samples,
                val_seed,
                seed,
            ),
            Bench::RealnvpMoons {
                steps,
                warmup_steps,
                batch,
                lr,
                test_n,
                test_seed,
                logprob_passes,
            }
            | Bench::NsfMog {
                steps,
                warmup_steps,
                batch,
                lr,
                test_n,
                test_seed,
                logprob_passes,
            } => {
                let (name, toy) = toy.expect("a density benchmark");
                density_bench::<B>(
                    name,
                    toy,
                    (steps, warmup_steps, batch),
                    lr,
                    (test_n, test_seed, logprob_passes),
                    seed,
                )
            }
            Bench::MafMnist {
                steps,
                warmup_steps,
                batch,
                lr,
                logprob_batch,
                logprob_passes,
                sample_batch,
                val_seed,
            } => maf_mnist::<B>(
                (steps, warmup_steps, batch),
                lr,
                (logprob_batch, logprob_passes, sample_batch),
                val_seed,
                seed,
            ),
            Bench::Matmul { repeats, min_time } => matmul::<B>(repeats, min_time),
        })
    }
}

/// The 1-minute load average (`/proc/loadavg`), to spot a run shared with other work.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
