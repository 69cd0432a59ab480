//! The data of one fit: where it comes from, its train/validation/test parts in
//! standardized units, its column layout, and the training mini-batches.

use std::path::{Path, PathBuf};

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use density::data::{self, Layout, Standardizer, Table, Toy};

use crate::error::{Result, other};

/// Where the data comes from: a toy name, the embedded MNIST digits, or a `.csv` / `.npy`
/// file.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A synthetic density, sampled afresh for every batch.
    Toy(Toy),
    /// The 10,000 embedded MNIST digits in logit space: the first 8,000 train, the next
    /// 1,000 validate, the last 1,000 (the peer's validation set) test.
    Mnist,
    /// A table.
    File(PathBuf),
}

/// `--data`'s parser.
pub fn parse_source(s: &str) -> std::result::Result<Source, String> {
    if let Ok(toy) = <Toy as clap::ValueEnum>::from_str(s, true) {
        return Ok(Source::Toy(toy));
    }
    if s == "mnist" {
        return Ok(Source::Mnist);
    }
    let path = PathBuf::from(s);
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv" | "npy") => Ok(Source::File(path)),
        _ => Err(format!(
            "{s:?} is neither a toy data set (8gaussians, moons, checkerboard, pinwheel, rings, \
             2spirals, peer-moons, mog8, cond-bimodal), mnist, nor a .csv or .npy file"
        )),
    }
}

/// How to split and lay out the data (from the command line).
pub struct Plan<'a> {
    /// The source.
    pub source: &'a Source,
    /// Test rows from a file of their own (tables only).
    pub test_file: Option<&'a Path>,
    /// Fraction of a table's rows held out for validation.
    pub valid_fraction: f64,
    /// Context columns, 0-based.
    pub context: &'a [usize],
    /// Validation and test points drawn for toys.
    pub n_test: usize,
    /// Seed of the split and of toy draws.
    pub seed: u64,
}

/// The data of one run, standardized: train (or a sampler for toys), validation, test,
/// all with every column of the source (the layout says which condition).
pub struct Dataset {
    /// Short name for directories and reports.
    pub name: String,
    /// The toy, if the data is one.
    pub toy: Option<Toy>,
    /// Training rows of a table.
    pub train: Option<Table>,
    /// MNIST training digits (pixels, 784 per row): dequantized afresh for every batch.
    pub mnist_train: Option<Vec<u8>>,
    /// MNIST: the test rows' `ln|det ∂y/∂pixel|`, for bits per dimension.
    pub mnist_test_log_det: Option<Vec<f64>>,
    /// Validation rows.
    pub valid: Table,
    /// Test rows.
    pub test: Table,
    /// Test set in the original units (for the exact log-density of toys).
    pub test_raw: Table,
    /// The standardization of every column, fitted to the training rows.
    pub standardizer: Standardizer,
    /// Which columns condition.
    pub layout: Layout,
}

/// Reads a `.npy` or `.csv` table.
pub fn read_table(path: &Path) -> Result<Table> {
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => data::read_npy(path)?,
        _ => data::read_csv(path)?,
    })
}

/// Refuses training rows with a constant column (a point mass: the log-likelihood grows
/// without bound, so any number reported would be meaningless), and warns when most rows
/// repeat others (a flow can pile density onto repeated points).
fn check_degenerate(train: &Table, path: &Path) -> Result<()> {
    let d = train.dim;
    let rows: Vec<&[f64]> = train.values.chunks_exact(d).collect();
    if let Some(j) = (0..d).find(|&j| rows.iter().all(|r| r[j] == rows[0][j])) {
        return Err(other(format!(
            "{}: column {} is constant ({}) in all {} training rows: its density is a point \
             mass and the log-likelihood is unbounded; drop the column",
            path.display(),
            j + 1,
            rows[0][j],
            rows.len()
        )));
    }
    let mut distinct: Vec<Vec<u64>> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.to_bits()).collect())
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() * 2 < rows.len() {
        tracing::warn!(
            "{}: only {} of the {} training rows are distinct: a flow can put unbounded \
             density on repeated points (add noise, or deduplicate)",
            path.display(),
            distinct.len(),
            rows.len()
        );
    }
    Ok(())
}

