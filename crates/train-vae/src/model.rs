//! The VAE: MLP encoder → diagonal Gaussian `q₀` → amortized flow → MLP Bernoulli decoder.
//!
//! With `h = enc(x)` split into `(μ, ln σ², θ₁ … θ_K)`:
//! - `z₀ = μ + σ ⊙ ε`, `ε ~ N(0, I)`, `ln q₀(z₀|x) = −(d/2) ln 2π − Σ (½ ln σ² + ε²/2)`;
//! - `z_K = f_K ∘ … ∘ f₁(z₀)` with step `k` parameterized by `θ_k(x)`
//!   ([`crate::posterior`]), so `ln q_K(z_K|x) = ln q₀(z₀|x) − Σ_k ln|det J_k|`; for IAF
//!   the steps are MADEs of the model reading the encoder's last hidden layer as context
//!   ([`crate::posterior::iaf`]);
//! - `ln p(x|z_K) = Σ_j x_j l_j − softplus(l_j)` with logits `l = dec(z_K)` (Bernoulli);
//! - prior `p(z) = N(0, I)`.
//!
//! Per data point, `recon = −ln p(x|z_K)` and `kl = ln q_K(z_K|x) − ln p(z_K)` (a one-sample
//! estimate of the KL term); the negative ELBO is `recon + kl` and the training loss
//! `recon + β·kl` (KL warm-up). Every term is computed on the backend's device.

use burn::{
    module::{Module, ModuleVisitor, Param},
    nn::{Linear, LinearConfig},
    tensor::{Distribution, Tensor, backend::Backend},
};
use flow_core::{
    Amortized, AmortizedStep, Transform,
    nets::relu_linear,
    ops::{
        HALF_LN_2PI, bernoulli_log_likelihood, logaddexp, logsumexp, std_normal_log_prob, sum_rows,
        tile_rows,
    },
};
use serde::{Deserialize, Serialize};

use crate::{
    arch::{self, Arch, ConvDecoder, ConvEncoder},
    error::VaeError,
    posterior::{self, FlowKind, iaf::IafUpdate},
};

/// Shape of the model (everything needed to rebuild it before loading a checkpoint).
///
/// In a config file every key may be left out and takes its default, except that a
/// missing `iaf_update` reads as `affine` (runs written before the gated update existed
/// have no such key; the command line's default is `gated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Pixels per image (784 for MNIST).
    pub input: usize,
    /// The encoder's and decoder's networks (`gated-conv` needs 28×28 images).
    #[serde(default)]
    pub arch: Arch,
    /// Hidden widths of the encoder MLP (ReLU).
    pub encoder_hidden: Vec<usize>,
    /// Hidden widths of the decoder MLP (ReLU).
    pub decoder_hidden: Vec<usize>,
    /// Latent dimension.
    pub latent: usize,
    /// Posterior flow.
    pub flow: FlowKind,
    /// Number of flow steps `K` (0 only with `flow = none`).
    pub n_flows: usize,
    /// Width of the hidden layers of each IAF step's MADE.
    #[serde(default = "default_iaf_hidden")]
    pub iaf_hidden: usize,
    /// Hidden layers of each IAF step's MADE.
    #[serde(default = "default_iaf_layers")]
    pub iaf_layers: usize,
    /// The IAF steps' element-wise update (a config file without the key is an older run:
    /// affine).
    #[serde(default = "IafUpdate::affine")]
    pub iaf_update: IafUpdate,
    /// The gated IAF update's forget-gate bias `β` (`σ = sigmoid(s + β)`; default 1).
    #[serde(default = "default_iaf_forget_bias")]
    pub iaf_forget_bias: f64,
    /// Orthonormal columns `M` of each O-SNF step's `Q` (`flow = sylvester-o`;
    /// `1 ≤ M ≤ latent`; default 16).
    #[serde(default = "default_ortho_vecs")]
    pub ortho_vecs: usize,
    /// Householder reflections `H` per H-SNF step (`flow = sylvester-h`).
    #[serde(default = "default_householder")]
    pub householder: usize,
}

/// The Sylvester paper's `M = D/2` for the default `D = 32` (its tables: `M = 32` at
/// `D = 64`). A square `Q` (`M = D`) also works, at about 5× the cost of the
/// orthogonalization, whose iteration converges slowly for nearly singular square matrices.
fn default_ortho_vecs() -> usize {
    16
}

