//! Fused CubeCL kernels (`flow_kernels`) against their tensor-op references
//! (`flow_core::reference`), on the backend the features select (`Inner`, `Train` below:
//! burn's unfused `CubeBackend` for wgpu, or for CUDA with `--features cuda`; in CI, wgpu on
//! Mesa's lavapipe).
//!
//! Inputs are fresh each run (the seed is printed; `FLOW_TEST_SEED` replays one) and include
//! the kernels' edge cases: saturated `tanh`, `w = 0`, the linear branch of softplus,
//! spline tails, knots and interval ends, shared and per-row parameters, and row counts
//! that do not fill the last cube.
//!
//! # Agreement
//! Values and gradients agree to relative `1e-5` (floor 1 near zero). Two correct f32
//! programs that sum in different orders can differ by more on ill-conditioned entries, so
//! every comparison also evaluates the reference in f64 on the same inputs: an entry that
//! differs from the reference by more than `1e-5` passes only if it is within `1e-5` of the
//! f64 value, or (where f32 cannot get that close) within twice the f32 reference's own
//! worst error in that output (four times for the `K`-step Sylvester stack); the number of
//! such entries is printed. A wrong term fails
//! all three: it is off by orders of magnitude more.
//!
//! With `--features flex` (and neither GPU feature) the spline tests check the CPU kernel
//! the same way: `cargo test -p flow-core --features flex --test fused`.
#![cfg(any(feature = "wgpu", feature = "cuda", feature = "flex"))]

mod common;

use burn::tensor::{
    Distribution, Tensor, TensorData,
    backend::{AutodiffBackend, Backend},
};
use common::{SPLINE_TOL, host};
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use flow_core::{
    Amortized, AmortizedStep, PlanarConfig, SylvesterQ, Transform, planar,
    reference::{planar as planar_reference, sylvester_stack as sylvester_reference},
    sylvester_stack,
};
use flow_core::{
    CouplingConfig, Elementwise, MaskedAutoregressiveConfig, RqSpline,
    reference::{
        rq_spline as rq_spline_reference, rq_spline_inverse as rq_spline_inverse_reference,
    },
    rq_spline, rq_spline_inverse,
    testing::{self, gpu_test_device, randomize},
};

/// The backend under test: the unfused CubeCL backend of the GPU feature, else `Flex`.
#[cfg(feature = "cuda")]
type Inner = flow_kernels::backends::CudaInner;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
type Inner = flow_kernels::backends::WgpuInner;
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
type Inner = burn::backend::Flex;
/// [`Inner`] with autodiff.
type Train = burn::backend::Autodiff<Inner>;

/// Values and gradients agree to this (relative, floor 1 near zero; f32).
const REL: f64 = 1e-5;

type Ad64 = burn::backend::Autodiff<burn::backend::NdArray<f64>>;

fn fresh_seed() -> u64 {
    let seed = std::env::var("FLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_nanos() as u64)
                .unwrap_or(0)
        });
    eprintln!("fused kernels: seed {seed} (replay with FLOW_TEST_SEED={seed})");
    seed
}

/// `t` on another backend (through the host). The f64 CPU backend is safe here: this binary
/// creates no f32 ndarray tensors, so the CPU device's float type is f64.
fn moved<A: Backend, B: Backend, const D: usize>(
    t: &Tensor<A, D>,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(host(t.clone()), t.shape()), device)
}

/// Compares named output vectors of the fused kernel with the reference's; see the module
/// docs for the f64 fallback.
fn assert_agree(
    case: &str,
    names: &[&str],
    fused: &[Vec<f64>],
    reference: &[Vec<f64>],
    truth: &[Vec<f64>],
) {
    assert_agree_within(case, names, fused, reference, truth, 2.0);
}

