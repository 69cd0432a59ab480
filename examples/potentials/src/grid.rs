//! Computations on grids and in chunks: `−U` over a square for the figure, `ln Z` by the
//! midpoint rule, and the chunking that keeps every tensor of samples bounded.

use burn::tensor::{Tensor, TensorData};
use flow_core::ops::logsumexp;
use flow_plots::Window;
use flow_programs::{self as backend, Inner};

use crate::targets::Target;

pub const CHUNK: usize = 20_000;

pub fn chunks(total: usize) -> impl Iterator<Item = usize> {
    (0..total.div_ceil(CHUNK)).map(move |i| CHUNK.min(total - i * CHUNK))
}

pub fn host(t: Tensor<Inner, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec()
        .expect("float data")
}

/// `−U` on the cells of a `res × res` grid over `[lo, hi]²`, computed in chunks.
pub fn neg_energy_grid(target: Target, lo: f64, hi: f64, res: usize) -> Vec<f64> {
    let device = backend::device();
    let total = res * res;
    let mut out = Vec::with_capacity(total);
    let mut start = 0;
    for m in chunks(total) {
        let pts = Window { lo, hi, res }.centres(start..start + m);
        let z = Tensor::<Inner, 2>::from_data(TensorData::new(pts, [m, 2]), &device);
        out.extend(host(target.energy(z).neg()));
        start += m;
    }
    out
}

/// `ln Z = ln ∫ exp(−U)` by the midpoint rule on a 2001² grid over `[−8, 8]²` (holds the
/// mass of `U₁`: its ring has radius 2 and width 0.4). The log-sum-exp runs on the device
/// per chunk; chunks are combined in f64.
pub fn log_normalizer(target: Target, wall: Option<f64>) -> f64 {
    let device = backend::device();
    let (lo, hi, res) = (-8.0, 8.0, 2001usize);
    let cell = ((hi - lo) / res as f64).powi(2);
    let mut partial = Vec::new();
    let mut start = 0;
    for m in chunks(res * res) {
        let pts = Window { lo, hi, res }.centres(start..start + m);
        let z = Tensor::<Inner, 2>::from_data(TensorData::new(pts, [m, 2]), &device);
        let neg_u = target.confined_energy(z, wall).neg().reshape([1, m]);
        partial.extend(host(logsumexp(neg_u, 1).reshape([1])));
        start += m;
    }
    let max = partial.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + partial.iter().map(|p| (p - max).exp()).sum::<f64>().ln() + cell.ln()
}
