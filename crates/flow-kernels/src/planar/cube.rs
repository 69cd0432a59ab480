//! The fused planar step: forward and backward kernels, and their autodiff registration.
//!
//! Math as in flow-core's `planar` module; per row `i` (parameter row `p = i` when `m = n`, `p = 0`
//! when shared):
//! ```text
//! wu = wᵀu, ww = wᵀw, c = (softplus(wu) − 1 − wu) / (ww + ε_w), û = u + c·w,
//! wû = wᵀû, a = wᵀz + b, h = tanh a, h' = 1 − h², s = 1 + h'·wû,
//! z' = z + û·h, ladj = ln(|s| + ε_l).
//! ```
//! Backward, from `ḡ = ∂L/∂z'` and `ḡ_l = ∂L/∂ladj` (reverse order of the lines above):
//! ```text
//! ḡ_s = ḡ_l·sign(s)/(|s| + ε_l), ḡ_wû = ḡ_s·h',
//! ḡ_h = ḡᵀû − 2h·wû·ḡ_s, ḡ_a = ḡ_h·h',
//! ḡ_û = ḡ·h + ḡ_wû·w, ḡ_c = ḡ_ûᵀw,
//! ḡ_wu = −ḡ_c/(ww + ε_w) + ḡ_c/(ww + ε_w)·σ(wu), ḡ_ww = −ḡ_c·c/(ww + ε_w),
//! ∂L/∂z = ḡ + ḡ_a·w, ∂L/∂b = ḡ_a,
//! ∂L/∂u = ḡ_û + ḡ_wu·w,
//! ∂L/∂w = ḡ_a·z + ḡ_wû·û + c·ḡ_û + ḡ_wu·u + 2ḡ_ww·w.
//! ```
//! (`σ` is softplus' derivative; softplus is linear above [`crate::SOFTPLUS_LINEAR_ABOVE`].)
//! Parameter gradients are written per row and summed over rows when `m = 1`.

use burn::{
    backend::Autodiff,
    tensor::{Shape, Tensor as BurnTensor, TensorPrimitive, backend::Backend},
};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    tensor::CubeTensor,
};
use cubecl::prelude::*;

use crate::cube::{
    FusedBackward, Inputs, PLANAR_EPS, empty_like, launch_1d, primitive, record, softplus,
    softplus_grad, sum_over_rows, unpack,
};

/// Rows per cube (one thread per row).
const ROWS_PER_CUBE: u32 = 64;

/// Per-row quantities shared by forward and backward.
#[derive(CubeType)]
struct Row<F: Float> {
    wu: F,
    ww: F,
    c: F,
    wuh: F,
    h: F,
    hp: F,
    s: F,
}

#[cube]
fn row_terms<F: Float>(
    z: &Tensor<F>,
    u: &Tensor<F>,
    w: &Tensor<F>,
    b: &Tensor<F>,
    zb: usize,
    p: usize,
    d: usize,
) -> Row<F> {
    let pb = p * d;
    let mut wu = F::new(0.0);
    let mut ww = F::new(0.0);
    let mut wz = F::new(0.0);
    for k in 0..d {
        let wk = w[pb + k];
        wu += wk * u[pb + k];
        ww += wk * wk;
        wz += wk * z[zb + k];
    }
    let c = (softplus::<F>(wu) - F::new(1.0) - wu) / (ww + F::new(PLANAR_EPS));
    let mut wuh = F::new(0.0);
    for k in 0..d {
        let wk = w[pb + k];
        wuh += wk * (u[pb + k] + c * wk);
    }
    let h = F::tanh(wz + b[p]);
    let hp = F::new(1.0) - h * h;
    let s = F::new(1.0) + hp * wuh;
    Row::<F> {
        wu,
        ww,
        c,
        wuh,
        h,
        hp,
        s,
    }
}

/// `out[i, ..d] = z'`, `out[i, d] = ladj`.
#[cube(launch)]
fn planar_forward_kernel<F: Float>(
    z: &Tensor<F>,
    u: &Tensor<F>,
    w: &Tensor<F>,
    b: &Tensor<F>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let n = z.shape(0);
    let d = z.shape(1);
    let i = ABSOLUTE_POS;
    if i >= n {
        terminate!();
    }
    let p = i * (u.shape(0) / n);
    let r = row_terms::<F>(z, u, w, b, i * d, p, d);
    let ob = i * (d + 1);
    for k in 0..d {
        out[ob + k] = z[i * d + k] + (u[p * d + k] + r.c * w[p * d + k]) * r.h;
    }
    out[ob + d] = F::ln(F::abs(r.s) + F::new(PLANAR_EPS));
}

