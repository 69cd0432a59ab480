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
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

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