fn default_householder() -> usize {
    8
}

fn default_iaf_hidden() -> usize {
    320
}

fn default_iaf_forget_bias() -> f64 {
    1.0
}

fn default_iaf_layers() -> usize {
    1
}

impl Default for ModelConfig {
    /// The PyTorch peer's `--variant amortised`: 784-512-256 → 32, 10 planar steps,
    /// 32-256-512-784.
    fn default() -> Self {
        Self {
            input: 784,
            arch: Arch::Mlp,
            encoder_hidden: vec![512, 256],
            decoder_hidden: vec![256, 512],
            latent: 32,
            flow: FlowKind::Planar,
            n_flows: 10,
            iaf_hidden: default_iaf_hidden(),
            iaf_layers: default_iaf_layers(),
            iaf_update: IafUpdate::Gated,
            iaf_forget_bias: default_iaf_forget_bias(),
            ortho_vecs: default_ortho_vecs(),
            householder: default_householder(),
        }
    }
}

impl ModelConfig {
    /// The amortized family of the posterior (`None` for none and IAF).
    pub fn amortized_step(&self) -> Option<AmortizedStep> {
        self.flow.amortized(self.ortho_vecs, self.householder)
    }

    /// Encoder outputs per data point: `2·latent + K·P`.
    pub fn encoder_outputs(&self) -> usize {
        let per_step = self
            .amortized_step()
            .map_or(0, |step| step.params_per_step(self.latent));
        2 * self.latent + self.flow_steps() * per_step
    }

    /// Flow steps actually run (0 for `none`).
    pub fn flow_steps(&self) -> usize {
        if self.flow == FlowKind::None {
            0
        } else {
            self.n_flows
        }
    }

    /// Rejects impossible shapes.
    pub fn validate(&self) -> Result<(), VaeError> {
        let bad = |field: &str, reason: String| {
            Err(VaeError::Config {
                field: field.to_string(),
                reason,
            })
        };
        if self.input == 0 {
            return bad("input", "must be positive".into());
        }
        if self.latent == 0 {
            return bad("latent", "must be positive".into());
        }
        if self.arch == Arch::GatedConv && self.input != arch::SIDE * arch::SIDE {
            return bad(
                "arch",
                format!(
                    "gated-conv takes {s}×{s} images ({} pixels), these have {}",
                    arch::SIDE * arch::SIDE,
                    self.input,
                    s = arch::SIDE
                ),
            );
        }
        for (field, widths) in [
            ("encoder-hidden", &self.encoder_hidden),
            ("decoder-hidden", &self.decoder_hidden),
        ] {
            if widths.contains(&0) {
                return bad(field, format!("widths must be positive, got {widths:?}"));
            }
        }
        if self.flow != FlowKind::None && self.n_flows == 0 {
            return bad(
                "n-flows",
                format!(
                    "--flow {} needs at least one step (use --flow none for none)",
                    self.flow
                ),
            );
        }
        match self.flow {
            FlowKind::SylvesterO if self.ortho_vecs == 0 || self.ortho_vecs > self.latent => {
                return bad(
                    "ortho-vecs",
                    format!(
                        "--flow sylvester-o needs 1 ≤ M ≤ latent ({}) orthonormal columns, \
                         got {}",
                        self.latent, self.ortho_vecs
                    ),
                );
            }
            FlowKind::SylvesterH if self.householder == 0 => {
                return bad(
                    "householder",
                    "--flow sylvester-h needs at least one reflection per step".into(),
                );
            }
            _ => {}
        }
        if self.flow == FlowKind::Iaf {
            if self.encoder_hidden.is_empty() && self.arch == Arch::Mlp {
                return bad(
                    "encoder-hidden",
                    "--flow iaf reads the last hidden encoder layer: give at least one".into(),
                );
            }
            if self.iaf_hidden == 0 || self.iaf_layers == 0 {
                return bad(
                    "iaf-hidden",
                    format!(
                        "IAF MADEs need positive sizes, got {}×{}",
                        self.iaf_hidden, self.iaf_layers
                    ),
                );
            }
            if !self.iaf_forget_bias.is_finite() {
                return bad(
                    "iaf-forget-bias",
                    format!("must be finite, got {}", self.iaf_forget_bias),
                );
            }
        }
        Ok(())
    }

