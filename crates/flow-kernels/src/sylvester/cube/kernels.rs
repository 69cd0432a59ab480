//! The device side of the fused Sylvester stack: the per-row layout of the scratch tensor,
//! the cube functions of one step and of `Q`, and the forward and backward kernels.

use cubecl::prelude::*;

use crate::cube::PLANAR_EPS;

/// Rows per cube (one thread per row).
pub(super) const ROWS_PER_CUBE: u32 = 32;

/// [`crate::HOUSEHOLDER_MIN_SQ_NORM`] in the kernels' `f32`.
const MIN_SQ_NORM: f32 = crate::HOUSEHOLDER_MIN_SQ_NORM as f32;

/// The stack's sizes as kernel scalars.
#[derive(CubeLaunch, CubeType, Clone, Copy)]
pub(super) struct StackArgs {
    steps: u32,
    d: u32,
    /// `M`, the columns of `Q`.
    m: u32,
    /// `θ`'s columns per step.
    p: u32,
    /// Reflections per step (H-SNF), else 0.
    h: u32,
}

/// Sizes and a row's offsets into the scratch tensor.
#[derive(CubeType)]
struct Layout {
    steps: usize,
    d: usize,
    m: usize,
    p: usize,
    h: usize,
    /// `slots` points `z` of `d` values.
    zs: usize,
    zeta: usize,
    hh: usize,
    y: usize,
    /// `d` values: `Q y`, or a gradient of `z`.
    tmp: usize,
    /// `(h + 1)·d` values: the points of a reflection chain.
    chain: usize,
    gy: usize,
    gh: usize,
    gzeta: usize,
    gz: usize,
    gn: usize,
}

/// Values per row of the scratch tensor with room for `slots` points `z` (the host's
/// twin of [`layout`]).
pub(super) fn work_width(d: usize, m: usize, h: usize, slots: usize) -> usize {
    slots * d + 3 * m + d + (h + 1) * d + 3 * m + 2 * d
}

#[cube]
fn layout(base: usize, args: &StackArgs, slots: usize) -> Layout {
    let steps = args.steps as usize;
    let d = args.d as usize;
    let m = args.m as usize;
    let p = args.p as usize;
    let h = args.h as usize;
    let zs = base;
    let zeta = zs + slots * d;
    let hh = zeta + m;
    let y = hh + m;
    let tmp = y + m;
    let chain = tmp + d;
    let gy = chain + (h + 1) * d;
    let gh = gy + m;
    let gzeta = gh + m;
    let gz = gzeta + m;
    let gn = gz + d;
    Layout {
        steps,
        d,
        m,
        p,
        h,
        zs,
        zeta,
        hh,
        y,
        tmp,
        chain,
        gy,
        gh,
        gzeta,
        gz,
        gn,
    }
}

/// `x ← H(v) x = x − 2 v (vᵀx)/‖v‖²` for `v` at `theta[vb..]`, `x` at `work[xb..]`; no
/// reflection below [`MIN_SQ_NORM`].
#[cube]
fn reflect<F: Float>(theta: &Tensor<F>, vb: usize, work: &mut Tensor<F>, xb: usize, d: usize) {
    let mut q = F::new(0.0);
    let mut s = F::new(0.0);
    for k in 0..d {
        let v = theta[vb + k];
        q += v * v;
        s += v * work[xb + k];
    }
    if q >= F::new(MIN_SQ_NORM) {
        let c = F::new(2.0) * s / q;
        for k in 0..d {
            work[xb + k] = work[xb + k] - c * theta[vb + k];
        }
    }
}

/// Back through `y = H(v) x` taken at `x` (`work[x..]`): `work[g..]` from `∂L/∂y` to
/// `∂L/∂x`, `v`'s gradient added to `gtheta[gvb..]`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn reflect_backward<F: Float>(
    theta: &Tensor<F>,
    vb: usize,
    work: &mut Tensor<F>,
    x: usize,
    g: usize,
    gtheta: &mut Tensor<F>,
    gvb: usize,
    d: usize,
) {
    let mut q = F::new(0.0);
    let mut s = F::new(0.0);
    let mut t = F::new(0.0);
    for k in 0..d {
        let v = theta[vb + k];
        q += v * v;
        s += v * work[x + k];
        t += v * work[g + k];
    }
    if q >= F::new(MIN_SQ_NORM) {
        let c = F::new(2.0) / q;
        let along = F::new(2.0) * c * s * t / q;
        for k in 0..d {
            let v = theta[vb + k];
            gtheta[gvb + k] = gtheta[gvb + k] - c * (t * work[x + k] + s * work[g + k]) + along * v;
            work[g + k] = work[g + k] - c * t * v;
        }
    }
}

