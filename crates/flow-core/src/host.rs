//! Fused kernels for the CPU backends (`flex`, `ndarray`), in plain Rust over host memory,
//! with hand-written backward passes registered with burn's autodiff.
//!
//! The CPU backends run a tensor-op kernel as one pass over memory per operation, each
//! with a freshly allocated output: the rational-quadratic spline's reference
//! ([`crate::rq_spline_reference`]) takes about 60 of them, and strided views of the
//! parameters force element-by-element copies. Here the spline is one pass over the entries
//! in `f64` (the normalisation of the raw parameters, the bin search, the forward or
//! inverse map and the log-derivative), split over rayon's threads, and its backward one
//! more pass. The tensors of these backends live in host memory: taking their values is
//! not a device transfer (on `flex` it is not even a copy when nothing else holds the
//! buffer).
//!
//! The math is [`crate::spline`]'s; the backward pass is that of the GPU kernel
//! (`crate::fused`, features `wgpu` / `cuda`), whose derivation its module docs give.
//! Backends: `burn::backend::Flex` (feature `flex`), `burn::backend::NdArray` (f32,
//! feature `ndarray`) and `Autodiff` of either; every other backend takes the reference.

use rayon::prelude::*;

use burn::{
    backend::{
        Autodiff,
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
    },
    tensor::{Tensor, TensorData, TensorPrimitive, backend::Backend, ops::FloatTensor},
};

use crate::{
    ops::{is, same_type},
    spline::RqSpline,
};

/// Rows per rayon task: enough work to amortise the task, few enough to balance 2+ threads.
const ROWS_PER_TASK: usize = 64;

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
    fn new(spec: &RqSpline) -> Self {
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

/// The entry's bin `k` and the spline's local quantities there.
struct Local {
    k: usize,
    xk: f64,
    w: f64,
    yk: f64,
    h: f64,
    d0: f64,
    d1: f64,
}

/// Bin search for `v` (an `x` forward, a `y` inverse); leaves the width and height
/// softmaxes in `sm_w`, `sm_h`.
fn locate(v: f64, raw: Raw, s: &Spec, inverse: bool, sm_w: &mut [f64], sm_h: &mut [f64]) -> Local {
    let k_bins = s.bins;
    softmax(raw.w, sm_w);
    softmax(raw.h, sm_h);
    let two_b = 2.0 * s.bound;
    let scale_w = 1.0 - k_bins as f64 * s.min_w;
    let scale_h = 1.0 - k_bins as f64 * s.min_h;
    let (mut cx, mut cy) = (0.0, 0.0);
    let mut l = Local {
        k: 0,
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
            l.k = i;
            l.xk = lo_x;
            l.w = size_w * two_b;
            l.yk = lo_y;
            l.h = size_h * two_b;
        }
    }
    if l.k > 0 {
        l.d0 = s.min_d + softplus(raw.d[l.k - 1] + s.shift);
    }
    if l.k + 1 < k_bins {
        l.d1 = s.min_d + softplus(raw.d[l.k] + s.shift);
    }
    l
}

/// `ξ`: from `x` forward, the quadratic's stable root inverse.
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

/// The transformed entry and its log-derivative (of the direction computed).
fn entry(v: f64, raw: Raw, s: &Spec, inverse: bool, scratch: &mut [f64]) -> (f64, f64) {
    if v < -s.bound || v > s.bound {
        return (v, 0.0);
    }
    let (sm_w, sm_h) = scratch.split_at_mut(s.bins);
    let l = locate(v, raw, s, inverse, sm_w, sm_h);
    let xi = local_xi(v, &l, inverse);
    let sl = l.h / l.w;
    let beta = l.d1 + l.d0 - 2.0 * sl;
    let om = 1.0 - xi;
    let t = xi * om;
    let den = sl + beta * t;
    let num = l.d1 * xi * xi + 2.0 * sl * t + l.d0 * om * om;
    let logd = (sl * sl * num / (den * den)).ln();
    if inverse {
        (xi * l.w + l.xk, -logd)
    } else {
        (l.yk + l.h * (sl * xi * xi + l.d0 * t) / den, logd)
    }
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
    gw: &mut [f32],
    gh: &mut [f32],
    gd: &mut [f32],
) -> f64 {
    if v < -s.bound || v > s.bound {
        gw.fill(0.0);
        gh.fill(0.0);
        gd.fill(0.0);
        return g_out;
    }
    let (sm_w, sm_h) = scratch.split_at_mut(s.bins);
    let l = locate(v, raw, s, inverse, sm_w, sm_h);
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
    let upstream = |q: usize, below: f64, at: f64| match q.cmp(&l.k) {
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
        gw[q] = (sm_w[q] * (upstream(q, g_xk, g_w) * scale_w - dot_w)) as f32;
        gh[q] = (sm_h[q] * (upstream(q, g_yk, g_h) * scale_h - dot_h)) as f32;
    }
    // Interior derivative q is knot q + 1.
    for (q, g) in gd.iter_mut().enumerate() {
        let mut gq = 0.0;
        if q + 1 == l.k {
            gq += g_d0;
        }
        if q == l.k {
            gq += g_d1;
        }
        *g = (gq * softplus_grad(raw.d[q] + s.shift)) as f32;
    }
    g_in
}