/// Gradients of `z`, and per-row gradients of `u`, `w`, `b`, from the packed output's.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn planar_backward_kernel<F: Float>(
    z: &Tensor<F>,
    u: &Tensor<F>,
    w: &Tensor<F>,
    b: &Tensor<F>,
    g: &Tensor<F>,
    gz: &mut Tensor<F>,
    gu: &mut Tensor<F>,
    gw: &mut Tensor<F>,
    gb: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let n = z.shape(0);
    let d = z.shape(1);
    let i = ABSOLUTE_POS;
    if i >= n {
        terminate!();
    }
    let p = i * (u.shape(0) / n);
    let (zb, pb, gbase) = (i * d, p * d, i * (d + 1));
    let r = row_terms::<F>(z, u, w, b, zb, p, d);
    let mut sign = F::new(1.0);
    if r.s < F::new(0.0) {
        sign = F::new(-1.0);
    }
    if r.s == F::new(0.0) {
        sign = F::new(0.0);
    }
    let g_s = g[gbase + d] * sign / (F::abs(r.s) + F::new(PLANAR_EPS));
    let g_wuh = g_s * r.hp;
    // Σ ḡ·û and Σ ḡ_û·w.
    let mut g_dot_uh = F::new(0.0);
    let mut g_c = F::new(0.0);
    for k in 0..d {
        let wk = w[pb + k];
        let uh = u[pb + k] + r.c * wk;
        let gk = g[gbase + k];
        g_dot_uh += gk * uh;
        g_c += (gk * r.h + g_wuh * wk) * wk;
    }
    let g_a = (g_dot_uh - F::new(2.0) * r.h * r.wuh * g_s) * r.hp;
    let q = r.ww + F::new(PLANAR_EPS);
    let g_wu = g_c / q * (softplus_grad::<F>(r.wu) - F::new(1.0));
    let g_ww = -g_c * r.c / q;
    for k in 0..d {
        let wk = w[pb + k];
        let uk = u[pb + k];
        let uh = uk + r.c * wk;
        let gk = g[gbase + k];
        let g_uh = gk * r.h + g_wuh * wk;
        gz[zb + k] = gk + g_a * wk;
        gu[zb + k] = g_uh + g_wu * wk;
        gw[zb + k] =
            g_a * z[zb + k] + g_wuh * uh + r.c * g_uh + g_wu * uk + F::new(2.0) * g_ww * wk;
    }
    gb[i] = g_a;
}

/// Forward kernel on contiguous copies of the inputs: `[n, d + 1]`.
fn forward_inner<R: CubeRuntime>(
    z: CubeTensor<R>,
    u: CubeTensor<R>,
    w: CubeTensor<R>,
    b: CubeTensor<R>,
) -> CubeTensor<R> {
    let (z, u, w, b) = (
        into_contiguous(z),
        into_contiguous(u),
        into_contiguous(w),
        into_contiguous(b),
    );
    let (n, d) = (z.meta.shape()[0], z.meta.shape()[1]);
    let out = empty_like(&z, Shape::new([n, d + 1]));
    let (count, dim) = launch_1d(n, ROWS_PER_CUBE);
    let dtype = z.dtype;
    planar_forward_kernel::launch::<R>(
        &z.client.clone(),
        count,
        dim,
        z.into_tensor_arg(),
        u.into_tensor_arg(),
        w.into_tensor_arg(),
        b.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dtype.into(),
    );
    out
}

/// Backward kernel: `(∂z, ∂u, ∂w, ∂b)` with the parameters' gradients summed over rows
/// when they are shared (`m = 1 < n`).
fn backward_inner<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    [z, u, w, b]: Inputs<R>,
    g: CubeTensor<R>,
) -> [CubeTensor<R>; 4] {
    let (z, u, w, b, g) = (
        into_contiguous(z),
        into_contiguous(u),
        into_contiguous(w),
        into_contiguous(b),
        into_contiguous(g),
    );
    let (n, d) = (z.meta.shape()[0], z.meta.shape()[1]);
    let shared = u.meta.shape()[0] != n;
    let (gz, gu, gw, gb) = (
        empty_like(&z, Shape::new([n, d])),
        empty_like(&z, Shape::new([n, d])),
        empty_like(&z, Shape::new([n, d])),
        empty_like(&z, Shape::new([n, 1])),
    );
    let (count, dim) = launch_1d(n, ROWS_PER_CUBE);
    let dtype = z.dtype;
    planar_backward_kernel::launch::<R>(
        &z.client.clone(),
        count,
        dim,
        z.into_tensor_arg(),
        u.into_tensor_arg(),
        w.into_tensor_arg(),
        b.into_tensor_arg(),
        g.into_tensor_arg(),
        gz.clone().into_tensor_arg(),
        gu.clone().into_tensor_arg(),
        gw.clone().into_tensor_arg(),
        gb.clone().into_tensor_arg(),
        dtype.into(),
    );
    let sum_rows = |t| {
        if shared {
            sum_over_rows::<R, F, I, BT, 2>(t)
        } else {
            t
        }
    };
    [gz, sum_rows(gu), sum_rows(gw), sum_rows(gb)]
}

