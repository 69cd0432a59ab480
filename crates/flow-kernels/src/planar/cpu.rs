//! The planar steps as one CPU kernel (the math of [`super`], and of the CubeCL kernel's
//! docs, which derive the backward).

use burn::tensor::{Tensor, backend::Backend};

use crate::PLANAR_EPS;
use crate::host::{Host, Kernel, dispatch, softplus, softplus_grad};

/// Per-row quantities of one planar step.
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
        let c = (softplus(wu) - 1.0 - wu) / (ww + PLANAR_EPS);
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
        (self.s.abs() + PLANAR_EPS).ln()
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
        let g_s = g_l * sign / (self.s.abs() + PLANAR_EPS);
        let g_wuh = g_s * self.hp;
        let (mut g_dot_uh, mut g_c) = (0.0, 0.0);
        for k in 0..z.len() {
            let (uk, wk) = (f64::from(u[k]), f64::from(w[k]));
            g_dot_uh += g[k] * (uk + self.c * wk);
            g_c += (g[k] * self.h + g_wuh * wk) * wk;
        }
        let g_a = (g_dot_uh - 2.0 * self.h * self.wuh * g_s) * self.hp;
        let q = self.ww + PLANAR_EPS;
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
    // A step is ~100 flops a row for the VAE's 32 latents; through its 10 steps a batch
    // of 128 rows is worth two tasks, not one (docs/benchmarks.md, "What moved").
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
/// backends. Same contract as [`super::planar`].
pub(crate) fn planar<B: Backend>(
    z: &Tensor<B, 2>,
    u: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    b: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let theta = Tensor::cat(vec![u.clone(), w.clone(), b.clone()], 1);
    planar_stack(z, &theta, 1)
}

/// `steps` fused planar steps on `B`, or `None` when `B` is not one of this module's CPU
/// backends or the shapes do not fit. Same contract as [`super::planar_stack`].
pub(crate) fn planar_stack<B: Backend>(
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

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::host::check::{assert_agree, uniforms, values_of};
    use flow_core::reference::{
        planar as planar_reference, planar_stack as planar_stack_reference,
    };

    type B = burn::backend::Autodiff<burn::backend::NdArray>;

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
