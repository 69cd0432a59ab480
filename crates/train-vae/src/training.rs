//! Training on burn-train's `Learner`, with the pieces it lacks supplied here.
//!
//! burn-train runs the loop: train and validation steps ([`TrainStep`]/[`InferenceStep`]
//! on [`Vae`]), the Adam optimizer, metric aggregation, checkpoints through its
//! `FileCheckpointer`, early stopping, and (with `ExecutionStrategy`) several devices.
//! What it does not do, and this module adds:
//! - **atomic checkpoints**: its files are written in place;
//!   [`AtomicRecorder`](crate::checkpoint::AtomicRecorder) wraps the recorder (see
//!   [`crate::checkpoint`]);
//! - **exact resume**: it restores model, optimizer and scheduler but not the random
//!   streams. [`MnistLoader`] makes every random draw a function of `(seed, epoch)`: it
//!   reseeds the backend (ε of the reparameterization) and its own binarization and
//!   shuffling streams at the start of each epoch, so epoch `k + 1` after a resume from
//!   `k` draws what it would have drawn in one run;
//! - **divergence**: a non-finite training loss stops the run through burn-train's
//!   `Interrupter` before the epoch is checkpointed, so the last checkpoint stays good;
//! - **the run's records**: per-epoch metrics in JSONL and CSV, the loss curves, a
//!   restartable early-stopping rule ([`EpochLog`]) and plain progress lines.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use burn::{
    data::dataloader::{DataLoader, DataLoaderIterator, Progress},
    tensor::{
        Tensor, TensorData,
        backend::{AutodiffBackend, Backend},
    },
};
use burn_train::{
    EarlyStoppingStrategy, InferenceStep, Interrupter, ItemLazy, Learner, LearnerSummary,
    SupervisedTraining, TrainOutput, TrainStep,
    checkpoint::{CheckpointingAction, CheckpointingStrategy},
    logger::FileMetricLogger,
    metric::{
        Adaptor, Metric, MetricAttributes, MetricDefinition, MetricMetadata, MetricName, Numeric,
        NumericAttributes, NumericEntry, SerializedEntry,
        state::{FormatOptions, NumericMetricState},
        store::EventStoreClient,
    },
    renderer::{
        EvaluationName, EvaluationProgress, MetricState, MetricsRenderer,
        MetricsRendererEvaluation, MetricsRendererTraining, ProgressType, TrainingProgress,
    },
};
use flow_programs::FusedAdamConfig;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::{
    checkpoint::{self, CheckpointRecorder},
    config::TrainConfig,
    data::binarize_rows,
    error::VaeError,
    model::Vae,
    report,
};

/// A batch: binarized images and the KL weight β of this step.
#[derive(Debug, Clone)]
pub struct VaeBatch<B: Backend> {
    /// `[n, pixels]`, values in {0, 1}.
    pub x: Tensor<B, 2>,
    /// KL weight (1 outside warm-up and in validation).
    pub beta: f64,
}

/// What a step reports: `[loss, neg_elbo, recon, kl]` batch means, on the device.
#[derive(Debug)]
pub struct VaeOutput<B: Backend> {
    stats: Tensor<B, 1>,
    n: usize,
}

/// A step's report on the host (what metrics read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeStats {
    /// Images in the batch.
    pub n: usize,
    /// `recon + β·kl` (what the optimizer minimizes).
    pub loss: f64,
    /// `recon + kl`, the negative ELBO.
    pub neg_elbo: f64,
    /// `−ln p(x|z_K)`.
    pub recon: f64,
    /// `ln q_K(z_K|x) − ln p(z_K)`.
    pub kl: f64,
}

impl<B: Backend> ItemLazy for VaeOutput<B> {
    type ItemSync = VaeStats;

    fn sync(self) -> VaeStats {
        let v: Vec<f64> = self
            .stats
            .into_data()
            .convert::<f64>()
            .into_vec()
            .unwrap_or_else(|_| vec![f64::NAN; 4]);
        VaeStats {
            n: self.n,
            loss: v[0],
            neg_elbo: v[1],
            recon: v[2],
            kl: v[3],
        }
    }
}

impl Adaptor<VaeStats> for VaeStats {
    fn adapt(&self) -> VaeStats {
        *self
    }
}