/// The points of the reflection chain from `work[input..]` into `work[l.chain..]`; the last
/// `d` are `Qᵀ input` (`project`: `Qᵀ = H(v_1) ⋯ H(v_H)` applies `v_H` first) or `Q input`.
#[cube]
fn run_chain<F: Float>(
    theta: &Tensor<F>,
    vb: usize,
    work: &mut Tensor<F>,
    input: usize,
    l: &Layout,
    #[comptime] project: bool,
) {
    let d = l.d;
    for k in 0..d {
        work[l.chain + k] = work[input + k];
    }
    for j in 0..l.h {
        let mut r = j;
        if project {
            r = l.h - 1 - j;
        }
        let next = l.chain + (j + 1) * d;
        for k in 0..d {
            work[next + k] = work[next - d + k];
        }
        reflect::<F>(theta, vb + r * d, work, next, d);
    }
}

/// Step `k` (parameters at `theta[tb..]`, columns at `q[qb..]`) from the point at
/// `work[zin..]`: `ζ`, `h`, `y`, `Q y` into the scratch, `z'` to `work[zout..]` (which may
/// be `zin`); returns the step's `ln|det J|`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn step<F: Float>(
    theta: &Tensor<F>,
    q: &Tensor<F>,
    work: &mut Tensor<F>,
    l: &Layout,
    tb: usize,
    qb: usize,
    k: usize,
    zin: usize,
    zout: usize,
    #[comptime] columns: bool,
    #[comptime] reflections: bool,
) -> F {
    let d = l.d;
    let m = l.m;
    let (ab, dtb, bb, vb) = (tb, tb + m * m, tb + m * m + m, tb + m * m + 2 * m);
    // ζ = Qᵀ z.
    if columns {
        for j in 0..m {
            let mut s = F::new(0.0);
            for r in 0..d {
                s += q[qb + r * m + j] * work[zin + r];
            }
            work[l.zeta + j] = s;
        }
    } else if reflections {
        run_chain::<F>(theta, vb, work, zin, l, true);
        for j in 0..m {
            work[l.zeta + j] = work[l.chain + l.h * d + j];
        }
    } else {
        let odd = k % 2 == 1;
        for j in 0..m {
            let mut src = j;
            if odd {
                src = d - 1 - j;
            }
            work[l.zeta + j] = work[zin + src];
        }
    }
    // h = tanh(R̃ ζ + b), y = R h, and the log-determinant.
    for r in 0..m {
        let mut pre = theta[bb + r] + F::tanh(theta[dtb + r]) * work[l.zeta + r];
        for j in r + 1..m {
            pre += theta[ab + j * m + r] * work[l.zeta + j];
        }
        work[l.hh + r] = F::tanh(pre);
    }
    let mut ladj = F::new(0.0);
    for r in 0..m {
        let t = F::tanh(theta[ab + r * m + r]);
        let hr = work[l.hh + r];
        let mut y = t * hr;
        for j in r + 1..m {
            y += theta[ab + r * m + j] * work[l.hh + j];
        }
        work[l.y + r] = y;
        let c = F::new(1.0) + t * F::tanh(theta[dtb + r]) * (F::new(1.0) - hr * hr);
        ladj += F::ln(F::abs(c) + F::new(PLANAR_EPS));
    }
    // z' = z + Q y.
    if columns {
        for r in 0..d {
            let mut s = F::new(0.0);
            for j in 0..m {
                s += q[qb + r * m + j] * work[l.y + j];
            }
            work[l.tmp + r] = s;
        }
    } else if reflections {
        run_chain::<F>(theta, vb, work, l.y, l, false);
        for r in 0..d {
            work[l.tmp + r] = work[l.chain + l.h * d + r];
        }
    } else {
        let odd = k % 2 == 1;
        for r in 0..d {
            let mut src = r;
            if odd {
                src = d - 1 - r;
            }
            work[l.tmp + r] = work[l.y + src];
        }
    }
    for r in 0..d {
        work[zout + r] = work[zin + r] + work[l.tmp + r];
    }
    ladj
}

/// The `K` steps of row `i` from `z`'s row, the points at `work[l.zs..]` a `stride` apart
/// (0: in place; `d`: `z_0 … z_K` kept); returns `Σ_k ln|det J_k|`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn run<F: Float>(
    z: &Tensor<F>,
    theta: &Tensor<F>,
    q: &Tensor<F>,
    work: &mut Tensor<F>,
    l: &Layout,
    i: usize,
    stride: usize,
    #[comptime] columns: bool,
    #[comptime] reflections: bool,
) -> F {
    let d = l.d;
    let pr = i % theta.shape(0);
    for r in 0..d {
        work[l.zs + r] = z[i * d + r];
    }
    let mut ladj = F::new(0.0);
    for k in 0..l.steps {
        let at = pr * l.steps + k;
        ladj += step::<F>(
            theta,
            q,
            work,
            l,
            at * l.p,
            at * d * l.m,
            k,
            l.zs + k * stride,
            l.zs + (k + 1) * stride,
            columns,
            reflections,
        );
    }
    ladj
}

