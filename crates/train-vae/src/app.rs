//! The three commands of the `train-vae` binary: `train`, `eval` and `sample`.

use std::path::{Path, PathBuf};

use burn::{
    module::Module,
    tensor::{
        Tensor, TensorData,
        backend::{AutodiffBackend, Backend},
    },
};
use clap::Args;
use flow_programs::files::LockError;
use serde::Serialize;

use crate::{
    checkpoint,
    config::{TrainArgs, TrainConfig, at_least_one},
    data::{self, Images},
    error::VaeError,
    history,
    model::{ModelConfig, Vae},
    report,
    training::{self, RunData},
};

/// Importance-weighted evaluation of a model on a set of binary images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Images evaluated.
    pub images: usize,
    /// Importance samples per image.
    pub samples: usize,
    /// Mean over images of `mean_s ln w_s` (the ELBO, nats; higher is better).
    pub elbo: f64,
    /// Mean over images of `−ln (1/S) Σ_s w_s` (IW-NLL, nats; lower is better).
    pub nll: f64,
}

/// Evaluates `model` on `bits` (`n · dim` values in {0, 1}) in chunks of images, so at most
/// `rows` decoder rows are alive at once. Returns the evaluation and per-image NLLs.
pub fn evaluate<B: Backend>(
    model: &Vae<B>,
    bits: &[f32],
    dim: usize,
    samples: usize,
    rows: usize,
    device: &B::Device,
) -> (Evaluation, Vec<f64>) {
    let n = bits.len() / dim;
    let per_chunk = (rows / samples.max(1)).clamp(1, 500);
    let mut elbos = Vec::with_capacity(n);
    let mut nlls = Vec::with_capacity(n);
    for start in (0..n).step_by(per_chunk) {
        let m = per_chunk.min(n - start);
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(bits[start * dim..(start + m) * dim].to_vec(), [m, dim]),
            device,
        );
        let (e, nll) = model.importance_weighted(x, samples, rows);
        // One read per chunk: [elbo; nll] of its m images.
        let both: Vec<f64> = Tensor::cat(vec![e, nll], 0)
            .into_data()
            .convert::<f64>()
            .into_vec()
            .unwrap_or_default();
        elbos.extend_from_slice(&both[..m]);
        nlls.extend_from_slice(&both[m..]);
        if n >= 10 && (start / per_chunk).is_multiple_of((n / per_chunk / 10).max(1)) {
            tracing::info!("evaluated {}/{n} images", start + m);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n.max(1) as f64;
    (
        Evaluation {
            images: n,
            samples,
            elbo: mean(&elbos),
            nll: mean(&nlls),
        },
        nlls,
    )
}

/// UTC `YYYYMMDD-HHMMSS` now (for default run directories).
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Loads the configured images and splits them: the last `n_valid` validate, the first
/// `n_train` of the rest train.
pub fn load_split(config: &TrainConfig) -> Result<(Images, Images, String), VaeError> {
    let (images, source) = match (&config.images, &config.data_dir) {
        (Some(path), _) => (data::read_images(path)?, path.display().to_string()),
        (None, Some(dir)) => {
            let (train, _) = data::find_mnist(dir)?;
            (data::read_images(&train)?, train.display().to_string())
        }
        (None, None) => (data::embedded_images()?, "embedded MNIST (10k)".to_string()),
    };
    images.expect_dim(config.model.input, &source)?;
    let n = images.len();
    if config.n_valid >= n {
        return Err(VaeError::Config {
            field: "n-valid".into(),
            reason: format!(
                "{} validation images leave none of the {n} to train on",
                config.n_valid
            ),
        });
    }
    let n_train = config
        .n_train
        .unwrap_or(n - config.n_valid)
        .min(n - config.n_valid);
    if n_train < config.batch_size {
        return Err(VaeError::Config {
            field: "batch-size".into(),
            reason: format!(
                "{} is larger than the {n_train} training images",
                config.batch_size
            ),
        });
    }
    Ok((
        images.slice(0..n_train),
        images.slice(n - config.n_valid..n),
        source,
    ))
}

/// The final line of a run: what the summary table and `summary.json` hold.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Posterior flow and steps.
    pub flow: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Best epoch (its checkpoint is evaluated).
    pub best_epoch: usize,
    /// Validation negative ELBO of the best epoch (one sample per image).
    pub valid_neg_elbo: f64,
    /// Importance-weighted evaluation of the best checkpoint on the validation set.
    pub eval: Evaluation,
    /// Median training throughput over epochs ≥ 2 (images/s).
    pub images_per_second: f64,
    /// Parameters of the model.
    pub params: usize,
    /// The backend.
    pub backend: String,
}