/// Per-epoch sums of the step reports, fed by the metrics as burn-train's (asynchronous)
/// event processor handles each step, and read by the end-of-epoch hooks once every image
/// of the epoch is in. burn-train's own metric store is not used for these decisions: its
/// end-of-epoch queries can run before the last entries of an epoch are logged, which made
/// the epoch means (and so early stopping and the "best" checkpoint) vary between runs.
#[derive(Clone, Default)]
pub struct Tally(Arc<(Mutex<SumsByEpoch>, Condvar)>);

/// Sums keyed by (training split?, epoch).
type SumsByEpoch = std::collections::HashMap<(bool, usize), Sums>;

/// Sums over the steps of one epoch and split.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// Images counted.
    pub n: usize,
    /// `Σ n·loss` over steps.
    pub loss: f64,
    /// `Σ n·neg_elbo`.
    pub neg_elbo: f64,
    /// `Σ n·recon`.
    pub recon: f64,
    /// `Σ n·kl`.
    pub kl: f64,
}

impl Sums {
    /// The image-weighted mean of `stat`.
    pub fn mean(&self, stat: Stat) -> f64 {
        let total = match stat {
            Stat::Loss => self.loss,
            Stat::NegElbo => self.neg_elbo,
            Stat::Recon => self.recon,
            Stat::Kl => self.kl,
        };
        total / self.n as f64
    }
}

impl Tally {
    fn add(&self, train: bool, epoch: usize, s: &VaeStats) {
        let (lock, ready) = &*self.0;
        let mut map = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.entry((train, epoch)).or_default();
        let w = s.n as f64;
        e.n += s.n;
        e.loss += w * s.loss;
        e.neg_elbo += w * s.neg_elbo;
        e.recon += w * s.recon;
        e.kl += w * s.kl;
        ready.notify_all();
    }

    /// The sums of an epoch once `images` images are in (`None` after a minute without).
    pub fn wait(&self, train: bool, epoch: usize, images: usize) -> Option<Sums> {
        let (lock, ready) = &*self.0;
        let map = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, _) = ready
            .wait_timeout_while(map, std::time::Duration::from_secs(60), |m| {
                m.get(&(train, epoch)).is_none_or(|s| s.n < images)
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(train, epoch)).copied().filter(|s| s.n >= images)
    }
}

fn output<B: Backend>(model: &Vae<B>, batch: VaeBatch<B>) -> (Tensor<B, 1>, VaeOutput<B>) {
    let n = batch.x.dims()[0];
    let terms = model.terms(batch.x);
    let recon = terms.recon.mean();
    let kl = terms.kl.mean();
    let loss = recon.clone() + kl.clone().mul_scalar(batch.beta);
    let stats = Tensor::cat(vec![loss.clone(), recon.clone() + kl.clone(), recon, kl], 0);
    (loss, VaeOutput { stats, n })
}

impl<B: AutodiffBackend> TrainStep for Vae<B> {
    type Input = VaeBatch<B>;
    type Output = VaeOutput<B>;

    fn step(&self, batch: VaeBatch<B>) -> TrainOutput<VaeOutput<B>> {
        let (loss, out) = output(self, batch);
        let grads = loss.backward();
        let out = VaeOutput {
            stats: out.stats.detach(),
            n: out.n,
        };
        TrainOutput::new(self, grads, out)
    }
}

impl<B: Backend> InferenceStep for Vae<B> {
    type Input = VaeBatch<B>;
    type Output = VaeOutput<B>;

    fn step(&self, batch: VaeBatch<B>) -> VaeOutput<B> {
        output(self, VaeBatch { beta: 1.0, ..batch }).1
    }
}

/// Seed of the random streams of one epoch (0 = validation), from the run seed.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    // SplitMix64 finalizer of (seed, epoch): distinct, well-mixed streams.
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a loader turns grey levels into binary images.
#[derive(Debug, Clone)]
enum Pixels {
    /// Bernoulli(grey/255) drawn fresh for every batch (training).
    Dynamic(Arc<Vec<f32>>),
    /// Fixed bits (validation, drawn once).
    Fixed(Arc<Vec<f32>>),
}

/// Wall time and images of each finished training epoch.
pub type EpochTimes = Arc<Mutex<Vec<(usize, f64, usize)>>>;

