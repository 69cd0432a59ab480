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

mod targets;

use std::{fmt::Write as _, path::PathBuf, time::Instant};

use burn::{
    module::{AutodiffModule, Module},
    optim::{AdamConfig, GradientsParams, Optimizer},
    tensor::{Tensor, TensorData, backend::Backend},
};
use clap::Parser;
use flow_core::{
    CouplingConfig, DiagNormal, DiagNormalConfig, Elementwise, Flow, Permutation, PlanarConfig,
    RadialConfig, TrainableTransform, Transform, ops::logsumexp,
};
use tracing::info;

use flow_plots::{Panel, Window};
use flow_programs::{self as backend, Inner, Train};
use targets::Target;

/// A flow family and its length K.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spec {
    Planar(usize),
    Radial(usize),
    /// K affine coupling layers, each followed by a reversal of the two coordinates.
    RealNvp(usize),
}

impl Spec {
    fn family(self) -> &'static str {
        match self {
            Spec::Planar(_) => "planar",
            Spec::Radial(_) => "radial",
            Spec::RealNvp(_) => "realnvp",
        }
    }
    fn k(self) -> usize {
        match self {
            Spec::Planar(k) | Spec::Radial(k) | Spec::RealNvp(k) => k,
        }
    }
}

fn parse_spec(s: &str) -> Result<Spec, String> {
    let (family, k) = s
        .split_once(':')
        .ok_or_else(|| format!("flow spec `{s}` must look like planar:32"))?;
    let k: usize = k
        .parse()
        .map_err(|_| format!("flow spec `{s}`: K must be a whole number"))?;
    if k == 0 {
        return Err(format!(
            "flow spec `{s}`: K = 0 is the identity flow; use K ≥ 1"
        ));
    }
    match family {
        "planar" => Ok(Spec::Planar(k)),
        "radial" => Ok(Spec::Radial(k)),
        "realnvp" => Ok(Spec::RealNvp(k)),
        other => Err(format!("unknown flow `{other}` (planar, radial, realnvp)")),
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.trim()
        .parse()
        .ok()
        .and_then(Target::from_number)
        .ok_or_else(|| format!("unknown target `{s}`: use 1, 2, 3 or 4"))
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("`{s}` must be a whole number ≥ 1")),
        Ok(v) => Ok(v),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` must be a finite number ≥ 0")),
    }
}

fn learning_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("learning rate `{s}` must be a finite number > 0")),
    }
}

/// The initial density q₀ of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BaseKind {
    /// Fixed N(0, I), as in Rezende & Mohamed (2015).
    Standard,
    /// Diagonal normal with learned mean and scale.
    Diagonal,
}

/// Fit flows to Rezende & Mohamed's four potentials and report KL / free energy.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Targets to fit (comma-separated, from 1..4).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4", value_parser = parse_target)]
    targets: Vec<Target>,
    /// Flows to fit, as family:K (planar, radial, realnvp).
    #[arg(long, value_delimiter = ',', default_value = "planar:2,planar:8,planar:32,radial:32,realnvp:8", value_parser = parse_spec)]
    flows: Vec<Spec>,
    /// Soft wall at |z1| = L for U2–U4, which otherwise have infinite mass along z1 (0 = no
    /// wall: their free energy then has no lower bound and q spreads into a flat band).
    #[arg(long, default_value_t = 4.0, value_parser = non_negative)]
    confine: f64,
    /// Initial density q₀: fixed N(0, I) (the paper's) or a learned diagonal normal.
    #[arg(long, value_enum, default_value = "standard")]
    base: BaseKind,
    /// Adam steps per fit.
    #[arg(long, default_value_t = 20_000, value_parser = positive)]
    steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = learning_rate)]
    lr: f64,
    /// Samples for the final KL / free-energy estimate.
    #[arg(long, default_value_t = 100_000, value_parser = positive)]
    eval_samples: usize,
    /// Samples histogrammed for each flow's density panel.
    #[arg(long, default_value_t = 1_000_000, value_parser = positive)]
    plot_samples: usize,
    /// Pixels per side of each density panel.
    #[arg(long, default_value_t = 160, value_parser = positive)]
    resolution: usize,
    /// Seed of the backend's random generator and of the initial parameters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the table, JSONL and PNG go.
    #[arg(long, default_value = "runs/potentials")]
    out_dir: PathBuf,
    /// Log the training loss every this many steps.
    #[arg(long, default_value_t = 2_000, value_parser = positive)]
    log_every: usize,
}

impl Args {
    /// The wall position for U2–U4, if any.
    fn wall(&self) -> Option<f64> {
        (self.confine > 0.0).then_some(self.confine)
    }
}

/// What one fit produced.
struct Outcome {
    target: Target,
    spec: Spec,
    /// `E_q[ln q + U]` in nats, with the target's own `U` (no wall).
    free_energy: f64,
    /// `KL(q‖p)` in nats against the density trained on, when it is normalizable.
    kl: Option<f64>,
    seconds: f64,
    histogram: Vec<f64>,
}

type Base<B> = DiagNormal<B>;

/// Trains `flow` by annealed reverse KL, then evaluates it without autodiff.
fn fit<T>(
    flow: Flow<Train, Base<Train>, T>,
    target: Target,
    spec: Spec,
    args: &Args,
    log_z: Option<f64>,
) -> Result<Outcome, String>
where
    T: TrainableTransform<Train>,
{
    let device = backend::device();
    let mut flow = flow;
    let mut optim = AdamConfig::new().init();
    let started = Instant::now();
    for step in 0..args.steps {
        let beta = (0.01 + step as f64 / 1e4).min(1.0);
        let (z, log_q) = flow
            .sample_with_log_prob(args.batch, None, &device)
            .map_err(|e| e.to_string())?;
        let loss = (log_q + target.confined_energy(z, args.wall()).mul_scalar(beta)).mean();
        // Read the loss back only at logging steps: a sync, not part of each step.
        if (step + 1) % args.log_every == 0 || step + 1 == args.steps {
            let value: f64 = loss.clone().into_scalar().into();
            if !value.is_finite() {
                return Err(format!(
                    "U{} {}:{} diverged at step {}: loss is {value}; try a smaller --lr",
                    target.number(),
                    spec.family(),
                    spec.k(),
                    step + 1
                ));
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

const CHUNK: usize = 20_000;

fn chunks(total: usize) -> impl Iterator<Item = usize> {
    (0..total.div_ceil(CHUNK)).map(move |i| CHUNK.min(total - i * CHUNK))
}

fn host(t: Tensor<Inner, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec()
        .expect("float data")
}

/// Monte Carlo `E_q[ln q(z) + U(z)]` over `args.eval_samples` samples, for the target's
/// own `U` and for the energy trained on (with the wall), from the same samples.
fn free_energies<T: Transform<Inner>>(
    flow: &Flow<Inner, Base<Inner>, T>,
    target: Target,
    args: &Args,
) -> Result<(f64, f64), String> {
    let device = backend::device();
    let (mut own, mut trained) = (0.0, 0.0);
    for m in chunks(args.eval_samples) {
        let (z, log_q) = flow
            .sample_with_log_prob(m, None, &device)
            .map_err(|e| e.to_string())?;
        let u_trained = target.confined_energy(z.clone(), args.wall());
        own += host((log_q.clone() + target.energy(z)).sum())[0];
        trained += host((log_q + u_trained).sum())[0];
    }
    let n = args.eval_samples as f64;
    let (own, trained) = (own / n, trained / n);
    if own.is_finite() && trained.is_finite() {
        Ok((own, trained))
    } else {
        Err(format!("free energy is not finite ({own}, {trained})"))
    }
}

/// 2-D histogram (counts) of `n` samples on `[−4, 4]²`, `res × res`, row = z₂ bin.
fn histogram<T: Transform<Inner>>(
    flow: &Flow<Inner, Base<Inner>, T>,
    n: usize,
    res: usize,
) -> Result<Vec<f64>, String> {
    let device = backend::device();
    let mut counts = vec![0.0; res * res];
    for m in chunks(n) {
        let z = flow.sample(m, None, &device).map_err(|e| e.to_string())?;
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

/// `−U` on the cells of a `res × res` grid over `[lo, hi]²`, computed in chunks.
fn neg_energy_grid(target: Target, lo: f64, hi: f64, res: usize) -> Vec<f64> {
    let device = backend::device();
    let total = res * res;
    let mut out = Vec::with_capacity(total);
    let mut start = 0;
    for m in chunks(total) {
        let pts = Window { lo, hi, res }.centres(start..start + m);
        let z = Tensor::<Inner, 2>::from_data(TensorData::new(pts, [m, 2]), &device);
        out.extend(host(target.energy(z).neg()));
        start += m;
    }
    out
}

/// `ln Z = ln ∫ exp(−U)` by the midpoint rule on a 2001² grid over `[−8, 8]²` (holds the
/// mass of `U₁`: its ring has radius 2 and width 0.4). The log-sum-exp runs on the device
/// per chunk; chunks are combined in f64.
fn log_normalizer(target: Target, wall: Option<f64>) -> f64 {
    let device = backend::device();
    let (lo, hi, res) = (-8.0, 8.0, 2001usize);
    let cell = ((hi - lo) / res as f64).powi(2);
    let mut partial = Vec::new();
    let mut start = 0;
    for m in chunks(res * res) {
        let pts = Window { lo, hi, res }.centres(start..start + m);
        let z = Tensor::<Inner, 2>::from_data(TensorData::new(pts, [m, 2]), &device);
        let neg_u = target.confined_energy(z, wall).neg().reshape([1, m]);
        partial.extend(host(logsumexp(neg_u, 1).reshape([1])));
        start += m;
    }
    let max = partial.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + partial.iter().map(|p| (p - max).exp()).sum::<f64>().ln() + cell.ln()
}

fn run_spec(
    spec: Spec,
    target: Target,
    args: &Args,
    log_z: Option<f64>,
) -> Result<Outcome, String> {
    let device = backend::device();
    let err = |e: flow_core::FlowError| e.to_string();
    let base = DiagNormalConfig::new(2)
        .init::<Train>(&device)
        .map_err(err)?;
    // A fixed N(0, I) base is the diagonal normal at its initial values, not trained.
    let base = match args.base {
        BaseKind::Standard => base.no_grad(),
        BaseKind::Diagonal => base,
    };
    match spec {
        Spec::Planar(k) => {
            let layers = PlanarConfig::new(2).init_stack(k, &device).map_err(err)?;
            fit(
                Flow::new(base, layers).map_err(err)?,
                target,
                spec,
                args,
                log_z,
            )
        }
        Spec::Radial(k) => {
            let layers = RadialConfig::new(2).init_stack(k, &device).map_err(err)?;
            fit(
                Flow::new(base, layers).map_err(err)?,
                target,
                spec,
                args,
                log_z,
            )
        }
        Spec::RealNvp(k) => {
            let layers = (0..k)
                .map(|_| {
                    let coupling = CouplingConfig::new(2, Elementwise::affine())
                        .with_hidden(32)
                        .init(&device)?;
                    Ok((coupling, Permutation::reverse(2, &device)?))
                })
                .collect::<flow_core::Result<Vec<_>>>()
                .map_err(err)?;
            fit(
                Flow::new(base, layers).map_err(err)?,
                target,
                spec,
                args,
                log_z,
            )
        }
    }
}

fn spec_label(spec: Spec) -> String {
    format!("{} K={}", spec.family(), spec.k())
}

fn write_reports(
    args: &Args,
    outcomes: &[Outcome],
    log_zs: &[(Target, f64)],
) -> Result<(), String> {
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let mut md = String::new();
    let wall = match args.wall() {
        Some(l) => format!(
            "U2–U4 do not decay along z1: exp(−U) has infinite mass and the free energy E_q[ln q + U] \
             has no lower bound (q lowers it without limit by spreading along z1 into a flat band). They \
             are trained with a soft wall ½((|z1| − {l})₊/0.2)² added to U, which leaves U unchanged in \
             the box |z1| ≤ {l} and makes it a proper density: KL is against that density. The free \
             energy column always uses the target's own U (for U2–U4 it ranks how far q spread, not fit)."
        ),
        None => "U2–U4 do not decay along z1: exp(−U) has infinite mass, so only the free energy \
                 E_q[ln q + U] is reported; it has no lower bound (q lowers it by spreading along z1)."
            .to_string(),
    };
    let _ = writeln!(
        md,
        "# Rezende & Mohamed (2015) potentials: variational inference results\n\n\
         Backend `{}`; base q0 {:?}; {} Adam steps (lr {}), batch {}, annealing β_t = min(1, 0.01 + t/10⁴), \
         seed {}; metrics from {} fresh samples. KL(q‖p) is absolute, in nats: E_q[ln q + U] + ln Z with \
         ln Z by the midpoint rule on a 2001² grid over [−8, 8]².\n\n{wall}\n",
        backend::NAME,
        args.base,
        args.steps,
        args.lr,
        args.batch,
        args.seed,
        args.eval_samples
    );
    for (t, lz) in log_zs {
        let _ = writeln!(md, "ln Z(U{}, as trained) = {lz:.5}\n", t.number());
    }
    let _ = writeln!(
        md,
        "| target | flow | K | KL(q‖p) (nats) | free energy E_q[ln q + U] (nats) | train time (s) |\n\
         |---|---|---|---|---|---|"
    );
    let mut jsonl = String::new();
    for o in outcomes {
        let kl = o.kl.map_or("–".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            md,
            "| U{} | {} | {} | {kl} | {:.4} | {:.1} |",
            o.target.number(),
            o.spec.family(),
            o.spec.k(),
            o.free_energy,
            o.seconds
        );
        let _ = writeln!(
            jsonl,
            "{{\"target\":{},\"flow\":\"{}\",\"k\":{},\"free_energy\":{},\"kl\":{},\"wall\":{},\"steps\":{},\"seconds\":{:.2},\"backend\":\"{}\"}}",
            o.target.number(),
            o.spec.family(),
            o.spec.k(),
            o.free_energy,
            o.kl.map_or("null".into(), |v| v.to_string()),
            args.wall().map_or("null".into(), |v| v.to_string()),
            args.steps,
            o.seconds,
            backend::NAME
        );
    }
    let write = |name: &str, text: &str| {
        let path = args.out_dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("results.md", &md)?;
    write("results.jsonl", &jsonl)?;

    let res = args.resolution;
    let rows: Vec<(String, Vec<Panel>)> = args
        .targets
        .iter()
        .map(|&t| {
            let mut panels = vec![Panel {
                values: neg_energy_grid(t, -4.0, 4.0, res)
                    .into_iter()
                    .map(f64::exp)
                    .collect(),
                title: "exp(-U)".into(),
            }];
            panels.extend(outcomes.iter().filter(|o| o.target == t).map(|o| Panel {
                values: o.histogram.clone(),
                title: spec_label(o.spec),
            }));
            (format!("U{}", t.number()), panels)
        })
        .collect();
    flow_plots::write_grid(&args.out_dir.join("potentials.png"), res, &rows)?;
    info!(dir = %args.out_dir.display(), "wrote results.md, results.jsonl, potentials.png");
    print!("{md}");
    Ok(())
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

fn run(args: &Args) -> Result<(), String> {
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

    #[test]
    fn bad_arguments_are_rejected() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(std::iter::once("potentials").chain(extra.iter().copied()))
        };
        assert!(parse(&[]).is_ok());
        for bad in [
            &["--flows", "planar:0"][..],
            &["--flows", "planar"],
            &["--flows", "iaf:4"],
            &["--targets", "5"],
            &["--lr", "-0.1"],
            &["--lr", "nan"],
            &["--steps", "0"],
            &["--batch", "0"],
            &["--confine", "-1"],
            &["--base", "uniform"],
        ] {
            let err = parse(bad).expect_err(&format!("{bad:?} must be rejected"));
            assert!(!err.to_string().is_empty());
        }
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
        for line in lines.lines() {
            let kl: f64 = line
                .split("\"kl\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(kl > -0.05, "KL must be ≥ 0 up to noise: {kl}");
        }
        let png = std::fs::read(dir.join("potentials.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::remove_dir_all(dir).ok();
    }
}
