//! The layer's `ladj` against a Jacobian from central differences in `f64`: a second
//! reference, independent of autodiff.
//!
//! A test binary of its own: burn 0.21 keys the default float type by device, and
//! `NdArray<f32>` and `NdArray<f64>` share the CPU device, so a process that made `f32`
//! tensors first would run these in `f32` (see `flow_core::testing::check_ladj_finite_diff`).

use burn::{
    backend::NdArray,
    tensor::{DType, Tensor, backend::Backend},
};
use custom_layer::{SinhArcsinhConfig, sinh_arcsinh::SinhArcsinh};
use flow_core::{Inverse, testing};

type B64 = NdArray<f64>;

fn inputs(rows: usize, dim: usize, scale: f64, seed: u64) -> Tensor<B64, 2> {
    let x = testing::standard_inputs::<B64>(rows, dim, seed, &Default::default());
    // In f32, h = 1e-5 would give a meaningless Jacobian: make sure this runs in f64.
    assert_eq!(x.dtype(), DType::F64);
    x.mul_scalar(scale)
}

fn layer(dim: usize, seed: u64) -> SinhArcsinh<B64> {
    let device = Default::default();
    B64::seed(&device, seed);
    testing::randomize(
        SinhArcsinhConfig::new(dim).init::<B64>(&device).unwrap(),
        0.5,
    )
}

#[test]
fn ladj_matches_central_differences() {
    for scale in [1.0, 20.0] {
        let layer = layer(3, 1);
        let x = inputs(10, 3, scale, 2);
        testing::check_ladj_finite_diff(&layer, x, None, 1e-5, 1e-7)
            .unwrap_or_else(|e| panic!("scale {scale}: {e}"));
    }
}

#[test]
fn inverse_ladj_matches_central_differences() {
    let inverse = Inverse::new(layer(3, 3));
    testing::check_ladj_finite_diff(&inverse, inputs(10, 3, 3.0, 4), None, 1e-5, 1e-7).unwrap();
}
