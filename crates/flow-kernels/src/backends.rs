//! The concrete backends with kernels, and how an op generic over `B: Backend` finds out
//! that `B` is one of them.
//!
//! - CPU (feature `cpu`): `burn::backend::Flex` (feature `flex`) and `burn::backend::NdArray`
//!   (feature `ndarray`), and `Autodiff` of either;
//! - CubeCL (feature `cubecl`): burn's unfused `WgpuInner` (feature `wgpu`) and
//!   `CudaInner` (feature `cuda`), and `Autodiff` of either. burn's fusion-wrapped
//!   `WgpuFused` / `CudaFused` take the references (their own fuser merges element-wise
//!   chains into fewer kernels). The aliases exist only with their feature, hence plain
//!   names here: each is documented below when its feature is on.

use burn::tensor::backend::Backend;

/// burn's unfused wgpu backend (f32), the one with CubeCL kernels.
#[cfg(feature = "wgpu")]
pub type WgpuInner =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// burn's fused wgpu backend (f32): [`WgpuInner`] under burn-fusion, which records each
/// thread's ops lazily and compiles chains of element-wise ops into single kernels.
#[cfg(feature = "wgpu")]
pub type WgpuFused = burn::backend::Wgpu<f32, i32, u32>;

/// The Vulkan (Metal on macOS) adapter burn's wgpu backend would open, by name, or why
/// there is none: asked of wgpu directly, so that a machine without a GPU driver gets an
/// answer instead of the panic cubecl raises on its first tensor. The programs check it
/// before they start on `wgpu`, and the tests skip (or, with `FLOW_REQUIRE_GPU` set, fail)
/// on it.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapter() -> Result<String, String> {
    let (adapters, backend) = wgpu_adapters();
    adapters
        .first()
        .map(|a| {
            let info = a.get_info();
            format!("{} ({:?})", info.name, info.backend)
        })
        .ok_or_else(|| {
            format!(
                "no {backend:?} GPU adapter found: install a GPU driver (Debian: \
                 `apt-get install mesa-vulkan-drivers`, a software one) or run on the CPU \
                 (--backend ndarray or flex)"
            )
        })
}

/// Whether burn's wgpu `device` runs on a software adapter, a CPU such as Mesa's lavapipe.
/// Its shader compiler (llvmpipe) silently stops a loop nest after 65,535 iterations per
/// invocation, the iterations of the loops inside it counted together (measured here with
/// a kernel counting its own iterations: 70,000 in one loop counted 65,535; 100,000 split
/// 10 × 10 × 1,000 counted 65,387), so a kernel whose threads loop longer returns
/// garbage there; such kernels ask this first and leave the work to the tensor-op
/// references. The default device counts as software when every adapter wgpu finds is a
/// CPU (burn picks a GPU when there is one); an explicit GPU device, or a wgpu device the
/// caller created (`Existing`), never does.
#[cfg(feature = "wgpu")]
pub fn wgpu_software(device: &burn::backend::wgpu::WgpuDevice) -> bool {
    use burn::backend::wgpu::WgpuDevice;
    static ONLY_SOFTWARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    match device {
        WgpuDevice::Cpu => true,
        WgpuDevice::DiscreteGpu(_)
        | WgpuDevice::IntegratedGpu(_)
        | WgpuDevice::VirtualGpu(_)
        | WgpuDevice::Existing(_) => false,
        _ => *ONLY_SOFTWARE.get_or_init(|| {
            let (adapters, _) = wgpu_adapters();
            !adapters.is_empty()
                && adapters
                    .iter()
                    .all(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
        }),
    }
}

/// The adapters of the graphics API burn's wgpu backend uses, and that API.
#[cfg(feature = "wgpu")]
fn wgpu_adapters() -> (Vec<wgpu::Adapter>, wgpu::Backend) {
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    let backend = AutoGraphicsApi::backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        // No debug messenger: the loader's complaints are what an error says in one line.
        flags: wgpu::InstanceFlags::empty(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    (ready(instance.enumerate_adapters(backend.into())), backend)
}

/// The environment variable that makes a missing wgpu adapter fail the tests instead of
/// skipping them (CI sets it, so its wgpu tests can never be skipped silently).
pub const REQUIRE_GPU: &str = "FLOW_REQUIRE_GPU";

/// Whether the wgpu tests can run here ([`wgpu_adapter`], asked once per process). Without
/// an adapter they are skipped, with one line on stderr (outside the test harness's
/// capture) saying what to install; with [`REQUIRE_GPU`] set to anything but `0`, this
/// panics instead.
#[cfg(feature = "wgpu")]
pub fn wgpu_for_tests() -> bool {
    static ADAPTER: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let adapter = wgpu_adapter();
            if let Err(why) = &adapter {
                let required = std::env::var(REQUIRE_GPU).is_ok_and(|v| v != "0");
                assert!(!required, "{REQUIRE_GPU} is set, but {why}");
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: the wgpu tests ({why}; set {REQUIRE_GPU}=1 to fail instead)"
                );
            }
            adapter
        })
        .is_ok()
}

/// The value of a native wgpu future, which is ready at once (polled until it is).
#[cfg(feature = "wgpu")]
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// burn's unfused CUDA backend (f32), the one with CubeCL kernels.
#[cfg(feature = "cuda")]
pub type CudaInner = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// burn's fused CUDA backend (f32): [`CudaInner`] under burn-fusion.
#[cfg(feature = "cuda")]
pub type CudaFused = burn::backend::Cuda<f32, i32>;

/// `x` as type `U`, which the caller has checked is `T` itself (`TypeId` equality): how an
/// op takes a generic backend's tensors as their concrete type without copying. `None`
/// when the types differ.
pub fn same_type<T: 'static, U: 'static>(x: T) -> Option<U> {
    let mut slot = Some(x);
    (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

/// True when `B` is exactly `C`.
pub fn is<B: 'static, C: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<C>()
}

/// Whether `B`'s tensors live in host memory: `B` is one of the CPU backends this build
/// has (`Flex`, `NdArray`), not a GPU backend nor an `Autodiff` wrapper.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// assert!(flow_kernels::backends::host_resident::<NdArray>());
/// assert!(!flow_kernels::backends::host_resident::<Autodiff<NdArray>>());
/// ```
pub fn host_resident<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    if is::<B, burn::backend::Flex>() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    if is::<B, burn::backend::NdArray>() {
        return true;
    }
    false
}
