//! What the CPU bodies share (features `flex`, `ndarray`): inputs read from host memory in
//! place ([`op`]), one autodiff node per op with its hand-written backward, the row kernels'
//! driver ([`Kernel`], [`dispatch`]: rows split over rayon's threads, each task's loop
//! compiled inside pulp's dispatch for the CPU's SIMD), and the scalar math ([`math`]).
//!
//! The CPU backends run a tensor-op reference as one pass over memory per operation, each
//! with a freshly allocated output (the rational-quadratic spline's takes about 60 of them,
//! and strided views of the parameters force element-by-element copies). A body here makes
//! one pass over the rows for the forward and one for the backward. The tensors of these
//! backends live in host memory: the kernels read them in place.

use rayon::prelude::*;

use burn::tensor::{Tensor, backend::Backend};

use crate::SOFTPLUS_LINEAR_ABOVE;

pub(crate) mod math;
pub(crate) mod op;

/// `ln(1 + eˣ)`, linear above [`SOFTPLUS_LINEAR_ABOVE`].
pub(crate) fn softplus(x: f64) -> f64 {
    if x > SOFTPLUS_LINEAR_ABOVE {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// The derivative of [`softplus`]: `σ(x)`, 1 above [`SOFTPLUS_LINEAR_ABOVE`].
pub(crate) fn softplus_grad(x: f64) -> f64 {
    if x > SOFTPLUS_LINEAR_ABOVE {
        1.0
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A kernel's inputs, each `[rows, cols]`, read in place (see [`op::Values`]): the first is
/// the input transformed, the others its parameters.
#[derive(Debug)]
pub(crate) struct Host(op::Args);

impl Host {
    /// Rows `n` and columns `d` of the first input (the one transformed).
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.0.shapes[0][0], self.0.shapes[0][1])
    }

    /// The parameter row of data row `i`: parameters are per row, one row shared, or
    /// tiled (`n/t` rows, data row `i` taking row `i mod n/t`: `t` samples of each data
    /// point in `t` blocks).
    pub(crate) fn param_row(&self, i: usize) -> usize {
        i % self.0.shapes[1][0]
    }

    /// How many inputs there are.
    pub(crate) fn inputs(&self) -> usize {
        self.0.values.len()
    }

    /// Input `p`'s values, row-major.
    pub(crate) fn input(&self, p: usize) -> &[f32] {
        &self.0.values[p]
    }

    /// Input `p`'s shape.
    pub(crate) fn shape(&self, p: usize) -> [usize; 2] {
        self.0.shapes[p]
    }
}

/// A fused CPU kernel: a packed `[n, d + 1]` output (the `d` transformed values, then the
/// row's log-determinant) and the gradients of its inputs.
pub(crate) trait Kernel: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Whole rows per thread task.
    const ROWS_PER_TASK: usize;
    /// The transformed values of row `i` into `out[..d]`, returning its log-determinant.
    fn row(&self, x: &Host, i: usize, out: &mut [f32], scratch: &mut [f64]) -> f64;
    /// Row `i`'s gradients from `g = ∂L/∂out[i, ..]` (`d + 1` values): the first
    /// input's into `g_in`, each parameter's (for this row) into `g_params`.
    fn row_backward(
        &self,
        x: &Host,
        i: usize,
        g: &[f32],
        g_in: &mut [f32],
        g_params: &mut [&mut [f32]],
        scratch: &mut [f64],
    );
    /// Scratch values a row needs.
    fn scratch(&self) -> usize;
}

/// The kernel on every row: `[n, d + 1]`.
fn forward<K: Kernel>(k: &K, x: &Host) -> Vec<f32> {
    let (n, d) = x.size();
    let mut out = vec![0f32; n * (d + 1)];
    out.par_chunks_mut(K::ROWS_PER_TASK * (d + 1))
        .enumerate()
        .for_each(|(task, rows)| {
            let first = task * K::ROWS_PER_TASK;
            pulp::Arch::new().dispatch(Forward { k, x, first, rows });
        });
    out
}

/// One thread task's rows of [`forward`], run through pulp's dispatch: a kernel whose `row`
/// is `#[inline(always)]` (the spline's) is compiled there for the CPU's SIMD.
struct Forward<'a, K> {
    k: &'a K,
    x: &'a Host,
    first: usize,
    rows: &'a mut [f32],
}

