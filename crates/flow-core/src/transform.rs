//! The transform traits, composition and [`Inverse`].
//!
//! Conventions, used everywhere in flow-core:
//! - inputs are `[batch, dim]`, log-determinants are `[batch]`;
//! - `forward(x) -> (y, ladj)` with `ladj = ln|det ∂y/∂x|` per row;
//! - `inverse(y) -> (x, ladj)` with `ladj = ln|det ∂x/∂y|`, so for `y = f(x)` the two
//!   log-determinants are negatives of each other;
//! - a context, where a transform takes one, is `[batch, context_dim]` (or `[1, context_dim]`
//!   broadcast over the batch is *not* accepted: give one row per input row).
//!
//! A transform with no analytic inverse (planar, radial) implements only [`Transform`];
//! [`Invertible`] is a separate trait, so "inverse not available" is a compile error, not a
//! run-time one.
//!
//! Composition: a `Vec<T>` applies its elements in order (index 0 first), and the tuples
//! `(A, C)`, `(A, C, D)`, `(A, C, D, E)` apply their elements left to right; both sum the
//! log-determinants. Both are burn modules already, so a composed flow is a module too.

use core::marker::PhantomData;

use burn::{
    module::{AutodiffModule, Module, ModuleDisplay},
    tensor::{
        Tensor,
        backend::{AutodiffBackend, Backend},
    },
};

use crate::error::{FlowError, Result};

/// A differentiable bijection of `[batch, dim]` tensors with a tractable log-determinant.
///
/// # Panics
/// The methods trust their caller for shapes (use [`crate::Flow`] for validated entry points):
/// an input whose width differs from [`Transform::dim`], or a missing context for a
/// conditional transform, panics inside burn.
pub trait Transform<B: Backend> {
    /// Feature dimension of the inputs and outputs.
    fn dim(&self) -> usize;

    /// Width of the context this transform is conditioned on (0 = unconditional).
    fn context_dim(&self) -> usize {
        0
    }

    /// `y = f(x; context)` with `ladj = ln|det ∂y/∂x|`: `[batch, dim] -> ([batch, dim], [batch])`.
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>);

    /// Checks that every part of this transform has dimension `dim` and takes either no
    /// context or one of width `context_dim`.
    ///
    /// Composite transforms override this to check each layer, naming the first that
    /// disagrees by its path.
    fn check_shapes(&self, dim: usize, context_dim: usize) -> Result<()> {
        if self.dim() != dim {
            return Err(FlowError::LayerDimMismatch {
                path: vec![],
                expected: dim,
                got: self.dim(),
            });
        }
        let own = self.context_dim();
        if own != 0 && own != context_dim {
            return Err(FlowError::LayerContextMismatch {
                path: vec![],
                expected: context_dim,
                got: own,
            });
        }
        Ok(())
    }
}

/// A [`Transform`] with an analytic inverse.
pub trait Invertible<B: Backend>: Transform<B> {
    /// `x = f⁻¹(y; context)` with `ladj = ln|det ∂x/∂y|`.
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>);

    /// Data-dependent initialisation, run in the inverse (data → noise) direction.
    ///
    /// Given data `y` at this transform's output side, returns the transform with its
    /// data-dependent parameters set (for example [`crate::ActNorm`]: the inverse then
    /// standardises `y`) and `f⁻¹(y)` computed with the new parameters, so a composition
    /// can initialise its layers one after the other. The default changes nothing.
    fn data_init(self, y: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> (Self, Tensor<B, 2>)
    where
        Self: Sized,
    {
        let x = self.inverse(y, context).0;
        (self, x)
    }
}

/// The inverse of an invertible transform: `forward` is `T::inverse` and vice versa.
///
/// This is how a masked autoregressive flow becomes an inverse autoregressive flow, and
/// how any layer is used in the other direction.
#[derive(Module, Debug)]
pub struct Inverse<B: Backend, T> {
    /// The wrapped transform.
    pub inner: T,
    _backend: PhantomData<B>,
}

impl<B: Backend, T> Inverse<B, T> {
    /// Wraps `inner` so that its inverse becomes the forward direction.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            _backend: PhantomData,
        }
    }
}

impl<B: Backend, T: Invertible<B>> Transform<B> for Inverse<B, T> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn context_dim(&self) -> usize {
        self.inner.context_dim()
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        self.inner.inverse(x, context)
    }
    fn check_shapes(&self, dim: usize, context_dim: usize) -> Result<()> {
        self.inner.check_shapes(dim, context_dim)
    }
}

impl<B: Backend, T: Invertible<B>> Invertible<B> for Inverse<B, T> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        self.inner.forward(y, context)
    }
}

impl<B: Backend, T: Transform<B>> Transform<B> for Vec<T> {
    /// The first layer's dimension (0 for an empty composition).
    fn dim(&self) -> usize {
        self.first().map_or(0, |t| t.dim())
    }
    fn context_dim(&self) -> usize {
        self.iter().map(|t| t.context_dim()).max().unwrap_or(0)
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let mut ladj = crate::ops::zero_ladj(&x);
        let mut x = x;
        for layer in self {
            let (y, l) = layer.forward(x, context);
            x = y;
            ladj = ladj + l;
        }
        (x, ladj)
    }
    fn check_shapes(&self, dim: usize, context_dim: usize) -> Result<()> {
        if self.is_empty() {
            return Err(FlowError::InvalidConfig(
                "a composition needs at least one layer".into(),
            ));
        }
        for (i, t) in self.iter().enumerate() {
            t.check_shapes(dim, context_dim)
                .map_err(|e| e.within_layer(i))?;
        }
        Ok(())
    }
}

