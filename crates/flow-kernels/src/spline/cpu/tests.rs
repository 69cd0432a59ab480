//! The CPU spline against flow-core's tensor-op reference (in f64) and central
//! differences: values, ladj and every gradient, both layouts, edge cases.

use burn::tensor::TensorData;

use super::*;
use crate::host::check::{assert_agree, uniforms, values_of};
use flow_core::{
    RqSpline,
    reference::{
        rq_spline as rq_spline_reference, rq_spline_inverse as rq_spline_inverse_reference,
    },
};

type Args<B> = (Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>);

type B = burn::backend::Autodiff<burn::backend::NdArray>;
/// The spline references run in `f64`: in `f32` their autodiff sums cancelling terms
/// (narrow bins), in an order that varies from run to run, and lands up to 3e-3 off
/// (measured) where the kernel, `f64` inside, is within 3e-6 of the `f64` values.
type B64 = burn::backend::Autodiff<burn::backend::NdArray<f64>>;

/// flow-core's spline of the same shape (the references' argument). Not
/// `RqSpline::kernel_shape`: that returns the type of the flow-kernels flow-core links, not of
/// the copy under test.
fn reference_spec(s: &Shape) -> RqSpline {
    RqSpline {
        bins: s.bins,
        bound: s.bound,
        min_bin_width: s.min_bin_width,
        min_bin_height: s.min_bin_height,
        min_derivative: s.min_derivative,
    }
}

/// The same values as an `f64` tensor.
fn in_f64<const D: usize>(t: Tensor<B, D>) -> Tensor<B64, D> {
    let at = (&Default::default(), burn::tensor::DType::F64);
    Tensor::from_data(t.into_data().convert::<f64>(), at)
}

/// Spline tolerances against the `f64` reference: values and ladj to the kernel's `f32`
/// outputs (measured ≤ 6e-8); gradients to the `f32` sum over the rows of shared
/// parameters (measured ≤ 3e-6; the backward's exactness is the central-difference
/// test's job). A wrong term is off by O(1).
fn spline_tol(name: &str) -> f64 {
    if name.starts_with('∂') { 3e-5 } else { 1e-6 }
}

/// Values, ladj and every input's gradient of `Σ y·gy + Σ ladj·gl`.
fn outputs<C: burn::tensor::backend::AutodiffBackend>(
    fused: bool,
    inverse: bool,
    args: &Args<C>,
    spec: &Shape,
) -> Vec<Vec<f64>> {
    let (v, w, h, d) = args.clone();
    let (v, w, h, d) = (
        v.require_grad(),
        w.require_grad(),
        h.require_grad(),
        d.require_grad(),
    );
    let inputs = (v.clone(), w.clone(), h.clone(), d.clone());
    let (y, l) = match (fused, inverse) {
        (true, _) => rq_spline(&inputs.0, &inputs.1, &inputs.2, &inputs.3, spec, inverse)
            .expect("ndarray has the CPU kernel"),
        (false, false) => rq_spline_reference(
            inputs.0,
            inputs.1,
            inputs.2,
            inputs.3,
            &reference_spec(spec),
        ),
        (false, true) => rq_spline_inverse_reference(
            inputs.0,
            inputs.1,
            inputs.2,
            inputs.3,
            &reference_spec(spec),
        ),
    };
    let [n, dim] = y.dims();
    let device = y.device();
    let dtype = y.dtype();
    // Fixed, distinct upstream gradients (a function of the position only).
    let ramp = |count: usize, scale: f64, offset: f64| -> Vec<f32> {
        (0..count)
            .map(|i| (i as f64 * scale + offset) as f32)
            .collect()
    };
    let gy = Tensor::<C, 2>::from_data(
        TensorData::new(ramp(n * dim, 1.0 / (n * dim) as f64, -0.3), [n, dim]),
        (&device, dtype),
    );
    let gl = Tensor::<C, 1>::from_data(
        TensorData::new(ramp(n, 1.0 / n as f64, 0.5), [n]),
        (&device, dtype),
    );
    let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
    vec![
        values_of(y),
        values_of(l),
        values_of(v.grad(&grads).unwrap()),
        values_of(w.grad(&grads).unwrap()),
        values_of(h.grad(&grads).unwrap()),
        values_of(d.grad(&grads).unwrap()),
    ]
}

