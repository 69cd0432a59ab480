//! An invertible linear layer in LU form (Kingma & Dhariwal 2018, Glow), with a fixed
//! permutation.
//!
//! # Math
//! `W = P · L · U` with `P` a fixed permutation, `L` unit lower triangular (free entries
//! below the diagonal) and `U = U₀ + diag(exp(ŝ))` (free entries `U₀` above the diagonal,
//! a positive diagonal through `ŝ`). For a row `x`:
//! - forward: `y = x Wᵀ + b`, i.e. `y = perm(x Uᵀ Lᵀ) + b`;
//!   `ln|det| = Σ_j ŝ_j` (the triangular factors' determinants are their diagonals);
//! - inverse: `x = perm⁻¹(y − b) · L⁻ᵀ · U⁻ᵀ`, `ln|det| = −Σ_j ŝ_j`.
//!
//! The triangular inverses are computed on the device without a solver (burn 0.21 has
//! none): a unit triangular `I + N` has nilpotent `N` (`N^D = 0`), so
//! `(I + N)⁻¹ = Π_{j<⌈log₂ D⌉} (I + (−N)^{2^j})`, `⌈log₂ D⌉` products of `D × D`
//! matrices; and `U = (I + U₀ diag(e^{−ŝ})) diag(e^{ŝ})` reduces `U` to that form.
//!
//! A new layer is the permutation alone (`L = U = I`, `b = 0`).

use burn::{
    config::Config,
    module::{Module, Param},
    tensor::{Tensor, TensorData, backend::Backend},
};

use crate::{
    error::FlowError,
    ops::sum_rows,
    permutation::Permutation,
    transform::{Invertible, Transform},
};

/// Configuration of an [`LuLinear`] layer.
#[derive(Config, Debug)]
pub struct LuLinearConfig {
    /// Feature dimension `D ≥ 1`.
    pub dim: usize,
    /// Seed of the fixed random permutation `P` (`None`: the identity).
    #[config(default = "None")]
    pub permutation_seed: Option<u64>,
}

impl LuLinearConfig {
    /// Builds the layer at `W = P`, `b = 0`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<LuLinear<B>> {
        let d = self.dim;
        if d == 0 {
            return Err(FlowError::InvalidConfig(
                "LU linear layer of dimension 0".into(),
            ));
        }
        let permutation = match self.permutation_seed {
            Some(seed) => Permutation::random(d, seed, device)?,
            None => Permutation::from_order(&(0..d).collect::<Vec<_>>(), device)?,
        };
        let zeros = || Param::from_tensor(Tensor::zeros([d, d], device));
        Ok(LuLinear {
            lower: zeros(),
            upper: zeros(),
            log_diag: Param::from_tensor(Tensor::zeros([d], device)),
            bias: Param::from_tensor(Tensor::zeros([d], device)),
            permutation,
            dim: d,
        })
    }
}

impl LuLinearConfig {
    /// The layer at `W = A`, `b = shift`, for a lower triangular `A` (row-major, `D × D`,
    /// zeros above the diagonal, a positive diagonal), with the identity permutation: it
    /// maps `N(0, I)` to `N(shift, A Aᵀ)`. With `A` the Cholesky factor of a data set's
    /// covariance and `shift` its mean, a flow whose data-side layer this is starts at the
    /// data's maximum-likelihood Gaussian (its other layers starting at the identity).
    ///
    /// In LU form `A = L U` with `L = A diag(A)⁻¹` (unit lower) and `U = diag(A)`, so
    /// `Lᵢⱼ = Aᵢⱼ / Aⱼⱼ`, `U₀ = 0`, `ŝⱼ = ln Aⱼⱼ`.
    pub fn init_lower_triangular<B: Backend>(
        &self,
        a: &[f64],
        shift: &[f64],
        device: &B::Device,
    ) -> crate::Result<LuLinear<B>> {
        let d = self.dim;
        let bad = |why: String| Err(FlowError::InvalidConfig(why));
        if self.permutation_seed.is_some() {
            return bad("a lower triangular LU layer has no permutation".into());
        }
        if a.len() != d * d || shift.len() != d {
            return bad(format!(
                "a lower triangular LU layer of dimension {d} needs {} matrix entries and {d} \
                 shifts, got {} and {}",
                d * d,
                a.len(),
                shift.len()
            ));
        }
        if let Some(k) = (0..d * d).find(|&k| {
            let (i, j) = (k / d, k % d);
            !a[k].is_finite() || (j > i && a[k] != 0.0) || (i == j && a[k] <= 0.0)
        }) {
            return bad(format!(
                "entry ({}, {}) = {} of a lower triangular matrix with a positive diagonal",
                k / d,
                k % d,
                a[k]
            ));
        }
        if let Some(v) = shift.iter().find(|v| !v.is_finite()) {
            return bad(format!("shift {v} is not finite"));
        }
        let mut layer = self.init::<B>(device)?;
        let lower: Vec<f32> = (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                if i > j {
                    (a[k] / a[j * d + j]) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let log_diag: Vec<f32> = (0..d).map(|j| a[j * d + j].ln() as f32).collect();
        let bias: Vec<f32> = shift.iter().map(|&v| v as f32).collect();
        let tensor2 = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [d, d]), device);
        let tensor1 = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [d]), device);
        layer.lower = Param::from_tensor(tensor2(lower));
        layer.log_diag = Param::from_tensor(tensor1(log_diag));
        layer.bias = Param::from_tensor(tensor1(bias));
        Ok(layer)
    }
}

