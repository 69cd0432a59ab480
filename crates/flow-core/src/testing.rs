//! A verification harness that any [`Transform`] can be run through (feature `testing`).
//!
//! Every check compares against an independent reference:
//! - [`check_ladj_autodiff`]: `ladj` against `ln|det J|`, with `J` built row by row with
//!   reverse-mode autodiff on the device (one backward pass per output feature, in the
//!   backend's precision) and its log-determinant taken on the host in `f64`;
//! - [`check_ladj_finite_diff`]: the same with `J` from central differences (use an `f64`
//!   backend, such as `NdArray<f64>`, in a test binary of its own: see its docs);
//! - [`check_round_trip`]: `f⁻¹(f(x)) = x`, and the inverse's `ladj` is minus the forward's;
//! - [`check_gradients`]: a loss built from the outputs and `ladj` sends a finite, non-zero
//!   gradient to every float parameter (perturb zero-initialised layers first with
//!   [`randomize`], otherwise gradients through a zero layer are legitimately zero);
//! - [`check_extreme`]: outputs (and the inverse's) finite for inputs up to `|x| = scale`;
//! - [`check_batch_consistency`]: a batch of one gives the same row as the full batch.
//!
//! [`check_transform`] and [`check_invertible`] run all of them except the
//! finite-difference check, which needs an `f64` backend. All checks read tensors back to
//! the host: they are for tests, never for hot paths.
//!
//! # Tolerances
//! A `ladj` passes when `|ladj − ln|det J|| ≤ tol · max(1, |ln|det J||)` and a round trip
//! when `|f⁻¹(f(x)) − x| ≤ tol · max(1, |x|)`: relative error, with an absolute floor of
//! `tol` near zero.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use flow_core::{testing, PlanarConfig};
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let layer = PlanarConfig::new(3).with_init_std(0.5).init::<B>(&device).unwrap();
//! let x = testing::standard_inputs::<B>(16, 3, 7, &device);
//! let report = testing::check_transform(&layer, x, None, 1e-4).unwrap();
//! assert!(report.ladj_error < 1e-4);
//! ```

use burn::{
    module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param},
    tensor::{
        Distribution, Int, Tensor, TensorData,
        backend::{AutodiffBackend, Backend},
    },
};

use crate::transform::{Invertible, Transform};

/// Serializes tests that drive one GPU device from the parallel test harness.
///
/// burn 0.21's fusion layer (on by default for `wgpu`) keeps one operation stream per
/// thread and can lose a tensor handle when several threads drive the same device at
/// once ("Should have handle for tensor", tracel-ai/burn#4328, #4347). Take this guard
/// first in every test that runs a fusion backend; the guard survives a panicking holder.
/// Library code does not need it: one thread per device is the supported use.
///
/// ```
/// let _gpu = flow_core::testing::exclusive_device();
/// // ... run checks on the device ...
/// ```
pub fn exclusive_device() -> std::sync::MutexGuard<'static, ()> {
    static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DEVICE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`exclusive_device`] for a test on burn's wgpu backend, or `None` where the test is to
/// be skipped because no GPU adapter exists (one line on stderr says what to install; with
/// `FLOW_REQUIRE_GPU` set, as in CI, it panics instead:
/// `flow_kernels::backends::wgpu_for_tests`). Without the `wgpu` feature, always the
/// guard.
///
/// ```
/// let Some(_gpu) = flow_core::testing::gpu_test_device() else {
///     return; // skipped: no adapter
/// };
/// // ... run checks on the device ...
/// ```
pub fn gpu_test_device() -> Option<std::sync::MutexGuard<'static, ()>> {
    #[cfg(feature = "wgpu")]
    if !flow_kernels::backends::wgpu_for_tests() {
        return None;
    }
    Some(exclusive_device())
}