/// Every gradient of the backward pass against central differences of the forward
/// pass (the lanes' code: an independent implementation of the bin search and the map),
/// both in `f64` (a check of the hand-written derivatives).
#[test]
fn backward_matches_central_differences() {
    let spec = Spec::new(&Shape::new(6, 2.5));
    let k = spec.bins;
    let mut uniform = uniforms(0x2545_F491_4F6C_DD1D);
    let mut scratch = vec![0.0; 2 * k];
    for inverse in [false, true] {
        for case in 0..40 {
            let mut p: Vec<f64> = (0..3 * k - 1).map(|_| uniform()).collect();
            let v = 2.4 * uniform();
            let (g_out, g_log) = (uniform(), uniform());
            // The forward pass (the lanes' code, every lane the same entry).
            let loss = |v: f64, p: &[f64]| {
                let mut raw: Vec<Lanes> = p.iter().map(|&p| [p; LANES]).collect();
                let (y, l) = entries([v; LANES], &mut raw, &spec, inverse);
                g_out * y[0] + g_log * l[0]
            };
            let (mut gw, mut gh, mut gd) = (vec![0.0; k], vec![0.0; k], vec![0.0; k - 1]);
            let raw = Raw {
                w: &p[..k],
                h: &p[k..2 * k],
                d: &p[2 * k..],
            };
            let gv = entry_backward(
                v,
                raw,
                &spec,
                inverse,
                (g_out, g_log),
                &mut scratch,
                &mut gw,
                &mut gh,
                &mut gd,
            );
            let eps = 1e-6;
            let fd_v = (loss(v + eps, &p) - loss(v - eps, &p)) / (2.0 * eps);
            let mut analytic = vec![gv];
            let mut numeric = vec![fd_v];
            for (q, g) in gw.iter().chain(&gh).chain(&gd).enumerate() {
                let at = p[q];
                p[q] = at + eps;
                let up = loss(v, &p);
                p[q] = at - eps;
                let down = loss(v, &p);
                p[q] = at;
                analytic.push(*g);
                numeric.push((up - down) / (2.0 * eps));
            }
            for (i, (a, b)) in analytic.iter().zip(&numeric).enumerate() {
                // Central differences at h = 1e-6 in f64: ~1e-9 truncation, ~1e-10
                // rounding; gradients are f64 throughout.
                let tol = 1e-6 * b.abs().max(1.0);
                assert!(
                    (a - b).abs() <= tol,
                    "case {case}, inverse {inverse}, input {i}: backward {a}, differences {b}"
                );
            }
        }
    }
}

/// Values, ladj and the gradients of `x` and of the packed parameters `[m, 3K − 1, d]` of
/// `Σ y·weights + Σ ladj`: the kernel on the packed layout, or the reference on the
/// parameters split into `[m, d, K]` tensors.
fn packed_outputs<C: burn::tensor::backend::AutodiffBackend>(
    fused: bool,
    inverse: bool,
    [x, weights]: [&Tensor<C, 2>; 2],
    params: &Tensor<C, 3>,
    spec: &Shape,
) -> Vec<Vec<f64>> {
    let (x, params) = (x.clone().require_grad(), params.clone().require_grad());
    let k = spec.bins;
    let (y, l) = if fused {
        rq_spline_params(&x, &params, spec, inverse).expect("ndarray has the CPU kernel")
    } else {
        let per_dim = params.clone().swap_dims(1, 2);
        let (w, h, dr) = (
            per_dim.clone().narrow(2, 0, k),
            per_dim.clone().narrow(2, k, k),
            per_dim.narrow(2, 2 * k, k - 1),
        );
        if inverse {
            rq_spline_inverse_reference(x.clone(), w, h, dr, &reference_spec(spec))
        } else {
            rq_spline_reference(x.clone(), w, h, dr, &reference_spec(spec))
        }
    };
    let grads = ((y.clone() * weights.clone()).sum() + l.clone().sum()).backward();
    vec![
        values_of(y),
        values_of(l),
        values_of(x.grad(&grads).unwrap()),
        values_of(params.grad(&grads).unwrap()),
    ]
}

