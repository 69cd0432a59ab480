//! The first two layers of a ReLU network on one input feature, through the first layer's
//! kinks: exact, and `d_1` times fewer multiply-adds per row than the product they replace.
//!
//! # Math
//! With one input feature `x` (a coupling's conditioner on 2-D data), the first layer's
//! units `h_j = relu(w_j x + β_j)` (`w = W_0[0, :]`, `β = b_0`) are each linear on one side
//! of their kink `t_j = −β_j / w_j` and zero on the other: active above it when `w_j > 0`,
//! below it when `w_j < 0`; a unit with `w_j = 0` is constant, active everywhere (kink at
//! `−∞`) when `β_j > 0`, nowhere (`+∞`) otherwise. Between consecutive kinks the set `S_k`
//! of active units is fixed, so the second layer's pre-activation is linear in `x` there:
//!
//! ```text
//! z = h W_1 + b_1 = A_k x + C_k,   A_k = Σ_{j∈S_k} w_j W_1[j, :],
//!                                  C_k = b_1 + Σ_{j∈S_k} β_j W_1[j, :]
//! ```
//!
//! on interval `k` = the number of kinks below `x` (`k = 0 … d_1`). The `d_1 + 1` rows
//! `(A_k, C_k)` cost `O(d_1 d_2)` to build, once per call; each row of the batch then costs
//! a binary search and `d_2` multiply-adds instead of the `d_1 d_2` of `h W_1`.
//!
//! Backward from `δ = ∂ℒ/∂z: [m, d_2]`, with `Gx_j = Σ_{n: j ∈ S_{k(n)}} x_n δ_n` and
//! `G1_j = Σ_{n: j ∈ S_{k(n)}} δ_n`:
//!
//! ```text
//! ∂ℒ/∂x_n = A_{k(n)} · δ_n          ∂ℒ/∂b_1 = Σ_n δ_n
//! ∂ℒ/∂W_1[j, :] = w_j Gx_j + β_j G1_j
//! ∂ℒ/∂w_j = W_1[j, :] · Gx_j        ∂ℒ/∂β_j = W_1[j, :] · G1_j
//! ```
//!
//! With the rows sorted by interval, `Gx` and `G1` are running sums over the rows, upward
//! for the units active below their kink and downward for those active above it:
//! `O(m d_2 + d_1 d_2)` where the products cost `O(m d_1 d_2)`.
//!
//! Every sum only adds: `A_k` and `C_k` are a prefix over the units active above their kink
//! plus a suffix over those active below it, never a running sum that removes a unit it
//! added, so the rounding is that of a sum of as many terms as the product's, without
//! cancellation. Where `w_j x + β_j` rounds to a different sign than `x` against `t_j`
//! (within rounding of the kink) the unit's value is within rounding of 0 either way.

use std::ops::Range;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::pool::{buffer, recycle};
use crate::host::buckets;
use crate::host::math::{all_finite, sum_lanes};

/// The first two layers of a network with one input feature, as a table over the intervals
/// between the first layer's kinks (module docs).
#[derive(Debug)]
pub(super) struct Kinks {
    /// The kinks in ascending order.
    t: Vec<f32>,
    /// Per kink in that order: its unit, and whether the unit is active above it.
    units: Vec<(usize, bool)>,
    d2: usize,
    /// Blocks of the second layer's columns, one per thread task.
    blocks: Vec<Range<usize>>,
    /// Per block `c0..c1`, rows `k = 0 … d_1` of `[A_k[c0..c1] | C_k[c0..c1]]`.
    table: Vec<Vec<f32>>,
}

/// The gradients of the first two layers' parameters.
pub(super) struct Gradients {
    pub w0: Vec<f32>,
    pub b0: Vec<f32>,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
}

/// One block's share of [`Gradients`]: `∂ℒ/∂W_1`'s columns `c0..c1` (`[d_1, c1 − c0]`), its
/// part of each dot product for `∂ℒ/∂w` and `∂ℒ/∂β`, and `∂ℒ/∂b_1[c0..c1]`.
struct Part {
    w1: Vec<f32>,
    w0: Vec<f32>,
    b0: Vec<f32>,
    b1: Vec<f32>,
}