    /// Builds the model with PyTorch's default `Linear` initialization
    /// (`W, b ~ U(±1/√fan_in)`), as the peer does.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Vae<B>, VaeError> {
        self.validate()?;
        let mlp = |sizes: Vec<usize>| -> Vec<Linear<B>> {
            sizes
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect()
        };
        let conv = self.arch == Arch::GatedConv;
        let (enc, dec) = if conv {
            // One linear layer from the convolutions' features; the decoder is all
            // convolutions.
            (vec![arch::FEATURES, self.encoder_outputs()], Vec::new())
        } else {
            let enc = [
                vec![self.input],
                self.encoder_hidden.clone(),
                vec![self.encoder_outputs()],
            ];
            let dec = [
                vec![self.latent],
                self.decoder_hidden.clone(),
                vec![self.input],
            ];
            (enc.concat(), dec.concat())
        };
        let iaf = if self.flow == FlowKind::Iaf {
            let context = if conv {
                arch::FEATURES
            } else {
                self.encoder_hidden.last().copied().unwrap_or(self.input)
            };
            posterior::iaf::build(
                self.n_flows,
                self.latent,
                self.iaf_hidden,
                self.iaf_layers,
                self.iaf_update,
                self.iaf_forget_bias,
                context,
                device,
            )
            .map_err(|e| VaeError::Config {
                field: "iaf-hidden".into(),
                reason: e.to_string(),
            })?
        } else {
            Vec::new()
        };
        let vae = Vae {
            conv_encoder: conv.then(|| ConvEncoder::new(device)),
            conv_decoder: conv.then(|| ConvDecoder::new(self.latent, device)),
            encoder: mlp(enc),
            decoder: mlp(dec),
            iaf,
            amortized: match self.amortized_step() {
                Some(step) if self.flow_steps() > 0 => Some(
                    Amortized::new(step, self.latent, self.flow_steps()).map_err(|e| {
                        VaeError::Config {
                            field: "flow".into(),
                            reason: e.to_string(),
                        }
                    })?,
                ),
                _ => None,
            },
            flow: self.flow,
            n_flows: self.flow_steps(),
            latent: self.latent,
        };
        // burn initializes parameters lazily, at first use, and a clone of a module whose
        // parameters are still uninitialized draws its own values. Drawing them now ties
        // the weights to the backend seed at construction and makes clones identical.
        vae.visit(&mut Materialize);
        Ok(vae)
    }
}

/// Forces the (lazy) initialization of every parameter.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// The VAE module. Build it with [`ModelConfig::init`].
#[derive(Module, Debug)]
pub struct Vae<B: Backend> {
    /// The gated convolutions before `encoder` (`arch = gated-conv`).
    conv_encoder: Option<ConvEncoder<B>>,
    /// The gated transposed convolutions that replace `decoder` (`arch = gated-conv`).
    conv_decoder: Option<ConvDecoder<B>>,
    /// The encoder MLP (with `gated-conv`: its one output layer).
    encoder: Vec<Linear<B>>,
    /// The decoder MLP (empty with `gated-conv`).
    decoder: Vec<Linear<B>>,
    /// IAF steps (empty unless `flow = iaf`).
    iaf: Vec<posterior::iaf::Step<B>>,
    /// Amortized steps (planar, radial, Householder, Sylvester) whose parameters the
    /// encoder emits (`None` for the other kinds); no parameters of its own.
    #[module(skip)]
    amortized: Option<Amortized<B>>,
    #[module(skip)]
    flow: FlowKind,
    #[module(skip)]
    n_flows: usize,
    #[module(skip)]
    latent: usize,
}

/// Per-data-point terms of the negative ELBO, `[n]` each, on the device.
#[derive(Debug, Clone)]
pub struct Terms<B: Backend> {
    /// `−ln p(x|z_K)`.
    pub recon: Tensor<B, 1>,
    /// `ln q_K(z_K|x) − ln p(z_K)`.
    pub kl: Tensor<B, 1>,
}

/// The encoder's output `[n, 2·latent + K·P]` and its last hidden layer (the IAF context).
#[derive(Debug, Clone)]
pub struct Encoded<B: Backend> {
    /// `(μ, ln σ², θ₁ … θ_K)`.
    pub out: Tensor<B, 2>,
    /// The last hidden activation (the images if the encoder has no hidden layer), kept
    /// only when the posterior needs it (IAF's context).
    pub hidden: Option<Tensor<B, 2>>,
}

