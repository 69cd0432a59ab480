//! The device side of the fused spline: the kernel scalars, the bin search and local
//! quantities of an entry, and the forward and backward kernels (the math in the parent
//! module's docs).

use cubecl::prelude::*;

use super::super::shape::Spline;
use crate::cube::{softplus, softplus_grad};

/// Entries per cube (one thread per entry).
pub(super) const ENTRIES_PER_CUBE: u32 = 128;

/// The spline's shape as kernel scalars.
#[derive(CubeLaunch, CubeType, Clone, Copy)]
pub(super) struct SplineArgs {
    bound: f32,
    min_w: f32,
    min_h: f32,
    min_d: f32,
    /// `ln(e^{1−m_δ} − 1)`: zero raw derivatives give `δ = 1`.
    shift: f32,
}

impl SplineArgs {
    fn new(spec: &Spline) -> Self {
        Self {
            bound: spec.bound as f32,
            min_w: spec.min_bin_width as f32,
            min_h: spec.min_bin_height as f32,
            min_d: spec.min_derivative as f32,
            shift: ((1.0 - spec.min_derivative).exp() - 1.0).ln() as f32,
        }
    }
}

/// The launch arguments of `spec`.
pub(super) fn launch_args<R: Runtime>(spec: &Spline) -> SplineArgsLaunch<R> {
    let a = SplineArgs::new(spec);
    SplineArgsLaunch::new(a.bound, a.min_w, a.min_h, a.min_d, a.shift)
}

/// The entry's bin and the spline's local quantities there.
#[derive(CubeType)]
struct Local<F: Float> {
    /// Bin index `k`.
    k: usize,
    xk: F,
    w: F,
    yk: F,
    h: F,
    d0: F,
    d1: F,
    /// Softmax maxima and sums of the raw widths and heights.
    max_w: F,
    sum_w: F,
    max_h: F,
    sum_h: F,
}

/// Bin search and local quantities for value `v` (an `x` for the forward, a `y` for the
/// inverse), parameters at `pw` (widths, heights: `K` each) and `pd` (`K − 1` derivatives).
#[cube]
#[allow(clippy::too_many_arguments)]
fn locate<F: Float>(
    v: F,
    widths: &Tensor<F>,
    heights: &Tensor<F>,
    derivs: &Tensor<F>,
    pw: usize,
    pd: usize,
    nb: usize,
    args: &SplineArgs,
    #[comptime] inverse: bool,
) -> Local<F> {
    let bound = F::cast_from(args.bound);
    let two_b = bound * F::new(2.0);
    let kf = F::cast_from(nb as u32);
    let scale_w = F::new(1.0) - kf * F::cast_from(args.min_w);
    let scale_h = F::new(1.0) - kf * F::cast_from(args.min_h);
    let mut max_w = widths[pw];
    let mut max_h = heights[pw];
    for i in 1..nb {
        max_w = F::max(max_w, widths[pw + i]);
        max_h = F::max(max_h, heights[pw + i]);
    }
    let mut sum_w = F::new(0.0);
    let mut sum_h = F::new(0.0);
    for i in 0..nb {
        sum_w += F::exp(widths[pw + i] - max_w);
        sum_h += F::exp(heights[pw + i] - max_h);
    }
    // Running sums of the sizes, Kahan-compensated: the knots are as accurate as a pairwise
    // sum's, whatever K.
    let mut cx = F::new(0.0);
    let mut cy = F::new(0.0);
    let mut ex = F::new(0.0);
    let mut ey = F::new(0.0);
    let mut k = 0usize;
    let mut xk = -bound;
    let mut wk = two_b;
    let mut yk = -bound;
    let mut hk = two_b;
    for i in 0..nb {
        let size_w = F::exp(widths[pw + i] - max_w) / sum_w * scale_w + F::cast_from(args.min_w);
        let size_h = F::exp(heights[pw + i] - max_h) / sum_h * scale_h + F::cast_from(args.min_h);
        let mut lo_x = -bound;
        let mut lo_y = -bound;
        if i > 0 {
            lo_x = cx * two_b - bound;
            lo_y = cy * two_b - bound;
        }
        let tx = size_w - ex;
        let sx = cx + tx;
        ex = (sx - cx) - tx;
        cx = sx;
        let ty = size_h - ey;
        let sy = cy + ty;
        ey = (sy - cy) - ty;
        cy = sy;
        let mut lo = lo_x;
        if inverse {
            lo = lo_y;
        }
        if i == 0 || v >= lo {
            k = i;
            xk = lo_x;
            wk = size_w * two_b;
            yk = lo_y;
            hk = size_h * two_b;
        }
    }
    let min_d = F::cast_from(args.min_d);
    let shift = F::cast_from(args.shift);
    let mut d0 = F::new(1.0);
    if k > 0 {
        d0 = min_d + softplus::<F>(derivs[pd + k - 1] + shift);
    }
    let mut d1 = F::new(1.0);
    if k + 1 < nb {
        d1 = min_d + softplus::<F>(derivs[pd + k] + shift);
    }
    Local::<F> {
        k,
        xk,
        w: wk,
        yk,
        h: hk,
        d0,
        d1,
        max_w,
        sum_w,
        max_h,
        sum_h,
    }
}