/// A failed check: which one, and what it saw.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{check} failed: {detail}")]
pub struct CheckFailure {
    /// Name of the failed check.
    pub check: &'static str,
    /// What was measured, with numbers.
    pub detail: String,
}

/// What a full run of the harness measured (the largest errors seen).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Largest scaled `ladj` error against the autodiff Jacobian.
    pub ladj_error: f64,
    /// Largest scaled round-trip error (0 for a non-invertible transform).
    pub round_trip_error: f64,
    /// Largest scaled difference between a batch of one and the full batch.
    pub batch_error: f64,
    /// Number of float parameter tensors that received a gradient.
    pub params_checked: usize,
}

/// `err ≤ tol`, false for NaN (a NaN error must fail a check).
fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

fn fail(check: &'static str, detail: String) -> CheckFailure {
    CheckFailure { check, detail }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("float tensor data")
}

/// `ln|det A|` of a row-major `d × d` matrix, by LU decomposition with partial pivoting.
pub fn log_abs_det(a: &[f64], d: usize) -> f64 {
    let mut m = a.to_vec();
    let mut total = 0.0;
    for col in 0..d {
        let pivot = (col..d)
            .max_by(|&i, &j| m[i * d + col].abs().total_cmp(&m[j * d + col].abs()))
            .expect("non-empty range");
        if m[pivot * d + col] == 0.0 {
            return f64::NEG_INFINITY;
        }
        if pivot != col {
            for k in 0..d {
                m.swap(pivot * d + k, col * d + k);
            }
        }
        let p = m[col * d + col];
        total += p.abs().ln();
        for row in col + 1..d {
            let factor = m[row * d + col] / p;
            for k in col..d {
                m[row * d + k] -= factor * m[col * d + k];
            }
        }
    }
    total
}

/// Seeded inputs `[n, dim]` from `N(0, 1)`, built on the host so they do not depend on the
/// backend's random generator.
pub fn standard_inputs<B: Backend>(
    n: usize,
    dim: usize,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 2> {
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr_free::normal;
    let mut rng = StdRng::seed_from_u64(seed);
    let data: Vec<f32> = (0..n * dim).map(|_| normal(&mut rng) as f32).collect();
    Tensor::from_data(TensorData::new(data, [n, dim]), device)
}

/// Box–Muller without another dependency.
mod rand_distr_free {
    use rand::Rng;
    pub fn normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Adds `N(0, std²)` noise to every float parameter (gradients stay enabled).
pub fn randomize<B: Backend, M: Module<B>>(module: M, std: f64) -> M {
    struct Noise(f64);
    impl<B: Backend> ModuleMapper<B> for Noise {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let std = self.0;
            param.map(|t| {
                let require_grad = t.is_require_grad();
                let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, std), &t.device());
                (t.detach() + noise).detach().set_require_grad(require_grad)
            })
        }
    }
    module.map(&mut Noise(std))
}

fn check_ladj_against(
    check: &'static str,
    ladj: &[f64],
    jacobians: &[f64],
    d: usize,
    tol: f64,
) -> Result<f64, CheckFailure> {
    let mut worst = 0.0f64;
    for (i, &l) in ladj.iter().enumerate() {
        let reference = log_abs_det(&jacobians[i * d * d..(i + 1) * d * d], d);
        let err = (l - reference).abs() / reference.abs().max(1.0);
        if !within(err, tol) {
            return Err(fail(
                check,
                format!(
                    "row {i}: ladj = {l:.8}, ln|det J| = {reference:.8}, scaled error {err:.2e} > {tol:.1e}"
                ),
            ));
        }
        worst = worse(worst, err);
    }
    Ok(worst)
}

