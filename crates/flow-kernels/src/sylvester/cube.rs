//! The `K` Sylvester steps as one CubeCL kernel, one GPU thread per row, forward and
//! backward (the math of [`super`]'s CPU kernel, whose module docs have the backward
//! equations, in the backend's float type).
//!
//! Each thread keeps its row's intermediate values in its own row of a scratch tensor
//! ([`kernels::work_width`] values): the running `z` (backward: `z_0 … z_K`, recomputed from `z_0`),
//! `ζ`, `h`, `y`, `Q y`, the reflection chain and the backward's gradients. Parameter
//! gradients are written per row (`[n, K·P]`, and `[n, K·D·M]` for the columns of O-SNF)
//! and summed over the rows that share a parameter row afterwards (row `i` reads parameter
//! row `i mod r`).

use burn::{
    backend::Autodiff,
    tensor::{Shape, Tensor as BurnTensor, TensorPrimitive, backend::Backend},
};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    tensor::CubeTensor,
};

use super::basis::Basis;
use crate::cube::{FusedBackward, Inputs, empty_like, launch_1d, primitive, record, unpack};

mod kernels;

use kernels::{
    ROWS_PER_CUBE, StackArgsLaunch, sylvester_backward_kernel, sylvester_forward_kernel, work_width,
};

/// The most [`Stack::loop_ticks`] a software wgpu adapter gets the kernels for
/// ([`crate::backends::wgpu_software`]: its loop nests stop after 65,535 iterations);
/// beyond it the tensor-op reference runs there. Measured on lavapipe with T-SNF against
/// the reference: `d = 24, K = 16` (33,792) and `d = 32, K = 8` (26,624) right,
/// `d = 32, K = 16` (53,248) wrong. The budget sits below all three: `loop_ticks` is an
/// estimate, and H-SNF's and O-SNF's weights in it were not measured.
const SOFTWARE_LOOP_BUDGET: usize = 24_576;

/// What the kernels need besides the tensors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stack {
    steps: usize,
    basis: Basis,
}

impl Stack {
    /// `(M, P, H)` on `d` features: the columns of `Q`, `θ`'s columns per step, reflections.
    fn sizes(self, d: usize) -> (usize, usize, usize) {
        let h = match self.basis {
            Basis::Reflections(h) => h,
            _ => 0,
        };
        (self.basis.columns(d), self.basis.params_per_step(d), h)
    }

    /// The kernels' compile-time flags: `(columns, reflections)`.
    fn flags(self) -> (bool, bool) {
        (
            matches!(self.basis, Basis::Columns(_)),
            matches!(self.basis, Basis::Reflections(_)),
        )
    }

    /// The size of a thread's loop nest on `d` features (the backward's, the larger: per
    /// step, the recomputed step, the gradients through `R` and `R̃`, two passes through
    /// `Q`, and the loops over `d` and `M`), compared with [`SOFTWARE_LOOP_BUDGET`].
    fn loop_ticks(self, d: usize) -> usize {
        let (m, _, h) = self.sizes(d);
        let columns = usize::from(matches!(self.basis, Basis::Columns(_)));
        self.steps * (2 * m * m + 6 * d * m * columns + 8 * (h + 1) * d + 16 * (d + m))
    }

    fn args<R: CubeRuntime>(self, d: usize) -> StackArgsLaunch<R> {
        let (m, p, h) = self.sizes(d);
        let u = |v: usize| v as u32;
        StackArgsLaunch::new(u(self.steps), u(d), u(m), u(p), u(h))
    }
}

