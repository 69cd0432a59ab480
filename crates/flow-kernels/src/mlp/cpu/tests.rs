//! The network kernel against burn's tensor operations and autodiff: values and every
//! gradient, the kinks' and the sparse input's paths, masks, NaN, bad shapes.

use burn::{
    backend::Autodiff,
    tensor::{Distribution, TensorData},
};

use super::*;
use crate::host::check::{assert_agree, values_of};
use crate::mlp::sparse;

use burn::tensor::backend::AutodiffBackend;

type B = Autodiff<burn::backend::NdArray>;

/// Names of a run's outputs: the network's output, `∂x`, then each layer's `∂W`, `∂b`.
const NAMES: [&str; 20] = [
    "y", "∂x", "∂W0", "∂b0", "∂W1", "∂b1", "∂W2", "∂b2", "∂W3", "∂b3", "∂W4", "∂b4", "∂W5", "∂b5",
    "∂W6", "∂b6", "∂W7", "∂b7", "∂W8", "∂b8",
];

/// The same network through burn's tensor operations (and burn's autodiff).
fn reference<B: AutodiffBackend>(
    x: Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    relu_last: bool,
) -> Tensor<B, 2> {
    let last = layers.len() - 1;
    layers.iter().enumerate().fold(x, |h, (l, (w, b))| {
        let z = h.matmul(w.clone()) + b.clone().unsqueeze();
        if l < last || relu_last {
            burn::tensor::activation::relu(z)
        } else {
            z
        }
    })
}

/// The output and the gradients of `Σ y ⊙ g` for x and every parameter.
fn run<B: AutodiffBackend>(
    fused: bool,
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    relu_last: bool,
    g: &Tensor<B, 2>,
) -> Vec<Vec<f64>> {
    let x = x.clone().require_grad();
    let layers: Vec<_> = layers
        .iter()
        .map(|(w, b)| (w.clone().require_grad(), b.clone().require_grad()))
        .collect();
    let y = match fused {
        true => relu_mlp(&x, &layers, relu_last).expect("a CPU backend has the kernel"),
        false => reference(x.clone(), &layers, relu_last),
    };
    let grads = (y.clone() * g.clone()).sum().backward();
    let mut out = vec![values_of(y), values_of(x.grad(&grads).unwrap())];
    for (w, b) in &layers {
        out.push(values_of(w.grad(&grads).unwrap()));
        out.push(values_of(b.grad(&grads).unwrap()));
    }
    out
}

fn random<B: Backend, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), &Default::default())
}

/// Asserts the fused network's output and every gradient of `Σ y ⊙ g` within 1e-4
/// (relative) of the tensor ops'.
fn assert_matches_tensor_ops<B: AutodiffBackend>(
    case: &str,
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    relu_last: bool,
    g: &Tensor<B, 2>,
) {
    let ours = run::<B>(true, x, layers, relu_last, g);
    let theirs = run::<B>(false, x, layers, relu_last, g);
    assert_agree(case, &NAMES[..ours.len()], &ours, &theirs, |_| 1e-4);
}

/// The fused network's output on the plain backend for the input values `x: [m, d]`,
/// with a NaN at entry `e` of layer `l`'s weight for `nan_weight = Some((l, e))`.
fn plain_output(
    x: Vec<f32>,
    [m, d]: [usize; 2],
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    nan_weight: Option<(usize, usize)>,
) -> Vec<f64> {
    type P = burn::backend::NdArray;
    let device = Default::default();
    let mut plain: Vec<(Tensor<P, 2>, Tensor<P, 1>)> = layers
        .iter()
        .map(|(w, b)| (w.clone().inner(), b.clone().inner()))
        .collect();
    if let Some((l, e)) = nan_weight {
        let shape = plain[l].0.dims();
        let mut w: Vec<f32> = plain[l].0.to_data().to_vec().unwrap();
        w[e] = f32::NAN;
        plain[l].0 = Tensor::from_data(TensorData::new(w, shape), &device);
    }
    let x = Tensor::<P, 2>::from_data(TensorData::new(x, [m, d]), &device);
    values_of(relu_mlp(&x, &plain, false).unwrap())
}

