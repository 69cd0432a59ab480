//! [`Flow`]: a base distribution pushed through a transform.

use core::marker::PhantomData;

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{
    distribution::Distribution,
    error::{FlowError, Result},
    transform::{Invertible, Transform},
};

/// A normalizing flow: `x = T(z)`, `z ~ base`; conditional (`p(x | c)`) when the transform,
/// the base or both read a context `c`.
///
/// The transform points in the generative direction (noise → data), as in Rezende &
/// Mohamed (2015), so a flow whose transform has no analytic inverse (planar, radial) can
/// still sample with exact log-densities, which is all variational inference needs:
/// - `sample_with_log_prob`: `z ~ base`, `(x, l) = T(z)`, `ln q(x) = ln p(z) − l`;
/// - `log_prob(x)` (only when `T: Invertible`): `(z, l) = T⁻¹(x)`, `ln q(x) = ln p(z) + l`.
///
/// Every entry point validates shapes from tensor metadata and returns [`FlowError`] for a
/// wrong width, an empty batch or a context that does not fit.
///
/// # Non-finite input
/// `log_prob` and `transform_to_noise` do not read data back to the host: a row holding
/// NaN gives NaN in that row of the result and leaves the other rows untouched (the layers
/// are row-wise); ±Inf gives a non-finite or meaningless value in that row. Call
/// [`Flow::log_prob_checked`] to get [`FlowError::NonFinite`] instead, at the cost of one
/// device-to-host read.
#[derive(Module, Debug)]
pub struct Flow<B: Backend, D, T> {
    /// The base distribution of `z`.
    pub base: D,
    /// The transform `T` from noise to data.
    pub transform: T,
    _backend: PhantomData<B>,
}

impl<B: Backend, D: Distribution<B>, T: Transform<B>> Flow<B, D, T> {
    /// Pairs a base distribution with a transform, checking that their dimensions agree
    /// and that, when both are conditional, they take the same context.
    pub fn new(base: D, transform: T) -> Result<Self> {
        transform.check_shapes(base.dim(), transform.context_dim())?;
        let (of_base, of_transform) = (base.context_dim(), transform.context_dim());
        if of_base != 0 && of_transform != 0 && of_base != of_transform {
            return Err(FlowError::BaseContextMismatch {
                base: of_base,
                transform: of_transform,
            });
        }
        Ok(Self {
            base,
            transform,
            _backend: PhantomData,
        })
    }

    /// The dimension of a sample.
    pub fn dim(&self) -> usize {
        self.base.dim()
    }

    /// Width of the context the flow is conditioned on (0: unconditional): its
    /// transform's, its base's, or both (they agree).
    pub fn context_dim(&self) -> usize {
        self.transform.context_dim().max(self.base.context_dim())
    }

    fn check_context(&self, rows: usize, context: Option<&Tensor<B, 2>>) -> Result<()> {
        let expected = self.context_dim();
        match context {
            None if expected == 0 => Ok(()),
            None => Err(FlowError::ContextMismatch { expected, got: 0 }),
            Some(c) => {
                let [c_rows, width] = c.dims();
                if width != expected {
                    Err(FlowError::ContextMismatch {
                        expected,
                        got: width,
                    })
                } else if c_rows != rows {
                    Err(FlowError::ContextBatchMismatch {
                        input: rows,
                        context: c_rows,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    fn check_input(
        &self,
        x: &Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
        what: &'static str,
    ) -> Result<()> {
        let [batch, got] = x.dims();
        let expected = self.base.dim();
        if got != expected {
            return Err(FlowError::DimMismatch {
                expected,
                got,
                batch,
            });
        }
        if batch == 0 {
            return Err(FlowError::EmptyBatch(what));
        }
        self.check_context(batch, context)
    }

    /// `n ≥ 1` reparameterized samples `[n, dim]` and their log-density `[n]`.
    ///
    /// A conditional flow takes a context of `n` rows, one per sample.
    pub fn sample_with_log_prob(
        &self,
        n: usize,
        context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 1>)> {
        if n == 0 {
            return Err(FlowError::EmptyBatch("sampling"));
        }
        self.check_context(n, context)?;
        let (z, log_p) = self.base.sample_with_log_prob(n, context, device);
        let (x, ladj) = self.transform.forward(z, context);
        Ok((x, log_p - ladj))
    }

    /// `n ≥ 1` reparameterized samples, `[n, dim]`.
    pub fn sample(
        &self,
        n: usize,
        context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> Result<Tensor<B, 2>> {
        Ok(self.sample_with_log_prob(n, context, device)?.0)
    }

    /// The noise `z = T⁻¹(x)` and `ln|det ∂z/∂x|`, `([batch, dim], [batch])`.
    pub fn transform_to_noise(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 1>)>
    where
        T: Invertible<B>,
    {
        self.check_input(&x, context, "transform_to_noise")?;
        Ok(self.transform.inverse(x, context))
    }

    /// `ln p(x)` per row, `[batch, dim] -> [batch]`.
    ///
    /// See the type's docs for how non-finite input propagates.
    pub fn log_prob(&self, x: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> Result<Tensor<B, 1>>
    where
        T: Invertible<B>,
    {
        let (z, ladj) = self.transform_to_noise(x, context)?;
        Ok(self.base.log_prob(z, context) + ladj)
    }

    /// [`Flow::log_prob`] that first rejects NaN or ±Inf in `x` with
    /// [`FlowError::NonFinite`] (one device-to-host read of a `[batch]` mask).
    pub fn log_prob_checked(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> Result<Tensor<B, 1>>
    where
        T: Invertible<B>,
    {
        self.check_input(&x, context, "log_prob")?;
        first_non_finite_row(&x).map_or(Ok(()), |row| Err(FlowError::NonFinite { row }))?;
        self.log_prob(x, context)
    }

    /// Data-dependent initialisation of every layer that has one (for example
    /// [`crate::ActNorm`]), from a batch of at least two rows of data `x`, layer by layer
    /// from the data side inwards. Layers wrapped in [`crate::Inverse`] are left as they
    /// are (their initialisation would run in the other direction).
    pub fn data_init(self, x: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> Result<Self>
    where
        T: Invertible<B>,
    {
        self.check_input(&x, context, "data_init")?;
        let rows = x.dims()[0];
        if rows < 2 {
            return Err(FlowError::TooFewRows {
                what: "data_init",
                needed: 2,
                got: rows,
            });
        }
        let (transform, _) = self.transform.data_init(x, context);
        Ok(Self {
            base: self.base,
            transform,
            _backend: PhantomData,
        })
    }
}

/// The first row of `x` that holds NaN or ±Inf, if any. Reads a `[batch]` mask back to the
/// host: for validation at the edges of a program, not for hot paths.
pub fn first_non_finite_row<B: Backend>(x: &Tensor<B, 2>) -> Option<usize> {
    let [n, _] = x.dims();
    let bad_per_row = x
        .clone()
        .is_finite()
        .bool_not()
        .int()
        .sum_dim(1)
        .reshape([n]);
    bad_per_row.into_data().iter::<i64>().position(|v| v > 0)
}
