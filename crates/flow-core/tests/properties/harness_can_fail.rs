//! The harness must be able to fail: transforms with deliberately wrong log-determinants
//! are rejected.

use crate::common;

use burn::module::Module;
use burn::tensor::Tensor;
use common::*;
use flow_core::{
    Amortized, AmortizedStep, Coupling, CouplingConfig, Elementwise, Invertible, Planar,
    PlanarConfig, SylvesterQ, Transform,
    testing::{
        check_batch_consistency, check_extreme, check_invertible, check_ladj_autodiff,
        check_round_trip, check_transform, randomize, standard_inputs,
    },
};

/// A planar layer that forgets the `h'` factor in `ln|1 + h'(wᵀz + b) wᵀû|`.
#[derive(Module, Debug)]
struct MissingTerm<B: Backend> {
    inner: Planar<B>,
}

impl<B: Backend> Transform<B> for MissingTerm<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn forward(&self, z: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (y, _) = self.inner.forward(z.clone(), c);
        let w = self.inner.w.val();
        let u = self.inner.u.val();
        let wu = (w.clone() * u).sum_dim(1);
        let w_dot_u_hat = flow_core::ops::softplus(wu).sub_scalar(1.0);
        let [n, _] = z.dims();
        let wrong = w_dot_u_hat
            .add_scalar(1.0)
            .abs()
            .log()
            .expand([n, 1])
            .reshape([n]);
        (y, wrong)
    }
}

/// One triangular Sylvester step (`Q = I`) that drops the first diagonal term
/// `ln|1 + R₀₀ R̃₀₀ h'(R̃ z + b)₀|` of its log-determinant, recomputed here from the
/// documented parameter layout (`A`, `d̃`, `b`; `R̃₀ⱼ = Aⱼ₀` for `j > 0`).
#[derive(Module, Debug)]
struct DroppedDiagonal<B: Backend> {
    inner: Amortized<B>,
}

impl<B: Backend> Transform<B> for DroppedDiagonal<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn context_dim(&self) -> usize {
        self.inner.context_dim()
    }
    fn forward(&self, z: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (y, ladj) = self.inner.forward(z.clone(), c);
        let theta = c.unwrap().clone();
        let [n, d] = z.dims();
        let col = |j: usize| theta.clone().narrow(1, j, 1);
        let mut pre = col(d * d + d) + z.clone().narrow(1, 0, 1) * col(d * d).tanh();
        for j in 1..d {
            pre = pre + z.clone().narrow(1, j, 1) * col(j * d);
        }
        let h_prime = pre.tanh().square().neg().add_scalar(1.0);
        let term = (col(0).tanh() * col(d * d).tanh() * h_prime)
            .add_scalar(1.0)
            .abs()
            .log()
            .reshape([n]);
        (y, ladj - term)
    }
}

/// An affine coupling whose inverse forgets the shift: the round trip must catch it.
#[derive(Module, Debug)]
struct WrongInverse<B: Backend> {
    inner: Coupling<B>,
}

impl<B: Backend> Transform<B> for WrongInverse<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn forward(&self, x: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        self.inner.forward(x, c)
    }
}

impl<B: Backend> Invertible<B> for WrongInverse<B> {
    fn inverse(&self, y: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (x, l) = self.inner.inverse(y, c);
        (x.add_scalar(1e-2), l)
    }
}

/// A layer that is exact except that it returns NaN in the first row's ladj.
#[derive(Module, Debug)]
struct NanFirstRow<B: Backend> {
    inner: Coupling<B>,
}

impl<B: Backend> Transform<B> for NanFirstRow<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn forward(&self, x: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (y, l) = self.inner.forward(x, c);
        let [n] = l.dims();
        let mut mask = vec![0.0f32; n];
        mask[0] = f32::NAN;
        let nan = Tensor::<B, 1>::from_data(burn::tensor::TensorData::new(mask, [n]), &l.device());
        (y, l + nan)
    }
}

impl<B: Backend> Invertible<B> for NanFirstRow<B> {
    fn inverse(&self, y: Tensor<B, 2>, c: Option<&Tensor<B, 2>>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        self.inner.inverse(y, c)
    }
}

fn wrong_inverse_fails<B: AutodiffBackend>(device: &B::Device) {
    let inner = randomize(
        CouplingConfig::new(4, Elementwise::affine())
            .init::<B>(device)
            .unwrap(),
        0.3,
    );
    let x = standard_inputs::<B>(8, 4, 3, device);
    let err = check_round_trip(&WrongInverse { inner }, x, None, TOL).unwrap_err();
    assert_eq!(err.check, "round trip", "{err}");
}

fn nan_is_never_within_tolerance<B: AutodiffBackend>(device: &B::Device) {
    let inner = randomize(
        CouplingConfig::new(4, Elementwise::affine())
            .init::<B>(device)
            .unwrap(),
        0.3,
    );
    let x = standard_inputs::<B>(8, 4, 4, device);
    let broken = NanFirstRow { inner };
    assert!(check_ladj_autodiff(&broken, x.clone(), None, TOL).is_err());
    assert!(check_round_trip(&broken, x.clone(), None, TOL).is_err());
    assert!(check_batch_consistency(&broken, x.clone(), None, TOL).is_err());
    assert!(check_extreme(&broken, &x, None, 1.0).is_err());
}

fn flipped_sign_fails<B: AutodiffBackend>(device: &B::Device) {
    let inner = randomize(
        CouplingConfig::new(4, Elementwise::affine())
            .init::<B>(device)
            .unwrap(),
        0.3,
    );
    let x = standard_inputs::<B>(8, 4, 1, device);
    // The honest layer passes...
    check_invertible(&inner, x.clone(), None, TOL).unwrap();
    // ...the same layer with a flipped ladj does not.
    let err = check_invertible(&FlippedSign { inner }, x, None, TOL).unwrap_err();
    assert!(err.check.contains("ladj"), "{err}");
}

fn missing_term_fails<B: AutodiffBackend>(device: &B::Device) {
    let inner = PlanarConfig::new(3)
        .with_init_std(0.8)
        .init::<B>(device)
        .unwrap();
    let x = standard_inputs::<B>(8, 3, 2, device);
    check_transform(&inner, x.clone(), None, TOL).unwrap();
    let err = check_transform(&MissingTerm { inner }, x, None, TOL).unwrap_err();
    assert!(err.check.contains("ladj"), "{err}");
}

fn sylvester_dropped_term_fails<B: AutodiffBackend>(device: &B::Device) {
    let inner =
        Amortized::<B>::new(AmortizedStep::Sylvester(SylvesterQ::Triangular), 3, 1).unwrap();
    let x = standard_inputs::<B>(8, 3, 2, device);
    let theta = standard_inputs::<B>(8, inner.context_dim(), 3, device);
    check_transform(&inner, x.clone(), Some(&theta), TOL).unwrap();
    let broken = DroppedDiagonal { inner };
    let err = check_transform(&broken, x, Some(&theta), TOL).unwrap_err();
    assert!(err.check.contains("ladj"), "{err}");
}

on_backends! {
    harness_rejects_dropped_sylvester_term => sylvester_dropped_term_fails;
    harness_rejects_flipped_ladj => flipped_sign_fails;
    harness_rejects_missing_ladj_term => missing_term_fails;
    harness_rejects_wrong_inverse => wrong_inverse_fails;
    harness_rejects_nan_anywhere => nan_is_never_within_tolerance;
}