#[test]
fn values_and_every_gradient_match_the_tensor_ops() {
    // Pooled buffers full of NaN: the kernel must write every entry before reading it.
    poison_pool();
    agree_with_tensor_ops::<B>();
    #[cfg(feature = "flex")]
    agree_with_tensor_ops::<Autodiff<burn::backend::Flex>>();
}

/// Fills the buffer pool with NaN buffers of assorted sizes.
fn poison_pool() {
    recycle((4..16).map(|k| vec![f32::NAN; 1 << k]));
}

fn agree_with_tensor_ops<B: AutodiffBackend>() {
    <B as Backend>::seed(&Default::default(), 7);
    // Depths 1–4, and 7 and 9 (two kernels: more layers than one takes), row counts
    // below, at and off the task size, both final activations;
    // wide layers over few rows (the input's too) take the column-major input gradient;
    // one input feature over 8 rows or more takes the first two layers through the
    // kinks (depth 2: the second layer is the output, with and without its ReLU).
    for (widths, m, relu_last) in [
        (vec![3, 5], 1, false),
        (vec![1, 64, 64, 2], 37, false),
        (vec![1, 64, 64, 2], 5, false),
        (vec![1, 30, 5], 64, true),
        (vec![1, 30, 5], 64, false),
        (vec![1, 100, 40, 20, 3], 300, false),
        (vec![40, 96, 80, 3], 24, true),
        (vec![6, 33, 7], 200, true),
        (vec![10, 20, 30, 20, 4], 513, false),
        (vec![1, 16, 16, 16, 16, 16, 16, 3], 40, false),
        (vec![5, 8, 9, 10, 11, 12, 13, 14, 15, 4], 70, true),
    ] {
        let layers: Vec<_> = widths
            .windows(2)
            .map(|w| (random::<B, 2>([w[0], w[1]]), random::<B, 1>([w[1]])))
            .collect();
        let x = random([m, widths[0]]);
        let g = random([m, *widths.last().unwrap()]);
        let case = format!("{widths:?} m={m}");
        assert_matches_tensor_ops(&case, &x, &layers, relu_last, &g);
    }
}

/// The kinks' edge cases against the tensor ops: units with a zero input weight (a
/// positive bias: active everywhere; zero or negative: nowhere), two units with the same
/// kink, inputs far outside every kink on both sides; then a NaN input row, and a NaN
/// parameter.
#[test]
fn kinks_agree_at_their_edge_cases() {
    poison_pool();
    let device = Default::default();
    let w0 = [
        0.5, -1.0, 0.0, 0.0, 2.0, -0.25, 0.5, 1.5, -3.0, 0.0, 1.0, -1.0,
    ];
    let b0 = [
        0.1, 0.4, 0.3, -0.2, -1.0, 0.2, 0.1, 0.0, -0.5, 0.0, 0.9, -0.7,
    ];
    let d1 = w0.len();
    let mut xs: Vec<f32> = (0..60).map(|i| -3.0 + 0.1 * i as f32 + 0.013).collect();
    xs.extend([-20.0, 20.0, -7.5, 11.0]);
    let m = xs.len();
    let tensor = |v: &[f32], shape: [usize; 2]| {
        Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), shape), &device)
    };
    let layers: Vec<(Tensor<B, 2>, Tensor<B, 1>)> = vec![
        (tensor(&w0, [1, d1]), tensor(&b0, [1, d1]).reshape([d1])),
        (random([d1, 20]), random([20])),
        (random([20, 2]), random([2])),
    ];
    let x = tensor(&xs, [m, 1]);
    assert_matches_tensor_ops("edge cases", &x, &layers, false, &random([m, 2]));

    // A NaN input gives a NaN output row (and only that row).
    let mut nan_x = xs.clone();
    nan_x[3] = f32::NAN;
    let y = plain_output(nan_x, [m, 1], &layers, None);
    assert!(y[6..8].iter().all(|v| v.is_nan()));
    assert!(y[..6].iter().chain(&y[8..]).all(|v| v.is_finite()));

    // A NaN weight of the second layer reaches every output, as through the product
    // (the kinks would confine it to the rows where its unit is active).
    let y = plain_output(xs, [m, 1], &layers, Some((1, 5)));
    assert!(y.iter().all(|v| v.is_nan()));
}