/// The packed layout (what `Elementwise` passes) against the `f64` reference on the same
/// parameters split into `[m, d, K]` tensors: values, ladj, and the gradients of the
/// input and of the packed parameter tensor.
#[test]
fn packed_layout_matches_reference() {
    let device = Default::default();
    let spec = Shape::new(5, 3.0);
    // d = 6: a whole group of four entries, then two (the lanes past the row padded).
    let (n, d, k) = (23, 6, 5);
    for m in [1, n] {
        for inverse in [false, true] {
            let mut uniform = uniforms(0xD1B5_4A32_D192_ED03 + m as u64);
            let mut values = |count: usize, scale: f64| -> Vec<f32> {
                (0..count).map(|_| (scale * uniform()) as f32).collect()
            };
            let x = Tensor::<B, 2>::from_data(TensorData::new(values(n * d, 3.5), [n, d]), &device);
            let params = Tensor::<B, 3>::from_data(
                TensorData::new(values(m * (3 * k - 1) * d, 1.2), [m, 3 * k - 1, d]),
                &device,
            );
            let weights =
                Tensor::<B, 2>::from_data(TensorData::new(values(n * d, 1.0), [n, d]), &device);
            let ours = packed_outputs(true, inverse, [&x, &weights], &params, &spec);
            let (x, weights) = (in_f64(x), in_f64(weights));
            let reference = packed_outputs(false, inverse, [&x, &weights], &in_f64(params), &spec);
            let case = format!("m = {m}, inverse = {inverse}");
            let names = ["value", "ladj", "∂v", "∂params"];
            assert_agree(&case, &names, &ours, &reference, spline_tol);
        }
    }
}

/// Empty shapes (no rows; rows of no entries) go through the kernel, forward and
/// backward, without a panic: outputs of the inputs' shapes, the ladj of an empty row 0.
#[test]
fn empty_shapes_run_forward_and_backward() {
    let device = Default::default();
    let spec = Shape::new(4, 3.0);
    for (n, d) in [(3, 0), (0, 2)] {
        let x = Tensor::<B, 2>::zeros([n, d], &device).require_grad();
        let w = Tensor::<B, 3>::zeros([n, d, 4], &device).require_grad();
        let h = Tensor::<B, 3>::zeros([n, d, 4], &device).require_grad();
        let dr = Tensor::<B, 3>::zeros([n, d, 3], &device).require_grad();
        let (y, ladj) = rq_spline(&x, &w, &h, &dr, &spec, false).expect("the CPU kernel");
        assert_eq!((y.dims(), ladj.dims()), ([n, d], [n]));
        assert!(values_of(ladj.clone()).iter().all(|&l| l == 0.0));
        // burn may drop the gradient of an empty tensor; one that exists has its shape.
        let grads = (y.sum() + ladj.sum()).backward();
        assert!(x.grad(&grads).is_none_or(|g| g.dims() == [n, d]));
        assert!(w.grad(&grads).is_none_or(|g| g.dims() == [n, d, 4]));
        assert!(dr.grad(&grads).is_none_or(|g| g.dims() == [n, d, 3]));
    }
}

/// The CPU kernel against the tensor-op reference (in `f64`): values, ladj and the
/// gradients of all four inputs, forward and inverse, per-row and shared parameters, with
/// entries in both tails and on the interval's ends.
#[test]
fn spline_matches_reference() {
    let device = Default::default();
    let spec = Shape::new(8, 3.0);
    let names = ["value", "ladj", "∂v", "∂widths", "∂heights", "∂derivatives"];
    for m in [1, 37] {
        for inverse in [false, true] {
            let n = 37;
            let mut uniform = uniforms(0x9E37_79B9_7F4A_7C15 + m as u64);
            let mut tensor = |shape: [usize; 3], scale: f64| {
                let count = shape.iter().product();
                let values: Vec<f32> = (0..count).map(|_| (scale * uniform()) as f32).collect();
                Tensor::<B, 3>::from_data(TensorData::new(values, shape), &device)
            };
            let (w, h, d) = (
                tensor([m, 5, 8], 1.2),
                tensor([m, 5, 8], 1.2),
                tensor([m, 5, 7], 1.2),
            );
            // Both tails, the interval's ends, and values spread over the interval.
            let mut x: Vec<f32> = tensor([n, 5, 1], 3.5).into_data().into_vec().unwrap();
            x[..4].copy_from_slice(&[-3.0, 3.0, 3.5, -7.0]);
            let args = (
                Tensor::from_data(TensorData::new(x, [n, 5]), &device),
                w,
                h,
                d,
            );
            let ours = outputs(true, inverse, &args, &spec);
            let (v, w, h, d) = args;
            let args = (in_f64(v), in_f64(w), in_f64(h), in_f64(d));
            let reference = outputs(false, inverse, &args, &spec);
            let case = format!("m = {m}, inverse = {inverse}");
            assert_agree(&case, &names, &ours, &reference, spline_tol);
        }
    }
}