/// The inputs as host values (in `f64`: a copy, which the kernel's `f64` arithmetic would
/// make entry by entry anyway): `v: [n, d]`, raw widths and heights `[m, d, K]`, raw
/// derivatives `[m, d, K − 1]`.
#[derive(Debug, Clone)]
struct Inputs {
    v: Vec<f64>,
    w: Vec<f64>,
    h: Vec<f64>,
    d: Vec<f64>,
    n: usize,
    dim: usize,
    /// Parameter rows `m ∈ {1, n}`.
    m: usize,
}

impl Inputs {
    fn new(v: TensorData, w: TensorData, h: TensorData, d: TensorData) -> Self {
        let (n, dim, m) = (v.shape[0], v.shape[1], w.shape[0]);
        let values = |t: TensorData| t.convert::<f64>().into_vec::<f64>().expect("float values");
        Self {
            v: values(v),
            w: values(w),
            h: values(h),
            d: values(d),
            n,
            dim,
            m,
        }
    }

    /// Entry `(i, j)`'s raw parameters.
    fn raw(&self, i: usize, j: usize, bins: usize) -> Raw<'_> {
        let p = if self.m == 1 { 0 } else { i };
        let e = p * self.dim + j;
        Raw {
            w: &self.w[e * bins..(e + 1) * bins],
            h: &self.h[e * bins..(e + 1) * bins],
            d: &self.d[e * (bins - 1)..(e + 1) * (bins - 1)],
        }
    }
}

/// The spline on every entry: `[n, d + 1]` values with each row's summed log-derivative
/// in the last column.
fn forward(x: &Inputs, s: &Spec, inverse: bool) -> Vec<f32> {
    let d = x.dim;
    let mut out = vec![0f32; x.n * (d + 1)];
    out.par_chunks_mut(ROWS_PER_TASK * (d + 1))
        .enumerate()
        .for_each(|(task, rows)| {
            let mut scratch = vec![0.0; 2 * s.bins];
            for (r, row) in rows.chunks_mut(d + 1).enumerate() {
                let i = task * ROWS_PER_TASK + r;
                let mut ladj = 0.0;
                for j in 0..d {
                    let (value, logd) = entry(
                        x.v[i * d + j] as f64,
                        x.raw(i, j, s.bins),
                        s,
                        inverse,
                        &mut scratch,
                    );
                    row[j] = value as f32;
                    ladj += logd;
                }
                row[d] = ladj as f32;
            }
        });
    out
}

/// Gradients of the inputs from the gradient `g: [n, d + 1]` of [`forward`]'s output.
fn backward(x: &Inputs, s: &Spec, inverse: bool, g: &[f32]) -> [Vec<f32>; 4] {
    let (d, k) = (x.dim, s.bins);
    let mut gv = vec![0f32; x.n * d];
    let mut gw = vec![0f32; x.n * d * k];
    let mut gh = vec![0f32; x.n * d * k];
    let mut gd = vec![0f32; x.n * d * (k - 1)];
    let per = ROWS_PER_TASK;
    gv.par_chunks_mut(per * d)
        .zip(gw.par_chunks_mut(per * d * k))
        .zip(gh.par_chunks_mut(per * d * k))
        .zip(gd.par_chunks_mut(per * d * (k - 1)))
        .enumerate()
        .for_each(|(task, (((gv, gw), gh), gd))| {
            let mut scratch = vec![0.0; 2 * k];
            for (r, gv) in gv.chunks_mut(d).enumerate() {
                let i = task * per + r;
                let g_log = g[i * (d + 1) + d] as f64;
                for j in 0..d {
                    let e = r * d + j;
                    gv[j] = entry_backward(
                        x.v[i * d + j],
                        x.raw(i, j, k),
                        s,
                        inverse,
                        (g[i * (d + 1) + j] as f64, g_log),
                        &mut scratch,
                        &mut gw[e * k..(e + 1) * k],
                        &mut gh[e * k..(e + 1) * k],
                        &mut gd[e * (k - 1)..(e + 1) * (k - 1)],
                    ) as f32;
                }
            }
        });
    if x.m == 1 && x.n > 1 {
        // Shared parameters: the sum of every row's gradient.
        let sum_rows = |per_row: Vec<f32>| {
            let width = per_row.len() / x.n;
            let mut total = vec![0f32; width];
            for row in per_row.chunks(width) {
                total.iter_mut().zip(row).for_each(|(t, g)| *t += g);
            }
            total
        };
        return [gv, sum_rows(gw), sum_rows(gh), sum_rows(gd)];
    }
    [gv, gw, gh, gd]
}

