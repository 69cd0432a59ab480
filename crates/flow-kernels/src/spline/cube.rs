//! The fused rational-quadratic spline: normalisation of the bin parameters, bin search,
//! forward or inverse, and the log-derivative in one kernel, one GPU thread per entry;
//! and a backward kernel for the gradients of the input and of the raw parameters. This
//! file launches them and registers the backward; the device code is in `kernels`.
//!
//! Math as in flow-core's `spline` module. Backward, per entry in bin `k` (`ξ, s, t = ξ(1 − ξ)`,
//! `D = s + βt`, `P = sξ² + δ_k t`, `N = δ_{k+1}ξ² + 2st + δ_k(1 − ξ)²`, `L = ln dy/dx`):
//! - forward (`y = y_k + hP/D`): the partials of `y` and `L` in `ξ, s, δ_k, δ_{k+1}, h, y_k`,
//!   then `ξ = (x − x_k)/w`;
//! - inverse: `ξ` solves `y_k + hP(ξ)/D(ξ) = y`, so (implicit function theorem) with
//!   `F_ξ = h(P_ξ D − P D_ξ)/D²`: `∂ξ/∂y = 1/F_ξ`, `∂ξ/∂θ = −(∂(hP/D)/∂θ)/F_ξ`; the outputs
//!   are `x = ξw + x_k` and `−L`;
//! - both: `s = h/w`; the bin's width is `w = 2B·size_k` and its left knot
//!   `x_k = −B + 2B Σ_{i<k} size_i` (heights likewise), so gradients go to the sizes, through `size = m + (1 − Km)·softmax(θ)` to the raw
//!   widths and heights, and through `δ = m_δ + softplus(θ + c)` to the raw derivatives.

use burn::{
    backend::Autodiff,
    tensor::{Shape, Tensor as BurnTensor, TensorPrimitive},
};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    tensor::CubeTensor,
};

use crate::cube::{FusedBackward, Inputs, empty_like, launch_1d, primitive, record, sum_over_rows};

use super::shape::Spline;

mod kernels;

use kernels::{ENTRIES_PER_CUBE, launch_args, spline_backward_kernel, spline_forward_kernel};

fn contiguous<R: CubeRuntime>(inputs: Inputs<R>) -> Inputs<R> {
    inputs.map(into_contiguous)
}

fn forward_inner<R: CubeRuntime>(inputs: Inputs<R>, spec: Spline, inverse: bool) -> CubeTensor<R> {
    let [v, w, h, d] = contiguous(inputs);
    let (n, dim) = (v.meta.shape()[0], v.meta.shape()[1]);
    let out = empty_like(&v, Shape::new([n, 2 * dim]));
    let (count, cube_dim) = launch_1d(n * dim, ENTRIES_PER_CUBE);
    let dtype = v.dtype;
    spline_forward_kernel::launch::<R>(
        &v.client.clone(),
        count,
        cube_dim,
        v.into_tensor_arg(),
        w.into_tensor_arg(),
        h.into_tensor_arg(),
        d.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        launch_args(&spec),
        inverse,
        dtype.into(),
    );
    out
}

fn backward_inner<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    state: State<R>,
    g: CubeTensor<R>,
) -> [CubeTensor<R>; 4] {
    let (inputs, spec, inverse) = state;
    let [v, w, h, d] = contiguous(inputs);
    let g = into_contiguous(g);
    let (n, dim) = (v.meta.shape()[0], v.meta.shape()[1]);
    let (m, nb) = (w.meta.shape()[0], w.meta.shape()[2]);
    let gv = empty_like(&v, Shape::new([n, dim]));
    let gw = empty_like(&v, Shape::new([n, dim, nb]));
    let gh = empty_like(&v, Shape::new([n, dim, nb]));
    let gd = empty_like(&v, Shape::new([n, dim, nb - 1]));
    let (count, cube_dim) = launch_1d(n * dim, ENTRIES_PER_CUBE);
    let dtype = v.dtype;
    spline_backward_kernel::launch::<R>(
        &v.client.clone(),
        count,
        cube_dim,
        v.into_tensor_arg(),
        w.into_tensor_arg(),
        h.into_tensor_arg(),
        d.into_tensor_arg(),
        g.into_tensor_arg(),
        gv.clone().into_tensor_arg(),
        gw.clone().into_tensor_arg(),
        gh.clone().into_tensor_arg(),
        gd.clone().into_tensor_arg(),
        launch_args(&spec),
        inverse,
        dtype.into(),
    );
    let sum_rows = |t| {
        if m == 1 && n > 1 {
            sum_over_rows::<R, F, I, BT, 3>(t)
        } else {
            t
        }
    };
    [gv, sum_rows(gw), sum_rows(gh), sum_rows(gd)]
}

/// What the backward pass needs: the inputs, the spline's shape and the direction.
type State<R> = (Inputs<R>, Spline, bool);

/// The inputs of one fused spline call on backend `B`.
pub(crate) type Args<B> = (
    BurnTensor<B, 2>,
    BurnTensor<B, 3>,
    BurnTensor<B, 3>,
    BurnTensor<B, 3>,
);