/// `ξ` of the entry: from `x` (forward) or the quadratic's stable root (inverse).
#[cube]
fn local_xi<F: Float>(v: F, l: &Local<F>, #[comptime] inverse: bool) -> F {
    let s = l.h / l.w;
    let beta = l.d1 + l.d0 - F::new(2.0) * s;
    let mut xi = (v - l.xk) / l.w;
    if inverse {
        let dy = v - l.yk;
        let a = l.h * (s - l.d0) + dy * beta;
        let b = l.h * l.d0 - dy * beta;
        let c = -s * dy;
        let disc = F::max(b * b - F::new(4.0) * a * c, F::new(0.0));
        xi = F::new(2.0) * c / (-b - F::sqrt(disc));
    }
    xi
}

/// `out[i, j] =` the transformed entry, `out[i, d + j] =` its log-derivative.
#[cube(launch)]
pub(super) fn spline_forward_kernel<F: Float>(
    v: &Tensor<F>,
    widths: &Tensor<F>,
    heights: &Tensor<F>,
    derivs: &Tensor<F>,
    out: &mut Tensor<F>,
    args: SplineArgs,
    #[comptime] inverse: bool,
    #[define(F)] _dtype: StorageType,
) {
    let n = v.shape(0);
    let d = v.shape(1);
    let pos = ABSOLUTE_POS;
    if pos >= n * d {
        terminate!();
    }
    let i = pos / d;
    let j = pos % d;
    let nb = widths.shape(2);
    let p = i * (widths.shape(0) / n);
    let x = v[pos];
    let bound = F::cast_from(args.bound);
    let mut value = x;
    let mut logd = F::new(0.0);
    if x >= -bound && x <= bound {
        let l = locate::<F>(
            x,
            widths,
            heights,
            derivs,
            (p * d + j) * nb,
            (p * d + j) * (nb - 1),
            nb,
            &args,
            inverse,
        );
        let xi = local_xi::<F>(x, &l, inverse);
        let s = l.h / l.w;
        let beta = l.d1 + l.d0 - F::new(2.0) * s;
        let om = F::new(1.0) - xi;
        let t = xi * om;
        let den = s + beta * t;
        let num = l.d1 * xi * xi + F::new(2.0) * s * t + l.d0 * om * om;
        // One logarithm of s²N/D² (each GPU `log` may be off by 2⁻²¹ absolutely).
        let sd = s / den;
        logd = F::ln(sd * sd * num);
        if inverse {
            value = xi * l.w + l.xk;
            logd = -logd;
        } else {
            value = l.yk + l.h * (s * xi * xi + l.d0 * t) / den;
        }
    }
    out[i * 2 * d + j] = value;
    out[i * 2 * d + d + j] = logd;
}

