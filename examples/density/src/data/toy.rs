//! The synthetic densities: FFJORD's 2-D toys and the peer benchmarks' moons and 8-D
//! Gaussian mixture.

use std::f64::consts::PI;

use rand::{Rng, rngs::StdRng, seq::SliceRandom};

use super::table::Table;

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
    /// A conditional density, to fit with `--context-cols 1`: `x ~ U(−2, 2)` and, given
    /// `x`, `y ~ ½ N(x, s²) + ½ N(−x, s²)` with `s = 0.15 + 0.1 |x|`: one mode at `x = 0`
    /// that splits into two, wider the farther they move apart. Exact `p(y | x)`.
    #[value(name = "cond-bimodal")]
    #[serde(rename = "cond-bimodal")]
    CondBimodal,
}

/// [`Toy::CondBimodal`]'s `ln p(y | x)`.
fn cond_bimodal_log_prob(x: f64, y: f64) -> f64 {
    let s = 0.15 + 0.1 * x.abs();
    let component = |m: f64| -0.5 * ((y - m) / s).powi(2) - s.ln() - 0.5 * (2.0 * PI).ln();
    let (a, b) = (component(x), component(-x));
    let m = a.max(b);
    m + (0.5 * (a - m).exp() + 0.5 * (b - m).exp()).ln()
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
            Toy::CondBimodal => (0..n)
                .flat_map(|_| {
                    let x = 4.0 * rng.random::<f64>() - 2.0;
                    let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                    [x, sign * x + (0.15 + 0.1 * x.abs()) * normal(rng)]
                })
                .collect(),
        };
        Table {
            values,
            dim: self.dim(),
        }
    }

    /// The exact mean log-density of `table` under the true distribution, where known.
    pub fn exact_log_prob(self, table: &Table) -> Option<f64> {
        let n = table.rows() as f64;
        match self {
            Toy::Mog8 => {
                let mog = Mog8::new();
                Some(
                    table
                        .values
                        .chunks_exact(8)
                        .map(|x| mog.log_prob(x))
                        .sum::<f64>()
                        / n,
                )
            }
            // p(x, y) = p(x) p(y | x), p(x) = 1/4 on [−2, 2].
            Toy::CondBimodal => Some(
                table
                    .values
                    .chunks_exact(2)
                    .map(|r| {
                        if r[0].abs() <= 2.0 {
                            0.25f64.ln() + cond_bimodal_log_prob(r[0], r[1])
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .sum::<f64>()
                    / n,
            ),
            _ => None,
        }
    }

    /// The exact `ln p(y | x)` at one point, for a toy with a known conditional density
    /// given its first column: [`Toy::CondBimodal`].
    pub fn exact_conditional(self, x: f64, y: f64) -> Option<f64> {
        (self == Toy::CondBimodal).then(|| cond_bimodal_log_prob(x, y))
    }

    /// The mean exact `ln p(y | c)` over the rows of `table`, where known: for
    /// [`Toy::CondBimodal`] conditioned on its first column (`context` = `[0]`).
    pub fn exact_conditional_log_prob(self, table: &Table, context: &[usize]) -> Option<f64> {
        if context != [0] {
            return None;
        }
        let mut total = 0.0;
        for r in table.values.chunks_exact(2) {
            total += self.exact_conditional(r[0], r[1])?;
        }
        Some(total / table.rows() as f64)
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

    use crate::data::table::Standardizer;
    use rand::SeedableRng;

    fn moments(t: &Table) -> (Vec<f64>, Vec<f64>) {
        let s = Standardizer::fit(t);
        (s.mean, s.std)
    }

    #[test]
    fn cond_bimodal_conditional_density_is_normalized_and_matches_samples() {
        for x in [-1.9, -0.5, 0.0, 0.3, 1.7] {
            let h = 1e-3;
            let mass: f64 = (0..10_000)
                .map(|k| -5.0 + (k as f64 + 0.5) * h)
                .map(|y| Toy::CondBimodal.exact_conditional(x, y).unwrap().exp() * h)
                .sum();
            assert!((mass - 1.0).abs() < 1e-6, "x = {x}: mass {mass}");
        }
        // Samples near x = 1.5 sit at y ≈ ±1.5 with spread 0.3.
        let t = Toy::CondBimodal.sample(200_000, &mut StdRng::seed_from_u64(3));
        let near: Vec<f64> = t
            .values
            .chunks_exact(2)
            .filter(|r| (r[0] - 1.5).abs() < 0.01)
            .map(|r| r[1].abs())
            .collect();
        let mean = near.iter().sum::<f64>() / near.len() as f64;
        assert!(near.len() > 500 && (mean - 1.5).abs() < 0.03, "{mean}");
        let joint = Toy::CondBimodal.exact_log_prob(&t).unwrap();
        let conditional = Toy::CondBimodal
            .exact_conditional_log_prob(&t, &[0])
            .unwrap();
        assert!((joint - conditional - 0.25f64.ln()).abs() < 1e-9);
        assert_eq!(Toy::CondBimodal.exact_conditional_log_prob(&t, &[1]), None);
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
}