impl Dataset {
    /// Reads or draws the data of `plan`, splits and standardizes it.
    pub fn new(plan: &Plan) -> Result<Self> {
        let Plan {
            source,
            seed,
            n_test,
            ..
        } = *plan;
        if plan.test_file.is_some() && !matches!(source, Source::File(_)) {
            return Err(other(
                "--test-file goes with a table (--data file.csv or file.npy)",
            ));
        }
        match source {
            Source::Toy(toy) => {
                let valid = toy.sample(n_test, &mut StdRng::seed_from_u64(seed ^ 0x5EED_0001));
                let test = toy.sample(n_test, &mut StdRng::seed_from_u64(seed ^ 0x5EED_0002));
                Ok(Self {
                    name: <Toy as clap::ValueEnum>::to_possible_value(toy)
                        .map_or_else(|| format!("{toy:?}"), |v| v.get_name().to_string()),
                    toy: Some(*toy),
                    train: None,
                    mnist_train: None,
                    mnist_test_log_det: None,
                    test_raw: test.clone(),
                    standardizer: Standardizer::identity(toy.dim()),
                    layout: Layout::new(toy.dim(), plan.context)?,
                    valid,
                    test,
                })
            }
            Source::File(path) => Self::table(plan, path),
            Source::Mnist => {
                let images = train_vae::data::embedded_images().map_err(other)?;
                let d = images.dim();
                let part =
                    |r: std::ops::Range<usize>| images.pixels[r.start * d..r.end * d].to_vec();
                // Fixed dequantization noise for validation and test (seeded).
                let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_0003);
                let (valid, _) = data::mnist_logit(&part(8000..9000), d, &mut rng);
                let (test, test_log_det) = data::mnist_logit(&part(9000..10_000), d, &mut rng);
                Ok(Self {
                    name: "mnist".into(),
                    toy: None,
                    train: None,
                    mnist_train: Some(part(0..8000)),
                    mnist_test_log_det: Some(test_log_det),
                    test_raw: test.clone(),
                    standardizer: Standardizer::identity(d),
                    layout: Layout::new(d, plan.context)?,
                    valid,
                    test,
                })
            }
        }
    }

    fn table(plan: &Plan, path: &Path) -> Result<Self> {
        let table = read_table(path)?;
        let name = path.display().to_string();
        let (train, valid, test) = match plan.test_file {
            Some(test_path) => {
                let test = read_table(test_path)?;
                if test.dim != table.dim {
                    return Err(other(format!(
                        "{} has {} columns, {} has {}: a test file needs the training \
                         file's columns",
                        test_path.display(),
                        test.dim,
                        path.display(),
                        table.dim
                    )));
                }
                let [train, valid, _] =
                    data::split(&table, plan.seed, plan.valid_fraction, 0.0, &name)?;
                (train, valid, test)
            }
            None => {
                let [train, valid, test] =
                    data::split(&table, plan.seed, plan.valid_fraction, 0.1, &name)?;
                (train, valid, test)
            }
        };
        check_degenerate(&train, path)?;
        let standardizer = Standardizer::fit(&train);
        Ok(Self {
            name: path
                .file_stem()
                .map_or("data".into(), |s| s.to_string_lossy().into_owned()),
            toy: None,
            mnist_train: None,
            mnist_test_log_det: None,
            train: Some(standardizer.apply(&train)),
            valid: standardizer.apply(&valid),
            test_raw: test.clone(),
            test: standardizer.apply(&test),
            layout: Layout::new(table.dim, plan.context)?,
            standardizer,
        })
    }

    /// Modelled columns.
    pub fn dim(&self) -> usize {
        self.layout.modelled().len()
    }

    /// Where a table's flow starts: the training rows' maximum-likelihood Gaussian
    /// `N(μ, A Aᵀ)` of the modelled columns, or, with `regression` (a conditional density
    /// on a normal base), the least-squares linear-Gaussian fit `N(c B + b, A Aᵀ)` of the
    /// modelled columns on the context, `A` the Cholesky factor of its residual covariance.
    /// `None` for toys and MNIST (drawn afresh). Modelled columns that are linear
    /// combinations of the others (and of the context) are an error naming them.
    pub fn start(&self, regression: bool) -> Result<Option<Start>> {
        let Some(train) = &self.train else {
            return Ok(None);
        };
        let modelled = self.layout.modelled();
        let y = train.select(&modelled);
        let (n, d) = (y.rows(), y.dim);
        let regression = regression && !self.layout.context().is_empty();
        // Predictors: the context and a constant (or the constant alone: the mean).
        let x = if regression {
            train.select(self.layout.context())
        } else {
            Table {
                values: Vec::new(),
                dim: 0,
            }
        };
        let k = x.dim + 1;
        let row = |r: usize| -> Vec<f64> {
            let mut v = x.values[r * x.dim..(r + 1) * x.dim].to_vec();
            v.push(1.0);
            v
        };
        let mut xtx = vec![0.0; k * k];
        let mut xty = vec![0.0; k * d];
        for r in 0..n {
            let xr = row(r);
            for i in 0..k {
                for j in 0..k {
                    xtx[i * k + j] += xr[i] * xr[j];
                }
                for j in 0..d {
                    xty[i * d + j] += xr[i] * y.values[r * d + j];
                }
            }
        }
        cholesky(&mut xtx, k).map_err(|col| {
            other(format!(
                "context column {} is (nearly) a linear combination of the other context \
                 columns in the training rows: drop it",
                self.layout.context().get(col).map_or(0, |c| c + 1)
            ))
        })?;
        // β = (XᵀX)⁻¹ Xᵀ Y, column by column: L Lᵀ β = Xᵀy.
        let mut beta = vec![0.0; k * d];
        for j in 0..d {
            let rhs: Vec<f64> = (0..k).map(|i| xty[i * d + j]).collect();
            let solved = back_substitute_t(&xtx, k, &forward_substitute(&xtx, k, &rhs));
            for i in 0..k {
                beta[i * d + j] = solved[i];
            }
        }
        let mut cov = vec![0.0; d * d];
        for r in 0..n {
            let xr = row(r);
            let resid: Vec<f64> = (0..d)
                .map(|j| y.values[r * d + j] - (0..k).map(|i| xr[i] * beta[i * d + j]).sum::<f64>())
                .collect();
            for i in 0..d {
                for j in 0..=i {
                    cov[i * d + j] += resid[i] * resid[j] / n as f64;
                }
            }
        }
        cholesky(&mut cov, d).map_err(|col| {
            let given = if regression { " and the context" } else { "" };
            other(format!(
                "column {} of the training data is (nearly) a linear combination of the \
                 columns before it{given}: the data lies on a lower-dimensional subspace and \
                 has no density; drop the column, or fit with --no-whiten",
                modelled[col] + 1
            ))
        })?;
        let intercept = beta[(k - 1) * d..].to_vec();
        if !regression {
            return Ok(Some(Start {
                a: cov,
                shift: intercept,
                regression: None,
            }));
        }
        // In the whitened coordinates z = A⁻¹ y the regression is c B A⁻ᵀ + b A⁻ᵀ: each row
        // v of B (and b) becomes (A⁻¹ vᵀ)ᵀ.
        let whiten = |v: &[f64]| forward_substitute(&cov, d, v);
        let weight: Vec<f64> = (0..k - 1)
            .flat_map(|i| whiten(&beta[i * d..(i + 1) * d]))
            .collect();
        Ok(Some(Start {
            regression: Some((weight, whiten(&intercept))),
            a: cov,
            shift: vec![0.0; d],
        }))
    }
}