/// The fused spline on a CubeCL backend without autodiff: `[n, 2d]`, log-derivatives last.
pub(crate) fn forward_packed<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    (v, w, h, d): Args<CubeBackend<R, F, I, BT>>,
    spec: Spline,
    inverse: bool,
) -> BurnTensor<CubeBackend<R, F, I, BT>, 2> {
    let inputs = [primitive(v), primitive(w), primitive(h), primitive(d)];
    BurnTensor::from_primitive(TensorPrimitive::Float(forward_inner(inputs, spec, inverse)))
}

/// The spline's backward kernel as an autodiff node.
struct SplineGrad;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FusedBackward<R, F, I, BT>
    for SplineGrad
{
    type State = State<R>;

    fn gradients(state: State<R>, grad: CubeTensor<R>) -> [CubeTensor<R>; 4] {
        backward_inner::<R, F, I, BT>(state, grad)
    }
}

/// The fused spline with the fused backward registered: `[n, 2d]`, log-derivatives last.
pub(crate) fn forward_packed_autodiff<
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
>(
    (v, w, h, d): Args<Autodiff<CubeBackend<R, F, I, BT>>>,
    spec: Spline,
    inverse: bool,
) -> BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2> {
    let inputs = [primitive(v), primitive(w), primitive(h), primitive(d)];
    record::<R, F, I, BT, SplineGrad, 4>(
        inputs,
        |inputs| (inputs, spec, inverse),
        |inputs| forward_inner(inputs, spec, inverse),
    )
}

/// Splits the packed `[n, 2d]` output into `(values, Σ_j log-derivatives)`.
pub(crate) fn unpack<B: burn::tensor::backend::Backend>(
    packed: BurnTensor<B, 2>,
) -> (BurnTensor<B, 2>, BurnTensor<B, 1>) {
    let [n, d2] = packed.dims();
    let d = d2 / 2;
    let ladj = packed.clone().slice([0..n, d..d2]).sum_dim(1).reshape([n]);
    (packed.slice([0..n, 0..d]), ladj)
}

/// Whether `B` is one of the CubeCL backends with kernels (and the kernels are on).
pub(crate) fn has_body<B: burn::tensor::backend::Backend>() -> bool {
    use crate::backends::is;
    let mut yes = false;
    #[cfg(feature = "wgpu")]
    {
        use crate::backends::WgpuInner;
        yes |= is::<B, WgpuInner>() || is::<B, Autodiff<WgpuInner>>();
    }
    #[cfg(feature = "cuda")]
    {
        use crate::backends::CudaInner;
        yes |= is::<B, CudaInner>() || is::<B, Autodiff<CudaInner>>();
    }
    yes && crate::enabled()
}

/// The fused spline on `B` (forward, or inverse when `inverse`), or `None` when `B` is not
/// one of the CubeCL backends with kernels. Same contract as [`super::rq_spline`].
pub(crate) fn rq_spline<B: burn::tensor::backend::Backend>(
    v: &BurnTensor<B, 2>,
    widths: &BurnTensor<B, 3>,
    heights: &BurnTensor<B, 3>,
    derivatives: &BurnTensor<B, 3>,
    spec: &Spline,
    inverse: bool,
) -> Option<(BurnTensor<B, 2>, BurnTensor<B, 1>)> {
    use crate::backends::{is, same_type};
    use burn::tensor::backend::Backend;
    fn on<B: Backend, C: Backend>(
        (v, w, h, d): (
            &BurnTensor<B, 2>,
            &BurnTensor<B, 3>,
            &BurnTensor<B, 3>,
            &BurnTensor<B, 3>,
        ),
        f: impl FnOnce(Args<C>) -> BurnTensor<C, 2>,
    ) -> Option<(BurnTensor<B, 2>, BurnTensor<B, 1>)> {
        let args = (
            same_type::<_, BurnTensor<C, 2>>(v.clone())?,
            same_type::<_, BurnTensor<C, 3>>(w.clone())?,
            same_type::<_, BurnTensor<C, 3>>(h.clone())?,
            same_type::<_, BurnTensor<C, 3>>(d.clone())?,
        );
        let packed = same_type::<BurnTensor<C, 2>, BurnTensor<B, 2>>(f(args))?;
        Some(unpack(packed))
    }
    if !crate::enabled() {
        return None;
    }
    let inputs = (v, widths, heights, derivatives);
    let spec = *spec;
    #[cfg(feature = "wgpu")]
    {
        use crate::backends::WgpuInner;
        if is::<B, WgpuInner>() {
            return on::<B, WgpuInner>(inputs, |a| forward_packed(a, spec, inverse));
        } else if is::<B, Autodiff<WgpuInner>>() {
            return on::<B, Autodiff<WgpuInner>>(inputs, |a| {
                forward_packed_autodiff(a, spec, inverse)
            });
        }
    }
    #[cfg(feature = "cuda")]
    {
        use crate::backends::CudaInner;
        if is::<B, CudaInner>() {
            return on::<B, CudaInner>(inputs, |a| forward_packed(a, spec, inverse));
        } else if is::<B, Autodiff<CudaInner>>() {
            return on::<B, Autodiff<CudaInner>>(inputs, |a| {
                forward_packed_autodiff(a, spec, inverse)
            });
        }
    }
    let _ = (inputs, spec, inverse);
    None
}
