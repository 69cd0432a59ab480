//! Fits a flow with a custom sinh-arcsinh layer to a skewed, heavy-tailed 2-D density and
//! prints the held-out mean log-likelihood before and after.
//!
//! ```sh
//! cargo run -p custom-layer --release                    # CPU (ndarray)
//! cargo run -p custom-layer --release -- --steps 1000 --save flow
//! cargo run -p custom-layer --release --features wgpu    # GPU
//! ```

use std::{path::PathBuf, process::ExitCode};

use burn::backend::Autodiff;
use custom_layer::train::{self, FitConfig};

/// The backend, chosen by cargo feature; nothing else in the program names one.
#[cfg(not(feature = "wgpu"))]
type Inner = burn::backend::NdArray;
/// The GPU: burn's wgpu backend without its fusion layer, the one flow-core's CubeCL
/// kernels run on (`burn::backend::Wgpu` works too, with the references).
#[cfg(feature = "wgpu")]
type Inner = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
/// The training backend: the same with autodiff.
type Train = Autodiff<Inner>;

const USAGE: &str = "usage: custom-layer [--steps N] [--save PATH]";

/// `--steps N` and `--save PATH`, the only options.
fn parse_args() -> Result<(FitConfig, Option<PathBuf>), String> {
    let mut config = FitConfig::new().with_log_every(100);
    let mut save = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--steps" => {
                let v = value()?;
                config.steps = v
                    .parse()
                    .map_err(|_| format!("--steps: {v:?} is not a number of steps"))?;
            }
            "--save" => save = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((config, save))
}

fn main() -> ExitCode {
    let (config, save) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let device = Default::default();
    println!(
        "{} blocks of (masked autoregressive affine, sinh-arcsinh, reverse), {} Adam steps",
        config.blocks, config.steps
    );
    let (flow, fit) = match train::fit::<Train>(&config, &device) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "mean log-likelihood on {} held-out points: before {:.3}, after {:.3} \
         (the target's own: {:.3}); training took {:.1} s",
        config.test_size, fit.before, fit.after, fit.target, fit.seconds
    );
    if let Some(path) = save {
        if let Err(e) = train::save(flow, &path) {
            eprintln!("error: saving to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("saved to {}", path.with_extension("mpk").display());
    }
    ExitCode::SUCCESS
}