/// The LU-decomposed linear layer; see the [module docs](self).
#[derive(Module, Debug)]
pub struct LuLinear<B: Backend> {
    /// Only the strictly lower triangle is used.
    lower: Param<Tensor<B, 2>>,
    /// Only the strictly upper triangle is used.
    upper: Param<Tensor<B, 2>>,
    log_diag: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
    permutation: Permutation<B>,
    dim: usize,
}

/// `(I + N)⁻¹` for a nilpotent `N: [d, d]` (strictly triangular), by repeated squaring.
fn unit_triangular_inverse<B: Backend>(n: Tensor<B, 2>) -> Tensor<B, 2> {
    let [d, _] = n.dims();
    let eye = Tensor::<B, 2>::eye(d, &n.device());
    let mut power = n.neg();
    let mut inverse = eye.clone();
    let mut reach = 1;
    while reach < d {
        inverse = inverse.matmul(eye.clone() + power.clone());
        power = power.clone().matmul(power);
        reach *= 2;
    }
    inverse
}

impl<B: Backend> LuLinear<B> {
    fn ladj(&self, rows: usize) -> Tensor<B, 1> {
        sum_rows(self.log_diag.val().unsqueeze::<2>()).expand([rows])
    }

    fn strict_lower(&self) -> Tensor<B, 2> {
        self.lower.val().tril(-1)
    }

    fn strict_upper(&self) -> Tensor<B, 2> {
        self.upper.val().triu(1)
    }

    /// `L U`, `[D, D]`.
    fn lu(&self) -> Tensor<B, 2> {
        let eye = Tensor::<B, 2>::eye(self.dim, &self.bias.device());
        let l = eye.clone() + self.strict_lower();
        let u = self.strict_upper() + eye * self.log_diag.val().exp().unsqueeze::<2>();
        l.matmul(u)
    }

    /// The matrix `W = P L U`, `[D, D]` (for inspection).
    pub fn weight(&self) -> Tensor<B, 2> {
        // Rows of W are the rows of L U, permuted: W = P (L U), and P acting on rows of a
        // matrix is the permutation layer acting on the columns of its transpose.
        self.permutation
            .forward(self.lu().transpose(), None)
            .0
            .transpose()
    }
}

impl<B: Backend> Transform<B> for LuLinear<B> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let [n, _] = x.dims();
        let h = x.matmul(self.lu().transpose());
        let y = self.permutation.forward(h, None).0 + self.bias.val().unsqueeze();
        (y, self.ladj(n))
    }
}

impl<B: Backend> Invertible<B> for LuLinear<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        _context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let [n, _] = y.dims();
        let inv_diag = self.log_diag.val().neg().exp();
        let l_inv = unit_triangular_inverse(self.strict_lower());
        // U = (I + U₀ D⁻¹) D  ⇒  U⁻¹ = D⁻¹ (I + U₀ D⁻¹)⁻¹.
        let scaled = self.strict_upper() * inv_diag.clone().unsqueeze::<2>();
        let u_inv = unit_triangular_inverse(scaled) * inv_diag.unsqueeze_dim::<2>(1);
        let h = self
            .permutation
            .inverse(y - self.bias.val().unsqueeze(), None)
            .0;
        // x Uᵀ Lᵀ = h  ⇒  x = h L⁻ᵀ U⁻ᵀ = h (U⁻¹ L⁻¹)ᵀ.
        let x = h.matmul(u_inv.matmul(l_inv).transpose());
        (x, self.ladj(n).neg())
    }
}