/// Where a flow on a table starts (see [`Dataset::start`]).
pub struct Start {
    /// Lower triangular `A`, row-major: the whitening layer's matrix.
    pub a: Vec<f64>,
    /// The whitening layer's shift.
    pub shift: Vec<f64>,
    /// The conditional base's linear start `(W, b)` in whitened coordinates, row-major
    /// `[context, dim]` and `[dim]`.
    pub regression: Option<(Vec<f64>, Vec<f64>)>,
}

/// `L⁻¹ v` for a lower triangular `L` (`d × d`, row-major).
fn forward_substitute(l: &[f64], d: usize, v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; d];
    for i in 0..d {
        let dot: f64 = (0..i).map(|k| l[i * d + k] * out[k]).sum();
        out[i] = (v[i] - dot) / l[i * d + i];
    }
    out
}

/// `L⁻ᵀ v` for a lower triangular `L` (`d × d`, row-major).
fn back_substitute_t(l: &[f64], d: usize, v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; d];
    for i in (0..d).rev() {
        let dot: f64 = (i + 1..d).map(|k| l[k * d + i] * out[k]).sum();
        out[i] = (v[i] - dot) / l[i * d + i];
    }
    out
}

/// In-place Cholesky factorization of the lower triangle of `a` (`d × d`, row-major);
/// zeros the upper triangle. `Err(j)` when column `j`'s pivot is not positive (relative to
/// its variance: 1e-10 of it).
fn cholesky(a: &mut [f64], d: usize) -> std::result::Result<(), usize> {
    for j in 0..d {
        let var = a[j * d + j];
        let pivot = var - (0..j).map(|k| a[j * d + k].powi(2)).sum::<f64>();
        if pivot.is_nan() || pivot <= 1e-10 * var.max(f64::MIN_POSITIVE) {
            return Err(j);
        }
        let root = pivot.sqrt();
        a[j * d + j] = root;
        for i in j + 1..d {
            let dot: f64 = (0..j).map(|k| a[i * d + k] * a[j * d + k]).sum();
            a[i * d + j] = (a[i * d + j] - dot) / root;
        }
        for k in j + 1..d {
            a[j * d + k] = 0.0;
        }
    }
    Ok(())
}

