//! [`Layer`]: one type for every invertible layer, so that a stack chosen at run time (from
//! a command line or a config file) is a plain `Vec<Layer<B>>`.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{
    actnorm::ActNorm,
    autoregressive::MaskedAutoregressive,
    batchnorm::BatchNorm,
    coupling::Coupling,
    lu::LuLinear,
    permutation::Permutation,
    residual::ResidualAutoregressive,
    transform::{Inverse, Invertible, Transform},
};

/// Any invertible flow-core layer. `Vec<Layer<B>>` is a transform (see
/// [`crate::transform`]), and a module, like every composition.
///
/// ```
/// use burn::backend::NdArray;
/// use flow_core::{Elementwise, Flow, Layer, LuLinearConfig, MaskedAutoregressiveConfig, StandardNormal};
/// let device = Default::default();
/// let mut layers: Vec<Layer<NdArray>> = Vec::new();
/// for _ in 0..3 {
///     let maf = MaskedAutoregressiveConfig::new(4, Elementwise::affine()).init(&device).unwrap();
///     layers.push(maf.into());
///     layers.push(LuLinearConfig::new(4).init(&device).unwrap().into());
/// }
/// let flow = Flow::new(StandardNormal::new(4).unwrap(), layers).unwrap();
/// let x = flow.sample(8, None, &device).unwrap();
/// assert_eq!(flow.log_prob(x, None).unwrap().dims(), [8]);
/// ```
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Layer<B: Backend> {
    /// Coupling (additive, affine or spline).
    Coupling(Coupling<B>),
    /// Masked autoregressive (MAF): density in one pass.
    Autoregressive(MaskedAutoregressive<B>),
    /// Inverse autoregressive (IAF): sampling in one pass.
    InverseAutoregressive(Inverse<B, MaskedAutoregressive<B>>),
    /// Masked autoregressive on a residual MADE (nflows' default, for imported models).
    ResidualAutoregressive(ResidualAutoregressive<B>),
    /// LU-decomposed linear map.
    Lu(LuLinear<B>),
    /// Batch normalization.
    BatchNorm(BatchNorm<B>),
    /// Activation normalization.
    ActNorm(ActNorm<B>),
    /// Fixed permutation.
    Permutation(Permutation<B>),
}

macro_rules! each {
    ($self:expr, $layer:ident => $body:expr) => {
        match $self {
            Layer::Coupling($layer) => $body,
            Layer::Autoregressive($layer) => $body,
            Layer::InverseAutoregressive($layer) => $body,
            Layer::ResidualAutoregressive($layer) => $body,
            Layer::Lu($layer) => $body,
            Layer::BatchNorm($layer) => $body,
            Layer::ActNorm($layer) => $body,
            Layer::Permutation($layer) => $body,
        }
    };
}

impl<B: Backend> Transform<B> for Layer<B> {
    fn dim(&self) -> usize {
        each!(self, l => l.dim())
    }
    fn context_dim(&self) -> usize {
        each!(self, l => l.context_dim())
    }
    fn forward(
        &self,
        x: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        each!(self, l => l.forward(x, context))
    }
}

impl<B: Backend> Invertible<B> for Layer<B> {
    fn inverse(
        &self,
        y: Tensor<B, 2>,
        context: Option<&Tensor<B, 2>>,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        each!(self, l => l.inverse(y, context))
    }
    fn data_init(self, y: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> (Self, Tensor<B, 2>) {
        match self {
            Layer::ActNorm(l) => {
                let (l, x) = l.data_init(y, context);
                (Layer::ActNorm(l), x)
            }
            other => {
                let x = other.inverse(y, context).0;
                (other, x)
            }
        }
    }
}

macro_rules! from {
    ($($variant:ident($ty:ty)),*) => {
        $(impl<B: Backend> From<$ty> for Layer<B> {
            fn from(layer: $ty) -> Self {
                Layer::$variant(layer)
            }
        })*
    };
}

from!(
    Coupling(Coupling<B>),
    Autoregressive(MaskedAutoregressive<B>),
    InverseAutoregressive(Inverse<B, MaskedAutoregressive<B>>),
    ResidualAutoregressive(ResidualAutoregressive<B>),
    Lu(LuLinear<B>),
    BatchNorm(BatchNorm<B>),
    ActNorm(ActNorm<B>),
    Permutation(Permutation<B>)
);
