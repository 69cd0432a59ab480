//! The VAE's networks: the MLP (default) or the Sylvester paper's gated convolutional
//! encoder and decoder (van den Berg et al. 2018, after Tomczak & Welling's Householder-flow
//! code), for 28×28 single-channel images.
//!
//! A gated layer is `h(x) ⊙ σ(g(x))` with two convolutions `h`, `g` of the same shape
//! (Dauphin et al. 2017's gated linear unit, in convolutions). With `(in → out, kernel k,
//! stride s, padding p)`:
//!
//! - encoder: `1→32 k5 s1 p2`, `32→32 k5 s2 p2`, `32→64 k5 s1 p2`, `64→64 k5 s2 p2`,
//!   `64→64 k5 s1 p2`, `64→256 k7 s1 p0` (28 → 28 → 14 → 14 → 7 → 7 → 1): 256 features,
//!   which one linear layer maps to `(μ, ln σ², θ)` (the flow's parameters) and which IAF
//!   reads as its context;
//! - decoder (transposed convolutions, mirrored): `z→64 k7 s1 p0`, `64→64 k5 s1 p2`,
//!   `64→32 k5 s2 p2 (output padding 1)`, `32→32 k5 s1 p2`, `32→32 k5 s2 p2 (op 1)`,
//!   `32→32 k5 s1 p2` (1 → 7 → 7 → 14 → 14 → 28 → 28), then a `1×1` convolution to the
//!   Bernoulli logits.

use burn::{
    module::{Module, Param},
    nn::{
        PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig},
    },
    tensor::{Tensor, activation::sigmoid, backend::Backend},
};
use serde::{Deserialize, Serialize};

/// Which networks encode and decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// ReLU MLPs of `--encoder-hidden` and `--decoder-hidden` widths.
    #[default]
    Mlp,
    /// The Sylvester paper's gated convolutions (28×28 images only); see the
    /// [module docs](self).
    GatedConv,
}

/// Side of the images the gated-conv networks take.
pub const SIDE: usize = 28;

/// Features the gated-conv encoder produces.
pub const FEATURES: usize = 256;

/// `(in, out, kernel, stride, padding)` of the encoder's layers.
const ENCODER: [(usize, usize, usize, usize, usize); 6] = [
    (1, 32, 5, 1, 2),
    (32, 32, 5, 2, 2),
    (32, 64, 5, 1, 2),
    (64, 64, 5, 2, 2),
    (64, 64, 5, 1, 2),
    (64, FEATURES, 7, 1, 0),
];

/// `(out, kernel, stride, padding, output padding)` of the decoder's layers (the first
/// takes the latent `z` as its channels).
const DECODER: [(usize, usize, usize, usize, usize); 6] = [
    (64, 7, 1, 0, 0),
    (64, 5, 1, 2, 0),
    (32, 5, 2, 2, 1),
    (32, 5, 1, 2, 0),
    (32, 5, 2, 2, 1),
    (32, 5, 1, 2, 0),
];

/// `h(x) ⊙ σ(g(x))` with two convolutions.
#[derive(Module, Debug)]
pub struct GatedConv2d<B: Backend> {
    h: Conv2d<B>,
    g: Conv2d<B>,
}

impl<B: Backend> GatedConv2d<B> {
    fn new(
        (c_in, c_out, k, s, p): (usize, usize, usize, usize, usize),
        device: &B::Device,
    ) -> Self {
        let conv = || {
            Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device)
        };
        Self {
            h: conv(),
            g: conv(),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.h.forward(x.clone()) * sigmoid(self.g.forward(x))
    }
}

/// `h(x) ⊙ σ(g(x))` with two transposed convolutions.
#[derive(Module, Debug)]
pub struct GatedConvTranspose2d<B: Backend> {
    h: ConvTranspose2d<B>,
    g: ConvTranspose2d<B>,
}