/// The fused forward on a CubeCL backend without autodiff: `[n, d + 1]`, ladj last.
pub(crate) fn forward_packed<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    z: BurnTensor<CubeBackend<R, F, I, BT>, 2>,
    u: BurnTensor<CubeBackend<R, F, I, BT>, 2>,
    w: BurnTensor<CubeBackend<R, F, I, BT>, 2>,
    b: BurnTensor<CubeBackend<R, F, I, BT>, 2>,
) -> BurnTensor<CubeBackend<R, F, I, BT>, 2> {
    let out = forward_inner(primitive(z), primitive(u), primitive(w), primitive(b));
    BurnTensor::from_primitive(TensorPrimitive::Float(out))
}

/// The planar step's backward kernel as an autodiff node.
struct PlanarGrad;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FusedBackward<R, F, I, BT>
    for PlanarGrad
{
    type State = Inputs<R>;

    fn gradients(state: Inputs<R>, grad: CubeTensor<R>) -> [CubeTensor<R>; 4] {
        backward_inner::<R, F, I, BT>(state, grad)
    }
}

/// The fused forward with the fused backward registered: `[n, d + 1]`, ladj last.
pub(crate) fn forward_packed_autodiff<
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
>(
    z: BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2>,
    u: BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2>,
    w: BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2>,
    b: BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2>,
) -> BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2> {
    let inputs = [primitive(z), primitive(u), primitive(w), primitive(b)];
    record::<R, F, I, BT, PlanarGrad, 4>(inputs, |s| s, |[z, u, w, b]| forward_inner(z, u, w, b))
}

/// The fused planar step on `B`, or `None` when `B` is not one of the CubeCL backends with
/// kernels. Same contract as [`super::planar`].
pub(crate) fn planar<B: Backend>(
    z: &BurnTensor<B, 2>,
    u: &BurnTensor<B, 2>,
    w: &BurnTensor<B, 2>,
    b: &BurnTensor<B, 2>,
) -> Option<(BurnTensor<B, 2>, BurnTensor<B, 1>)> {
    use crate::backends::{is, same_type};
    type Step<C> = fn(
        BurnTensor<C, 2>,
        BurnTensor<C, 2>,
        BurnTensor<C, 2>,
        BurnTensor<C, 2>,
    ) -> BurnTensor<C, 2>;
    fn on<B: Backend, C: Backend>(
        (z, u, w, b): (
            &BurnTensor<B, 2>,
            &BurnTensor<B, 2>,
            &BurnTensor<B, 2>,
            &BurnTensor<B, 2>,
        ),
        f: Step<C>,
    ) -> Option<(BurnTensor<B, 2>, BurnTensor<B, 1>)> {
        let cast =
            |t: &BurnTensor<B, 2>| same_type::<BurnTensor<B, 2>, BurnTensor<C, 2>>(t.clone());
        let packed = f(cast(z)?, cast(u)?, cast(w)?, cast(b)?);
        Some(unpack(same_type::<BurnTensor<C, 2>, BurnTensor<B, 2>>(
            packed,
        )?))
    }
    if !crate::enabled() {
        return None;
    }
    let inputs = (z, u, w, b);
    #[cfg(feature = "wgpu")]
    {
        use crate::backends::WgpuInner;
        if is::<B, WgpuInner>() {
            return on::<B, WgpuInner>(inputs, forward_packed);
        } else if is::<B, Autodiff<WgpuInner>>() {
            return on::<B, Autodiff<WgpuInner>>(inputs, forward_packed_autodiff);
        }
    }
    #[cfg(feature = "cuda")]
    {
        use crate::backends::CudaInner;
        if is::<B, CudaInner>() {
            return on::<B, CudaInner>(inputs, forward_packed);
        } else if is::<B, Autodiff<CudaInner>>() {
            return on::<B, Autodiff<CudaInner>>(inputs, forward_packed_autodiff);
        }
    }
    let _ = inputs;
    None
}
