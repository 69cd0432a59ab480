//! The Sylvester steps as one CPU kernel (the math of [`super`] and of flow-core's
//! `sylvester` module).
//!
//! Per row and step, with `t = tanh(Aᵢᵢ)` (`Rᵢᵢ`) and `t̃ = tanh(d̃ᵢ)` (`R̃ᵢᵢ`):
//! `ζ = Qᵀz`, `aᵢ = t̃ᵢ ζᵢ + Σ_{j>i} Aⱼᵢ ζⱼ + bᵢ`, `hᵢ = tanh aᵢ`,
//! `yᵢ = tᵢ hᵢ + Σ_{j>i} Aᵢⱼ hⱼ`, `z' = z + Q y`, `ℓ = Σᵢ ln(|1 + tᵢ t̃ᵢ (1 − hᵢ²)| + ε)`.
//!
//! Backward, from `g = ∂L/∂z'` and `g_ℓ = ∂L/∂ℓ`: `g_y = Qᵀ g` (and `Q`'s share), then with
//! `cᵢ = 1 + tᵢ t̃ᵢ h'ᵢ` and `δᵢ = g_ℓ sgn(cᵢ)/(|cᵢ| + ε)`:
//! `∂tᵢ = δᵢ t̃ᵢ h'ᵢ + g_yᵢ hᵢ`, `∂t̃ᵢ = δᵢ tᵢ h'ᵢ + g_aᵢ ζᵢ`,
//! `g_hⱼ = Σ_{i≤j} Rᵢⱼ g_yᵢ − 2 δⱼ tⱼ t̃ⱼ hⱼ`, `g_a = g_h ⊙ h'`, `∂b = g_a`,
//! `∂Aᵢⱼ = g_yᵢ hⱼ` and `∂Aⱼᵢ = g_aᵢ ζⱼ` (`i < j`), `∂Aᵢᵢ = ∂tᵢ (1 − tᵢ²)`,
//! `∂d̃ᵢ = ∂t̃ᵢ (1 − t̃ᵢ²)`, `g_ζ = R̃ᵀ g_a`, and `∂z = g + Q g_ζ` (and `Q`'s share).

use burn::tensor::{Tensor, backend::Backend};

use super::basis::Basis;
use crate::host::{Host, Kernel, dispatch};
use crate::{HOUSEHOLDER_MIN_SQ_NORM, PLANAR_EPS};

/// `2/‖v‖²`, or 0 (no reflection) below [`HOUSEHOLDER_MIN_SQ_NORM`]; and `‖v‖²`.
fn reflection_scale(v: &[f32]) -> (f64, f64) {
    let q: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (
        if q < HOUSEHOLDER_MIN_SQ_NORM {
            0.0
        } else {
            2.0 / q
        },
        q,
    )
}

fn dot(v: &[f32], x: &[f64]) -> f64 {
    v.iter().zip(x).map(|(&v, &x)| f64::from(v) * x).sum()
}

/// `x ← H(v) x = x − 2 v (vᵀx)/‖v‖²`.
fn reflect(v: &[f32], x: &mut [f64]) {
    let (c, _) = reflection_scale(v);
    let cs = c * dot(v, x);
    x.iter_mut()
        .zip(v)
        .for_each(|(x, &v)| *x -= cs * f64::from(v));
}

/// Back through `y = H(v) x` taken at `x`: `g` from `∂L/∂y` to `∂L/∂x` (in place), `v`'s
/// gradient added to `gv`.
fn reflect_backward(v: &[f32], x: &[f64], g: &mut [f64], gv: &mut [f32]) {
    let (c, q) = reflection_scale(v);
    if c == 0.0 {
        return;
    }
    let (s, t) = (dot(v, x), dot(v, g));
    let along = 2.0 * c * s * t / q;
    for k in 0..x.len() {
        let vk = f64::from(v[k]);
        gv[k] += (-c * (t * x[k] + s * g[k]) + along * vk) as f32;
        g[k] -= c * t * vk;
    }
}

