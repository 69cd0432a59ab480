//! [`Base`]: one type for every base distribution, for flows whose base is chosen at run
//! time (as [`crate::Layer`] is for layers).

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use super::{
    conditional::ConditionalDiagNormal,
    mixture::GaussianMixture,
    normal::{DiagNormal, StandardNormal},
    traits::Distribution,
};

/// Any flow-core base distribution; a [`Distribution`] and a module like each of them.
///
/// ```
/// use burn::backend::NdArray;
/// use flow_core::{Base, Distribution, GaussianMixtureConfig, StandardNormal};
///
/// let device = Default::default();
/// let bases: Vec<Base<NdArray>> = vec![
///     StandardNormal::new(2).unwrap().into(),
///     GaussianMixtureConfig::new(2, 4).init(&device).unwrap().into(),
/// ];
/// for base in &bases {
///     assert_eq!(base.sample(3, None, &device).dims(), [3, 2]);
/// }
/// ```
#[derive(Module, Debug)]
pub enum Base<B: Backend> {
    /// `N(0, I)`.
    Normal(StandardNormal),
    /// A learnable diagonal normal.
    Diagonal(DiagNormal<B>),
    /// A learnable Gaussian mixture.
    Mixture(GaussianMixture<B>),
    /// A diagonal normal whose mean and scale come from the context.
    Conditional(ConditionalDiagNormal<B>),
}

macro_rules! each {
    ($self:expr, $d:ident => $body:expr) => {
        match $self {
            Base::Normal($d) => $body,
            Base::Diagonal($d) => $body,
            Base::Mixture($d) => $body,
            Base::Conditional($d) => $body,
        }
    };
}

impl<B: Backend> Distribution<B> for Base<B> {
    fn dim(&self) -> usize {
        each!(self, d => Distribution::<B>::dim(d))
    }
    fn context_dim(&self) -> usize {
        each!(self, d => Distribution::<B>::context_dim(d))
    }
    fn log_prob(&self, x: Tensor<B, 2>, context: Option<&Tensor<B, 2>>) -> Tensor<B, 1> {
        each!(self, d => d.log_prob(x, context))
    }
    fn sample_with_log_prob(
        &self,
        n: usize,
        context: Option<&Tensor<B, 2>>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        each!(self, d => d.sample_with_log_prob(n, context, device))
    }
}

impl<B: Backend> From<StandardNormal> for Base<B> {
    fn from(d: StandardNormal) -> Self {
        Base::Normal(d)
    }
}

impl<B: Backend> From<DiagNormal<B>> for Base<B> {
    fn from(d: DiagNormal<B>) -> Self {
        Base::Diagonal(d)
    }
}

impl<B: Backend> From<GaussianMixture<B>> for Base<B> {
    fn from(d: GaussianMixture<B>) -> Self {
        Base::Mixture(d)
    }
}

impl<B: Backend> From<ConditionalDiagNormal<B>> for Base<B> {
    fn from(d: ConditionalDiagNormal<B>) -> Self {
        Base::Conditional(d)
    }
}