impl<B: Backend> Vae<B> {
    /// Latent dimension.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// The encoder's output and last hidden layer for images `x: [n, input]`.
    pub fn encode(&self, x: Tensor<B, 2>) -> Encoded<B> {
        let keep = self.flow == FlowKind::Iaf;
        if self.conv_encoder.is_none() && !keep {
            let out = relu_linear(&self.encoder, x, false);
            return Encoded { out, hidden: None };
        }
        let (last, hidden) = self.encoder.split_last().expect("an MLP has a layer");
        let hidden = match &self.conv_encoder {
            Some(conv) => conv.forward(x),
            None => relu_linear(hidden, x, true),
        };
        let out = last.forward(hidden.clone());
        Encoded {
            out,
            hidden: keep.then_some(hidden),
        }
    }

    /// Bernoulli logits `[n, input]` for latents `z: [n, latent]`.
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.conv_decoder {
            Some(conv) => conv.forward(z),
            None => relu_linear(&self.decoder, z, false),
        }
    }

    /// One posterior sample per encoded row: `(z_K, ln q_K(z_K|x))`, its noise drawn on
    /// the device.
    pub fn sample_posterior(&self, enc: Encoded<B>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let n = enc.out.dims()[0];
        let device = enc.out.device();
        let eps = Tensor::random([n, self.latent], Distribution::Normal(0.0, 1.0), &device);
        self.sample_posterior_with(enc, eps)
    }

    /// [`Vae::sample_posterior`] with the reparameterization's noise given:
    /// `z₀ = μ + σ ⊙ ε`, `eps: [n, latent]` standard normal.
    pub fn sample_posterior_with(
        &self,
        enc: Encoded<B>,
        eps: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        self.sample_tiled(enc, eps, 1)
    }

    /// `tiles` posterior samples of each of the `n` encoded rows, `eps: [tiles·n, latent]`:
    /// row `r` of the result is a sample of row `r mod n`. Each row's flow parameters are
    /// prepared once ([`flow_core::Amortized::forward_tiled`]).
    fn sample_tiled(
        &self,
        enc: Encoded<B>,
        eps: Tensor<B, 2>,
        tiles: usize,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let h = enc.out;
        let [n, cols] = h.dims();
        let d = self.latent;
        let tile = |t: Tensor<B, 2>| tile_rows(t, tiles);
        let mu = tile(h.clone().slice([0..n, 0..d]));
        let log_var = tile(h.clone().slice([0..n, d..2 * d]));
        let z0 = mu + log_var.clone().mul_scalar(0.5).exp() * eps.clone();
        let log_q0 = sum_rows(log_var.mul_scalar(0.5) + eps.square().mul_scalar(0.5))
            .neg()
            .sub_scalar(d as f64 * HALF_LN_2PI);
        let (z, ladj) = match &self.amortized {
            Some(flow) => flow.forward_tiled(z0, h.slice([0..n, 2 * d..cols]), tiles),
            None if self.flow == FlowKind::Iaf => {
                let context = enc
                    .hidden
                    .expect("IAF models keep the encoder's last hidden layer");
                self.iaf.forward(z0, Some(&tile(context)))
            }
            None => (z0, Tensor::zeros([n * tiles], &h.device())),
        };
        (z, log_q0 - ladj)
    }

    /// `ln p(x|z)` for Bernoulli logits: `Σ_j x_j l_j − softplus(l_j)`, `[n]`.
    pub fn log_likelihood(x: Tensor<B, 2>, logits: Tensor<B, 2>) -> Tensor<B, 1> {
        bernoulli_log_likelihood(x, logits)
    }

    /// One-sample terms of the negative ELBO for images `x: [n, input]` (values in {0, 1}),
    /// the posterior's noise drawn on the device.
    pub fn terms(&self, x: Tensor<B, 2>) -> Terms<B> {
        let [n, _] = x.dims();
        let eps = Tensor::random(
            [n, self.latent],
            Distribution::Normal(0.0, 1.0),
            &x.device(),
        );
        self.terms_with(x, eps)
    }

    /// [`Vae::terms`] with the posterior's noise given (`eps: [n, latent]`): what training
    /// uses, its noise drawn with the batch, so that a batch split across devices is the
    /// same computation as the whole batch on one.
    pub fn terms_with(&self, x: Tensor<B, 2>, eps: Tensor<B, 2>) -> Terms<B> {
        let (z, log_q) = self.sample_posterior_with(self.encode(x.clone()), eps);
        let log_prior = std_normal_log_prob(z.clone());
        let recon = Self::log_likelihood(x, self.decode(z)).neg();
        Terms {
            recon,
            kl: log_q - log_prior,
        }
    }

    /// Importance-weighted estimates for each image of `x: [n, input]` with `samples`
    /// posterior samples, `rows` samples (at most) per decoder pass:
    /// `(mean_s ln w_s, −ln (1/S) Σ_s w_s)`, where
    /// `ln w_s = ln p(x|z_s) + ln p(z_s) − ln q_K(z_s|x)`. The first is the ELBO, the
    /// second the IW-NLL estimate (Burda et al. 2016), both `[n]` on the device.
    ///
    /// # Panics
    /// When `samples` is 0 (the program's `--iw-samples` and config files reject 0 before
    /// this is reached).
    pub fn importance_weighted(
        &self,
        x: Tensor<B, 2>,
        samples: usize,
        rows: usize,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        assert!(
            samples >= 1,
            "importance_weighted: samples must be at least 1"
        );
        let [n, _] = x.dims();
        let h = self.encode(x.clone());
        let per_pass = (rows / n.max(1)).clamp(1, samples);
        let mut sum: Option<Tensor<B, 1>> = None;
        let mut lse: Option<Tensor<B, 1>> = None;
        let mut done = 0;
        while done < samples {
            let s = per_pass.min(samples - done);
            // Row r of the tiled batch is image r mod n.
            let eps = Tensor::random(
                [s * n, self.latent],
                Distribution::Normal(0.0, 1.0),
                &x.device(),
            );
            let (z, log_q) = self.sample_tiled(h.clone(), eps, s);
            let log_w = Self::log_likelihood(tile_rows(x.clone(), s), self.decode(z.clone()))
                + std_normal_log_prob(z)
                - log_q;
            let log_w = log_w.reshape([s, n]);
            let part_sum = log_w.clone().sum_dim(0).reshape([n]);
            let part_lse = logsumexp(log_w, 0).reshape([n]);
            sum = Some(match sum {
                Some(acc) => acc + part_sum,
                None => part_sum,
            });
            lse = Some(match lse {
                Some(acc) => logaddexp(acc, part_lse),
                None => part_lse,
            });
            done += s;
        }
        let s = samples as f64;
        let elbo = sum.expect("samples ≥ 1").div_scalar(s);
        let nll = lse.expect("samples ≥ 1").sub_scalar(s.ln()).neg();
        (elbo, nll)
    }

    /// Bernoulli means `σ(dec(z))` for `n` prior samples `z ~ N(0, I)`: `[n, input]`.
    pub fn sample_images(&self, n: usize, device: &B::Device) -> Tensor<B, 2> {
        let z = Tensor::random([n, self.latent], Distribution::Normal(0.0, 1.0), device);
        burn::tensor::activation::sigmoid(self.decode(z))
    }

    /// Bernoulli means of reconstructions through one posterior sample: `[n, input]`.
    pub fn reconstruct(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (z, _) = self.sample_posterior(self.encode(x));
        burn::tensor::activation::sigmoid(self.decode(z))
    }
}

impl<B: Backend> Vae<B> {
    /// `(name, shape)` of every parameter, encoder then decoder.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        record_param_shapes(&self.clone().into_record())
    }
}

/// `(name, shape)` of every parameter stored in a model record, in [`Vae::param_shapes`]
/// order (a gated-conv model's convolutions first).
pub fn record_param_shapes<B: Backend>(record: &VaeRecord<B>) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    if let Some(conv) = &record.conv_encoder {
        out.extend(arch::encoder_shapes(conv));
    }
    if let Some(conv) = &record.conv_decoder {
        out.extend(arch::decoder_shapes(conv));
    }
    for (prefix, layers) in [("encoder", &record.encoder), ("decoder", &record.decoder)] {
        for (i, l) in layers.iter().enumerate() {
            out.push((format!("{prefix}.{i}.weight"), l.weight.dims().to_vec()));
            if let Some(b) = &l.bias {
                out.push((format!("{prefix}.{i}.bias"), b.dims().to_vec()));
            }
        }
    }
    out
}
