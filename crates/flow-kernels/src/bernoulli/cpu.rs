//! The Bernoulli log-likelihood of `x` under logits `l` as one `f32` CPU kernel, in place of
//! the eight tensor operations of `Σ_j x_j l_j − softplus(l_j)` (and their backward), each a
//! pass over `[n, d]` memory with a fresh output: the VAE's reconstruction term, over the 784
//! pixels of every image, every step.
//!
//! # Math
//! Per row, `ln p(x | l) = Σ_j x_j l_j − softplus(l_j)` with
//! `softplus(l) = max(l, 0) + ln(1 + e^{−|l|})` (no overflow for any `l`), and
//! `ln(1 + e) = 2 artanh(e / (2 + e))` for `e = e^{−|l|} ∈ (0, 1]`, whose argument lies in
//! `(0, ⅓]`: the odd series through `t¹³` is within `10⁻⁸` relative, and stays accurate as
//! `e → 0`, where `ln` of the rounded `1 + e` would not.
//! Backward, with `g` the row's incoming gradient: `∂/∂l_j = g (x_j − σ(l_j))`,
//! `σ(l) = 1 / (1 + e^{−l})` (from the same `e`: `1/(1+e)` for `l ≥ 0`, `e/(1+e)` below),
//! and `∂/∂x_j = g l_j`.
//!
//! `x` is not required to be binary: the formula is the cross-entropy of `x ∈ [0, 1]` too.

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use burn::tensor::{Tensor, backend::Backend};

use crate::host::{
    math::exp_f32,
    op::{Args, HostOp, apply},
};

/// Rows per thread task, at least.
const MIN_ROWS: usize = 16;

/// `ln(1 + e)` for `e ∈ [0, 1]` as `2 artanh(t)`, `t = e / (2 + e) ≤ ⅓` (module docs).
#[inline(always)]
fn ln_1p_unit(e: f32) -> f32 {
    let t = e / (2.0 + e);
    let t2 = t * t;
    let p = 1.0 / 13.0;
    let p = p * t2 + 1.0 / 11.0;
    let p = p * t2 + 1.0 / 9.0;
    let p = p * t2 + 1.0 / 7.0;
    let p = p * t2 + 1.0 / 5.0;
    let p = p * t2 + 1.0 / 3.0;
    let p = p * t2 + 1.0;
    2.0 * t * p
}

/// `x l − softplus(l)`.
#[inline(always)]
fn term(x: f32, l: f32) -> f32 {
    let relu = if l > 0.0 { l } else { 0.0 };
    x * l - relu - ln_1p_unit(exp_f32(-l.abs()))
}

/// `σ(l)`.
#[inline(always)]
fn sigmoid(l: f32) -> f32 {
    let e = exp_f32(-l.abs());
    let s = 1.0 / (1.0 + e);
    if l >= 0.0 { s } else { e * s }
}

/// Rows of `[·, d]` inputs per thread task.
fn task_rows(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1))
        .max(MIN_ROWS)
}

/// One thread task's rows, compiled inside pulp's SIMD dispatch (see
/// `super::affine::Task` for why a struct and not a closure).
enum Task<'a> {
    /// Rows of `x` and `l` (`[rows, d]`) into their log-likelihoods.
    Forward([&'a [f32]; 2], usize, &'a mut [f32]),
    /// Rows of `x`, `l` and the incoming gradient (`[rows]`) into the gradients of `x` and
    /// `l` (`gx` empty when not needed).
    Backward([&'a [f32]; 3], usize, [&'a mut [f32]; 2]),
}

impl WithSimd for Task<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        match self {
            Task::Forward([x, l], d, out) => {
                for ((x, l), out) in x.chunks(d).zip(l.chunks(d)).zip(out) {
                    *out = crate::host::math::sum_lanes(x, l, term);
                }
            }
            Task::Backward([x, l, g], d, [gx, gl]) => {
                for (r, (x, l)) in x.chunks(d).zip(l.chunks(d)).enumerate() {
                    let g = g[r];
                    for ((gl, &x), &l) in gl[r * d..(r + 1) * d].iter_mut().zip(x).zip(l) {
                        *gl = g * (x - sigmoid(l));
                    }
                    if let Some(gx) = gx.get_mut(r * d..(r + 1) * d) {
                        gx.iter_mut().zip(l).for_each(|(gx, &l)| *gx = g * l);
                    }
                }
            }
        }
    }
}

/// The log-likelihood `[n, 1]` of inputs `x, l: [n, d]`.
#[derive(Debug, Clone, Copy)]
struct BernoulliLogLikelihood;

impl HostOp for BernoulliLogLikelihood {
    type Saved = Args;

    fn forward(&self, args: Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Args>) {
        let [n, d] = args.shapes[0];
        let (x, l) = (&args.values[0], &args.values[1]);
        let mut out = vec![0.0; n];
        let rows = task_rows(n);
        out.par_chunks_mut(rows)
            .enumerate()
            .for_each(|(task, out)| {
                let span = task * rows * d..(task * rows + out.len()) * d;
                let task = Task::Forward([&x[span.clone()], &l[span]], d, out);
                Arch::new().dispatch(task)
            });
        (out, [n, 1], keep.then_some(args))
    }