/// A mostly-zero input (ones, other values and a NaN among ~12 % nonzero entries) takes
/// the first layer over its nonzero entries: values and every gradient against the
/// tensor ops; then a NaN first-layer weight, which must reach every output.
#[test]
fn sparse_input_agrees() {
    poison_pool();
    let (m, d) = (90, 300);
    let xs: Vec<f32> = (0..m * d)
        .map(|e| match (e * 7919) % 100 {
            0..=9 => 1.0,
            10 => 0.37,
            11 => -2.5,
            _ => 0.0,
        })
        .collect();
    assert!(sparse::is_sparse(&xs) && !sparse::is_sparse(&[1.0, 0.0, f32::NAN, 0.0, 0.5]));
    let x = Tensor::<B, 2>::from_data(TensorData::new(xs.clone(), [m, d]), &Default::default());
    let widths = [d, 150, 40, 5];
    let layers: Vec<(Tensor<B, 2>, Tensor<B, 1>)> = widths
        .windows(2)
        .map(|w| (random([w[0], w[1]]), random([w[1]])))
        .collect();
    assert_matches_tensor_ops("sparse input", &x, &layers, false, &random([m, 5]));

    // A NaN input entry gives a NaN output row (and only that row).
    let mut nan_x = xs.clone();
    nan_x[5 * d + 3] = f32::NAN;
    let y = plain_output(nan_x, [m, d], &layers, None);
    assert!(y[25..30].iter().all(|v| v.is_nan()) && y[..25].iter().all(|v| v.is_finite()));
    // A NaN in W_0's row 1 reaches every output, as through the product, though
    // feature 1 is zero in most rows.
    let y = plain_output(xs, [m, d], &layers, Some((0, 150)));
    assert!(y.iter().all(|v| v.is_nan()));
}

#[test]
fn untracked_input_and_plain_backend_agree() {
    type P = burn::backend::NdArray;
    let device = Default::default();
    let layers: Vec<(Tensor<P, 2>, Tensor<P, 1>)> = [(4, 9), (9, 3)]
        .map(|(i, o)| {
            (
                Tensor::random([i, o], Distribution::Uniform(-1.0, 1.0), &device),
                Tensor::random([o], Distribution::Uniform(-1.0, 1.0), &device),
            )
        })
        .into();
    let x = Tensor::<P, 2>::random([50, 4], Distribution::Uniform(-1.0, 1.0), &device);
    let plain = values_of(relu_mlp(&x, &layers, false).unwrap());
    let tracked_layers: Vec<(Tensor<B, 2>, Tensor<B, 1>)> = layers
        .iter()
        .map(|(w, b)| {
            (
                Tensor::from_inner(w.clone()).require_grad(),
                Tensor::from_inner(b.clone()).require_grad(),
            )
        })
        .collect();
    // The data does not need a gradient: the backward pass skips it.
    let y = relu_mlp(&Tensor::from_inner(x), &tracked_layers, false).unwrap();
    assert_eq!(values_of(y.clone()), plain);
    let grads = y.sum().backward();
    assert!(tracked_layers[0].0.grad(&grads).is_some());
}

#[test]
fn masks_apply_in_the_kernel_and_skip_zero_blocks() {
    poison_pool();
    masked_agrees::<B>();
    #[cfg(feature = "flex")]
    masked_agrees::<Autodiff<burn::backend::Flex>>();
}

