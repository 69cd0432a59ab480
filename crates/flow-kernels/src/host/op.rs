//! The plumbing every `f32` CPU kernel shares: inputs read from host memory
//! (in place where the backend allows), one output tensor, and the backward pass as one
//! autodiff node.

use std::{marker::PhantomData, sync::Arc};

use burn::{
    backend::{
        Autodiff,
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
    },
    tensor::{DType, Tensor, TensorData, TensorPrimitive, backend::Backend, ops::FloatTensor},
};

use crate::backends::{is, same_type};

/// A float tensor's values. Only called for the host-resident backends of
/// [`apply`], where this is a read of host memory, not a device-to-host transfer.
fn values<B: Backend>(t: FloatTensor<B>) -> TensorData {
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)).into_data()
}

/// An input's `f32` values on the host: the backend's own buffer where the tensor is
/// contiguous `f32` (no copy: weights stay shared with their module), else a copy.
#[derive(Debug)]
pub(crate) enum Values {
    Owned(Vec<f32>),
    #[cfg(feature = "flex")]
    Flex(burn_flex::FlexTensor),
    #[cfg(feature = "ndarray")]
    NdArray(burn_ndarray::NdArrayTensor),
}

impl Values {
    /// The values of `t`, and its element type.
    pub(crate) fn of<B: Backend>(t: FloatTensor<B>) -> (Self, DType) {
        #[cfg(feature = "flex")]
        if let Some(f) = same_type::<_, burn_flex::FlexTensor>(t.clone())
            && f.as_slice::<f32>().is_some()
        {
            return (Self::Flex(f), DType::F32);
        }
        #[cfg(feature = "ndarray")]
        if let Some(a) = same_type::<_, burn_ndarray::NdArrayTensor>(t.clone())
            && let burn_ndarray::NdArrayTensor::F32(s) = &a
            && s.view().to_slice().is_some()
        {
            return (Self::NdArray(a), DType::F32);
        }
        let data = values::<B>(t);
        let dtype = data.dtype;
        let v = data.convert::<f32>().into_vec::<f32>();
        (Self::Owned(v.expect("float values")), dtype)
    }
}

impl std::ops::Deref for Values {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Self::Owned(v) => v,
            #[cfg(feature = "flex")]
            Self::Flex(f) => f.as_slice().expect("contiguous f32, checked in `of`"),
            #[cfg(feature = "ndarray")]
            Self::NdArray(a) => match a {
                burn_ndarray::NdArrayTensor::F32(s) => s.view().to_slice(),
                _ => None,
            }
            .expect("standard-layout f32, checked in `of`"),
        }
    }
}

/// A kernel's inputs on the host, each `[rows, cols]`.
#[derive(Debug)]
pub(crate) struct Args {
    pub values: Vec<Values>,
    pub shapes: Vec<[usize; 2]>,
}

/// A fused CPU operation: `f32` inputs, one `[rows, cols]` output, and its backward pass.
pub(crate) trait HostOp: Send + Sync + std::fmt::Debug + 'static {
    /// What the backward pass needs.
    type Saved: Send + Sync + std::fmt::Debug + 'static;

    /// The output, its shape, and (when `keep`: autodiff tracks it) what the backward
    /// pass needs.
    fn forward(&self, args: Args, keep: bool) -> (Vec<f32>, [usize; 2], Option<Self::Saved>);

    /// From `g = ∂ℒ/∂output`, the gradient of every input `need` marks, in its shape
    /// (the others may be empty).
    fn backward(saved: &Self::Saved, g: &[f32], need: &[bool]) -> Vec<Vec<f32>>;
}

/// The inputs of `args` on the host, with their element types.
fn host<B: Backend>(args: Vec<(FloatTensor<B>, [usize; 2])>) -> (Args, Vec<DType>) {
    let shapes = args.iter().map(|(_, s)| *s).collect();
    let (values, dtypes) = args.into_iter().map(|(t, _)| Values::of::<B>(t)).unzip();
    (Args { values, shapes }, dtypes)
}

/// `values` of `shape` in element type `dtype` (ndarray picks a device's float type at run
/// time and refuses to mix them).
fn data(values: Vec<f32>, shape: [usize; 2], dtype: DType) -> TensorData {
    TensorData::new(values, shape.to_vec()).convert_dtype(dtype)
}

/// What an autodiff node keeps.
#[derive(Debug)]
struct State<S> {
    saved: S,
    shapes: Vec<[usize; 2]>,
    dtypes: Vec<DType>,
}

/// `O`'s backward pass as an autodiff node with `N` inputs.
#[derive(Debug)]
struct Node<O, const N: usize>(PhantomData<O>);

