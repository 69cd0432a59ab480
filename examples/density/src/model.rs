//! The flow stack chosen on the command line, and saving and loading a fitted one.

use std::path::Path;

use burn::{
    module::Module,
    record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder},
    tensor::backend::Backend,
};
use flow_core::{
    Base, BatchNormConfig, ConditionalDiagNormalConfig, CouplingConfig, Elementwise, Flow,
    GaussianMixtureConfig, Layer, LuLinearConfig, MaskedAutoregressiveConfig, Order, Permutation,
    StandardNormal,
};
use serde::{Deserialize, Serialize};

use density::data::{Layout, Standardizer};

use crate::error::{Result, other};

/// A fitted density: a base distribution and a stack of layers, conditional when the
/// data's layout has context columns.
pub type Model<B> = Flow<B, Base<B>, Vec<Layer<B>>>;

/// The base distribution: `normal` (`N(0, I)`; for a conditional density, a diagonal
/// normal whose mean and scale are a network of the context) or `mog:K`, a learnable
/// mixture of `K` diagonal normals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseKind {
    /// Standard normal, or the conditional normal.
    #[default]
    Normal,
    /// Gaussian mixture with this many components.
    Mixture(usize),
}

impl std::fmt::Display for BaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseKind::Normal => write!(f, "normal"),
            BaseKind::Mixture(k) => write!(f, "mog:{k}"),
        }
    }
}

impl std::str::FromStr for BaseKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "normal" {
            return Ok(BaseKind::Normal);
        }
        match s.strip_prefix("mog:").map(str::parse::<usize>) {
            Some(Ok(k)) if k > 0 => Ok(BaseKind::Mixture(k)),
            _ => Err(format!(
                "{s:?} is not a base: `normal`, or `mog:K` with K ≥ 1 components"
            )),
        }
    }
}

