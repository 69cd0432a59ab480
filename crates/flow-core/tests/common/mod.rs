//! Backends the property tests run on, and a macro that instantiates a generic test on
//! each of them: ndarray always, wgpu with `--features wgpu` (in CI: Mesa's lavapipe).

#![allow(dead_code, unused_imports)]

pub use burn::backend::{Autodiff, NdArray};
pub use burn::tensor::{
    Tensor,
    backend::{AutodiffBackend, Backend},
};

/// CPU backend with autodiff, f32.
pub type NdAd = Autodiff<NdArray<f32>>;
/// CPU backend in f64, for central-difference Jacobians.
pub type Nd64 = NdArray<f64>;
/// GPU backend with autodiff, f32.
#[cfg(feature = "wgpu")]
pub type WgAd = Autodiff<burn::backend::Wgpu>;

/// f32 tolerance on ladj and round trips (relative, floor 1 near zero).
pub const TOL: f64 = 1e-4;

/// Reads a tensor back as `Vec<f64>` (test code only).
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

/// `on_backends! { name => generic_fn; ... }` makes `ndarray::name` and `wgpu::name` tests
/// calling `generic_fn::<Backend>(&device)`; the wgpu tests take
/// [`flow_core::testing::exclusive_device`] (burn 0.21 fusion is not safe across threads).
#[macro_export]
macro_rules! on_backends {
    ($($name:ident => $body:ident;)*) => {
        mod ndarray {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() { $body::<common::NdAd>(&Default::default()); } )*
        }
        #[cfg(feature = "wgpu")]
        mod wgpu {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() {
                let _gpu = flow_core::testing::exclusive_device();
                $body::<common::WgAd>(&Default::default());
            } )*
        }
    };
}

use burn::module::Module;
use flow_core::{Coupling, Invertible, Transform};

/// An affine coupling whose ladj has the wrong sign: every ladj check must reject it.
#[derive(Module, Debug)]
pub struct FlippedSign<B: Backend> {
    /// The honest layer.
    pub inner: Coupling<B>,
}

impl<B: Backend> Transform<B> for FlippedSign<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn forward(&self, x: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (y, l) = self.inner.forward(x, c);
        (y, l.neg())
    }
}

impl<B: Backend> Invertible<B> for FlippedSign<B> {
    fn inverse(&self, y: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (x, l) = self.inner.inverse(y, c);
        (x, l.neg())
    }
}
