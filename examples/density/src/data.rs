//! Data: the 2-D toy densities of FFJORD (Grathwohl et al. 2019, `toy_data.py`), the peer
//! benchmarks' two moons and 8-D mixture (`shared/peer/datasets.py`), and the user's
//! tables from CSV or NPY files, split and standardized.

use std::{borrow::Cow, f64::consts::PI, path::Path};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

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

/// Reads a CSV table of numbers; see [`parse_csv`] for the format.
pub fn read_csv(path: &Path) -> Result<Table, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    // Lossy: only a header may hold text, and its names are not used; a non-UTF-8 byte in
    // a data cell still fails that cell's number parse, with its line and column.
    parse_csv(&String::from_utf8_lossy(&bytes), &name)
}

/// The field separator of a CSV file, chosen from its first line: a comma if it has one
/// outside quotes, else a semicolon, else a tab, else a comma (one column).
fn csv_delimiter(first_line: &str) -> char {
    let mut quoted = false;
    let (mut semicolon, mut tab) = (false, false);
    for c in first_line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return ',',
            ';' if !quoted => semicolon = true,
            '\t' if !quoted => tab = true,
            _ => {}
        }
    }
    if semicolon {
        ';'
    } else if tab {
        '\t'
    } else {
        ','
    }
}

/// The cells of one CSV line: trimmed, double quotes removed (`""` inside quotes is a
/// quote), an empty last cell after a separator (a trailing separator) not counted. Cells
/// borrow from the line unless they are quoted, so a line costs no memory per cell.
#[derive(Clone)]
struct CsvCells<'a> {
    rest: Option<&'a str>,
    delimiter: char,
    first: bool,
}

impl<'a> CsvCells<'a> {
    fn new(line: &'a str, delimiter: char) -> Self {
        Self {
            rest: Some(line),
            delimiter,
            first: true,
        }
    }
}

impl<'a> Iterator for CsvCells<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let rest = self.rest?;
        if !self.first && rest.trim().is_empty() {
            self.rest = None;
            return None;
        }
        self.first = false;
        let (mut quoted, mut has_quote, mut end) = (false, false, rest.len());
        for (i, c) in rest.char_indices() {
            if c == '"' {
                quoted = !quoted;
                has_quote = true;
            } else if c == self.delimiter && !quoted {
                end = i;
                break;
            }
        }
        let raw = &rest[..end];
        self.rest = rest.get(end + self.delimiter.len_utf8()..);
        if !has_quote {
            return Some(Cow::Borrowed(raw.trim()));
        }
        let mut cell = String::with_capacity(raw.len());
        let mut quoted = false;
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = !quoted,
                c => cell.push(c),
            }
        }
        Some(Cow::Owned(cell.trim().to_string()))
    }
}

/// Parses CSV text (`name` names the file in errors) into a table of numbers.
///
/// - The separator is a comma, or a semicolon or a tab when the first line has one of
///   those and no comma; fields may be double-quoted; a trailing separator is ignored.
/// - The first non-blank line is a header when any of its cells is not a number (it is
///   skipped, and said so at `info` level). Every later line must be all numbers: a bad
///   cell is an error naming its line and column, never a silently dropped row.
/// - Blank lines are skipped; a UTF-8 byte-order mark is ignored; every row has as many
///   cells as the first (header or data) line.
pub fn parse_csv(text: &str, name: &str) -> Result<Table, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    let Some((first_no, first)) = lines.next() else {
        return Err(DataError::Shape {
            path: name.into(),
            why: "no data rows (the file is empty)".into(),
        });
    };
    let delimiter = csv_delimiter(first);
    // The first line, parsed as data until it proves to be a header.
    let mut values = Vec::new();
    let (mut dim, mut numbers) = (0, 0);
    for cell in CsvCells::new(first, delimiter) {
        dim += 1;
        if let Ok(v) = cell.parse::<f64>() {
            values.push(v);
            numbers += 1;
        }
    }
    if numbers < dim {
        values.clear();
        let shown: Vec<Cow<str>> = CsvCells::new(first, delimiter).take(20).collect();
        tracing::info!(
            "{name}: line {first_no} is a header, skipped: {}{}",
            shown.join(", "),
            if dim > shown.len() { ", …" } else { "" }
        );
        // A first data row with a typo reads as a header and its values are lost: warn
        // when it holds numbers, which a header seldom does.
        if numbers > 0 {
            tracing::warn!(
                "{name}: the header (line {first_no}) has {numbers} numeric cell(s) of {dim}: \
                 if it is a data row, fix its non-numeric cells"
            );
        }
    }
    for (no, line) in lines {
        let cells = CsvCells::new(line, delimiter);
        let got = cells.clone().count();
        if got != dim {
            return Err(DataError::Ragged {
                path: name.into(),
                line: no,
                expected: dim,
                got,
            });
        }
        for (j, cell) in cells.enumerate() {
            values.push(cell.parse::<f64>().map_err(|_| DataError::NotANumber {
                path: name.into(),
                line: no,
                column: j + 1,
                cell: cell.into_owned(),
            })?);
        }
    }
    if values.is_empty() {
        let shown: String = first.chars().take(60).collect();
        let more = if shown.len() < first.len() { "…" } else { "" };
        return Err(DataError::Shape {
            path: name.into(),
            why: format!(
                "no data rows (line {first_no} is a header: {shown:?}{more}; separator \
                 {delimiter:?})"
            ),
        });
    }
    let table = Table { values, dim };
    table.check_finite(name)?;
    Ok(table)
}

