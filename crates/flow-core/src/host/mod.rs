//! Fused kernels for the CPU backends (`flex`, `ndarray`), in plain Rust over host memory,
//! with hand-written backward passes registered with burn's autodiff.
//!
//! The CPU backends run a tensor-op kernel as one pass over memory per operation, each
//! with a freshly allocated output: the rational-quadratic spline's reference
//! ([`crate::rq_spline_reference`]) takes about 60 of them, and strided views of the
//! parameters force element-by-element copies. Here the spline is one pass over the entries
//! in `f64` (the normalisation of the raw parameters, the bin search, the forward or
//! inverse map and the log-derivative; the private module `host::spline` has the details),
//! split over rayon's threads, and its backward one more pass. The tensors of these backends live in host
//! memory: the kernels read them in place, converting each value to `f64` as they read it.
//!
//! Backends: `burn::backend::Flex` (feature `flex`), `burn::backend::NdArray` (f32,
//! feature `ndarray`) and `Autodiff` of either; every other backend takes the reference.
//!
//! Planar steps are fused the same way ([`planar_stack`], one step [`planar`]): one pass
//! per row through every step (the constraint on `û`, `tanh`, the step and its
//! log-determinant), and one for the backward, which recomputes the row's intermediate
//! points; in the VAE's amortized posterior that replaces about 20 tensor operations per
//! step, forward and backward, on `[128, 32]` tensors, and the slices of the encoder's
//! output that feed each step.
//!
//! The ReLU networks that condition couplings and autoregressive layers, and the VAE's
//! encoder and decoder, run as one kernel too ([`relu_mlp`]): the rows split over the
//! threads once, through every layer and back (its module docs give the math).

use rayon::prelude::*;

use burn::tensor::{Tensor, TensorData, TensorPrimitive, backend::Backend, ops::FloatTensor};

pub mod affine;
pub mod bernoulli;
mod kinks;
mod math;
pub mod mlp;
mod op;
mod sparse;
mod spline;

pub use affine::affine_params;
pub use bernoulli::bernoulli_log_likelihood;
pub use mlp::{MAX_LAYERS, relu_mlp, relu_mlp_masked};
pub use spline::{rq_spline, rq_spline_params};

fn softplus(x: f64) -> f64 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

fn softplus_grad(x: f64) -> f64 {
    if x > 20.0 {
        1.0
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A kernel's inputs, each `[rows, cols]`, read in place (see [`op::Values`]): the first is
/// the input transformed, the others its parameters.
#[derive(Debug)]
struct Host(op::Args);

/// A float tensor's values. Only called for the host-resident backends of
/// [`op::apply`], where this is a read of host memory, not a device-to-host transfer.
fn values<B: Backend>(t: FloatTensor<B>) -> TensorData {
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)).into_data()
}

impl Host {
    /// Rows `n` and columns `d` of the first input (the one transformed).
    fn size(&self) -> (usize, usize) {
        (self.0.shapes[0][0], self.0.shapes[0][1])
    }

    /// The parameter row of data row `i`: parameters are per row, or one row shared.
    fn param_row(&self, i: usize) -> usize {
        if self.0.shapes[1][0] == 1 { 0 } else { i }
    }

    /// How many inputs there are.
    fn inputs(&self) -> usize {
        self.0.values.len()
    }

    /// Input `p`'s values, row-major.
    fn input(&self, p: usize) -> &[f32] {
        &self.0.values[p]
    }

    /// Input `p`'s shape.
    fn shape(&self, p: usize) -> [usize; 2] {
        self.0.shapes[p]
    }
}

/// A fused CPU kernel: a packed `[n, d + 1]` output (the `d` transformed values, then the
/// row's log-determinant) and the gradients of its inputs.
trait Kernel: Clone + Send + Sync + std::fmt::Debug + 'static {
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
    if x.shape(1)[0] == 1 && n > 1 {
        // Shared parameters: the sum of every row's gradient.
        for (grad, &c) in grads.iter_mut().zip(&widths).skip(1) {
            let (first, rest) = grad.split_at_mut(c);
            for row in rest.chunks_exact(c) {
                first.iter_mut().zip(row).for_each(|(t, g)| *t += g);
            }
            grad.truncate(c);
        }
    }
    grads
}

