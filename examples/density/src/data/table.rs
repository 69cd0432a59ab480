//! The table of numbers every source yields, what can be wrong with a file of one, and
//! its per-column standardization.

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
    /// Context columns that do not fit the data.
    #[error("{0}")]
    Columns(String),
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

    /// The columns `cols` (0-based, each `< dim`) of every row, in that order.
    pub fn select(&self, cols: &[usize]) -> Table {
        Table {
            values: self
                .values
                .chunks_exact(self.dim.max(1))
                .flat_map(|row| cols.iter().map(|&c| row[c]))
                .collect(),
            dim: cols.len(),
        }
    }

    pub(super) fn check_finite(&self, path: &str) -> Result<(), DataError> {
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
        self.apply_columns(table, &(0..table.dim).collect::<Vec<_>>())
    }

    /// `ln|det|` of the standardization, `−Σ ln σ_j`: add it to a log-density of
    /// standardized data to get the log-density in the original units.
    pub fn log_det(&self) -> f64 {
        self.log_det_of(&(0..self.std.len()).collect::<Vec<_>>())
    }

    /// [`Standardizer::log_det`] of the columns `cols` only (the modelled columns of a
    /// conditional density: the context's units do not change `p(y | c)`).
    pub fn log_det_of(&self, cols: &[usize]) -> f64 {
        -cols.iter().map(|&c| self.std[c].ln()).sum::<f64>()
    }

    /// Standardized copy of `table`, whose columns are the columns `cols` of the data this
    /// standardization was fitted to (`table.dim == cols.len()`): `z = (x − μ)/σ`.
    pub fn apply_columns(&self, table: &Table, cols: &[usize]) -> Table {
        self.map_columns(table, cols, |x, mean, std| (x - mean) / std)
    }

    /// The original units of standardized columns `cols` of `table` (`table.dim ==
    /// cols.len()`): `x = z σ + μ`.
    pub fn restore(&self, table: &Table, cols: &[usize]) -> Table {
        self.map_columns(table, cols, |z, mean, std| z * std + mean)
    }

    /// `f(value, μ, σ)` of every value of `table`, whose columns are the columns `cols`.
    fn map_columns(
        &self,
        table: &Table,
        cols: &[usize],
        f: impl Fn(f64, f64, f64) -> f64,
    ) -> Table {
        let d = table.dim;
        Table {
            values: table
                .values
                .iter()
                .enumerate()
                .map(|(i, &v)| f(v, self.mean[cols[i % d]], self.std[cols[i % d]]))
                .collect(),
            dim: d,
        }
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
