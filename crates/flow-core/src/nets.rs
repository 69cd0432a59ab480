//! Small networks used as conditioners.

use burn::{
    module::Module,
    nn::{Initializer, Linear, LinearConfig},
    tensor::{Tensor, activation, backend::Backend},
};

use std::{ops::Range, sync::Arc};

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
        relu_linear(self.hidden.iter().chain([&self.out]), x, false)
    }
}

/// `x: [n, d_0]` through ReLU layers given as `(W_l: [d_l, d_{l+1}], b_l: [d_{l+1}])`:
/// `h_{l+1} = relu(h_l W_l + b_l)`, the last layer without the ReLU unless `relu_last`.
///
/// On the CPU backends (features `flex`, `ndarray`) the whole network, forward and
/// backward, is one fused kernel ([`crate::host::relu_mlp`]; on one input feature its
/// first two layers go through the first layer's kinks, exactly and ~`d_1` times cheaper);
/// elsewhere (and for more than [`crate::host::MAX_LAYERS`] layers there) it is burn's
/// tensor operations.
///
/// # Panics
/// If the shapes do not chain (as burn's `matmul`).
pub fn relu_layers<B: Backend>(
    layers: &[(Tensor<B, 2>, Tensor<B, 1>)],
    x: Tensor<B, 2>,
    relu_last: bool,
) -> Tensor<B, 2> {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if let Some(out) = crate::host::relu_mlp(&x, layers, relu_last) {
        return out;
    }
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

/// Column-block width of a [`WeightMask`]'s tiles.
pub const TILE: usize = 64;

/// A fixed 0/1 mask `M` of a weight `W: [d_in, d_out]`, held on the host for the CPU
/// kernel ([`crate::host::relu_mlp_masked`]), which applies it itself, block by block.
///
/// `tiles[j]` is the range of rows outside of which the mask's `j`-th block of [`TILE`]
/// columns (the last may be narrower) is zero: the kernel skips the rest. For MADE's masks
/// under a natural or reversed order that is about 45 % of each weight.
#[derive(Debug, Clone)]
pub struct WeightMask {
    /// The mask, row-major `[d_in, d_out]`.
    pub values: Arc<[f32]>,
    /// Per block of [`TILE`] columns, the rows the mask reaches.
    pub tiles: Vec<Range<usize>>,
    /// The kernel's copy: bit `c` of `bits[j·d_in + r]` is `M[r, TILE·j + c] ≠ 0` (one
    /// 64-bit word per row and block, 1/32 of the values' memory traffic).
    bits: Arc<[u64]>,
}

impl WeightMask {
    /// The mask of a `[d_in, d_out]` weight whose entry `(i, o)` is kept iff `allowed(i, o)`.
    pub fn new(d_in: usize, d_out: usize, allowed: impl Fn(usize, usize) -> bool) -> Self {
        let values = (0..d_in * d_out)
            .map(|e| {
                if allowed(e / d_out, e % d_out) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let tiles = (0..d_out.div_ceil(TILE))
            .map(|j| {
                let cols = j * TILE..((j + 1) * TILE).min(d_out);
                let used = |i: usize| cols.clone().any(|o| allowed(i, o));
                match (0..d_in).position(used) {
                    Some(lo) => lo..d_in - (0..d_in).rev().position(used).unwrap_or(0),
                    None => 0..0,
                }
            })
            .collect();
        let bits = (0..d_out.div_ceil(TILE) * d_in)
            .map(|e| {
                let (j, i) = (e / d_in, e % d_in);
                let cols = j * TILE..((j + 1) * TILE).min(d_out);
                cols.enumerate()
                    .filter(|&(_, o)| allowed(i, o))
                    .fold(0, |b, (c, _)| b | 1 << c)
            })
            .collect();
        Self {
            values,
            tiles,
            bits,
        }
    }

    /// The mask of row `r` in block `j` of [`TILE`] columns as bits (bit `c`: column
    /// `TILE·j + c`).
    pub(crate) fn row_bits(&self, j: usize, r: usize) -> u64 {
        self.bits[j * (self.bits.len() / self.tiles.len()) + r]
    }
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