/// The first two layers' parameters: `w0 = W_0: [1, d_1]`, `b0: [d_1]`, `w1 = W_1: [d_1,
/// d_2]` row-major, `b1: [d_2]`.
#[derive(Clone, Copy)]
pub(super) struct Layers<'a> {
    pub w0: &'a [f32],
    pub b0: &'a [f32],
    pub w1: &'a [f32],
    pub b1: &'a [f32],
}

/// The loops, compiled through pulp's dispatch for the CPU's widest SIMD (see
/// `affine::cpu`'s `Task` for why a `WithSimd` type and not a closure).
enum Work<'a> {
    Table(&'a Kinks, Layers<'a>, Range<usize>, &'a mut [f32]),
    Forward(&'a Kinks, &'a [f32], &'a mut [f32], bool),
    InputGradient(&'a Kinks, &'a [f32], &'a [f32], &'a mut [f32]),
    Part(
        &'a Kinks,
        Layers<'a>,
        Sorted<'a>,
        Range<usize>,
        &'a mut Part,
    ),
}

impl WithSimd for Work<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        match self {
            Work::Table(k, p, cols, out) => k.table_block(p, cols, out),
            Work::Forward(k, x, out, relu) => k.forward_loop(x, out, relu),
            Work::InputGradient(k, x, delta, dx) => k.input_gradient_loop(x, delta, dx),
            Work::Part(k, p, rows, cols, part) => k.part(p, rows, cols, part),
        }
    }
}

/// The rows of a batch sorted by interval: interval `k`'s rows are
/// `order[start[k]..start[k + 1]]`.
#[derive(Clone, Copy)]
struct Sorted<'a> {
    x: &'a [f32],
    delta: &'a [f32],
    order: &'a [usize],
    start: &'a [usize],
}

/// `acc ← acc + a · v`.
#[inline(always)]
fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(s, v)| *s += a * v);
}

/// `a · b`.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_lanes(a, b, |a, b| a * b)
}

impl Drop for Kinks {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.table));
    }
}

impl Kinks {
    /// The table for these layers (`d_1 = w0.len()`, `d_2 = b1.len()`), or `None` when a
    /// parameter is not finite (a NaN must reach every output, as through the products).
    pub(super) fn new(p: Layers) -> Option<Self> {
        if ![p.w0, p.b0, p.w1, p.b1].into_iter().all(all_finite) {
            crate::fell_back(
                "mlp kinks",
                "non-finite parameters: the first layers run as products",
            );
            return None;
        }
        let (d1, d2) = (p.w0.len(), p.b1.len());
        let mut kinks: Vec<(f32, usize, bool)> =
            p.w0.iter()
                .zip(p.b0)
                .enumerate()
                .map(|(j, (&w, &b))| match w == 0.0 {
                    true if b > 0.0 => (f32::NEG_INFINITY, j, true),
                    true => (f32::INFINITY, j, true),
                    false => (-b / w, j, w > 0.0),
                })
                .collect();
        kinks.sort_by(|a, b| a.0.total_cmp(&b.0));
        let threads = rayon::current_num_threads().max(1);
        let width = d2.div_ceil(threads).next_multiple_of(16);
        let blocks: Vec<Range<usize>> = (0..d2)
            .step_by(width)
            .map(|c0| c0..(c0 + width).min(d2))
            .collect();
        let mut kinks = Self {
            t: kinks.iter().map(|k| k.0).collect(),
            units: kinks.iter().map(|k| (k.1, k.2)).collect(),
            d2,
            table: Vec::new(),
            blocks,
        };
        // Pooled: `table_block` writes every entry before it reads it.
        let mut table: Vec<Vec<f32>> = kinks
            .blocks
            .iter()
            .map(|c| buffer((d1 + 1) * 2 * c.len()))
            .collect();
        let this = &kinks;
        table
            .par_iter_mut()
            .zip(&this.blocks)
            .for_each(|(out, cols)| {
                pulp::Arch::new().dispatch(Work::Table(this, p, cols.clone(), out));
            });
        kinks.table = table;
        Some(kinks)
    }

