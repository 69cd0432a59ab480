//! Training on burn-train's `Learner`, with the pieces it lacks supplied here.
//!
//! burn-train runs the loop: train and validation steps
//! ([`TrainStep`](burn_train::TrainStep)/[`InferenceStep`](burn_train::InferenceStep) on
//! [`Vae`], in the `step` module), the Adam optimizer, metric
//! aggregation, checkpoints through its `FileCheckpointer`, early stopping, and (with
//! `ExecutionStrategy`) several devices.
//! What it does not do, and this module adds:
//! - **atomic, checksummed checkpoints**: its files are written in place;
//!   [`CheckpointRecorder`] frames them with a
//!   CRC-32 and writes them atomically (see [`crate::checkpoint`]);
//! - **exact resume**: it restores model, optimizer and scheduler but not the random
//!   streams. [`MnistLoader`] makes every random draw a function of `(seed, epoch)`: it
//!   reseeds the backend (ε of the reparameterization) and its own binarization and
//!   shuffling streams at the start of each epoch, so epoch `k + 1` after a resume from
//!   `k` draws what it would have drawn in one run;
//! - **divergence**: a non-finite training loss stops the run through burn-train's
//!   `Interrupter` before the epoch is checkpointed, so the last checkpoint stays good;
//! - **failures that must not pass silently**: a checkpoint or metrics file that cannot
//!   be written (full disk, no permission) stops the run with the file and the OS error;
//!   Ctrl-C stops it after the current step; both keep the last complete checkpoint and
//!   exit non-zero;
//! - **the run's records**: per-epoch metrics in JSONL and CSV, the loss curves, a
//!   restartable early-stopping rule ([`EpochLog`]) and plain progress lines.

mod loader;
mod metric;
mod renderer;
mod step;
mod strategies;

pub use loader::{EpochTimes, MnistLoader, epoch_seed};
pub use metric::{DIVERGED, NoMetricLog, StatMetric};
pub use renderer::LineRenderer;
pub use step::{Stat, Sums, Tally, VaeBatch, VaeStats};
pub use strategies::{EpochLog, LastAndBest};

use std::{path::Path, sync::Arc};

use burn::tensor::backend::AutodiffBackend;
use burn_train::{ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining};
use flow_programs::{AdamaxConfig, FusedAdamConfig};

use crate::{
    checkpoint::{self, CheckpointRecorder},
    config::{Optimizer, TrainConfig},
    error::{FirstFailure, VaeError},
    handoff::Handoff,
    history::{EpochRecord, best, read_history},
    model::Vae,
    report,
};

/// The host data of a run: training grey levels and fixed validation bits.
pub struct RunData {
    /// Pixels per image.
    pub dim: usize,
    /// Training grey levels in [0, 1], `n_train · dim`.
    pub train: Vec<f32>,
    /// Validation bits, `n_valid · dim`.
    pub valid: Vec<f32>,
}

/// The interrupter's message when Ctrl-C stopped training.
pub const INTERRUPTED: &str = "interrupted";

/// How a finished training run went.
#[derive(Debug, Clone)]
pub struct Trained {
    /// All epoch records.
    pub history: Vec<EpochRecord>,
    /// The best epoch.
    pub best_epoch: usize,
}

/// Trains (or resumes) the run in `run`, which must hold `config.toml`, on `devices` (the
/// first is the main device: the optimizer, validation and checkpoints; on several, each
/// device computes its share of every batch and burn-train sums their gradients there).
/// Returns the history.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    data: &RunData,
    run: &Path,
    resume: bool,
    devices: &[B::Device],
) -> Result<Trained, VaeError> {
    let device = &devices[0];
    if devices.len() > config.batch_size {
        return Err(VaeError::Config {
            field: "devices".into(),
            reason: format!(
                "{} devices share each batch of {} images: give each device one at least",
                devices.len(),
                config.batch_size
            ),
        });
    }
    let (history, start) = if resume {
        resume_point::<B>(run)?
    } else {
        (Vec::new(), None)
    };
    let first_epoch = start.map_or(1, |e| e + 1);
    if first_epoch > config.epochs {
        return finish(history, run);
    }
    if let (Some(b), Some(last)) = (best(&history), history.last())
        && config.patience > 0
        && last.epoch >= b.epoch + config.patience
    {
        tracing::info!("the run had already stopped early");
        return finish(history, run);
    }

    B::seed(device, config.seed);
    let model = config.model.init::<B>(device)?;
    let run = Run {
        config,
        data,
        dir: run,
        history,
        start,
        devices,
    };
    match config.optimizer {
        // Adam fused into one pass per parameter on the CPU backends
        // (flow_programs::FusedAdamConfig); burn's default ε = 1e-5, as every run so far
        // was trained with.
        Optimizer::Adam => run.launch(model, FusedAdamConfig::new().with_epsilon(1e-5).init()),
        Optimizer::Adamax => run.launch(model, AdamaxConfig::new().init()),
    }
}

