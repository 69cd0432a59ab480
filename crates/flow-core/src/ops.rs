//! Numerically stable building blocks shared by the kernels.
//!
//! burn 0.21 has no `logsumexp`, and its `softplus` is the naive `log(1 + exp(x))`, which
//! overflows to `inf` for `x > 88` in f32. These versions are stable for every finite input.

use burn::tensor::{Tensor, backend::Backend};

/// `ln(2π) / 2`, the constant of the Gaussian log-density.
pub const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Above this, `softplus(x) = x` to f32 and f64 precision (the kernels' threshold too).
const SOFTPLUS_LINEAR_ABOVE: f64 = flow_kernels::SOFTPLUS_LINEAR_ABOVE;

/// Stable softplus: `softplus(x) = ln(1 + eˣ)`, as `ln1p(exp(x))` for `x ≤ 20` and `x` above.
///
/// Accurate for tiny values (`ln1p`), never overflows, and its gradient is `σ(x)`
/// everywhere, including `σ(0) = ½` (a `max(x, 0) + ln1p(e^{−|x|})` formulation gets 0 at
/// `x = 0`, which freezes parameters that start there).
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let linear = x.clone().greater_elem(SOFTPLUS_LINEAR_ABOVE);
    let smooth = x.clone().clamp_max(SOFTPLUS_LINEAR_ABOVE).exp().log1p();
    smooth.mask_where(linear, x)
}

/// The Bernoulli log-likelihood of `x` under logits, per row of `x, logits: [n, d]`:
/// `ln p(x | l) = Σ_j x_j l_j − softplus(l_j)`, `[n]` (the cross-entropy's negative, for
/// `x ∈ [0, 1]`). On the CPU backends one fused kernel ([`crate::kernels`]), else
/// [`crate::reference::bernoulli_log_likelihood`]. Panics when the shapes differ, as tensor
/// arithmetic does.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
/// use flow_core::ops::bernoulli_log_likelihood;
///
/// let device = Default::default();
/// let x = Tensor::<NdArray, 2>::from_floats([[1.0, 0.0]], &device);
/// let logits = Tensor::<NdArray, 2>::zeros([1, 2], &device);
/// let lp = bernoulli_log_likelihood(x, logits).into_scalar();
/// assert!((lp - 2.0 * 0.5f32.ln()).abs() < 1e-6); // two fair coins
/// ```
pub fn bernoulli_log_likelihood<B: Backend>(x: Tensor<B, 2>, logits: Tensor<B, 2>) -> Tensor<B, 1> {
    crate::kernels::bernoulli_log_likelihood(&x, &logits)
        .unwrap_or_else(|| bernoulli_log_likelihood_reference(x, logits))
}

/// [`bernoulli_log_likelihood`] as tensor operations.
pub fn bernoulli_log_likelihood_reference<B: Backend>(
    x: Tensor<B, 2>,
    logits: Tensor<B, 2>,
) -> Tensor<B, 1> {
    sum_rows(x * logits.clone() - softplus(logits))
}

/// Stable `ln(eᵃ + eᵇ)`, element-wise, as `a + softplus(b − a)`: its gradient is the
/// softmax weights (½, ½ at a tie).
///
/// The naive form produced NaN on wgpu when both terms underflow.
pub fn logaddexp<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    a.clone() + softplus(b - a)
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

/// `x: [r, c]` repeated `times` times in blocks, `[times·r, c]` (row `i` is row `i mod r`),
/// with the right gradient: the sum over the copies. burn 0.21's autodiff gets
/// `repeat_dim`'s backward wrong for `r > 1` (it sums rows `i·times .. (i + 1)·times` of the
/// incoming gradient, as if the copies were interleaved), so this broadcasts instead.
pub fn tile_rows<B: Backend>(x: Tensor<B, 2>, times: usize) -> Tensor<B, 2> {
    let [r, c] = x.dims();
    if times == 1 {
        return x;
    }
    x.unsqueeze::<3>()
        .expand([times, r, c])
        .reshape([times * r, c])
}

/// Zero log-determinant for a volume-preserving map: `[batch]` zeros on `like`'s device.
pub fn zero_ladj<B: Backend>(like: &Tensor<B, 2>) -> Tensor<B, 1> {
    Tensor::zeros([like.dims()[0]], &like.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    type B = Autodiff<NdArray>;

    fn values(t: Tensor<NdArray, 1>) -> Vec<f32> {
        t.into_data().into_vec().unwrap()
    }

    /// Tiled rows, and the gradient of each row is the sum over its copies (what burn
    /// 0.21's `repeat_dim` gets wrong).
    #[test]
    fn tile_rows_repeats_in_blocks_with_the_summed_gradient() {
        let device = Default::default();
        let x = Tensor::<B, 2>::from_floats([[1.0], [2.0]], &device).require_grad();
        let w = Tensor::<B, 2>::from_floats([[1.0], [10.0], [100.0], [1e3], [1e4], [1e5]], &device);
        let y = tile_rows(x.clone(), 3);
        let forward: Vec<f32> = y.clone().inner().into_data().into_vec().unwrap();
        assert_eq!(forward, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let grads = (y * w).sum().backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().into_vec().unwrap();
        assert_eq!(g, [10101.0, 101010.0]);
    }

    #[test]
    fn softplus_is_accurate_and_has_the_right_gradient() {
        let device = Default::default();
        let xs = [-100.0f32, -20.0, -1.0, 0.0, 1.0, 19.9, 20.1, 100.0, 1e4];
        let x = Tensor::<B, 1>::from_floats(xs, &device).require_grad();
        let y = softplus(x.clone());
        let grads = y.clone().sum().backward();
        let (y, g) = (values(y.inner()), values(x.grad(&grads).unwrap()));
        for ((&x, y), g) in xs.iter().zip(y).zip(g) {
            let x = f64::from(x);
            let want = if x > 30.0 { x } else { x.exp().ln_1p() };
            let want_grad = 1.0 / (1.0 + (-x).exp());
            assert!(
                (f64::from(y) - want).abs() <= 1e-6 * want.abs().max(1e-30) + 1e-37,
                "softplus({x}) = {y}, want {want}"
            );
            assert!(
                (f64::from(g) - want_grad).abs() < 1e-6,
                "softplus'({x}) = {g}, want {want_grad}"
            );
        }
    }

    #[test]
    fn logaddexp_is_stable_and_splits_the_gradient_at_a_tie() {
        let device = Default::default();
        let a = Tensor::<B, 1>::from_floats([0.0f32, -1000.0, 1000.0, 3.0], &device).require_grad();
        let b = Tensor::<B, 1>::from_floats([0.0f32, -1000.0, -5.0, 3.5], &device).require_grad();
        let y = logaddexp(a.clone(), b.clone());
        let grads = y.clone().sum().backward();
        let y = values(y.inner());
        let want = [
            2f64.ln(),
            -1000.0 + 2f64.ln(),
            1000.0,
            3.5 + (-0.5f64).exp().ln_1p(),
        ];
        for (y, w) in y.iter().zip(want) {
            assert!(
                (f64::from(*y) - w).abs() < 1e-4 * w.abs().max(1.0),
                "{y} vs {w}"
            );
        }
        let ga = values(a.grad(&grads).unwrap());
        assert_eq!(ga[0], 0.5);
        assert_eq!(ga[1], 0.5);
    }
}