    fn backward(args: &Args, g: &[f32], need: &[bool]) -> Vec<Vec<f32>> {
        let [n, d] = args.shapes[0];
        let (x, l) = (&args.values[0], &args.values[1]);
        let mut gx = vec![0.0; if need[0] { n * d } else { 0 }];
        let mut gl = vec![0.0; n * d];
        let rows = task_rows(n);
        // Without `∂x`, every task gets an empty slice for it.
        let gx_tasks: Vec<&mut [f32]> = match need[0] {
            true => gx.chunks_mut(rows * d).collect(),
            false => (0..n.div_ceil(rows)).map(|_| &mut [][..]).collect(),
        };
        gl.par_chunks_mut(rows * d)
            .zip(gx_tasks)
            .enumerate()
            .for_each(|(task, (gl, gx))| {
                let r0 = task * rows;
                let r1 = r0 + gl.len() / d;
                let inputs = [&x[r0 * d..r1 * d], &l[r0 * d..r1 * d], &g[r0..r1]];
                Arch::new().dispatch(Task::Backward(inputs, d, [gx, gl]))
            });
        vec![gx, gl]
    }
}

/// `ln p(x | l) = Σ_j x_j l_j − softplus(l_j)` per row of `x, logits: [n, d]`, as `[n]`, or
/// `None` when `B` is not one of this module's CPU backends or the shapes differ. The math
/// is in the [module docs](self).
pub(crate) fn bernoulli_log_likelihood<B: Backend>(
    x: &Tensor<B, 2>,
    logits: &Tensor<B, 2>,
) -> Option<Tensor<B, 1>> {
    let [n, d] = x.dims();
    if logits.dims() != [n, d] || n == 0 || d == 0 {
        return None;
    }
    let out = apply(BernoulliLogLikelihood, [x.clone(), logits.clone()])?;
    Some(out.reshape([n]))
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use crate::host::check::{assert_agree, values_of};
    use burn::tensor::{Distribution, TensorData};

    /// The kernel's values and both gradients against the formulas evaluated in `f64` with
    /// the C library's `exp` and `log1p`, on every CPU backend, with logits far into both
    /// tails (where `softplus` is linear or `eˡ`), fractional and binary `x`, and a width
    /// with 16-lane blocks and a tail. (burn's tensor-op chain is itself off by up to
    /// 2·10⁻⁵ in `∂l` at moderate logits, so it would not tell a subtle error apart.)
    #[test]
    fn matches_f64() {
        matches::<burn::backend::Autodiff<burn::backend::NdArray>>();
        #[cfg(feature = "flex")]
        matches::<burn::backend::Autodiff<burn::backend::Flex>>();
    }

    fn matches<B: burn::tensor::backend::AutodiffBackend>() {
        let device = Default::default();
        let (n, d) = (70, 53);
        let normal = Tensor::<B, 2>::random([n, d], Distribution::Normal(0.0, 4.0), &device);
        let mut l: Vec<f32> = normal.into_data().into_vec().unwrap();
        l[..6].copy_from_slice(&[-90.0, -30.0, -1e-6, 0.0, 25.0, 95.0]);
        let p = Tensor::<B, 2>::random([n, d], Distribution::Default, &device);
        let g = Tensor::<B, 1>::random([n], Distribution::Uniform(-1.0, 1.0), &device);
        let binary = p.clone().greater_elem(0.5).float();
        for (case, x) in [("binary", binary), ("fractional", p)] {
            let x = x.detach().require_grad();
            let lt = Tensor::<B, 2>::from_data(TensorData::new(l.clone(), [n, d]), &device);
            let lt = lt.require_grad();
            let out = bernoulli_log_likelihood(&x, &lt).expect("a CPU backend");
            let grads = (out.clone() * g.clone()).sum().backward();
            let ours = [
                values_of(out),
                values_of(x.grad(&grads).unwrap()),
                values_of(lt.grad(&grads).unwrap()),
            ];
            let (xs, gs) = (values_of(x), values_of(g.clone()));
            let ls: Vec<f64> = l.iter().map(|&v| f64::from(v)).collect();
            let softplus = |l: f64| l.max(0.0) + (-l.abs()).exp().ln_1p();
            let sigmoid = |l: f64| 1.0 / (1.0 + (-l).exp());
            let rows = (0..n).map(|r| {
                (r * d..(r + 1) * d)
                    .map(|i| xs[i] * ls[i] - softplus(ls[i]))
                    .sum()
            });
            let exact = [
                rows.collect(),
                (0..n * d).map(|i| gs[i / d] * ls[i]).collect(),
                (0..n * d)
                    .map(|i| gs[i / d] * (xs[i] - sigmoid(ls[i])))
                    .collect(),
            ];
            let names = ["ln p", "∂x", "∂l"];
            assert_agree(case, &names, &ours, &exact, |_| 2e-6);
        }
        let ones = || Tensor::<B, 2>::ones([3, 2], &device);
        assert!(bernoulli_log_likelihood(&ones(), &ones()).is_some());
        let wrong = bernoulli_log_likelihood(&ones(), &Tensor::zeros([2, 3], &device));
        assert!(wrong.is_none(), "mismatched shapes decline");
    }
}
