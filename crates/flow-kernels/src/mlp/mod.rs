//! A ReLU multilayer perceptron of any depth, forward and backward, optionally with fixed
//! 0/1 weight masks (MADE): the conditioners of couplings and autoregressive layers, and
//! the VAE's encoder and decoder. flow-core's `nets` module has the tensor-op reference.
//!
//! - CPU ([`cpu`](self) has the math): the rows split over the threads once, each block of
//!   rows through every layer and back (single-threaded products from the `gemm` crate);
//!   one input feature takes the first two layers through the first layer's kinks
//!   (`kinks`), a mostly-zero input the first layer over its nonzero entries (`sparse`),
//!   and a mask is applied tile by tile, skipping the blocks it zeroes (`mask`);
//! - CubeCL: none (the products are burn's matmul; fusion merges the bias and ReLU).

#[cfg(feature = "cpu")]
mod cpu;
#[cfg(feature = "cpu")]
mod kinks;
#[cfg(feature = "cpu")]
mod mask;
#[cfg(feature = "cpu")]
mod passes;
#[cfg(feature = "cpu")]
mod pool;
#[cfg(feature = "cpu")]
mod sparse;

use std::sync::Arc;

use burn::tensor::{Tensor, backend::Backend};

/// The ReLU network `x → relu(x W_0 + b_0) → … → x W_{L−1} + b_{L−1}` (a ReLU after the last
/// layer too when `relu_last`), `x: [m, d_0]`, `W_l: [d_l, d_{l+1}]`, `b_l: [d_{l+1}]`:
/// `[m, d_L]`, or `None` when `B` has no body, there are no layers, the shapes do not chain,
/// a width is 0, or the kernels are off.
pub fn relu_mlp<B: Backend>(
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    relu_last: bool,
) -> Option<Tensor<B, 2>> {
    relu_mlp_masked(x, layers, &[], relu_last)
}

/// [`relu_mlp`] with layer `l`'s weight multiplied by the fixed mask `masks[l]` (row-major
/// `[d_l, d_{l+1}]`, nonzero = kept; `None` or an empty `masks`: unmasked): `W_l ⊙ M_l`
/// replaces `W_l`, and the gradient of `W_l` comes back through the mask. The kernel derives
/// its own layout of each mask on first use and caches it while the caller holds the `Arc`
/// (so keep the same `Arc` from call to call). `None` also when a mask does not fit its
/// weight.
pub fn relu_mlp_masked<B: Backend>(
    x: &Tensor<B, 2>,
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    masks: &[Option<Arc<[f32]>>],
    relu_last: bool,
) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "cpu")]
    if crate::enabled()
        && crate::host::op::has_body::<B>()
        && (masks.is_empty() || masks.len() == layers.len())
    {
        let masks = masks
            .iter()
            .zip(layers)
            .map(|(mask, (w, _))| match mask {
                None => Some(None),
                Some(values) => {
                    let [d_in, d_out] = w.dims();
                    mask::WeightMask::of(values, d_in, d_out).map(Some)
                }
            })
            .collect::<Option<Vec<_>>>()?;
        if let Some(out) = cpu::relu_mlp_masked(x, layers, &masks, relu_last) {
            return Some(out);
        }
    }
    let _ = (x, layers, masks, relu_last);
    None
}