/// The same row blocks of every `[m, widths[i]]` buffer, grouped by task (`rows` rows each;
/// a buffer of width 0 gives every task an empty block).
fn blocks<'a>(
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
fn buckets<T: Copy + Default>(
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
fn dispatch<B: Backend, K: Kernel, const N: usize>(
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

/// Per-row quantities of one planar step (`crate::planar`'s math; the backward is that of
/// `crate::fused`'s planar kernel, whose docs derive it).
struct PlanarRow {
    wu: f64,
    ww: f64,
    c: f64,
    wuh: f64,
    h: f64,
    hp: f64,
    s: f64,
}

impl PlanarRow {
    /// The step with parameters `u, w, b` at the point `z`.
    fn new(z: &[f64], u: &[f32], w: &[f32], b: f64) -> Self {
        let (mut wu, mut ww, mut wz) = (0.0, 0.0, 0.0);
        for ((&wk, &uk), &zk) in w.iter().zip(u).zip(z) {
            let (wk, uk) = (f64::from(wk), f64::from(uk));
            wu += wk * uk;
            ww += wk * wk;
            wz += wk * zk;
        }
        let c = (softplus(wu) - 1.0 - wu) / (ww + 1e-12);
        let wuh: f64 = w
            .iter()
            .zip(u)
            .map(|(&wk, &uk)| f64::from(wk) * (f64::from(uk) + c * f64::from(wk)))
            .sum();
        let h = (wz + b).tanh();
        let hp = 1.0 - h * h;
        PlanarRow {
            wu,
            ww,
            c,
            wuh,
            h,
            hp,
            s: 1.0 + hp * wuh,
        }
    }

    /// `z ← z + û h`, returning the step's `ln|det J|`.
    fn apply(&self, z: &mut [f64], u: &[f32], w: &[f32]) -> f64 {
        for ((zk, &uk), &wk) in z.iter_mut().zip(u).zip(w) {
            *zk += (f64::from(uk) + self.c * f64::from(wk)) * self.h;
        }
        (self.s.abs() + 1e-12).ln()
    }

    /// The gradients of the step taken at `z` from those of its output (`g`, `d` values)
    /// and of its log-determinant (`g_l`): `z`'s into `gz`, `u`'s and `w`'s into `gu`, `gw`;
    /// returns `b`'s.
    fn backward(
        &self,
        (z, u, w): (&[f64], &[f32], &[f32]),
        g: &[f64],
        g_l: f64,
        gz: &mut [f64],
        gu: &mut [f32],
        gw: &mut [f32],
    ) -> f64 {
        let sign = if self.s > 0.0 {
            1.0
        } else if self.s < 0.0 {
            -1.0
        } else {
            0.0
        };
        let g_s = g_l * sign / (self.s.abs() + 1e-12);
        let g_wuh = g_s * self.hp;
        let (mut g_dot_uh, mut g_c) = (0.0, 0.0);
        for k in 0..z.len() {
            let (uk, wk) = (f64::from(u[k]), f64::from(w[k]));
            g_dot_uh += g[k] * (uk + self.c * wk);
            g_c += (g[k] * self.h + g_wuh * wk) * wk;
        }
        let g_a = (g_dot_uh - 2.0 * self.h * self.wuh * g_s) * self.hp;
        let q = self.ww + 1e-12;
        let g_wu = g_c / q * (softplus_grad(self.wu) - 1.0);
        let g_ww = -g_c * self.c / q;
        for k in 0..z.len() {
            let (uk, wk) = (f64::from(u[k]), f64::from(w[k]));
            let uh = uk + self.c * wk;
            let g_uh = g[k] * self.h + g_wuh * wk;
            gz[k] = g[k] + g_a * wk;
            gu[k] = (g_uh + g_wu * wk) as f32;
            gw[k] = (g_a * z[k] + g_wuh * uh + self.c * g_uh + g_wu * uk + 2.0 * g_ww * wk) as f32;
        }
        g_a
    }
}

/// `steps` planar steps in a row (one step is `steps = 1`). Inputs: `z: [n, d]` and
/// `θ: [m, steps·(2d + 1)]` (`m ∈ {1, n}`), step `k` reading `u, w, b` from columns
/// `k(2d + 1) + [0, d)`, `[d, 2d)`, `2d`; the output is `z_K` and `Σ_k ln|det J_k|`. The
/// backward pass recomputes the row's `z_0 … z_{K−1}` (scratch) and goes back through the
/// steps.
#[derive(Debug, Clone, Copy)]
struct PlanarStack {
    steps: usize,
    /// Columns of `z`.
    d: usize,
}

impl PlanarStack {
    /// `(u, w, b)` of step `k` for data row `i`.
    fn params<'a>(&self, x: &'a Host, i: usize, k: usize) -> (&'a [f32], &'a [f32], f64) {
        let d = self.d;
        let row = &x.input(1)[x.param_row(i) * x.shape(1)[1]..][k * (2 * d + 1)..];
        (&row[..d], &row[d..2 * d], f64::from(row[2 * d]))
    }

    /// `z_0 … z_K` of row `i` into `zs` (`(K + 1)·d` values), returning `Σ_k ln|det J_k|`.
    fn run(&self, x: &Host, i: usize, zs: &mut [f64]) -> f64 {
        let d = self.d;
        let z0 = &x.input(0)[i * d..(i + 1) * d];
        zs[..d]
            .iter_mut()
            .zip(z0)
            .for_each(|(z, &v)| *z = f64::from(v));
        let mut ladj = 0.0;
        for k in 0..self.steps {
            let (u, w, b) = self.params(x, i, k);
            let (done, next) = zs.split_at_mut((k + 1) * d);
            let z = &done[k * d..];
            let next = &mut next[..d];
            next.copy_from_slice(z);
            ladj += PlanarRow::new(z, u, w, b).apply(next, u, w);
        }
        ladj
    }
}

impl Kernel for PlanarStack {
    // A step is ~100 flops a row for the VAE's 32 latents; through its 10 steps the
    // batch of 128 rows is worth two tasks (vae-planar 17.8k → 18.1k images/s against one).
    const ROWS_PER_TASK: usize = 64;

    /// `z_0 … z_K`, then two gradients of `z`.
    fn scratch(&self) -> usize {
        (self.steps + 3) * self.d
    }

    fn row(&self, x: &Host, i: usize, out: &mut [f32], scratch: &mut [f64]) -> f64 {
        let ladj = self.run(x, i, scratch);
        let z = &scratch[self.steps * self.d..][..self.d];
        out.iter_mut().zip(z).for_each(|(o, &z)| *o = z as f32);
        ladj
    }

    fn row_backward(
        &self,
        x: &Host,
        i: usize,
        g: &[f32],
        gz: &mut [f32],
        g_params: &mut [&mut [f32]],
        scratch: &mut [f64],
    ) {
        let ([theta], d) = (g_params, self.d) else {
            unreachable!("the planar steps have one parameter input")
        };
        let (zs, g_zs) = scratch.split_at_mut((self.steps + 1) * d);
        self.run(x, i, zs);
        // Back through the steps, ∂L/∂z_{k+1} in `g_z`, ∂L/∂z_k into `next`.
        let (mut g_z, mut next) = g_zs.split_at_mut(d);
        g_z.iter_mut().zip(g).for_each(|(o, &g)| *o = f64::from(g));
        let g_l = f64::from(g[d]);
        for k in (0..self.steps).rev() {
            let (u, w, b) = self.params(x, i, k);
            let z = &zs[k * d..(k + 1) * d];
            let (gu, rest) = theta[k * (2 * d + 1)..].split_at_mut(d);
            let (gw, gb) = rest.split_at_mut(d);
            let row = PlanarRow::new(z, u, w, b);
            gb[0] = row.backward((z, u, w), g_z, g_l, next, gu, gw) as f32;
            std::mem::swap(&mut g_z, &mut next);
        }
        gz.iter_mut()
            .zip(g_z.iter())
            .for_each(|(o, &g)| *o = g as f32);
    }
}

/// The fused planar step on `B`, or `None` when `B` is not one of this module's CPU
/// backends. Same contract as [`crate::planar()`].
pub fn planar<B: Backend>(
    z: &Tensor<B, 2>,
    u: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    b: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let theta = Tensor::cat(vec![u.clone(), w.clone(), b.clone()], 1);
    planar_stack(z, &theta, 1)
}

/// `steps` fused planar steps on `B`, or `None` when `B` is not one of this module's CPU
/// backends or the shapes do not fit. Same contract as [`crate::planar_stack()`].
pub fn planar_stack<B: Backend>(
    z: &Tensor<B, 2>,
    theta: &Tensor<B, 2>,
    steps: usize,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let ([n, d], [m, p]) = (z.dims(), theta.dims());
    if steps == 0 || p != steps * (2 * d + 1) || (m != 1 && m != n) {
        return None;
    }
    dispatch([z, theta], PlanarStack { steps, d })
}

/// What the CPU kernels' tests share: reading results, and comparing them with a
/// reference.
#[cfg(all(test, feature = "ndarray"))]
mod check {
    use burn::tensor::{Tensor, backend::Backend};

    /// A deterministic stream of uniform values on (−1, 1) (xorshift64).
    pub(super) fn uniforms(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    /// A tensor's values in `f64`.
    pub(super) fn values_of<C: Backend, const D: usize>(t: Tensor<C, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().into_vec().unwrap()
    }

    /// Asserts every output of ours within `tol(name)` of the reference's (relative, floor
    /// 1 near zero), one name per output.
    pub(super) fn assert_agree(
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
    use super::check::{assert_agree, uniforms, values_of};
    use super::*;

    #[test]
    fn buckets_group_in_order() {
        let items = [(2, 10u32), (0, 11), (2, 12), (1, 13), (0, 14)];
        let (start, values) = buckets(items.into_iter(), 4);
        assert_eq!(start, [0, 2, 3, 5, 5]);
        assert_eq!(values, [11, 14, 13, 10, 12]);
    }
    use crate::{planar_reference, planar_stack_reference};

    type B = burn::backend::Autodiff<burn::backend::NdArray>;

    /// The kernels' loops run on the CPU's vector units: pulp's dispatch picks AVX-512 or
    /// AVX2 + FMA wherever the CPU has them. Without pulp's `x86-v3` feature an AVX2-only
    /// CPU got the scalar path, and every kernel (affine, MLP passes, Adam, Bernoulli) ran
    /// as SSE2 there (maf-mnist's log_prob −15 % on a Zen 3).
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

    /// The CPU planar step against the tensor-op reference: values, ladj and the gradients
    /// of `z, u, w, b`, for per-row and shared parameters, with a saturated row, `w = 0`
    /// and a large `wᵀu` (softplus' linear branch) among the rows.
    #[test]
    fn planar_matches_reference() {
        let device = Default::default();
        let (n, d) = (29, 6);
        let mut uniform = uniforms(0x853C_49E6_748F_EA9B);
        for m in [1, n] {
            let mut values = |rows: usize, cols: usize, scale: f64| -> Vec<f32> {
                (0..rows * cols)
                    .map(|_| (scale * uniform()) as f32)
                    .collect()
            };
            let z = values(n, d, 2.0);
            let mut u = values(m, d, 1.0);
            let mut w = values(m, d, 1.0);
            let mut b = values(m, 1, 0.5);
            if m == n {
                b[0] = 40.0; // saturated tanh
                w[d..2 * d].fill(0.0); // w = 0: a translation
                for k in 0..d {
                    u[2 * d + k] = 8.0 * w[2 * d + k].signum(); // wᵀu > 20
                }
            }
            let tensor = |v: Vec<f32>, rows: usize, cols: usize| {
                Tensor::<B, 2>::from_data(TensorData::new(v, [rows, cols]), &device).require_grad()
            };
            let inputs = [
                tensor(z, n, d),
                tensor(u, m, d),
                tensor(w, m, d),
                tensor(b, m, 1),
            ];
            let gy = Tensor::<B, 2>::from_data(TensorData::new(values(n, d, 1.0), [n, d]), &device);
            let gl = Tensor::<B, 1>::from_data(TensorData::new(values(n, 1, 1.0), [n]), &device);
            let run = |fused: bool| -> Vec<Vec<f64>> {
                let [z, u, w, b] = inputs.clone();
                let (y, l) = if fused {
                    planar(&z, &u, &w, &b).expect("ndarray has the CPU kernel")
                } else {
                    planar_reference(z.clone(), u.clone(), w.clone(), b.clone())
                };
                let grads =
                    ((y.clone() * gy.clone()).sum() + (l.clone() * gl.clone()).sum()).backward();
                let host = |t: Tensor<burn::backend::NdArray, 2>| -> Vec<f64> {
                    t.into_data().convert::<f64>().into_vec().unwrap()
                };
                vec![
                    y.into_data().convert::<f64>().into_vec().unwrap(),
                    l.into_data().convert::<f64>().into_vec().unwrap(),
                    host(z.grad(&grads).unwrap()),
                    host(u.grad(&grads).unwrap()),
                    host(w.grad(&grads).unwrap()),
                    host(b.grad(&grads).unwrap()),
                ]
            };
            let (ours, reference) = (run(true), run(false));
            let names = ["z'", "ladj", "∂z", "∂u", "∂w", "∂b"];
            assert_agree(&format!("m = {m}"), &names, &ours, &reference, |_| 1e-4);
        }
    }

    /// Several planar steps in one kernel against the steps as a loop of the tensor-op
    /// reference: `z_K`, `Σ ln|det J|` and the gradients of `z` and of every step's
    /// parameters, per-row and shared, with a saturated step, `w = 0` and a large `wᵀu` among
    /// the rows.
    #[test]
    fn planar_stack_matches_reference() {
        let device = Default::default();
        let (n, d, steps) = (23, 5, 4);
        let p = 2 * d + 1;
        let mut uniform = uniforms(0x2545_F491_4F6C_DD1D);
        for m in [1, n] {
            let mut values = |len: usize, scale: f64| -> Vec<f32> {
                (0..len).map(|_| (scale * uniform()) as f32).collect()
            };
            let z = values(n * d, 2.0);
            let mut theta = values(m * steps * p, 1.0);
            if m == n {
                theta[steps * p + p + 2 * d] = 40.0; // row 1, step 1: saturated tanh
                theta[2 * steps * p + d..2 * steps * p + 2 * d].fill(0.0); // row 2, step 0: w = 0
                for k in 0..d {
                    let (u, w) = (3 * steps * p + 2 * p + k, 3 * steps * p + 2 * p + d + k);
                    theta[u] = 8.0 * theta[w].signum(); // row 3, step 2: wᵀu > 20
                }
            }
            let tensor = |v: Vec<f32>, rows: usize, cols: usize| {
                Tensor::<B, 2>::from_data(TensorData::new(v, [rows, cols]), &device).require_grad()
            };
            let (z, theta) = (tensor(z, n, d), tensor(theta, m, steps * p));
            let gy =
                Tensor::<B, 2>::from_data(TensorData::new(values(n * d, 1.0), [n, d]), &device);
            let gl = Tensor::<B, 1>::from_data(TensorData::new(values(n, 1.0), [n]), &device);
            let run = |fused: bool| -> Vec<Vec<f64>> {
                let (y, l) = match fused {
                    true => planar_stack(&z, &theta, steps).expect("ndarray has the CPU kernel"),
                    false => planar_stack_reference(z.clone(), theta.clone(), steps),
                };
                let grads =
                    ((y.clone() * gy.clone()).sum() + (l.clone() * gl.clone()).sum()).backward();
                vec![
                    values_of(y),
                    values_of(l),
                    values_of(z.grad(&grads).unwrap()),
                    values_of(theta.grad(&grads).unwrap()),
                ]
            };
            let names = ["z_K", "ladj", "∂z", "∂θ"];
            let case = format!("m = {m}");
            assert_agree(&case, &names, &run(true), &run(false), |_| 1e-4);
        }
    }
}