/// The spline's backward pass as an autodiff node.
#[derive(Debug)]
struct SplineNode;

type State = (Inputs, Spec, bool, [Vec<usize>; 4]);

impl<B: Backend> Backward<B, 4> for SplineNode {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (inputs, spec, inverse, shapes) = ops.state;
        let g = grads.consume::<B>(&ops.node);
        let g = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(g));
        let device = g.device();
        let g = g
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 gradient");
        let gradients = backward(&inputs, &spec, inverse, &g);
        for ((parent, values), shape) in ops.parents.into_iter().zip(gradients).zip(shapes) {
            if let Some(node) = parent {
                let t = B::float_from_data(TensorData::new(values, shape), &device);
                grads.register::<B>(node.id, t);
            }
        }
    }
}

/// The four tensors of one spline call.
type Args<B> = (Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>);

fn host_inputs<B: Backend>((v, w, h, d): Args<B>) -> Inputs {
    Inputs::new(v.into_data(), w.into_data(), h.into_data(), d.into_data())
}

/// Without autodiff: values `[n, d]` and ladj `[n]` straight from the host pass.
fn spline_inner<B: Backend>(
    args: Args<B>,
    spec: &RqSpline,
    inverse: bool,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let device = args.0.device();
    let x = host_inputs(args);
    let (n, d) = (x.n, x.dim);
    let out = forward(&x, &Spec::new(spec), inverse);
    let mut values = Vec::with_capacity(n * d);
    let mut ladj = Vec::with_capacity(n);
    for row in out.chunks(d + 1) {
        values.extend_from_slice(&row[..d]);
        ladj.push(row[d]);
    }
    (
        Tensor::from_data(TensorData::new(values, [n, d]), &device),
        Tensor::from_data(TensorData::new(ladj, [n]), &device),
    )
}

/// With autodiff: one graph node for the packed `[n, d + 1]` output, then split.
fn spline_autodiff<B: Backend>(
    (v, w, h, d): Args<Autodiff<B>>,
    spec: &RqSpline,
    inverse: bool,
) -> (Tensor<Autodiff<B>, 2>, Tensor<Autodiff<B>, 1>) {
    let device = v.device();
    let shapes = [
        v.dims().to_vec(),
        w.dims().to_vec(),
        h.dims().to_vec(),
        d.dims().to_vec(),
    ];
    let prim = |t: TensorPrimitive<Autodiff<B>>| t.tensor();
    let (v, w, h, d) = (
        prim(v.into_primitive()),
        prim(w.into_primitive()),
        prim(h.into_primitive()),
        prim(d.into_primitive()),
    );
    let nodes = [
        v.node.clone(),
        w.node.clone(),
        h.node.clone(),
        d.node.clone(),
    ];
    let inner =
        |t: FloatTensor<B>| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)).into_data();
    let inner3 =
        |t: FloatTensor<B>| Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(t)).into_data();
    let x = Inputs::new(
        inner(v.primitive),
        inner3(w.primitive),
        inner3(h.primitive),
        inner3(d.primitive),
    );
    let s = Spec::new(spec);
    let (n, dim) = (x.n, x.dim);
    let out = forward(&x, &s, inverse);
    let out = B::float_from_data(TensorData::new(out, [n, dim + 1]), &device);
    let packed = match SplineNode
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x, s, inverse, shapes), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    let packed = Tensor::<Autodiff<B>, 2>::from_primitive(TensorPrimitive::Float(packed));
    (
        packed.clone().narrow(1, 0, dim),
        packed.narrow(1, dim, 1).reshape([n]),
    )
}