/// Reads a 2-D little-endian `f4` or `f8` NPY array (C order), versions 1–3.
pub fn read_npy(path: &Path) -> Result<Table, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    parse_npy(&bytes, &name)
}

/// Parses the bytes of a 2-D little-endian `f4` or `f8` NPY array (C order), versions
/// 1–3 (`name` names the file in errors). The size the header's shape promises is checked
/// against the bytes present before anything is allocated.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Table, DataError> {
    let bad = |why: &str| DataError::Npy {
        path: name.into(),
        why: why.into(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad("truncated header")),
        _ => return Err(bad("unknown format version")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| {
            bad(&format!(
                "truncated header: {header_len} bytes promised, {} present",
                bytes.len() - start
            ))
        })?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let width = if descr.starts_with("'<f8'") {
        8
    } else if descr.starts_with("'<f4'") {
        4
    } else {
        return Err(bad(
            "dtype must be little-endian float32 or float64 ('<f4', '<f8')",
        ));
    };
    if field("fortran_order").is_none_or(|v| !v.starts_with("False")) {
        return Err(bad("only C-order arrays are supported"));
    }
    let shape = field("shape").ok_or_else(|| bad("no shape"))?;
    let inside = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("malformed shape"))?;
    let dims: Vec<usize> = inside
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("malformed shape")))
        .collect::<Result<_, _>>()?;
    let [rows, dim] = dims[..] else {
        return Err(bad(&format!("need a 2-D array, got shape {dims:?}")));
    };
    let payload = &bytes[start + header_len..];
    // Checked: a shape from a corrupt header can overflow, and a wrapped product could
    // match the payload and yield a table of the wrong shape.
    let needed = rows.checked_mul(dim).and_then(|n| n.checked_mul(width));
    if needed != Some(payload.len()) {
        let needed = needed.map_or_else(|| "more than fit in memory".into(), |n| n.to_string());
        return Err(bad(&format!(
            "payload has {} bytes, shape ({rows}, {dim}) needs {needed}",
            payload.len(),
        )));
    }
    if dim == 0 || rows == 0 {
        return Err(DataError::Shape {
            path: name.into(),
            why: format!("empty array ({rows}, {dim})"),
        });
    }
    let values = if width == 8 {
        payload
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    } else {
        payload
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
            .collect()
    };
    let table = Table { values, dim };
    table.check_finite(name)?;
    Ok(table)
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

/// The synthetic densities.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Toy {
    /// FFJORD: 8 Gaussians (σ 0.5) on a circle of radius 4, all divided by 1.414.
    #[value(name = "8gaussians")]
    #[serde(rename = "8gaussians")]
    EightGaussians,
    /// FFJORD: two moons (sklearn, noise 0.1), scaled by 2 and shifted by (−1, −0.2).
    Moons,
    /// FFJORD: a 4×4 checkerboard on [−4, 4]², half the squares filled.
    Checkerboard,
    /// FFJORD: a 5-armed pinwheel.
    Pinwheel,
    /// FFJORD: 4 concentric rings.
    Rings,
    /// FFJORD: two interleaved spirals.
    #[value(name = "2spirals")]
    #[serde(rename = "2spirals")]
    TwoSpirals,
    /// The peers' two moons (`make_moons(noise = 0.05)`, unscaled; realnvp-moons).
    PeerMoons,
    /// The peers' 8-D mixture of 4 correlated Gaussians (nsf-mog), with exact density.
    Mog8,
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// `linspace(lo, hi, n)` with or without the end point.
fn linspace(lo: f64, hi: f64, n: usize, endpoint: bool) -> Vec<f64> {
    let steps = if endpoint {
        n.saturating_sub(1).max(1)
    } else {
        n.max(1)
    };
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / steps as f64)
        .collect()
}

