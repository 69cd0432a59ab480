//! Variational inference on the four 2-D potentials of Rezende & Mohamed (2015).
//!
//! For each target `p(z) ∝ exp(−U(z))` and each flow, minimise the annealed free energy
//! `E_q[ln q(z) + β_t U(z)]`, `β_t = min(1, 0.01 + t/10⁴)`, with Adam; then report, with
//! `10⁵` fresh samples, `KL(q‖p) = E_q[ln q + U] + ln Z` for `U₁` (with `ln Z` from a
//! 2001 × 2001 grid over `[−8, 8]²`) and the free energy `E_q[ln q + U]` for `U₂`–`U₄`,
//! which have no finite normalizer. Writes a markdown table, a JSONL file and a PNG like
//! the paper's Figure 3.
//!
//! ```text
//! cargo run --release -p potentials -- --out-dir docs/potentials
//! cargo run --release -p potentials --features wgpu -- --steps 2000
//! ```

#[cfg(not(any(feature = "ndarray", feature = "flex", feature = "wgpu")))]
compile_error!("enable a backend feature: `ndarray` (default), `flex` or `wgpu`");

mod cli;
mod error;
mod grid;
mod report;
mod targets;

use std::time::Instant;

use burn::{
    module::{AutodiffModule, Module},
    optim::{AdamConfig, GradientsParams, Optimizer},
    tensor::backend::Backend,
};
use clap::Parser;
use flow_core::{
    CouplingConfig, DiagNormal, DiagNormalConfig, Elementwise, Flow, Permutation, PlanarConfig,
    RadialConfig, TrainableTransform, Transform,
};
use tracing::info;

use cli::{Args, BaseKind, Spec};
use error::{Error, Result};
use flow_plots::Window;
use flow_programs::{self as backend, Inner, Train};
use grid::{chunks, host, log_normalizer};
use report::{Outcome, write_reports};
use targets::Target;

type Base<B> = DiagNormal<B>;

