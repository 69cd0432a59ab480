//! Run configuration: defaults ← TOML file (`--config`) ← command-line flags.
//!
//! Every setting has a flag and a TOML key (the flag without `--`, `-` as `_`; model
//! settings live in a `[model]` table). The resolved configuration is written to the run
//! directory as `config.toml`, which `--config` reads back.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{
    arch::Arch,
    error::VaeError,
    model::ModelConfig,
    posterior::{FlowKind, iaf::IafUpdate},
};

/// A fully resolved training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs to train (an upper bound with early stopping).
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// KL warm-up: β rises linearly from 0 to 1 over this many epochs (0 = off, β = 1).
    pub warmup_epochs: usize,
    /// Early stopping: stop after this many epochs without a better validation ELBO
    /// (0 = never stop early).
    pub patience: usize,
    /// Importance samples per image for the final IW-NLL estimate.
    pub iw_samples: usize,
    /// Rows per decoder pass in importance-weighted evaluation (bounds memory).
    pub iw_rows: usize,
    /// Seed of every random stream (init, shuffling, binarization, ε).
    pub seed: u64,
    /// Seed of the one fixed binarization of the validation images.
    pub val_seed: u64,
    /// Directory with the standard MNIST IDX files (`train-images-idx3-ubyte[.gz]`, …);
    /// unset = the embedded 10k subset.
    pub data_dir: Option<PathBuf>,
    /// An explicit image file (IDX, gzipped or not, or `.amat`); overrides `data_dir`.
    pub images: Option<PathBuf>,
    /// The last `n_valid` images are the validation set.
    pub n_valid: usize,
    /// Use only the first `n_train` training images (unset = all the others).
    pub n_train: Option<usize>,
    /// Output directory (unset = `runs/<UTC timestamp>`).
    pub out_dir: Option<PathBuf>,
    /// Images in the sample and reconstruction grids (a square number fills the grid).
    pub grid: usize,
    /// Model shape.
    pub model: ModelConfig,
}

impl Default for TrainConfig {
    /// The model of the PyTorch peer (`vae_planar.py --variant amortised`), batch 128,
    /// Adam 1e-3, as there; then 50 epochs with a 10-epoch KL warm-up (the peer trains
    /// 10 epochs without warm-up: `--epochs 10 --warmup-epochs 0` reproduces its protocol).
    fn default() -> Self {
        Self {
            epochs: 50,
            batch_size: 128,
            lr: 1e-3,
            optimizer: Optimizer::Adam,
            warmup_epochs: 10,
            patience: 10,
            iw_samples: 500,
            iw_rows: 20_000,
            seed: 0,
            val_seed: 1234,
            data_dir: None,
            images: None,
            n_valid: 1000,
            n_train: None,
            out_dir: None,
            grid: 64,
            model: ModelConfig::default(),
        }
    }
}

