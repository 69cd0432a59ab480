//! Launch geometry, output allocation, primitive access and the cube functions both
//! kernels use.

use burn::tensor::{Shape, Tensor, backend::Backend};
use burn_cubecl::{CubeRuntime, ops::numeric::empty_device_dtype, tensor::CubeTensor};
use cubecl::prelude::*;

/// One thread per unit of work, `per_cube` threads per cube.
pub(super) fn launch_1d(units: usize, per_cube: u32) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static((units as u32).div_ceil(per_cube).max(1), 1, 1),
        CubeDim::new_1d(per_cube),
    )
}

/// An uninitialised tensor of `shape` on `like`'s device, with its dtype.
pub(super) fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// The backend primitive of a float tensor.
pub(super) fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

/// softplus, linear above 20 (the switch point of [`crate::ops::softplus`]).
#[cube]
pub(super) fn softplus<F: Float>(x: F) -> F {
    let mut y = x;
    if x <= F::new(20.0) {
        y = F::log1p(F::exp(x));
    }
    y
}

/// The derivative of [`softplus`]: the logistic function, 1 above 20.
#[cube]
pub(super) fn softplus_grad<F: Float>(x: F) -> F {
    let mut g = F::new(1.0);
    if x <= F::new(20.0) {
        let e = F::exp(x);
        g = e / (F::new(1.0) + e);
    }
    g
}
