//! What the CubeCL bodies share (features `wgpu`, `cuda`): launch geometry, output
//! allocation, primitive access, the cube functions both kernels use, and the autodiff node
//! every fused kernel records.

use core::marker::PhantomData;

use burn::{
    backend::{
        Autodiff,
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
    },
    tensor::{Shape, Tensor, TensorPrimitive, backend::Backend, ops::FloatTensor},
};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    ops::numeric::empty_device_dtype, tensor::CubeTensor,
};
use cubecl::prelude::*;

/// One thread per unit of work, `per_cube` threads per cube.
pub(crate) fn launch_1d(units: usize, per_cube: u32) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static((units as u32).div_ceil(per_cube).max(1), 1, 1),
        CubeDim::new_1d(per_cube),
    )
}

/// An uninitialised tensor of `shape` on `like`'s device, with its dtype.
pub(crate) fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// The backend primitive of a float tensor.
pub(crate) fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

/// Splits a packed `[n, d + 1]` output into `(z', ladj)` (views, no copy).
pub(crate) fn unpack<B: Backend>(packed: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let [n, d1] = packed.dims();
    let d = d1 - 1;
    let ladj = packed.clone().slice([0..n, d..d1]).reshape([n]);
    (packed.slice([0..n, 0..d]), ladj)
}

/// [`crate::SOFTPLUS_LINEAR_ABOVE`] in the kernels' `f32`.
pub(crate) const SOFTPLUS_ABOVE: f32 = crate::SOFTPLUS_LINEAR_ABOVE as f32;

/// [`crate::PLANAR_EPS`] in the kernels' `f32`.
pub(crate) const PLANAR_EPS: f32 = crate::PLANAR_EPS as f32;

/// softplus, linear above [`SOFTPLUS_ABOVE`].
#[cube]
pub(crate) fn softplus<F: Float>(x: F) -> F {
    let mut y = x;
    if x <= F::new(SOFTPLUS_ABOVE) {
        y = F::log1p(F::exp(x));
    }
    y
}

/// The derivative of [`softplus`]: the logistic function, 1 above [`SOFTPLUS_ABOVE`].
#[cube]
pub(crate) fn softplus_grad<F: Float>(x: F) -> F {
    let mut g = F::new(1.0);
    if x <= F::new(SOFTPLUS_ABOVE) {
        let e = F::exp(x);
        g = e / (F::new(1.0) + e);
    }
    g
}

/// The `N` inner tensors a fused kernel reads.
pub(crate) type Inputs<R, const N: usize = 4> = [CubeTensor<R>; N];

/// The burn backend a fused kernel runs on.
type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// `t` summed over its first (row) dimension, keeping it (size 1): the gradient of a
/// parameter shared by every row from its per-row gradients.
pub(crate) fn sum_over_rows<
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    const D: usize,
>(
    t: CubeTensor<R>,
) -> CubeTensor<R> {
    primitive(Tensor::<Cube<R, F, I, BT>, D>::from_primitive(TensorPrimitive::Float(t)).sum_dim(0))
}

/// A fused kernel's backward pass: the gradients of its `N` inputs from the packed
/// output's gradient and the state its forward recorded.
pub(crate) trait FusedBackward<
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    const N: usize = 4,
>: 'static
{
    /// What the backward pass reads.
    type State: Clone + Send + core::fmt::Debug + 'static;
    /// `[∂L/∂input; N]`, in the inputs' order and shapes.
    fn gradients(state: Self::State, grad: CubeTensor<R>) -> [CubeTensor<R>; N];
}

/// The autodiff graph node of a fused kernel `K`.
struct Node<K>(PhantomData<fn() -> K>);

impl<K> core::fmt::Debug for Node<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::any::type_name::<K>())
    }
}

impl<R, F, I, BT, K, const N: usize> Backward<Cube<R, F, I, BT>, N> for Node<K>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    K: FusedBackward<R, F, I, BT, N>,
{
    type State = K::State;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cube<R, F, I, BT>>(&ops.node);
        for (parent, g) in ops.parents.into_iter().zip(K::gradients(ops.state, grad)) {
            if let Some(node) = parent {
                grads.register::<Cube<R, F, I, BT>>(node.id, g);
            }
        }
    }
}

/// An autodiff tensor's primitive on a fused backend.
type AutodiffPrimitive<R, F, I, BT> = FloatTensor<Autodiff<Cube<R, F, I, BT>>>;

/// Runs `forward` on the inner tensors of `inputs` and, when any input is tracked, records
/// one graph node whose backward is `K` with the state `state` builds from the inputs.
pub(crate) fn record<R, F, I, BT, K, const N: usize>(
    inputs: [AutodiffPrimitive<R, F, I, BT>; N],
    state: impl FnOnce(Inputs<R, N>) -> K::State,
    forward: impl FnOnce(Inputs<R, N>) -> CubeTensor<R>,
) -> Tensor<Autodiff<Cube<R, F, I, BT>>, 2>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    K: FusedBackward<R, F, I, BT, N>,
{
    let nodes = inputs.each_ref().map(|t| t.node.clone());
    let inputs = inputs.map(|t| t.primitive);
    let out = match Node::<K>(PhantomData)
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(inputs.clone());
            prep.finish(state(inputs), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(inputs)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
