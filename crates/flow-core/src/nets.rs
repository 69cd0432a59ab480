//! Small networks used as conditioners.

use burn::{
    module::Module,
    nn::{Initializer, Linear, LinearConfig},
    tensor::{Tensor, activation, backend::Backend},
};

use crate::{
    error::{FlowError, Result},
    kernels,
};

/// A ReLU multilayer perceptron `in → hidden × n_hidden → out` whose last layer starts at
/// zero, so that a conditioner built from it makes a new flow start at the identity.
///
/// With [`Mlp::with_dropout`], every hidden activation is dropped with probability `p`
/// (and the kept ones scaled by `1/(1 − p)`) when the backend records gradients
/// (training); evaluation on the inner backend (`valid()`) is deterministic.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    hidden: Vec<Linear<B>>,
    out: Linear<B>,
    dropout: f64,
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
            dropout: 0.0,
        })
    }

    /// The network with dropout probability `p ∈ [0, 1)` on its hidden activations in
    /// training.
    pub fn with_dropout(mut self, p: f64) -> Result<Self> {
        self.dropout = check_dropout(p)?;
        Ok(self)
    }

    /// `[batch, d_in] -> [batch, d_out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        if !dropout_active::<B>(self.dropout, &x.device()) {
            return relu_linear(self.hidden.iter().chain([&self.out]), x, false);
        }
        let h = self.hidden.iter().fold(x, |h, layer| {
            dropout(activation::relu(layer.forward(h)), self.dropout)
        });
        self.out.forward(h)
    }
}

/// `p` if it is a dropout probability in `[0, 1)`.
pub(crate) fn check_dropout(p: f64) -> Result<f64> {
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(FlowError::InvalidConfig(format!(
            "dropout must be in [0, 1), got {p}"
        )))
    }
}

/// Whether dropout `p` applies: `p > 0` on a backend that records gradients.
pub(crate) fn dropout_active<B: Backend>(p: f64, device: &B::Device) -> bool {
    p > 0.0 && B::ad_enabled(device)
}

/// burn's (inverted) dropout with probability `p` on `h` (active only where gradients are
/// recorded; the module is built per call so that models store only `p`, keeping their
/// records as they were).
pub(crate) fn dropout<B: Backend, const D: usize>(h: Tensor<B, D>, p: f64) -> Tensor<B, D> {
    burn::nn::DropoutConfig::new(p).init().forward(h)
}

/// `x: [n, d_0]` through ReLU layers given as `(W_l: [d_l, d_{l+1}], b_l: [d_{l+1}])`:
/// `h_{l+1} = relu(h_l W_l + b_l)`, the last layer without the ReLU unless `relu_last`.
///
/// On the CPU backends (features `flex`, `ndarray`) the whole network, forward and
/// backward, is one fused kernel ([`crate::kernels`]; on one input feature its first two
/// layers go through the first layer's kinks, exactly and ~`d_1` times cheaper); elsewhere
/// it is [`relu_layers_reference`].
///
/// # Panics
/// If the shapes do not chain (as burn's `matmul`).
pub fn relu_layers<B: Backend>(
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    x: Tensor<B, 2>,
    relu_last: bool,
) -> Tensor<B, 2> {
    kernels::relu_mlp(&x, layers, relu_last)
        .unwrap_or_else(|| relu_layers_reference(layers, x, relu_last))
}

/// [`relu_layers`] as burn's tensor operations.
pub fn relu_layers_reference<B: Backend>(
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    x: Tensor<B, 2>,
    relu_last: bool,
) -> Tensor<B, 2> {
    let last = layers.len().saturating_sub(1);
    layers.iter().enumerate().fold(x, |h, (l, (w, b))| {
        let z = h.matmul(w.clone()) + b.clone().unsqueeze();
        if l < last || relu_last {
            activation::relu(z)
        } else {
            z
        }
    })
}

/// [`relu_layers`] on burn `Linear` layers (a layer without a bias adds zeros).
///
/// ```
/// use burn::{backend::NdArray, nn::LinearConfig, tensor::Tensor};
/// use flow_core::nets::relu_linear;
///
/// let device = Default::default();
/// let layers = [
///     LinearConfig::new(3, 8).init::<NdArray>(&device),
///     LinearConfig::new(8, 2).init(&device),
/// ];
/// let y = relu_linear(&layers, Tensor::<NdArray, 2>::ones([4, 3], &device), false);
/// assert_eq!(y.dims(), [4, 2]);
/// ```
pub fn relu_linear<'a, B: Backend>(
    layers: impl IntoIterator<Item = &'a Linear<B>>,
    x: Tensor<B, 2>,
    relu_last: bool,
) -> Tensor<B, 2> {
    let params: Vec<_> = layers
        .into_iter()
        .map(|layer| {
            let w = layer.weight.val();
            let b = match &layer.bias {
                Some(b) => b.val(),
                None => Tensor::zeros([w.dims()[1]], &w.device()),
            };
            (w, b)
        })
        .collect();
    relu_layers(&params, x, relu_last)
}
