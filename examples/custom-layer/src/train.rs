//! The flow (built-in layers around the custom one), its training loop, saving and loading.

use std::{fmt, path::Path, time::Instant};

use burn::{
    config::Config,
    module::{AutodiffModule, Module},
    optim::{AdamConfig, GradientsParams, Optimizer},
    record::{FullPrecisionSettings, NamedMpkFileRecorder, RecorderError},
    tensor::{
        ElementConversion, Tensor,
        backend::{AutodiffBackend, Backend},
    },
};
use flow_core::{
    Elementwise, Flow, FlowError, MaskedAutoregressive, MaskedAutoregressiveConfig, Permutation,
    StandardNormal,
};

use crate::{
    sinh_arcsinh::{SinhArcsinh, SinhArcsinhConfig},
    target::{self, Sampler},
};

/// The data's dimension.
pub const DIM: usize = 2;

/// One block, applied left to right in the generative direction: a masked autoregressive
/// affine layer (built in), the sinh-arcsinh map (ours), a reversal of the features
/// (built in). A tuple of transforms is a transform, and a burn module.
pub type Block<B> = (MaskedAutoregressive<B>, SinhArcsinh<B>, Permutation<B>);

/// The whole model: `N(0, I)` pushed through `blocks` blocks (a `Vec` of transforms is a
/// transform too, index 0 first).
pub type Model<B> = Flow<B, StandardNormal, Vec<Block<B>>>;

/// What to build and how long to train it.
#[derive(Config, Debug)]
pub struct FitConfig {
    /// Number of blocks.
    #[config(default = 3)]
    pub blocks: usize,
    /// Width of each MADE's two hidden layers.
    #[config(default = 32)]
    pub hidden: usize,
    /// Adam steps.
    #[config(default = 400)]
    pub steps: usize,
    /// Fresh samples per step.
    #[config(default = 256)]
    pub batch: usize,
    /// Adam's learning rate.
    #[config(default = 5e-3)]
    pub lr: f64,
    /// Held-out points the log-likelihood is measured on.
    #[config(default = 4096)]
    pub test_size: usize,
    /// Seed of the initial weights and of the data streams.
    #[config(default = 0)]
    pub seed: u64,
    /// Print the training loss every this many steps (0: never).
    #[config(default = 0)]
    pub log_every: usize,
}

/// Builds the flow at (or near) the identity: the MADEs' last layers are zero and the
/// sinh-arcsinh maps start at `ε = 0, δ = 1`.
pub fn build<B: Backend>(config: &FitConfig, device: &B::Device) -> flow_core::Result<Model<B>> {
    let blocks = (0..config.blocks)
        .map(|_| {
            let maf = MaskedAutoregressiveConfig::new(DIM, Elementwise::affine())
                .with_hidden(config.hidden)
                .init(device)?;
            let sas = SinhArcsinhConfig::new(DIM).init(device)?;
            Ok((maf, sas, Permutation::reverse(DIM, device)?))
        })
        .collect::<flow_core::Result<Vec<_>>>()?;
    // `Flow::new` checks that every layer has the base distribution's dimension.
    Flow::new(StandardNormal::new(DIM)?, blocks)
}

/// The mean of `ln q(x)` over the rows of `x: [n, 2]`.
pub fn mean_log_prob<B: Backend>(flow: &Model<B>, x: Tensor<B, 2>) -> flow_core::Result<f64> {
    Ok(flow.log_prob(x, None)?.mean().into_scalar().elem())
}

/// What a fit measured, on the same held-out points.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Mean log-likelihood of the untrained flow.
    pub before: f64,
    /// Mean log-likelihood after training.
    pub after: f64,
    /// The target density's own mean log-density: the best any model can do.
    pub target: f64,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
}

/// Why a fit stopped.
#[derive(Debug)]
pub enum FitError {
    /// flow-core rejected a configuration or an input.
    Flow(FlowError),
    /// The loss became NaN or infinite at this step (1-based): try a smaller `lr`.
    Diverged {
        /// The step.
        step: usize,
    },
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitError::Flow(e) => e.fmt(f),
            FitError::Diverged { step } => write!(
                f,
                "training diverged at step {step} (non-finite loss); try a smaller learning rate"
            ),
        }
    }
}

impl std::error::Error for FitError {}

impl From<FlowError> for FitError {
    fn from(e: FlowError) -> Self {
        FitError::Flow(e)
    }
}

/// Builds the flow and fits it to the toy density ([`crate::target`]) by maximum
/// likelihood with Adam, on fresh samples every step. Returns the trained flow, without
/// autodiff, and the log-likelihoods before and after.
pub fn fit<B: AutodiffBackend>(
    config: &FitConfig,
    device: &B::Device,
) -> Result<(Model<B::InnerBackend>, Fit), FitError> {
    B::seed(device, config.seed);
    let mut flow = build::<B>(config, device)?;
    let test_points = Sampler::new(config.seed.wrapping_add(1)).points(config.test_size);
    let test = target::to_tensor::<B::InnerBackend>(&test_points, device);
    let before = mean_log_prob(&flow.valid(), test.clone())?;

    let mut data = Sampler::new(config.seed);
    let mut optim = AdamConfig::new().init();
    let started = Instant::now();
    for step in 1..=config.steps {
        let x = data.tensor::<B>(config.batch, device);
        let loss = flow.log_prob(x, None)?.mean().neg();
        if config.log_every > 0 && (step % config.log_every == 0 || step == config.steps) {
            // A read back to the host: only at logging steps.
            let value: f64 = loss.clone().into_scalar().elem();
            if !value.is_finite() {
                return Err(FitError::Diverged { step });
            }
            println!("step {step:>5}  loss {value:.4}");
        }
        let grads = GradientsParams::from_grads(loss.backward(), &flow);
        flow = optim.step(config.lr, flow, grads);
    }
    let seconds = started.elapsed().as_secs_f64();

    let flow = flow.valid();
    let after = mean_log_prob(&flow, test)?;
    if !after.is_finite() {
        return Err(FitError::Diverged { step: config.steps });
    }
    let fit = Fit {
        before,
        after,
        target: target::mean_log_prob(&test_points),
        seconds,
    };
    Ok((flow, fit))
}

/// burn's recorder for the weights: named MessagePack, full precision.
pub type Weights = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Saves the flow's parameters to `path` (burn adds the `.mpk` extension).
pub fn save<B: Backend>(flow: Model<B>, path: &Path) -> Result<(), RecorderError> {
    flow.save_file(path, &Weights::new())
}

/// Loads parameters saved by [`save`] into a flow built from the same `config` (the
/// record holds weights, not the architecture).
pub fn load<B: Backend>(
    config: &FitConfig,
    path: &Path,
    device: &B::Device,
) -> Result<Model<B>, Box<dyn std::error::Error>> {
    let flow = build::<B>(config, device)?;
    Ok(flow.load_file(path, &Weights::new(), device)?)
}
