//! `train-vae`: train, evaluate and sample a VAE with a normalizing-flow posterior.
//!
//! ```text
//! cargo run --release -p train-vae                       # train on the embedded MNIST subset
//! cargo run --release -p train-vae -- --flow radial --n-flows 10 --epochs 20
//! cargo run --release -p train-vae -- eval --checkpoint runs/<run> --images t10k-images-idx3-ubyte.gz
//! cargo run --release -p train-vae -- sample --checkpoint runs/<run> --out samples.png
//! cargo run --release -p train-vae --features wgpu      # the same on the GPU
//! cargo run --release -p train-vae --features wgpu -- --backend ndarray   # or on the CPU
//! ```

#[cfg(not(any(feature = "ndarray", feature = "flex", feature = "wgpu")))]
compile_error!("enable a backend feature: `ndarray` (default), `flex` or `wgpu`");

use std::process::ExitCode;

use burn::{backend::Autodiff, tensor::backend::Backend};
use clap::{Parser, Subcommand};
use flow_programs::{Choice, Devices, Program};
use train_vae::{
    VaeError,
    app::{self, EvalArgs, SampleArgs},
    config::TrainArgs,
};

/// Train, evaluate and sample a VAE whose posterior is a normalizing flow.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The backend to run on: one this build has (`ndarray`, `flex`, `wgpu`, `cuda`, by
    /// cargo feature; `wgpu` and `cuda` are burn's fused backends, `wgpu-unfused` and
    /// `cuda-unfused` the plain ones with flow-kernels' GPU kernels); default the build's
    /// preferred one (GPU over CPU, flex over ndarray).
    #[arg(long, global = true, default_value_t = Choice::default())]
    backend: Choice,
    /// The devices to train on: GPU indices (`0,1`), `all`, or `default`; wgpu also takes
    /// `cpu`, `integrated:N`, `virtual:N`. Several devices train data-parallel (each
    /// computes its share of every batch; the first holds the optimizer and checkpoints)
    /// and need an unfused GPU backend (`--backend wgpu-unfused` or `cuda-unfused`).
    /// A run may resume on another device count.
    #[arg(long, global = true, default_value_t = Devices::default())]
    devices: Devices,
    /// `train` flags, when no subcommand is given.
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train (the default): writes config, metrics, checkpoints and PNGs to --out-dir.
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint on an image file (ELBO and IW-NLL).
    Eval(EvalArgs),
    /// Draw samples from a checkpoint into a PNG grid.
    Sample(SampleArgs),
}

impl Program for Cli {
    type Output = Result<(), VaeError>;

    fn run<B: Backend>(self, name: &'static str) -> Self::Output {
        let devices =
            self.devices
                .resolve::<B>(self.backend)
                .map_err(|reason| VaeError::Config {
                    field: "devices".into(),
                    reason,
                })?;
        let device = devices[0].clone();
        match self.command {
            None => train::<B>(&self.train, name, &devices),
            Some(Command::Train(args)) => train::<B>(&args, name, &devices),
            Some(Command::Eval(args)) => {
                let r = app::eval_command::<B>(&args, &device)?;
                println!("checkpoint  {}", r.checkpoint.display());
                println!(
                    "images      {}  (importance samples {})",
                    r.eval.images, r.eval.samples
                );
                println!("ELBO        {:.2} nats", r.eval.elbo);
                println!("IW-NLL      {:.2} nats", r.eval.nll);
                for (digit, n, nll) in r.per_digit {
                    println!("  digit {digit}: {n:5} images, IW-NLL {nll:.2}");
                }
                Ok(())
            }
            Some(Command::Sample(args)) => {
                let path = app::sample_command::<B>(&args, &device)?;
                println!("wrote {}", path.display());
                Ok(())
            }
        }
    }
}

fn train<B: Backend>(args: &TrainArgs, name: &str, devices: &[B::Device]) -> Result<(), VaeError> {
    // On the CPU backends the training loop runs on one of rayon's threads while the
    // others poll for work between the step's parallel regions instead of sleeping.
    let s = flow_programs::with_hot_workers_on::<B, _>(|| {
        app::train_command::<Autodiff<B>>(args, name, devices)
    })?;
    println!();
    println!(
        "| flow | epochs | best | valid −ELBO | IW −ELBO | IW-NLL (S={}) | images/s | params | backend |",
        s.eval.samples
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
        s.flow,
        s.epochs,
        s.best_epoch,
        s.valid_neg_elbo,
        -s.eval.elbo,
        s.eval.nll,
        s.images_per_second,
        s.params,
        s.backend
    );
    Ok(())
}

/// mimalloc: glibc's malloc returns large tensor buffers to the kernel on every free,
/// and the next op faults in fresh pages (docs/benchmarks.md measures the cost).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { flow_programs::keep_freed_memory() };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,burn_train=warn,burn_core=warn,wgpu_core=warn,wgpu_hal=warn,cubecl=warn"
                    .into()
            }),
        )
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
