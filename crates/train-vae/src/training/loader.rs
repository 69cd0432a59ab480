//! The data loader: every random draw a function of `(seed, epoch)`, for exact resume.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use burn::{
    data::dataloader::{DataLoader, DataLoaderIterator, Progress},
    tensor::{Tensor, TensorData, backend::Backend},
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::StandardNormal;

use super::step::VaeBatch;
use crate::data::binarize_rows;

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
/// Each `iter()` is one epoch: it reseeds the backend, shuffles with an epoch-seeded
/// permutation, and draws from an epoch-seeded stream (for training) the binarization and
/// (always) the posterior's noise ε of every image.
///
/// On several devices burn-train splits the loader ([`DataLoader::slice`]); each part
/// then yields its share of every batch (the first half of each batch's images, say),
/// drawn from the same stream as the whole batch, so the devices together compute exactly
/// the one-device step.
#[derive(Clone)]
pub struct MnistLoader<B: Backend> {
    pixels: Pixels,
    dim: usize,
    latent: usize,
    rows: Arc<Vec<usize>>,
    /// This loader's share of each batch: images `[len·start/of, len·end/of)`.
    share: (usize, usize, usize),
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
    /// shuffled, incomplete last batch dropped, noise for a `latent`-dimensional posterior;
    /// the first `iter()` is epoch `first_epoch`.
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        probs: Vec<f32>,
        (dim, latent): (usize, usize),
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
            latent,
            rows: Arc::new((0..n).collect()),
            share: (0, 1, 1),
            batch_size,
            train: true,
            seed,
            warmup_epochs,
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            times,
            device,
        }
    }

    /// Validation loader: fixed `bits`, in order, every image used, the same noise every
    /// epoch.
    pub fn valid(
        bits: Vec<f32>,
        (dim, latent): (usize, usize),
        batch_size: usize,
        seed: u64,
        device: B::Device,
    ) -> Self {
        let n = bits.len() / dim;
        Self {
            pixels: Pixels::Fixed(Arc::new(bits)),
            dim,
            latent,
            rows: Arc::new((0..n).collect()),
            share: (0, 1, 1),
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
            // One record per epoch: the part holding the start of every batch writes it.
            if l.train && self.batch == l.batches() && l.share.0 == 0 {
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
        let mut eps: Vec<f32> = Vec::with_capacity(rows.len() * l.latent);
        eps.extend((0..rows.len() * l.latent).map(|_| self.rng.sample::<f32, _>(StandardNormal)));
        // This loader's share of the batch, from the whole batch's draws.
        let (start, end, of) = l.share;
        let (lo, hi) = (rows.len() * start / of, rows.len() * end / of);
        let x = x[lo * d..hi * d].to_vec();
        let eps = eps[lo * l.latent..hi * l.latent].to_vec();
        let weight = (hi - lo) as f64 / rows.len() as f64;
        let beta = if l.train && l.warmup_epochs > 0 {
            let t = (self.epoch - 1) as f64 + self.batch as f64 / l.batches() as f64;
            (t / l.warmup_epochs as f64).min(1.0)
        } else {
            1.0
        };
        self.batch += 1;
        let x = Tensor::from_data(TensorData::new(x, [hi - lo, d]), &l.device);
        let eps = Tensor::from_data(TensorData::new(eps, [hi - lo, l.latent]), &l.device);
        Some(VaeBatch {
            x,
            eps,
            beta,
            weight,
        })
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

    /// Items `[start, end)` of `num_items()` become that fraction of every batch (of this
    /// loader's share), with its own epoch count: burn-train gives each device one part.
    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, VaeBatch<B>>> {
        let n = self.rows.len().max(1);
        let end = end.min(n);
        let (a, b, of) = self.share;
        Arc::new(Self {
            share: (a * n + (b - a) * start, a * n + (b - a) * end, of * n),
            next_epoch: Arc::new(AtomicUsize::new(self.next_epoch.load(Ordering::SeqCst))),
            ..self.clone()
        })
    }
}