/// MADE-shaped masks (natural and reversed order, cyclic hidden degrees that wrap, a
/// last column block narrower than a tile): the masked kernel on `W` against the dense
/// kernel on `W ⊙ M` (burn's autodiff through the product), values and the gradients
/// of `x`, `W` and `b`.
fn masked_agrees<B: AutodiffBackend>() {
    <B as Backend>::seed(&Default::default(), 11);
    let (d, h, m) = (100, 150, 70);
    let hidden: Vec<usize> = (0..h).map(|k| k % (d - 1) + 1).collect();
    // `premasked`: `W` zero outside the mask (as MADE keeps it), so the kernel reads
    // it in place, except one tile of the second layer with a masked-out entry set,
    // which it copies and masks.
    for (reversed, premasked) in [(false, false), (true, false), (false, true)] {
        let input: Vec<usize> = match reversed {
            false => (1..=d).collect(),
            true => (1..=d).rev().collect(),
        };
        type Allowed<'a> = Box<dyn Fn(usize, usize) -> bool + 'a>;
        let shapes: [(usize, usize, Allowed); 3] = [
            (d, h, Box::new(|i, k| hidden[k] >= input[i])),
            (h, h, Box::new(|k, k2| hidden[k2] >= hidden[k])),
            (h, 2 * d, Box::new(|k, o| input[o % d] > hidden[k])),
        ];
        let masks: Vec<Option<WeightMask>> = shapes
            .iter()
            .map(|(i, o, f)| Some(WeightMask::new(*i, *o, f)))
            .collect();
        let params: Vec<_> = shapes
            .iter()
            .zip(&masks)
            .enumerate()
            .map(|(l, ((i, o, _), mask))| {
                let values = mask.as_ref().unwrap().values.to_vec();
                let dirty = values.iter().position(|&v| v == 0.0);
                let mask = Tensor::<B, 2>::from_data(
                    TensorData::new(values, [*i, *o]),
                    &Default::default(),
                );
                let mut w = random::<B, 2>([*i, *o]);
                if premasked {
                    let mut v: Vec<f32> = (w * mask.clone()).into_data().to_vec().unwrap();
                    if l == 1 {
                        v[dirty.expect("a masked-out entry")] = 0.5;
                    }
                    w = Tensor::from_data(TensorData::new(v, [*i, *o]), &Default::default());
                }
                (w, random::<B, 1>([*o]), mask)
            })
            .collect();
        let x = random::<B, 2>([m, d]);
        let g = random::<B, 2>([m, 2 * d]);
        let outputs = |kernel_masks: bool| {
            // Fresh leaves for each backward pass.
            let leaf = |t: &Tensor<B, 2>| t.clone().detach().require_grad();
            let x = leaf(&x);
            let layers: Vec<_> = params
                .iter()
                .map(|(w, b, _)| (leaf(w), b.clone().detach().require_grad()))
                .collect();
            let y = if kernel_masks {
                relu_mlp_masked(&x, &layers, &masks, false)
            } else {
                let masked: Vec<_> = layers
                    .iter()
                    .zip(&params)
                    .map(|((w, b), (_, _, mask))| (w.clone() * mask.clone(), b.clone()))
                    .collect();
                relu_mlp(&x, &masked, false)
            };
            let y = y.expect("a CPU backend");
            let grads = (y.clone() * g.clone()).sum().backward();
            let mut out = vec![values_of(y), values_of(x.grad(&grads).unwrap())];
            for (w, b) in &layers {
                out.push(values_of(w.grad(&grads).unwrap()));
                out.push(values_of(b.grad(&grads).unwrap()));
            }
            out
        };
        let (ours, dense) = (outputs(true), outputs(false));
        let case = format!("reversed={reversed}, premasked={premasked}");
        assert_agree(&case, &NAMES[..ours.len()], &ours, &dense, |_| 1e-4);
        // The tiles skip something: the first layer's first block (hidden degrees
        // 1–64) needs only the inputs of degree ≤ 64.
        let expected = if reversed { d - 64..d } else { 0..64 };
        assert_eq!(masks[0].as_ref().unwrap().tiles()[0], expected);
    }
}

#[test]
fn nan_propagates_and_bad_shapes_decline() {
    type P = burn::backend::NdArray;
    let device = Default::default();
    let w = Tensor::<P, 2>::ones([2, 3], &device);
    let b = Tensor::<P, 1>::zeros([3], &device);
    let x = Tensor::<P, 2>::from_data([[f32::NAN, 1.0], [1.0, 1.0]], &device);
    let y = values_of(relu_mlp(&x, &[(w.clone(), b.clone())], true).unwrap());
    assert!(y[..3].iter().all(|v| v.is_nan()) && y[3..] == [2.0; 3]);
    let wide = Tensor::<P, 2>::ones([2, 5], &device);
    assert!(relu_mlp(&wide, &[(w, b)], false).is_none());
    assert!(relu_mlp(&x, &[], false).is_none());
}