impl<K: Kernel> pulp::WithSimd for Forward<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self { k, x, first, rows } = self;
        let d = x.size().1;
        let mut scratch = vec![0.0; k.scratch()];
        for (r, row) in rows.chunks_mut(d + 1).enumerate() {
            row[d] = k.row(x, first + r, &mut row[..d], &mut scratch) as f32;
        }
    }
}

/// Gradients of the inputs from the gradient `g: [n, d + 1]` of [`forward`]'s output, each
/// in its input's shape (summed over rows for shared parameters).
fn backward<K: Kernel>(k: &K, x: &Host, g: &[f32]) -> Vec<Vec<f32>> {
    let (n, d) = x.size();
    // Every input's gradient per row: the kernel writes row `i`'s straight into row `i` of
    // each buffer.
    let widths: Vec<usize> = (0..x.inputs())
        .map(|p| if p == 0 { d } else { x.shape(p)[1] })
        .collect();
    let mut grads: Vec<Vec<f32>> = widths.iter().map(|&c| vec![0f32; n * c]).collect();
    blocks(&mut grads, &widths, n, K::ROWS_PER_TASK)
        .into_par_iter()
        .enumerate()
        .for_each(|(task, mut block)| {
            let mut scratch = vec![0.0; k.scratch()];
            let first = task * K::ROWS_PER_TASK;
            for r in 0..(n - first).min(K::ROWS_PER_TASK) {
                let i = first + r;
                let (g_in, params) = block.split_first_mut().expect("the input's gradient");
                let mut g_params: Vec<&mut [f32]> = params
                    .iter_mut()
                    .zip(&widths[1..])
                    .map(|(b, &c)| &mut b[r * c..(r + 1) * c])
                    .collect();
                k.row_backward(
                    x,
                    i,
                    &g[i * (d + 1)..(i + 1) * (d + 1)],
                    &mut g_in[r * d..(r + 1) * d],
                    &mut g_params,
                    &mut scratch,
                );
            }
        });
    let rows = x.shape(1)[0];
    if rows < n {
        // Shared or tiled parameters: each row's gradient is the sum over the data rows
        // that read it.
        for (grad, &c) in grads.iter_mut().zip(&widths).skip(1) {
            let (first, rest) = grad.split_at_mut(rows * c);
            for block in rest.chunks_exact(rows * c) {
                first.iter_mut().zip(block).for_each(|(t, g)| *t += g);
            }
            grad.truncate(rows * c);
        }
    }
    grads
}

/// The same row blocks of every `[m, widths[i]]` buffer, grouped by task (`rows` rows each;
/// a buffer of width 0 gives every task an empty block).
pub(crate) fn blocks<'a>(
    bufs: &'a mut [Vec<f32>],
    widths: &[usize],
    m: usize,
    rows: usize,
) -> Vec<Vec<&'a mut [f32]>> {
    let mut tasks: Vec<Vec<&mut [f32]>> = (0..m.div_ceil(rows.max(1)))
        .map(|_| Vec::with_capacity(widths.len()))
        .collect();
    for (buf, &w) in bufs.iter_mut().zip(widths) {
        match w {
            0 => tasks.iter_mut().for_each(|t| t.push(&mut [])),
            _ => tasks
                .iter_mut()
                .zip(buf.chunks_mut(rows * w))
                .for_each(|(t, block)| t.push(block)),
        }
    }
    tasks
}

/// Groups `items`, each `(bucket, value)` with `bucket < count`, by bucket, in their order
/// within a bucket (a counting sort: one pass to count, one to place): bucket `b`'s values
/// are `values[start[b]..start[b + 1]]`. Returns `(start, values)`.
#[inline(always)]
pub(crate) fn buckets<T: Copy + Default>(
    items: impl Iterator<Item = (usize, T)> + Clone,
    count: usize,
) -> (Vec<usize>, Vec<T>) {
    let mut start = vec![0; count + 1];
    items.clone().for_each(|(b, _)| start[b + 1] += 1);
    for b in 0..count {
        start[b + 1] += start[b];
    }
    let mut next = start.clone();
    let mut values = vec![T::default(); start[count]];
    for (b, v) in items {
        values[next[b]] = v;
        next[b] += 1;
    }
    (start, values)
}