/// The reflection applied `j`-th: `Qᵀ = H(v_1) ⋯ H(v_H)` applies `v_H` first (`project`),
/// `Q = H(v_H) ⋯ H(v_1)` applies `v_1` first.
fn reflection_at(h: usize, project: bool, j: usize) -> usize {
    if project { h - 1 - j } else { j }
}

/// The points of the reflection chain from `input` into `chain` (`(h + 1)·d` values; the
/// last `d` are `Qᵀ input` or `Q input`).
fn run_chain(vs: &[f32], h: usize, project: bool, input: &[f64], chain: &mut [f64]) {
    let d = input.len();
    chain[..d].copy_from_slice(input);
    for j in 0..h {
        let r = reflection_at(h, project, j);
        let (done, next) = chain.split_at_mut((j + 1) * d);
        next[..d].copy_from_slice(&done[j * d..]);
        reflect(&vs[r * d..(r + 1) * d], &mut next[..d]);
    }
}

/// The Sylvester steps of one row; inputs `z: [n, d]`, `θ: [n, K·P]` and, for
/// [`Basis::Columns`], `q: [n, K·d·M]`.
#[derive(Debug, Clone, Copy)]
struct SylvesterStack {
    steps: usize,
    d: usize,
    m: usize,
    p: usize,
    basis: Basis,
}

/// A row's per-step work buffers (slices of the kernel's scratch).
struct Work<'a> {
    zeta: &'a mut [f64],
    h: &'a mut [f64],
    y: &'a mut [f64],
    /// `d` values: `Q y`, or a gradient of `z`.
    wide: &'a mut [f64],
    /// `(H + 1)·d` values: the points of a reflection chain.
    chain: &'a mut [f64],
}

