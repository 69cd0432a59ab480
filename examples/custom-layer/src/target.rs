//! The toy density the example fits: skewed and heavy-tailed, with its exact log-density.
//!
//! ```text
//! x₁ = g − ½,           g ~ Gumbel(0, 1)      (skewed to the right)
//! x₂ = x₁ + 1.5·t,      t ~ Student-t, 3 dof  (heavy tails: no fourth moment)
//! ```
//!
//! `ln p(x) = ln p_G(x₁ + ½) + ln p_t((x₂ − x₁)/1.5) − ln 1.5`, with
//! `ln p_G(g) = −g − e⁻ᵍ` and `ln p_t(t) = −2 ln(1 + t²/3) + ln(2/(π√3))`. Its mean over
//! samples (about −3.76, the negative entropy) is the best mean log-likelihood any model
//! can reach, up to sampling noise.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The scale of the Student-t part of `x₂`.
const T_SCALE: f64 = 1.5;

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos()
}

/// One draw `[x₁, x₂]`.
fn draw(rng: &mut impl Rng) -> [f64; 2] {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let x1 = -(-u.ln()).ln() - 0.5;
    let chi2: f64 = (0..3).map(|_| normal(rng).powi(2)).sum();
    let t = normal(rng) / (chi2 / 3.0).sqrt();
    [x1, x1 + T_SCALE * t]
}

/// `ln p(x)` of one point (see the [module docs](self)).
pub fn log_prob(x: [f64; 2]) -> f64 {
    let g = x[0] + 0.5;
    let t = (x[1] - x[0]) / T_SCALE;
    let ln_gumbel = -g - (-g).exp();
    let ln_t = -2.0 * (t * t / 3.0).ln_1p() + (2.0 / (core::f64::consts::PI * 3f64.sqrt())).ln();
    ln_gumbel + ln_t - T_SCALE.ln()
}

/// A seeded stream of samples from the toy density.
pub struct Sampler {
    rng: StdRng,
}

impl Sampler {
    /// A stream that depends on `seed` only.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The next `n` points, row-major `[n][2]`.
    pub fn points(&mut self, n: usize) -> Vec<[f64; 2]> {
        (0..n).map(|_| draw(&mut self.rng)).collect()
    }

    /// The next `n` points as a tensor `[n, 2]` on `device`.
    pub fn tensor<B: Backend>(&mut self, n: usize, device: &B::Device) -> Tensor<B, 2> {
        to_tensor(&self.points(n), device)
    }
}

/// Points as a tensor `[n, 2]` in the backend's float type.
pub fn to_tensor<B: Backend>(points: &[[f64; 2]], device: &B::Device) -> Tensor<B, 2> {
    let data: Vec<f32> = points.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [points.len(), 2]), device)
}

/// The mean of [`log_prob`] over `points`: the target's own score on them.
pub fn mean_log_prob(points: &[[f64; 2]]) -> f64 {
    points.iter().map(|&x| log_prob(x)).sum::<f64>() / points.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log-density integrates to 1 over a wide grid (midpoint rule).
    #[test]
    fn log_prob_is_normalized() {
        let (lo, hi, n) = (-6.0, 60.0, 1200);
        let (lo2, hi2, n2) = (-400.0, 400.0, 8000);
        let (h, h2) = ((hi - lo) / n as f64, (hi2 - lo2) / n2 as f64);
        let mut total = 0.0;
        for i in 0..n {
            for j in 0..n2 {
                let x = [lo + (i as f64 + 0.5) * h, lo2 + (j as f64 + 0.5) * h2];
                total += log_prob(x).exp() * h * h2;
            }
        }
        assert!((total - 1.0).abs() < 5e-3, "integral {total}");
    }

    /// The sampler and the log-density describe the same distribution: the mean
    /// log-density of samples is the negative entropy, `−(1 + γ) − h(t₃) − ln 1.5`.
    #[test]
    fn samples_match_the_density() {
        let points = Sampler::new(7).points(200_000);
        let student_t3 = 2.0 * (4f64.ln() - 1.0) + (3f64.sqrt() * core::f64::consts::PI / 2.0).ln();
        let entropy = 1.0 + 0.577_215_664_9 + student_t3 + T_SCALE.ln();
        let mean = mean_log_prob(&points);
        assert!((mean + entropy).abs() < 0.02, "{mean} vs {}", -entropy);
    }
}
