//! Data: the 2-D toy densities of FFJORD (Grathwohl et al. 2019, `toy_data.py`), the peer
//! benchmarks' two moons and 8-D mixture (`shared/peer/datasets.py`), and the user's
//! tables from CSV or NPY files, split and standardized: the table and its errors here,
//! the readers in `csv` and `npy`, the synthetic densities in `toy`.

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

mod csv;
mod npy;
mod toy;

pub use csv::{parse_csv, read_csv};
pub use npy::{parse_npy, read_npy};
pub use toy::Toy;

/// Everything that can be wrong with a data file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A CSV row with a different number of cells than the first.
    #[error("{path}: line {line} has {got} cells, the first row has {expected}")]
    Ragged {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Cells in the first data row.
        expected: usize,
        /// Cells in this row.
        got: usize,
    },
    /// A CSV cell that is not a number.
    #[error("{path}: line {line}, column {column}: {cell:?} is not a number")]
    NotANumber {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The cell's text.
        cell: String,
    },
    /// NaN or ±Inf in the data.
    #[error("{path}: row {row}, column {column} is {value} (NaN and infinities are not data)")]
    NonFinite {
        /// The file.
        path: String,
        /// 1-based row.
        row: usize,
        /// 1-based column.
        column: usize,
        /// The value.
        value: f64,
    },
    /// A malformed NPY file.
    #[error("{path}: not a usable .npy file: {why}")]
    Npy {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Too few rows to split, or no columns.
    #[error("{path}: {why}")]
    Shape {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// A table: `rows × dim` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Values, row-major.
    pub values: Vec<f64>,
    /// Columns.
    pub dim: usize,
}

impl Table {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    fn check_finite(&self, path: &str) -> Result<(), DataError> {
        match self.values.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(DataError::NonFinite {
                path: path.into(),
                row: i / self.dim + 1,
                column: i % self.dim + 1,
                value: self.values[i],
            }),
        }
    }
}

/// MNIST in logit space (the MAF paper's protocol, as `shared/peer/maf_mnist.py`):
/// dequantize `x = (pixel + u) / 256`, `u ~ U(0, 1)`, then
/// `y = logit(α + (1 − 2α) x)`, `α = 10⁻⁶`. Returns the rows `y` and, per row,
/// `ln|det ∂y/∂pixel| = Σ_j ln(1 − 2α) − ln 256 − ln s_j − ln(1 − s_j)`,
/// `s = α + (1 − 2α) x`, which turns a density of `y` into one of the pixels on `[0, 256)`.
pub fn mnist_logit(pixels: &[u8], dim: usize, rng: &mut StdRng) -> (Table, Vec<f64>) {
    const ALPHA: f64 = 1e-6;
    let mut values = Vec::with_capacity(pixels.len());
    let mut log_det = vec![0.0; pixels.len() / dim];
    for (i, &p) in pixels.iter().enumerate() {
        let x = (f64::from(p) + rng.random::<f64>()) / 256.0;
        let s = ALPHA + (1.0 - 2.0 * ALPHA) * x;
        values.push(s.ln() - (-s).ln_1p());
        log_det[i / dim] += (1.0 - 2.0 * ALPHA).ln() - 256f64.ln() - s.ln() - (-s).ln_1p();
    }
    (Table { values, dim }, log_det)
}

/// Train/validation/test parts of a table, after a seeded shuffle (80/10/10).
pub fn split(table: &Table, seed: u64, path: &str) -> Result<[Table; 3], DataError> {
    let n = table.rows();
    if n < 10 {
        return Err(DataError::Shape {
            path: path.into(),
            why: format!("{n} rows: need at least 10 to split 80/10/10"),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_valid = n / 10;
    let n_test = n / 10;
    let d = table.dim;
    let take = |idx: &[usize]| Table {
        values: idx
            .iter()
            .flat_map(|&r| table.values[r * d..(r + 1) * d].iter().copied())
            .collect(),
        dim: d,
    };
    let (train, rest) = order.split_at(n - n_valid - n_test);
    let (valid, test) = rest.split_at(n_valid);
    Ok([take(train), take(valid), take(test)])
}

/// Per-column standardization `x ↦ (x − μ) / σ` from the training part.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f64>,
    /// Column standard deviations (1 for a constant column).
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits the training table.
    pub fn fit(train: &Table) -> Self {
        let (n, d) = (train.rows() as f64, train.dim);
        let mut mean = vec![0.0; d];
        for row in train.values.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n;
            }
        }
        let mut var = vec![0.0; d];
        for row in train.values.chunks_exact(d) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m).powi(2) / n;
            }
        }
        let std = var
            .into_iter()
            .map(|v| if v > 0.0 { v.sqrt() } else { 1.0 })
            .collect();
        Self { mean, std }
    }

    /// The identity (for data that needs none).
    pub fn identity(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            std: vec![1.0; dim],
        }
    }

    /// Standardized copy of `table`.
    pub fn apply(&self, table: &Table) -> Table {
        let d = table.dim;
        Table {
            values: table
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (v - self.mean[i % d]) / self.std[i % d])
                .collect(),
            dim: d,
        }
    }

    /// `ln|det|` of the standardization, `−Σ ln σ_j`: add it to a log-density of
    /// standardized data to get the log-density in the original units.
    pub fn log_det(&self) -> f64 {
        -self.std.iter().map(|s| s.ln()).sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(t: &Table) -> (Vec<f64>, Vec<f64>) {
        let s = Standardizer::fit(t);
        (s.mean, s.std)
    }

    #[test]
    fn standardizer_round_trip_and_log_det() {
        let t = Table {
            values: vec![1.0, 10.0, 3.0, 30.0, 5.0, 50.0],
            dim: 2,
        };
        let s = Standardizer::fit(&t);
        let z = s.apply(&t);
        let (m, sd) = moments(&z);
        assert!(m.iter().all(|v| v.abs() < 1e-12) && sd.iter().all(|v| (v - 1.0).abs() < 1e-12));
        let want = -((8.0f64 / 3.0).sqrt().ln() + (800.0f64 / 3.0).sqrt().ln());
        assert!((s.log_det() - want).abs() < 1e-12);
    }
}
