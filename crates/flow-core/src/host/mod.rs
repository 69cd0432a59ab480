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
//! not a device transfer, only a copy into `f64`, which the arithmetic wants anyway.
//!
//! The math is [`crate::spline`]'s; the backward pass is that of the GPU kernel
//! (`crate::fused`, features `wgpu` / `cuda`), whose derivation its module docs give.
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

use crate::spline::RqSpline;

pub mod affine;
pub mod bernoulli;
mod math;
pub mod mlp;
mod op;

pub use affine::affine_params;
pub use bernoulli::bernoulli_log_likelihood;
pub use mlp::{MAX_LAYERS, relu_mlp, relu_mlp_masked};

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
        gw[q] = sm_w[q] * (upstream(q, g_xk, g_w) * scale_w - dot_w);
        gh[q] = sm_h[q] * (upstream(q, g_yk, g_h) * scale_h - dot_h);
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
        *g = gq * softplus_grad(raw.d[q] + s.shift);
    }
    g_in
}

/// A kernel's inputs as host values, each `[rows, cols]` (in `f64`: a copy, which the
/// kernels' `f64` arithmetic would make entry by entry anyway). The first is the input
/// transformed, the others its parameters.
#[derive(Debug, Clone)]
struct Host {
    data: Vec<Vec<f64>>,
    shapes: Vec<[usize; 2]>,
}

/// A float tensor's values. Only called for the host-resident backends of
/// [`op::apply`], where this is a read of host memory, not a device-to-host transfer.
fn values<B: Backend>(t: FloatTensor<B>) -> TensorData {
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)).into_data()
}

impl Host {
    fn new(args: op::Args) -> Self {
        let data = args
            .values
            .iter()
            .map(|v| v.iter().map(|&x| f64::from(x)).collect())
            .collect();
        Self {
            data,
            shapes: args.shapes,
        }
    }

    /// Rows `n` and columns `d` of the first input (the one transformed).
    fn size(&self) -> (usize, usize) {
        (self.shapes[0][0], self.shapes[0][1])
    }

    /// The parameter row of data row `i`: parameters are per row, or one row shared.
    fn param_row(&self, i: usize) -> usize {
        if self.shapes[1][0] == 1 { 0 } else { i }
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
            let mut scratch = vec![0.0; k.scratch()];
            for (r, row) in rows.chunks_mut(d + 1).enumerate() {
                let i = task * K::ROWS_PER_TASK + r;
                row[d] = k.row(x, i, &mut row[..d], &mut scratch) as f32;
            }
        });
    out
}

/// Gradients of the inputs from the gradient `g: [n, d + 1]` of [`forward`]'s output, each
/// in its input's shape (summed over rows for shared parameters).
fn backward<K: Kernel>(k: &K, x: &Host, g: &[f32]) -> Vec<Vec<f32>> {
    let (n, d) = x.size();
    // Row `i` of `all` holds the input's gradient, then each parameter's for that row.
    let widths: Vec<usize> = x
        .shapes
        .iter()
        .enumerate()
        .map(|(p, s)| if p == 0 { d } else { s[1] })
        .collect();
    let width: usize = widths.iter().sum();
    let mut all = vec![0f32; n * width];
    all.par_chunks_mut(K::ROWS_PER_TASK * width)
        .enumerate()
        .for_each(|(task, rows)| {
            let mut scratch = vec![0.0; k.scratch()];
            for (r, row) in rows.chunks_mut(width).enumerate() {
                let i = task * K::ROWS_PER_TASK + r;
                let (g_in, mut rest) = row.split_at_mut(d);
                let mut g_params: Vec<&mut [f32]> = Vec::with_capacity(widths.len() - 1);
                for &c in &widths[1..] {
                    let (head, tail) = rest.split_at_mut(c);
                    g_params.push(head);
                    rest = tail;
                }
                k.row_backward(
                    x,
                    i,
                    &g[i * (d + 1)..(i + 1) * (d + 1)],
                    g_in,
                    &mut g_params,
                    &mut scratch,
                );
            }
        });
    let shared = x.shapes[1][0] == 1 && n > 1;
    let mut offset = 0;
    widths
        .iter()
        .enumerate()
        .map(|(p, &c)| {
            let column = |row: &[f32]| row[offset..offset + c].to_vec();
            let out = if p > 0 && shared {
                // Shared parameters: the sum of every row's gradient.
                let mut total = vec![0f32; c];
                for row in all.chunks(width) {
                    total
                        .iter_mut()
                        .zip(&row[offset..offset + c])
                        .for_each(|(t, g)| *t += g);
                }
                total
            } else {
                all.chunks(width).flat_map(column).collect()
            };
            offset += c;
            out
        })
        .collect()
}