/// Median images/s of epochs after the first (the first includes warm-up).
pub fn median_throughput(history: &[history::EpochRecord]) -> f64 {
    let mut v: Vec<f64> = history
        .iter()
        .filter(|r| r.epoch > 1 || history.len() == 1)
        .map(|r| r.images_per_second)
        .filter(|v| v.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Creates the run directory and takes its lock ([`flow_programs::files::lock_dir`]): two
/// processes never write one run.
pub fn lock_run(run: &Path) -> Result<std::fs::File, VaeError> {
    flow_programs::files::lock_dir(run).map_err(|e| match e {
        LockError::Held { lock, .. } => VaeError::RunInUse {
            run: run.to_path_buf(),
            lock,
        },
        LockError::Io { path, source } => VaeError::Io { path, source },
    })
}

/// `train-vae train`: trains on `devices` (data-parallel on several), evaluates the best
/// checkpoint on the first, draws the pictures.
pub fn train_command<B: AutodiffBackend>(
    args: &TrainArgs,
    backend: &str,
    devices: &[B::Device],
) -> Result<RunSummary, VaeError> {
    let device = &devices[0];
    let mut config = args.resolve()?;
    let run = config
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(timestamp()));
    config.out_dir = Some(run.clone());
    let mut resume = args.resume.is_some();
    if resume {
        // Before anything is written: the resumed run's model is the one that wrote it.
        checkpoint::check_description(&checkpoint::dir(&run), &config.model)?;
    }
    let toml = config.to_toml()?;
    // Read the data first: a run directory is only created for a run that can start.
    let (train, valid, source) = load_split(&config)?;
    let _lock = lock_run(&run)?;
    if !resume && run.join("config.toml").exists() {
        if !checkpoint::complete_epochs(&run).is_empty() {
            return Err(VaeError::Config {
                field: "out-dir".into(),
                reason: format!(
                    "{} already holds a run: continue it with --resume {0}, or choose another directory",
                    run.display()
                ),
            });
        }
        tracing::warn!(
            "{} holds a run stopped before its first epoch ended: starting it afresh",
            run.display()
        );
        // The fresh start goes through the resume path, which finds no epoch to keep.
        resume = true;
    }
    flow_programs::files::remove_partial_files(&run);
    report::write_atomic(&run.join("config.toml"), toml.as_bytes())?;
    if !resume || !checkpoint::description_file(&run).exists() {
        checkpoint::write_description(&run, &config.model)?;
    }
    tracing::info!(
        run = %run.display(),
        data = %source,
        train = train.len(),
        valid = valid.len(),
        flow = %config.model.flow,
        k = config.model.flow_steps(),
        backend,
        "training"
    );
    let data = RunData {
        dim: train.dim(),
        train: train.intensities(),
        valid: valid.binarize(config.val_seed),
    };
    let trained = training::train::<B>(&config, &data, &run, resume, devices)?;

    let inner = device.clone();
    let best = checkpoint::file(&run, "model", trained.best_epoch);
    let model = checkpoint::load_model::<B::InnerBackend>(&best, &config.model, &inner)?;
    tracing::info!(
        "evaluating {} with {} importance samples per image",
        best.display(),
        config.iw_samples
    );
    B::InnerBackend::seed(&inner, training::epoch_seed(config.seed, usize::MAX));
    let (eval, _) = evaluate(
        &model,
        &data.valid,
        data.dim,
        config.iw_samples,
        config.iw_rows,
        &inner,
    );
    draw_pictures(&model, &run, &data.valid, &valid, config.grid, &inner)?;

    let record = trained
        .history
        .iter()
        .find(|r| r.epoch == trained.best_epoch)
        .cloned();
    let summary = RunSummary {
        flow: format!("{} K={}", config.model.flow, config.model.flow_steps()),
        epochs: trained.history.last().map_or(0, |r| r.epoch),
        best_epoch: trained.best_epoch,
        valid_neg_elbo: record.map_or(f64::NAN, |r| r.valid_neg_elbo),
        eval,
        images_per_second: median_throughput(&trained.history),
        params: model.num_params(),
        backend: backend.to_string(),
    };
    // Plain numbers and strings: serde_json cannot fail on them.
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    report::write_atomic(&run.join("summary.json"), json.as_bytes())?;
    Ok(summary)
}

/// Samples from the prior and reconstructions of validation images, as PNG grids.
fn draw_pictures<B: Backend>(
    model: &Vae<B>,
    run: &Path,
    bits: &[f32],
    images: &Images,
    grid: usize,
    device: &B::Device,
) -> Result<(), VaeError> {
    let (rows, cols, dim) = (images.rows, images.cols, images.dim());
    let per_row = (grid as f64).sqrt().ceil() as usize;
    let samples = host(model.sample_images(grid, device));
    report::write_image_grid(&run.join("samples.png"), &samples, rows, cols, per_row, 2)?;
    // Originals and reconstructions in alternating rows.
    let pairs = (grid / 2).max(1).min(bits.len() / dim);
    let x = Tensor::<B, 2>::from_data(
        TensorData::new(bits[..pairs * dim].to_vec(), [pairs, dim]),
        device,
    );
    let recon = host(model.reconstruct(x));
    let mut both = Vec::with_capacity(2 * pairs * dim);
    for chunk in 0..pairs.div_ceil(per_row) {
        let (a, b) = (chunk * per_row, ((chunk + 1) * per_row).min(pairs));
        both.extend_from_slice(&bits[a * dim..b * dim]);
        both.extend(std::iter::repeat_n(0.0, (per_row - (b - a)) * dim));
        both.extend_from_slice(&recon[a * dim..b * dim]);
        both.extend(std::iter::repeat_n(0.0, (per_row - (b - a)) * dim));
    }
    report::write_image_grid(
        &run.join("reconstructions.png"),
        &both,
        rows,
        cols,
        per_row,
        2,
    )
}

fn host<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

/// Where a checkpoint argument points: a run directory (its best epoch) or a model file
/// (its run's `config.toml`, unless `--config` names another).
pub fn resolve_checkpoint(
    path: &Path,
    config: Option<&Path>,
) -> Result<(PathBuf, ModelConfig), VaeError> {
    let (file, run) = if path.is_dir() {
        let history = history::read_history(path)?;
        let epochs = checkpoint::complete_epochs(path);
        let epoch = history::best(&history)
            .map(|r| r.epoch)
            .filter(|e| checkpoint::file(path, "model", *e).exists())
            .or_else(|| epochs.last().copied())
            .ok_or_else(|| VaeError::Checkpoint {
                path: path.to_path_buf(),
                reason: "no model checkpoint in this run directory".into(),
            })?;
        (checkpoint::file(path, "model", epoch), path.to_path_buf())
    } else if path.is_file() {
        let run = path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        (path.to_path_buf(), run)
    } else {
        return Err(VaeError::Checkpoint {
            path: path.to_path_buf(),
            reason: "no such file or directory".into(),
        });
    };
    let config_path = config.map_or_else(|| run.join("config.toml"), Path::to_path_buf);
    let model = TrainConfig::from_toml_file(&config_path)?.model;
    model.validate()?;
    Ok((file, model))
}

/// Flags of `train-vae eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A run directory (its best checkpoint) or a `model-N.mpk` file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Images to evaluate: IDX (gzipped or not) or `.amat`.
    #[arg(long)]
    pub images: PathBuf,
    /// IDX labels for the images: adds the IW-NLL per digit.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// TOML config whose `[model]` describes the checkpoint (default: the run's).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Importance samples per image.
    #[arg(long, default_value_t = 500)]
    pub iw_samples: usize,
    /// Rows per decoder pass.
    #[arg(long, default_value_t = 20_000)]
    pub iw_rows: usize,
    /// Evaluate only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the binarization (grey-level files) and of the importance samples.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
}

