//! The flow stack chosen on the command line, and saving and loading a fitted one.

use std::path::Path;

use burn::{
    module::Module,
    record::{FullPrecisionSettings, NamedMpkFileRecorder},
    tensor::backend::Backend,
};
use flow_core::{
    BatchNormConfig, CouplingConfig, Elementwise, Flow, Layer, LuLinearConfig,
    MaskedAutoregressiveConfig, Order, Permutation, StandardNormal,
};
use serde::{Deserialize, Serialize};

use density::data::Standardizer;

use crate::error::{Error, Result, other};

/// A fitted density: standard normal base, a stack of layers.
pub type Model<B> = Flow<B, StandardNormal, Vec<Layer<B>>>;

/// The layer family of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Rational-quadratic spline couplings (NSF, Durkan et al. 2019).
    Nsf,
    /// Affine couplings (RealNVP, Dinh et al. 2017).
    Realnvp,
    /// Affine masked autoregressive layers (MAF, Papamakarios et al. 2017).
    Maf,
    /// Spline masked autoregressive layers (autoregressive NSF).
    MafSpline,
}

/// The stack: family, depth, conditioner size, spline shape, mixing and normalization.
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowArgs {
    /// Layer family.
    #[arg(long = "flow", value_enum, default_value_t = Family::Nsf)]
    pub family: Family,
    /// Number of coupling or autoregressive layers.
    #[arg(long, default_value_t = 4, value_parser = crate::args::positive)]
    pub layers: usize,
    /// Width of the conditioners' hidden layers.
    #[arg(long, default_value_t = 128, value_parser = crate::args::positive)]
    pub hidden: usize,
    /// Hidden layers per conditioner.
    #[arg(long, default_value_t = 2, value_parser = crate::args::positive)]
    pub n_hidden: usize,
    /// Spline bins.
    #[arg(long, default_value_t = 8)]
    pub bins: usize,
    /// Spline interval [−B, B] (identity outside).
    #[arg(long, default_value_t = 4.0)]
    pub bound: f64,
    /// Mix the features with an LU linear layer after every layer (instead of a reversal
    /// for couplings, or alternating orders for autoregressive layers).
    #[arg(long)]
    pub lu: bool,
    /// Batch normalization after every layer.
    #[arg(long)]
    pub batchnorm: bool,
}

impl FlowArgs {
    /// Short name for directories: `nsf`, `maf-spline`, ...
    pub fn label(&self) -> String {
        let v = clap::ValueEnum::to_possible_value(&self.family).expect("named");
        v.get_name().to_string()
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ×{} [{}×{}]",
            self.label(),
            self.layers,
            self.hidden,
            self.n_hidden
        );
        if matches!(self.family, Family::Nsf | Family::MafSpline) {
            s += &format!(" K={} B={}", self.bins, self.bound);
        }
        if self.lu {
            s += " +LU";
        }
        if self.batchnorm {
            s += " +BN";
        }
        s
    }

    fn elementwise(&self) -> Elementwise {
        match self.family {
            Family::Nsf | Family::MafSpline => Elementwise::spline(self.bins, self.bound),
            Family::Realnvp | Family::Maf => Elementwise::affine(),
        }
    }
}

/// Builds the stack for `dim` features.
pub fn build<B: Backend>(
    args: &FlowArgs,
    dim: usize,
    seed: u64,
    device: &B::Device,
) -> Result<Model<B>> {
    let kind = args.elementwise();
    let mut layers: Vec<Layer<B>> = Vec::new();
    for i in 0..args.layers {
        match args.family {
            Family::Nsf | Family::Realnvp => {
                layers.push(
                    CouplingConfig::new(dim, kind)
                        .with_hidden(args.hidden)
                        .with_n_hidden(args.n_hidden)
                        .init(device)?
                        .into(),
                );
            }
            Family::Maf | Family::MafSpline => {
                let order = if args.lu || i % 2 == 0 {
                    Order::Natural
                } else {
                    Order::Reversed
                };
                layers.push(
                    MaskedAutoregressiveConfig::new(dim, kind)
                        .with_hidden(args.hidden)
                        .with_n_hidden(args.n_hidden)
                        .with_order(order)
                        .init(device)?
                        .into(),
                );
            }
        }
        if args.batchnorm {
            layers.push(BatchNormConfig::new(dim).init(device)?.into());
        }
        if args.lu {
            let lu =
                LuLinearConfig::new(dim).with_permutation_seed(Some(seed.wrapping_add(i as u64)));
            layers.push(lu.init(device)?.into());
        } else if matches!(args.family, Family::Nsf | Family::Realnvp) {
            layers.push(Permutation::reverse(dim, device)?.into());
        }
    }
    Ok(Flow::new(StandardNormal::new(dim)?, layers)?)
}

/// What `model.json` holds next to the weights.
#[derive(Serialize, Deserialize)]
struct Saved {
    flow: FlowArgs,
    dim: usize,
    standardizer: Standardizer,
}

type Weights = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Saves weights (`model.mpk`) and what is needed to rebuild and use them (`model.json`).
pub fn save<B: Backend>(
    model: &Model<B>,
    flow: &FlowArgs,
    standardizer: &Standardizer,
    dir: &Path,
) -> Result<()> {
    let saved = Saved {
        flow: flow.clone(),
        dim: model.dim(),
        standardizer: standardizer.clone(),
    };
    // The recorder sets the extension itself: write `model-tmp.mpk`, then rename, so that
    // a reader never sees a half-written `model.mpk`.
    model
        .clone()
        .save_file(dir.join("model-tmp"), &Weights::new())
        .map_err(|e| other(format!("saving the model: {e}")))?;
    std::fs::rename(dir.join("model-tmp.mpk"), dir.join("model.mpk"))
        .map_err(|e| other(format!("saving the model: {e}")))?;
    crate::files::write(
        &dir.join("model.json"),
        serde_json::to_string_pretty(&saved)
            .map_err(other)?
            .as_bytes(),
    )
}

/// Loads a model saved by [`save`], with its standardization.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Model<B>, Standardizer)> {
    let json = dir.join("model.json");
    let text =
        std::fs::read_to_string(&json).map_err(|e| other(format!("{}: {e}", json.display())))?;
    let saved: Saved = serde_json::from_str(&text)
        .map_err(|e| other(format!("{}: not a saved model: {e}", json.display())))?;
    if saved.standardizer.mean.len() != saved.dim || saved.standardizer.std.len() != saved.dim {
        return Err(other(format!(
            "{}: standardization does not match dim {}",
            json.display(),
            saved.dim
        )));
    }
    let model = build::<B>(&saved.flow, saved.dim, 0, device)?
        .load_file(dir.join("model.mpk"), &Weights::new(), device)
        .map_err(|e| Error::Other(format!("{}: {e}", dir.join("model.mpk").display())))?;
    Ok((model, saved.standardizer))
}