    /// The interval of `x`: how many kinks lie below it (0 for NaN, whose output is NaN).
    fn interval(&self, x: f32) -> usize {
        self.t.partition_point(|&t| t < x)
    }

    /// Columns `cols` of the table: a prefix over the units active above their kink
    /// (with `b_1`), then a suffix over those active below it added to each row.
    #[inline(always)]
    fn table_block(&self, p: Layers, cols: Range<usize>, out: &mut [f32]) {
        let (d1, cb) = (self.units.len(), cols.len());
        let weight = |j: usize| &p.w1[j * self.d2..][cols.clone()];
        let (mut a, mut c) = (vec![0.0; cb], p.b1[cols.clone()].to_vec());
        for (k, row) in out.chunks_exact_mut(2 * cb).enumerate() {
            if k > 0
                && let (j, true) = self.units[k - 1]
            {
                axpy(&mut a, p.w0[j], weight(j));
                axpy(&mut c, p.b0[j], weight(j));
            }
            row[..cb].copy_from_slice(&a);
            row[cb..].copy_from_slice(&c);
        }
        a.fill(0.0);
        c.fill(0.0);
        for (k, row) in out.chunks_exact_mut(2 * cb).enumerate().rev() {
            if k < d1
                && let (j, false) = self.units[k]
            {
                axpy(&mut a, p.w0[j], weight(j));
                axpy(&mut c, p.b0[j], weight(j));
            }
            row[..cb].iter_mut().zip(&a).for_each(|(r, a)| *r += a);
            row[cb..].iter_mut().zip(&c).for_each(|(r, c)| *r += c);
        }
    }

    /// `out[n, :] = A_k x_n + C_k` (`k` the interval of `x_n`), then the ReLU when `relu`
    /// (NaN stays NaN), for the rows `x` of one block of the batch.
    pub(super) fn forward(&self, x: &[f32], out: &mut [f32], relu: bool) {
        pulp::Arch::new().dispatch(Work::Forward(self, x, out, relu));
    }

    #[inline(always)]
    fn forward_loop(&self, x: &[f32], out: &mut [f32], relu: bool) {
        for (&x, out) in x.iter().zip(out.chunks_exact_mut(self.d2)) {
            let k = self.interval(x);
            for (cols, table) in self.blocks.iter().zip(&self.table) {
                let cb = cols.len();
                let (a, c) = table[k * 2 * cb..][..2 * cb].split_at(cb);
                for ((o, a), c) in out[cols.clone()].iter_mut().zip(a).zip(c) {
                    let z = a * x + c;
                    *o = if relu && z < 0.0 { 0.0 } else { z };
                }
            }
        }
    }

    /// `dx[n] = A_k · δ[n, :]` for the rows `x` of one block of the batch.
    pub(super) fn input_gradient(&self, x: &[f32], delta: &[f32], dx: &mut [f32]) {
        pulp::Arch::new().dispatch(Work::InputGradient(self, x, delta, dx));
    }

    #[inline(always)]
    fn input_gradient_loop(&self, x: &[f32], delta: &[f32], dx: &mut [f32]) {
        for ((&x, d), dx) in x.iter().zip(delta.chunks_exact(self.d2)).zip(dx) {
            let k = self.interval(x);
            *dx = (self.blocks.iter().zip(&self.table))
                .map(|(cols, table)| {
                    dot(&table[k * 2 * cols.len()..][..cols.len()], &d[cols.clone()])
                })
                .sum();
        }
    }

