//! Layer families at the sizes of the peer benchmarks (`shared/peer`), on the backend the
//! features select (`cargo bench -p flow-benches --bench layers`; ndarray by default, or
//! `--features flex | wgpu | cuda`): the transform's `inverse` (data → noise with its
//! ladj) and `forward` (noise → data with its ladj), `log_prob` (inverse + base density),
//! `sample` (base draw + forward), all without autodiff, and one training step's forward +
//! backward of the mean negative log-likelihood (the optimizer's update is not included).
//!
//! - realnvp-moons: 8 affine couplings on ℝ², MLP 1-256-256-2, batch 512;
//! - nsf-mog: 4 spline couplings on ℝ⁸, 8 bins on [−5, 5], MLP 4-128-128-92, batch 512;
//! - maf-mnist: 5 affine MADE layers on ℝ⁷⁸⁴ (784-512-512-1568, orders alternating), batch
//!   128 (no `sample`: 784 sequential passes per layer take seconds; the density program
//!   times it);
//! - vae-planar: 10 amortized planar steps on ℝ³² (the VAE posterior), batch 128, forward
//!   and forward + backward.
//!
//! The training-step rows are what the peers' steps/s measure minus the optimizer update.

use burn::tensor::{Distribution, Tensor, backend::Backend};
use criterion::{Criterion, criterion_group, criterion_main};
use flow_benches::planar_inputs;
use flow_core::{Flow, Invertible, StandardNormal, planar};
use flow_programs::{Inner, Train};

fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("the device finishes its queue");
}

/// `log_prob`, `sample` (when `sample`) and a training step of `flow` on `batch` rows.
fn flow_family<T>(
    c: &mut Criterion,
    name: &str,
    batch: usize,
    sample: bool,
    inner: Flow<Inner, StandardNormal, T>,
    train: Flow<Train, StandardNormal, impl Invertible<Train>>,
) where
    T: Invertible<Inner>,
{
    let device = Default::default();
    let dim = inner.dim();
    let mut group = c.benchmark_group(name);
    let x = Tensor::<Inner, 2>::random([batch, dim], Distribution::Normal(0.0, 1.0), &device);
    group.bench_function("inverse", |b| {
        b.iter(|| {
            let out = inner.transform.inverse(x.clone(), None);
            sync::<Inner>(&device);
            out
        })
    });
    if sample {
        group.bench_function("forward", |b| {
            b.iter(|| {
                let out = inner.transform.forward(x.clone(), None);
                sync::<Inner>(&device);
                out
            })
        });
    }
    group.bench_function("log_prob", |b| {
        b.iter(|| {
            let lp = inner.log_prob(x.clone(), None).expect("valid input");
            sync::<Inner>(&device);
            lp
        })
    });
    if sample {
        group.bench_function("sample", |b| {
            b.iter(|| {
                let s = inner.sample(batch, None, &device).expect("valid size");
                sync::<Inner>(&device);
                s
            })
        });
    }
    let x = Tensor::<Train, 2>::random([batch, dim], Distribution::Normal(0.0, 1.0), &device);
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let loss = train
                .log_prob(x.clone(), None)
                .expect("valid input")
                .mean()
                .neg();
            let grads = loss.backward();
            sync::<Train>(&device);
            grads
        })
    });
    group.finish();
}

fn realnvp_moons(c: &mut Criterion) {
    let device = Default::default();
    flow_family(
        c,
        "realnvp_moons",
        512,
        true,
        flow_benches::realnvp_moons::<Inner>(&device),
        flow_benches::realnvp_moons::<Train>(&device),
    );
}

fn nsf_mog(c: &mut Criterion) {
    let device = Default::default();
    flow_family(
        c,
        "nsf_mog",
        512,
        true,
        flow_benches::nsf_mog::<Inner>(&device),
        flow_benches::nsf_mog::<Train>(&device),
    );
}

fn maf_mnist(c: &mut Criterion) {
    let device = Default::default();
    flow_family(
        c,
        "maf_mnist",
        128,
        false,
        flow_benches::maf_mnist::<Inner>(&device),
        flow_benches::maf_mnist::<Train>(&device),
    );
}

fn vae_planar(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("vae_planar");
    let steps: Vec<[Tensor<Inner, 2>; 4]> = (0..10)
        .map(|_| planar_inputs::<Inner>(128, 32, &device))
        .collect();
    group.bench_function("forward", |b| {
        b.iter(|| {
            let mut z = steps[0][0].clone();
            let mut ladj = Tensor::<Inner, 1>::zeros([128], &device);
            for [_, u, w, bias] in &steps {
                let (next, l) = planar(z, u.clone(), w.clone(), bias.clone());
                (z, ladj) = (next, ladj + l);
            }
            sync::<Inner>(&device);
            (z, ladj)
        })
    });
    let steps: Vec<[Tensor<Train, 2>; 4]> = (0..10)
        .map(|_| planar_inputs::<Train>(128, 32, &device).map(|t| t.require_grad()))
        .collect();
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let mut z = steps[0][0].clone();
            let mut ladj = Tensor::<Train, 1>::zeros([128], &device);
            for [_, u, w, bias] in &steps {
                let (next, l) = planar(z, u.clone(), w.clone(), bias.clone());
                (z, ladj) = (next, ladj + l);
            }
            let grads = (z.sum() + ladj.sum()).backward();
            sync::<Train>(&device);
            grads
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = realnvp_moons, nsf_mog, maf_mnist, vae_planar
}
criterion_main!(benches);