/// Batches of binarized MNIST whose random draws depend only on `(seed, epoch)`.
///
/// Each `iter()` is one epoch: it reseeds the backend (so the ε of every step is
/// reproducible), shuffles with an epoch-seeded permutation, and (for training) draws the
/// binarization from an epoch-seeded stream.
#[derive(Clone)]
pub struct MnistLoader<B: Backend> {
    pixels: Pixels,
    dim: usize,
    rows: Arc<Vec<usize>>,
    batch_size: usize,
    train: bool,
    seed: u64,
    warmup_epochs: usize,
    next_epoch: Arc<AtomicUsize>,
    times: EpochTimes,
    device: B::Device,
}

impl<B: Backend> MnistLoader<B> {
    /// Training loader: dynamic binarization of `probs` (`n·dim` grey levels in [0, 1]),
    /// shuffled, incomplete last batch dropped; the first `iter()` is epoch `first_epoch`.
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        probs: Vec<f32>,
        dim: usize,
        batch_size: usize,
        seed: u64,
        warmup_epochs: usize,
        first_epoch: usize,
        times: EpochTimes,
        device: B::Device,
    ) -> Self {
        let n = probs.len() / dim;
        Self {
            pixels: Pixels::Dynamic(Arc::new(probs)),
            dim,
            rows: Arc::new((0..n).collect()),
            batch_size,
            train: true,
            seed,
            warmup_epochs,
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            times,
            device,
        }
    }

    /// Validation loader: fixed `bits`, in order, every image used.
    pub fn valid(
        bits: Vec<f32>,
        dim: usize,
        batch_size: usize,
        seed: u64,
        device: B::Device,
    ) -> Self {
        let n = bits.len() / dim;
        Self {
            pixels: Pixels::Fixed(Arc::new(bits)),
            dim,
            rows: Arc::new((0..n).collect()),
            batch_size,
            train: false,
            seed,
            warmup_epochs: 0,
            next_epoch: Arc::new(AtomicUsize::new(1)),
            times: Arc::default(),
            device,
        }
    }

    fn batches(&self) -> usize {
        if self.train {
            self.rows.len() / self.batch_size
        } else {
            self.rows.len().div_ceil(self.batch_size)
        }
    }
}

struct EpochIter<B: Backend> {
    loader: MnistLoader<B>,
    order: Vec<usize>,
    rng: StdRng,
    epoch: usize,
    batch: usize,
    started: Instant,
}

impl<B: Backend> Iterator for EpochIter<B> {
    type Item = VaeBatch<B>;

    fn next(&mut self) -> Option<VaeBatch<B>> {
        let l = &self.loader;
        if self.batch >= l.batches() {
            if l.train && self.batch == l.batches() {
                let images = l.batches() * l.batch_size;
                let secs = self.started.elapsed().as_secs_f64();
                if let Ok(mut t) = l.times.lock() {
                    t.push((self.epoch, secs, images));
                }
                self.batch += 1;
            }
            return None;
        }
        let start = self.batch * l.batch_size;
        let rows = &self.order[start..(start + l.batch_size).min(self.order.len())];
        let d = l.dim;
        let x = match &l.pixels {
            Pixels::Dynamic(p) => binarize_rows(p, d, rows, &mut self.rng),
            Pixels::Fixed(bits) => rows
                .iter()
                .flat_map(|&r| &bits[r * d..(r + 1) * d])
                .copied()
                .collect(),
        };
        let beta = if l.train && l.warmup_epochs > 0 {
            let t = (self.epoch - 1) as f64 + self.batch as f64 / l.batches() as f64;
            (t / l.warmup_epochs as f64).min(1.0)
        } else {
            1.0
        };
        self.batch += 1;
        let x = Tensor::from_data(TensorData::new(x, [rows.len(), d]), &l.device);
        Some(VaeBatch { x, beta })
    }
}

impl<B: Backend> DataLoaderIterator<VaeBatch<B>> for EpochIter<B> {
    fn progress(&self) -> Progress {
        Progress::new(
            (self.batch.min(self.loader.batches()) * self.loader.batch_size).min(self.order.len()),
            self.loader.batches() * self.loader.batch_size.min(self.order.len()),
        )
    }
}

