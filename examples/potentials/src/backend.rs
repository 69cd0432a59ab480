//! The one place that maps cargo features to a concrete burn backend.

#[cfg(not(any(feature = "ndarray", feature = "wgpu")))]
compile_error!("enable a backend feature: `ndarray` (default) or `wgpu`");

/// The inference backend chosen by features (`wgpu` wins when both are enabled).
#[cfg(feature = "wgpu")]
pub type Inner = burn::backend::Wgpu;
/// The inference backend chosen by features (`wgpu` wins when both are enabled).
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
