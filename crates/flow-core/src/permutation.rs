//! Fixed permutations of the features: reverse order, or a seeded random order.
//!
//! # Math
//! `y_i = x_{π(i)}`, inverse `x_j = y_{π⁻¹(j)}`; a permutation matrix has `|det| = 1`, so
//! `ln|det| = 0` both ways. The index tensors are built once, on the device, when the layer
//! is constructed.

use burn::{
    module::Module,
    tensor::{Int, Tensor, TensorData, backend::Backend},
};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::{
    error::{FlowError, Result},
    ops::zero_ladj,
    transform::{Invertible, Transform},
};

/// A fixed permutation of the `dim` features (no trainable parameters).
#[derive(Module, Debug)]
pub struct Permutation<B: Backend> {
    forward_index: Tensor<B, 1, Int>,
    inverse_index: Tensor<B, 1, Int>,
    dim: usize,
}

impl<B: Backend> Permutation<B> {
    /// Builds the permutation `y_i = x_{order[i]}`; `order` must hold each of `0..dim` once.
    pub fn from_order(order: &[usize], device: &B::Device) -> Result<Self> {
        let dim = order.len();
        if dim == 0 {
            return Err(FlowError::InvalidConfig(
                "permutation of dimension 0".into(),
            ));
        }
        let mut inverse = vec![usize::MAX; dim];
        for (i, &j) in order.iter().enumerate() {
            if j >= dim || inverse[j] != usize::MAX {
                return Err(FlowError::InvalidConfig(format!(
                    "{order:?} is not a permutation of 0..{dim}"
                )));
            }
            inverse[j] = i;
        }
        let to_tensor = |idx: &[usize]| {
            let data: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(data, [dim]), device)
        };
        Ok(Self {
            forward_index: to_tensor(order),
            inverse_index: to_tensor(&inverse),
            dim,
        })
    }

    /// Reverses the order of the features.
    pub fn reverse(dim: usize, device: &B::Device) -> Result<Self> {
        let order: Vec<usize> = (0..dim).rev().collect();
        Self::from_order(&order, device)
    }

    /// A uniformly random permutation drawn from `seed` (the same seed gives the same order).
    pub fn random(dim: usize, seed: u64, device: &B::Device) -> Result<Self> {
        let mut order: Vec<usize> = (0..dim).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        Self::from_order(&order, device)
    }
}

impl<B: Backend> Transform<B> for Permutation<B> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let ladj = zero_ladj(&x);
        (x.select(1, self.forward_index.clone()), ladj)
    }
}

impl<B: Backend> Invertible<B> for Permutation<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let ladj = zero_ladj(&y);
        (y.select(1, self.inverse_index.clone()), ladj)
    }
}