/// Where step `k`'s reflection vectors (`vb`) and columns (`qb`) are read and their
/// gradients (`gvb`, `gqb`) written.
#[derive(CubeType)]
struct Offsets {
    vb: usize,
    qb: usize,
    gvb: usize,
    gqb: usize,
    k: usize,
}

/// Back through `ζ = Qᵀ z` (`project`) or `Q y` taken at `work[input..]`: from
/// `work[g_out..]` to `work[g_in..]`, `Q`'s parameters' gradient added to `gq[gqb..]`
/// (columns) or `gtheta[gvb..]` (reflection vectors).
#[cube]
#[allow(clippy::too_many_arguments)]
fn basis_backward<F: Float>(
    theta: &Tensor<F>,
    q: &Tensor<F>,
    work: &mut Tensor<F>,
    gtheta: &mut Tensor<F>,
    gq: &mut Tensor<F>,
    l: &Layout,
    at: &Offsets,
    input: usize,
    g_out: usize,
    g_in: usize,
    #[comptime] project: bool,
    #[comptime] columns: bool,
    #[comptime] reflections: bool,
) {
    let d = l.d;
    let m = l.m;
    let (vb, qb, gvb, gqb, k) = (at.vb, at.qb, at.gvb, at.gqb, at.k);
    if columns {
        if project {
            // out_j = Σ_r Q_rj z_r.
            for r in 0..d {
                let mut s = F::new(0.0);
                let zr = work[input + r];
                for j in 0..m {
                    let g = work[g_out + j];
                    s += q[qb + r * m + j] * g;
                    gq[gqb + r * m + j] = gq[gqb + r * m + j] + zr * g;
                }
                work[g_in + r] = s;
            }
        } else {
            // out_r = Σ_j Q_rj y_j.
            for j in 0..m {
                let mut s = F::new(0.0);
                let yj = work[input + j];
                for r in 0..d {
                    let g = work[g_out + r];
                    s += q[qb + r * m + j] * g;
                    gq[gqb + r * m + j] = gq[gqb + r * m + j] + g * yj;
                }
                work[g_in + j] = s;
            }
        }
    } else if reflections {
        run_chain::<F>(theta, vb, work, input, l, project);
        for r in 0..d {
            work[g_in + r] = work[g_out + r];
        }
        for jj in 0..l.h {
            let j = l.h - 1 - jj;
            let mut r = j;
            if project {
                r = l.h - 1 - j;
            }
            reflect_backward::<F>(
                theta,
                vb + r * d,
                work,
                l.chain + j * d,
                g_in,
                gtheta,
                gvb + r * d,
                d,
            );
        }
    } else {
        let odd = k % 2 == 1;
        for r in 0..d {
            let mut src = r;
            if odd {
                src = d - 1 - r;
            }
            work[g_in + r] = work[g_out + src];
        }
    }
}

/// `out[i, ..d] = z_K`, `out[i, d] = Σ_k ln|det J_k|`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn sylvester_forward_kernel<F: Float>(
    z: &Tensor<F>,
    theta: &Tensor<F>,
    q: &Tensor<F>,
    work: &mut Tensor<F>,
    out: &mut Tensor<F>,
    args: StackArgs,
    #[comptime] columns: bool,
    #[comptime] reflections: bool,
    #[define(F)] _dtype: StorageType,
) {
    let n = z.shape(0);
    let i = ABSOLUTE_POS;
    if i >= n {
        terminate!();
    }
    let l = layout(i * work.shape(1), &args, 1);
    let d = l.d;
    let ladj = run::<F>(z, theta, q, work, &l, i, 0, columns, reflections);
    for r in 0..d {
        out[i * (d + 1) + r] = work[l.zs + r];
    }
    out[i * (d + 1) + d] = ladj;
}

