//! Fused CubeCL kernels (`flow_kernels`) against the tensor-op references they replace,
//! on the backend the features select (`cargo bench -p flow-benches --features wgpu --bench
//! fused`, or `--features cuda`).
//!
//! Each iteration ends with `Backend::sync`, so the time is the device's, not the time to
//! enqueue. Shapes: the planar step as train-vae uses it (batch 128 and 4096, latent 32,
//! amortized parameters; a 10-step chain forward + backward), and a spline layer's
//! element-wise transform (batch 1024, 8 features, 8 bins; forward, inverse, forward +
//! backward), and the Sylvester stack of train-vae's posteriors (16 steps on a latent of
//! 32, amortized parameters, batch 128 and 1024; forward + backward; O-SNF with M = 16,
//! H-SNF with H = 8).

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu {
    use burn::tensor::{Tensor, backend::Backend};
    use criterion::{BenchmarkId, Criterion};
    use flow_benches::{planar_inputs, spline_inputs};
    use flow_core::{
        RqSpline, SylvesterQ, planar,
        reference::{
            planar as planar_reference, rq_spline as rq_spline_reference,
            rq_spline_inverse as rq_spline_inverse_reference,
            sylvester_stack as sylvester_reference,
        },
        rq_spline, rq_spline_inverse, sylvester_stack,
    };
    // The unfused backend: the one the kernels run on (burn-fusion's takes the references).
    #[cfg(feature = "cuda")]
    use flow_programs::CudaInner as Inner;
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    use flow_programs::WgpuInner as Inner;
    type Train = burn::backend::Autodiff<Inner>;

    type Kernel<B> = fn([Tensor<B, 2>; 4]) -> (Tensor<B, 2>, Tensor<B, 1>);

    fn sync<B: Backend>(device: &B::Device) {
        B::sync(device).expect("the device finishes its queue");
    }

    pub fn planar_step(c: &mut Criterion) {
        let device = Default::default();
        let mut group = c.benchmark_group("planar_step_forward");
        for n in [128, 4096] {
            let inputs = planar_inputs::<Inner>(n, 32, &device);
            let kernels: [(&str, Kernel<Inner>); 2] = [
                ("fused", |[z, u, w, b]| planar(z, u, w, b)),
                ("reference", |[z, u, w, b]| planar_reference(z, u, w, b)),
            ];
            for (name, f) in kernels {
                group.bench_with_input(BenchmarkId::new(name, n), &inputs, |bench, inputs| {
                    bench.iter(|| {
                        let out = f(inputs.clone());
                        sync::<Inner>(&device);
                        out
                    })
                });
            }
        }
        group.finish();

        // The VAE posterior: 10 amortized steps, forward and backward.
        let mut group = c.benchmark_group("planar_chain10_train");
        for n in [128, 4096] {
            let steps: Vec<[Tensor<Train, 2>; 4]> = (0..10)
                .map(|_| planar_inputs::<Train>(n, 32, &device).map(|t| t.require_grad()))
                .collect();
            let kernels: [(&str, Kernel<Train>); 2] = [
                ("fused", |[z, u, w, b]| planar(z, u, w, b)),
                ("reference", |[z, u, w, b]| planar_reference(z, u, w, b)),
            ];
            for (name, f) in kernels {
                group.bench_with_input(BenchmarkId::new(name, n), &steps, |bench, steps| {
                    bench.iter(|| {
                        let mut z = steps[0][0].clone();
                        let mut ladj = Tensor::<Train, 1>::zeros([n], &device);
                        for [_, u, w, b] in steps {
                            let (next, l) = f([z, u.clone(), w.clone(), b.clone()]);
                            (z, ladj) = (next, ladj + l);
                        }
                        let grads = (z.sum() + ladj.sum()).backward();
                        sync::<Train>(&device);
                        grads
                    })
                });
            }
        }
        group.finish();
    }

    pub fn spline(c: &mut Criterion) {
        let device = Default::default();
        let spec = RqSpline::new(8, 3.0);
        let (n, d) = (1024, 8);
        let mut group = c.benchmark_group("rq_spline");
        let (x, w, h, dr) = spline_inputs::<Inner>(n, d, spec.bins, &device);
        for (name, fused, inverse) in [
            ("forward/fused", true, false),
            ("forward/reference", false, false),
            ("inverse/fused", true, true),
            ("inverse/reference", false, true),
        ] {
            let f = match (fused, inverse) {
                (true, false) => rq_spline::<Inner>,
                (false, false) => rq_spline_reference::<Inner>,
                (true, true) => rq_spline_inverse::<Inner>,
                (false, true) => rq_spline_inverse_reference::<Inner>,
            };
            group.bench_function(name, |bench| {
                bench.iter(|| {
                    let out = f(x.clone(), w.clone(), h.clone(), dr.clone(), &spec);
                    sync::<Inner>(&device);
                    out
                })
            });
        }
        let (x, w, h, dr) = spline_inputs::<Train>(n, d, spec.bins, &device);
        let (w, h, dr) = (w.require_grad(), h.require_grad(), dr.require_grad());
        for fused in [true, false] {
            let name = if fused {
                "train/fused"
            } else {
                "train/reference"
            };
            group.bench_function(name, |bench| {
                bench.iter(|| {
                    let args = (x.clone(), w.clone(), h.clone(), dr.clone());
                    let (y, l) = if fused {
                        rq_spline(args.0, args.1, args.2, args.3, &spec)
                    } else {
                        rq_spline_reference(args.0, args.1, args.2, args.3, &spec)
                    };
                    let grads = (y.sum() + l.sum()).backward();
                    sync::<Train>(&device);
                    grads
                })
            });
        }
        group.finish();
    }

    pub fn sylvester(c: &mut Criterion) {
        use burn::tensor::Distribution;
        let device = Default::default();
        // The train-vae default, 16 steps on a latent of 32, is more than a software
        // adapter's loop limit lets the kernel run (`flow_kernels::backends::wgpu_software`:
        // the reference would run on both sides); there 8 steps on 16.
        #[cfg(feature = "cuda")]
        let software = false;
        #[cfg(not(feature = "cuda"))]
        let software = flow_programs::wgpu_software(&device);
        let (d, steps) = if software { (16, 8) } else { (32, 16) };
        let mut group = c.benchmark_group(format!("sylvester_train_d{d}_k{steps}"));
        for (kind, q) in [
            ("t", SylvesterQ::Triangular),
            ("h", SylvesterQ::Householder { reflections: 8 }),
            ("o", SylvesterQ::Orthogonal { columns: 16 }),
        ] {
            for n in [128, 1024] {
                let z = Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
                let theta = Tensor::<Train, 2>::random(
                    [n, steps * q.params_per_step(d)],
                    Distribution::Normal(0.0, 0.1),
                    &device,
                )
                .require_grad();
                type Stack = fn(
                    Tensor<Train, 2>,
                    Tensor<Train, 2>,
                    usize,
                    SylvesterQ,
                ) -> (Tensor<Train, 2>, Tensor<Train, 1>);
                let kernels: [(&str, Stack); 2] = [
                    ("fused", sylvester_stack),
                    ("reference", sylvester_reference),
                ];
                for (name, f) in kernels {
                    let id = BenchmarkId::new(format!("{kind}/{name}"), n);
                    group.bench_function(id, |bench| {
                        bench.iter(|| {
                            let (y, l) = f(z.clone(), theta.clone(), steps, q);
                            let grads = (y.sum() + l.sum()).backward();
                            sync::<Train>(&device);
                            grads
                        })
                    });
                }
            }
        }
        group.finish();
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
criterion::criterion_group! {
    name = benches;
    config = criterion::Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = gpu::planar_step, gpu::spline, gpu::sylvester
}
#[cfg(any(feature = "wgpu", feature = "cuda"))]
criterion::criterion_main!(benches);

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn main() {
    eprintln!("the fused-kernel benchmarks need a CubeCL backend: add `--features wgpu` or `cuda`");
}
