//! The soft-clamped affine map of flow-core's `Elementwise::Affine` as `f32` CPU kernels: one
//! pass over the entries for the values, one for the log-determinant, one each backward,
//! vectorized (the loops are compiled for the CPU's widest SIMD, chosen at run time), in
//! place of about ten tensor operations, each a pass of its own.
//!
//! # Math
//! Parameters packed `[m, 2d]` (`m ∈ {1, n}`): the shift `t_j` at column `j`, the raw
//! log-scale `ŝ_j` at `d + j`; `s = S·tanh(ŝ/S)`, `∂s/∂ŝ = 1 − tanh²(ŝ/S)`.
//! - forward: `y = x·eˢ + t`, `ln|dy/dx| = Σ_j s_j`;
//!   `∂x = g·eˢ`, `∂t = g`, `∂s = g·x·eˢ` (+ the log-determinant's gradient `g_l`);
//! - inverse: `x = (y − t)·e⁻ˢ`, `ln|dx/dy| = −Σ_j s_j`;
//!   `∂y = g·e⁻ˢ`, `∂t = −g·e⁻ˢ`, `∂s = −g·x` (− `g_l`).
//!
//! The values and the log-determinant are two operations (an autodiff node has one
//! output): the log-determinant depends on the parameters only.

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use burn::tensor::{Tensor, backend::Backend};

use crate::host::{
    math::{exp_f32, sum_lanes, tanh_f32},
    op::{Args, HostOp, apply},
};

/// Entries per thread task, at least.
const MIN_ENTRIES: usize = 16_384;

/// Rows per thread task for `n` rows of `d` entries.
fn task_rows(n: usize, d: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1))
        .max(MIN_ENTRIES.div_ceil(d.max(1)))
        .max(1)
}

/// The affine map's values `[n, d]`: inputs `v: [n, d]` and the packed parameters.
#[derive(Debug, Clone, Copy)]
struct AffineValues {
    bound: f32,
    inverse: bool,
}

/// The log-determinant `[n, 1]` of the affine map: input the packed parameters `[m, 2d]`.
#[derive(Debug, Clone, Copy)]
struct AffineLadj {
    bound: f32,
    inverse: bool,
    n: usize,
}

/// Row `i`'s parameters `(shift, raw log-scale)`, each `d` long.
fn params(p: &[f32], m: usize, d: usize, i: usize) -> (&[f32], &[f32]) {
    let row = if m == 1 { 0 } else { i };
    p[row * 2 * d..(row + 1) * 2 * d].split_at(d)
}

/// Per-row parameter gradients `[n, 2d]` summed into `[1, 2d]` when the parameters are
/// shared (`m = 1`).
fn fold_shared(g: Vec<f32>, m: usize, d: usize) -> Vec<f32> {
    if m != 1 {
        return g;
    }
    let mut total = vec![0.0; 2 * d];
    for row in g.chunks(2 * d) {
        total.iter_mut().zip(row).for_each(|(t, g)| *t += g);
    }
    total
}

/// One thread task's rows of one of the kernels. It runs through pulp's dispatch as a
/// [`WithSimd`] whose `with_simd` (and the loop functions it calls) are `#[inline(always)]`,
/// so the loops are compiled inside the dispatch's AVX-512 (or AVX2) function. A closure
/// would not do: pulp calls it through its `FnOnce` shim, which is not inlined, and the loop
/// then runs with the baseline's SSE2 (it did, at about 60 % of the speed).
enum Task<'a> {
    Values(Rows<'a>, &'a [f32], &'a mut [f32]),
    ValuesBackward(Rows<'a>, [&'a [f32]; 2], [&'a mut [f32]; 2]),
    Ladj(Rows<'a>, &'a mut [f32]),
    LadjBackward(Rows<'a>, &'a [f32], f32, &'a mut [f32]),
}

/// What every task reads: its first row `r0`, the packed parameters `p: [m, 2d]`, the
/// clamp's bound, and the direction.
#[derive(Clone, Copy)]
struct Rows<'a> {
    r0: usize,
    p: &'a [f32],
    m: usize,
    d: usize,
    bound: f32,
    inverse: bool,
}

impl<'a> Rows<'a> {
    /// From the first row (the task sets `r0`).
    fn new(p: &'a [f32], m: usize, d: usize, bound: f32, inverse: bool) -> Self {
        Self {
            r0: 0,
            p,
            m,
            d,
            bound,
            inverse,
        }
    }

    /// The task's row `r`: its index in the batch and its `(shift, raw log-scale)`.
    #[inline(always)]
    fn row(&self, r: usize) -> (usize, &'a [f32], &'a [f32]) {
        let i = self.r0 + r;
        let (shift, raw) = params(self.p, self.m, self.d, i);
        (i, shift, raw)
    }

    /// `tanh(a / S)`: the soft clamp is `s = S·tanh(a / S)`.
    #[inline(always)]
    fn tanh(&self, a: f32) -> f32 {
        tanh_f32(a / self.bound)
    }
}

impl Task<'_> {
    fn run(self) {
        Arch::new().dispatch(self)
    }
}

