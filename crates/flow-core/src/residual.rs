//! nflows' residual MADE (`MADE(use_residual_blocks=True)`, its default) and the masked
//! autoregressive layer built on it, for flows imported from nflows ([`crate::import`]).
//!
//! # Math
//! With masked linear maps (`W ⊙ M`, MADE masks in the natural order: input degrees
//! `1..D`, hidden degrees `k mod max(1, D − 1) + 1`, hidden → hidden `m(k') ≥ m(k)`,
//! hidden → output `m(i) > m(k)`):
//! - `h = x W₀ + b₀` (no activation);
//! - for each block, `h ← h + L₂(relu(L₁(relu(h))))`;
//! - `θ = h W_out + b_out`, parameter-major `[n, P·D]`.
//!
//! Adding `h` keeps every unit's degree, so the network stays autoregressive. The layer's
//! `inverse` (the density direction) is one pass; its `forward` (sampling) fixes one
//! feature per pass, `D` passes of the whole network.

use burn::{
    config::Config,
    module::Module,
    tensor::{Tensor, activation::relu, backend::Backend},
};

use crate::{
    elementwise::Elementwise,
    error::FlowError,
    made::MaskedLinear,
    transform::{Invertible, Transform},
};

/// Configuration of a [`ResidualMade`].
#[derive(Config, Debug)]
pub struct ResidualMadeConfig {
    /// Number of features `D`.
    pub dim: usize,
    /// Parameters per feature `P`.
    pub params_per_dim: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Number of residual blocks (two masked layers each).
    pub blocks: usize,
}

impl ResidualMadeConfig {
    /// The network with its masks (weights: burn's initialisation; the output at zero).
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<ResidualMade<B>> {
        let (d, h) = (self.dim, self.hidden);
        if d == 0 || self.params_per_dim == 0 || h == 0 {
            return Err(FlowError::InvalidConfig(format!(
                "residual MADE needs positive sizes, got dim={d}, params_per_dim={}, hidden={h}",
                self.params_per_dim
            )));
        }
        let degree = |k: usize| k % (d - 1).max(1) + 1;
        let hidden_layer =
            || MaskedLinear::new(h, h, |k, k2| degree(k2) >= degree(k), false, device);
        Ok(ResidualMade {
            initial: MaskedLinear::new(d, h, |i, k| degree(k) > i, false, device),
            blocks: (0..self.blocks)
                .map(|_| ResidualBlock {
                    first: hidden_layer(),
                    second: hidden_layer(),
                })
                .collect(),
            out: MaskedLinear::new(
                h,
                self.params_per_dim * d,
                |k, o| o % d + 1 > degree(k),
                true,
                device,
            ),
            dim: d,
        })
    }
}

/// Two masked layers of a residual block: `h ← h + second(relu(first(relu(h))))`.
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    /// The block's first layer.
    pub first: MaskedLinear<B>,
    /// The block's second layer.
    pub second: MaskedLinear<B>,
}

/// A MADE with residual blocks; see the [module docs](self).
#[derive(Module, Debug)]
pub struct ResidualMade<B: Backend> {
    initial: MaskedLinear<B>,
    blocks: Vec<ResidualBlock<B>>,
    out: MaskedLinear<B>,
    dim: usize,
}

impl<B: Backend> ResidualMade<B> {
    /// `[n, D] -> [n, P·D]`, parameter-major.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut h = self.initial.forward(x);
        for block in &self.blocks {
            let inner = block
                .second
                .forward(relu(block.first.forward(relu(h.clone()))));
            h = h + inner;
        }
        self.out.forward(h)
    }

    /// The masks, row-major `[d_in, d_out]`: initial, each block's two, output.
    pub fn masks(&self) -> Vec<&[f32]> {
        let mut masks = vec![self.initial.mask_values()];
        for block in &self.blocks {
            masks.push(block.first.mask_values());
            masks.push(block.second.mask_values());
        }
        masks.push(self.out.mask_values());
        masks
    }
}

/// A masked autoregressive layer on a [`ResidualMade`] (nflows' default MAF step).
#[derive(Module, Debug)]
pub struct ResidualAutoregressive<B: Backend> {
    /// The conditioner.
    pub made: ResidualMade<B>,
    #[module(skip)]
    kind: Elementwise,
}

impl<B: Backend> ResidualAutoregressive<B> {
    /// The layer on `made` with the element-wise map `kind` (`P` parameters per feature).
    pub fn new(made: ResidualMade<B>, kind: Elementwise) -> crate::Result<Self> {
        kind.validate()?;
        let hidden = made.initial.mask_values().len() / made.dim;
        if made.out.mask_values().len() != hidden * kind.params_per_dim() * made.dim {
            return Err(FlowError::InvalidConfig(format!(
                "the residual MADE's outputs do not give {:?} its {} parameters per feature",
                kind,
                kind.params_per_dim()
            )));
        }
        Ok(Self { made, kind })
    }

    fn params(&self, y: Tensor<B, 2>) -> Tensor<B, 3> {
        let [n, d] = y.dims();
        self.made
            .forward(y)
            .reshape([n, self.kind.params_per_dim(), d])
    }
}

impl<B: Backend> Transform<B> for ResidualAutoregressive<B> {
    fn dim(&self) -> usize {
        self.made.dim
    }

    /// Sampling: feature `j` (natural order) from the features before it, one full pass
    /// of the network per feature.
    fn forward(
        &self,
        x: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let [n, d] = x.dims();
        let mut y = Tensor::<B, 2>::zeros([n, d], &x.device());
        let mut ladj = Tensor::<B, 1>::zeros([n], &x.device());
        for j in 0..d {
            let params = self.params(y.clone()).narrow(2, j, 1);
            let (y_j, l_j) = self.kind.forward(x.clone().narrow(1, j, 1), params);
            y = y.slice_assign([0..n, j..j + 1], y_j);
            ladj = ladj + l_j;
        }
        (y, ladj)
    }
}

impl<B: Backend> Invertible<B> for ResidualAutoregressive<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let params = self.params(y.clone());
        self.kind.inverse(y, params)
    }
}
