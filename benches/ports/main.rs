//! Rust ports of the four PyTorch peer benchmarks in `shared/peer` (its README specifies
//! them): the same data formulas, layer sizes, parameter counts, batch sizes, optimizer
//! (Adam with torch's defaults) and timing windows, on the backend the features select
//! (`ndarray` by default, or `--features flex`). Each prints **one JSON line** on stdout
//! with the peer's metric names; progress goes to stderr.
//!
//! ```text
//! cargo run --release -p flow-benches --bin ports -- realnvp-moons --threads 2
//! ```
//!
//! `benches/side_by_side.py` (`just bench-peers`) runs them alternately with the peers.

mod cli;
mod common;
mod maf;
mod matmul;
mod toys;
mod vae;

use burn::tensor::backend::Backend;
use clap::{CommandFactory, Parser};
use density::data::Toy;
use flow_programs::Program;
use serde_json::{Value, json};

use cli::{Bench, Cli};

/// mimalloc, as the project's programs (glibc's malloc returns large buffers to the
/// kernel on every free; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { flow_programs::keep_freed_memory() };
    let cli = Cli::parse();
    let problem = (cli.threads == 0)
        .then(|| "--threads must be at least 1".to_string())
        .or_else(|| cli.bench.problem());
    if let Some(problem) = problem {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, problem)
            .exit();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // The CPU backends' pools: rayon (element-wise work, flex's GEMM) and matrixmultiply's
    // own pool (ndarray's GEMM), both `--threads` wide, set before the first tensor op.
    // SAFETY: no other thread exists yet that could read the environment.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", cli.threads.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(cli.threads)
        .build_global()
        .expect("the first rayon pool");
    let load_start = load_average();
    let seed = cli.seed;
    let bench = cli.bench;
    let backend = cli.backend;
    if let Err(why) = backend.ready() {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, why)
            .exit();
    }
    let mut out = backend.run(Ports { bench, seed });
    out["variant"] = json!(format!("flow-rs/{backend}"));
    out["threads"] = json!(cli.threads);
    out["seed"] = json!(seed);
    out["argv"] = json!(std::env::args().skip(1).collect::<Vec<_>>());
    out["versions"] = json!({"flow-rs": env!("CARGO_PKG_VERSION"), "burn": "0.21.0"});
    out["loadavg_1m_at_start"] = json!(load_start);
    out["loadavg_1m_at_end"] = json!(load_average());
    println!("{out}");
}

/// A benchmark run on the backend chosen at run time.
struct Ports {
    bench: Bench,
    seed: u64,
}

impl Program for Ports {
    type Output = Value;

    fn run<B: Backend>(self, _name: &'static str) -> Value {
        let Ports { bench, seed } = self;
        // The benchmark runs on one of the pool's threads, so that the serial tensor ops
        // and the parallel kernels share the `--threads` threads: a main thread outside the
        // pool would hand every parallel region to a (possibly sleeping) worker and wait. On
        // the CPU backends the other threads poll for work meanwhile instead of sleeping
        // between the parallel regions, as the OpenMP threads behind the peers' PyTorch
        // operators spin between theirs.
        flow_programs::with_hot_workers_on::<B, _>(move || match bench {
            Bench::VaePlanar {
                epochs,
                throughput_epochs,
                batch,
                train_images,
                lr,
                iw_samples,
                val_seed,
            } => vae::vae_planar::<B>(
                (epochs, throughput_epochs),
                (batch, train_images),
                lr,
                iw_samples,
                val_seed,
                seed,
            ),
            Bench::RealnvpMoons { steps, run } => {
                toys::density_bench::<B>("realnvp-moons", Toy::PeerMoons, steps, run, seed)
            }
            Bench::NsfMog { steps, run } => {
                toys::density_bench::<B>("nsf-mog", Toy::Mog8, steps, run, seed)
            }
            Bench::MafMnist {
                steps,
                warmup_steps,
                batch,
                lr,
                logprob_batch,
                logprob_passes,
                sample_batch,
                val_seed,
            } => maf::maf_mnist::<B>(
                (steps, warmup_steps, batch),
                lr,
                (logprob_batch, logprob_passes, sample_batch),
                val_seed,
                seed,
            ),
            Bench::Matmul { repeats, min_time } => matmul::matmul::<B>(repeats, min_time),
        })
    }
}

/// The 1-minute load average (`/proc/loadavg`), to spot a run shared with other work.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