impl<B: Backend, O: HostOp, const N: usize> Backward<B, N> for Node<O, N> {
    type State = Arc<State<O::Saved>>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let g = grads.consume::<B>(&ops.node);
        let device = B::float_device(&g);
        let (g, _) = Values::of::<B>(g);
        let need: Vec<bool> = ops.parents.iter().map(Option::is_some).collect();
        let gradients = O::backward(&state.saved, &g, &need);
        for (p, (parent, values)) in ops.parents.iter().zip(gradients).enumerate() {
            if let Some(node) = parent {
                let t = data(values, state.shapes[p], state.dtypes[p]);
                grads.register::<B>(node.id, B::float_from_data(t, &device));
            }
        }
    }
}

/// `op` without autodiff.
fn plain<B: Backend, O: HostOp, const N: usize>(op: O, args: [Tensor<B, 2>; N]) -> Tensor<B, 2> {
    let device = args[0].device();
    let args = args.map(|t| {
        let shape = t.dims();
        (t.into_primitive().tensor(), shape)
    });
    let (args, dtypes) = host::<B>(args.into());
    let (values, shape, _) = op.forward(args, false);
    Tensor::from_data(data(values, shape, dtypes[0]), &device)
}

/// `op` as one autodiff node.
fn tracked<B: Backend, O: HostOp, const N: usize>(
    op: O,
    args: [Tensor<Autodiff<B>, 2>; N],
) -> Tensor<Autodiff<B>, 2> {
    let device = args[0].device();
    let shapes = args.each_ref().map(|t| t.dims());
    let prims = args.map(|t| t.into_primitive().tensor());
    let nodes = prims.each_ref().map(|t| t.node.clone());
    let inputs = prims.into_iter().zip(shapes).map(|(t, s)| (t.primitive, s));
    let (args, dtypes) = host::<B>(inputs.collect());
    let dtype = dtypes[0];
    let output = |values, shape| B::float_from_data(data(values, shape, dtype), &device);
    let out = match Node::<O, N>(PhantomData)
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (values, shape, saved) = op.forward(args, true);
            let state = State {
                saved: saved.expect("kept when asked"),
                shapes: shapes.to_vec(),
                dtypes,
            };
            prep.finish(Arc::new(state), output(values, shape))
        }
        OpsKind::UnTracked(prep) => {
            let (values, shape, _) = op.forward(args, false);
            prep.finish(output(values, shape))
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `f` on the arguments as tensors of `C`, when `B` is `C`.
fn on<B: Backend, C: Backend, const N: usize>(
    args: [Tensor<B, 2>; N],
    f: impl FnOnce([Tensor<C, 2>; N]) -> Tensor<C, 2>,
) -> Option<Tensor<B, 2>> {
    let cast: Vec<Tensor<C, 2>> = args.into_iter().map(same_type).collect::<Option<_>>()?;
    same_type(f(cast.try_into().ok()?))
}

/// Whether `B` is one of the CPU backends with kernels (`Flex`, `NdArray`, or `Autodiff` of
/// either).
pub(crate) fn has_body<B: Backend>() -> bool {
    let mut yes = false;
    #[cfg(feature = "flex")]
    {
        type F = burn::backend::Flex;
        yes |= is::<B, F>() || is::<B, Autodiff<F>>();
    }
    #[cfg(feature = "ndarray")]
    {
        type Nd = burn::backend::NdArray;
        yes |= is::<B, Nd>() || is::<B, Autodiff<Nd>>();
    }
    yes
}

/// `op` on `args` when `B` is one of the CPU backends with kernels and every argument is
/// `f32` (the kernels compute in `f32`: an `f64` tensor, which ndarray allows on its `f32`
/// backend, takes the reference, and says so once), else `None`.
pub(crate) fn apply<B: Backend, O: HostOp, const N: usize>(
    op: O,
    args: [Tensor<B, 2>; N],
) -> Option<Tensor<B, 2>> {
    if !crate::enabled() || !has_body::<B>() {
        return None;
    }
    if args.iter().any(|t| t.dtype() != DType::F32) {
        crate::fell_back(std::any::type_name::<O>(), "an input is not f32");
        return None;
    }
    #[cfg(feature = "flex")]
    {
        type F = burn::backend::Flex;
        if is::<B, F>() {
            return on::<B, F, N>(args, |a| plain(op, a));
        } else if is::<B, Autodiff<F>>() {
            return on::<B, Autodiff<F>, N>(args, |a| tracked(op, a));
        }
    }
    #[cfg(feature = "ndarray")]
    {
        type Nd = burn::backend::NdArray;
        if is::<B, Nd>() {
            return on::<B, Nd, N>(args, |a| plain(op, a));
        } else if is::<B, Autodiff<Nd>>() {
            return on::<B, Autodiff<Nd>, N>(args, |a| tracked(op, a));
        }
    }
    let _ = (op, args);
    None
}