impl WithSimd for Task<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        match self {
            Task::Values(rows, v, out) => values(rows, v, out),
            Task::ValuesBackward(rows, [v, g], [gv, gp]) => values_backward(rows, v, g, gv, gp),
            Task::Ladj(rows, out) => ladj(rows, out),
            Task::LadjBackward(rows, g, total, out) => ladj_backward(rows, g, total, out),
        }
    }
}

/// The sign of the log-determinant: `−1` for the inverse.
fn sign(inverse: bool) -> f32 {
    if inverse { -1.0 } else { 1.0 }
}

/// Rows `r0…` of the values of `v: [n, d]` into `block` (rows of `d`).
#[inline(always)]
fn values(rows: Rows, v: &[f32], block: &mut [f32]) {
    let d = rows.d;
    for (r, y) in block.chunks_mut(d).enumerate() {
        let (i, shift, raw) = rows.row(r);
        let x = &v[i * d..(i + 1) * d];
        for (((y, &x), &t), &a) in y.iter_mut().zip(x).zip(shift).zip(raw) {
            let s = rows.bound * rows.tanh(a);
            *y = match rows.inverse {
                false => x * exp_f32(s) + t,
                true => (x - t) * exp_f32(-s),
            };
        }
    }
}

/// Rows `r0…` of the values' gradients: of the input into `gv` (rows of `d`), of the
/// packed parameters into `gp` (rows of `2d`), from the output's gradient `g: [n, d]`.
#[inline(always)]
fn values_backward(rows: Rows, v: &[f32], g: &[f32], gv: &mut [f32], gp: &mut [f32]) {
    let Rows { d, inverse, .. } = rows;
    for (r, (gx, gp)) in gv.chunks_mut(d).zip(gp.chunks_mut(2 * d)).enumerate() {
        let (i, shift, raw) = rows.row(r);
        let (x, gy) = (&v[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
        let (gt, ga) = gp.split_at_mut(d);
        let entries = x.iter().zip(gy).zip(shift).zip(raw);
        let grads = gx.iter_mut().zip(gt.iter_mut()).zip(ga.iter_mut());
        for ((((&x, &gy), &t), &a), ((gx, gt), ga)) in entries.zip(grads) {
            let th = rows.tanh(a);
            let s = rows.bound * th;
            let (e, gs) = match inverse {
                false => {
                    let e = exp_f32(s);
                    (e, gy * x * e)
                }
                true => {
                    let e = exp_f32(-s);
                    (e, -gy * (x - t) * e)
                }
            };
            *gx = gy * e;
            *gt = if inverse { -gy * e } else { gy };
            *ga = gs * (1.0 - th * th);
        }
    }
}

/// Rows `r0…` of the log-determinant, `±Σ_j s_j`, into `block`.
#[inline(always)]
fn ladj(rows: Rows, block: &mut [f32]) {
    for (r, l) in block.iter_mut().enumerate() {
        let (_, _, raw) = rows.row(r);
        let sum = sum_lanes(raw, raw, |a, _| rows.bound * rows.tanh(a));
        *l = sign(rows.inverse) * sum;
    }
}

/// Rows `r0…` of the log-determinant's gradient of the packed parameters into `block`
/// (rows of `2d`, the shifts' half left zero) from its incoming gradient `g: [n]`, whose
/// sum `total` is every row's when the parameters are shared (`m = 1`).
#[inline(always)]
fn ladj_backward(rows: Rows, g: &[f32], total: f32, block: &mut [f32]) {
    let d = rows.d;
    for (r, row) in block.chunks_mut(2 * d).enumerate() {
        let (i, _, raw) = rows.row(r);
        let gl = sign(rows.inverse) * if rows.m == 1 { total } else { g[i] };
        for (ga, &a) in row[d..].iter_mut().zip(raw) {
            let th = rows.tanh(a);
            *ga = gl * (1.0 - th * th);
        }
    }
}

impl HostOp for AffineValues {
    type Saved = (Self, Args);

    fn forward(&self, args: Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Self::Saved>) {
        let ([n, d], m) = (args.shapes[0], args.shapes[1][0]);
        let (v, p) = (&args.values[0], &args.values[1]);
        let base = Rows::new(p, m, d, self.bound, self.inverse);
        let mut out = vec![0.0; n * d];
        let rows = task_rows(n, d);
        out.par_chunks_mut(rows * d.max(1))
            .enumerate()
            .for_each(|(task, block)| {
                let rows = Rows {
                    r0: task * rows,
                    ..base
                };
                Task::Values(rows, v, block).run()
            });
        (out, [n, d], keep.then_some((*self, args)))
    }

    fn backward((op, args): &Self::Saved, g: &[f32], need: &[bool]) -> Vec<Vec<f32>> {
        let ([n, d], m) = (args.shapes[0], args.shapes[1][0]);
        let (v, p) = (&args.values[0], &args.values[1]);
        let base = Rows::new(p, m, d, op.bound, op.inverse);
        let mut gv = vec![0.0; n * d];
        let mut gp = vec![0.0; n * 2 * d];
        let rows = task_rows(n, d);
        gv.par_chunks_mut(rows * d)
            .zip(gp.par_chunks_mut(rows * 2 * d))
            .enumerate()
            .for_each(|(task, (gv, gp))| {
                let rows = Rows {
                    r0: task * rows,
                    ..base
                };
                Task::ValuesBackward(rows, [v, g], [gv, gp]).run()
            });
        let gp = if need[1] {
            fold_shared(gp, m, d)
        } else {
            Vec::new()
        };
        vec![gv, gp]
    }
}

impl HostOp for AffineLadj {
    type Saved = (Self, Args);

    fn forward(&self, args: Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Self::Saved>) {
        let [m, d2] = args.shapes[0];
        let d = d2 / 2;
        let p = &args.values[0];
        let base = Rows::new(p, m, d, self.bound, self.inverse);
        let mut per_row = vec![0.0; m];
        let rows = task_rows(m, d);
        per_row
            .par_chunks_mut(rows)
            .enumerate()
            .for_each(|(task, block)| {
                let rows = Rows {
                    r0: task * rows,
                    ..base
                };
                Task::Ladj(rows, block).run()
            });
        let out = match m {
            1 => vec![per_row[0]; self.n],
            _ => per_row,
        };
        (out, [self.n, 1], keep.then_some((*self, args)))
    }

    fn backward((op, args): &Self::Saved, g: &[f32], _: &[bool]) -> Vec<Vec<f32>> {
        let [m, d2] = args.shapes[0];
        let d = d2 / 2;
        let p = &args.values[0];
        // Shared parameters: every row's log-determinant gradient.
        let total: f32 = g.iter().sum();
        let base = Rows::new(p, m, d, op.bound, op.inverse);
        let mut gp = vec![0.0; m * d2];
        let rows = task_rows(m, d);
        gp.par_chunks_mut(rows * d2)
            .enumerate()
            .for_each(|(task, block)| {
                let rows = Rows {
                    r0: task * rows,
                    ..base
                };
                Task::LadjBackward(rows, g, total, block).run()
            });
        vec![gp]
    }
}

/// The fused soft-clamped affine map (forward, or inverse when `inverse`) of `v: [n, d]`
/// on the parameter-major `[m, 2, d]` parameters flow-core's `Elementwise::Affine` receives
/// (shift, raw log-scale), `m ∈ {1, n}`: `(values [n, d], ladj [n])`, or `None` when `B`
/// is not one of this module's CPU backends. The math is in the [module docs](self).
pub(crate) fn affine_params<B: Backend>(
    v: &Tensor<B, 2>,
    params: &Tensor<B, 3>,
    max_log_scale: f64,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let ([n, d], [m, p, dp]) = (v.dims(), params.dims());
    if p != 2 || dp != d || d == 0 || n == 0 || (m != 1 && m != n) {
        return None;
    }
    let bound = max_log_scale as f32;
    let params = params.clone().reshape([m, 2 * d]);
    let values = apply(AffineValues { bound, inverse }, [v.clone(), params.clone()])?;
    let ladj = apply(AffineLadj { bound, inverse, n }, [params])?;
    Some((values, ladj.reshape([n])))
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use crate::host::check::{assert_agree, values_of};

    /// The kernels against the tensor-op reference (soft clamp, then
    /// `flow_core::reference::affine` / `affine_inverse`): values, ladj and the gradients of the
    /// input and the packed parameters, forward and inverse, per-row and shared
    /// parameters, raw log-scales far into the clamp's saturation, on every CPU backend.
    #[test]
    fn affine_matches_reference() {
        matches_reference::<burn::backend::Autodiff<burn::backend::NdArray>>();
        #[cfg(feature = "flex")]
        matches_reference::<burn::backend::Autodiff<burn::backend::Flex>>();
    }

    fn matches_reference<B: burn::tensor::backend::AutodiffBackend>() {
        use burn::tensor::{Distribution, TensorData};
        use flow_core::{
            ops::soft_clamp,
            reference::{affine, affine_inverse},
        };
        let device = Default::default();
        let (n, d, bound) = (300, 37, 3.0); // d: two 16-lane blocks and a tail
        for m in [1, n] {
            for inverse in [false, true] {
                let x = Tensor::<B, 2>::random([n, d], Distribution::Uniform(-3.0, 3.0), &device);
                let mut p: Vec<f32> =
                    Tensor::<B, 2>::random([m, 2 * d], Distribution::Uniform(-4.0, 4.0), &device)
                        .into_data()
                        .into_vec()
                        .unwrap();
                p[d] = 40.0; // a saturated log-scale
                let p = Tensor::<B, 3>::from_data(TensorData::new(p, [m, 2, d]), &device);
                let gy = Tensor::<B, 2>::random([n, d], Distribution::Uniform(-1.0, 1.0), &device);
                let gl = Tensor::<B, 1>::random([n], Distribution::Uniform(-1.0, 1.0), &device);
                let run = |fused: bool| -> Vec<Vec<f64>> {
                    let x = x.clone().detach().require_grad();
                    let p = p.clone().detach().require_grad();
                    let (y, l) = if fused {
                        affine_params(&x, &p, bound, inverse).expect("a CPU backend")
                    } else {
                        let param = |q| p.clone().narrow(1, q, 1).reshape([m, d]);
                        let s = soft_clamp(param(1), bound);
                        match inverse {
                            false => affine(x.clone(), param(0), s),
                            true => affine_inverse(x.clone(), param(0), s),
                        }
                    };
                    let grads = ((y.clone() * gy.clone()).sum() + (l.clone() * gl.clone()).sum())
                        .backward();
                    vec![
                        values_of(y),
                        values_of(l),
                        values_of(x.grad(&grads).unwrap()),
                        values_of(p.grad(&grads).unwrap()),
                    ]
                };
                let (ours, reference) = (run(true), run(false));
                let names = ["value", "ladj", "∂x", "∂params"];
                let case = format!("m = {m}, inverse = {inverse}");
                // Shared parameters' gradients are sums over the n rows: f32 rounding of
                // either side grows with n (~n·ε = 2·10⁻⁵ here).
                let tol = |name: &str| match (name, m) {
                    ("∂params", 1) => 1e-4,
                    _ => 2e-5,
                };
                assert_agree(&case, &names, &ours, &reference, tol);
            }
        }
    }
}