/// A row kernel as one of this module's operations: the packed output `[n, d + 1]`.
#[derive(Debug)]
struct Rows<K>(K);

impl<K: Kernel> op::HostOp for Rows<K> {
    type Saved = (K, Host);

    fn forward(&self, args: op::Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Self::Saved>) {
        let x = Host(args);
        let (n, d) = x.size();
        let out = forward(&self.0, &x);
        (out, [n, d + 1], keep.then(|| (self.0.clone(), x)))
    }

    fn backward((kernel, x): &Self::Saved, g: &[f32], _: &[bool]) -> Vec<Vec<f32>> {
        backward(kernel, x, g)
    }
}

/// Runs `kernel` when `B` is one of this module's backends: `(values [n, d], ladj [n])`.
pub(crate) fn dispatch<B: Backend, K: Kernel, const N: usize>(
    args: [&Tensor<B, 2>; N],
    kernel: K,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let packed = op::apply(Rows(kernel), args.map(Tensor::clone))?;
    let [n, d1] = packed.dims();
    // `slice`, not `narrow`: the values may be empty (`d = 0`), which `narrow` rejects.
    Some((
        packed.clone().slice([0..n, 0..d1 - 1]),
        packed.slice([0..n, d1 - 1..d1]).reshape([n]),
    ))
}

/// What the CPU kernels' tests share: reading results, and comparing them with a
/// reference.
#[cfg(all(test, feature = "ndarray"))]
pub(crate) mod check {
    use burn::tensor::{Tensor, backend::Backend};

    /// A deterministic stream of uniform values on (−1, 1) (xorshift64).
    pub(crate) fn uniforms(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    /// A tensor's values in `f64`.
    pub(crate) fn values_of<C: Backend, const D: usize>(t: Tensor<C, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().into_vec().unwrap()
    }

    /// Asserts every output of ours within `tol(name)` of the reference's (relative, floor
    /// 1 near zero), one name per output.
    pub(crate) fn assert_agree(
        case: &str,
        names: &[&str],
        ours: &[Vec<f64>],
        reference: &[Vec<f64>],
        tol: impl Fn(&str) -> f64,
    ) {
        assert_eq!(
            (names.len(), ours.len()),
            (reference.len(), reference.len())
        );
        for ((name, a), b) in names.iter().zip(ours).zip(reference) {
            assert_eq!(a.len(), b.len(), "{name}");
            // NaN on one side only is the worst disagreement (`f64::max` would skip it).
            let off = |(a, b): (&f64, &f64)| match (a.is_nan(), b.is_nan()) {
                (true, true) => 0.0,
                (false, false) => (a - b).abs() / b.abs().max(1.0),
                _ => f64::INFINITY,
            };
            let worst = a.iter().zip(b).map(off).fold(0.0, f64::max);
            assert!(worst < tol(name), "{name} ({case}): off by {worst:e}");
        }
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;

    #[test]
    fn buckets_group_in_order() {
        let items = [(2, 10u32), (0, 11), (2, 12), (1, 13), (0, 14)];
        let (start, values) = buckets(items.into_iter(), 4);
        assert_eq!(start, [0, 2, 3, 5, 5]);
        assert_eq!(values, [11, 14, 13, 10, 12]);
    }
    /// The kernels' loops run on the CPU's vector units: pulp's dispatch picks AVX-512 or
    /// AVX2 + FMA wherever the CPU has them. Without pulp's `x86-v3` feature an AVX2-only
    /// CPU got the scalar path, and every kernel (affine, MLP passes, Adam, Bernoulli) ran
    /// as SSE2 there.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn kernels_dispatch_to_the_cpus_vector_units() {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("lzcnt");
        let arch = pulp::Arch::new();
        assert!(
            !avx2 || !matches!(arch, pulp::Arch::Scalar),
            "the CPU has AVX2 + FMA but pulp dispatches to {arch:?}"
        );
    }
}
