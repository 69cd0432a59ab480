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
    tensor::{Tensor, backend::Backend},
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