/// A row kernel as one of this module's operations: the packed output `[n, d + 1]`.
#[derive(Debug)]
struct Rows<K>(K);

impl<K: Kernel> op::HostOp for Rows<K> {
    type Saved = (K, Host);

    fn forward(&self, args: op::Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Self::Saved>) {
        let x = Host::new(args);
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
    Some((
        packed.clone().narrow(1, 0, d1 - 1),
        packed.narrow(1, d1 - 1, 1).reshape([n]),
    ))
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

impl Spline {
    /// Entry `(i, j)`'s raw parameters: slices of the inputs, or gathered into `buf`
    /// (`3K − 1` values) from the packed layout.
    fn raw<'a>(&self, x: &'a Host, i: usize, j: usize, buf: &'a mut [f64]) -> Raw<'a> {
        let (k, d) = (self.spec.bins, x.size().1);
        let p = x.param_row(i);
        match self.layout {
            Layout::Split => {
                let e = p * d + j;
                Raw {
                    w: &x.data[1][e * k..(e + 1) * k],
                    h: &x.data[2][e * k..(e + 1) * k],
                    d: &x.data[3][e * (k - 1)..(e + 1) * (k - 1)],
                }
            }
            Layout::Packed => {
                let row = &x.data[1][p * (3 * k - 1) * d..(p + 1) * (3 * k - 1) * d];
                let buf = &mut buf[..3 * k - 1];
                for (q, b) in buf.iter_mut().enumerate() {
                    *b = row[q * d + j];
                }
                let (w, rest) = buf.split_at(k);
                let (h, dr) = rest.split_at(k);
                Raw { w, h, d: dr }
            }
        }
    }
}

impl Kernel for Spline {
    const ROWS_PER_TASK: usize = 64;

    fn scratch(&self) -> usize {
        // Two softmaxes, one entry's gathered parameters, and their gradients.
        2 * self.spec.bins + 2 * (3 * self.spec.bins - 1)
    }

    fn row(&self, x: &Host, i: usize, out: &mut [f32], scratch: &mut [f64]) -> f64 {
        let d = out.len();
        let (softmaxes, buf) = scratch.split_at_mut(2 * self.spec.bins);
        let mut ladj = 0.0;
        for (j, o) in out.iter_mut().enumerate() {
            let v = x.data[0][i * d + j];
            let raw = self.raw(x, i, j, buf);
            let (value, logd) = entry(v, raw, &self.spec, self.inverse, softmaxes);
            *o = value as f32;
            ladj += logd;
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
        let g_log = f64::from(g[d]);
        let (softmaxes, rest) = scratch.split_at_mut(2 * k);
        // One entry's gathered parameters, and their gradients (widths, heights, derivatives).
        let (buf, one) = rest.split_at_mut(3 * k - 1);
        for j in 0..d {
            let raw = self.raw(x, i, j, buf);
            let (gw, rest) = one.split_at_mut(k);
            let (gh, gd) = rest.split_at_mut(k);
            g_in[j] = entry_backward(
                x.data[0][i * d + j],
                raw,
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
/// one of this module's CPU backends. Same contract as [`crate::rq_spline`].
pub fn rq_spline<B: Backend>(
    v: &Tensor<B, 2>,
    widths: &Tensor<B, 3>,
    heights: &Tensor<B, 3>,
    derivatives: &Tensor<B, 3>,
    spec: &RqSpline,
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

/// [`rq_spline`] on the parameters as a conditioner emits them, parameter-major
/// `[m, 3K − 1, d]` (widths, heights, interior derivatives; what
/// [`crate::Elementwise`] receives). Reading them in this layout skips the transposed
/// copies that splitting them into `[m, d, K]` tensors costs on the CPU backends.
pub fn rq_spline_params<B: Backend>(
    v: &Tensor<B, 2>,
    params: &Tensor<B, 3>,
    spec: &RqSpline,
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
    fn new(z: &[f64], u: &[f64], w: &[f64], b: f64) -> Self {
        let (mut wu, mut ww, mut wz) = (0.0, 0.0, 0.0);
        for ((&wk, &uk), &zk) in w.iter().zip(u).zip(z) {
            wu += wk * uk;
            ww += wk * wk;
            wz += wk * zk;
        }
        let c = (softplus(wu) - 1.0 - wu) / (ww + 1e-12);
        let wuh: f64 = w.iter().zip(u).map(|(&wk, &uk)| wk * (uk + c * wk)).sum();
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
    fn apply(&self, z: &mut [f64], u: &[f64], w: &[f64]) -> f64 {
        for ((zk, &uk), &wk) in z.iter_mut().zip(u).zip(w) {
            *zk += (uk + self.c * wk) * self.h;
        }
        (self.s.abs() + 1e-12).ln()
    }

    /// The gradients of the step taken at `z` from those of its output (`g`, `d` values)
    /// and of its log-determinant (`g_l`): `z`'s into `gz`, `u`'s and `w`'s into `gu`, `gw`;
    /// returns `b`'s.
    fn backward(
        &self,
        (z, u, w): (&[f64], &[f64], &[f64]),
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
            g_dot_uh += g[k] * (u[k] + self.c * w[k]);
            g_c += (g[k] * self.h + g_wuh * w[k]) * w[k];
        }
        let g_a = (g_dot_uh - 2.0 * self.h * self.wuh * g_s) * self.hp;
        let q = self.ww + 1e-12;
        let g_wu = g_c / q * (softplus_grad(self.wu) - 1.0);
        let g_ww = -g_c * self.c / q;
        for k in 0..z.len() {
            let uh = u[k] + self.c * w[k];
            let g_uh = g[k] * self.h + g_wuh * w[k];
            gz[k] = g[k] + g_a * w[k];
            gu[k] = (g_uh + g_wu * w[k]) as f32;
            gw[k] =
                (g_a * z[k] + g_wuh * uh + self.c * g_uh + g_wu * u[k] + 2.0 * g_ww * w[k]) as f32;
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
    fn params<'a>(&self, x: &'a Host, i: usize, k: usize) -> (&'a [f64], &'a [f64], f64) {
        let d = self.d;
        let row = &x.data[1][x.param_row(i) * x.shapes[1][1]..][k * (2 * d + 1)..];
        (&row[..d], &row[d..2 * d], row[2 * d])
    }

    /// `z_0 … z_K` of row `i` into `zs` (`(K + 1)·d` values), returning `Σ_k ln|det J_k|`.
    fn run(&self, x: &Host, i: usize, zs: &mut [f64]) -> f64 {
        let d = self.d;
        zs[..d].copy_from_slice(&x.data[0][i * d..(i + 1) * d]);
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
    use super::check::{assert_agree, values_of};
    use super::*;
    use crate::{
        planar_reference, planar_stack_reference, rq_spline_inverse_reference, rq_spline_reference,
    };

    type Args<B> = (Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>);

    /// A deterministic stream of uniform values on (−1, 1) (xorshift64).
    fn uniforms(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    type B = burn::backend::Autodiff<burn::backend::NdArray>;
    /// The spline references run in `f64`: in `f32` their autodiff sums cancelling terms
    /// (narrow bins), in an order that varies from run to run, and lands up to 3e-3 off
    /// (measured) where the kernel, `f64` inside, is within 3e-6 of the `f64` values.
    type B64 = burn::backend::Autodiff<burn::backend::NdArray<f64>>;

    /// The same values as an `f64` tensor.
    fn in_f64<const D: usize>(t: Tensor<B, D>) -> Tensor<B64, D> {
        let at = (&Default::default(), burn::tensor::DType::F64);
        Tensor::from_data(t.into_data().convert::<f64>(), at)
    }

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

    /// Spline tolerances against the `f64` reference: values and ladj to the kernel's `f32`
    /// outputs (measured ≤ 6e-8); gradients to the `f32` sum over the rows of shared
    /// parameters (measured ≤ 3e-6; the backward's exactness is the central-difference
    /// test's job). A wrong term is off by O(1).
    fn spline_tol(name: &str) -> f64 {
        if name.starts_with('∂') { 3e-5 } else { 1e-6 }
    }

    /// Values, ladj and every input's gradient of `Σ y·gy + Σ ladj·gl`.
    fn outputs<C: burn::tensor::backend::AutodiffBackend>(
        fused: bool,
        inverse: bool,
        args: &Args<C>,
        spec: &RqSpline,
    ) -> Vec<Vec<f64>> {
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
        let dtype = y.dtype();
        // Fixed, distinct upstream gradients (a function of the position only).
        let ramp = |count: usize, scale: f64, offset: f64| -> Vec<f32> {
            (0..count)
                .map(|i| (i as f64 * scale + offset) as f32)
                .collect()
        };
        let gy = Tensor::<C, 2>::from_data(
            TensorData::new(ramp(n * dim, 1.0 / (n * dim) as f64, -0.3), [n, dim]),
            (&device, dtype),
        );
        let gl = Tensor::<C, 1>::from_data(
            TensorData::new(ramp(n, 1.0 / n as f64, 0.5), [n]),
            (&device, dtype),
        );
        let grads = ((y.clone() * gy).sum() + (l.clone() * gl).sum()).backward();
        vec![
            values_of(y),
            values_of(l),
            values_of(v.grad(&grads).unwrap()),
            values_of(w.grad(&grads).unwrap()),
            values_of(h.grad(&grads).unwrap()),
            values_of(d.grad(&grads).unwrap()),
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
                let (mut gw, mut gh, mut gd) = (vec![0.0; k], vec![0.0; k], vec![0.0; k - 1]);
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
                    analytic.push(*g);
                    numeric.push((up - down) / (2.0 * eps));
                }
                for (i, (a, b)) in analytic.iter().zip(&numeric).enumerate() {
                    // Central differences at h = 1e-6 in f64: ~1e-9 truncation, ~1e-10
                    // rounding; gradients are f64 throughout.
                    let tol = 1e-6 * b.abs().max(1.0);
                    assert!(
                        (a - b).abs() <= tol,
                        "case {case}, inverse {inverse}, input {i}: backward {a}, differences {b}"
                    );
                }
            }
        }
    }

    /// Values, ladj and the gradients of `x` and of the packed parameters `[m, 3K − 1, d]` of
    /// `Σ y·weights + Σ ladj`: the kernel on the packed layout, or the reference on the
    /// parameters split into `[m, d, K]` tensors.
    fn packed_outputs<C: burn::tensor::backend::AutodiffBackend>(
        fused: bool,
        inverse: bool,
        [x, weights]: [&Tensor<C, 2>; 2],
        params: &Tensor<C, 3>,
        spec: &RqSpline,
    ) -> Vec<Vec<f64>> {
        let (x, params) = (x.clone().require_grad(), params.clone().require_grad());
        let k = spec.bins;
        let (y, l) = if fused {
            rq_spline_params(&x, &params, spec, inverse).expect("ndarray has the CPU kernel")
        } else {
            let per_dim = params.clone().swap_dims(1, 2);
            let (w, h, dr) = (
                per_dim.clone().narrow(2, 0, k),
                per_dim.clone().narrow(2, k, k),
                per_dim.narrow(2, 2 * k, k - 1),
            );
            if inverse {
                rq_spline_inverse_reference(x.clone(), w, h, dr, spec)
            } else {
                rq_spline_reference(x.clone(), w, h, dr, spec)
            }
        };
        let grads = ((y.clone() * weights.clone()).sum() + l.clone().sum()).backward();
        vec![
            values_of(y),
            values_of(l),
            values_of(x.grad(&grads).unwrap()),
            values_of(params.grad(&grads).unwrap()),
        ]
    }

    /// The packed layout (what `Elementwise` passes) against the `f64` reference on the same
    /// parameters split into `[m, d, K]` tensors: values, ladj, and the gradients of the
    /// input and of the packed parameter tensor.
    #[test]
    fn packed_layout_matches_reference() {
        let device = Default::default();
        let spec = RqSpline::new(5, 3.0);
        let (n, d, k) = (23, 3, 5);
        for m in [1, n] {
            for inverse in [false, true] {
                let mut uniform = uniforms(0xD1B5_4A32_D192_ED03 + m as u64);
                let mut values = |count: usize, scale: f64| -> Vec<f32> {
                    (0..count).map(|_| (scale * uniform()) as f32).collect()
                };
                let x =
                    Tensor::<B, 2>::from_data(TensorData::new(values(n * d, 3.5), [n, d]), &device);
                let params = Tensor::<B, 3>::from_data(
                    TensorData::new(values(m * (3 * k - 1) * d, 1.2), [m, 3 * k - 1, d]),
                    &device,
                );
                let weights =
                    Tensor::<B, 2>::from_data(TensorData::new(values(n * d, 1.0), [n, d]), &device);
                let ours = packed_outputs(true, inverse, [&x, &weights], &params, &spec);
                let (x, weights) = (in_f64(x), in_f64(weights));
                let reference =
                    packed_outputs(false, inverse, [&x, &weights], &in_f64(params), &spec);
                let case = format!("m = {m}, inverse = {inverse}");
                let names = ["value", "ladj", "∂v", "∂params"];
                assert_agree(&case, &names, &ours, &reference, spline_tol);
            }
        }
    }

    /// The CPU kernel against the tensor-op reference (in `f64`): values, ladj and the
    /// gradients of all four inputs, forward and inverse, per-row and shared parameters, with
    /// entries in both tails and on the interval's ends.
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
                let (v, w, h, d) = args;
                let args = (in_f64(v), in_f64(w), in_f64(h), in_f64(d));
                let reference = outputs(false, inverse, &args, &spec);
                let case = format!("m = {m}, inverse = {inverse}");
                assert_agree(&case, &names, &ours, &reference, spline_tol);
            }
        }
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
