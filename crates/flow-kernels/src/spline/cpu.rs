//! The rational-quadratic spline as one CPU kernel (flow-core's `spline` math).
//!
//! Forward, the entries go through the spline [`LANES`] at a time, side by side: the
//! normalisation of the raw parameters (two softmaxes over the bins, the knots' derivatives
//! by softplus), the bin search (a scan over the knots in which each entry keeps the last
//! bin whose lower knot it reaches), the forward or inverse map and the log-derivative are
//! each one branch-free step over the group, in `f64` with [`math`]'s exponential and
//! logarithm, so that inside pulp's dispatch every step is one vector instruction for the
//! group (AVX2: four `f64`). The backward pass recomputes one entry at a time (with the C
//! library's `exp` and `ln`) and is that of the GPU kernel (`super::cube`, features `wgpu`
//! / `cuda`), whose derivation its module docs give.

use burn::tensor::{Tensor, backend::Backend};

use super::shape::Spline as Shape;
use crate::host::{Host, Kernel, dispatch, math, softplus, softplus_grad};

/// The spline's constants in `f64`.
#[derive(Debug, Clone, Copy)]
struct Spec {
    bins: usize,
    bound: f64,
    min_w: f64,
    min_h: f64,
    min_d: f64,
    /// `ln(e^{1−m_δ} − 1)`: zero raw derivatives give `δ = 1`.
    shift: f64,
}

impl Spec {
    fn new(spec: &Shape) -> Self {
        Self {
            bins: spec.bins,
            bound: spec.bound,
            min_w: spec.min_bin_width,
            min_h: spec.min_bin_height,
            min_d: spec.min_derivative,
            shift: ((1.0 - spec.min_derivative).exp() - 1.0).ln(),
        }
    }
}

/// One entry's raw parameters: `K` widths, `K` heights, `K − 1` interior derivatives.
#[derive(Clone, Copy)]
struct Raw<'a> {
    w: &'a [f64],
    h: &'a [f64],
    d: &'a [f64],
}

