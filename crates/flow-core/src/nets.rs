//! Small networks used as conditioners.

use burn::{
    module::Module,
    nn::{Initializer, Linear, LinearConfig},
    tensor::{Tensor, activation, backend::Backend},
};

use crate::error::{FlowError, Result};

/// A ReLU multilayer perceptron `in → hidden × n_hidden → out` whose last layer starts at
/// zero, so that a conditioner built from it makes a new flow start at the identity.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    hidden: Vec<Linear<B>>,
    out: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Builds the network. `n_hidden` may be 0 (then it is one linear map).
    pub fn new(
        d_in: usize,
        hidden: usize,
        n_hidden: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Result<Self> {
        if d_in == 0 || d_out == 0 || (n_hidden > 0 && hidden == 0) {
            return Err(FlowError::InvalidConfig(format!(
                "MLP needs positive widths, got in={d_in}, hidden={hidden}×{n_hidden}, out={d_out}"
            )));
        }
        let mut layers = Vec::with_capacity(n_hidden);
        let mut width = d_in;
        for _ in 0..n_hidden {
            layers.push(LinearConfig::new(width, hidden).init(device));
            width = hidden;
        }
        let out = LinearConfig::new(width, d_out)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Ok(Self {
            hidden: layers,
            out,
        })
    }

    /// `[batch, d_in] -> [batch, d_out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut h = x;
        for layer in &self.hidden {
            h = activation::relu(layer.forward(h));
        }
        self.out.forward(h)
    }
}
