//! Sylvester flow posteriors (van den Berg et al. 2018) and the Householder flow (Tomczak &
//! Welling 2016), amortized as in the Sylvester paper's code: the encoder's output layer
//! emits, per image and per step, every parameter of the step (`flow_core::sylvester`: the
//! full matrix shared by `R` and `R̃`, the two diagonals through `tanh`, `b`, and what
//! builds `Q`). For the Householder flow this includes every reflection vector; Tomczak &
//! Welling's code chains them instead (`v₁` an affine map of the encoder's features,
//! `v_{t+1}` an affine map of `v_t`), which makes each `v_t` an affine function of the
//! features too: a subset of what one affine output layer can emit.
//!
//! | `--flow` | `Q` of a step | parameters per step (`D` = latent) |
//! |---|---|---|
//! | `sylvester-o` | `M = --ortho-vecs` columns, orthonormalized by the paper's iteration | `M² + 2M + D·M` |
//! | `sylvester-h` | product of `H = --householder` reflections | `D² + 2D + H·D` |
//! | `sylvester-t` | identity / reversal permutation, alternating | `D² + 2D` |
//! | `householder` | (no Sylvester step) one reflection `H(v)`, `ln det = 0` | `D` |
//!
//! The papers' defaults: `K = 16`, `M = 32`, `H = 8` (with `D = 64`); here `D = 32` by
//! default, and `M = 16` keeps the paper's ratio `M = D/2` (`configs/sylvester-mnist.toml`,
//! the paper's protocol with `D = 64`, sets `M = 32`).
