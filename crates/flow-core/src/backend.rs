//! The backend this build's cargo features select, for binaries and examples
//! (`ndarray` or `wgpu`; `wgpu` wins when both are on). Library code stays generic over
//! `B: Backend`; this module only names one concrete choice.

/// The inference backend chosen by features.
#[cfg(feature = "wgpu")]
pub type Inner = burn::backend::Wgpu;
/// The inference backend chosen by features.
#[cfg(all(feature = "ndarray", not(feature = "wgpu")))]
pub type Inner = burn::backend::NdArray;

/// The training backend: [`Inner`] with autodiff.
pub type Train = burn::backend::Autodiff<Inner>;

/// Human-readable backend name, for logs and reports.
pub const NAME: &str = if cfg!(feature = "wgpu") {
    "wgpu"
} else {
    "ndarray"
};

/// The default device of the backend.
pub fn device() -> burn::tensor::Device<Inner> {
    Default::default()
}
