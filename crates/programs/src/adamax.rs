//! Adamax (Kingma & Ba 2015, §7.1), the optimizer of the Sylvester-flow paper's protocol;
//! burn 0.21 has none.
//!
//! # Math
//! As torch computes it: with gradient `g` and step `t ≥ 1`,
//! `m ← β₁ m + (1 − β₁) g`, `u ← max(β₂ u, |g| + ε)` (an exponentially weighted infinity
//! norm), `θ ← θ − lr / (1 − β₁ᵗ) · m / u`. Tensor operations on any backend; the state is
//! burn's `AdaptiveMomentumState` (`moment_2` holds `u`).

use burn::{
    module::AutodiffModule,
    optim::{AdaptiveMomentumState, LearningRate, SimpleOptimizer, adaptor::OptimizerAdaptor},
    tensor::{
        Tensor,
        backend::{AutodiffBackend, Backend},
    },
};

/// Configuration of [`Adamax`]; the defaults are torch's (`β = (0.9, 0.999)`, `ε = 10⁻⁸`).
#[derive(burn::config::Config, Debug)]
pub struct AdamaxConfig {
    /// `β₁`.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// `β₂`.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// `ε`.
    #[config(default = 1e-8)]
    pub epsilon: f32,
}

impl AdamaxConfig {
    /// The optimizer for module `M` on autodiff backend `B`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<Adamax, M, B> {
        OptimizerAdaptor::from(Adamax {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
        })
    }
}

/// Adamax; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Adamax {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

impl<B: Backend> SimpleOptimizer<B> for Adamax {
    type State<const D: usize> = AdaptiveMomentumState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (b1, b2) = (f64::from(self.beta_1), f64::from(self.beta_2));
        let (time, m, u) = match state {
            Some(s) => (s.time + 1, s.moment_1, s.moment_2),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let m = m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
        let u = u
            .mul_scalar(b2)
            .max_pair(grad.abs().add_scalar(f64::from(self.epsilon)));
        let step = lr / (1.0 - b1.powi(time as i32));
        let tensor = tensor - (m.clone() / u.clone()).mul_scalar(step);
        (tensor, Some(AdaptiveMomentumState::new(time, m, u)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::{backend::NdArray, tensor::TensorData};

    /// Three steps against the formula written out on the host (f64).
    #[test]
    fn matches_the_formula() {
        let device = Default::default();
        let opt = Adamax {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
        };
        let grads = [[0.5f32, -2.0], [0.1, 3.0], [-1.0, 0.0]];
        let mut theta = Tensor::<NdArray, 1>::from_floats([1.0, -1.0], &device);
        let mut state = None;
        let (mut want, mut m, mut u) = ([1.0f64, -1.0], [0.0f64; 2], [0.0f64; 2]);
        for (t, g) in grads.iter().enumerate() {
            let grad = Tensor::<NdArray, 1>::from_data(TensorData::from(*g), &device);
            (theta, state) = opt.step(0.01, theta, grad, state);
            for j in 0..2 {
                let gj = f64::from(g[j]);
                m[j] = 0.9 * m[j] + 0.1 * gj;
                u[j] = (0.999 * u[j]).max(gj.abs() + 1e-8);
                want[j] -= 0.01 / (1.0 - 0.9f64.powi(t as i32 + 1)) * m[j] / u[j];
            }
        }
        let got: Vec<f32> = theta.into_data().to_vec().unwrap();
        for j in 0..2 {
            assert!(
                (f64::from(got[j]) - want[j]).abs() < 1e-6,
                "{got:?} vs {want:?}"
            );
        }
    }
}
