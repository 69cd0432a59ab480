//! burn-train's early-stopping and checkpointing strategies for a restartable run.

use std::path::{Path, PathBuf};

use burn_train::{
    EarlyStoppingStrategy,
    checkpoint::{CheckpointingAction, CheckpointingStrategy},
    metric::store::EventStoreClient,
};

use super::loader::EpochTimes;
use super::step::{Stat, Sums, Tally};
use crate::error::FirstFailure;
use crate::handoff::Handoff;
use crate::history::{EpochRecord, best};
use crate::report;

/// Per-epoch bookkeeping, run by burn-train after each epoch's checkpoint: reads the
/// epoch's means from the metric store, appends them to `metrics.jsonl`/`metrics.csv`,
/// redraws the curves and applies early stopping. Its state is the history on disk, so a
/// resumed run stops exactly where an uninterrupted one would.
#[derive(Clone)]
pub struct EpochLog {
    run: PathBuf,
    history: Vec<EpochRecord>,
    patience: usize,
    times: EpochTimes,
    tally: Tally,
    images: (usize, usize),
    failure: FirstFailure,
    handoff: Handoff,
}

impl EpochLog {
    /// Starts from `history` (empty for a new run); an epoch is complete when `tally`
    /// holds `images.0` training and `images.1` validation images. A metrics file that
    /// cannot be written stops training, with the reason in `failure`.
    pub fn new(
        run: &Path,
        history: Vec<EpochRecord>,
        patience: usize,
        times: EpochTimes,
        tally: Tally,
        images: (usize, usize),
        failure: FirstFailure,
    ) -> Self {
        Self {
            run: run.to_path_buf(),
            history,
            patience,
            times,
            tally,
            images,
            failure,
            handoff: Handoff::default(),
        }
    }

    /// Waits for the epoch's checkpoint files through `handoff` before anything else, so
    /// that the training thread queues no op while burn-train's checkpointer threads hold
    /// its tensors (see [`Handoff`]).
    pub fn after_checkpoint(self, handoff: Handoff) -> Self {
        Self { handoff, ..self }
    }

    fn record(&self, epoch: usize) -> EpochRecord {
        let train = self.tally.wait(true, epoch, self.images.0);
        let valid = self.tally.wait(false, epoch, self.images.1);
        let m = |s: &Option<Sums>, stat: Stat| s.map_or(f64::NAN, |s| s.mean(stat));
        let (secs, images) = self
            .times
            .lock()
            .ok()
            .and_then(|t| t.iter().rev().find(|e| e.0 == epoch).map(|e| (e.1, e.2)))
            .unwrap_or((f64::NAN, 0));
        EpochRecord {
            epoch,
            train_loss: m(&train, Stat::Loss),
            train_neg_elbo: m(&train, Stat::NegElbo),
            train_recon: m(&train, Stat::Recon),
            train_kl: m(&train, Stat::Kl),
            valid_neg_elbo: m(&valid, Stat::NegElbo),
            valid_recon: m(&valid, Stat::Recon),
            valid_kl: m(&valid, Stat::Kl),
            train_seconds: secs,
            images_per_second: images as f64 / secs,
        }
    }
}

impl EarlyStoppingStrategy for EpochLog {
    fn should_stop(&mut self, epoch: usize, _: &EventStoreClient) -> bool {
        if let Err(e) = self.handoff.wait() {
            self.failure.set(e);
            return true;
        }
        let r = self.record(epoch);
        tracing::info!(
            epoch,
            train_neg_elbo = format!("{:.2}", r.train_neg_elbo),
            valid_neg_elbo = format!("{:.2}", r.valid_neg_elbo),
            kl = format!("{:.2}", r.valid_kl),
            images_per_s = format!("{:.0}", r.images_per_second),
            "epoch done"
        );
        self.history.retain(|h| h.epoch < epoch);
        self.history.push(r);
        if let Err(e) = report::write_history(&self.run, &self.history) {
            self.failure.set(e.to_string());
            return true;
        }
        if !self
            .history
            .last()
            .is_some_and(|r| r.valid_neg_elbo.is_finite())
        {
            tracing::error!("validation ELBO is not finite in epoch {epoch}: stopping");
            return true;
        }
        let best_epoch = best(&self.history).map_or(epoch, |b| b.epoch);
        let stop = self.patience > 0 && epoch >= best_epoch + self.patience;
        if stop {
            tracing::info!(
                "early stopping: no better validation ELBO since epoch {best_epoch} ({} epochs)",
                self.patience
            );
        }
        stop
    }
}

/// Keeps the last two epochs' checkpoints and the best one (lowest validation negative
/// ELBO); restartable from the run's history.
///
/// Two, not one: burn-train saves model, optimizer and scheduler on three independent
/// threads, each deleting its old file after writing its new one. Keeping only the last
/// epoch, a SIGKILL could leave `model-5` beside `optim-4` and no complete epoch at all
/// (the SIGKILL test caught it).
pub struct LastAndBest {
    recent: Vec<usize>,
    best: Option<(usize, f64)>,
    tally: Tally,
    valid_images: usize,
    handoff: Handoff,
}

impl LastAndBest {
    /// State after `history` (empty for a new run); every save goes through `handoff`.
    pub fn new(
        history: &[EpochRecord],
        tally: Tally,
        valid_images: usize,
        handoff: Handoff,
    ) -> Self {
        Self {
            recent: history
                .iter()
                .rev()
                .take(2)
                .rev()
                .map(|r| r.epoch)
                .collect(),
            best: best(history).map(|r| (r.epoch, r.valid_neg_elbo)),
            tally,
            valid_images,
            handoff,
        }
    }
}

impl CheckpointingStrategy for LastAndBest {
    fn checkpointing(&mut self, epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        let v = self
            .tally
            .wait(false, epoch, self.valid_images)
            .map_or(f64::NAN, |s| s.mean(Stat::NegElbo));
        self.recent.push(epoch);
        let mut drop: Vec<usize> = Vec::new();
        if self.recent.len() > 2 {
            drop.push(self.recent.remove(0));
        }
        if v.is_finite() && self.best.is_none_or(|(_, b)| v < b) {
            drop.extend(self.best.map(|b| b.0));
            self.best = Some((epoch, v));
        }
        let best = self.best.map(|b| b.0);
        self.handoff.before_save();
        let mut actions = vec![CheckpointingAction::Save];
        drop.sort_unstable();
        drop.dedup();
        actions.extend(
            drop.into_iter()
                .filter(|e| Some(*e) != best && !self.recent.contains(e))
                .map(CheckpointingAction::Delete),
        );
        actions
    }
}