/// What a model is fitted to besides its layers: the data's columns (which condition,
/// which are modelled), the base, and the whitening layer (its value comes from the data
/// at fit time, from the weights at load time).
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    /// The data's columns.
    pub layout: Layout,
    /// The base distribution.
    pub base: BaseKind,
    /// `Some((A, μ))`: a noise-side LU layer starting at `x = A z + μ` (`A` lower
    /// triangular, row-major); `Some` with any value when loading.
    pub whitening: Option<(Vec<f64>, Vec<f64>)>,
    /// `Some((W, b))`: the conditional normal base starts at `N(c W + b, I)` (a regression
    /// in the whitened coordinates); `None`: at `N(0, I)`.
    pub regression: Option<(Vec<f64>, Vec<f64>)>,
}

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
    #[arg(long, default_value_t = 4, value_parser = flow_programs::args::positive)]
    pub layers: usize,
    /// Width of the conditioners' hidden layers.
    #[arg(long, default_value_t = 128, value_parser = flow_programs::args::positive)]
    pub hidden: usize,
    /// Hidden layers per conditioner.
    #[arg(long, default_value_t = 2, value_parser = flow_programs::args::positive)]
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
    /// Dropout probability on the conditioners' hidden activations in training (set by
    /// the fit's `--dropout`).
    #[arg(skip)]
    #[serde(default)]
    pub dropout: f64,
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
        if self.dropout > 0.0 {
            s += &format!(" dropout {}", self.dropout);
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

/// Builds the model for `design`: the stack of `args` on the modelled columns, conditioned
/// on the context columns, over the chosen base, starting (noise side) with the whitening
/// layer.
pub fn build<B: Backend>(
    args: &FlowArgs,
    design: &Design,
    seed: u64,
    device: &B::Device,
) -> Result<Model<B>> {
    let dim = design.layout.modelled().len();
    let context = design.layout.context().len();
    let kind = args.elementwise();
    let mut layers: Vec<Layer<B>> = Vec::new();
    // One modelled column has no half to condition on: couplings become autoregressive
    // layers, which for one feature read the context alone (the same map).
    let coupling = matches!(args.family, Family::Nsf | Family::Realnvp) && dim > 1;
    for i in 0..args.layers {
        match args.family {
            Family::Nsf | Family::Realnvp if coupling => {
                layers.push(
                    CouplingConfig::new(dim, kind)
                        .with_hidden(args.hidden)
                        .with_n_hidden(args.n_hidden)
                        .with_context_dim(context)
                        .with_dropout(args.dropout)
                        .init(device)?
                        .into(),
                );
            }
            _ => {
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
                        .with_context_dim(context)
                        .with_dropout(args.dropout)
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
        } else if coupling {
            layers.push(Permutation::reverse(dim, device)?.into());
        }
    }
    // On the noise side: the other layers work in the data's standardized coordinates
    // (measured better than on the data side for couplings with dropout, docs/density.md).
    if let Some((a, shift)) = &design.whitening {
        let lu = LuLinearConfig::new(dim).init_lower_triangular(a, shift, device)?;
        layers.insert(0, lu.into());
    }
    let base: Base<B> = match (design.base, context) {
        (BaseKind::Normal, 0) => StandardNormal::new(dim)?.into(),
        (BaseKind::Normal, c) => {
            let config = ConditionalDiagNormalConfig::new(dim, c).with_hidden(args.hidden);
            match &design.regression {
                Some((w, b)) => config.init_linear(w, b, device)?.into(),
                None => config.init(device)?.into(),
            }
        }
        (BaseKind::Mixture(k), _) => GaussianMixtureConfig::new(dim, k).init(device)?.into(),
    };
    Ok(Flow::new(base, layers)?)
}

/// What a saved model is, besides its weights: enough to rebuild and use it. Fields added
/// after the first release default to what models without them were (unconditional,
/// normal base, no whitening layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    flow: FlowArgs,
    /// Modelled columns.
    dim: usize,
    /// Over all the data's columns (modelled and context).
    standardizer: Standardizer,
    /// The context columns (0-based).
    #[serde(default)]
    context: Vec<usize>,
    #[serde(default)]
    base: BaseKind,
    #[serde(default)]
    whitened: bool,
    /// The fit's seed: it draws the LU layers' fixed permutations, which the weights do
    /// not hold.
    #[serde(default)]
    seed: u64,
}

impl Saved {
    /// Rejects descriptions no fit writes (a hand-edited or damaged file).
    fn validate(&self, path: &Path) -> Result<Layout> {
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
        if self.base == BaseKind::Mixture(0) {
            return bad("a mixture base needs at least one component".into());
        }
        let st = &self.standardizer;
        let columns = self.dim + self.context.len();
        if st.mean.len() != columns || st.std.len() != columns {
            return bad(format!(
                "standardization does not match {} modelled and {} context columns",
                self.dim,
                self.context.len()
            ));
        }
        let layout = Layout::new(columns, &self.context)
            .ok()
            .filter(|l| l.context() == self.context.as_slice());
        let Some(layout) = layout else {
            return bad(format!("context columns {:?} do not fit", self.context));
        };
        if let Some(j) = (0..columns)
            .find(|&j| !(st.mean[j].is_finite() && st.std[j].is_finite() && st.std[j] > 0.0))
        {
            return bad(format!(
                "column {} has mean {} and std {}: a std must be positive and both finite",
                j + 1,
                st.mean[j],
                st.std[j]
            ));
        }
        Ok(layout)
    }
}

impl Saved {
    /// The described model with fresh weights (to load saved ones into).
    fn build<B: Backend>(&self, layout: &Layout, device: &B::Device) -> Result<Model<B>> {
        let d = self.dim;
        let identity = (0..d * d).map(|k| f64::from(u8::from(k % (d + 1) == 0)));
        let design = Design {
            layout: layout.clone(),
            base: self.base,
            whitening: self.whitened.then(|| (identity.collect(), vec![0.0; d])),
            regression: None,
        };
        build::<B>(&self.flow, &design, self.seed, device)
    }
}

type Weights = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// A model loaded from disk, with what it needs to read data in the original units.
pub struct Loaded<B: Backend> {
    /// The flow.
    pub model: Model<B>,
    /// The standardization of all the data's columns.
    pub standardizer: Standardizer,
    /// Which columns condition, which are modelled.
    pub layout: Layout,
}

/// Saves a model: `model.mpk` holds its description and weights together (framed with a
/// checksum, [`flow_programs::files::frame`]), `model.json` a readable copy of the
/// description. Both are written atomically, the weights first: a kill between the two
/// leaves a `model.mpk` that loads on its own.
pub fn save<B: Backend>(
    model: &Model<B>,
    flow: &FlowArgs,
    design: &Design,
    seed: u64,
    standardizer: &Standardizer,
    dir: &Path,
) -> Result<()> {
    let saved = Saved {
        flow: flow.clone(),
        dim: model.dim(),
        standardizer: standardizer.clone(),
        context: design.layout.context().to_vec(),
        base: design.base,
        whitened: design.whitening.is_some(),
        seed,
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

/// The key of the model description in an exported safetensors file's metadata.
const DESCRIPTION_KEY: &str = "density.model";

/// Writes the model in `dir` as one safetensors file `out`: every tensor under its module
/// path ([`flow_core::store`]), and the description (what `model.json` holds) in the
/// header's metadata under `density.model`. Returns the number of tensors.
pub fn export_safetensors<B: Backend>(dir: &Path, out: &Path, device: &B::Device) -> Result<usize> {
    let (loaded, saved) = load_dir::<B>(dir, device)?;
    let json = serde_json::to_string(&saved).map_err(other)?;
    let bytes = flow_core::store::to_safetensors(&loaded.model, &[(DESCRIPTION_KEY, &json)])?;
    crate::files::write(out, &bytes)?;
    Ok(flow_core::store::tensor_names(&loaded.model).len())
}

/// Loads a model: a directory saved by [`save`], or a `.safetensors` file written by
/// [`export_safetensors`].
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<Loaded<B>> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(path, device)
    } else {
        Ok(load_dir(path, device)?.0)
    }
}

fn load_safetensors<B: Backend>(path: &Path, device: &B::Device) -> Result<Loaded<B>> {
    let fail = |what: String| other(format!("{}: {what}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let meta = flow_core::store::metadata(&bytes).map_err(|e| fail(e.to_string()))?;
    let text = meta.get(DESCRIPTION_KEY).ok_or_else(|| {
        fail(format!(
            "no {DESCRIPTION_KEY:?} description in the metadata: not exported by `density \
             export`"
        ))
    })?;
    let saved: Saved = serde_json::from_str(text)
        .map_err(|e| fail(format!("unreadable model description ({e})")))?;
    let layout = saved.validate(path)?;
    let model = saved.build::<B>(&layout, device)?;
    let model =
        flow_core::store::from_safetensors(model, bytes).map_err(|e| fail(e.to_string()))?;
    Ok(Loaded {
        model,
        standardizer: saved.standardizer,
        layout,
    })
}

/// Loads a model saved by [`save`], and its description. The description inside
/// `model.mpk` builds the model; a `model.json` that says otherwise (edited by hand, or
/// from another fit) is an error naming both, as is a damaged `model.mpk`.
fn load_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Loaded<B>, Saved)> {
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
    let layout = saved.validate(&path)?;
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
    let model = saved.build::<B>(&layout, device)?;
    let record = Weights::default()
        .load(weights.to_vec(), device)
        .map_err(|e| {
            fail(format!(
                "unreadable weights ({})",
                first_line(&e.to_string())
            ))
        })?;
    let loaded = Loaded {
        model: model.load_record(record),
        standardizer: saved.standardizer.clone(),
        layout,
    };
    Ok((loaded, saved))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
