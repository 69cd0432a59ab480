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
/// GPU backend with autodiff, f32: burn's fused `Wgpu`, which runs the tensor-op references.
#[cfg(feature = "wgpu")]
pub type WgAd = Autodiff<burn::backend::Wgpu>;
/// GPU backend with autodiff, f32: burn's unfused `CubeBackend`, which runs the CubeCL
/// kernels.
#[cfg(feature = "wgpu")]
pub type WgKernelsAd = Autodiff<flow_kernels::backends::WgpuInner>;

/// f32 tolerance on ladj and round trips (relative, floor 1 near zero).
pub const TOL: f64 = 1e-4;

/// f32 tolerance for spline layers. The autodiff Jacobian, the reference here, is the
/// quotient rule applied to the spline's rational function, which cancels in f32 for steep
/// bins (seen: 1e-4 at moderate parameters, 3e-2 at steep ones), while the analytic
/// log-derivative is a sum of positive terms. `in_f64/finite_differences.rs` and
/// `in_f64/spline.rs` check the spline layers in f64 to 1e-7.
pub const SPLINE_TOL: f64 = 1e-3;

/// Reads a tensor back as `Vec<f64>` (test code only).
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

/// The seed every test gives its backend's random number generator: `FLOW_TEST_SEED`, or 0.
///
/// Fixed so that a failure reproduces; `FLOW_TEST_SEED=7 cargo test` sweeps other draws.
pub fn test_seed() -> u64 {
    std::env::var("FLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `∫ exp(log_density)` over `[lo, hi]²` by the midpoint rule on an `n × n` grid
/// (`log_density` takes the cell centres, `[n², 2]`, and returns one value per row).
pub fn grid_mass<B: Backend>(
    lo: f64,
    hi: f64,
    n: usize,
    device: &B::Device,
    log_density: impl Fn(Tensor<B, 2>) -> Vec<f64>,
) -> f64 {
    let h = (hi - lo) / n as f64;
    let centre = |i: usize| (lo + (i as f64 + 0.5) * h) as f32;
    let pts: Vec<f32> = (0..n * n)
        .flat_map(|k| [centre(k / n), centre(k % n)])
        .collect();
    let x = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(pts, [n * n, 2]), device);
    log_density(x).iter().map(|l| l.exp() * h * h).sum()
}

/// Seeds ndarray's random number generator (one per process, shared by `f32` and `f64`)
/// and holds it for the rest of the test: initialisations and `randomize` draw the same
/// numbers on every run however the test harness schedules its threads.
pub fn seeded_ndarray() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    NdArray::<f32>::seed(&Default::default(), test_seed());
    guard
}

/// `on_backends! { name => generic_fn; ... }` makes tests calling
/// `generic_fn::<Backend>(&device)`, each with its backend seeded by [`test_seed`]:
/// - `ndarray::name`, through the CPU kernels (`flow_core::kernels`);
/// - `ndarray_reference::name`, with the kernels off (the tensor-op references);
/// - `wgpu::name` (feature `wgpu`), on burn's fused `Wgpu`, which has no kernels of ours:
///   the references on the GPU.
///
/// The wgpu tests take [`flow_core::testing::gpu_test_device`] (burn 0.21 fusion is not
/// safe across threads), the ndarray tests [`seeded_ndarray`]. The CubeCL kernels' path is
/// [`on_gpu_kernels!`]'s.
#[macro_export]
macro_rules! on_backends {
    ($($name:ident => $body:ident;)*) => {
        mod ndarray {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() {
                let _rng = common::seeded_ndarray();
                $body::<common::NdAd>(&Default::default());
            } )*
        }
        mod ndarray_reference {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() {
                let _rng = common::seeded_ndarray();
                flow_core::kernels::with_reference(|| $body::<common::NdAd>(&Default::default()));
            } )*
        }
        #[cfg(feature = "wgpu")]
        mod wgpu {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() {
                let Some(_gpu) = flow_core::testing::gpu_test_device() else {
                    return;
                };
                let device = Default::default();
                <common::WgAd as common::Backend>::seed(&device, common::test_seed());
                $body::<common::WgAd>(&device);
            } )*
        }
    };
}

/// `on_gpu_kernels! { name => generic_fn; ... }` makes `wgpu_kernels::name` tests (feature
/// `wgpu`) on burn's unfused wgpu `CubeBackend`, where the layers with CubeCL kernels (planar,
/// spline) run them. Only for those layers: every other op runs the same references as on
/// `Wgpu`, and each test costs minutes of kernel compilation on lavapipe.
#[macro_export]
macro_rules! on_gpu_kernels {
    ($($name:ident => $body:ident;)*) => {
        #[cfg(feature = "wgpu")]
        mod wgpu_kernels {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() {
                let Some(_gpu) = flow_core::testing::gpu_test_device() else {
                    return;
                };
                let device = Default::default();
                <common::WgKernelsAd as common::Backend>::seed(&device, common::test_seed());
                $body::<common::WgKernelsAd>(&device);
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