/// `softmax(raw)` into `out`.
fn softmax(raw: &[f64], out: &mut [f64]) {
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (o, &r) in out.iter_mut().zip(raw) {
        *o = (r - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// The spline's local quantities in an entry's bin: its knot `(x_k, y_k)`, width,
/// height, and the derivatives at its two knots.
struct Local {
    xk: f64,
    w: f64,
    yk: f64,
    h: f64,
    d0: f64,
    d1: f64,
}

/// Bin search for `v` (an `x` forward, a `y` inverse): the bin `k` and its [`Local`]
/// quantities; leaves the width and height softmaxes in `sm_w`, `sm_h`.
fn locate(
    v: f64,
    raw: Raw,
    s: &Spec,
    inverse: bool,
    sm_w: &mut [f64],
    sm_h: &mut [f64],
) -> (usize, Local) {
    let k_bins = s.bins;
    softmax(raw.w, sm_w);
    softmax(raw.h, sm_h);
    let two_b = 2.0 * s.bound;
    let scale_w = 1.0 - k_bins as f64 * s.min_w;
    let scale_h = 1.0 - k_bins as f64 * s.min_h;
    let (mut cx, mut cy, mut k) = (0.0, 0.0, 0);
    let mut l = Local {
        xk: -s.bound,
        w: two_b,
        yk: -s.bound,
        h: two_b,
        d0: 1.0,
        d1: 1.0,
    };
    for i in 0..k_bins {
        let size_w = sm_w[i] * scale_w + s.min_w;
        let size_h = sm_h[i] * scale_h + s.min_h;
        let lo_x = cx * two_b - s.bound;
        let lo_y = cy * two_b - s.bound;
        cx += size_w;
        cy += size_h;
        let lo = if inverse { lo_y } else { lo_x };
        if i == 0 || v >= lo {
            k = i;
            l.xk = lo_x;
            l.w = size_w * two_b;
            l.yk = lo_y;
            l.h = size_h * two_b;
        }
    }
    if k > 0 {
        l.d0 = s.min_d + softplus(raw.d[k - 1] + s.shift);
    }
    if k + 1 < k_bins {
        l.d1 = s.min_d + softplus(raw.d[k] + s.shift);
    }
    (k, l)
}

/// `ξ`: from `x` forward, the quadratic's stable root inverse.
#[inline(always)]
fn local_xi(v: f64, l: &Local, inverse: bool) -> f64 {
    if !inverse {
        return (v - l.xk) / l.w;
    }
    let s = l.h / l.w;
    let beta = l.d1 + l.d0 - 2.0 * s;
    let dy = v - l.yk;
    let a = l.h * (s - l.d0) + dy * beta;
    let b = l.h * l.d0 - dy * beta;
    let c = -s * dy;
    let disc = (b * b - 4.0 * a * c).max(0.0);
    2.0 * c / (-b - disc.sqrt())
}

/// Entries the forward pass takes side by side: an AVX2 vector of `f64` (half an AVX-512
/// one). Every step of [`entries`] is a loop over the lanes that compiles to vector code.
const LANES: usize = 4;

/// One `f64` per entry of a group.
type Lanes = [f64; LANES];

/// `LANES` entries `v` through the spline (forward, or inverse when `inverse`): their
/// values and log-derivatives (of the direction computed). `raw[q]` holds raw parameter `q`
/// of every lane (`q < K`: widths, `K ≤ q < 2K`: heights, then the `K − 1` interior
/// derivatives), and is overwritten. Entries outside `[−B, B]` are passed through with
/// log-derivative 0.
#[inline(always)]
fn entries(v: Lanes, raw: &mut [Lanes], s: &Spec, inverse: bool) -> (Lanes, Lanes) {
    if inverse {
        entries_in::<true>(v, raw, s)
    } else {
        entries_in::<false>(v, raw, s)
    }
}

/// Each lane's softmax numerators `e^{θ_q − max θ}` in place of its `θ`; returns
/// `scale / Σ_q e^{θ_q − max θ}` per lane.
#[inline(always)]
fn softmax_lanes(theta: &mut [Lanes], scale: f64) -> Lanes {
    let mut max = [f64::NEG_INFINITY; LANES];
    for t in theta.iter() {
        for l in 0..LANES {
            max[l] = max[l].max(t[l]);
        }
    }
    let mut sum = [0.0; LANES];
    for t in theta.iter_mut() {
        for l in 0..LANES {
            t[l] = math::exp_f64(t[l] - max[l]);
            sum[l] += t[l];
        }
    }
    let mut factor = [0.0; LANES];
    for l in 0..LANES {
        factor[l] = scale / sum[l];
    }
    factor
}

/// [`entries`] in one direction.
#[inline(always)]
fn entries_in<const INVERSE: bool>(v: Lanes, raw: &mut [Lanes], s: &Spec) -> (Lanes, Lanes) {
    let k_bins = s.bins;
    let (ew, rest) = raw.split_at_mut(k_bins);
    let (eh, dr) = rest.split_at_mut(k_bins);
    let scale_w = softmax_lanes(ew, 1.0 - k_bins as f64 * s.min_w);
    let scale_h = softmax_lanes(eh, 1.0 - k_bins as f64 * s.min_h);
    // The bin search as a scan over the bins: each lane takes every bin whose lower knot
    // (in `x` forward, `y` inverse) is at or below its entry, so it ends with the last one.
    // The raw derivatives at the bin's knots are taken too, 0 at the interval's ends (raw 0
    // gives δ = 1, the ends' derivative).
    let two_b = 2.0 * s.bound;
    let (mut cx, mut cy) = ([0.0; LANES], [0.0; LANES]);
    let (mut xk, mut w, mut yk, mut h) = ([0.0; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
    let (mut r0, mut r1) = ([0.0; LANES], [0.0; LANES]);
    for q in 0..k_bins {
        let below = if q > 0 { dr[q - 1] } else { [0.0; LANES] };
        let above = if q + 1 < k_bins { dr[q] } else { [0.0; LANES] };
        for l in 0..LANES {
            let size_w = ew[q][l] * scale_w[l] + s.min_w;
            let size_h = eh[q][l] * scale_h[l] + s.min_h;
            let lo_x = cx[l] * two_b - s.bound;
            let lo_y = cy[l] * two_b - s.bound;
            cx[l] += size_w;
            cy[l] += size_h;
            let lo = if INVERSE { lo_y } else { lo_x };
            if q == 0 || v[l] >= lo {
                xk[l] = lo_x;
                w[l] = size_w * two_b;
                yk[l] = lo_y;
                h[l] = size_h * two_b;
                r0[l] = below[l];
                r1[l] = above[l];
            }
        }
    }
    let (mut out, mut logd) = ([0.0; LANES], [0.0; LANES]);
    for l in 0..LANES {
        let d0 = s.min_d + math::softplus_f64(r0[l] + s.shift);
        let d1 = s.min_d + math::softplus_f64(r1[l] + s.shift);
        let vl = v[l];
        let at = Local {
            xk: xk[l],
            w: w[l],
            yk: yk[l],
            h: h[l],
            d0,
            d1,
        };
        let xi = local_xi(vl, &at, INVERSE);
        let (xk, w, yk, h) = (at.xk, at.w, at.yk, at.h);
        let sl = h / w;
        let beta = d1 + d0 - 2.0 * sl;
        let om = 1.0 - xi;
        let t = xi * om;
        let den = sl + beta * t;
        let num = d1 * xi * xi + 2.0 * sl * t + d0 * om * om;
        let ln_d = math::ln_f64(sl * sl * num / (den * den));
        let (value, ln_d) = if INVERSE {
            (xi * w + xk, -ln_d)
        } else {
            (yk + h * (sl * xi * xi + d0 * t) / den, ln_d)
        };
        // Outside the interval: the identity (NaN entries go through the spline, and stay
        // NaN).
        let outside = vl < -s.bound || vl > s.bound;
        out[l] = if outside { vl } else { value };
        logd[l] = if outside { 0.0 } else { ln_d };
    }
    (out, logd)
}

/// Gradients of one entry: returns `∂L/∂v` and writes the raw parameters' gradients
/// into `gw`, `gh` (`K` each) and `gd` (`K − 1`), from the output's gradient `g_out` and
/// the log-derivative's `g_log`.
#[allow(clippy::too_many_arguments)]
fn entry_backward(
    v: f64,
    raw: Raw,
    s: &Spec,
    inverse: bool,
    (g_out, g_log): (f64, f64),
    scratch: &mut [f64],
    gw: &mut [f64],
    gh: &mut [f64],
    gd: &mut [f64],
) -> f64 {
    if v < -s.bound || v > s.bound {
        gw.fill(0.0);
        gh.fill(0.0);
        gd.fill(0.0);
        return g_out;
    }
    let (sm_w, sm_h) = scratch.split_at_mut(s.bins);
    let (k, l) = locate(v, raw, s, inverse, sm_w, sm_h);
    let xi = local_xi(v, &l, inverse);
    let sl = l.h / l.w;
    let beta = l.d1 + l.d0 - 2.0 * sl;
    let om = 1.0 - xi;
    let t = xi * om;
    let den = sl + beta * t;
    let pp = sl * xi * xi + l.d0 * t;
    let num = l.d1 * xi * xi + 2.0 * sl * t + l.d0 * om * om;
    let d_xi = beta * (1.0 - 2.0 * xi);
    let n_xi = 2.0 * l.d1 * xi + 2.0 * sl * (1.0 - 2.0 * xi) - 2.0 * l.d0 * om;
    // Partials of y = y_k + hP/D at fixed h, and of L = ln dy/dx at fixed ξ.
    let hd2 = l.h / (den * den);
    let y_xi = hd2 * sl * num;
    let y_s = hd2 * t * (l.d1 * xi * xi - l.d0 * om * om);
    let y_d0 = hd2 * t * om * (sl * om + l.d1 * xi);
    let y_d1 = -hd2 * pp * t;
    let l_xi = n_xi / num - 2.0 * d_xi / den;
    let l_s = 2.0 / sl + 2.0 * t / num - 2.0 * (1.0 - 2.0 * t) / den;
    let l_d0 = om * om / num - 2.0 * t / den;
    let l_d1 = xi * xi / num - 2.0 * t / den;
    let (g_in, g_s, g_d0, g_d1, mut g_h, g_yk, mut g_w, g_xk);
    if inverse {
        // x = ξw + x_k and −L, ξ(y, θ) implicit: ∂ξ/∂y = 1/y_ξ, ∂ξ/∂θ = −y_θ/y_ξ.
        let g_l = -g_log;
        let q = (g_out * l.w + g_l * l_xi) / y_xi;
        g_in = q;
        g_yk = -q;
        g_h = -q * pp / den;
        g_s = g_l * l_s - q * y_s;
        g_d0 = g_l * l_d0 - q * y_d0;
        g_d1 = g_l * l_d1 - q * y_d1;
        g_w = g_out * xi;
        g_xk = g_out;
    } else {
        // y and L, ξ = (x − x_k)/w.
        let g_xi = g_out * y_xi + g_log * l_xi;
        g_s = g_out * y_s + g_log * l_s;
        g_d0 = g_out * y_d0 + g_log * l_d0;
        g_d1 = g_out * y_d1 + g_log * l_d1;
        g_h = g_out * pp / den;
        g_yk = g_out;
        g_in = g_xi / l.w;
        g_xk = -g_xi / l.w;
        g_w = -g_xi * xi / l.w;
    }
    // s = h / w.
    g_h += g_s / l.w;
    g_w -= g_s * l.h / (l.w * l.w);
    // x_k = −B + 2B Σ_{i<k} size_i and w = 2B size_k (heights likewise), size = m + (1 −
    // Km) softmax(θ): the softmax's backward θ̄_i = sm_i (ḡ_i − Σ_j sm_j ḡ_j).
    let two_b = 2.0 * s.bound;
    let scale_w = (1.0 - s.bins as f64 * s.min_w) * two_b;
    let scale_h = (1.0 - s.bins as f64 * s.min_h) * two_b;
    let upstream = |q: usize, below: f64, at: f64| match q.cmp(&k) {
        std::cmp::Ordering::Less => below,
        std::cmp::Ordering::Equal => at,
        std::cmp::Ordering::Greater => 0.0,
    };
    let (mut dot_w, mut dot_h) = (0.0, 0.0);
    for q in 0..s.bins {
        dot_w += sm_w[q] * upstream(q, g_xk, g_w) * scale_w;
        dot_h += sm_h[q] * upstream(q, g_yk, g_h) * scale_h;
    }
    for q in 0..s.bins {
        gw[q] = sm_w[q] * (upstream(q, g_xk, g_w) * scale_w - dot_w);
        gh[q] = sm_h[q] * (upstream(q, g_yk, g_h) * scale_h - dot_h);
    }
    // Interior derivative q is knot q + 1.
    for (q, g) in gd.iter_mut().enumerate() {
        let mut gq = 0.0;
        if q + 1 == k {
            gq += g_d0;
        }
        if q == k {
            gq += g_d1;
        }
        *g = gq * softplus_grad(raw.d[q] + s.shift);
    }
    g_in
}

/// Where a spline's raw parameters are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Three inputs after `v`: widths and heights `[m, d·K]`, derivatives `[m, d·(K − 1)]`
    /// (each entry's `K` values contiguous).
    Split,
    /// One input after `v`: the conditioner's parameter-major `[m, (3K − 1)·d]`, parameter
    /// `q` of feature `j` at column `q·d + j` (widths, then heights, then derivatives).
    Packed,
}

/// The rational-quadratic spline, forward or inverse, on parameters in either [`Layout`].
#[derive(Debug, Clone, Copy)]
struct Spline {
    spec: Spec,
    inverse: bool,
    layout: Layout,
}

/// A row's parameters, as [`Spline`]'s layout holds them.
#[derive(Clone, Copy)]
struct Params<'a> {
    layout: Layout,
    /// The parameter inputs (one for [`Layout::Packed`], three for [`Layout::Split`]).
    inputs: [&'a [f32]; 3],
    /// The row's index among the parameter rows.
    p: usize,
    /// Entries per row, and bins.
    d: usize,
    k: usize,
}

impl<'a> Params<'a> {
    fn new(spline: &Spline, x: &'a Host, i: usize) -> Self {
        let input = |p: usize| if p < x.inputs() { x.input(p) } else { &[][..] };
        Self {
            layout: spline.layout,
            inputs: [input(1), input(2), input(3)],
            p: x.param_row(i),
            d: x.size().1,
            k: spline.spec.bins,
        }
    }

    /// Raw parameter `q` of entry `j` (`q < K`: widths, `K ≤ q < 2K`: heights, then the
    /// interior derivatives).
    #[inline(always)]
    fn get(&self, q: usize, j: usize) -> f64 {
        let (d, k) = (self.d, self.k);
        f64::from(match self.layout {
            Layout::Packed => self.inputs[0][(self.p * (3 * k - 1) + q) * d + j],
            Layout::Split => {
                let e = self.p * d + j;
                match q {
                    q if q < k => self.inputs[0][e * k + q],
                    q if q < 2 * k => self.inputs[1][e * k + q - k],
                    q => self.inputs[2][e * (k - 1) + q - 2 * k],
                }
            }
        })
    }
}

impl Params<'_> {
    /// The raw parameters of entries `js` (lanes), the group starting at `j0`, into `raw`
    /// (`3K − 1` lanes): a group of whole entries in the packed layout is one contiguous
    /// read per parameter (converted to `f64` four at a time).
    #[inline(always)]
    fn gather(&self, raw: &mut [Lanes], j0: usize, js: [usize; LANES]) {
        if self.layout == Layout::Packed && j0 + LANES <= self.d {
            let (d, k) = (self.d, self.k);
            let row = &self.inputs[0][self.p * (3 * k - 1) * d..][..(3 * k - 1) * d];
            for (r, q) in raw.iter_mut().zip(row.chunks_exact(d)) {
                let q = &q[j0..j0 + LANES];
                for l in 0..LANES {
                    r[l] = f64::from(q[l]);
                }
            }
        } else {
            for (q, r) in raw.iter_mut().enumerate() {
                for l in 0..LANES {
                    r[l] = self.get(q, js[l]);
                }
            }
        }
    }
}

impl Kernel for Spline {
    const ROWS_PER_TASK: usize = 64;

    fn scratch(&self) -> usize {
        // Forward: a group of entries' raw parameters. Backward: two softmaxes, one entry's
        // gathered parameters, and their gradients.
        let k = self.spec.bins;
        ((3 * k - 1) * LANES).max(2 * k + 2 * (3 * k - 1))
    }

    #[inline(always)]
    fn row(&self, x: &Host, i: usize, out: &mut [f32], scratch: &mut [f64]) -> f64 {
        let d = out.len();
        let params = Params::new(self, x, i);
        let v = &x.input(0)[i * d..(i + 1) * d];
        let (raw, _) = scratch.as_chunks_mut::<LANES>();
        let raw = &mut raw[..3 * self.spec.bins - 1];
        let mut ladj = 0.0;
        for j0 in (0..d).step_by(LANES) {
            // Lanes past the row's end repeat its last entry; their results are dropped.
            let mut js = [0; LANES];
            let mut vs = [0.0; LANES];
            for l in 0..LANES {
                js[l] = (j0 + l).min(d - 1);
                vs[l] = f64::from(v[js[l]]);
            }
            params.gather(raw, j0, js);
            let (values, logd) = entries(vs, raw, &self.spec, self.inverse);
            for l in 0..LANES.min(d - j0) {
                out[j0 + l] = values[l] as f32;
                ladj += logd[l];
            }
        }
        ladj
    }

    fn row_backward(
        &self,
        x: &Host,
        i: usize,
        g: &[f32],
        g_in: &mut [f32],
        g_params: &mut [&mut [f32]],
        scratch: &mut [f64],
    ) {
        let (d, k) = (g_in.len(), self.spec.bins);
        let params = Params::new(self, x, i);
        let v = &x.input(0)[i * d..(i + 1) * d];
        let g_log = f64::from(g[d]);
        let (softmaxes, rest) = scratch.split_at_mut(2 * k);
        // One entry's gathered parameters, and their gradients (widths, heights, derivatives).
        let (buf, rest) = rest.split_at_mut(3 * k - 1);
        let one = &mut rest[..3 * k - 1];
        for j in 0..d {
            buf.iter_mut()
                .enumerate()
                .for_each(|(q, b)| *b = params.get(q, j));
            let (w, rest) = buf.split_at(k);
            let (h, dr) = rest.split_at(k);
            let (gw, rest) = one.split_at_mut(k);
            let (gh, gd) = rest.split_at_mut(k);
            g_in[j] = entry_backward(
                f64::from(v[j]),
                Raw { w, h, d: dr },
                &self.spec,
                self.inverse,
                (f64::from(g[j]), g_log),
                softmaxes,
                gw,
                gh,
                gd,
            ) as f32;
            match self.layout {
                Layout::Split => {
                    let store = |to: &mut [f32], from: &[f64]| {
                        to.iter_mut().zip(from).for_each(|(t, &f)| *t = f as f32)
                    };
                    store(&mut g_params[0][j * k..(j + 1) * k], gw);
                    store(&mut g_params[1][j * k..(j + 1) * k], gh);
                    store(&mut g_params[2][j * (k - 1)..(j + 1) * (k - 1)], gd);
                }
                Layout::Packed => {
                    for (q, &v) in one.iter().enumerate() {
                        g_params[0][q * d + j] = v as f32;
                    }
                }
            }
        }
    }
}

/// The fused spline on `B` (forward, or inverse when `inverse`), or `None` when `B` is not
/// one of the CPU backends. Same contract as [`super::rq_spline`].
pub(crate) fn rq_spline<B: Backend>(
    v: &Tensor<B, 2>,
    widths: &Tensor<B, 3>,
    heights: &Tensor<B, 3>,
    derivatives: &Tensor<B, 3>,
    spec: &Shape,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let flat = |t: &Tensor<B, 3>| {
        let [m, d, k] = t.dims();
        t.clone().reshape([m, d * k])
    };
    let (w, h, d) = (flat(widths), flat(heights), flat(derivatives));
    let kernel = Spline {
        spec: Spec::new(spec),
        inverse,
        layout: Layout::Split,
    };
    dispatch([v, &w, &h, &d], kernel)
}

/// [`rq_spline`] on the packed parameters of [`super::rq_spline_params`].
pub(crate) fn rq_spline_params<B: Backend>(
    v: &Tensor<B, 2>,
    params: &Tensor<B, 3>,
    spec: &Shape,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    let [m, p, d] = params.dims();
    let params = params.clone().reshape([m, p * d]);
    let kernel = Spline {
        spec: Spec::new(spec),
        inverse,
        layout: Layout::Packed,
    };
    dispatch([v, &params], kernel)
}

#[cfg(all(test, feature = "ndarray"))]
mod tests;
