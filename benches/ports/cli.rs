//! The command line: one subcommand per peer benchmark, checked before anything runs.

use clap::{Args, Parser, Subcommand};
use flow_programs::Choice;

/// The peer benchmarks, ported.
#[derive(Parser, Debug)]
#[command(name = "ports", about)]
pub struct Cli {
    #[command(subcommand)]
    pub bench: Bench,
    /// Worker threads of the CPU backend (rayon and the matmul's pool).
    #[arg(long, global = true, default_value_t = 2)]
    pub threads: usize,
    /// Seed of the data stream and of the backend's initialization.
    #[arg(long, global = true, default_value_t = 0)]
    pub seed: u64,
    /// The backend: one this build has (`ndarray`, `flex`, `wgpu`, `wgpu-unfused`, `cuda`,
    /// `cuda-unfused`, by cargo feature); default the build's preferred one.
    #[arg(long, global = true, default_value_t = Choice::default())]
    pub backend: Choice,
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// a. VAE with a 10-step amortized planar posterior on binarized MNIST (the peer's
    /// `--variant amortised`).
    VaePlanar {
        /// Training epochs (≥ 1 + throughput-epochs).
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Epochs timed after the first (the warm-up).
        #[arg(long, default_value_t = 2)]
        throughput_epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Training images per epoch (the first of the 9,000; fewer make short runs, such as
        /// the launch counts of benches/launches).
        #[arg(long, default_value_t = 9000)]
        train_images: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Posterior samples per validation image for the IW bound (0: no evaluation).
        #[arg(long, default_value_t = 100)]
        iw_samples: usize,
        #[arg(long, default_value_t = 1234)]
        val_seed: u64,
    },
    /// b. RealNVP (8 affine couplings) on two moons.
    RealnvpMoons {
        /// Training steps.
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        #[command(flatten)]
        run: DensityRun,
    },
    /// c. MAF (5 MADE layers) on dequantized logit-space MNIST.
    MafMnist {
        /// Training steps.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Steps before the timed window.
        #[arg(long, default_value_t = 5)]
        warmup_steps: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        #[arg(long, default_value_t = 1000)]
        logprob_batch: usize,
        /// Timed log_prob passes over the validation set (the median is reported); the
        /// peer times one. More give a steadier number and a log_prob-heavy profile.
        #[arg(long, default_value_t = 1)]
        logprob_passes: usize,
        #[arg(long, default_value_t = 64)]
        sample_batch: usize,
        #[arg(long, default_value_t = 1234)]
        val_seed: u64,
    },
    /// The backend's f32 matmul rate (GFLOP/s) for 2048³ and the benchmarks' layer shapes,
    /// as `matmul_peak.py` measures torch's.
    Matmul {
        /// Timed repeats per shape (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Seconds per repeat (at least).
        #[arg(long, default_value_t = 0.2)]
        min_time: f64,
    },
    /// d. Rational-quadratic spline couplings on the 8-D Gaussian mixture.
    NsfMog {
        /// Training steps.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        #[command(flatten)]
        run: DensityRun,
    },
}

impl Bench {
    /// What is wrong with these flags, if anything: checked before anything runs, so that a
    /// bad command line is a usage error, not a panic halfway through.
    pub fn problem(&self) -> Option<String> {
        let window = |steps: usize, warmup: usize| {
            (warmup >= steps)
                .then(|| format!("--warmup-steps ({warmup}) must be below --steps ({steps})"))
        };
        let positive = |flags: &[(&str, usize)]| {
            flags
                .iter()
                .find(|(_, v)| *v == 0)
                .map(|(name, _)| format!("{name} must be at least 1"))
        };
        match *self {
            Bench::VaePlanar {
                epochs,
                throughput_epochs,
                batch,
                train_images,
                ..
            } => positive(&[
                ("--throughput-epochs", throughput_epochs),
                ("--batch", batch),
            ])
            .or_else(|| {
                (epochs <= throughput_epochs).then(|| {
                    format!(
                        "--epochs ({epochs}) must exceed --throughput-epochs \
                             ({throughput_epochs}): epoch 1 is the warm-up"
                    )
                })
            })
            .or_else(|| {
                (train_images > 9000)
                    .then(|| format!("--train-images ({train_images}) must be at most 9000"))
            })
            .or_else(|| {
                (batch > train_images).then(|| {
                    format!("--batch ({batch}) must be at most --train-images ({train_images})")
                })
            }),
            Bench::RealnvpMoons { steps, run } | Bench::NsfMog { steps, run } => {
                positive(&[("--batch", run.batch), ("--test-n", run.test_n)])
                    .or_else(|| window(steps, run.warmup_steps))
            }
            Bench::MafMnist {
                steps,
                warmup_steps,
                batch,
                logprob_batch,
                sample_batch,
                ..
            } => positive(&[
                ("--batch", batch),
                ("--logprob-batch", logprob_batch),
                ("--sample-batch", sample_batch),
            ])
            .or_else(|| window(steps, warmup_steps)),
            Bench::Matmul { repeats, min_time } => {
                positive(&[("--repeats", repeats)]).or_else(|| {
                    (!(min_time.is_finite() && min_time > 0.0)).then(|| {
                        format!("--min-time must be a positive number of seconds, got {min_time}")
                    })
                })
            }
        }
    }
}

/// The flags the two density benchmarks share, with the same defaults (the peers').
#[derive(Args, Debug, Clone, Copy)]
pub struct DensityRun {
    /// Steps before the timed window.
    #[arg(long, default_value_t = 20)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 10_000)]
    pub test_n: usize,
    #[arg(long, default_value_t = 4321)]
    pub test_seed: u64,
    /// `log_prob` passes over the test set, untimed and without sampling, instead of
    /// the peers' timed throughput loops (0): a run whose work is fixed, as the launch
    /// counts of benches/launches need.
    #[arg(long, default_value_t = 0)]
    pub logprob_passes: usize,
}