/// Where a resumed run continues: its history up to the newest epoch whose checkpoint
/// files are complete, intact and finite, and that epoch. A run with no such epoch (killed
/// or interrupted in its first epoch, or with every checkpoint damaged) starts afresh,
/// and says so; damaged checkpoints are named, and removed with the epochs after the
/// one resumed from.
fn resume_point<B: AutodiffBackend>(
    run: &Path,
) -> Result<(Vec<EpochRecord>, Option<usize>), VaeError> {
    let history = read_history(run)?;
    let done = checkpoint::complete_epochs(run);
    // Epochs complete on disk and finite (a diverged epoch may have been checkpointed
    // before its validation showed it).
    let candidates: Vec<usize> = history
        .iter()
        .take_while(|r| r.is_finite())
        .map(|r| r.epoch)
        .filter(|e| done.contains(e))
        .collect();
    let (last, damaged) = checkpoint::last_intact_epoch::<B>(run, &candidates);
    for d in &damaged {
        tracing::warn!("{d}");
    }
    let Some(last) = last else {
        tracing::warn!(
            "{} holds no complete epoch to resume from: starting it from epoch 1",
            run.display()
        );
        checkpoint::clean(run, 0)?;
        report::write_history(run, &[])?;
        return Ok((Vec::new(), None));
    };
    if !damaged.is_empty() {
        tracing::warn!("resuming from epoch {last}, the newest intact checkpoint");
    }
    checkpoint::clean(run, last)?;
    let history: Vec<_> = history.into_iter().filter(|r| r.epoch <= last).collect();
    report::write_history(run, &history)?;
    tracing::info!("resuming {} after epoch {last}", run.display());
    Ok((history, Some(last)))
}

/// What [`train`] hands to the loop, whichever the optimizer.
struct Run<'a, B: AutodiffBackend> {
    config: &'a TrainConfig,
    data: &'a RunData,
    dir: &'a Path,
    history: Vec<EpochRecord>,
    start: Option<usize>,
    devices: &'a [B::Device],
}

