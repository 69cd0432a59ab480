//! The orthogonalization of O-SNF's matrices as one CPU kernel (flow-core's `orthogonalize`
//! has the math and the tensor-op reference).
//!
//! Per `D×M` matrix `q` (a row of the input), in `f32` (norms and inner products of the
//! scaling in `f64`): `A₀ = q/‖q‖_F`, then
//! `A_{t+1} = A_t S_t` with `S_t = (3I − A_tᵀA_t)/2` until every entry of `A_tᵀA_t − I` is
//! within the tolerance, and one iteration more (checked on every matrix at every
//! iteration, so each stops when it has converged), or the iterations run out.
//!
//! Backward, recomputing the iterates: from `G = ∂L/∂A_T`, for `t = T − 1 … 0`,
//! `H = A_tᵀ G` and `G ← G S_t − ½ A_t (H + Hᵀ)`; then through the scaling,
//! `∂L/∂q = (G − A₀ ⟨A₀, G⟩)/‖q‖_F`.
//!
//! The tensor-op reference runs about ten batched `[K·n, D, M]` operations per iteration,
//! forward and backward, each a pass over memory with its own allocation and thread
//! dispatch; on `M = 16` matrices that overhead, not the arithmetic, set its speed.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use burn::tensor::{Tensor, backend::Backend};
use rayon::prelude::*;

use crate::host::op::{self, Args, HostOp};

/// Matrices per thread task.
const MATRICES_PER_TASK: usize = 8;

/// The element type of the iteration.
type E = f32;

/// The orthogonalization of `D×M` matrices, one per row.
#[derive(Debug, Clone)]
struct Orthogonalize {
    d: usize,
    m: usize,
    tolerance: f64,
    max_iterations: usize,
    /// Matrices that ran out of iterations (counted by the forward pass).
    unconverged: Arc<AtomicUsize>,
}

/// `c[i][j] = Σ_r a[r][i] b[r][j]` (`a`, `b`: `d×m` row-major; `c`: `m×m`).
#[inline(always)]
fn at_b(a: &[E], b: &[E], m: usize, c: &mut [E]) {
    c.fill(0.0);
    for (ar, br) in a.chunks_exact(m).zip(b.chunks_exact(m)) {
        for (i, &ari) in ar.iter().enumerate() {
            c[i * m..(i + 1) * m]
                .iter_mut()
                .zip(br)
                .for_each(|(c, &b)| *c += ari * b);
        }
    }
}

/// `c = aᵀa` (`a`: `d×m` row-major; `c`: `m×m`), the upper triangle computed and mirrored.
#[inline(always)]
fn gram(a: &[E], m: usize, c: &mut [E]) {
    c.fill(0.0);
    for ar in a.chunks_exact(m) {
        for (i, &ari) in ar.iter().enumerate() {
            c[i * m + i..(i + 1) * m]
                .iter_mut()
                .zip(&ar[i..])
                .for_each(|(c, &b)| *c += ari * b);
        }
    }
    for i in 0..m {
        for j in 0..i {
            c[i * m + j] = c[j * m + i];
        }
    }
}

/// `c = a s` (`a`: `d×m`, `s`: `m×m`, row-major); `c += a s` when `add`.
#[inline(always)]
fn a_s(a: &[E], s: &[E], m: usize, c: &mut [E], add: bool) {
    if !add {
        c.fill(0.0);
    }
    for (ar, cr) in a.chunks_exact(m).zip(c.chunks_exact_mut(m)) {
        for (k, &ark) in ar.iter().enumerate() {
            cr.iter_mut()
                .zip(&s[k * m..(k + 1) * m])
                .for_each(|(c, &s)| *c += ark * s);
        }
    }
}

