//! The `K`-step Sylvester stack of each kind of `Q`: fused kernel against the tensor-op
//! reference, and the amortized flows on the fused backend through the harness.

use burn::tensor::{
    Distribution, Tensor, TensorData,
    backend::{AutodiffBackend, Backend},
};
use flow_core::{
    Amortized, AmortizedStep, SylvesterQ, Transform,
    reference::sylvester_stack as sylvester_reference,
    sylvester_stack,
    testing::{self, gpu_test_device},
};

use super::{
    Ad64, Inner, Train, assert_agree, assert_agree_within, common, fresh_seed, host, moved,
};

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

/// The Sylvester comparison's allowance, in multiples of the f32 reference's worst error:
/// every value of `K` steps (and, for O-SNF, the orthogonalization's backward behind `∂θ`)
/// carries the rounding of the steps before it, and the kernel's f32 sums round in another
/// order than the reference's matrix products, so on ill-conditioned entries one f32
/// program can be 2–3× further from f64 than the other's worst (seen: 3.9e-5 against
/// 1.9e-5). A wrong term is off by 1e-1 and more.
const SYLVESTER_SLACK: f64 = 4.0;

const SYLVESTER_OUTPUTS: [&str; 4] = ["z_K", "ladj", "∂z", "∂θ"];

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

/// Loss weights `(g_y, g_l)` and the f64 values and gradients they give.
type WeightsAndTruth = ((Tensor<Train, 2>, Tensor<Train, 1>), Vec<Vec<f64>>);

/// Random loss weights `(g_y, g_l)` for `inputs` and the f64 truth of
/// [`sylvester_outputs`] for them (the reference on the CPU in f64).
fn weights_and_truth(
    inputs: &[Tensor<Train, 2>; 2],
    steps: usize,
    q: SylvesterQ,
) -> WeightsAndTruth {
    let (device, cpu) = (inputs[0].device(), Default::default());
    let [n, d] = inputs[0].dims();
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
    (weights, truth)
}

/// `flow_core::sylvester_stack` and the reference agree on the training backend, in values
/// and in the gradients of `z` and `θ`.
fn assert_training_agrees(
    case: &str,
    inputs: &[Tensor<Train, 2>; 2],
    steps: usize,
    q: SylvesterQ,
    (weights, truth): WeightsAndTruth,
) {
    let fused = sylvester_outputs(true, inputs, steps, q, weights.clone());
    let reference = sylvester_outputs(false, inputs, steps, q, weights);
    assert_agree_within(
        case,
        &SYLVESTER_OUTPUTS,
        &fused,
        &reference,
        &truth,
        SYLVESTER_SLACK,
    );
}

/// Whether `flow_kernels` takes `steps` steps of kind `q` on `inputs` (for O-SNF with
/// orthonormal columns whose values do not matter here).
fn kernel_taken(inputs: &[Tensor<Train, 2>; 2], steps: usize, q: SylvesterQ) -> bool {
    use flow_kernels::sylvester::{Basis, sylvester_stack as kernel};
    let [z, theta] = inputs;
    let (rows, d) = (theta.dims()[0], z.dims()[1]);
    let (basis, columns) = match q {
        SylvesterQ::Triangular => (Basis::Alternating, None),
        SylvesterQ::Householder { reflections } => (Basis::Reflections(reflections), None),
        SylvesterQ::Orthogonal { columns } => (
            Basis::Columns(columns),
            Some(Tensor::zeros([rows, steps * d * columns], &z.device())),
        ),
    };
    kernel(z, theta, columns.as_ref(), steps, basis).is_some()
}

/// The fused Sylvester steps agree with the tensor-op reference for each kind of `Q`, with
/// parameters per row or tiled (3 samples of each parameter row, whose gradients sum), in
/// values (inference and training backends) and in the gradients of `z` and `θ` (for O-SNF
/// through the orthogonalization, which both run as tensor operations on CubeCL).
#[test]
fn sylvester_stack_matches_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
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
        assert!(
            kernel_taken(&inputs, steps, q),
            "{case}: no fused kernel taken"
        );
        let (weights, truth) = weights_and_truth(&inputs, steps, q);
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
        assert_training_agrees(&case, &inputs, steps, q, (weights, truth));
    }
}

/// On a software wgpu adapter (lavapipe: its loop nests stop after 65,535 iterations) a
/// stack whose loops would run longer is left to the tensor-op reference, and
/// `flow_core::sylvester_stack` stays right: T-SNF on `d = 32` with `K = 16` steps, which
/// the kernel computes wrongly there (its gradients off by O(1)). On a GPU the kernel takes
/// it, and agrees.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
#[test]
fn a_stack_too_long_for_a_software_adapter_runs_the_reference() {
    let Some(_gpu) = gpu_test_device() else {
        return;
    };
    let device = Default::default();
    <Train as Backend>::seed(&device, fresh_seed());
    let (n, d, steps, q) = (4, 32, 16, SylvesterQ::Triangular);
    let inputs = sylvester_inputs::<Train>((n, d, steps, n), q, &device);
    let taken = kernel_taken(&inputs, steps, q);
    assert_eq!(
        taken,
        !flow_kernels::backends::wgpu_software(&device),
        "the kernel is taken exactly on a GPU"
    );
    let truth = weights_and_truth(&inputs, steps, q);
    assert_training_agrees("T-SNF, d = 32, K = 16", &inputs, steps, q, truth);
}

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