/// What `train-vae eval` found.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The checkpoint file evaluated.
    pub checkpoint: PathBuf,
    /// The evaluation.
    pub eval: Evaluation,
    /// `(digit, images, mean IW-NLL)` when labels were given.
    pub per_digit: Vec<(u8, usize, f64)>,
}

/// `train-vae eval`.
pub fn eval_command<B: Backend>(
    args: &EvalArgs,
    device: &B::Device,
) -> Result<EvalReport, VaeError> {
    at_least_one("iw-samples", args.iw_samples)?;
    at_least_one("iw-rows", args.iw_rows)?;
    let (file, model_config) = resolve_checkpoint(&args.checkpoint, args.config.as_deref())?;
    let mut images = data::read_images(&args.images)?;
    images.expect_dim(model_config.input, &args.images.display().to_string())?;
    let mut labels = match &args.labels {
        Some(path) => Some(data::read_labels(path, &images)?),
        None => None,
    };
    if let Some(limit) = args.limit {
        let n = limit.min(images.len());
        images = images.slice(0..n);
        if let Some(l) = &mut labels {
            l.truncate(n);
        }
    }
    let model = checkpoint::load_model::<B>(&file, &model_config, device)?;
    B::seed(device, args.seed);
    let bits = images.binarize(args.seed);
    let (eval, nlls) = evaluate(
        &model,
        &bits,
        images.dim(),
        args.iw_samples,
        args.iw_rows,
        device,
    );
    let per_digit = labels.map_or_else(Vec::new, |labels| {
        (0..10u8)
            .filter_map(|d| {
                let v: Vec<f64> = nlls
                    .iter()
                    .zip(&labels)
                    .filter(|(_, l)| **l == d)
                    .map(|(v, _)| *v)
                    .collect();
                (!v.is_empty()).then(|| (d, v.len(), v.iter().sum::<f64>() / v.len() as f64))
            })
            .collect()
    });
    Ok(EvalReport {
        checkpoint: file,
        eval,
        per_digit,
    })
}

