//! The flow stack chosen on the command line, and saving and loading a fitted one.

use std::path::Path;

use burn::{
    module::Module,
    record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder},
    tensor::backend::Backend,
};
use flow_core::{
    BatchNormConfig, CouplingConfig, Elementwise, Flow, Layer, LuLinearConfig,
    MaskedAutoregressiveConfig, Order, Permutation, StandardNormal,
};
use serde::{Deserialize, Serialize};

use density::data::Standardizer;

use crate::error::{Result, other};

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

/// What a saved model is, besides its weights: enough to rebuild and use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    flow: FlowArgs,
    dim: usize,
    standardizer: Standardizer,
}

impl Saved {
    /// Rejects descriptions no fit writes (a hand-edited or damaged file).
    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |what: String| Err(other(format!("{}: {what}", path.display())));
        let f = &self.flow;
        if self.dim == 0 || f.layers == 0 || f.hidden == 0 || f.n_hidden == 0 {
            return bad("dim, layers, hidden and n_hidden must be at least 1".into());
        }
        if matches!(f.family, Family::Nsf | Family::MafSpline)
            && (f.bins == 0 || !(f.bound.is_finite() && f.bound > 0.0))
        {
            return bad(format!(
                "spline bins {} and bound {} must be positive",
                f.bins, f.bound
            ));
        }
        let st = &self.standardizer;
        if st.mean.len() != self.dim || st.std.len() != self.dim {
            return bad(format!("standardization does not match dim {}", self.dim));
        }
        if let Some(j) = (0..self.dim)
            .find(|&j| !(st.mean[j].is_finite() && st.std[j].is_finite() && st.std[j] > 0.0))
        {
            return bad(format!(
                "column {} has mean {} and std {}: a std must be positive and both finite",
                j + 1,
                st.mean[j],
                st.std[j]
            ));
        }
        Ok(())
    }
}

type Weights = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Saves a model: `model.mpk` holds its description and weights together (framed with a
/// checksum, [`flow_programs::files::frame`]), `model.json` a readable copy of the
/// description. Both are written atomically, the weights first: a kill between the two
/// leaves a `model.mpk` that loads on its own.
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
    let json = serde_json::to_string_pretty(&saved).map_err(other)?;
    let weights = Weights::default()
        .record(model.clone().into_record(), ())
        .map_err(|e| other(format!("saving the model: {e}")))?;
    let mut payload = Vec::with_capacity(8 + json.len() + weights.len());
    payload.extend_from_slice(&(json.len() as u64).to_le_bytes());
    payload.extend_from_slice(json.as_bytes());
    payload.extend_from_slice(&weights);
    crate::files::write(
        &dir.join("model.mpk"),
        &flow_programs::files::frame(&payload),
    )?;
    crate::files::write(&dir.join("model.json"), json.as_bytes())
}

/// Loads a model saved by [`save`], with its standardization. The description inside
/// `model.mpk` builds the model; a `model.json` that says otherwise (edited by hand, or
/// from another fit) is an error naming both, as is a damaged `model.mpk`.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Model<B>, Standardizer)> {
    let path = dir.join("model.mpk");
    let fail = |what: String| other(format!("{}: {what}", path.display()));
    let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
    let payload = flow_programs::files::unframe(&bytes)
        .map_err(&fail)?
        .ok_or_else(|| fail("not a saved density model (no header; refit it)".into()))?;
    let (len, rest) = payload
        .split_first_chunk::<8>()
        .ok_or_else(|| fail("no model description".into()))?;
    let len = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
    if len > rest.len() {
        return Err(fail("no model description".into()));
    }
    let (text, weights) = rest.split_at(len);
    let saved: Saved = serde_json::from_slice(text)
        .map_err(|e| fail(format!("unreadable model description ({e})")))?;
    saved.validate(&path)?;
    let json = dir.join("model.json");
    if let Ok(text) = std::fs::read_to_string(&json) {
        let copy: Saved = serde_json::from_str(&text)
            .map_err(|e| other(format!("{}: not a saved model: {e}", json.display())))?;
        copy.validate(&json)?;
        if copy != saved {
            return Err(other(format!(
                "{} ({}, dim {}) disagrees with {} ({}, dim {}), which holds the weights: \
                 restore the file or refit",
                json.display(),
                copy.flow.describe(),
                copy.dim,
                path.display(),
                saved.flow.describe(),
                saved.dim
            )));
        }
    }
    let model = build::<B>(&saved.flow, saved.dim, 0, device)?;
    let record = Weights::default()
        .load(weights.to_vec(), device)
        .map_err(|e| {
            fail(format!(
                "unreadable weights ({})",
                first_line(&e.to_string())
            ))
        })?;
    Ok((model.load_record(record), saved.standardizer))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