/// [`assert_agree`] with the fallback's allowance `slack` times the reference's worst
/// error instead of twice.
fn assert_agree_within(
    case: &str,
    names: &[&str],
    fused: &[Vec<f64>],
    reference: &[Vec<f64>],
    truth: &[Vec<f64>],
    slack: f64,
) {
    let scaled = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
    let mut explained = 0;
    for (k, name) in names.iter().enumerate() {
        let (f, r, t) = (&fused[k], &reference[k], &truth[k]);
        assert_eq!(f.len(), r.len(), "{name} ({case}): lengths");
        // The f32 reference's worst error anywhere in this output.
        let worst_ref = r
            .iter()
            .zip(t)
            .map(|(r, t)| scaled(*r, *t))
            .fold(0.0, f64::max);
        for i in 0..f.len() {
            let diff = scaled(f[i], r[i]);
            if diff <= REL {
                continue;
            }
            let error = scaled(f[i], t[i]);
            assert!(
                error <= REL || error <= slack * worst_ref,
                "{name}[{i}] ({case}): fused {}, reference {}, f64 {}: relative difference \
                 {diff:.2e} > {REL:.0e}, fused error {error:.2e}, the reference's worst \
                 {worst_ref:.2e}",
                f[i],
                r[i],
                t[i]
            );
            explained += 1;
        }
    }
    if explained > 0 {
        eprintln!("{case}: {explained} entries beyond {REL:.0e} of the reference, as close to f64");
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// Planar inputs `(z, u, w, b)` with `n` rows and `m ∈ {1, n}` parameter rows, edge rows
/// planted when `m = n`: row 0 saturates tanh, row 1 has `w = 0`, row 2 has `wᵀu > 20`.
fn planar_inputs<B: Backend>(
    n: usize,
    d: usize,
    m: usize,
    device: &B::Device,
) -> [Tensor<B, 2>; 4] {
    let normal = |rows, cols, std| {
        Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, std), device)
    };
    // Parameters at the scale a trained layer has (wᵀu of order 1): with wᵀu ≪ 0 the
    // ladj's 1/(1 + h'·wᵀû) is ill-conditioned in f32 (1 + wᵀû = softplus(wᵀu) → 0) and no
    // two f32 implementations agree to 1e-5 there.
    let scale = 1.0 / (d as f64).sqrt();
    let mut z = normal(n, d, 1.5);
    let (mut u, mut w, mut b) = (normal(m, d, scale), normal(m, d, scale), normal(m, 1, 1.0));
    if m == n && n >= 3 {
        let mut zv = host(z.clone());
        let mut wv = host(w.clone());
        let mut uv = host(u.clone());
        let mut bv = host(b.clone());
        // Rows 0 and 2: a = wᵀz + b far in tanh's flat tail (h' = 0). Row 2 needs it: with
        // wᵀu > 20, wᵀû ≈ wᵀu − 1 multiplies any rounding of h' in the ladj; its z is 0 so
        // that its large w cannot pull a back out of the tail.
        bv[0] = 40.0;
        bv[2] = 40.0;
        zv[2 * d..3 * d].fill(0.0);
        wv[d..2 * d].fill(0.0); // a translation: û is irrelevant, w/‖w‖² guarded
        for k in 0..d {
            wv[2 * d + k] = 5.0; // wᵀu = 25·d > 20: softplus' linear branch
            uv[2 * d + k] = 5.0;
        }
        let t = |v: Vec<f64>, cols| {
            Tensor::from_data(
                TensorData::new(v.iter().map(|&x| x as f32).collect(), [m, cols]),
                device,
            )
        };
        (u, w, b) = (t(uv, d), t(wv, d), t(bv, 1));
        z = Tensor::from_data(
            TensorData::new(zv.iter().map(|&x| x as f32).collect(), [n, d]),
            device,
        );
    }
    [z, u, w, b]
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
const PLANAR_OUTPUTS: [&str; 6] = ["z'", "ladj", "∂z", "∂u", "∂w", "∂b"];

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// Values, ladj and the gradients of `(z, u, w, b)` for the loss `Σ z'·gy + Σ ladj·gl`,
/// through the fused kernel or the reference.
fn planar_outputs<B: AutodiffBackend>(
    fused: bool,
    inputs: &[Tensor<B, 2>; 4],
    (gy, gl): (Tensor<B, 2>, Tensor<B, 1>),
) -> Vec<Vec<f64>> {
    let inputs = inputs.clone().map(|t| t.require_grad());
    let [z, u, w, b] = inputs.clone();
    let (y, l) = if fused {
        assert!(
            flow_kernels::planar::planar(&z, &u, &w, &b).is_some(),
            "no fused kernel taken"
        );
        planar(z, u, w, b)
    } else {
        planar_reference(z, u, w, b)
    };
    let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
    let mut out = vec![host(y), host(l)];
    out.extend(
        inputs
            .iter()
            .map(|t| host(t.grad(&grads).expect("every input gets a gradient"))),
    );
    out
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// Fused and reference planar steps agree in values (inference and training backends) and
/// in the gradients of every input (the fused backward against autodiff of the reference).
#[test]
fn planar_step_matches_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let cpu = Default::default();
    for (n, d, shared) in [
        (37, 5, false),
        (37, 5, true),
        (1, 3, false),
        (130, 16, false),
    ] {
        let case = format!("planar n={n} d={d} shared={shared}");
        let m = if shared { 1 } else { n };
        let inputs = planar_inputs::<Train>(n, d, m, &device);
        let weights = (
            Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device),
            Tensor::<Train, 1>::random([n], Distribution::Normal(0.0, 1.0), &device),
        );
        let truth = planar_outputs::<Ad64>(
            false,
            &inputs.clone().map(|t| moved(&t, &cpu)),
            (moved(&weights.0, &cpu), moved(&weights.1, &cpu)),
        );
        // Inference backend: values only.
        let [z, u, w, b] = inputs.clone().map(|t| moved::<_, Inner, 2>(&t, &device));
        assert!(
            flow_kernels::planar::planar(&z, &u, &w, &b).is_some(),
            "no fused kernel taken"
        );
        let (y, l) = planar(z.clone(), u.clone(), w.clone(), b.clone());
        let (y_ref, l_ref) = planar_reference(z, u, w, b);
        assert_agree(
            &format!("{case} inner"),
            &PLANAR_OUTPUTS[..2],
            &[host(y), host(l)],
            &[host(y_ref), host(l_ref)],
            &truth,
        );
        // Training backend: values and gradients.
        let fused = planar_outputs(true, &inputs, weights.clone());
        let reference = planar_outputs(false, &inputs, weights);
        assert_agree(&case, &PLANAR_OUTPUTS, &fused, &reference, &truth);
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// The planar layer on the fused backend passes the shared property checks: its ladj
/// against the autodiff Jacobian (which runs the fused backward), gradients to every
/// parameter, finite extremes, batch consistency.
#[test]
fn planar_layer_on_fused_backend_passes_the_harness() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let layer = randomize(
        PlanarConfig::new(4)
            .with_init_std(0.7)
            .init::<Train>(&device)
            .unwrap(),
        0.3,
    );
    let x = testing::standard_inputs::<Train>(16, 4, 3, &device);
    let report = testing::check_transform(&layer, x, None, common::TOL).unwrap();
    assert_eq!(report.params_checked, 3);
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// `(z, θ)` for `steps` Sylvester steps of kind `q` on `n` rows of `d` features with `rows`
/// parameter rows, with the CPU kernel test's edge cases: row 1 (step 0) with both
/// diagonals saturated, row 2 (step 1) with a saturated pre-activation, and for H-SNF row 3
/// (step 2) with a vanishing reflection vector.
fn sylvester_inputs<B: Backend>(
    (n, d, steps, rows): (usize, usize, usize, usize),
    q: SylvesterQ,
    device: &B::Device,
) -> [Tensor<B, 2>; 2] {
    let (p, m) = (q.params_per_step(d), q.columns(d));
    let z = Tensor::<B, 2>::random([n, d], Distribution::Uniform(-2.0, 2.0), device);
    let mut theta = host(Tensor::<B, 2>::random(
        [rows, steps * p],
        Distribution::Uniform(-1.0, 1.0),
        device,
    ));
    theta[steps * p] = 30.0;
    theta[steps * p + m * m] = -30.0;
    theta[2 * steps * p + p + m * m + m] = 40.0;
    if let SylvesterQ::Householder { .. } = q {
        let at = 3 * steps * p + 2 * p + m * m + 2 * m;
        theta[at..at + d].fill(0.0);
    }
    let theta = Tensor::from_data(
        TensorData::new(theta.iter().map(|&x| x as f32).collect(), [rows, steps * p]),
        device,
    );
    [z, theta]
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// The Sylvester comparison's allowance, in multiples of the f32 reference's worst error:
/// every value of `K` steps (and, for O-SNF, the orthogonalization's backward behind `∂θ`)
/// carries the rounding of the steps before it, and the kernel's f32 sums round in another
/// order than the reference's matrix products, so on ill-conditioned entries one f32
/// program can be 2–3× further from f64 than the other's worst (seen: 3.9e-5 against
/// 1.9e-5). A wrong term is off by 1e-1 and more.
const SYLVESTER_SLACK: f64 = 4.0;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
const SYLVESTER_OUTPUTS: [&str; 4] = ["z_K", "ladj", "∂z", "∂θ"];

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// Values, ladj and the gradients of `(z, θ)` for the loss `Σ z_K·gy + Σ ladj·gl`, through
/// the fused kernel (`flow_core::sylvester_stack`) or the reference.
fn sylvester_outputs<B: AutodiffBackend>(
    fused: bool,
    [z, theta]: &[Tensor<B, 2>; 2],
    steps: usize,
    q: SylvesterQ,
    (gy, gl): (Tensor<B, 2>, Tensor<B, 1>),
) -> Vec<Vec<f64>> {
    let (z, theta) = (z.clone().require_grad(), theta.clone().require_grad());
    let run = if fused {
        sylvester_stack
    } else {
        sylvester_reference
    };
    let (y, l) = run(z.clone(), theta.clone(), steps, q);
    let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
    let grad = |t: &Tensor<B, 2>| host(t.grad(&grads).expect("every input gets a gradient"));
    vec![host(y), host(l), grad(&z), grad(&theta)]
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// The fused Sylvester steps agree with the tensor-op reference for each kind of `Q`, with
/// parameters per row or tiled (3 samples of each parameter row, whose gradients sum), in
/// values (inference and training backends) and in the gradients of `z` and `θ` (for O-SNF
/// through the orthogonalization, which both run as tensor operations here).
#[test]
fn sylvester_stack_matches_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let cpu = Default::default();
    let (n, d, steps) = (18, 5, 3);
    // Per-row and tiled parameters between them (lavapipe runs the reference slowly).
    let cases = [
        (SylvesterQ::Triangular, n),
        (SylvesterQ::Householder { reflections: 3 }, n / 3),
        (SylvesterQ::Orthogonal { columns: 3 }, n / 3),
        (SylvesterQ::Orthogonal { columns: 5 }, n),
    ];
    for (q, rows) in cases {
        let case = format!("{q:?}, {rows} parameter rows");
        let inputs = sylvester_inputs::<Train>((n, d, steps, rows), q, &device);
        // The kernel is taken on both backends (O-SNF's needs the orthonormal columns,
        // whose values do not matter here).
        let columns = match q {
            SylvesterQ::Orthogonal { columns } => {
                Some(Tensor::zeros([rows, steps * d * columns], &device))
            }
            _ => None,
        };
        let basis = match q {
            SylvesterQ::Triangular => flow_kernels::sylvester::Basis::Alternating,
            SylvesterQ::Householder { reflections } => {
                flow_kernels::sylvester::Basis::Reflections(reflections)
            }
            SylvesterQ::Orthogonal { columns } => flow_kernels::sylvester::Basis::Columns(columns),
        };
        let [z, theta] = &inputs;
        assert!(
            flow_kernels::sylvester::sylvester_stack(z, theta, columns.as_ref(), steps, basis)
                .is_some(),
            "{case}: no fused kernel taken"
        );
        let weights = (
            Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device),
            Tensor::<Train, 1>::random([n], Distribution::Normal(0.0, 1.0), &device),
        );
        let truth = sylvester_outputs::<Ad64>(
            false,
            &inputs.clone().map(|t| moved(&t, &cpu)),
            steps,
            q,
            (moved(&weights.0, &cpu), moved(&weights.1, &cpu)),
        );
        // Inference backend: values only.
        let [z, theta] = inputs.clone().map(|t| moved::<_, Inner, 2>(&t, &device));
        let (y, l) = sylvester_stack(z.clone(), theta.clone(), steps, q);
        let (y_ref, l_ref) = sylvester_reference(z, theta, steps, q);
        assert_agree(
            &format!("{case} inner"),
            &SYLVESTER_OUTPUTS[..2],
            &[host(y), host(l)],
            &[host(y_ref), host(l_ref)],
            &truth,
        );
        // Training backend: values and gradients.
        let fused = sylvester_outputs(true, &inputs, steps, q, weights.clone());
        let reference = sylvester_outputs(false, &inputs, steps, q, weights);
        assert_agree_within(
            &case,
            &SYLVESTER_OUTPUTS,
            &fused,
            &reference,
            &truth,
            SYLVESTER_SLACK,
        );
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// The amortized Sylvester flows on the fused backend pass the shared property checks:
/// ladj against the autodiff Jacobian (through the fused backward), finite extremes, batch
/// consistency.
#[test]
fn sylvester_on_fused_backend_passes_the_harness() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    for q in [
        SylvesterQ::Triangular,
        SylvesterQ::Householder { reflections: 2 },
        SylvesterQ::Orthogonal { columns: 3 },
    ] {
        let flow = Amortized::<Train>::new(AmortizedStep::Sylvester(q), 4, 3).unwrap();
        let x = testing::standard_inputs::<Train>(8, 4, 3, &device).mul_scalar(1.5);
        let theta =
            testing::standard_inputs::<Train>(8, flow.context_dim(), 4, &device).mul_scalar(0.7);
        testing::check_transform(&flow, x, Some(&theta), common::TOL).unwrap();
    }
}

/// Spline inputs `(v, widths, heights, derivatives)`: `v` mostly inside `[−B, B]`, some in
/// the tails; when `m = n`, row 0 has zero parameters (uniform knots at `−B + 2Bi/K`) and
/// its entries sit on knots, on `±B` and just outside.
fn spline_inputs<B: Backend>(
    n: usize,
    d: usize,
    m: usize,
    std: f64,
    edges: bool,
    spec: &RqSpline,
    device: &B::Device,
) -> SplineArgs<B> {
    let k = spec.bins;
    let bound = spec.bound;
    let normal =
        |shape: [usize; 3]| Tensor::<B, 3>::random(shape, Distribution::Normal(0.0, std), device);
    let (mut w, mut h, mut dr) = (normal([m, d, k]), normal([m, d, k]), normal([m, d, k - 1]));
    let mut v = host(Tensor::<B, 2>::random(
        [n, d],
        Distribution::Normal(0.0, bound * 0.6),
        device,
    ));
    if edges && m == n {
        let zero_row = |t: Tensor<B, 3>| {
            let [_, d, c] = t.dims();
            t.slice_assign([0..1, 0..d, 0..c], Tensor::zeros([1, d, c], device))
        };
        (w, h, dr) = (zero_row(w), zero_row(h), zero_row(dr));
        let special = [-bound, bound, bound + 0.5, -bound - 3.0, 0.0];
        for (j, x) in v.iter_mut().take(d).enumerate() {
            // Knots of the uniform spline, then the interval's ends and the tails.
            *x = if j < k + 1 {
                -bound + 2.0 * bound * j as f64 / k as f64
            } else {
                special[(j - k - 1) % special.len()]
            };
        }
    }
    let v = Tensor::from_data(
        TensorData::new(v.iter().map(|&x| x as f32).collect(), [n, d]),
        device,
    );
    (v, w, h, dr)
}

type SplineArgs<B> = (Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>);

/// The spline, fused or reference, forward or inverse.
fn spline_call<B: Backend>(
    fused: bool,
    inverse: bool,
    (v, w, h, dr): SplineArgs<B>,
    spec: &RqSpline,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    match (fused, inverse) {
        (true, false) => rq_spline(v, w, h, dr, spec),
        (true, true) => rq_spline_inverse(v, w, h, dr, spec),
        (false, false) => rq_spline_reference(v, w, h, dr, spec),
        (false, true) => rq_spline_inverse_reference(v, w, h, dr, spec),
    }
}

/// Values, ladj and the gradients of `(v, widths, heights, derivatives)` for the loss
/// `Σ y·gy + Σ ladj·gl`, through the fused kernel or the reference.
fn spline_outputs<B: AutodiffBackend>(
    fused: bool,
    inverse: bool,
    (v, w, h, dr): SplineArgs<B>,
    (gy, gl): (Tensor<B, 2>, Tensor<B, 1>),
    spec: &RqSpline,
) -> Vec<Vec<f64>> {
    let (v, w, h, dr) = (
        v.require_grad(),
        w.require_grad(),
        h.require_grad(),
        dr.require_grad(),
    );
    let inputs = (v.clone(), w.clone(), h.clone(), dr.clone());
    let (y, l) = spline_call(fused, inverse, inputs, spec);
    let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
    let grad = |t: &Tensor<B, 3>| host(t.grad(&grads).expect("every parameter gets a gradient"));
    vec![
        host(y),
        host(l),
        host(v.grad(&grads).expect("the input gets a gradient")),
        grad(&w),
        grad(&h),
        grad(&dr),
    ]
}

const SPLINE_OUTPUTS: [&str; 6] = ["value", "ladj", "∂v", "∂widths", "∂heights", "∂derivatives"];

fn spline_f64(
    (v, w, h, dr): &SplineArgs<Train>,
    (gy, gl): &(Tensor<Train, 2>, Tensor<Train, 1>),
) -> (SplineArgs<Ad64>, (Tensor<Ad64, 2>, Tensor<Ad64, 1>)) {
    let cpu = Default::default();
    (
        (
            moved(v, &cpu),
            moved(w, &cpu),
            moved(h, &cpu),
            moved(dr, &cpu),
        ),
        (moved(gy, &cpu), moved(gl, &cpu)),
    )
}

/// Fused and reference splines agree, forward and inverse, in values (inference and
/// training backends) and in the gradients of the input and of every raw parameter, for up
/// to 5 bins of moderate steepness (steeper: [`rq_spline_is_as_accurate_as_reference`]).
#[test]
fn rq_spline_matches_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    for (n, d, bins, shared) in [
        (37, 9, 5, false),
        (37, 3, 5, true),
        (1, 2, 2, false),
        (64, 4, 4, false),
    ] {
        let spec = RqSpline::new(bins, 2.5);
        let m = if shared { 1 } else { n };
        for inverse in [false, true] {
            let case = format!("spline n={n} d={d} K={bins} shared={shared} inverse={inverse}");
            let inputs = spline_inputs::<Train>(n, d, m, 0.5, true, &spec, &device);
            let weights = (
                Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device),
                Tensor::<Train, 1>::random([n], Distribution::Normal(0.0, 1.0), &device),
            );
            let (inputs64, weights64) = spline_f64(&inputs, &weights);
            let truth = spline_outputs(false, inverse, inputs64, weights64, &spec);

            let (v, w, h, dr) = &inputs;
            let inner = (
                moved::<_, Inner, 2>(v, &device),
                moved(w, &device),
                moved(h, &device),
                moved(dr, &device),
            );
            let (vi, wi, hi, di) = &inner;
            let shape = spec.kernel_shape();
            let fused = flow_kernels::spline::rq_spline(vi, wi, hi, di, &shape, inverse);
            assert!(
                fused.is_some(),
                "the backend under test has the fused kernel"
            );
            let (y, l) = spline_call(true, inverse, inner.clone(), &spec);
            let (y_ref, l_ref) = spline_call(false, inverse, inner, &spec);
            assert_agree(
                &format!("{case} inner"),
                &SPLINE_OUTPUTS[..2],
                &[host(y), host(l)],
                &[host(y_ref), host(l_ref)],
                &truth,
            );

            let fused = spline_outputs(true, inverse, inputs.clone(), weights.clone(), &spec);
            let reference = spline_outputs(false, inverse, inputs, weights, &spec);
            assert_agree(&case, &SPLINE_OUTPUTS, &fused, &reference, &truth);
        }
    }
}

/// `(mean, maximum)` of the scaled errors `|got − want| / max(1, |want|)`.
fn scaled_errors(got: &[f64], want: &[f64]) -> (f64, f64) {
    let errs: Vec<f64> = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .collect();
    let mean = errs.iter().sum::<f64>() / errs.len() as f64;
    (mean, errs.iter().copied().fold(0.0, f64::max))
}

/// Steep splines (8 bins, raw parameters of std 0.5 and 1), where two f32 evaluations
/// differ by up to 1e-4 in the input's gradient: against an f64 evaluation of the reference
/// on the same inputs, in every output and gradient, the fused kernel's mean error is within
/// 4× the f32 reference's and its worst error within 30×. Measured over 11 runs × 24
/// outputs: mean ratio ≤ 2.7, worst-entry ratio mostly ≤ 5, once 11 (the inverse's ladj at
/// std 1: 1.5e-4 against the reference's 1.4e-5; one ill-conditioned entry of 600). The
/// fused inverse is the less accurate of the two on such splines; a wrong term would be off
/// by orders of magnitude more. No entries on knots here: an f32 and an f64 evaluation may
/// put those in neighbouring bins, where the second derivatives differ.
#[test]
fn rq_spline_is_as_accurate_as_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let (n, d) = (100, 6);
    let spec = RqSpline::new(8, 2.5);
    for std in [0.5, 1.0] {
        for inverse in [false, true] {
            let inputs = spline_inputs::<Train>(n, d, n, std, false, &spec, &device);
            let weights = (
                Tensor::<Train, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device),
                Tensor::<Train, 1>::random([n], Distribution::Normal(0.0, 1.0), &device),
            );
            let (inputs64, weights64) = spline_f64(&inputs, &weights);
            let fused = spline_outputs(true, inverse, inputs.clone(), weights.clone(), &spec);
            let reference = spline_outputs(false, inverse, inputs, weights, &spec);
            let truth = spline_outputs(false, inverse, inputs64, weights64, &spec);
            for (i, name) in SPLINE_OUTPUTS.iter().enumerate() {
                let (mean, max) = scaled_errors(&fused[i], &truth[i]);
                let (mean_ref, max_ref) = scaled_errors(&reference[i], &truth[i]);
                assert!(
                    mean <= 4.0 * mean_ref + 1e-8 && max <= 30.0 * max_ref + 1e-6,
                    "{name} (std {std}, inverse {inverse}): fused from f64 mean {mean:.2e} max \
                     {max:.2e}; reference mean {mean_ref:.2e} max {max_ref:.2e}"
                );
            }
        }
    }
}

/// Spline layers on the fused backend pass the shared property checks (round trip through
/// the fused inverse, ladj against the autodiff Jacobian through the fused backward,
/// gradients to every parameter, finite extremes).
#[test]
fn spline_layers_on_fused_backend_pass_the_harness() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let x = testing::standard_inputs::<Train>(16, 4, 3, &device);
    let coupling = randomize(
        CouplingConfig::new(4, Elementwise::spline(6, 3.0))
            .with_hidden(8)
            .init::<Train>(&device)
            .unwrap(),
        0.3,
    );
    testing::check_invertible(&coupling, x.clone(), None, SPLINE_TOL).unwrap();
    let maf = randomize(
        MaskedAutoregressiveConfig::new(4, Elementwise::spline(6, 3.0))
            .with_hidden(12)
            .init::<Train>(&device)
            .unwrap(),
        0.3,
    );
    testing::check_invertible(&maf, x, None, SPLINE_TOL).unwrap();
}