fn bad(field: &str, reason: impl Into<String>) -> VaeError {
    VaeError::Config {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Rejects a zero count for the flag `field`.
pub fn at_least_one(field: &str, value: usize) -> Result<(), VaeError> {
    if value == 0 {
        Err(bad(field, "must be at least 1"))
    } else {
        Ok(())
    }
}

impl TrainConfig {
    /// Rejects impossible settings with the flag's name.
    pub fn validate(&self) -> Result<(), VaeError> {
        self.model.validate()?;
        at_least_one("epochs", self.epochs)?;
        at_least_one("batch-size", self.batch_size)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad(
                "lr",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        at_least_one("iw-samples", self.iw_samples)?;
        at_least_one("iw-rows", self.iw_rows)?;
        at_least_one("n-valid", self.n_valid)?;
        if self.n_train == Some(0) {
            return Err(bad("n-train", "must be at least 1"));
        }
        at_least_one("grid", self.grid)?;
        Ok(())
    }

    /// Reads a TOML config file (missing keys take their defaults; unknown keys are errors).
    pub fn from_toml_file(path: &Path) -> Result<Self, VaeError> {
        let text = std::fs::read_to_string(path).map_err(|e| VaeError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses the text of a TOML config file (`path` names it in errors, with the line
    /// and column of the fault).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, VaeError> {
        toml::from_str(text).map_err(|e| {
            // toml's own Display quotes the offending lines over several lines; the
            // binary's errors are one line, so only the position is kept.
            let at = e.span().map_or(String::new(), |span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            });
            VaeError::ConfigFile {
                path: path.to_path_buf(),
                reason: format!("{at}{}", e.message().trim_end()),
            }
        })
    }

    /// The configuration as TOML (paths must be UTF-8, which TOML requires).
    pub fn to_toml(&self) -> Result<String, VaeError> {
        for (field, path) in [
            ("out-dir", &self.out_dir),
            ("data-dir", &self.data_dir),
            ("images", &self.images),
        ] {
            if let Some(p) = path
                && p.to_str().is_none()
            {
                return Err(bad(
                    field,
                    format!(
                        "{} is not valid UTF-8, which the run's config.toml needs",
                        p.display()
                    ),
                ));
            }
        }
        toml::to_string_pretty(self).map_err(|e| bad("config", e.to_string()))
    }
}

/// The optimizer of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam (`β = (0.9, 0.999)`, `ε = 10⁻⁵`), fused on the CPU backends.
    #[default]
    Adam,
    /// Adamax (`flow_programs::Adamax`), the Sylvester paper's.
    Adamax,
}

/// Flags of `train-vae train` (each overrides the config file and the defaults).
#[derive(Debug, Clone, Default, Args)]
pub struct TrainArgs {
    /// TOML file with any of the settings below (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this directory from its last complete checkpoint (its
    /// `config.toml` is the configuration; `--epochs` may raise the budget).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Epochs to train.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<Optimizer>,
    /// KL warm-up epochs (0 = off).
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Early-stopping patience in epochs (0 = off).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Importance samples per image for IW-NLL (the papers use 5000).
    #[arg(long)]
    pub iw_samples: Option<usize>,
    /// Rows per decoder pass during IW evaluation.
    #[arg(long)]
    pub iw_rows: Option<usize>,
    /// Seed of every random stream.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seed of the fixed validation binarization.
    #[arg(long)]
    pub val_seed: Option<u64>,
    /// Directory with the standard MNIST IDX files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Training image file (IDX or `.amat`).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Validation images (the last N).
    #[arg(long)]
    pub n_valid: Option<usize>,
    /// Use only the first N training images.
    #[arg(long)]
    pub n_train: Option<usize>,
    /// Output directory (default `runs/<timestamp>`).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Images in the sample/reconstruction grids.
    #[arg(long)]
    pub grid: Option<usize>,
    /// Latent dimension.
    #[arg(long)]
    pub latent: Option<usize>,
    /// Encoder and decoder networks: ReLU MLPs or the Sylvester paper's gated
    /// convolutions (28×28 images).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Encoder hidden widths, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub encoder_hidden: Option<Vec<usize>>,
    /// Decoder hidden widths, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub decoder_hidden: Option<Vec<usize>>,
    /// Posterior flow.
    #[arg(long, value_enum)]
    pub flow: Option<FlowKind>,
    /// Flow steps K (with `--flow` alone: 10 for planar, radial and IAF, 16 for Householder
    /// and Sylvester flows).
    #[arg(long)]
    pub n_flows: Option<usize>,
    /// The IAF steps' update: the paper's gated `σ z + (1 − σ) m` or the affine
    /// `(z − t) e⁻ˢ` (`--flow iaf`).
    #[arg(long, value_enum)]
    pub iaf_update: Option<IafUpdate>,
    /// Forget-gate bias β of the gated IAF update, `σ = sigmoid(s + β)` (`--flow iaf`;
    /// default 1).
    #[arg(long, allow_hyphen_values = true)]
    pub iaf_forget_bias: Option<f64>,
    /// Orthonormal columns M of each O-SNF step (`--flow sylvester-o`, at most the latent
    /// dimension).
    #[arg(long)]
    pub ortho_vecs: Option<usize>,
    /// Householder reflections per H-SNF step (`--flow sylvester-h`).
    #[arg(long)]
    pub householder: Option<usize>,
    /// Width of each IAF step's MADE hidden layers (`--flow iaf`).
    #[arg(long)]
    pub iaf_hidden: Option<usize>,
    /// Hidden layers of each IAF step's MADE (`--flow iaf`).
    #[arg(long)]
    pub iaf_layers: Option<usize>,
}

impl TrainArgs {
    /// Defaults, then the file given with `--config` (or the resumed run's), then the flags.
    pub fn resolve(&self) -> Result<TrainConfig, VaeError> {
        let file = match (&self.resume, &self.config) {
            (Some(dir), _) => Some(dir.join("config.toml")),
            (None, Some(path)) => Some(path.clone()),
            (None, None) => None,
        };
        let mut c = match file {
            Some(path) => TrainConfig::from_toml_file(&path)?,
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { c.$field = v.clone(); } )* };
        }
        set!(
            epochs,
            batch_size,
            lr,
            optimizer,
            warmup_epochs,
            patience,
            iw_samples,
            iw_rows,
            seed,
            val_seed,
            n_valid,
            grid
        );
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if self.$field.is_some() { c.$field = self.$field.clone(); } )* };
        }
        set_opt!(data_dir, images, n_train, out_dir);
        let m = &mut c.model;
        macro_rules! set_model {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { m.$field = v.clone(); } )* };
        }
        if let (Some(flow), None) = (self.flow, self.n_flows)
            && flow != m.flow
        {
            m.n_flows = flow.default_steps();
        }
        set_model!(
            arch,
            latent,
            encoder_hidden,
            decoder_hidden,
            flow,
            n_flows,
            iaf_hidden,
            iaf_layers,
            iaf_update,
            iaf_forget_bias,
            ortho_vecs,
            householder
        );
        if let Some(dir) = &self.resume {
            c.out_dir = Some(dir.clone());
            let run = TrainConfig::from_toml_file(&dir.join("config.toml"))?;
            keeps_identity(&run, &c, dir)?;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Fails when `asked` (a resumed run's config with the flags applied) changes what makes
/// `run` the run it is: its model, its data and validation split, its seeds and its
/// optimizer (whose state the checkpoints hold). The budget and schedule (epochs, learning
/// rate, batch size, warm-up, patience) and the evaluation settings may change.
fn keeps_identity(run: &TrainConfig, asked: &TrainConfig, dir: &Path) -> Result<(), VaeError> {
    let changed = |flag: &str, kept: String, wanted: String| {
        if kept == wanted {
            Ok(())
        } else {
            Err(VaeError::ResumeChanges {
                flag: flag.into(),
                run: dir.to_path_buf(),
                kept,
                asked: wanted,
            })
        }
    };
    macro_rules! same {
        ($($flag:literal: $($field:ident).+),* $(,)?) => {
            $( changed($flag, format!("{:?}", run.$($field).+), format!("{:?}", asked.$($field).+))?; )*
        };
    }
    same!(
        "seed": seed,
        "val-seed": val_seed,
        "n-valid": n_valid,
        "n-train": n_train,
        "images": images,
        "data-dir": data_dir,
        "optimizer": optimizer,
        "arch": model.arch,
        "latent": model.latent,
        "encoder-hidden": model.encoder_hidden,
        "decoder-hidden": model.decoder_hidden,
        "flow": model.flow,
        "n-flows": model.n_flows,
        "iaf-hidden": model.iaf_hidden,
        "iaf-layers": model.iaf_layers,
        "iaf-update": model.iaf_update,
        "iaf-forget-bias": model.iaf_forget_bias,
        "ortho-vecs": model.ortho_vecs,
        "householder": model.householder,
    );
    // Fields without a flag (the input size) come from the file: a whole-model
    // comparison catches anything the list above misses.
    changed(
        "config",
        format!("{:?}", run.model),
        format!("{:?}", asked.model),
    )
}