/// Forward kernel on contiguous copies of `[z, θ, q]`: `[n, d + 1]`, ladj last.
fn forward_inner<R: CubeRuntime>(inputs: Inputs<R, 3>, stack: Stack) -> CubeTensor<R> {
    let [z, theta, q] = inputs.map(into_contiguous);
    let (n, d) = (z.meta.shape()[0], z.meta.shape()[1]);
    let (m, _, h) = stack.sizes(d);
    let work = empty_like(&z, Shape::new([n, work_width(d, m, h, 1)]));
    let out = empty_like(&z, Shape::new([n, d + 1]));
    let (count, dim) = launch_1d(n, ROWS_PER_CUBE);
    let (columns, reflections) = stack.flags();
    let dtype = z.dtype;
    sylvester_forward_kernel::launch::<R>(
        &z.client.clone(),
        count,
        dim,
        z.into_tensor_arg(),
        theta.into_tensor_arg(),
        q.into_tensor_arg(),
        work.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        stack.args(d),
        columns,
        reflections,
        dtype.into(),
    );
    out
}

/// `t: [n, c]` (row `i` the gradient from row `i`) summed into `[rows, c]` (row `i` read
/// parameter row `i mod rows`).
fn fold_rows<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    t: CubeTensor<R>,
    rows: usize,
) -> CubeTensor<R> {
    let t = BurnTensor::<CubeBackend<R, F, I, BT>, 2>::from_primitive(TensorPrimitive::Float(t));
    let [n, c] = t.dims();
    if rows == n {
        return primitive(t);
    }
    primitive(t.reshape([n / rows, rows, c]).sum_dim(0).reshape([rows, c]))
}

/// What the backward reads: the inputs and the stack.
type State<R> = (Inputs<R, 3>, Stack);

/// Backward kernel: `[∂z, ∂θ, ∂q]` (`∂q` of the placeholder `q` unless the basis is
/// columns).
fn backward_inner<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    (inputs, stack): State<R>,
    g: CubeTensor<R>,
) -> [CubeTensor<R>; 3] {
    let [z, theta, q] = inputs.map(into_contiguous);
    let g = into_contiguous(g);
    let (n, d) = (z.meta.shape()[0], z.meta.shape()[1]);
    let [rows, cols] = [theta.meta.shape()[0], theta.meta.shape()[1]];
    let (m, _, h) = stack.sizes(d);
    let (columns, reflections) = stack.flags();
    let work = empty_like(&z, Shape::new([n, work_width(d, m, h, stack.steps + 1)]));
    let gz = empty_like(&z, Shape::new([n, d]));
    let gtheta = empty_like(&z, Shape::new([n, cols]));
    // The kernel writes `q`'s gradient only for columns; a buffer of its own otherwise (one
    // bound both read-only and writable in a dispatch is rejected by wgpu).
    let gq = empty_like(
        &z,
        Shape::new(if columns {
            [n, q.meta.shape()[1]]
        } else {
            [1, 1]
        }),
    );
    let (count, dim) = launch_1d(n, ROWS_PER_CUBE);
    let dtype = z.dtype;
    sylvester_backward_kernel::launch::<R>(
        &z.client.clone(),
        count,
        dim,
        z.into_tensor_arg(),
        theta.into_tensor_arg(),
        q.into_tensor_arg(),
        g.into_tensor_arg(),
        work.into_tensor_arg(),
        gz.clone().into_tensor_arg(),
        gtheta.clone().into_tensor_arg(),
        gq.clone().into_tensor_arg(),
        stack.args(d),
        columns,
        reflections,
        dtype.into(),
    );
    let gq = if columns {
        fold_rows::<R, F, I, BT>(gq, rows)
    } else {
        gq
    };
    [gz, fold_rows::<R, F, I, BT>(gtheta, rows), gq]
}

/// The fused forward on a CubeCL backend without autodiff: `[n, d + 1]`, ladj last.
fn forward_packed<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    [z, theta, q]: [BurnTensor<CubeBackend<R, F, I, BT>, 2>; 3],
    stack: Stack,
) -> BurnTensor<CubeBackend<R, F, I, BT>, 2> {
    let out = forward_inner([primitive(z), primitive(theta), primitive(q)], stack);
    BurnTensor::from_primitive(TensorPrimitive::Float(out))
}

