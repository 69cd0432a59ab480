//! The sinh-arcsinh layer through flow-core's verification harness (`flow_core::testing`),
//! alone and inside the example's flow, and a broken variant that the harness must reject.

use burn::{
    backend::{Autodiff, NdArray},
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use custom_layer::{
    SinhArcsinh, SinhArcsinhConfig,
    train::{self, FitConfig},
};
use flow_core::{
    Invertible, Transform,
    testing::{self, CheckFailure},
};

type B = Autodiff<NdArray>;

/// The harness's tolerance in f32.
const TOL: f64 = 1e-4;

/// A layer away from the identity: a zero-initialised layer is the identity, which
/// passes every check whatever its code says.
fn random_layer(dim: usize, seed: u64) -> SinhArcsinh<B> {
    let device = Default::default();
    B::seed(&device, seed);
    testing::randomize(SinhArcsinhConfig::new(dim).init::<B>(&device).unwrap(), 0.5)
}

#[test]
fn sinh_arcsinh_passes_the_harness() {
    let device = Default::default();
    for (dim, seed) in [(1, 1), (3, 2), (5, 3)] {
        let layer = random_layer(dim, seed);
        let x = testing::standard_inputs::<B>(16, dim, seed, &device);
        // Round trip, ladj against the autodiff Jacobian both ways, gradients reach ε and
        // θ, finite for |x| ≤ 10⁴ both ways, a batch of one equals its row of the batch.
        let report = testing::check_invertible(&layer, x, None, TOL)
            .unwrap_or_else(|e| panic!("dim {dim}: {e}"));
        assert_eq!(report.params_checked, 2);
    }
}

#[test]
fn the_ladj_is_checked_on_wide_inputs_too() {
    // Inputs far in the tails, where cosh and sinh are large: ln cosh must stay exact.
    let device = Default::default();
    let layer = random_layer(4, 4);
    let x = testing::standard_inputs::<B>(16, 4, 9, &device).mul_scalar(30.0);
    testing::check_ladj_autodiff(&layer, x.clone(), None, TOL).unwrap();
    testing::check_round_trip(&layer, x, None, TOL).unwrap();
}

#[test]
fn the_whole_flow_passes_the_harness() {
    let device = Default::default();
    B::seed(&device, 5);
    let config = FitConfig::new().with_blocks(2).with_hidden(8);
    let flow = train::build::<B>(&config, &device).unwrap();
    let transform = testing::randomize(flow.transform, 0.3);
    let x = testing::standard_inputs::<B>(12, train::DIM, 6, &device);
    let report = testing::check_invertible(&transform, x, None, TOL).unwrap();
    // Per block: the MADE's 3 weights and 3 biases, ε and θ.
    assert_eq!(report.params_checked, 2 * (6 + 2));
}

/// The layer with a classic mistake: the chain rule's `1/δ` factor forgotten, so its
/// `ladj` lacks `−Σ ln δ` (and the inverse's, consistently, `+Σ ln δ`). Values are right,
/// and the inverse's ladj is still minus the forward's: only a Jacobian check can see it.
#[derive(Module, Debug)]
struct ForgotDelta<B: Backend> {
    inner: SinhArcsinh<B>,
}

impl<B: Backend> ForgotDelta<B> {
    fn missing_term(&self, rows: usize) -> Tensor<B, 1> {
        let sum = self.inner.log_delta().sum_dim(1).reshape([1]);
        sum.expand([rows])
    }
}

impl<B: Backend> Transform<B> for ForgotDelta<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let rows = x.dims()[0];
        let (y, ladj) = self.inner.forward(x, context);
        (y, ladj + self.missing_term(rows))
    }
}

impl<B: Backend> Invertible<B> for ForgotDelta<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let rows = y.dims()[0];
        let (x, ladj) = self.inner.inverse(y, context);
        (x, ladj - self.missing_term(rows))
    }
}

#[test]
fn a_wrong_log_det_fails_the_harness() {
    let device = Default::default();
    let broken = ForgotDelta {
        inner: random_layer(3, 7),
    };
    let x = testing::standard_inputs::<B>(16, 3, 8, &device);
    // The round trip cannot see it ...
    testing::check_round_trip(&broken, x.clone(), None, TOL).unwrap();
    // ... the Jacobian check does, and so does the full run.
    let err: CheckFailure = testing::check_invertible(&broken, x, None, TOL).unwrap_err();
    assert_eq!(err.check, "ladj vs autodiff Jacobian", "{err}");
}

#[test]
fn at_the_identity_even_the_broken_layer_passes() {
    // Why the tests randomize first: at θ = 0, ln δ = 0 and the missing term is zero.
    let device = Default::default();
    let broken = ForgotDelta {
        inner: SinhArcsinhConfig::new(3).init::<B>(&device).unwrap(),
    };
    let x = testing::standard_inputs::<B>(16, 3, 8, &device);
    testing::check_ladj_autodiff(&broken, x, None, TOL).unwrap();
}
