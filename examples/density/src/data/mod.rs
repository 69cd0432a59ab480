//! Data: the 2-D toy densities of FFJORD (Grathwohl et al. 2019, `toy_data.py`), the peer
//! benchmarks' two moons and 8-D mixture (`shared/peer/datasets.py`), and the user's
//! tables from CSV or NPY files, split and standardized: the table and its errors here,
//! the table, its errors and its standardization in `table`, the readers in `csv` and
//! `npy`, the synthetic densities in `toy`; the split and MNIST's transform here.

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

mod csv;
mod layout;
mod npy;
mod table;
mod toy;

pub use csv::{parse_csv, read_csv, write_csv};
pub use layout::{Layout, parse_columns};
pub use npy::{parse_npy, read_npy, write_npy};
pub use table::{DataError, Standardizer, Table};
pub use toy::Toy;

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

/// Train/validation/test parts of a table after a seeded shuffle: `valid` and `test` are
/// the fractions of the rows held out for each (`test` may be 0, when the test rows come
/// from a file of their own). Every part must keep at least one row (two for training).
pub fn split(
    table: &Table,
    seed: u64,
    valid: f64,
    test: f64,
    path: &str,
) -> Result<[Table; 3], DataError> {
    let n = table.rows();
    let n_valid = (n as f64 * valid).floor() as usize;
    let n_test = (n as f64 * test).floor() as usize;
    if n_valid == 0 || (test > 0.0 && n_test == 0) || n < n_valid + n_test + 2 {
        return Err(DataError::Shape {
            path: path.into(),
            why: format!(
                "{n} rows are too few to hold out {:.0} % for validation{}: every part \
                 needs rows",
                valid * 100.0,
                if test > 0.0 {
                    format!(" and {:.0} % for testing", test * 100.0)
                } else {
                    String::new()
                }
            ),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
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
