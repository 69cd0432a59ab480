//! flow-core's `f64` tests, as one test binary: each file is a module.
//!
//! A binary of their own on purpose: burn 0.21 keys a device's default float dtype by
//! device, and `NdArray<f32>` and `NdArray<f64>` share the CPU device, so `f64` tensors
//! created in a process that already made `f32` ones silently hold `f32` data. Nothing in
//! this binary creates `f32` ndarray tensors.

#[path = "../common/mod.rs"]
mod common;

mod finite_differences;
mod spline;
mod sylvester_dense;