/// sklearn's `make_moons(n, noise)` (upper moon first, then shuffled, then noise).
fn make_moons(n: usize, noise: f64, rng: &mut StdRng) -> Vec<[f64; 2]> {
    let n_out = n / 2;
    let n_in = n - n_out;
    let mut pts: Vec<[f64; 2]> = linspace(0.0, PI, n_out, true)
        .into_iter()
        .map(|t| [t.cos(), t.sin()])
        .chain(
            linspace(0.0, PI, n_in, true)
                .into_iter()
                .map(|t| [1.0 - t.cos(), 1.0 - t.sin() - 0.5]),
        )
        .collect();
    pts.shuffle(rng);
    for p in &mut pts {
        p[0] += noise * normal(rng);
        p[1] += noise * normal(rng);
    }
    pts
}

/// The peers' MoG8 (`shared/peer/datasets.py`): weights, means, bidiagonal scales.
struct Mog8 {
    weights: [f64; 4],
    means: [[f64; 8]; 4],
    /// `L_k[j][j]` and `L_k[j][j−1]`.
    diag: [[f64; 8]; 4],
    sub: [f64; 4],
}

impl Mog8 {
    fn new() -> Self {
        let mut means = [[0.0; 8]; 4];
        let mut diag = [[0.0; 8]; 4];
        let mut sub = [0.0; 4];
        for k in 0..4 {
            for j in 0..8 {
                means[k][j] = 1.5 * (PI * (k + 1) as f64 * (j as f64 + 0.5) / 8.0).cos();
                diag[k][j] = 0.2 + 0.1 * ((j + k) % 4) as f64;
            }
            sub[k] = 0.3 * if k % 2 == 0 { 1.0 } else { -1.0 };
        }
        Self {
            weights: [0.1, 0.2, 0.3, 0.4],
            means,
            diag,
            sub,
        }
    }

    fn sample(&self, rng: &mut StdRng) -> [f64; 8] {
        let u: f64 = rng.random();
        let mut k = 0;
        let mut acc = self.weights[0];
        while u >= acc && k < 3 {
            k += 1;
            acc += self.weights[k];
        }
        let eps: Vec<f64> = (0..8).map(|_| normal(rng)).collect();
        let mut x = [0.0; 8];
        for j in 0..8 {
            x[j] = self.means[k][j] + self.diag[k][j] * eps[j];
            if j > 0 {
                x[j] += self.sub[k] * eps[j - 1];
            }
        }
        x
    }

    /// Exact `ln p(x)`: forward substitution through each bidiagonal `L_k`.
    fn log_prob(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..4)
            .map(|k| {
                let mut eps = [0.0; 8];
                let mut quad = 0.0;
                let mut log_det = 0.0;
                for j in 0..8 {
                    let mut r = x[j] - self.means[k][j];
                    if j > 0 {
                        r -= self.sub[k] * eps[j - 1];
                    }
                    eps[j] = r / self.diag[k][j];
                    quad += eps[j] * eps[j];
                    log_det += self.diag[k][j].ln();
                }
                self.weights[k].ln() - 0.5 * quad - log_det - 4.0 * (2.0 * PI).ln()
            })
            .collect();
        let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
    }
}

impl Toy {
    /// Dimension of a sample.
    pub fn dim(self) -> usize {
        if self == Toy::Mog8 { 8 } else { 2 }
    }