impl SylvesterStack {
    /// Step `k`'s parameters of row `i`: `(A, d̃, b, rest)` (`rest`: the reflection vectors
    /// or the raw `Q`).
    fn params<'a>(&self, x: &'a Host, i: usize, k: usize) -> [&'a [f32]; 4] {
        let m = self.m;
        let row = &x.input(1)[x.param_row(i) * self.steps * self.p + k * self.p..][..self.p];
        let (a, rest) = row.split_at(m * m);
        let (dt, rest) = rest.split_at(m);
        let (b, rest) = rest.split_at(m);
        [a, dt, b, rest]
    }

    /// Step `k`'s orthonormal `Q` (`d×M`, row-major) of row `i`.
    fn columns<'a>(&self, x: &'a Host, i: usize, k: usize) -> &'a [f32] {
        let dm = self.d * self.m;
        &x.input(2)[x.param_row(i) * self.steps * dm + k * dm..][..dm]
    }

    /// `out = Qᵀ z` (`M` values) for step `k`; `chain` holds the reflection chain's points.
    fn project(&self, x: &Host, i: usize, k: usize, z: &[f64], out: &mut [f64], chain: &mut [f64]) {
        let d = self.d;
        match self.basis {
            Basis::Columns(m) => {
                let q = self.columns(x, i, k);
                out.fill(0.0);
                for (r, &zr) in z.iter().enumerate() {
                    let row = &q[r * m..(r + 1) * m];
                    out.iter_mut()
                        .zip(row)
                        .for_each(|(o, &q)| *o += f64::from(q) * zr);
                }
            }
            Basis::Reflections(h) => {
                run_chain(self.params(x, i, k)[3], h, true, z, chain);
                out.copy_from_slice(&chain[h * d..(h + 1) * d]);
            }
            Basis::Alternating if k % 2 == 1 => {
                out.iter_mut()
                    .zip(z.iter().rev())
                    .for_each(|(o, &z)| *o = z);
            }
            Basis::Alternating => out.copy_from_slice(z),
        }
    }

    /// `out = Q y` (`d` values) for step `k`; `chain` as in [`Self::project`].
    fn expand(&self, x: &Host, i: usize, k: usize, y: &[f64], out: &mut [f64], chain: &mut [f64]) {
        let d = self.d;
        match self.basis {
            Basis::Columns(m) => {
                let q = self.columns(x, i, k);
                for (r, o) in out.iter_mut().enumerate() {
                    *o = dot(&q[r * m..(r + 1) * m], y);
                }
            }
            Basis::Reflections(h) => {
                run_chain(self.params(x, i, k)[3], h, false, y, chain);
                out.copy_from_slice(&chain[h * d..(h + 1) * d]);
            }
            Basis::Alternating if k % 2 == 1 => {
                out.iter_mut()
                    .zip(y.iter().rev())
                    .for_each(|(o, &y)| *o = y);
            }
            Basis::Alternating => out.copy_from_slice(y),
        }
    }

    /// Back through `out = Qᵀ z` (`project`) or `out = Q y` (`expand`) taken at `input`:
    /// from `g_out` to the input's gradient `g_in`, `Q`'s parameters' gradient added to
    /// `g_q` (`θ`'s reflection vectors, or the orthonormal `Q`).
    #[allow(clippy::too_many_arguments)]
    fn basis_backward(
        &self,
        x: &Host,
        (i, k): (usize, usize),
        project: bool,
        input: &[f64],
        g_out: &[f64],
        g_in: &mut [f64],
        g_q: &mut [f32],
        chain: &mut [f64],
    ) {
        let d = self.d;
        match self.basis {
            Basis::Columns(m) => {
                let q = self.columns(x, i, k);
                // project: out_j = Σ_r Q_rj z_r; expand: out_r = Σ_j Q_rj y_j.
                if project {
                    for r in 0..d {
                        let row = &q[r * m..(r + 1) * m];
                        g_in[r] = dot(row, g_out);
                        let gq = &mut g_q[r * m..(r + 1) * m];
                        gq.iter_mut()
                            .zip(g_out)
                            .for_each(|(gq, &g)| *gq += (input[r] * g) as f32);
                    }
                } else {
                    g_in.fill(0.0);
                    for r in 0..d {
                        let row = &q[r * m..(r + 1) * m];
                        g_in.iter_mut()
                            .zip(row)
                            .for_each(|(gi, &q)| *gi += f64::from(q) * g_out[r]);
                        let gq = &mut g_q[r * m..(r + 1) * m];
                        gq.iter_mut()
                            .zip(input.iter())
                            .for_each(|(gq, &y)| *gq += (g_out[r] * y) as f32);
                    }
                }
            }
            Basis::Reflections(h) => {
                let vs = self.params(x, i, k)[3];
                run_chain(vs, h, project, input, chain);
                g_in.copy_from_slice(g_out);
                for j in (0..h).rev() {
                    let r = reflection_at(h, project, j);
                    let v = &vs[r * d..(r + 1) * d];
                    reflect_backward(
                        v,
                        &chain[j * d..(j + 1) * d],
                        g_in,
                        &mut g_q[r * d..(r + 1) * d],
                    );
                }
            }
            Basis::Alternating if k % 2 == 1 => {
                g_in.iter_mut()
                    .zip(g_out.iter().rev())
                    .for_each(|(o, &g)| *o = g);
            }
            Basis::Alternating => g_in.copy_from_slice(g_out),
        }
    }

    /// Step `k` of row `i` at `z`: `ζ`, `h`, `y` into `w`, `z'` into `next`; returns the
    /// step's `ln|det J|`.
    fn step(
        &self,
        x: &Host,
        (i, k): (usize, usize),
        z: &[f64],
        next: &mut [f64],
        w: &mut Work,
    ) -> f64 {
        let m = self.m;
        let [a, dt, b, _] = self.params(x, i, k);
        self.project(x, i, k, z, w.zeta, w.chain);
        for r in 0..m {
            let mut pre = f64::from(b[r]) + f64::from(dt[r]).tanh() * w.zeta[r];
            for j in r + 1..m {
                pre += f64::from(a[j * m + r]) * w.zeta[j];
            }
            w.h[r] = pre.tanh();
        }
        let mut ladj = 0.0;
        for r in 0..m {
            let t = f64::from(a[r * m + r]).tanh();
            let mut y = t * w.h[r];
            for j in r + 1..m {
                y += f64::from(a[r * m + j]) * w.h[j];
            }
            w.y[r] = y;
            let hp = 1.0 - w.h[r] * w.h[r];
            let c = 1.0 + t * f64::from(dt[r]).tanh() * hp;
            ladj += (c.abs() + PLANAR_EPS).ln();
        }
        self.expand(x, i, k, w.y, w.wide, w.chain);
        next.iter_mut()
            .zip(z.iter().zip(w.wide.iter()))
            .for_each(|(o, (&z, &qy))| *o = z + qy);
        ladj
    }

    /// Splits the scratch after the points `z_0 … z_K`.
    fn work<'a>(&self, rest: &'a mut [f64]) -> (Work<'a>, &'a mut [f64]) {
        let (m, d) = (self.m, self.d);
        let (zeta, rest) = rest.split_at_mut(m);
        let (h, rest) = rest.split_at_mut(m);
        let (y, rest) = rest.split_at_mut(m);
        let (wide, rest) = rest.split_at_mut(d);
        let (chain, rest) = rest.split_at_mut((self.reflections() + 1) * d);
        (
            Work {
                zeta,
                h,
                y,
                wide,
                chain,
            },
            rest,
        )
    }

    fn reflections(&self) -> usize {
        match self.basis {
            Basis::Reflections(h) => h,
            _ => 0,
        }
    }

    /// `z_0 … z_K` of row `i` into `zs`, returning `Σ_k ln|det J_k|`.
    fn run(&self, x: &Host, i: usize, zs: &mut [f64], w: &mut Work) -> f64 {
        let d = self.d;
        zs[..d]
            .iter_mut()
            .zip(&x.input(0)[i * d..(i + 1) * d])
            .for_each(|(z, &v)| *z = f64::from(v));
        let mut ladj = 0.0;
        for k in 0..self.steps {
            let (done, next) = zs.split_at_mut((k + 1) * d);
            ladj += self.step(x, (i, k), &done[k * d..], &mut next[..d], w);
        }
        ladj
    }
}

