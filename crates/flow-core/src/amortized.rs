//! A transform whose parameters come from its context: `K` steps of a flow family, every
//! data point with its own parameters (amortized inference: an encoder emits them).
//!
//! # Math
//! The context row `θ(x) = (θ_1, …, θ_K)`, step `k`'s `P` parameters in columns
//! `[kP, (k + 1)P)`, gives `z_k = f(z_{k−1}; θ_k)` and `ln|det| = Σ_k ln|det ∂z_k/∂z_{k−1}|`,
//! with `f` one of the families' pure kernels:
//! - [`AmortizedStep::Planar`]: `u, w, b` ([`crate::planar()`]), `P = 2d + 1`, the layout of
//!   Rezende & Mohamed's amortized planar posterior; the `K` steps run as one kernel on the
//!   CPU backends ([`crate::planar_stack()`]);
//! - [`AmortizedStep::Radial`]: `z₀, α̂, β̂` ([`crate::radial()`]), `P = d + 2`;
//! - [`AmortizedStep::Householder`]: one reflection vector `v` ([`crate::householder()`]),
//!   `P = d`, `ln|det| = 0` (Tomczak & Welling 2016);
//! - [`AmortizedStep::Sylvester`]: a Sylvester step of one kind ([`crate::sylvester`]:
//!   `R`, `R̃`, `b` and what builds `Q`), `P` = [`SylvesterQ::params_per_step`].
//!
//! This is zuko's "a module returns a transform from its context" with the network left to
//! the caller: whatever produces `θ(x)` (the VAE's encoder) is trained through the context.
//! Planar, radial and Sylvester steps have no analytic inverse, so this is a [`Transform`]
//! only (Householder steps alone are invertible: [`crate::householder_stack`] with
//! `inverse`).
//!
//! ```
//! use burn::{backend::NdArray, tensor::{Distribution, Tensor}};
//! use flow_core::{Amortized, AmortizedStep, Transform};
//!
//! let device = Default::default();
//! let flow = Amortized::<NdArray>::new(AmortizedStep::Planar, 3, 4).unwrap();
//! assert_eq!(flow.context_dim(), 4 * 7);
//! let z = Tensor::<NdArray, 2>::random([5, 3], Distribution::Default, &device);
//! let theta = Tensor::random([5, 28], Distribution::Normal(0.0, 0.5), &device);
//! let (z_k, ladj) = flow.forward(z, Some(&theta));
//! assert_eq!((z_k.dims(), ladj.dims()), ([5, 3], [5]));
//! ```

use std::marker::PhantomData;

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{FlowError, Result},
    householder::householder_stack,
    ops::{tile_rows, zero_ladj},
    planar::planar_stack,
    radial::radial,
    sylvester::{SylvesterQ, sylvester_stack},
    transform::Transform,
};

/// The flow family an [`Amortized`] transform repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmortizedStep {
    /// Planar steps: `u` (`d`), `w` (`d`), `b` (1) per step.
    Planar,
    /// Radial steps: `z₀` (`d`), raw `α` (1), raw `β` (1) per step.
    Radial,
    /// Householder reflections: `v` (`d`) per step.
    Householder,
    /// Sylvester steps whose `Q` is built as given.
    Sylvester(SylvesterQ),
}

impl AmortizedStep {
    /// Parameters `P` of one step on `dim` features.
    pub fn params_per_step(self, dim: usize) -> usize {
        match self {
            AmortizedStep::Planar => 2 * dim + 1,
            AmortizedStep::Radial => dim + 2,
            AmortizedStep::Householder => dim,
            AmortizedStep::Sylvester(q) => q.params_per_step(dim),
        }
    }
}

/// `steps` steps of one family on `dim` features, with the parameters of every data point
/// given as the context `θ: [n, steps·P]` (see the [module docs](self)). It owns no
/// parameters: its record is empty.
#[derive(Module, Debug)]
pub struct Amortized<B: Backend> {
    #[module(skip)]
    step: AmortizedStep,
    dim: usize,
    steps: usize,
    _backend: PhantomData<B>,
}

impl<B: Backend> Amortized<B> {
    /// `steps ≥ 1` steps of `step` on `dim ≥ 1` features (for Sylvester steps, a `Q` that
    /// [`SylvesterQ::validate`] accepts).
    pub fn new(step: AmortizedStep, dim: usize, steps: usize) -> Result<Self> {
        crate::error::check_dim("an amortized flow", dim)?;
        if let AmortizedStep::Sylvester(q) = step {
            q.validate(dim)?;
        }
        if steps == 0 {
            return Err(FlowError::InvalidConfig(
                "an amortized flow needs at least one step".into(),
            ));
        }
        Ok(Self {
            step,
            dim,
            steps,
            _backend: PhantomData,
        })
    }

    /// The family.
    pub fn step(&self) -> AmortizedStep {
        self.step
    }

    /// Number of steps `K`.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// [`Transform::forward`] on `z: [t·n, d]` whose row `r` takes the parameters of row
    /// `r mod n` of `theta: [n, K·P]` (`t = tiles`): several samples per data point (an
    /// importance-weighted bound) without repeating the per-data-point preparation (for
    /// O-SNF steps, the orthogonalization of every `Q`).
    ///
    /// # Panics
    /// As [`Transform::forward`], or when `z`'s rows are not `tiles` times `theta`'s.
    pub fn forward_tiled(
        &self,
        z: Tensor<B, 2>,
        theta: Tensor<B, 2>,
        tiles: usize,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let (rows, n) = (theta.dims()[0], z.dims()[0]);
        assert!(
            tiles >= 1 && rows * tiles == n,
            "forward_tiled: {tiles} tiles of a context with {rows} rows for z with {n} rows"
        );
        match self.step {
            AmortizedStep::Sylvester(q) if tiles > 1 => {
                self.check_context(&theta);
                sylvester_stack(z, theta, self.steps, q)
            }
            _ => self.forward(z, Some(&tile_rows(theta, tiles))),
        }
    }

    fn check_context(&self, theta: &Tensor<B, 2>) {
        assert_eq!(
            theta.dims()[1],
            Transform::<B>::context_dim(self),
            "an amortized flow's context holds every step's parameters"
        );
    }
}

impl<B: Backend> Transform<B> for Amortized<B> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.steps * self.step.params_per_step(self.dim)
    }

    /// # Panics
    /// Without a context (the parameters), or with one of another width than
    /// [`Transform::context_dim`].
    fn forward(
        &self,
        z: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let theta = context
            .expect("an amortized flow takes its parameters as the context")
            .clone();
        let [n, d] = z.dims();
        self.check_context(&theta);
        match self.step {
            AmortizedStep::Planar => planar_stack(z, theta, self.steps),
            AmortizedStep::Radial => {
                let p = self.step.params_per_step(d);
                let mut ladj = Tensor::zeros([n], &z.device());
                let mut z = z;
                for k in 0..self.steps {
                    let at = |from: usize, to: usize| theta.clone().slice([0..n, from..to]);
                    let c = k * p;
                    let (next, l) =
                        radial(z, at(c, c + d), at(c + d, c + d + 1), at(c + d + 1, c + p));
                    z = next;
                    ladj = ladj + l;
                }
                (z, ladj)
            }
            AmortizedStep::Householder => {
                let ladj = zero_ladj(&z);
                (householder_stack(z, theta, self.steps, false), ladj)
            }
            AmortizedStep::Sylvester(q) => sylvester_stack(z, theta, self.steps, q),
        }
    }
}