impl<B: Backend> DataLoader<B, VaeBatch<B>> for MnistLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<VaeBatch<B>> + 'a> {
        let epoch = if self.train {
            self.next_epoch.fetch_add(1, Ordering::SeqCst)
        } else {
            0
        };
        let seed = epoch_seed(self.seed, epoch);
        B::seed(&self.device, seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order = self.rows.to_vec();
        if self.train {
            order.shuffle(&mut rng);
        }
        Box::new(EpochIter {
            loader: self.clone(),
            order,
            rng,
            epoch,
            batch: 0,
            started: Instant::now(),
        })
    }

    fn num_items(&self) -> usize {
        self.rows.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, VaeBatch<B>>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, VaeBatch<B>>> {
        Arc::new(Self {
            rows: Arc::new(self.rows[start..end.min(self.rows.len())].to_vec()),
            ..self.clone()
        })
    }
}

/// Which field of [`VaeStats`] a metric follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// The optimized loss.
    Loss,
    /// The negative ELBO.
    NegElbo,
    /// The reconstruction term.
    Recon,
    /// The KL term.
    Kl,
}

impl Stat {
    /// All statistics, in report order.
    pub const ALL: [Stat; 4] = [Stat::Loss, Stat::NegElbo, Stat::Recon, Stat::Kl];

    /// Metric name (also the JSONL/CSV column stem).
    pub fn name(self) -> &'static str {
        match self {
            Stat::Loss => "loss",
            Stat::NegElbo => "neg_elbo",
            Stat::Recon => "recon",
            Stat::Kl => "kl",
        }
    }

    fn of(self, s: &VaeStats) -> f64 {
        match self {
            Stat::Loss => s.loss,
            Stat::NegElbo => s.neg_elbo,
            Stat::Recon => s.recon,
            Stat::Kl => s.kl,
        }
    }
}

/// A numeric burn-train metric following one [`Stat`]; with an interrupter, a non-finite
/// value stops training.
#[derive(Clone)]
pub struct StatMetric {
    stat: Stat,
    name: MetricName,
    state: NumericMetricState,
    stop_on_non_finite: Option<Interrupter>,
    tally: Option<(Tally, bool)>,
}

impl StatMetric {
    /// A metric for `stat`.
    pub fn new(stat: Stat) -> Self {
        Self {
            stat,
            name: Arc::new(stat.name().to_string()),
            state: NumericMetricState::default(),
            stop_on_non_finite: None,
            tally: None,
        }
    }

    /// Adds every step report to `tally` (under `train` or validation).
    pub fn tallying(mut self, tally: Tally, train: bool) -> Self {
        self.tally = Some((tally, train));
        self
    }

    /// Stops training through `interrupter` when a value is NaN or infinite.
    pub fn stopping(mut self, interrupter: Interrupter) -> Self {
        self.stop_on_non_finite = Some(interrupter);
        self
    }
}

/// Message the interrupter carries when the loss is not finite.
pub const DIVERGED: &str = "non-finite loss";

impl Metric for StatMetric {
    type Input = VaeStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &VaeStats, meta: &MetricMetadata) -> SerializedEntry {
        if let Some((tally, train)) = &self.tally {
            tally.add(*train, meta.global_progress.items_processed, item);
        }
        let v = self.stat.of(item);
        if !v.is_finite()
            && let Some(i) = &self.stop_on_non_finite
        {
            i.stop(Some(DIVERGED));
        }
        self.state
            .update(v, item.n, FormatOptions::new(self.name()).precision(2))
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("nats".into()),
            higher_is_better: false,
        }
        .into()
    }
}

impl Numeric for StatMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// Progress: an indicatif bar on a terminal, a plain `tracing` line every quarter epoch
/// otherwise.
pub struct LineRenderer {
    names: std::collections::HashMap<String, String>,
    latest: std::collections::BTreeMap<String, String>,
    bar: Option<indicatif::ProgressBar>,
    last_quarter: (usize, usize),
}