impl Kernel for SylvesterStack {
    const ROWS_PER_TASK: usize = 16;

    /// `z_0 … z_K`, the step's work, and the backward's gradients (`4M + 2d`).
    fn scratch(&self) -> usize {
        (self.steps + 1) * self.d
            + 3 * self.m
            + self.d
            + (self.reflections() + 1) * self.d
            + 4 * self.m
            + 2 * self.d
    }

    fn row(&self, x: &Host, i: usize, out: &mut [f32], scratch: &mut [f64]) -> f64 {
        let (zs, rest) = scratch.split_at_mut((self.steps + 1) * self.d);
        let (mut w, _) = self.work(rest);
        let ladj = self.run(x, i, zs, &mut w);
        let z = &zs[self.steps * self.d..];
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
        let (m, d, p) = (self.m, self.d, self.p);
        let (zs, rest) = scratch.split_at_mut((self.steps + 1) * d);
        let (mut w, rest) = self.work(rest);
        self.run(x, i, zs, &mut w);
        let (g_y, rest) = rest.split_at_mut(m);
        let (g_h, rest) = rest.split_at_mut(m);
        let (g_a, rest) = rest.split_at_mut(m);
        let (g_zeta, rest) = rest.split_at_mut(m);
        let (mut g_z, rest) = rest.split_at_mut(d);
        let mut g_next = &mut rest[..d];
        g_z.iter_mut().zip(g).for_each(|(o, &g)| *o = f64::from(g));
        let g_l = f64::from(g[d]);
        let (g_theta, mut g_cols) = match g_params {
            [theta] => (&mut **theta, None),
            [theta, q] => (&mut **theta, Some(&mut **q)),
            _ => unreachable!("θ, and Q for orthonormal columns"),
        };
        for k in (0..self.steps).rev() {
            let z = &zs[k * d..(k + 1) * d];
            // The step's intermediate values (its output lands where ∂z goes next).
            self.step(x, (i, k), z, g_next, &mut w);
            let [a, dt, _, _] = self.params(x, i, k);
            let gk = &mut g_theta[k * p..(k + 1) * p];
            let (ga, rest) = gk.split_at_mut(m * m);
            let (gdt, rest) = rest.split_at_mut(m);
            let (gb, g_rest) = rest.split_at_mut(m);
            let dm = d * m;
            let g_q: &mut [f32] = match g_cols.as_deref_mut() {
                Some(cols) => &mut cols[k * dm..(k + 1) * dm],
                None => g_rest,
            };
            // Through z' = z + Q y: g_y = Qᵀ g.
            self.basis_backward(x, (i, k), false, w.y, g_z, g_y, g_q, w.chain);
            // Through y = R h and the log-determinant.
            g_h.fill(0.0);
            for r in 0..m {
                let t = f64::from(a[r * m + r]).tanh();
                let tt = f64::from(dt[r]).tanh();
                let h = w.h[r];
                let hp = 1.0 - h * h;
                let c = 1.0 + t * tt * hp;
                let delta = g_l * c.signum() / (c.abs() + PLANAR_EPS);
                let g_t = delta * tt * hp + g_y[r] * h;
                ga[r * m + r] += (g_t * (1.0 - t * t)) as f32;
                // t̃'s share from the log-determinant; the pre-activation's comes below.
                gdt[r] += (delta * t * hp * (1.0 - tt * tt)) as f32;
                g_h[r] += t * g_y[r] - 2.0 * delta * t * tt * h;
                for j in r + 1..m {
                    ga[r * m + j] += (g_y[r] * w.h[j]) as f32;
                    g_h[j] += f64::from(a[r * m + j]) * g_y[r];
                }
            }
            // Through h = tanh(R̃ ζ + b).
            g_zeta.fill(0.0);
            for r in 0..m {
                let ga_r = g_h[r] * (1.0 - w.h[r] * w.h[r]);
                g_a[r] = ga_r;
                gb[r] += ga_r as f32;
                let tt = f64::from(dt[r]).tanh();
                gdt[r] += (ga_r * w.zeta[r] * (1.0 - tt * tt)) as f32;
                g_zeta[r] += ga_r * tt;
                for j in r + 1..m {
                    ga[j * m + r] += (ga_r * w.zeta[j]) as f32;
                    g_zeta[j] += f64::from(a[j * m + r]) * ga_r;
                }
            }
            // Through ζ = Qᵀ z: ∂z = g + Q g_ζ.
            self.basis_backward(x, (i, k), true, z, g_zeta, w.wide, g_q, w.chain);
            g_next
                .iter_mut()
                .zip(g_z.iter().zip(w.wide.iter()))
                .for_each(|(o, (&g, &q))| *o = g + q);
            std::mem::swap(&mut g_z, &mut g_next);
        }
        gz.iter_mut()
            .zip(g_z.iter())
            .for_each(|(o, &g)| *o = g as f32);
    }
}

/// The fused Sylvester steps on `B`, or `None` when `B` is not one of this module's CPU
/// backends. Same contract as [`super::sylvester_stack`], whose caller has checked the
/// shapes.
pub(crate) fn sylvester_stack<B: Backend>(
    z: &Tensor<B, 2>,
    theta: &Tensor<B, 2>,
    q: Option<&Tensor<B, 2>>,
    steps: usize,
    basis: Basis,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let d = z.dims()[1];
    let kernel = SylvesterStack {
        steps,
        d,
        m: basis.columns(d),
        p: basis.params_per_step(d),
        basis,
    };
    match q {
        Some(q) => dispatch([z, theta, q], kernel),
        None => dispatch([z, theta], kernel),
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests;