/// The fused spline on `B` (forward, or inverse when `inverse`), or `None` when `B` is not
/// one of this module's CPU backends. Same contract as [`crate::rq_spline`].
pub fn rq_spline<B: Backend>(
    v: &Tensor<B, 2>,
    widths: &Tensor<B, 3>,
    heights: &Tensor<B, 3>,
    derivatives: &Tensor<B, 3>,
    spec: &RqSpline,
    inverse: bool,
) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
    fn on<B: Backend, C: Backend>(
        (v, w, h, d): (&Tensor<B, 2>, &Tensor<B, 3>, &Tensor<B, 3>, &Tensor<B, 3>),
        f: impl FnOnce(Args<C>) -> (Tensor<C, 2>, Tensor<C, 1>),
    ) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
        let args = (
            same_type::<_, Tensor<C, 2>>(v.clone())?,
            same_type::<_, Tensor<C, 3>>(w.clone())?,
            same_type::<_, Tensor<C, 3>>(h.clone())?,
            same_type::<_, Tensor<C, 3>>(d.clone())?,
        );
        let (y, ladj) = f(args);
        Some((same_type(y)?, same_type(ladj)?))
    }
    let inputs = (v, widths, heights, derivatives);
    #[cfg(feature = "flex")]
    {
        type F = burn::backend::Flex;
        if is::<B, F>() {
            return on::<B, F>(inputs, |a| spline_inner(a, spec, inverse));
        } else if is::<B, Autodiff<F>>() {
            return on::<B, Autodiff<F>>(inputs, |a| spline_autodiff(a, spec, inverse));
        }
    }
    #[cfg(feature = "ndarray")]
    {
        type N = burn::backend::NdArray;
        if is::<B, N>() {
            return on::<B, N>(inputs, |a| spline_inner(a, spec, inverse));
        } else if is::<B, Autodiff<N>>() {
            return on::<B, Autodiff<N>>(inputs, |a| spline_autodiff(a, spec, inverse));
        }
    }
    let _ = (inputs, spec, inverse);
    None
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use crate::{rq_spline_inverse_reference, rq_spline_reference};

    /// A deterministic stream of uniform values on (−1, 1) (xorshift64).
    fn uniforms(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    type B = Autodiff<burn::backend::NdArray>;

    fn values<C: Backend, const D: usize>(t: Tensor<C, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().into_vec().unwrap()
    }

    /// Values, ladj and every input's gradient of `Σ y·gy + Σ ladj·gl`.
    fn outputs(fused: bool, inverse: bool, args: &Args<B>, spec: &RqSpline) -> Vec<Vec<f64>> {
        let (v, w, h, d) = args.clone();
        let (v, w, h, d) = (
            v.require_grad(),
            w.require_grad(),
            h.require_grad(),
            d.require_grad(),
        );
        let inputs = (v.clone(), w.clone(), h.clone(), d.clone());
        let (y, l) = match (fused, inverse) {
            (true, _) => rq_spline(&inputs.0, &inputs.1, &inputs.2, &inputs.3, spec, inverse)
                .expect("ndarray has the CPU kernel"),
            (false, false) => rq_spline_reference(inputs.0, inputs.1, inputs.2, inputs.3, spec),
            (false, true) => {
                rq_spline_inverse_reference(inputs.0, inputs.1, inputs.2, inputs.3, spec)
            }
        };
        let [n, dim] = y.dims();
        let device = y.device();
        // Fixed, distinct upstream gradients (a function of the position only).
        let ramp = |count: usize, scale: f64, offset: f64| -> Vec<f32> {
            (0..count)
                .map(|i| (i as f64 * scale + offset) as f32)
                .collect()
        };
        let gy = Tensor::<B, 2>::from_data(
            TensorData::new(ramp(n * dim, 1.0 / (n * dim) as f64, -0.3), [n, dim]),
            &device,
        );
        let gl =
            Tensor::<B, 1>::from_data(TensorData::new(ramp(n, 1.0 / n as f64, 0.5), [n]), &device);
        let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
        vec![
            values(y),
            values(l),
            values(v.grad(&grads).unwrap()),
            values(w.grad(&grads).unwrap()),
            values(h.grad(&grads).unwrap()),
            values(d.grad(&grads).unwrap()),
        ]
    }

    /// Every gradient of the backward pass against central differences of the forward
    /// pass, both in `f64` (an independent check of the hand-written derivatives).
    #[test]
    fn backward_matches_central_differences() {
        let spec = Spec::new(&RqSpline::new(6, 2.5));
        let k = spec.bins;
        let mut uniform = uniforms(0x2545_F491_4F6C_DD1D);
        let mut scratch = vec![0.0; 2 * k];
        for inverse in [false, true] {
            for case in 0..40 {
                let mut p: Vec<f64> = (0..3 * k - 1).map(|_| uniform()).collect();
                let v = 2.4 * uniform();
                let (g_out, g_log) = (uniform(), uniform());
                let loss = |v: f64, p: &[f64], scratch: &mut [f64]| {
                    let raw = Raw {
                        w: &p[..k],
                        h: &p[k..2 * k],
                        d: &p[2 * k..],
                    };
                    let (y, l) = entry(v, raw, &spec, inverse, scratch);
                    g_out * y + g_log * l
                };
                let (mut gw, mut gh, mut gd) = (vec![0f32; k], vec![0f32; k], vec![0f32; k - 1]);
                let raw = Raw {
                    w: &p[..k],
                    h: &p[k..2 * k],
                    d: &p[2 * k..],
                };
                let gv = entry_backward(
                    v,
                    raw,
                    &spec,
                    inverse,
                    (g_out, g_log),
                    &mut scratch,
                    &mut gw,
                    &mut gh,
                    &mut gd,
                );
                let eps = 1e-6;
                let fd_v = (loss(v + eps, &p, &mut scratch) - loss(v - eps, &p, &mut scratch))
                    / (2.0 * eps);
                let mut analytic = vec![gv];
                let mut numeric = vec![fd_v];
                for (q, g) in gw.iter().chain(&gh).chain(&gd).enumerate() {
                    let at = p[q];
                    p[q] = at + eps;
                    let up = loss(v, &p, &mut scratch);
                    p[q] = at - eps;
                    let down = loss(v, &p, &mut scratch);
                    p[q] = at;
                    analytic.push(f64::from(*g));
                    numeric.push((up - down) / (2.0 * eps));
                }
                for (i, (a, b)) in analytic.iter().zip(&numeric).enumerate() {
                    // Parameter gradients are stored in f32.
                    let tol = 1e-6 * b.abs().max(1.0) + if i > 0 { 1e-6 * b.abs() } else { 0.0 };
                    assert!(
                        (a - b).abs() <= tol.max(2e-6),
                        "case {case}, inverse {inverse}, input {i}: backward {a}, differences {b}"
                    );
                }
            }
        }
    }

    /// The CPU kernel against the tensor-op reference: values, ladj and the gradients of
    /// all four inputs, forward and inverse, per-row and shared parameters, with entries
    /// in both tails and on the interval's ends.
    #[test]
    fn spline_matches_reference() {
        let device = Default::default();
        let spec = RqSpline::new(8, 3.0);
        let names = ["value", "ladj", "∂v", "∂widths", "∂heights", "∂derivatives"];
        for m in [1, 37] {
            for inverse in [false, true] {
                let n = 37;
                let mut uniform = uniforms(0x9E37_79B9_7F4A_7C15 + m as u64);
                let mut tensor = |shape: [usize; 3], scale: f64| {
                    let count = shape.iter().product();
                    let values: Vec<f32> = (0..count).map(|_| (scale * uniform()) as f32).collect();
                    Tensor::<B, 3>::from_data(TensorData::new(values, shape), &device)
                };
                let (w, h, d) = (
                    tensor([m, 5, 8], 1.2),
                    tensor([m, 5, 8], 1.2),
                    tensor([m, 5, 7], 1.2),
                );
                // Both tails, the interval's ends, and values spread over the interval.
                let mut x: Vec<f32> = tensor([n, 5, 1], 3.5).into_data().into_vec().unwrap();
                x[..4].copy_from_slice(&[-3.0, 3.0, 3.5, -7.0]);
                let args = (
                    Tensor::from_data(TensorData::new(x, [n, 5]), &device),
                    w,
                    h,
                    d,
                );
                let ours = outputs(true, inverse, &args, &spec);
                let reference = outputs(false, inverse, &args, &spec);
                for ((name, a), b) in names.iter().zip(&ours).zip(&reference) {
                    assert_eq!(a.len(), b.len(), "{name}");
                    let worst = a
                        .iter()
                        .zip(b)
                        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                        .fold(0.0, f64::max);
                    // Values to f32 rounding; gradients to the f32 reference's own
                    // rounding in its sums (measured: ≤ 5e-4; the backward's exactness is
                    // the central-difference test's job); a wrong term is off by O(1).
                    let tol = if name.starts_with('∂') { 2e-3 } else { 5e-5 };
                    assert!(
                        worst < tol,
                        "{name} (m = {m}, inverse = {inverse}): off by {worst:e}"
                    );
                }
            }
        }
    }
}