impl<B: Backend> GatedConvTranspose2d<B> {
    fn new(
        c_in: usize,
        (c_out, k, s, p, op): (usize, usize, usize, usize, usize),
        device: &B::Device,
    ) -> Self {
        let conv = || {
            ConvTranspose2dConfig::new([c_in, c_out], [k, k])
                .with_stride([s, s])
                .with_padding([p, p])
                .with_padding_out([op, op])
                .init(device)
        };
        Self {
            h: conv(),
            g: conv(),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.h.forward(x.clone()) * sigmoid(self.g.forward(x))
    }
}

/// The gated convolutional encoder: images `[n, 784]` → features `[n, 256]`.
#[derive(Module, Debug)]
pub struct ConvEncoder<B: Backend> {
    layers: Vec<GatedConv2d<B>>,
}

impl<B: Backend> ConvEncoder<B> {
    /// The paper's encoder.
    pub fn new(device: &B::Device) -> Self {
        Self {
            layers: ENCODER
                .iter()
                .map(|&l| GatedConv2d::new(l, device))
                .collect(),
        }
    }

    /// Features `[n, 256]` of images `x: [n, 784]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [n, _] = x.dims();
        let x = x.reshape([n, 1, SIDE, SIDE]);
        let h = self.layers.iter().fold(x, |h, l| l.forward(h));
        h.reshape([n, FEATURES])
    }
}

/// The gated transposed-convolutional decoder: latents `[n, d]` → logits `[n, 784]`.
#[derive(Module, Debug)]
pub struct ConvDecoder<B: Backend> {
    layers: Vec<GatedConvTranspose2d<B>>,
    logits: Conv2d<B>,
}

impl<B: Backend> ConvDecoder<B> {
    /// The paper's decoder for a `latent`-dimensional `z`.
    pub fn new(latent: usize, device: &B::Device) -> Self {
        let mut c_in = latent;
        let layers = DECODER
            .iter()
            .map(|&l| {
                let layer = GatedConvTranspose2d::new(c_in, l, device);
                c_in = l.0;
                layer
            })
            .collect();
        Self {
            layers,
            logits: Conv2dConfig::new([c_in, 1], [1, 1]).init(device),
        }
    }

    /// Bernoulli logits `[n, 784]` of latents `z: [n, d]`.
    pub fn forward(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        let [n, d] = z.dims();
        let h = self
            .layers
            .iter()
            .fold(z.reshape([n, d, 1, 1]), |h, l| l.forward(h));
        self.logits.forward(h).reshape([n, SIDE * SIDE])
    }
}

/// `(name, shape)` of every parameter of a stored encoder.
pub fn encoder_shapes<B: Backend>(record: &ConvEncoderRecord<B>) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, l) in record.layers.iter().enumerate() {
        for (part, conv) in [("h", &l.h), ("g", &l.g)] {
            out.extend(conv_shapes(
                &format!("conv_encoder.{i}.{part}"),
                &conv.weight,
                &conv.bias,
            ));
        }
    }
    out
}

/// `(name, shape)` of every parameter of a stored decoder.
pub fn decoder_shapes<B: Backend>(record: &ConvDecoderRecord<B>) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, l) in record.layers.iter().enumerate() {
        for (part, conv) in [("h", &l.h), ("g", &l.g)] {
            out.extend(conv_shapes(
                &format!("conv_decoder.{i}.{part}"),
                &conv.weight,
                &conv.bias,
            ));
        }
    }
    let logits = &record.logits;
    out.extend(conv_shapes(
        "conv_decoder.logits",
        &logits.weight,
        &logits.bias,
    ));
    out
}

fn conv_shapes<B: Backend>(
    name: &str,
    weight: &Param<Tensor<B, 4>>,
    bias: &Option<Param<Tensor<B, 1>>>,
) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![(format!("{name}.weight"), weight.dims().to_vec())];
    if let Some(b) = bias {
        out.push((format!("{name}.bias"), b.dims().to_vec()));
    }
    out
}
