//! Numerically stable building blocks shared by the kernels.
//!
//! burn 0.21 has no `logsumexp`, and its `softplus` is the naive `log(1 + exp(x))`, which
//! overflows to `inf` for `x > 88` in f32. These versions are stable for every finite input.

use burn::tensor::{Tensor, activation, backend::Backend};

/// `ln(2π) / 2`, the constant of the Gaussian log-density.
pub const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Stable softplus: `softplus(x) = ln(1 + eˣ) = max(x, 0) + ln(1 + e^{−|x|})`.
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let tail = x.clone().abs().neg().exp().log1p();
    activation::relu(x) + tail
}

/// Stable `ln(eᵃ + eᵇ)`, element-wise: `max(a, b) + ln(1 + e^{−|a − b|})`.
///
/// The naive form produced NaN on wgpu when both terms underflow.
pub fn logaddexp<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let m = a.clone().max_pair(b.clone());
    let gap = (a - b).abs().neg().exp().log1p();
    m + gap
}

/// Stable `ln Σᵢ exp(xᵢ)` along `dim`, keeping the reduced dimension (size 1).
pub fn logsumexp<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let m = x.clone().max_dim(dim).detach();
    (x - m.clone()).exp().sum_dim(dim).log() + m
}

/// Soft clamp into `(−bound, bound)`: `bound · tanh(x / bound)`.
///
/// Smooth, monotone, and the identity near zero (slope 1 at 0), so a zero-initialised
/// conditioner still starts at the identity map.
pub fn soft_clamp<B: Backend, const D: usize>(x: Tensor<B, D>, bound: f64) -> Tensor<B, D> {
    x.div_scalar(bound).tanh().mul_scalar(bound)
}

/// Row-wise sum of a `[batch, dim]` tensor, as `[batch]`.
pub fn sum_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = x.dims();
    x.sum_dim(1).reshape([n])
}

/// Row-wise dot product of two broadcastable `[·, dim]` tensors, as `[·, 1]`.
pub fn dot_rows<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    (a * b).sum_dim(1)
}

/// Log-density of the standard normal, summed over the features: `[batch, dim] -> [batch]`.
///
/// `ln N(x; 0, I) = −½‖x‖² − (dim/2) ln 2π`.
pub fn std_normal_log_prob<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [_, d] = x.dims();
    sum_rows(x.square())
        .mul_scalar(-0.5)
        .sub_scalar(d as f64 * HALF_LN_2PI)
}

/// Zero log-determinant for a volume-preserving map: `[batch]` zeros on `like`'s device.
pub fn zero_ladj<B: Backend>(like: &Tensor<B, 2>) -> Tensor<B, 1> {
    Tensor::zeros([like.dims()[0]], &like.device())
}
