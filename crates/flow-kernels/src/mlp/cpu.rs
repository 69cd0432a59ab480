//! A fused ReLU multilayer perceptron for the CPU backends: the whole network, forward and
//! backward, as one kernel and one autodiff node.
//!
//! # Math
//! Layers `l = 0 … L−1` with weights `W_l: [d_l, d_{l+1}]` and biases `b_l: [d_{l+1}]`
//! (burn's `Linear` layout), `a_0 = x: [m, d_0]`:
//!
//! ```text
//! z_l = a_l W_l + b_l,     a_{l+1} = relu(z_l)   (the last layer: a_L = z_{L−1}, unless
//!                                                  `relu_last`)
//! ```
//!
//! Backward from `G = ∂ℒ/∂a_L`: `∂ℒ/∂z_{L−1} = G` (masked by `a_L > 0` under `relu_last`),
//! then for `l = L−1 … 1`: `∂ℒ/∂z_{l−1} = (∂ℒ/∂z_l · W_lᵀ) ⊙ [a_l > 0]`, and
//! `∂ℒ/∂x = ∂ℒ/∂z_0 · W_0ᵀ`, `∂ℒ/∂W_l = a_lᵀ · ∂ℒ/∂z_l`, `∂ℒ/∂b_l = Σ_rows ∂ℒ/∂z_l`.
//! `relu` keeps NaN (as burn's: only entries `< 0` become 0), so bad input still shows.
//!
//! # Why
//! Through burn's tensor ops each layer is a matrix product, a bias add and a ReLU, each a
//! pass over memory into a fresh buffer, each split over the threads on its own, plus as
//! many autodiff nodes; the backward pass doubles it. Here the rows are split over the
//! threads once: each thread runs its block of rows through every layer (single-threaded
//! matrix products from the `gemm` crate, the same kernels burn's `flex` backend calls; the
//! bias enters as the product's initial value, the ReLU in place), and back through every
//! layer in the backward pass; only the weight gradients, sums over all rows, are products
//! over the whole batch, each thread taking a block of rows of every layer's `∂ℒ/∂W`.
//!
//! # One input feature
//! A network on one input feature (a coupling's conditioner on 2-D data: realnvp-moons,
//! the density example's toy sets) takes its first two layers through the first layer's
//! kinks instead (the private module `mlp::kinks` has the math): the first layer's `d_1`
//! ReLU units are piecewise linear in the input, so the second layer's pre-activation is
//! `A_k x + C_k` on each of the `d_1 + 1` intervals between their kinks. A table of those
//! rows, built once per call in `O(d_1 d_2)`, replaces the `[m, d_1] × [d_1, d_2]` product
//! (a binary search and `d_2` multiply-adds per row), and the backward pass gets the first
//! two layers' gradients from running sums over the rows sorted by interval, `O(m d_2 +
//! d_1 d_2)`. Exact: the same function and gradients, rounded differently (each sum only
//! adds, as the product does). realnvp-moons' `1 → 256 → 256 → 2` conditioners on batches
//! of 512 do ~130× fewer multiply-adds in those layers, the table included. Taken from 8
//! rows up, when neither of the first two layers is masked and their parameters are finite
//! (a NaN parameter goes through the products, which spread it to every output).
//!
//! # A mostly-zero input
//! When at most a quarter of the input's entries are nonzero (binarized images: ~13 % of
//! MNIST's pixels are ones), the first layer's product and its weight gradient run over the
//! nonzero entries only (the private module `mlp::sparse`): `x W_0` as sums of the weight
//! rows the row's nonzero entries pick, `∂ℒ/∂W_0[i, :]` as sums of the `∂ℒ/∂z_0` rows where
//! feature `i` is nonzero. Exact up to rounding (the zero terms left out). Taken for an
//! unmasked first layer of at least 32 inputs with finite weights, not on the kinks' path.

mod rows;

use burn::tensor::{Tensor, backend::Backend};

use super::mask::WeightMask;
use super::pool::recycle;
use crate::host::op::{Args, HostOp, apply};
use rows::{Inputs, backward, forward};

/// The network as a [`HostOp`]: inputs `x`, then each layer's weight and bias `[1, d]`.
#[derive(Debug)]
struct Mlp {
    masks: Vec<Option<WeightMask>>,
    relu_last: bool,
}

