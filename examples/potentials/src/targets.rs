//! The four unnormalized 2-D densities `p(z) ∝ exp(−U(z))` of Rezende & Mohamed (2015),
//! Table 1, as tensor functions `[n, 2] -> [n]`.
//!
//! With `w₁ = sin(2πz₁/4)`, `w₂ = 3 exp(−½((z₁−1)/0.6)²)`, `w₃ = 3 σ((z₁−1)/0.3)`:
//! - `U₁ = ½((‖z‖−2)/0.4)² − ln(e^{−½((z₁−2)/0.6)²} + e^{−½((z₁+2)/0.6)²})`
//! - `U₂ = ½((z₂−w₁)/0.4)²`
//! - `U₃ = −ln(e^{−½((z₂−w₁)/0.35)²} + e^{−½((z₂−w₁+w₂)/0.35)²})`
//! - `U₄ = −ln(e^{−½((z₂−w₁)/0.4)²} + e^{−½((z₂−w₁+w₃)/0.35)²})`
//!
//! Only `U₁` decays in every direction; `U₂`–`U₄` are constant along `z₁` far from the
//! origin, so `exp(−U)` has no finite integral for them, and the free energy
//! `E_q[ln q + U]` has no lower bound: reverse-KL training then spreads `q` along `z₁` into a
//! flat band and never bends it into the sine. [`Target::confined_energy`] adds a soft wall
//! `½((|z₁| − L)₊ / 0.2)²` outside `|z₁| ≤ L` (the figure's box for `L = 4`), which makes
//! `U₂`–`U₄` proper densities inside the box without changing them there.

use burn::tensor::{
    Tensor,
    activation::{self, sigmoid},
    backend::Backend,
};
use flow_core::ops::logaddexp;

/// Width of the soft wall of [`Target::confined_energy`].
const WALL_WIDTH: f64 = 0.2;

/// One of the four targets, `U₁`–`U₄`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Ring with two lobes; the only normalizable one.
    U1,
    /// Sine wave.
    U2,
    /// Sine wave splitting in two.
    U3,
    /// Sine wave with a step.
    U4,
}

impl Target {
    /// The target numbered `k` in Table 1 (1–4).
    pub fn from_number(k: u8) -> Option<Target> {
        match k {
            1 => Some(Target::U1),
            2 => Some(Target::U2),
            3 => Some(Target::U3),
            4 => Some(Target::U4),
            _ => None,
        }
    }

    /// Its number in Table 1.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// Whether `exp(−U)` is integrable (only `U₁`).
    pub fn normalizable(self) -> bool {
        self == Target::U1
    }

    /// The energy the flow is trained on: `U` itself for `U₁`, and for `U₂`–`U₄` with
    /// `wall = Some(L)`, `U + ½((|z₁| − L)₊ / 0.2)²`. `[n, 2] -> [n]`.
    pub fn confined_energy<B: Backend>(self, z: Tensor<B, 2>, wall: Option<f64>) -> Tensor<B, 1> {
        let [n, _] = z.dims();
        let z1 = z.clone().narrow(1, 0, 1);
        let u = self.energy(z);
        match wall {
            Some(l) if !self.normalizable() => {
                let outside = activation::relu(z1.abs().sub_scalar(l)).div_scalar(WALL_WIDTH);
                u + outside.square().mul_scalar(0.5).reshape([n])
            }
            _ => u,
        }
    }

    /// Whether the flow is trained on a proper (normalizable) density with `wall`.
    pub fn proper_with(self, wall: Option<f64>) -> bool {
        self.normalizable() || wall.is_some()
    }

    /// `U(z)`: `[n, 2] -> [n]`.
    pub fn energy<B: Backend>(self, z: Tensor<B, 2>) -> Tensor<B, 1> {
        let [n, _] = z.dims();
        let z1 = z.clone().narrow(1, 0, 1);
        let z2 = z.clone().narrow(1, 1, 1);
        let gauss = |x: Tensor<B, 2>, s: f64| x.div_scalar(s).square().mul_scalar(-0.5);
        let w1 = z1.clone().mul_scalar(std::f64::consts::PI / 2.0).sin();
        let u = match self {
            Target::U1 => {
                let r = z.square().sum_dim(1).sqrt();
                gauss(r.sub_scalar(2.0), 0.4).neg()
                    - logaddexp(
                        gauss(z1.clone().sub_scalar(2.0), 0.6),
                        gauss(z1.add_scalar(2.0), 0.6),
                    )
            }
            Target::U2 => gauss(z2 - w1, 0.4).neg(),
            Target::U3 => {
                let w2 = gauss(z1.sub_scalar(1.0), 0.6).exp().mul_scalar(3.0);
                let d = z2 - w1;
                logaddexp(gauss(d.clone(), 0.35), gauss(d + w2, 0.35)).neg()
            }
            Target::U4 => {
                let w3 = sigmoid(z1.sub_scalar(1.0).div_scalar(0.3)).mul_scalar(3.0);
                let d = z2 - w1;
                logaddexp(gauss(d.clone(), 0.4), gauss(d + w3, 0.35)).neg()
            }
        };
        u.reshape([n])
    }
}