/// Flags of `train-vae sample`.
#[derive(Debug, Clone, Args)]
pub struct SampleArgs {
    /// A run directory (its best checkpoint) or a `model-N.mpk` file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// TOML config whose `[model]` describes the checkpoint (default: the run's).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of samples.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Output PNG.
    #[arg(long, default_value = "samples.png")]
    pub out: PathBuf,
    /// Seed of the prior samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `train-vae sample`: a PNG grid of `σ(dec(z))`, `z ~ N(0, I)`.
pub fn sample_command<B: Backend>(
    args: &SampleArgs,
    device: &B::Device,
) -> Result<PathBuf, VaeError> {
    at_least_one("n", args.n)?;
    let (file, model_config) = resolve_checkpoint(&args.checkpoint, args.config.as_deref())?;
    let model = checkpoint::load_model::<B>(&file, &model_config, device)?;
    B::seed(device, args.seed);
    let images = host(model.sample_images(args.n, device));
    let side = (model_config.input as f64).sqrt() as usize;
    let (rows, cols) = if side * side == model_config.input {
        (side, side)
    } else {
        (1, model_config.input)
    };
    let per_row = (args.n as f64).sqrt().ceil() as usize;
    report::write_image_grid(&args.out, &images, rows, cols, per_row, 2)?;
    Ok(args.out.clone())
}