/// Fresh mini-batches (every column): new toy samples every step, or a reshuffled pass over
/// the table.
pub struct Batches<'a> {
    data: &'a Dataset,
    rng: StdRng,
    order: Vec<usize>,
    at: usize,
}

impl<'a> Batches<'a> {
    /// Batches of `data`, shuffled with `seed`.
    pub fn new(data: &'a Dataset, seed: u64) -> Self {
        Self {
            data,
            rng: StdRng::seed_from_u64(seed),
            order: Vec::new(),
            at: 0,
        }
    }

    /// The next `size` rows (fewer when the table is smaller).
    pub fn next(&mut self, size: usize) -> Table {
        if let Some(toy) = self.data.toy {
            return toy.sample(size, &mut self.rng);
        }
        if let Some(pixels) = &self.data.mnist_train {
            let d = self.data.valid.dim;
            let rows = self.take(pixels.len() / d, size);
            let batch: Vec<u8> = rows
                .iter()
                .flat_map(|&r| pixels[r * d..(r + 1) * d].iter().copied())
                .collect();
            return data::mnist_logit(&batch, d, &mut self.rng).0;
        }
        let train = self
            .data
            .train
            .as_ref()
            .expect("file data has a train split");
        let d = train.dim;
        let values = self
            .take(train.rows(), size)
            .iter()
            .flat_map(|&r| train.values[r * d..(r + 1) * d].iter().copied())
            .collect();
        Table { values, dim: d }
    }

    /// The next `size` row indices of a reshuffled pass over `rows` rows.
    fn take(&mut self, rows: usize, size: usize) -> Vec<usize> {
        (0..size.min(rows))
            .map(|_| {
                if self.at == self.order.len() {
                    self.order = (0..rows).collect();
                    self.order.shuffle(&mut self.rng);
                    self.at = 0;
                }
                self.at += 1;
                self.order[self.at - 1]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::cholesky;

    #[test]
    fn cholesky_factors_and_flags_dependent_columns() {
        let mut a = vec![4.0, 0.0, 0.0, 2.0, 5.0, 0.0, -2.0, 1.0, 6.0];
        let full = a.clone();
        cholesky(&mut a, 3).unwrap();
        for i in 0..3 {
            for j in 0..=i {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * a[j * 3 + k]).sum();
                assert!((v - full[i * 3 + j]).abs() < 1e-12);
            }
        }
        // Third column = first + second.
        let mut singular = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 2.0];
        assert_eq!(cholesky(&mut singular, 3), Err(2));
    }
}
