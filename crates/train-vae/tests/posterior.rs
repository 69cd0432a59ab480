//! The amortized posterior steps through flow-core's property checks, with the per-row
//! parameters passed as the transform's context: ladj against the autodiff Jacobian,
//! finite at extreme inputs, batch of one equals the full batch, and the gradient reaches
//! every parameter column (the encoder learns through all of them).

use burn::{
    backend::{Autodiff, NdArray},
    tensor::{Distribution, Tensor, backend::AutodiffBackend},
};
use flow_core::{Transform, testing};
use train_vae::posterior::FlowKind;

/// One amortized step as a `flow_core::Transform` whose context is `θ(x)`.
struct Step {
    kind: FlowKind,
    dim: usize,
}

impl<B: burn::tensor::backend::Backend> Transform<B> for Step {
    fn dim(&self) -> usize {
        self.dim
    }
    fn context_dim(&self) -> usize {
        self.kind.params_per_step(self.dim)
    }
    fn forward(
        &self,
        z: Tensor<B, 2>,
        theta: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        self.kind
            .step(z, theta.expect("amortized steps need θ").clone())
    }
}

fn check<B: AutodiffBackend>(kind: FlowKind, device: &B::Device) {
    let (n, d) = (12, 5);
    let step = Step { kind, dim: d };
    let p = kind.params_per_step(d);
    B::seed(device, 7);
    let z = testing::standard_inputs::<B>(n, d, 3, device);
    let theta = Tensor::<B, 2>::random([n, p], Distribution::Normal(0.0, 1.0), device);
    let err = testing::check_ladj_autodiff(&step, z.clone(), Some(&theta), 1e-4)
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    assert!(err < 1e-4, "{kind}: ladj error {err}");
    testing::check_extreme(&step, &z, Some(&theta), 1e4).unwrap_or_else(|e| panic!("{kind}: {e}"));
    testing::check_batch_consistency(&step, z.clone(), Some(&theta), 1e-4)
        .unwrap_or_else(|e| panic!("{kind}: {e}"));

    // d(Σ z_K² + Σ ladj)/dθ: finite everywhere, non-zero in every column.
    let theta = theta.require_grad();
    let (y, ladj) = step.forward(z, Some(&theta));
    let grads = (y.square().sum() + ladj.sum()).backward();
    let g = theta.grad(&grads).expect("θ gets a gradient");
    let g: Vec<f64> = g.into_data().convert::<f64>().into_vec().unwrap();
    assert!(
        g.iter().all(|v| v.is_finite()),
        "{kind}: non-finite θ gradient"
    );
    for c in 0..p {
        assert!(
            (0..n).any(|r| g[r * p + c] != 0.0),
            "{kind}: parameter column {c} gets no gradient"
        );
    }
}

fn none_is_the_identity<B: AutodiffBackend>(device: &B::Device) {
    let z = testing::standard_inputs::<B>(6, 3, 1, device);
    let (y, ladj) = train_vae::posterior::run(FlowKind::None, 4, z.clone(), None);
    assert_eq!(y.into_data(), z.into_data());
    assert!(
        ladj.into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .unwrap()
            .iter()
            .all(|v| *v == 0.0)
    );
}

mod ndarray {
    use super::*;
    type B = Autodiff<NdArray>;
    #[test]
    fn planar_step_passes_the_harness() {
        check::<B>(FlowKind::Planar, &Default::default());
    }
    #[test]
    fn radial_step_passes_the_harness() {
        check::<B>(FlowKind::Radial, &Default::default());
    }
    #[test]
    fn no_flow_is_the_identity() {
        none_is_the_identity::<B>(&Default::default());
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    type B = Autodiff<burn::backend::Wgpu>;
    #[test]
    fn planar_step_passes_the_harness() {
        let _gpu = testing::exclusive_device();
        check::<B>(FlowKind::Planar, &Default::default());
    }
    #[test]
    fn radial_step_passes_the_harness() {
        let _gpu = testing::exclusive_device();
        check::<B>(FlowKind::Radial, &Default::default());
    }
}