/// Trains `flow` by annealed reverse KL, then evaluates it without autodiff.
fn fit<T>(
    flow: Flow<Train, Base<Train>, T>,
    target: Target,
    spec: Spec,
    args: &Args,
    log_z: Option<f64>,
) -> Result<Outcome>
where
    T: TrainableTransform<Train>,
{
    let device = backend::device();
    let mut flow = flow;
    let mut optim = AdamConfig::new().init();
    let started = Instant::now();
    for step in 0..args.steps {
        let beta = (0.01 + step as f64 / 1e4).min(1.0);
        let (z, log_q) = flow.sample_with_log_prob(args.batch, None, &device)?;
        let loss = (log_q + target.confined_energy(z, args.wall()).mul_scalar(beta)).mean();
        // Read the loss back only at logging steps: a sync, not part of each step.
        if (step + 1) % args.log_every == 0 || step + 1 == args.steps {
            let value: f64 = loss.clone().into_scalar().into();
            if !value.is_finite() {
                return Err(Error::Diverged {
                    target: target.number().into(),
                    flow: spec.family(),
                    k: spec.k(),
                    step: step + 1,
                    loss: value,
                });
            }
            info!(
                target = target.number(),
                flow = spec.family(),
                k = spec.k(),
                step = step + 1,
                beta,
                loss = value,
                "training"
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &flow);
        flow = optim.step(args.lr, flow, grads);
    }
    let seconds = started.elapsed().as_secs_f64();
    let flow = flow.valid();
    let (free_energy, trained_free_energy) = free_energies(&flow, target, args)?;
    let histogram = histogram(&flow, args.plot_samples, args.resolution)?;
    Ok(Outcome {
        target,
        spec,
        free_energy,
        kl: log_z.map(|lz| trained_free_energy + lz),
        seconds,
        histogram,
    })
}

/// Monte Carlo `E_q[ln q(z) + U(z)]` over `args.eval_samples` samples, for the target's
/// own `U` and for the energy trained on (with the wall), from the same samples.
fn free_energies<T: Transform<Inner>>(
    flow: &Flow<Inner, Base<Inner>, T>,
    target: Target,
    args: &Args,
) -> Result<(f64, f64)> {
    let device = backend::device();
    let (mut own, mut trained) = (0.0, 0.0);
    for m in chunks(args.eval_samples) {
        let (z, log_q) = flow.sample_with_log_prob(m, None, &device)?;
        let u_trained = target.confined_energy(z.clone(), args.wall());
        own += host((log_q.clone() + target.energy(z)).sum())[0];
        trained += host((log_q + u_trained).sum())[0];
    }
    let n = args.eval_samples as f64;
    let (own, trained) = (own / n, trained / n);
    if own.is_finite() && trained.is_finite() {
        Ok((own, trained))
    } else {
        Err(Error::NotFinite { own, trained })
    }
}

/// 2-D histogram (counts) of `n` samples on `[−4, 4]²`, `res × res`, row = z₂ bin.
fn histogram<T: Transform<Inner>>(
    flow: &Flow<Inner, Base<Inner>, T>,
    n: usize,
    res: usize,
) -> Result<Vec<f64>> {
    let device = backend::device();
    let mut counts = vec![0.0; res * res];
    for m in chunks(n) {
        let z = flow.sample(m, None, &device)?;
        let z: Vec<f64> = z
            .into_data()
            .convert::<f64>()
            .into_vec()
            .expect("float data");
        Window {
            lo: -4.0,
            hi: 4.0,
            res,
        }
        .histogram(&z, &mut counts);
    }
    Ok(counts)
}

fn run_spec(spec: Spec, target: Target, args: &Args, log_z: Option<f64>) -> Result<Outcome> {
    let device = backend::device();
    let base = DiagNormalConfig::new(2).init::<Train>(&device)?;
    // A fixed N(0, I) base is the diagonal normal at its initial values, not trained.
    let base = match args.base {
        BaseKind::Standard => base.no_grad(),
        BaseKind::Diagonal => base,
    };
    match spec {
        Spec::Planar(k) => {
            let layers = PlanarConfig::new(2).init_stack(k, &device)?;
            fit(Flow::new(base, layers)?, target, spec, args, log_z)
        }
        Spec::Radial(k) => {
            let layers = RadialConfig::new(2).init_stack(k, &device)?;
            fit(Flow::new(base, layers)?, target, spec, args, log_z)
        }
        Spec::RealNvp(k) => {
            let layers = (0..k)
                .map(|_| {
                    let coupling = CouplingConfig::new(2, Elementwise::affine())
                        .with_hidden(32)
                        .init(&device)?;
                    Ok((coupling, Permutation::reverse(2, &device)?))
                })
                .collect::<flow_core::Result<Vec<_>>>()?;
            fit(Flow::new(base, layers)?, target, spec, args, log_z)
        }
    }
}

/// mimalloc: glibc's malloc returns large tensor buffers to the kernel on every free,
/// and the next op faults in fresh pages (docs/benchmarks.md measures the cost).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { flow_programs::keep_freed_memory() };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if let Err(e) = flow_programs::Choice::default().ready() {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let device = backend::device();
    Inner::seed(&device, args.seed);
    info!(
        backend = backend::NAME,
        targets = args.targets.len(),
        flows = args.flows.len(),
        "starting"
    );
    let mut outcomes = Vec::new();
    let mut log_zs = Vec::new();
    for &target in &args.targets {
        let log_z = target
            .proper_with(args.wall())
            .then(|| log_normalizer(target, args.wall()));
        if let Some(lz) = log_z {
            info!(
                target = target.number(),
                log_z = lz,
                "normalizer by grid integration"
            );
            log_zs.push((target, lz));
        }
        for &spec in &args.flows {
            Inner::seed(&device, args.seed);
            let outcome = run_spec(spec, target, args, log_z)?;
            info!(
                target = target.number(),
                flow = spec.family(),
                k = spec.k(),
                free_energy = outcome.free_energy,
                kl = ?outcome.kl,
                seconds = outcome.seconds,
                "fitted"
            );
            outcomes.push(outcome);
        }
    }
    write_reports(args, &outcomes, &log_zs)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    /// `U(z)` from the tensor code against a plain f64 transcription of Table 1.
    #[test]
    fn energies_match_host_formulas() {
        let Some(_gpu) = flow_core::testing::gpu_test_device() else {
            return;
        };
        let points = [
            [0.3f64, -1.2],
            [2.1, 0.4],
            [-1.7, 2.5],
            [0.0, 0.5],
            [3.5, -3.0],
        ];
        let host_u = |k: u8, z1: f64, z2: f64| {
            let g = |x: f64, s: f64| (-0.5 * (x / s).powi(2)).exp();
            let w1 = (2.0 * std::f64::consts::PI * z1 / 4.0).sin();
            let w2 = 3.0 * g(z1 - 1.0, 0.6);
            let w3 = 3.0 / (1.0 + (-(z1 - 1.0) / 0.3).exp());
            match k {
                1 => {
                    0.5 * (((z1 * z1 + z2 * z2).sqrt() - 2.0) / 0.4).powi(2)
                        - (g(z1 - 2.0, 0.6) + g(z1 + 2.0, 0.6)).ln()
                }
                2 => 0.5 * ((z2 - w1) / 0.4).powi(2),
                3 => -(g(z2 - w1, 0.35) + g(z2 - w1 + w2, 0.35)).ln(),
                _ => -(g(z2 - w1, 0.4) + g(z2 - w1 + w3, 0.35)).ln(),
            }
        };
        let device = backend::device();
        let flat: Vec<f32> = points
            .iter()
            .flat_map(|p| [p[0] as f32, p[1] as f32])
            .collect();
        let z = Tensor::<Inner, 2>::from_data(TensorData::new(flat, [points.len(), 2]), &device);
        for k in 1..=4u8 {
            let u = host(Target::from_number(k).unwrap().energy(z.clone()));
            for (p, got) in points.iter().zip(u) {
                let want = host_u(k, p[0], p[1]);
                assert!(
                    (got - want).abs() < 1e-4 * want.abs().max(1.0),
                    "U{k}{p:?}: {got} vs {want}"
                );
            }
        }
    }

    /// The wall leaves U2–U4 unchanged inside the box, adds ½((|z1| − L)/0.2)² outside, and
    /// never touches U1.
    #[test]
    fn wall_confines_only_outside_the_box() {
        let Some(_gpu) = flow_core::testing::gpu_test_device() else {
            return;
        };
        let device = backend::device();
        let z = Tensor::<Inner, 2>::from_data(
            TensorData::new(vec![3.9f32, 0.2, -4.5, 0.1, 5.0, -0.3], [3, 2]),
            &device,
        );
        for t in [Target::U2, Target::U3, Target::U4] {
            let raw = host(t.energy(z.clone()));
            let walled = host(t.confined_energy(z.clone(), Some(4.0)));
            assert!((walled[0] - raw[0]).abs() < 1e-6);
            assert!((walled[1] - raw[1] - 0.5 * (0.5f64 / 0.2).powi(2)).abs() < 1e-4);
            assert!((walled[2] - raw[2] - 0.5 * (1.0f64 / 0.2).powi(2)).abs() < 1e-4);
            assert_eq!(host(t.confined_energy(z.clone(), None)), raw);
        }
        let u1 = host(Target::U1.energy(z.clone()));
        assert_eq!(host(Target::U1.confined_energy(z, Some(4.0))), u1);
    }

    /// ln Z of U1 against an independent midpoint-rule quadrature in f64 (a plain Python
    /// double loop over a 1001² grid on [−8, 8]² gave 1.877501626; the code uses 2001²).
    #[test]
    fn log_normalizer_of_u1_matches_independent_quadrature() {
        let Some(_gpu) = flow_core::testing::gpu_test_device() else {
            return;
        };
        let lz = log_normalizer(Target::U1, None);
        assert!((lz - 1.877_501_6).abs() < 1e-4, "ln Z = {lz}");
    }

    /// A short run end to end: it writes the table, the JSONL and the PNG, and its KL
    /// estimate is a KL (non-negative up to Monte Carlo noise).
    #[test]
    fn short_run_writes_reports() {
        let Some(_gpu) = flow_core::testing::gpu_test_device() else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("potentials-test-{}", std::process::id()));
        let args = Args::try_parse_from([
            "potentials",
            "--targets",
            "1,3",
            "--flows",
            "planar:2,realnvp:1",
            "--steps",
            "30",
            "--eval-samples",
            "4000",
            "--plot-samples",
            "4000",
            "--resolution",
            "24",
            "--out-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap();
        run(&args).unwrap();
        let table = std::fs::read_to_string(dir.join("results.md")).unwrap();
        assert_eq!(table.matches("| U1 |").count(), 2);
        assert_eq!(table.matches("| U3 |").count(), 2);
        let lines = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 4);
        for line in lines.lines() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            // U3 has a KL only with its wall, which is on by default.
            let kl = line["kl"]
                .as_f64()
                .expect("a KL for every target with the wall");
            assert!(kl > -0.05, "KL must be ≥ 0 up to noise: {kl}");
        }
        let png = std::fs::read(dir.join("potentials.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::remove_dir_all(dir).ok();
    }
}