/// The Sylvester stack's backward kernel as an autodiff node.
struct SylvesterGrad;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FusedBackward<R, F, I, BT, 3>
    for SylvesterGrad
{
    type State = State<R>;

    fn gradients(state: State<R>, grad: CubeTensor<R>) -> [CubeTensor<R>; 3] {
        backward_inner::<R, F, I, BT>(state, grad)
    }
}

/// A tensor of the autodiff CubeCL backend.
type TrainTensor<R, F, I, BT> = BurnTensor<Autodiff<CubeBackend<R, F, I, BT>>, 2>;

/// The fused forward with the fused backward registered: `[n, d + 1]`, ladj last.
fn forward_packed_autodiff<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    inputs: [TrainTensor<R, F, I, BT>; 3],
    stack: Stack,
) -> TrainTensor<R, F, I, BT> {
    record::<R, F, I, BT, SylvesterGrad, 3>(
        inputs.map(primitive),
        |inputs| (inputs, stack),
        |inputs| forward_inner(inputs, stack),
    )
}

/// The fused Sylvester steps on `B`, or `None` when `B` is not one of the CubeCL backends
/// with kernels. Same contract as [`super::sylvester_stack`], whose caller has checked the
/// shapes.
pub(crate) fn sylvester_stack<B: Backend>(
    z: &BurnTensor<B, 2>,
    theta: &BurnTensor<B, 2>,
    q: Option<&BurnTensor<B, 2>>,
    steps: usize,
    basis: Basis,
) -> Option<(BurnTensor<B, 2>, BurnTensor<B, 1>)> {
    use crate::backends::{is, same_type};
    type Run<C> = fn([BurnTensor<C, 2>; 3], Stack) -> BurnTensor<C, 2>;
    fn on<B: Backend, C: Backend>(
        inputs: [&BurnTensor<B, 2>; 3],
        stack: Stack,
        f: Run<C>,
    ) -> Option<(BurnTensor<B, 2>, BurnTensor<B, 1>)> {
        let cast =
            |t: &BurnTensor<B, 2>| same_type::<BurnTensor<B, 2>, BurnTensor<C, 2>>(t.clone());
        let [z, theta, q] = inputs;
        let packed = f([cast(z)?, cast(theta)?, cast(q)?], stack);
        Some(unpack(same_type::<BurnTensor<C, 2>, BurnTensor<B, 2>>(
            packed,
        )?))
    }
    if !crate::enabled() {
        return None;
    }
    let stack = Stack { steps, basis };
    // The kernels take a `q` for every basis; a placeholder (no gradient) when unused.
    let placeholder;
    let q = match q {
        Some(q) => q,
        None => {
            placeholder = BurnTensor::<B, 2>::zeros([1, 1], &z.device());
            &placeholder
        }
    };
    let inputs = [z, theta, q];
    #[cfg(feature = "wgpu")]
    {
        use crate::backends::{WgpuInner, wgpu_software};
        use burn::backend::wgpu::WgpuDevice;
        let on_wgpu = is::<B, WgpuInner>() || is::<B, Autodiff<WgpuInner>>();
        if on_wgpu
            && same_type::<_, WgpuDevice>(z.device()).is_some_and(|d| wgpu_software(&d))
            && stack.loop_ticks(z.dims()[1]) > SOFTWARE_LOOP_BUDGET
        {
            return None;
        }
        if is::<B, WgpuInner>() {
            return on::<B, WgpuInner>(inputs, stack, forward_packed);
        } else if is::<B, Autodiff<WgpuInner>>() {
            return on::<B, Autodiff<WgpuInner>>(inputs, stack, forward_packed_autodiff);
        }
    }
    #[cfg(feature = "cuda")]
    {
        use crate::backends::CudaInner;
        if is::<B, CudaInner>() {
            return on::<B, CudaInner>(inputs, stack, forward_packed);
        } else if is::<B, Autodiff<CudaInner>>() {
            return on::<B, Autodiff<CudaInner>>(inputs, stack, forward_packed_autodiff);
        }
    }
    let _ = (inputs, stack);
    None
}