/// The gradient of `z`, and per-row gradients of `θ` and (columns) `q`, from the packed
/// output's gradient `g: [n, d + 1]`.
#[cube(launch)]
// A kernel has no `std::mem::swap`: the two gradient buffers trade places by hand.
#[allow(clippy::too_many_arguments, clippy::manual_swap)]
pub(super) fn sylvester_backward_kernel<F: Float>(
    z: &Tensor<F>,
    theta: &Tensor<F>,
    q: &Tensor<F>,
    g: &Tensor<F>,
    work: &mut Tensor<F>,
    gz: &mut Tensor<F>,
    gtheta: &mut Tensor<F>,
    gq: &mut Tensor<F>,
    args: StackArgs,
    #[comptime] columns: bool,
    #[comptime] reflections: bool,
    #[define(F)] _dtype: StorageType,
) {
    let n = z.shape(0);
    let i = ABSOLUTE_POS;
    if i >= n {
        terminate!();
    }
    let l = layout(i * work.shape(1), &args, args.steps as usize + 1);
    let (d, m, p, steps) = (l.d, l.m, l.p, l.steps);
    let pr = i % theta.shape(0);
    let (kp, kdm) = (steps * p, steps * d * m);
    // z_0 … z_K.
    run::<F>(z, theta, q, work, &l, i, d, columns, reflections);
    for j in 0..kp {
        gtheta[i * kp + j] = F::new(0.0);
    }
    if columns {
        for j in 0..kdm {
            gq[i * kdm + j] = F::new(0.0);
        }
    }
    let mut g_z = l.gz;
    let mut g_next = l.gn;
    for r in 0..d {
        work[g_z + r] = g[i * (d + 1) + r];
    }
    let g_l = g[i * (d + 1) + d];
    for kk in 0..steps {
        let k = steps - 1 - kk;
        let tb = pr * kp + k * p;
        let qb = pr * kdm + k * d * m;
        let gtb = i * kp + k * p;
        let gqb = i * kdm + k * d * m;
        let zin = l.zs + k * d;
        let (ab, dtb) = (tb, tb + m * m);
        let (gab, gdtb, gbb) = (gtb, gtb + m * m, gtb + m * m + m);
        let at = Offsets {
            vb: tb + m * m + 2 * m,
            qb,
            gvb: gtb + m * m + 2 * m,
            gqb,
            k,
        };
        // The step's intermediate values (its output lands where ∂z goes next).
        step::<F>(
            theta,
            q,
            work,
            &l,
            tb,
            qb,
            k,
            zin,
            g_next,
            columns,
            reflections,
        );
        // Through z' = z + Q y: g_y = Qᵀ g.
        basis_backward::<F>(
            theta,
            q,
            work,
            gtheta,
            gq,
            &l,
            &at,
            l.y,
            g_z,
            l.gy,
            false,
            columns,
            reflections,
        );
        // Through y = R h and the log-determinant.
        for r in 0..m {
            work[l.gh + r] = F::new(0.0);
        }
        for r in 0..m {
            let t = F::tanh(theta[ab + r * m + r]);
            let tt = F::tanh(theta[dtb + r]);
            let h = work[l.hh + r];
            let hp = F::new(1.0) - h * h;
            let c = F::new(1.0) + t * tt * hp;
            let mut sign = F::new(1.0);
            if c < F::new(0.0) {
                sign = F::new(-1.0);
            }
            let delta = g_l * sign / (F::abs(c) + F::new(PLANAR_EPS));
            let gy = work[l.gy + r];
            let g_t = delta * tt * hp + gy * h;
            gtheta[gab + r * m + r] = gtheta[gab + r * m + r] + g_t * (F::new(1.0) - t * t);
            // t̃'s share from the log-determinant; the pre-activation's comes below.
            gtheta[gdtb + r] = gtheta[gdtb + r] + delta * t * hp * (F::new(1.0) - tt * tt);
            work[l.gh + r] = work[l.gh + r] + t * gy - F::new(2.0) * delta * t * tt * h;
            for j in r + 1..m {
                gtheta[gab + r * m + j] = gtheta[gab + r * m + j] + gy * work[l.hh + j];
                work[l.gh + j] = work[l.gh + j] + theta[ab + r * m + j] * gy;
            }
        }
        // Through h = tanh(R̃ ζ + b).
        for r in 0..m {
            work[l.gzeta + r] = F::new(0.0);
        }
        for r in 0..m {
            let h = work[l.hh + r];
            let ga = work[l.gh + r] * (F::new(1.0) - h * h);
            gtheta[gbb + r] = gtheta[gbb + r] + ga;
            let tt = F::tanh(theta[dtb + r]);
            gtheta[gdtb + r] = gtheta[gdtb + r] + ga * work[l.zeta + r] * (F::new(1.0) - tt * tt);
            work[l.gzeta + r] = work[l.gzeta + r] + ga * tt;
            for j in r + 1..m {
                gtheta[gab + j * m + r] = gtheta[gab + j * m + r] + ga * work[l.zeta + j];
                work[l.gzeta + j] = work[l.gzeta + j] + theta[ab + j * m + r] * ga;
            }
        }
        // Through ζ = Qᵀ z: ∂z = g + Q g_ζ.
        basis_backward::<F>(
            theta,
            q,
            work,
            gtheta,
            gq,
            &l,
            &at,
            zin,
            l.gzeta,
            l.tmp,
            true,
            columns,
            reflections,
        );
        for r in 0..d {
            work[g_next + r] = work[g_z + r] + work[l.tmp + r];
        }
        let swap = g_z;
        g_z = g_next;
        g_next = swap;
    }
    for r in 0..d {
        gz[i * d + r] = work[g_z + r];
    }
}
