//! Density estimation with normalizing flows: fit a stack of flow-core layers to 2-D toy
//! data (FFJORD's generators), the peer benchmarks' data sets, or your own table (CSV or
//! NPY), with a train/validation/test split, standardization, a whitening layer and early
//! stopping; conditional densities `p(y | c)` of some columns given others; a normal or
//! Gaussian-mixture base. Reports the test log-likelihood and, for 2-D data, writes PNGs
//! of the data, the learned density and samples (or the conditional densities).
//!
//! ```text
//! cargo run --release -p density -- --data 8gaussians --flow nsf
//! cargo run --release -p density -- --data my_table.csv --flow maf --layers 5 --batchnorm
//! cargo run --release -p density -- eval --model runs/density/8gaussians-nsf --data test.csv
//! cargo run --release -p density -- --data cond-bimodal --context-cols 1 --flow maf-spline
//! cargo run --release -p density -- sample --model runs/density/cond-bimodal-maf-spline \
//!     --n 100 --context contexts.csv --out samples.csv
//! ```

#[cfg(not(any(feature = "ndarray", feature = "flex", feature = "wgpu")))]
compile_error!("enable a backend feature: `ndarray` (default), `flex` or `wgpu`");

mod dataset;
mod draw;
mod error;
mod evaluate;
mod files;
mod fit;
mod model;

use std::process::ExitCode;

use burn::tensor::backend::Backend;
use clap::{Parser, Subcommand};
use flow_programs::{Choice, Devices, Program};

use error::{Result, other};
use evaluate::{EvalArgs, ExportArgs, SampleArgs};
use fit::{FitArgs, Summary};

/// Density estimation with normalizing flows.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fit: FitArgs,
    /// The backend to run on: one this build has (`ndarray`, `flex`, `wgpu`, `cuda`, by
    /// cargo feature; `wgpu` and `cuda` are burn's fused backends, `wgpu-unfused` and
    /// `cuda-unfused` the plain ones with flow-kernels' GPU kernels); default the build's
    /// preferred one (GPU over CPU, flex over ndarray).
    #[arg(long, global = true, default_value_t = Choice::default())]
    backend: Choice,
    /// The device to run on: a GPU index (`0`, `1`, …) or `default`; wgpu also takes
    /// `cpu`, `integrated:N`, `virtual:N`. One: density trains on one thread, on one
    /// device (data-parallel training is train-vae's, through burn-train).
    #[arg(long, global = true, default_value_t = Devices::default())]
    devices: Devices,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fit a flow (the default when no subcommand is given).
    Fit(Box<FitArgs>),
    /// Evaluate a saved model on a CSV or NPY file: mean log-likelihood per row.
    Eval(EvalArgs),
    /// Write a saved model in another format (safetensors).
    Export(ExportArgs),
    /// Draw samples from a saved model (given contexts, for a conditional one) into a CSV
    /// or NPY file.
    Sample(SampleArgs),
}

/// mimalloc: glibc's malloc returns large tensor buffers to the kernel on every free,
/// and the next op faults in fresh pages (docs/benchmarks.md measures the cost).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { flow_programs::keep_freed_memory() };
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = flow_programs::interrupt::install() {
        tracing::warn!("{e}: Ctrl-C will stop without saving");
    }
    if let Err(e) = cli.backend.ready() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match cli.backend.run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Program for Cli {
    type Output = Result<()>;

    fn run<B: Backend>(self, backend: &'static str) -> Result<()> {
        let devices = self.devices.resolve::<B>(self.backend).map_err(other)?;
        let [device] = devices.as_slice() else {
            return Err(other(format!(
                "--devices {}: density trains on one thread, on one device; data-parallel \
                 training over several is train-vae's (burn-train's multi-device strategy)",
                self.devices
            )));
        };
        match &self.command {
            Some(Command::Eval(e)) => evaluate::eval::<B>(e, device).map(|ll| {
                println!(
                    "mean log-likelihood {ll:.4} nats per row ({})",
                    e.data.display()
                );
            }),
            Some(Command::Export(x)) => evaluate::export::<B>(x, device).map(|n| {
                println!("wrote {n} tensors to {}", x.out.display());
            }),
            Some(Command::Sample(s)) => evaluate::sample::<B>(s, device).map(|rows| {
                println!("wrote {rows} samples to {}", s.out.display());
            }),
            // On the CPU backends on one of rayon's threads while the others poll for work
            // between the step's parallel regions instead of sleeping.
            Some(Command::Fit(f)) => {
                flow_programs::with_hot_workers_on::<B, _>(|| fit::fit::<B>(f, backend, device))
                    .map(report)
            }
            None => flow_programs::with_hot_workers_on::<B, _>(|| {
                fit::fit::<B>(&self.fit, backend, device)
            })
            .map(report),
        }
    }
}

fn report(s: Summary) {
    println!(
        "| data | flow | params | steps (best) | test log-lik | exact | −entropy | bits/dim | steps/s | backend |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.4}"));
    println!(
        "| {} | {} | {} | {} ({}) | {:.4} | {} | {} | {} | {:.1} | {} |",
        s.data,
        describe(&s),
        s.params,
        s.steps_run,
        s.best_step,
        s.test_log_likelihood,
        opt(s.exact_test_log_likelihood),
        opt(s.entropy.map(|h| -h)),
        opt(s.bits_per_dim),
        s.steps_per_second,
        s.backend
    );
}

/// The flow column of the report: the stack, its base when not the normal, and what it is
/// conditioned on.
fn describe(s: &Summary) -> String {
    let mut out = s.flow.clone();
    if s.base != "normal" {
        out += &format!(" base {}", s.base);
    }
    if !s.context.is_empty() {
        let cols: Vec<String> = s.context.iter().map(|c| c.to_string()).collect();
        out += &format!(" given column(s) {}", cols.join(","));
    }
    out
}