impl LineRenderer {
    /// A renderer choosing bar or lines by whether stderr is a terminal.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            names: Default::default(),
            latest: Default::default(),
            bar,
            last_quarter: (0, 0),
        }
    }

    fn note(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state {
            let id = format!("{:?}", entry.metric_id);
            let name = self.names.get(&id).cloned().unwrap_or(id);
            self.latest.insert(name, format!("{:.2}", value.current()));
        }
    }

    fn show(&mut self, split: &str, item: &TrainingProgress) {
        let Some(p) = &item.progress else { return };
        let epoch = item.global_progress.items_processed;
        let metrics = self
            .latest
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("  ");
        if let Some(bar) = &self.bar {
            bar.set_length(p.items_total as u64);
            bar.set_position(p.items_processed as u64);
            bar.set_prefix(format!("epoch {epoch} {split}"));
            bar.set_message(metrics);
        } else if split == "train" && p.items_total > 0 {
            let quarter = 4 * p.items_processed / p.items_total;
            if quarter > 0 && quarter < 4 && (epoch, quarter) != self.last_quarter {
                self.last_quarter = (epoch, quarter);
                tracing::info!(
                    "epoch {epoch}: {}/{} images  {metrics}",
                    p.items_processed,
                    p.items_total
                );
            }
        }
    }
}

impl Default for LineRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.note(state);
    }
    fn update_valid(&mut self, state: MetricState) {
        self.note(state);
    }
    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.show("train", &item);
    }
    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.show("valid", &item);
    }
    fn on_train_end(
        &mut self,
        _: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        Ok(())
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _: EvaluationName, state: MetricState) {
        self.note(state);
    }
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(format!("{:?}", definition.metric_id), definition.name);
    }
}

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One epoch's record (a line of `metrics.jsonl`; a NaN is written as `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss (`recon + β·kl`).
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    /// Mean training negative ELBO.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_neg_elbo: f64,
    /// Mean training reconstruction term.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_recon: f64,
    /// Mean training KL term.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_kl: f64,
    /// Validation negative ELBO (one sample per image, β = 1).
    #[serde(deserialize_with = "nan_from_null")]
    pub valid_neg_elbo: f64,
    /// Validation reconstruction term.
    #[serde(deserialize_with = "nan_from_null")]
    pub valid_recon: f64,
    /// Validation KL term.
    #[serde(deserialize_with = "nan_from_null")]
    pub valid_kl: f64,
    /// Seconds of the training epoch.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_seconds: f64,
    /// Training throughput, images per second.
    #[serde(deserialize_with = "nan_from_null")]
    pub images_per_second: f64,
}

impl EpochRecord {
    /// Whether the training loss and the validation −ELBO are finite.
    pub fn is_finite(&self) -> bool {
        self.train_loss.is_finite() && self.valid_neg_elbo.is_finite()
    }
}

/// Reads the records of a run (`metrics.jsonl`), skipping none: a bad line is an error.
pub fn read_history(run: &Path) -> Result<Vec<EpochRecord>, VaeError> {
    let path = run.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| VaeError::Checkpoint {
                path: path.clone(),
                reason: format!("bad metrics line: {e}"),
            })
        })
        .collect()
}

/// The best (lowest finite validation negative ELBO) record.
pub fn best(history: &[EpochRecord]) -> Option<&EpochRecord> {
    history
        .iter()
        .filter(|r| r.valid_neg_elbo.is_finite())
        .min_by(|a, b| a.valid_neg_elbo.total_cmp(&b.valid_neg_elbo))
}

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
}