impl<B: AutodiffBackend> Run<'_, B> {
    /// Trains `model` with `optim` from the run's start.
    fn launch<O>(self, model: Vae<B>, optim: O) -> Result<Trained, VaeError>
    where
        O: burn::optim::Optimizer<Vae<B>, B> + 'static,
    {
        let Run {
            config,
            data,
            dir: run,
            history,
            start,
            devices,
        } = self;
        let device = &devices[0];
        let first_epoch = start.map_or(1, |e| e + 1);
        let learner = Learner::new(model, optim, config.lr);

        let times: EpochTimes = Arc::default();
        let tally = Tally::default();
        let n_train = data.train.len() / data.dim;
        let train_images = n_train / config.batch_size * config.batch_size;
        let valid_images = data.valid.len() / data.dim;
        let train_loader = MnistLoader::<B>::train(
            data.train.clone(),
            (data.dim, config.model.latent),
            config.batch_size,
            config.seed,
            config.warmup_epochs,
            first_epoch,
            times.clone(),
            device.clone(),
        );
        let valid_loader = MnistLoader::<B::InnerBackend>::valid(
            data.valid.clone(),
            (data.dim, config.model.latent),
            config.batch_size.max(500),
            config.seed,
            device.clone(),
        );

        let failure = FirstFailure::default();
        let handoff = {
            let device = device.clone();
            Handoff::new(move || {
                // A device that cannot finish its queue fails the next op too, with the
                // error that says why.
                let _ = B::sync(&device);
            })
        };
        let mut training =
            SupervisedTraining::new(run, Arc::new(train_loader), Arc::new(valid_loader))
                .with_training_strategy(strategy(devices).into())
                .with_application_logger(None)
                .with_metric_logger(NoMetricLog)
                .renderer(LineRenderer::new())
                .with_file_checkpointer(CheckpointRecorder::reporting_to(
                    failure.clone(),
                    handoff.clone(),
                ))
                .with_checkpointing_strategy(LastAndBest::new(
                    &history,
                    tally.clone(),
                    valid_images,
                    handoff.clone(),
                ))
                .early_stopping(
                    EpochLog::new(
                        run,
                        history,
                        config.patience,
                        times,
                        tally.clone(),
                        (train_images, valid_images),
                        failure.clone(),
                    )
                    .after_checkpoint(handoff),
                )
                .num_epochs(config.epochs);
        let interrupter = training.interrupter();
        training = training
            .metric_train_numeric(StatMetric::new(Stat::Loss).stopping(interrupter.clone()));
        training = training
            .metric_train_numeric(StatMetric::new(Stat::NegElbo).tallying(tally.clone(), true));
        training =
            training.metric_valid_numeric(StatMetric::new(Stat::NegElbo).tallying(tally, false));
        for stat in [Stat::Recon, Stat::Kl] {
            training = training
                .metric_train_numeric(StatMetric::new(stat))
                .metric_valid_numeric(StatMetric::new(stat));
        }
        if let Some(epoch) = start {
            training = training.checkpoint(epoch);
        }
        {
            let interrupter = interrupter.clone();
            flow_programs::interrupt::on_request(move || interrupter.stop(Some(INTERRUPTED)));
        }
        // The model it returns is the last epoch's; the run's result is its files.
        let _ = training.launch(learner);

        let last_good = |before: usize| {
            checkpoint::complete_epochs(run)
                .into_iter()
                .filter(|&e| e < before)
                .max()
                .map_or("none".to_string(), |e| {
                    checkpoint::file(run, "model", e).display().to_string()
                })
        };
        let stopped = interrupter.get_message();
        if let Some(reason) = failure.get() {
            return Err(VaeError::Stopped {
                reason: format!("could not write {reason}"),
                last_good: last_good(usize::MAX),
            });
        }
        if stopped.as_deref() == Some(INTERRUPTED) {
            return Err(VaeError::Stopped {
                reason: "interrupted (Ctrl-C); --resume continues the run".into(),
                last_good: last_good(usize::MAX),
            });
        }
        if let Some(reason) = stopped.filter(|m| m != DIVERGED) {
            return Err(VaeError::Stopped {
                reason,
                last_good: last_good(usize::MAX),
            });
        }
        let history = read_history(run)?;
        let bad = history.iter().find(|r| !r.is_finite()).map(|r| r.epoch);
        if bad.is_some() || interrupter.get_message().as_deref() == Some(DIVERGED) {
            let epoch = bad.unwrap_or_else(|| history.last().map_or(first_epoch, |r| r.epoch + 1));
            let last_good = match last_good(epoch) {
                none if none == "none" => "none (it diverged in the first epoch)".to_string(),
                file => file,
            };
            return Err(VaeError::Diverged { epoch, last_good });
        }
        finish(history, run)
    }
}

/// burn-train's execution strategy for `devices`: one device, or data-parallel over
/// several (`flow_programs::Devices` lets several through on CUDA alone), each computing
/// its share of every batch ([`MnistLoader`]'s slices), their gradients summed on the
/// first, which steps the optimizer (docs/scaling.md).
fn strategy<B: AutodiffBackend>(devices: &[B::Device]) -> ExecutionStrategy<B> {
    match devices {
        [one] => ExecutionStrategy::single(one.clone()),
        many => ExecutionStrategy::multi(many.to_vec(), MultiDeviceOptim::OptimMainDevice),
    }
}

fn finish(history: Vec<EpochRecord>, run: &Path) -> Result<Trained, VaeError> {
    let best_epoch = best(&history)
        .map(|b| b.epoch)
        .ok_or_else(|| VaeError::Checkpoint {
            path: run.to_path_buf(),
            reason: "no epoch with a finite validation ELBO".into(),
        })?;
    Ok(Trained {
        history,
        best_epoch,
    })
}