/// Per-row Jacobians `∂y/∂x` by autodiff, flattened `[n][d_out=d][d_in=d]`.
pub fn jacobians_autodiff<B: AutodiffBackend, F>(f: F, x: Tensor<B, 2>) -> Vec<f64>
where
    F: Fn(Tensor<B, 2>) -> Tensor<B, 2>,
{
    let [n, d] = x.dims();
    let mut jac = vec![0.0; n * d * d];
    for j in 0..d {
        let xg = x.clone().detach().require_grad();
        let y = f(xg.clone());
        let grads = y.narrow(1, j, 1).sum().backward();
        let g = host(xg.grad(&grads).expect("input gradient"));
        for i in 0..n {
            for k in 0..d {
                jac[i * d * d + j * d + k] = g[i * d + k];
            }
        }
    }
    jac
}

/// `ladj` of `forward` against the autodiff Jacobian; returns the largest scaled error.
pub fn check_ladj_autodiff<B: AutodiffBackend, T: Transform<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    tol: f64,
) -> Result<f64, CheckFailure> {
    let d = x.dims()[1];
    let ladj = host(t.forward(x.clone(), context).1);
    let jac = jacobians_autodiff(|x| t.forward(x, context).0, x);
    check_ladj_against("ladj vs autodiff Jacobian", &ladj, &jac, d, tol)
}

/// `ladj` of `inverse` against the autodiff Jacobian of the inverse, at `y`.
pub fn check_inverse_ladj_autodiff<B: AutodiffBackend, T: Invertible<B>>(
    t: &T,
    y: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    tol: f64,
) -> Result<f64, CheckFailure> {
    let d = y.dims()[1];
    let ladj = host(t.inverse(y.clone(), context).1);
    let jac = jacobians_autodiff(|y| t.inverse(y, context).0, y);
    check_ladj_against("inverse ladj vs autodiff Jacobian", &ladj, &jac, d, tol)
}

fn repeat_rows<B: Backend>(t: &Tensor<B, 2>, times: usize) -> Tensor<B, 2> {
    let [n, _] = t.dims();
    let idx: Vec<i64> = (0..n as i64)
        .flat_map(|i| std::iter::repeat_n(i, times))
        .collect();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n * times]), &t.device());
    t.clone().select(0, idx)
}

/// `ladj` of `forward` against a central-difference Jacobian with step `h`, all rows and
/// directions in one batch. Meant for an `f64` backend (`NdArray<f64>`), where `h = 1e-5`
/// gives a Jacobian accurate to about `1e-9`.
///
/// Run it in a process (a test binary) that creates no `NdArray<f32>` tensors: burn 0.21
/// keys the default float dtype by device, and both share the CPU device, so whichever
/// precision is used first wins and `f64` tensors may silently hold `f32` data.
pub fn check_ladj_finite_diff<B: Backend, T: Transform<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    h: f64,
    tol: f64,
) -> Result<f64, CheckFailure> {
    let [n, d] = x.dims();
    let device = x.device();
    // Row (i, k, s) = x_i + s·h·e_k for s ∈ {+1, −1}.
    let mut steps = vec![0.0f64; n * 2 * d * d];
    for i in 0..n {
        for k in 0..d {
            steps[((i * d + k) * 2) * d + k] = h;
            steps[((i * d + k) * 2 + 1) * d + k] = -h;
        }
    }
    let steps = Tensor::<B, 2>::from_data(TensorData::new(steps, [n * 2 * d, d]), &device);
    let xs = repeat_rows(&x, 2 * d) + steps;
    let ctx = context.map(|c| repeat_rows(c, 2 * d));
    let y = host(t.forward(xs, ctx.as_ref()).0);
    let mut jac = vec![0.0; n * d * d];
    for i in 0..n {
        for k in 0..d {
            let plus = ((i * d + k) * 2) * d;
            let minus = plus + d;
            for j in 0..d {
                jac[i * d * d + j * d + k] = (y[plus + j] - y[minus + j]) / (2.0 * h);
            }
        }
    }
    let ladj = host(t.forward(x, context).1);
    check_ladj_against("ladj vs central differences", &ladj, &jac, d, tol)
}

