//! # flow-kernels
//!
//! The fast paths of flow-core's ops: fused CPU kernels over host memory (features `cpu`,
//! through `ndarray` and `flex`) and CubeCL GPU kernels (feature `cubecl`, through `wgpu` and
//! `cuda`), each registered with burn's autodiff with a hand-written backward pass.
//!
//! flow-core holds the math: every op has a tensor-op reference there (`flow_core::reference`)
//! that runs on any backend. Each op here is a function that returns `Some` when it has a
//! body for the backend `B` and the arguments (shapes, element type, finite parameters where
//! the kernel needs them) and `None` otherwise, so that the caller runs the reference:
//!
//! ```text
//! kernels::rq_spline(..).unwrap_or_else(|| rq_spline_reference(..))
//! ```
//!
//! The library stays generic over `B: Backend`: an op compares `B` with the backends that
//! have a body (a `TypeId` test, resolved per monomorphisation) and moves the tensors to that
//! concrete type without copying ([`backends`]).
//!
//! Ops, one module each, the CPU and CubeCL bodies side by side:
//! - [`mlp`]: a ReLU network of any depth, forward and backward, optionally with fixed
//!   weight masks (MADE);
//! - [`planar`]: `K` planar steps with their log-determinants;
//! - [`sylvester`]: `K` Sylvester steps (orthonormal, Householder or triangular `Q`) with
//!   their log-determinants;
//! - [`spline`]: the rational-quadratic spline, forward and inverse;
//! - [`affine`]: the soft-clamped affine map of couplings and autoregressive layers;
//! - [`bernoulli`]: the Bernoulli log-likelihood of logits;
//! - [`adam`]: Adam with one fused pass per parameter tensor;
//! - [`workers`]: rayon's threads kept polling between the kernels' parallel regions.
//!
//! A switch turns every op off ([`set_enabled`], [`with_reference`], or `FLOW_KERNELS=off` in
//! the environment), so that tests run the reference path on backends that have kernels too
//! ([`adam`] then runs burn's Adam). When a CPU body must decline for a backend it serves (an
//! input that is not `f32`), or the network kernel takes its products instead of the kinks
//! (non-finite parameters), it says so once per op and reason through `tracing`.

#![warn(missing_docs)]

use std::{
    cell::Cell,
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicU8, Ordering},
    },
};

pub mod adam;
pub mod affine;
pub mod backends;
pub mod bernoulli;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "cpu")]
mod host;
pub mod mlp;
pub mod planar;
pub mod spline;
pub mod sylvester;
pub mod workers;

/// Above this, `softplus(x) = x` to f32 and f64 precision (`ln(1 + e^{−20}) < 3·10⁻⁹`): the
/// threshold every softplus of the kernels and of flow-core's references uses.
pub const SOFTPLUS_LINEAR_ABOVE: f64 = 20.0;

/// Added to a planar step's `|1 + h'·wᵀû|` (and a Sylvester step's `|1 + Rᵢᵢ R̃ᵢᵢ h'ᵢ|`)
/// before its logarithm, and to `‖w‖²` before the division in the constraint on `û`: the
/// same constant in the kernels and the references.
pub const PLANAR_EPS: f64 = 1e-12;

/// A Householder vector with `‖v‖²` below this reflects nothing (the identity), in the
/// kernels and the references alike: `2/‖v‖²` would overflow in `f32`.
pub const HOUSEHOLDER_MIN_SQ_NORM: f64 = 1e-30;

/// Unset, on, off (the process-wide state of the switch).
static ENABLED: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// Set while this thread runs [`with_reference`].
    static REFERENCE_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the ops may run their kernels on this thread: [`set_enabled`]'s last word, else
/// the environment variable `FLOW_KERNELS` (`off`, `0` or `reference` turn the kernels off),
/// and never inside [`with_reference`].
pub fn enabled() -> bool {
    if REFERENCE_HERE.with(Cell::get) {
        return false;
    }
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var("FLOW_KERNELS")
                .is_ok_and(|v| matches!(v.trim(), "off" | "0" | "reference"));
            ENABLED.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Turns the kernels on or off for the whole process (off: every op returns `None`, and
/// flow-core runs its tensor-op references).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Runs `f` with the kernels off on this thread (what the tests use to check the reference
/// path on a backend that has kernels, while other tests run in parallel).
///
/// ```
/// let on = flow_kernels::with_reference(flow_kernels::enabled);
/// assert!(!on);
/// ```
pub fn with_reference<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REFERENCE_HERE.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(REFERENCE_HERE.with(|r| r.replace(true)));
    f()
}

/// `f`, to run on another thread with this thread's [`with_reference`] switch.
pub(crate) fn carrying_switch<R>(f: impl FnOnce() -> R + Send) -> impl FnOnce() -> R + Send {
    let reference = REFERENCE_HERE.with(Cell::get);
    move || if reference { with_reference(f) } else { f() }
}

/// Says once per `(op, reason)` that `op` had a body for the backend but ran the reference.
#[allow(dead_code)] // unused in builds without kernels
pub(crate) fn fell_back(op: &'static str, reason: &'static str) {
    static SEEN: Mutex<Option<HashSet<(&'static str, &'static str)>>> = Mutex::new(None);
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.get_or_insert_with(HashSet::new).insert((op, reason)) {
        tracing::info!("flow-kernels: {op} runs its tensor-op reference ({reason})");
    }
}