    /// `n` fresh samples, row-major.
    pub fn sample(self, n: usize, rng: &mut StdRng) -> Table {
        let values: Vec<f64> = match self {
            Toy::EightGaussians => {
                let s = std::f64::consts::FRAC_1_SQRT_2;
                let centres = [
                    (1.0, 0.0),
                    (-1.0, 0.0),
                    (0.0, 1.0),
                    (0.0, -1.0),
                    (s, s),
                    (s, -s),
                    (-s, s),
                    (-s, -s),
                ];
                (0..n)
                    .flat_map(|_| {
                        let (cx, cy) = centres[rng.random_range(0..8)];
                        let x = (normal(rng) * 0.5 + 4.0 * cx) / 1.414;
                        let y = (normal(rng) * 0.5 + 4.0 * cy) / 1.414;
                        [x, y]
                    })
                    .collect()
            }
            Toy::Moons => make_moons(n, 0.1, rng)
                .into_iter()
                .flat_map(|[x, y]| [x * 2.0 - 1.0, y * 2.0 - 0.2])
                .collect(),
            Toy::PeerMoons => make_moons(n, 0.05, rng).into_iter().flatten().collect(),
            Toy::Checkerboard => (0..n)
                .flat_map(|_| {
                    let x1 = rng.random::<f64>() * 4.0 - 2.0;
                    let x2 = rng.random::<f64>() - 2.0 * f64::from(rng.random_range(0..2u8));
                    let x2 = x2 + x1.floor().rem_euclid(2.0);
                    [x1 * 2.0, x2 * 2.0]
                })
                .collect(),
            Toy::Pinwheel => {
                let (classes, per) = (5, n.div_ceil(5));
                let mut pts: Vec<[f64; 2]> = (0..classes * per)
                    .map(|i| {
                        let label = i / per;
                        let f0 = normal(rng) * 0.3 + 1.0;
                        let f1 = normal(rng) * 0.1;
                        let angle = 2.0 * PI * label as f64 / classes as f64 + 0.25 * f0.exp();
                        let (s, c) = angle.sin_cos();
                        [2.0 * (f0 * c - f1 * s), 2.0 * (f0 * s + f1 * c)]
                    })
                    .collect();
                pts.shuffle(rng);
                pts.truncate(n);
                pts.into_iter().flatten().collect()
            }
            Toy::Rings => {
                let quarter = n / 4;
                let counts = [n - 3 * quarter, quarter, quarter, quarter];
                let radii = [0.25, 0.5, 0.75, 1.0];
                let mut pts: Vec<[f64; 2]> = counts
                    .iter()
                    .zip(radii)
                    .flat_map(|(&m, r)| {
                        linspace(0.0, 2.0 * PI, m, false)
                            .into_iter()
                            .map(move |t| [3.0 * r * t.cos(), 3.0 * r * t.sin()])
                    })
                    .collect();
                pts.shuffle(rng);
                for p in &mut pts {
                    p[0] += 0.08 * normal(rng);
                    p[1] += 0.08 * normal(rng);
                }
                pts.into_iter().flatten().collect()
            }
            Toy::TwoSpirals => {
                let half = n.div_ceil(2);
                let arm: Vec<[f64; 2]> = (0..half)
                    .map(|_| {
                        let t = rng.random::<f64>().sqrt() * 540.0 * 2.0 * PI / 360.0;
                        let x = -t.cos() * t + rng.random::<f64>() * 0.5;
                        let y = t.sin() * t + rng.random::<f64>() * 0.5;
                        [x, y]
                    })
                    .collect();
                let mut pts: Vec<[f64; 2]> = arm
                    .iter()
                    .copied()
                    .chain(arm.iter().map(|[x, y]| [-x, -y]))
                    .map(|[x, y]| [x / 3.0 + 0.1 * normal(rng), y / 3.0 + 0.1 * normal(rng)])
                    .collect();
                pts.truncate(n);
                pts.into_iter().flatten().collect()
            }
            Toy::Mog8 => {
                let mog = Mog8::new();
                (0..n).flat_map(|_| mog.sample(rng)).collect()
            }
        };
        Table {
            values,
            dim: self.dim(),
        }
    }

    /// The exact mean log-density of `table` under the true distribution, where known.
    pub fn exact_log_prob(self, table: &Table) -> Option<f64> {
        (self == Toy::Mog8).then(|| {
            let mog = Mog8::new();
            let n = table.rows() as f64;
            table
                .values
                .chunks_exact(8)
                .map(|x| mog.log_prob(x))
                .sum::<f64>()
                / n
        })
    }