/// `s = (3I − g)/2` in place, returning `max |g − I|` (read before the update), NaN when
/// any entry is NaN (`f64::max` would drop it, and a NaN matrix would count as converged).
#[inline(always)]
fn step_matrix(g: &mut [E], m: usize) -> f64 {
    let mut off: E = 0.0;
    for i in 0..m {
        for j in 0..m {
            let eye = if i == j { 1.0 } else { 0.0 };
            let v = g[i * m + j];
            let r = (v - eye).abs();
            if r > off || r.is_nan() {
                off = r;
            }
            g[i * m + j] = (3.0 * eye - v) / 2.0;
        }
    }
    f64::from(off)
}

impl Orthogonalize {
    /// The iterates `A₀ … A_T` of matrix `q` into `iterates` (`(max + 1)·d·m` values), with
    /// `gram` (`m²`) as work space; returns `(T, ‖q‖_F, converged)`.
    #[inline(always)]
    fn iterate(&self, q: &[f32], iterates: &mut [E], steps: &mut [E]) -> (usize, f64, bool) {
        let (dm, m, mm) = (self.d * self.m, self.m, self.m * self.m);
        let norm = q
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
            .max(1e-30);
        iterates[..dm]
            .iter_mut()
            .zip(q)
            .for_each(|(a, &v)| *a = (f64::from(v) / norm) as E);
        let mut within = false;
        for t in 0..=self.max_iterations {
            let (done, next) = iterates.split_at_mut((t + 1) * dm);
            let a = &done[t * dm..];
            let s = &mut steps[t * mm..(t + 1) * mm];
            gram(a, m, s);
            let off = step_matrix(s, m);
            // One iteration past the tolerance (the convergence is quadratic: the residual
            // squares): the gradient through the iterates converges more slowly than the
            // values, by about a matrix's condition number.
            if within {
                return (t, norm, true);
            }
            within = off <= self.tolerance;
            if t == self.max_iterations {
                break;
            }
            a_s(a, s, m, &mut next[..dm], false);
        }
        // The last iterate may be within the tolerance with no iteration left past it.
        (self.max_iterations, norm, within)
    }

    /// Values of work space per task: the iterates and their `S`, then `H` and two
    /// gradients.
    fn scratch(&self) -> usize {
        let (dm, mm) = (self.d * self.m, self.m * self.m);
        (self.max_iterations + 1) * (dm + mm) + mm + 2 * dm
    }

    /// Splits the scratch: iterates, steps `S`, the rest.
    fn split<'a>(&self, scratch: &'a mut [E]) -> (&'a mut [E], &'a mut [E], &'a mut [E]) {
        let (dm, mm) = (self.d * self.m, self.m * self.m);
        let (iterates, rest) = scratch.split_at_mut((self.max_iterations + 1) * dm);
        let (steps, rest) = rest.split_at_mut((self.max_iterations + 1) * mm);
        (iterates, steps, rest)
    }

    /// The matrices of one task (`out`: theirs, `first` the index of the first).
    #[inline(always)]
    fn forward_task(&self, q: &[f32], first: usize, out: &mut [f32]) {
        let dm = self.d * self.m;
        let mut scratch: Vec<E> = vec![0.0; self.scratch()];
        let (iterates, steps, _) = self.split(&mut scratch);
        for (r, o) in out.chunks_mut(dm).enumerate() {
            let i = first + r;
            let (t, _, converged) = self.iterate(&q[i * dm..(i + 1) * dm], iterates, steps);
            if !converged {
                self.unconverged.fetch_add(1, Ordering::Relaxed);
            }
            o.iter_mut()
                .zip(&iterates[t * dm..(t + 1) * dm])
                .for_each(|(o, &a)| *o = a);
        }
    }

    /// `∂L/∂q` of the task's matrices from `g = ∂L/∂output` into `out`.
    #[inline(always)]
    fn backward_task(&self, q: &[f32], g: &[f32], first: usize, out: &mut [f32]) {
        let (dm, m, mm) = (self.d * self.m, self.m, self.m * self.m);
        let mut scratch: Vec<E> = vec![0.0; self.scratch()];
        let (iterates, steps, rest) = self.split(&mut scratch);
        let (h, rest) = rest.split_at_mut(mm);
        let (grad, next) = rest.split_at_mut(dm);
        for (r, o) in out.chunks_mut(dm).enumerate() {
            let i = first + r;
            let (t_end, norm, _) = self.iterate(&q[i * dm..(i + 1) * dm], iterates, steps);
            grad.iter_mut()
                .zip(&g[i * dm..(i + 1) * dm])
                .for_each(|(o, &g)| *o = g);
            for t in (0..t_end).rev() {
                let a = &iterates[t * dm..(t + 1) * dm];
                let s = &steps[t * mm..(t + 1) * mm];
                at_b(a, grad, m, h);
                // H + Hᵀ, scaled by −½.
                for i in 0..m {
                    for j in i..m {
                        let v = -0.5 * (h[i * m + j] + h[j * m + i]);
                        h[i * m + j] = v;
                        h[j * m + i] = v;
                    }
                }
                a_s(grad, s, m, next, false);
                a_s(a, h, m, next, true);
                grad.copy_from_slice(next);
            }
            let a0 = &iterates[..dm];
            let along: f64 = a0
                .iter()
                .zip(grad.iter())
                .map(|(&a, &g)| f64::from(a) * f64::from(g))
                .sum();
            o.iter_mut()
                .zip(grad.iter().zip(a0))
                .for_each(|(o, (&g, &a))| {
                    *o = ((f64::from(g) - f64::from(a) * along) / norm) as f32
                });
        }
    }
}

