//! The training and validation steps on [`Vae`]: batches, their outputs and the per-epoch
//! sums that the metrics read ([`Tally`]).

use std::sync::{Arc, Condvar, Mutex};

use burn::tensor::{
    Tensor,
    backend::{AutodiffBackend, Backend},
};
use burn_train::{InferenceStep, ItemLazy, TrainOutput, TrainStep, metric::Adaptor};

use crate::model::Vae;

/// A batch: binarized images, the posterior's noise, the KL weight β of this step, and the
/// share of the step's images it holds.
#[derive(Debug, Clone)]
pub struct VaeBatch<B: Backend> {
    /// `[n, pixels]`, values in {0, 1}.
    pub x: Tensor<B, 2>,
    /// `[n, latent]` standard normal noise of the reparameterization.
    pub eps: Tensor<B, 2>,
    /// KL weight (1 outside warm-up and in validation).
    pub beta: f64,
    /// `n` over the images of the whole step: 1 on one device; on several, each device's
    /// share, so that the gradients burn-train sums over devices are the whole batch's.
    pub weight: f64,
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

/// Already on the host: the step reads its statistics on the training thread, so no
/// tensor reaches burn-train's metric thread (burn-fusion 0.21 loses tensor handles used
/// across threads; docs/architecture.md, "Threads and burn-fusion").
impl ItemLazy for VaeStats {
    type ItemSync = VaeStats;

    fn sync(self) -> VaeStats {
        self
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
    pub(super) fn add(&self, train: bool, epoch: usize, s: &VaeStats) {
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

/// The loss to minimize (the batch's share of the step's mean) and the batch's statistics
/// `[loss, neg_elbo, recon, kl]` (its means, detached).
fn output<B: Backend>(model: &Vae<B>, batch: VaeBatch<B>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let terms = model.terms_with(batch.x, batch.eps);
    let recon = terms.recon.mean();
    let kl = terms.kl.mean();
    let loss = recon.clone() + kl.clone().mul_scalar(batch.beta);
    let stats = Tensor::cat(vec![loss.clone(), recon.clone() + kl.clone(), recon, kl], 0);
    (loss.mul_scalar(batch.weight), stats.detach())
}

/// The statistics of a batch of `n` images, read to the host in one transfer.
fn read<B: Backend>(stats: Tensor<B, 1>, n: usize) -> VaeStats {
    let v: Vec<f64> = stats
        .into_data()
        .convert::<f64>()
        .into_vec()
        .unwrap_or_else(|_| vec![f64::NAN; 4]);
    VaeStats {
        n,
        loss: v[0],
        neg_elbo: v[1],
        recon: v[2],
        kl: v[3],
    }
}

impl<B: AutodiffBackend> TrainStep for Vae<B> {
    type Input = VaeBatch<B>;
    type Output = VaeStats;

    fn step(&self, batch: VaeBatch<B>) -> TrainOutput<VaeStats> {
        let n = batch.x.dims()[0];
        let (loss, stats) = output(self, batch);
        // Read after the backward pass is queued, so that burn-fusion sees the whole step.
        let grads = loss.backward();
        TrainOutput::new(self, grads, read(stats, n))
    }
}

impl<B: Backend> InferenceStep for Vae<B> {
    type Input = VaeBatch<B>;
    type Output = VaeStats;

    fn step(&self, batch: VaeBatch<B>) -> VaeStats {
        let n = batch.x.dims()[0];
        read(output(self, VaeBatch { beta: 1.0, ..batch }).1, n)
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

    pub(super) fn of(self, s: &VaeStats) -> f64 {
        match self {
            Stat::Loss => s.loss,
            Stat::NegElbo => s.neg_elbo,
            Stat::Recon => s.recon,
            Stat::Kl => s.kl,
        }
    }
}