impl<B: Backend, T: Invertible<B>> Invertible<B> for Vec<T> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let mut ladj = crate::ops::zero_ladj(&y);
        let mut y = y;
        for layer in self.iter().rev() {
            let (x, l) = layer.inverse(y, context);
            y = x;
            ladj = ladj + l;
        }
        (y, ladj)
    }
    fn data_init(self, y: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> (Self, Tensor<B, 2>) {
        let mut layers = Vec::with_capacity(self.len());
        let mut y = y;
        for layer in self.into_iter().rev() {
            let (layer, x) = layer.data_init(y, context);
            layers.push(layer);
            y = x;
        }
        layers.reverse();
        (layers, y)
    }
}

macro_rules! tuple_transform {
    ($($name:ident : $idx:tt),+ ; $($rev:tt),+) => {
        impl<B: Backend, $($name: Transform<B>),+> Transform<B> for ($($name,)+) {
            fn dim(&self) -> usize {
                self.0.dim()
            }
            fn context_dim(&self) -> usize {
                0 $(.max(self.$idx.context_dim()))+
            }
            fn forward(
                &self,
                x: Tensor<B, 2>,
                context: Option<&Tensor<B, 2>>,
            ) -> (Tensor<B, 2>, Tensor<B, 1>) {
                let ladj = crate::ops::zero_ladj(&x);
                let x = x;
                $(
                    let (x, l) = self.$idx.forward(x, context);
                    let ladj = ladj + l;
                )+
                (x, ladj)
            }
            fn check_shapes(&self, dim: usize, context_dim: usize) -> Result<()> {
                $( self.$idx.check_shapes(dim, context_dim).map_err(|e| e.within_layer($idx))?; )+
                Ok(())
            }
        }

        impl<B: Backend, $($name: Invertible<B>),+> Invertible<B> for ($($name,)+) {
            fn inverse(
                &self,
                y: Tensor<B, 2>,
                context: Option<&Tensor<B, 2>>,
            ) -> (Tensor<B, 2>, Tensor<B, 1>) {
                let ladj = crate::ops::zero_ladj(&y);
                let y = y;
                $(
                    let (y, l) = self.$rev.inverse(y, context);
                    let ladj = ladj + l;
                )+
                (y, ladj)
            }
            #[allow(non_snake_case)]
            fn data_init(
                self,
                y: Tensor<B, 2>,
                context: Option<&Tensor<B, 2>>,
            ) -> (Self, Tensor<B, 2>) {
                let ($($name,)+) = self;
                tuple_transform!(@init y, context; $($name),+)
            }
        }
    };
    // Initialise the last element first (it sits at the data side), then the others.
    (@init $y:ident, $ctx:ident; $a:ident, $c:ident) => {{
        let ($c, $y) = $c.data_init($y, $ctx);
        let ($a, $y) = $a.data_init($y, $ctx);
        (($a, $c), $y)
    }};
    (@init $y:ident, $ctx:ident; $a:ident, $c:ident, $d:ident) => {{
        let ($d, $y) = $d.data_init($y, $ctx);
        let ($c, $y) = $c.data_init($y, $ctx);
        let ($a, $y) = $a.data_init($y, $ctx);
        (($a, $c, $d), $y)
    }};
    (@init $y:ident, $ctx:ident; $a:ident, $c:ident, $d:ident, $e:ident) => {{
        let ($e, $y) = $e.data_init($y, $ctx);
        let ($d, $y) = $d.data_init($y, $ctx);
        let ($c, $y) = $c.data_init($y, $ctx);
        let ($a, $y) = $a.data_init($y, $ctx);
        (($a, $c, $d, $e), $y)
    }};
}

tuple_transform!(T0: 0, T1: 1; 1, 0);
tuple_transform!(T0: 0, T1: 1, T2: 2; 2, 1, 0);
tuple_transform!(T0: 0, T1: 1, T2: 2, T3: 3; 3, 2, 1, 0);

/// A [`Transform`] that can be trained with burn's optimizers and evaluated without
/// autodiff afterwards (through [`burn::module::AutodiffModule::valid`]).
///
/// Blanket-implemented for every module that qualifies; it exists so that training code
/// can write one bound instead of five.
pub trait TrainableTransform<B: AutodiffBackend>:
    Transform<B>
    + AutodiffModule<B, InnerModule: Transform<B::InnerBackend> + ModuleDisplay>
    + ModuleDisplay
{
}

impl<B: AutodiffBackend, T> TrainableTransform<B> for T where
    T: Transform<B>
        + AutodiffModule<B, InnerModule: Transform<B::InnerBackend> + ModuleDisplay>
        + ModuleDisplay
{
}