/// One thread task's matrices, compiled inside pulp's dispatch for the CPU's SIMD.
struct Task<'a> {
    op: &'a Orthogonalize,
    q: &'a [f32],
    g: Option<&'a [f32]>,
    first: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Task<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self.g {
            Some(g) => self.op.backward_task(self.q, g, self.first, self.out),
            None => self.op.forward_task(self.q, self.first, self.out),
        }
    }
}

impl Orthogonalize {
    /// Every matrix of `q` (forward, `g = None`) or its gradient.
    fn run(&self, q: &[f32], g: Option<&[f32]>) -> Vec<f32> {
        let dm = self.d * self.m;
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(MATRICES_PER_TASK * dm)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * MATRICES_PER_TASK;
                pulp::Arch::new().dispatch(Task {
                    op: self,
                    q,
                    g,
                    first,
                    out,
                });
            });
        out
    }
}

impl HostOp for Orthogonalize {
    type Saved = (Orthogonalize, Args);

    fn forward(&self, args: Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Self::Saved>) {
        let shape = args.shapes[0];
        let out = self.run(&args.values[0], None);
        (out, shape, keep.then(|| (self.clone(), args)))
    }

    fn backward((op, args): &Self::Saved, g: &[f32], _: &[bool]) -> Vec<Vec<f32>> {
        vec![op.run(&args.values[0], Some(g))]
    }
}

/// The orthonormalized `q: [n, D·M]` (each row a `D×M` matrix, row-major) and how many
/// matrices ran out of iterations, or `None` when `B` is not one of the CPU backends with
/// kernels (or the kernels are off). Same contract as [`super::orthogonalize`].
pub(crate) fn orthogonalize<B: Backend>(
    q: &Tensor<B, 2>,
    d: usize,
    m: usize,
    tolerance: f64,
    max_iterations: usize,
) -> Option<(Tensor<B, 2>, usize)> {
    if d == 0 || m == 0 || m > d || q.dims()[1] != d * m {
        return None;
    }
    let unconverged = Arc::new(AtomicUsize::new(0));
    let kernel = Orthogonalize {
        d,
        m,
        tolerance,
        max_iterations,
        unconverged: unconverged.clone(),
    };
    let out = op::apply(kernel, [q.clone()])?;
    Some((out, unconverged.load(Ordering::Relaxed)))
}

#[cfg(all(test, feature = "ndarray"))]
mod tests;
