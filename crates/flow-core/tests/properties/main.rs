//! flow-core's `f32` property tests, on every backend CI runs, as one test binary: each
//! file is a module. One binary instead of three saves two links and two instantiations of
//! every backend's generic code in CI's build. (The `f64` tests, `in_f64/`, need a binary
//! of their own: see `in_f64/main.rs`; `fused/` keeps its own for its `f64` references.)

#[path = "../common/mod.rs"]
#[macro_use]
mod common;

mod distributions;
mod dropout;
mod flow;
mod harness_can_fail;
mod import;
mod layers;
mod store;