/// The larger of two errors, NaN if either is NaN (`f64::max` would drop the NaN).
fn worse(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn scaled_max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, worse)
}

/// `f⁻¹(f(x)) = x` and `ladj⁻¹(f(x)) = −ladj(x)`; returns the largest scaled error.
pub fn check_round_trip<B: Backend, T: Invertible<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    tol: f64,
) -> Result<f64, CheckFailure> {
    let (y, ladj) = t.forward(x.clone(), context);
    let (x_back, ladj_back) = t.inverse(y, context);
    let err = scaled_max_diff(&host(x_back), &host(x));
    if !within(err, tol) {
        return Err(fail(
            "round trip",
            format!("|f⁻¹(f(x)) − x| scaled error {err:.2e} > {tol:.1e}"),
        ));
    }
    let ladj_err = scaled_max_diff(&host(ladj_back.neg()), &host(ladj));
    if !within(ladj_err, tol) {
        return Err(fail(
            "round trip",
            format!(
                "inverse ladj is not minus forward ladj: scaled error {ladj_err:.2e} > {tol:.1e}"
            ),
        ));
    }
    Ok(worse(err, ladj_err))
}

/// A loss built from outputs and `ladj` sends a finite, non-zero gradient to every float
/// parameter; returns how many parameter tensors were checked.
pub fn check_gradients<B: AutodiffBackend, T: Transform<B> + AutodiffModule<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
) -> Result<usize, CheckFailure> {
    let (y, ladj) = t.forward(x, context);
    // Squares and cubes so that no parameter's gradient cancels by symmetry.
    let loss = y.clone().square().sum() + y.powi_scalar(3).sum().mul_scalar(0.1) + ladj.sum();
    let grads = loss.backward();

    struct Collect<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        failures: Vec<String>,
        checked: usize,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            // Running statistics (batch norm) are module state, not trainable parameters.
            if !param.val().is_require_grad() {
                return;
            }
            self.checked += 1;
            match param.val().grad(self.grads) {
                None => self
                    .failures
                    .push(format!("parameter {} got no gradient", param.id)),
                Some(g) => {
                    let g = host(g);
                    if g.iter().any(|v| !v.is_finite()) {
                        self.failures
                            .push(format!("parameter {} has a non-finite gradient", param.id));
                    } else if g.iter().all(|&v| v == 0.0) {
                        self.failures
                            .push(format!("parameter {} has an all-zero gradient", param.id));
                    }
                }
            }
        }
    }
    let mut visitor = Collect::<B> {
        grads: &grads,
        failures: vec![],
        checked: 0,
    };
    t.visit(&mut visitor);
    if visitor.failures.is_empty() {
        Ok(visitor.checked)
    } else {
        Err(fail(
            "gradients reach every parameter",
            visitor.failures.join("; "),
        ))
    }
}

/// Inputs of the same shape as `like` whose entries are `±scale`, `0` and mixtures.
pub fn extreme_inputs<B: Backend>(like: &Tensor<B, 2>, scale: f64) -> Tensor<B, 2> {
    let [n, d] = like.dims();
    let patterns: [fn(usize, usize) -> f64; 6] = [
        |_, _| 1.0,
        |_, _| -1.0,
        |_, k| if k % 2 == 0 { 1.0 } else { -1.0 },
        |i, k| if k == i % 7 { 1.0 } else { 0.0 },
        |_, _| 0.0,
        |i, k| ((i * 31 + k * 17) % 11) as f64 / 5.0 - 1.0,
    ];
    let data: Vec<f64> = (0..n)
        .flat_map(|i| (0..d).map(move |k| patterns[i % patterns.len()](i, k) * scale))
        .collect();
    Tensor::from_data(TensorData::new(data, [n, d]), &like.device())
}

fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// `forward` gives finite outputs and `ladj` for inputs up to `|x| = scale`.
pub fn check_extreme<B: Backend, T: Transform<B>>(
    t: &T,
    like: &Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    scale: f64,
) -> Result<(), CheckFailure> {
    let x = extreme_inputs(like, scale);
    let (y, ladj) = t.forward(x, context);
    if all_finite(&host(y)) && all_finite(&host(ladj)) {
        Ok(())
    } else {
        Err(fail(
            "finite at extreme inputs",
            format!("forward is not finite for |x| ≤ {scale}"),
        ))
    }
}

/// `inverse` gives finite outputs and `ladj` for inputs up to `|y| = scale`.
pub fn check_inverse_extreme<B: Backend, T: Invertible<B>>(
    t: &T,
    like: &Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    scale: f64,
) -> Result<(), CheckFailure> {
    let y = extreme_inputs(like, scale);
    let (x, ladj) = t.inverse(y, context);
    if all_finite(&host(x)) && all_finite(&host(ladj)) {
        Ok(())
    } else {
        Err(fail(
            "finite at extreme inputs",
            format!("inverse is not finite for |y| ≤ {scale}"),
        ))
    }
}

/// The first, middle and last rows, each run alone, give the same output and `ladj` as in
/// the full batch.
pub fn check_batch_consistency<B: Backend, T: Transform<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    tol: f64,
) -> Result<f64, CheckFailure> {
    let [n, _] = x.dims();
    if n == 0 {
        return Err(fail("batch of one", "the batch is empty".into()));
    }
    let (y, ladj) = t.forward(x.clone(), context);
    let (y, ladj) = (host(y), host(ladj));
    let d = y.len() / n;
    let mut worst = 0.0f64;
    for i in [0, n / 2, n - 1] {
        let xi = x.clone().narrow(0, i, 1);
        let ci = context.map(|c| c.clone().narrow(0, i, 1));
        let (yi, li) = t.forward(xi, ci.as_ref());
        let err = worse(
            scaled_max_diff(&host(yi), &y[i * d..(i + 1) * d]),
            scaled_max_diff(&host(li), &ladj[i..i + 1]),
        );
        if !within(err, tol) {
            return Err(fail(
                "batch of one",
                format!("row {i} alone differs from the batch: {err:.2e}"),
            ));
        }
        worst = worse(worst, err);
    }
    Ok(worst)
}

/// Runs every forward-direction check: ladj vs autodiff Jacobian, gradients, finiteness at
/// `|x| = 10⁴`, batch consistency.
pub fn check_transform<B: AutodiffBackend, T: Transform<B> + AutodiffModule<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    tol: f64,
) -> Result<Report, CheckFailure> {
    let ladj_error = check_ladj_autodiff(t, x.clone(), context, tol)?;
    let params_checked = check_gradients(t, x.clone(), context)?;
    check_extreme(t, &x, context, 1e4)?;
    let batch_error = check_batch_consistency(t, x, context, tol)?;
    Ok(Report {
        ladj_error,
        round_trip_error: 0.0,
        batch_error,
        params_checked,
    })
}

/// [`check_transform`] plus the round trip, the inverse's ladj against its own autodiff
/// Jacobian at `f(x)`, and the inverse's finiteness at `|y| = 10⁴`.
pub fn check_invertible<B: AutodiffBackend, T: Invertible<B> + AutodiffModule<B>>(
    t: &T,
    x: Tensor<B, 2>,
    context: Option<&Tensor<B, 2>>,
    tol: f64,
) -> Result<Report, CheckFailure> {
    let mut report = check_transform(t, x.clone(), context, tol)?;
    report.round_trip_error = check_round_trip(t, x.clone(), context, tol)?;
    let y = t.forward(x.clone(), context).0.detach();
    report.ladj_error = report
        .ladj_error
        .max(check_inverse_ladj_autodiff(t, y, context, tol)?);
    check_inverse_extreme(t, &x, context, 1e4)?;
    Ok(report)
}