/// Gradients of the input and per-row gradients of the raw parameters, from the packed
/// output's gradient `g: [n, 2d]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn spline_backward_kernel<F: Float>(
    v: &Tensor<F>,
    widths: &Tensor<F>,
    heights: &Tensor<F>,
    derivs: &Tensor<F>,
    g: &Tensor<F>,
    gv: &mut Tensor<F>,
    gw: &mut Tensor<F>,
    gh: &mut Tensor<F>,
    gd: &mut Tensor<F>,
    args: SplineArgs,
    #[comptime] inverse: bool,
    #[define(F)] _dtype: StorageType,
) {
    let n = v.shape(0);
    let d = v.shape(1);
    let pos = ABSOLUTE_POS;
    if pos >= n * d {
        terminate!();
    }
    let i = pos / d;
    let j = pos % d;
    let nb = widths.shape(2);
    let p = i * (widths.shape(0) / n);
    let (pw, pd) = ((p * d + j) * nb, (p * d + j) * (nb - 1));
    // This entry's own rows of the per-row parameter gradients.
    let (ow, od) = (pos * nb, pos * (nb - 1));
    let x = v[pos];
    let g_out = g[i * 2 * d + j];
    let g_log = g[i * 2 * d + d + j];
    let bound = F::cast_from(args.bound);
    let zero = F::new(0.0);
    let one = F::new(1.0);
    let two = F::new(2.0);
    if x < -bound || x > bound {
        gv[pos] = g_out;
        for q in 0..nb {
            gw[ow + q] = zero;
            gh[ow + q] = zero;
        }
        for q in 0..nb - 1 {
            gd[od + q] = zero;
        }
        terminate!();
    }
    let l = locate::<F>(x, widths, heights, derivs, pw, pd, nb, &args, inverse);
    let xi = local_xi::<F>(x, &l, inverse);
    let s = l.h / l.w;
    let beta = l.d1 + l.d0 - two * s;
    let om = one - xi;
    let t = xi * om;
    let den = s + beta * t;
    let pp = s * xi * xi + l.d0 * t;
    let num = l.d1 * xi * xi + two * s * t + l.d0 * om * om;
    let d_xi = beta * (one - two * xi);
    let n_xi = two * l.d1 * xi + two * s * (one - two * xi) - two * l.d0 * om;
    // Partials of y = y_k + hP/D at fixed h, in forms without cancellation (expanded by
    // hand): ∂/∂ξ = h s N / D² (= w·dy/dx), ∂/∂s = h t (δ_{k+1}ξ² − δ_k(1 − ξ)²) / D²,
    // ∂/∂δ_k = h t (1 − ξ)(s(1 − ξ) + δ_{k+1}ξ) / D², ∂/∂δ_{k+1} = −h P t / D².
    let hd2 = l.h / (den * den);
    let y_xi = hd2 * s * num;
    let y_s = hd2 * t * (l.d1 * xi * xi - l.d0 * om * om);
    let y_d0 = hd2 * t * om * (s * om + l.d1 * xi);
    let y_d1 = -hd2 * pp * t;
    // Partials of L = ln dy/dx = 2 ln s + ln N − 2 ln D at fixed ξ (as autodiff of the
    // reference forms them).
    let l_xi = n_xi / num - two * d_xi / den;
    let l_s = two / s + two * t / num - two * (one - two * t) / den;
    let l_d0 = om * om / num - two * t / den;
    let l_d1 = xi * xi / num - two * t / den;
    let mut g_in = zero;
    let mut g_s = zero;
    let mut g_d0 = zero;
    let mut g_d1 = zero;
    let mut g_h = zero;
    let mut g_yk = zero;
    let mut g_w = zero;
    let mut g_xk = zero;
    if inverse {
        // Outputs x = ξw + x_k and −L, with ξ(y, θ) implicit: ∂ξ/∂y = 1/y_ξ,
        // ∂ξ/∂θ = −y_θ/y_ξ.
        let g_l = -g_log;
        let g_xi = g_out * l.w + g_l * l_xi;
        let q = g_xi / y_xi;
        g_in += q;
        g_yk += -q;
        g_h += -q * pp / den;
        g_s += g_l * l_s - q * y_s;
        g_d0 += g_l * l_d0 - q * y_d0;
        g_d1 += g_l * l_d1 - q * y_d1;
        g_w += g_out * xi;
        g_xk += g_out;
    } else {
        // Outputs y and L, with ξ = (x − x_k)/w.
        let g_xi = g_out * y_xi + g_log * l_xi;
        g_s += g_out * y_s + g_log * l_s;
        g_d0 += g_out * y_d0 + g_log * l_d0;
        g_d1 += g_out * y_d1 + g_log * l_d1;
        g_h += g_out * pp / den;
        g_yk += g_out;
        g_in += g_xi / l.w;
        g_xk += -g_xi / l.w;
        g_w += -g_xi * xi / l.w;
    }
    // s = h / w.
    g_h += g_s / l.w;
    g_w += -g_s * l.h / (l.w * l.w);
    gv[pos] = g_in;
    // Knot x_k = −B + 2B·Σ_{i<k} size_i (x_0 = −B is a constant) and width w = 2B·size_k:
    // size_i gets 2B·(ḡ_{x_k} [i < k] + ḡ_w [i = k]); heights likewise.
    let k = l.k;
    let kf = F::cast_from(nb as u32);
    let scale_w = (one - kf * F::cast_from(args.min_w)) * two * bound;
    let scale_h = (one - kf * F::cast_from(args.min_h)) * two * bound;
    // Softmax backward: θ̄_i = sm_i (ḡ_i − Σ_j sm_j ḡ_j).
    let mut dot_w = zero;
    let mut dot_h = zero;
    for q in 0..nb {
        let mut cw = zero;
        let mut ch = zero;
        if q < k {
            cw = g_xk;
            ch = g_yk;
        }
        if q == k {
            cw = g_w;
            ch = g_h;
        }
        dot_w += F::exp(widths[pw + q] - l.max_w) / l.sum_w * cw * scale_w;
        dot_h += F::exp(heights[pw + q] - l.max_h) / l.sum_h * ch * scale_h;
    }
    for q in 0..nb {
        let mut cw = zero;
        let mut ch = zero;
        if q < k {
            cw = g_xk;
            ch = g_yk;
        }
        if q == k {
            cw = g_w;
            ch = g_h;
        }
        let sm_w = F::exp(widths[pw + q] - l.max_w) / l.sum_w;
        let sm_h = F::exp(heights[pw + q] - l.max_h) / l.sum_h;
        gw[ow + q] = sm_w * (cw * scale_w - dot_w);
        gh[ow + q] = sm_h * (ch * scale_h - dot_h);
    }
    // Interior derivative q is knot q + 1.
    let shift = F::cast_from(args.shift);
    for q in 0..nb - 1 {
        let mut gq = zero;
        if q + 1 == k {
            gq += g_d0;
        }
        if q == k {
            gq += g_d1;
        }
        gd[od + q] = gq * softplus_grad::<F>(derivs[pd + q] + shift);
    }
}