    /// The entropy in nats where it has a closed form up to negligible overlap.
    pub fn entropy(self) -> Option<f64> {
        // 8 Gaussians: equal weights, σ = 0.5/1.414, centres 4/1.414 ≈ 2.83 apart on a
        // circle of radius 2.83 (neighbours ≈ 2.16 apart ≈ 6σ): overlap is negligible.
        (self == Toy::EightGaussians).then(|| {
            let sigma: f64 = 0.5 / 1.414;
            8f64.ln() + 1.0 + (2.0 * PI * sigma * sigma).ln()
        })
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
    fn toys_have_their_published_shape() {
        let mut rng = StdRng::seed_from_u64(1);
        let g = Toy::EightGaussians.sample(40_000, &mut rng);
        let radii: Vec<f64> = g.values.chunks(2).map(|p| p[0].hypot(p[1])).collect();
        let mean_r = radii.iter().sum::<f64>() / radii.len() as f64;
        assert!((mean_r - 4.0 / 1.414).abs() < 0.05, "mean radius {mean_r}");
        let (m, _) = moments(&g);
        assert!(m.iter().all(|v| v.abs() < 0.05), "{m:?}");
        // Checkerboard: every point in a filled square of [−4, 4]², (⌊x/2⌋ + ⌊y/2⌋) even.
        let c = Toy::Checkerboard.sample(5_000, &mut rng);
        for p in c.values.chunks(2) {
            assert!(p[0].abs() <= 4.0 && p[1].abs() <= 4.0);
            let parity = ((p[0] / 2.0).floor() + (p[1] / 2.0).floor()).rem_euclid(2.0);
            assert_eq!(parity, 0.0, "{p:?}");
        }
        // Rings: radii cluster at 0.75, 1.5, 2.25, 3.
        let r = Toy::Rings.sample(8_000, &mut rng);
        for p in r.values.chunks(2) {
            let d = p[0].hypot(p[1]);
            let nearest = [0.75, 1.5, 2.25, 3.0]
                .iter()
                .map(|c| (d - c).abs())
                .fold(f64::MAX, f64::min);
            assert!(nearest < 0.5, "radius {d}");
        }
        for toy in [Toy::Moons, Toy::Pinwheel, Toy::TwoSpirals, Toy::PeerMoons] {
            let t = toy.sample(1001, &mut rng);
            assert_eq!(t.rows(), 1001, "{toy:?}");
            assert!(
                t.values.iter().all(|v| v.is_finite() && v.abs() < 6.0),
                "{toy:?}"
            );
        }
    }

    /// The mixture's sampler against its moments, and its density against a dense
    /// Gaussian-elimination implementation of the same mixture.
    #[test]
    fn mog8_sampler_and_density_agree_with_independent_formulas() {
        let mut rng = StdRng::seed_from_u64(2);
        let mog = Mog8::new();
        let t = Toy::Mog8.sample(100_000, &mut rng);
        let (mean, _) = moments(&t);
        for (j, m) in mean.iter().enumerate() {
            let want: f64 = (0..4).map(|k| mog.weights[k] * mog.means[k][j]).sum();
            assert!((m - want).abs() < 0.02, "mean[{j}] {m} vs {want}");
        }
        // Dense reference: Σ_k = L_k L_kᵀ, ln N by Gaussian elimination on Σ_k.
        let dense_log_prob = |x: &[f64]| -> f64 {
            let mut total = 0.0;
            for k in 0..4 {
                let mut l = [[0.0; 8]; 8];
                for j in 0..8 {
                    l[j][j] = mog.diag[k][j];
                    if j > 0 {
                        l[j][j - 1] = mog.sub[k];
                    }
                }
                let mut a = [[0.0; 9]; 8];
                for r in 0..8 {
                    for c in 0..8 {
                        a[r][c] = (0..8).map(|m| l[r][m] * l[c][m]).sum();
                    }
                    a[r][8] = x[r] - mog.means[k][r];
                }
                let mut log_det = 0.0;
                for c in 0..8 {
                    log_det += a[c][c].ln();
                    for r in c + 1..8 {
                        let f = a[r][c] / a[c][c];
                        let pivot = a[c];
                        for (dst, src) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                            *dst -= f * src;
                        }
                    }
                }
                let mut sol = [0.0; 8];
                for r in (0..8).rev() {
                    let tail: f64 = (r + 1..8).map(|c| a[r][c] * sol[c]).sum();
                    sol[r] = (a[r][8] - tail) / a[r][r];
                }
                let quad: f64 = (0..8).map(|r| (x[r] - mog.means[k][r]) * sol[r]).sum();
                total +=
                    mog.weights[k] * (-0.5 * quad - 0.5 * log_det - 4.0 * (2.0 * PI).ln()).exp();
            }
            total.ln()
        };
        for x in t.values.chunks(8).take(200) {
            let (a, b) = (mog.log_prob(x), dense_log_prob(x));
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    fn npy(descr: &str, shape: &str, payload: &[u8]) -> std::path::PathBuf {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload);
        let path = std::env::temp_dir().join(format!(
            "density-npy-{}-{descr}-{}.npy",
            std::process::id(),
            payload.len()
        ));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn npy_reads_f4_and_f8_and_rejects_the_rest() {
        let vals = [1.5f64, -2.0, 3.25, 4.0, 0.5, -0.125];
        let f8: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f4: Vec<u8> = vals
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect();
        for (descr, payload) in [("<f8", &f8), ("<f4", &f4)] {
            let t = read_npy(&npy(descr, "(3, 2)", payload)).unwrap();
            assert_eq!((t.rows(), t.dim), (3, 2));
            assert_eq!(t.values, vals);
        }
        let err = |path: std::path::PathBuf| read_npy(&path).unwrap_err().to_string();
        assert!(err(npy("<i8", "(3, 2)", &f8)).contains("dtype"));
        assert!(err(npy("<f8", "(6,)", &f8)).contains("2-D"));
        assert!(err(npy("<f8", "(4, 2)", &f8)).contains("payload has 48 bytes"));
        let nan: Vec<u8> = [1.0, f64::INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(err(npy("<f8", "(1, 2)", &nan)).contains("row 1, column 2 is inf"));
    }

    fn csv(text: &str) -> Result<Table, DataError> {
        parse_csv(text, "t.csv")
    }

    #[test]
    fn csv_header_is_only_ever_the_first_line() {
        // A typo in a data row is an error naming it, not a silently dropped "header".
        let e = csv("x,y\n1,2\n3,4.O\n5,6\n").unwrap_err();
        assert!(
            matches!(&e, DataError::NotANumber { line: 3, column: 2, cell, .. } if cell == "4.O"),
            "{e}"
        );
        // The same after blank lines, and with no header at all.
        let e = csv("\n\n1,2\nx,4\n").unwrap_err();
        assert!(matches!(e, DataError::NotANumber { line: 4, .. }), "{e}");
        // The old reader skipped every leading non-numeric line: a second header line
        // is data, and not a number.
        let e = csv("x,y\nunits,units\n1,2\n").unwrap_err();
        assert!(matches!(e, DataError::NotANumber { line: 2, .. }), "{e}");
        let t = csv("x,y\n1,2\n3,4\n").unwrap();
        assert_eq!((t.values, t.dim), (vec![1.0, 2.0, 3.0, 4.0], 2));
        let t = csv("1,2\n3,4\n").unwrap();
        assert_eq!(t.rows(), 2);
        // A header must have as many cells as the rows.
        let e = csv("x,y,z\n1,2\n").unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Ragged {
                    line: 2,
                    expected: 3,
                    got: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn csv_accepts_semicolons_tabs_quotes_and_trailing_separators() {
        let want = Table {
            values: vec![1.5, -2.0, 3.0, 4e-3],
            dim: 2,
        };
        for text in [
            "a;b\n1.5;-2\n3;4e-3\n",
            "1.5;-2\r\n3;4e-3\r\n",
            "a\tb\n1.5\t-2\n3\t4e-3\n",
            "\"a\",\"b\"\n\"1.5\",\"-2\"\n\"3\", \"4e-3\"\n",
            "a,b,\n1.5,-2,\n3,4e-3,\n",
            "1.5, -2 ,\n 3 ,4e-3\n",
            "\u{feff}1.5,-2\n3,4e-3\n",
            "\"a,b\",\"c\"\"d\"\n1.5,-2\n3,4e-3\n",
        ] {
            assert_eq!(csv(text).unwrap(), want, "{text:?}");
        }
        // A missing value is not a trailing separator.
        let e = csv("1,2,3\n4,5,\n").unwrap_err();
        assert!(matches!(e, DataError::Ragged { line: 2, .. }), "{e}");
        let e = csv("1,,3\n").unwrap_err();
        assert!(
            matches!(e, DataError::Ragged { .. } | DataError::Shape { .. }),
            "{e}"
        );
    }

    #[test]
    fn csv_without_rows_says_what_was_skipped() {
        for (text, says) in [
            ("", "empty"),
            ("\n \n", "empty"),
            ("x,y\n", "line 1 is a header: \"x,y\""),
            ("a;b\n\n", "separator ';'"),
        ] {
            let e = csv(text).unwrap_err().to_string();
            assert!(
                e.contains("no data rows") && e.contains(says),
                "{text:?}: {e}"
            );
            assert!(e.contains("t.csv"), "{e}");
        }
        let e = csv("x\n1\nNaN\n").unwrap_err().to_string();
        assert!(e.contains("row 2, column 1 is NaN"), "{e}");
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