/// What the backward pass keeps: the inputs and the activations `a_1 … a_{L−1}` (and `a_L`
/// under `relu_last`).
#[derive(Debug)]
struct Saved {
    inputs: Inputs,
    acts: Vec<Vec<f32>>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.acts));
    }
}

impl HostOp for Mlp {
    type Saved = Saved;

    fn forward(&self, args: Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Saved>) {
        let inputs = Inputs::new(args, self.masks.clone(), self.relu_last);
        let mut acts = forward(&inputs.net, &inputs.x, inputs.m);
        let shape = [inputs.m, inputs.net.widths[inputs.net.depth()]];
        let out = match keep && self.relu_last {
            true => acts.last().expect("a layer").clone(),
            false => acts.pop().expect("a layer"),
        };
        if !keep {
            recycle(acts);
            return (out, shape, None);
        }
        (out, shape, Some(Saved { inputs, acts }))
    }

    fn backward(saved: &Saved, g: &[f32], need: &[bool]) -> Vec<Vec<f32>> {
        backward(&saved.inputs, &saved.acts, g, need[0])
    }
}

/// The kernel on `N = 1 + 2L` arguments, when `B` is one of the CPU backends.
fn run<B: Backend, const N: usize>(
    args: Vec<Tensor<B, 2>>,
    masks: Vec<Option<WeightMask>>,
    relu_last: bool,
) -> Option<Tensor<B, 2>> {
    let args: [Tensor<B, 2>; N] = args.try_into().ok()?;
    apply(Mlp { masks, relu_last }, args)
}

/// The most layers one kernel takes (the autodiff node's input count is a constant per
/// depth): a deeper network runs as consecutive kernels of at most this many layers.
const MAX_LAYERS: usize = 6;

/// The ReLU network as kernels of at most [`MAX_LAYERS`] layers (the contract of
/// [`super::relu_mlp_masked`], `masks` empty or one per layer), or `None` when `B` is not
/// one of the CPU backends or the shapes do not chain.
pub(crate) fn relu_mlp_masked<B: Backend>(
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    masks: &[Option<WeightMask>],
    relu_last: bool,
) -> Option<Tensor<B, 2>> {
    if layers.is_empty() || (!masks.is_empty() && masks.len() != layers.len()) {
        return None;
    }
    let [_, mut width] = x.dims();
    for (l, (w, b)) in layers.iter().enumerate() {
        let [d_in, d_out] = w.dims();
        if d_in != width || b.dims() != [d_out] || d_in == 0 || d_out == 0 {
            return None;
        }
        if let Some(Some(mask)) = masks.get(l)
            && mask.values.len() != d_in * d_out
        {
            return None;
        }
        width = d_out;
    }
    let masks = match masks {
        [] => vec![None; layers.len()],
        m => m.to_vec(),
    };
    let chunks = layers.len().div_ceil(MAX_LAYERS);
    let mut h = x.clone();
    for (c, (layers, masks)) in layers
        .chunks(MAX_LAYERS)
        .zip(masks.chunks(MAX_LAYERS))
        .enumerate()
    {
        // Between kernels the network's ReLU ends the earlier one.
        let relu_last = relu_last || c + 1 < chunks;
        let mut args = vec![h];
        for (w, b) in layers {
            args.push(w.clone());
            args.push(b.clone().unsqueeze());
        }
        let masks = masks.to_vec();
        h = match layers.len() {
            1 => run::<B, 3>(args, masks, relu_last),
            2 => run::<B, 5>(args, masks, relu_last),
            3 => run::<B, 7>(args, masks, relu_last),
            4 => run::<B, 9>(args, masks, relu_last),
            5 => run::<B, 11>(args, masks, relu_last),
            _ => run::<B, 13>(args, masks, relu_last),
        }?;
    }
    Some(h)
}

/// [`relu_mlp_masked`] without masks.
#[cfg(test)]
fn relu_mlp<B: Backend>(
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    relu_last: bool,
) -> Option<Tensor<B, 2>> {
    relu_mlp_masked(x, layers, &[], relu_last)
}

#[cfg(all(test, feature = "ndarray"))]
mod tests;