impl EpochLog {
    /// Starts from `history` (empty for a new run); an epoch is complete when `tally`
    /// holds `images.0` training and `images.1` validation images.
    pub fn new(
        run: &Path,
        history: Vec<EpochRecord>,
        patience: usize,
        times: EpochTimes,
        tally: Tally,
        images: (usize, usize),
    ) -> Self {
        Self {
            run: run.to_path_buf(),
            history,
            patience,
            times,
            tally,
            images,
        }
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
            tracing::error!("could not write the metrics: {e}");
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
}

impl LastAndBest {
    /// State after `history` (empty for a new run).
    pub fn new(history: &[EpochRecord], tally: Tally, valid_images: usize) -> Self {
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

/// The host data of a run: training grey levels and fixed validation bits.
pub struct RunData {
    /// Pixels per image.
    pub dim: usize,
    /// Training grey levels in [0, 1], `n_train · dim`.
    pub train: Vec<f32>,
    /// Validation bits, `n_valid · dim`.
    pub valid: Vec<f32>,
}

/// How a finished training run went.
#[derive(Debug, Clone)]
pub struct Trained {
    /// All epoch records.
    pub history: Vec<EpochRecord>,
    /// The best epoch.
    pub best_epoch: usize,
}

/// Trains (or resumes) the run in `run`, which must hold `config.toml`. Returns the history.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    data: &RunData,
    run: &Path,
    resume: bool,
    device: &B::Device,
) -> Result<Trained, VaeError> {
    let (history, start) = if resume {
        let history = read_history(run)?;
        let done = checkpoint::complete_epochs(run);
        // The last epoch that is complete on disk and finite (a diverged epoch may have
        // been checkpointed before its validation showed it).
        let last = history
            .iter()
            .take_while(|r| r.is_finite())
            .map(|r| r.epoch)
            .filter(|e| done.contains(e))
            .max()
            .ok_or_else(|| VaeError::Checkpoint {
                path: run.to_path_buf(),
                reason: "no complete checkpoint to resume from".into(),
            })?;
        checkpoint::clean(run, last)?;
        let history: Vec<_> = history.into_iter().filter(|r| r.epoch <= last).collect();
        report::write_history(run, &history)?;
        tracing::info!("resuming {} after epoch {last}", run.display());
        (history, Some(last))
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
    // Adam fused into one pass per parameter on the CPU backends (flow_programs::FusedAdamConfig); burn's
    // default ε = 1e-5, as every run so far was trained with.
    let optim = FusedAdamConfig::new().with_epsilon(1e-5).init();
    let learner = Learner::new(model, optim, config.lr);

    let times: EpochTimes = Arc::default();
    let tally = Tally::default();
    let n_train = data.train.len() / data.dim;
    let train_images = n_train / config.batch_size * config.batch_size;
    let valid_images = data.valid.len() / data.dim;
    let train_loader = MnistLoader::<B>::train(
        data.train.clone(),
        data.dim,
        config.batch_size,
        config.seed,
        config.warmup_epochs,
        first_epoch,
        times.clone(),
        device.clone(),
    );
    let valid_loader = MnistLoader::<B::InnerBackend>::valid(
        data.valid.clone(),
        data.dim,
        config.batch_size.max(500),
        config.seed,
        device.clone(),
    );

    let mut training = SupervisedTraining::new(run, Arc::new(train_loader), Arc::new(valid_loader))
        .with_application_logger(None)
        .with_metric_logger(FileMetricLogger::new(run.join("burn-train")))
        .renderer(LineRenderer::new())
        .with_file_checkpointer(CheckpointRecorder::default())
        .with_checkpointing_strategy(LastAndBest::new(&history, tally.clone(), valid_images))
        .early_stopping(EpochLog::new(
            run,
            history,
            config.patience,
            times,
            tally.clone(),
            (train_images, valid_images),
        ))
        .num_epochs(config.epochs);
    let interrupter = training.interrupter();
    training =
        training.metric_train_numeric(StatMetric::new(Stat::Loss).stopping(interrupter.clone()));
    training =
        training.metric_train_numeric(StatMetric::new(Stat::NegElbo).tallying(tally.clone(), true));
    training = training.metric_valid_numeric(StatMetric::new(Stat::NegElbo).tallying(tally, false));
    for stat in [Stat::Recon, Stat::Kl] {
        training = training
            .metric_train_numeric(StatMetric::new(stat))
            .metric_valid_numeric(StatMetric::new(stat));
    }
    if let Some(epoch) = start {
        training = training.checkpoint(epoch);
    }
    let _ = training.launch(learner);

    let history = read_history(run)?;
    let bad = history.iter().find(|r| !r.is_finite()).map(|r| r.epoch);
    if bad.is_some() || interrupter.get_message().as_deref() == Some(DIVERGED) {
        let epoch = bad.unwrap_or_else(|| history.last().map_or(first_epoch, |r| r.epoch + 1));
        let last_good = checkpoint::complete_epochs(run)
            .into_iter()
            .filter(|&e| e < epoch)
            .max()
            .map_or("none (it diverged in the first epoch)".to_string(), |e| {
                checkpoint::file(run, "model", e).display().to_string()
            });
        return Err(VaeError::Diverged { epoch, last_good });
    }
    finish(history, run)
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