    /// The parameters' gradients from the whole batch's `x: [m]` and `δ = ∂ℒ/∂z: [m, d_2]`
    /// (module docs): the column blocks in parallel, then `∂ℒ/∂W_1`'s rows put together.
    pub(super) fn gradients(&self, p: Layers, x: &[f32], delta: &[f32]) -> Gradients {
        let d1 = self.units.len();
        // The rows grouped by interval.
        let ks: Vec<usize> = x.iter().map(|&x| self.interval(x)).collect();
        let (start, order) = buckets(ks.iter().enumerate().map(|(n, &k)| (k, n)), d1 + 1);
        let rows = Sorted {
            x,
            delta,
            order: &order,
            start: &start,
        };
        let mut parts: Vec<Part> = self
            .blocks
            .iter()
            .map(|c| Part {
                // Pooled: every unit's row is emitted once, in one of the two passes.
                w1: buffer(d1 * c.len()),
                w0: vec![0.0; d1],
                b0: vec![0.0; d1],
                b1: vec![0.0; c.len()],
            })
            .collect();
        parts
            .par_iter_mut()
            .zip(&self.blocks)
            .for_each(|(part, cols)| {
                pulp::Arch::new().dispatch(Work::Part(self, p, rows, cols.clone(), part));
            });
        let mut w1 = buffer(d1 * self.d2);
        w1.par_chunks_mut(self.d2 * 16)
            .enumerate()
            .for_each(|(i, out)| {
                for (r, out) in out.chunks_exact_mut(self.d2).enumerate() {
                    let j = i * 16 + r;
                    for (cols, part) in self.blocks.iter().zip(&parts) {
                        out[cols.clone()].copy_from_slice(&part.w1[j * cols.len()..][..cols.len()]);
                    }
                }
            });
        let sum = |f: fn(&Part) -> &Vec<f32>| {
            (0..d1)
                .map(|j| parts.iter().map(|p| f(p)[j]).sum())
                .collect()
        };
        let gradients = Gradients {
            w0: sum(|p| &p.w0),
            b0: sum(|p| &p.b0),
            w1,
            b1: parts.iter().flat_map(|p| p.b1.iter().copied()).collect(),
        };
        recycle(parts.into_iter().map(|p| p.w1));
        gradients
    }

    /// One column block's [`Part`]: `Gx`, `G1` as running sums over the sorted rows, upward
    /// for the units active below their kink, downward for those active above it.
    #[inline(always)]
    fn part(&self, p: Layers, rows: Sorted, cols: Range<usize>, part: &mut Part) {
        let d1 = self.units.len();
        let (mut gx, mut g1) = (vec![0.0f32; cols.len()], vec![0.0f32; cols.len()]);
        for q in 0..d1 {
            rows.add(q, &cols, self.d2, &mut gx, &mut g1);
            if !self.units[q].1 {
                self.emit(p, q, &cols, (&gx, &g1), part);
            }
        }
        rows.add(d1, &cols, self.d2, &mut gx, &mut g1);
        part.b1.copy_from_slice(&g1);
        gx.fill(0.0);
        g1.fill(0.0);
        for q in (0..d1).rev() {
            rows.add(q + 1, &cols, self.d2, &mut gx, &mut g1);
            if self.units[q].1 {
                self.emit(p, q, &cols, (&gx, &g1), part);
            }
        }
    }

    /// The unit of kink `q`, active on the rows whose sums are `(Gx, G1)` (columns `cols`):
    /// its row of `∂ℒ/∂W_1` and its part of `∂ℒ/∂w`, `∂ℒ/∂β`.
    #[inline(always)]
    fn emit(
        &self,
        p: Layers,
        q: usize,
        cols: &Range<usize>,
        (gx, g1): (&[f32], &[f32]),
        part: &mut Part,
    ) {
        let j = self.units[q].0;
        let weight = &p.w1[j * self.d2..][cols.clone()];
        let (w, b) = (p.w0[j], p.b0[j]);
        let out = &mut part.w1[j * cols.len()..][..cols.len()];
        for ((o, gx), g1) in out.iter_mut().zip(gx).zip(g1) {
            *o = w * gx + b * g1;
        }
        part.w0[j] = dot(weight, gx);
        part.b0[j] = dot(weight, g1);
    }
}

impl Sorted<'_> {
    /// `Gx += x_n δ_n`, `G1 += δ_n` (columns `cols`) over interval `k`'s rows.
    #[inline(always)]
    fn add(&self, k: usize, cols: &Range<usize>, d2: usize, gx: &mut [f32], g1: &mut [f32]) {
        for &n in &self.order[self.start[k]..self.start[k + 1]] {
            let d = &self.delta[n * d2..][cols.clone()];
            axpy(gx, self.x[n], d);
            g1.iter_mut().zip(d).for_each(|(g, d)| *g += d);
        }
    }
}
