//! Activation normalisation (Kingma & Dhariwal 2018, Glow) with data-dependent
//! initialisation.
//!
//! # Math
//! Forward (noise → data side): `y = x ⊙ exp(s) + m`, `ln|det| = Σᵢ sᵢ` (the same for
//! every row). Inverse: `x = (y − m) ⊙ exp(−s)`, `ln|det| = −Σᵢ sᵢ`.
//!
//! Data-dependent initialisation ([`Invertible::data_init`]): given data `y`, set
//! `m = mean(y)` and `s = ln(std(y) + ε)` per feature, so the inverse maps the data to zero
//! mean and unit variance. A new layer (before any data) is the identity.

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Tensor, backend::Backend},
};

use crate::{
    elementwise::{affine, affine_inverse},
    transform::{Invertible, Transform},
};

/// Added to the standard deviation before its log, so a constant feature stays finite.
const STD_EPS: f64 = 1e-6;

/// Configuration of an [`ActNorm`] layer.
#[derive(Config, Debug)]
pub struct ActNormConfig {
    /// Feature dimension.
    pub dim: usize,
}

impl ActNormConfig {
    /// Builds the layer at the identity (`m = 0`, `s = 0`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<ActNorm<B>> {
        crate::error::check_dim("actnorm", self.dim)?;
        Ok(ActNorm {
            shift: Param::from_tensor(Tensor::zeros([1, self.dim], device)),
            log_scale: Param::from_tensor(Tensor::zeros([1, self.dim], device)),
        })
    }
}

/// Per-feature affine normalisation; see the [module docs](self) for the math.
#[derive(Module, Debug)]
pub struct ActNorm<B: Backend> {
    /// `m`, `[1, d]`.
    pub shift: Param<Tensor<B, 2>>,
    /// `s`, `[1, d]`.
    pub log_scale: Param<Tensor<B, 2>>,
}

impl<B: Backend> Transform<B> for ActNorm<B> {
    fn dim(&self) -> usize {
        self.shift.dims()[1]
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        affine(x, self.shift.val(), self.log_scale.val())
    }
}

impl<B: Backend> Invertible<B> for ActNorm<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        affine_inverse(y, self.shift.val(), self.log_scale.val())
    }

    fn data_init(self, y: Tensor<B, 2>, _context: Option<&Tensor<B, 2>>) -> (Self, Tensor<B, 2>) {
        let y = y.detach();
        let mean = y.clone().mean_dim(0);
        let std = (y.clone() - mean.clone()).square().mean_dim(0).sqrt();
        let log_scale = std.add_scalar(STD_EPS).log();
        let layer = Self {
            shift: self.shift.map(|_| mean.require_grad()),
            log_scale: self.log_scale.map(|_| log_scale.require_grad()),
        };
        let x = layer.inverse(y, None).0;
        (layer, x)
    }
}
