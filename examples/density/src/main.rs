//! Density estimation with normalizing flows: fit a stack of flow-core layers to 2-D toy
//! data (FFJORD's generators), the peer benchmarks' data sets, or your own table (CSV or
//! NPY), with a train/validation/test split, standardization and early stopping. Reports
//! the test log-likelihood and, for 2-D data, writes a PNG of the data, the learned
//! density and samples.
//!
//! ```text
//! cargo run --release -p density -- --data 8gaussians --flow nsf
//! cargo run --release -p density -- --data my_table.csv --flow maf --layers 5 --batchnorm
//! cargo run --release -p density -- eval --model runs/density/8gaussians-nsf --data test.csv
//! ```

#[cfg(not(any(feature = "ndarray", feature = "flex", feature = "wgpu")))]
compile_error!("enable a backend feature: `ndarray` (default), `flex` or `wgpu`");

mod args;
mod error;
mod files;
mod model;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module},
    optim::{GradientsParams, Optimizer},
    tensor::{Tensor, TensorData, backend::Backend},
};
use clap::{Parser, Subcommand};
use flow_plots::{Panel, Window};
use flow_programs::{Choice, Program};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use tracing::info;

use args::{learning_rate, positive};
use density::data::{self, Standardizer, Table, Toy};
use error::{Result, other};
use files::write;
use model::{FlowArgs, Model};

/// Density estimation with normalizing flows.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fit: FitArgs,
    /// The backend to run on: one this build has (`ndarray`, `flex`, `wgpu`, `cuda`, by
    /// cargo feature); default the build's preferred one (GPU over CPU, flex over ndarray).
    #[arg(long, global = true, default_value_t = Choice::default())]
    backend: Choice,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fit a flow (the default when no subcommand is given).
    Fit(Box<FitArgs>),
    /// Evaluate a saved model on a CSV or NPY file: mean log-likelihood per row.
    Eval(EvalArgs),
}

/// Where the data comes from: a toy name, the embedded MNIST digits, or a `.csv` / `.npy`
/// file.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Toy(Toy),
    /// The 10,000 embedded MNIST digits in logit space: the first 8,000 train, the next
    /// 1,000 validate, the last 1,000 (the peer's validation set) test.
    Mnist,
    File(PathBuf),
}

fn parse_source(s: &str) -> std::result::Result<Source, String> {
    if let Ok(toy) = <Toy as clap::ValueEnum>::from_str(s, true) {
        return Ok(Source::Toy(toy));
    }
    if s == "mnist" {
        return Ok(Source::Mnist);
    }
    let path = PathBuf::from(s);
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv" | "npy") => Ok(Source::File(path)),
        _ => Err(format!(
            "{s:?} is neither a toy data set (8gaussians, moons, checkerboard, pinwheel, rings, \
             2spirals, peer-moons, mog8), mnist, nor a .csv or .npy file"
        )),
    }
}

#[derive(clap::Args, Debug, Clone)]
struct FitArgs {
    /// Toy data set (8gaussians, moons, checkerboard, pinwheel, rings, 2spirals,
    /// peer-moons, mog8), `mnist` (the embedded digits, dequantized, in logit space), or a
    /// .csv / .npy file of one row per sample.
    #[arg(long, default_value = "8gaussians", value_parser = parse_source)]
    data: Source,
    #[command(flatten)]
    flow: FlowArgs,
    /// Training steps (one mini-batch each).
    #[arg(long, default_value_t = 5000, value_parser = positive)]
    steps: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 512, value_parser = positive)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = learning_rate)]
    lr: f64,
    /// Decay the learning rate to 0 along a cosine over the run (as in the NSF paper).
    #[arg(long)]
    cosine: bool,
    /// Evaluate on the validation set every this many steps.
    #[arg(long, default_value_t = 250, value_parser = positive)]
    eval_every: usize,
    /// Stop after this many evaluations without a better validation loss (0 = never).
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Validation and test points drawn for toy data (files split 80/10/10).
    #[arg(long, default_value_t = 10_000, value_parser = positive)]
    n_test: usize,
    /// Seed of the data, the split and the initial parameters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (default runs/density/<data>-<flow>).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Samples histogrammed for the PNG (2-D data).
    #[arg(long, default_value_t = 200_000, value_parser = positive)]
    plot_samples: usize,
    /// Pixels per side of each PNG panel.
    #[arg(long, default_value_t = 200, value_parser = positive)]
    resolution: usize,
}

#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// Directory of a fitted model (model.json + model.mpk).
    #[arg(long)]
    model: PathBuf,
    /// A .csv or .npy file with the model's number of columns.
    #[arg(long)]
    data: PathBuf,
}

/// The data of one run, standardized: train (or a sampler for toys), validation, test.
struct Dataset {
    name: String,
    toy: Option<Toy>,
    train: Option<Table>,
    /// MNIST training digits (pixels, 784 per row): dequantized afresh for every batch.
    mnist_train: Option<Vec<u8>>,
    /// MNIST: the test rows' `ln|det ∂y/∂pixel|`, for bits per dimension.
    mnist_test_log_det: Option<Vec<f64>>,
    valid: Table,
    test: Table,
    /// Test set in the original units (for the exact log-density of toys).
    test_raw: Table,
    standardizer: Standardizer,
}

fn read_table(path: &Path) -> Result<Table> {
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => data::read_npy(path)?,
        _ => data::read_csv(path)?,
    })
}

/// Refuses training rows with a constant column (a point mass: the log-likelihood grows
/// without bound, so any number reported would be meaningless), and warns when most rows
/// repeat others (a flow can pile density onto repeated points).
fn check_degenerate(train: &Table, path: &Path) -> Result<()> {
    let d = train.dim;
    let rows: Vec<&[f64]> = train.values.chunks_exact(d).collect();
    if let Some(j) = (0..d).find(|&j| rows.iter().all(|r| r[j] == rows[0][j])) {
        return Err(other(format!(
            "{}: column {} is constant ({}) in all {} training rows: its density is a point \
             mass and the log-likelihood is unbounded; drop the column",
            path.display(),
            j + 1,
            rows[0][j],
            rows.len()
        )));
    }
    let mut distinct: Vec<Vec<u64>> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.to_bits()).collect())
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() * 2 < rows.len() {
        tracing::warn!(
            "{}: only {} of the {} training rows are distinct: a flow can put unbounded \
             density on repeated points (add noise, or deduplicate)",
            path.display(),
            distinct.len(),
            rows.len()
        );
    }
    Ok(())
}

impl Dataset {
    fn new(source: &Source, n_test: usize, seed: u64) -> Result<Self> {
        match source {
            Source::Toy(toy) => {
                let valid = toy.sample(n_test, &mut StdRng::seed_from_u64(seed ^ 0x5EED_0001));
                let test = toy.sample(n_test, &mut StdRng::seed_from_u64(seed ^ 0x5EED_0002));
                Ok(Self {
                    name: <Toy as clap::ValueEnum>::to_possible_value(toy)
                        .map_or_else(|| format!("{toy:?}"), |v| v.get_name().to_string()),
                    toy: Some(*toy),
                    train: None,
                    mnist_train: None,
                    mnist_test_log_det: None,
                    test_raw: test.clone(),
                    standardizer: Standardizer::identity(toy.dim()),
                    valid,
                    test,
                })
            }
            Source::File(path) => {
                let table = read_table(path)?;
                let [train, valid, test] = data::split(&table, seed, &path.display().to_string())?;
                check_degenerate(&train, path)?;
                let standardizer = Standardizer::fit(&train);
                Ok(Self {
                    name: path
                        .file_stem()
                        .map_or("data".into(), |s| s.to_string_lossy().into_owned()),
                    toy: None,
                    mnist_train: None,
                    mnist_test_log_det: None,
                    train: Some(standardizer.apply(&train)),
                    valid: standardizer.apply(&valid),
                    test_raw: test.clone(),
                    test: standardizer.apply(&test),
                    standardizer,
                })
            }
            Source::Mnist => {
                let images = train_vae::data::embedded_images().map_err(other)?;
                let d = images.dim();
                let part =
                    |r: std::ops::Range<usize>| images.pixels[r.start * d..r.end * d].to_vec();
                // Fixed dequantization noise for validation and test (seeded).
                let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_0003);
                let (valid, _) = data::mnist_logit(&part(8000..9000), d, &mut rng);
                let (test, test_log_det) = data::mnist_logit(&part(9000..10_000), d, &mut rng);
                Ok(Self {
                    name: "mnist".into(),
                    toy: None,
                    train: None,
                    mnist_train: Some(part(0..8000)),
                    mnist_test_log_det: Some(test_log_det),
                    test_raw: test.clone(),
                    standardizer: Standardizer::identity(d),
                    valid,
                    test,
                })
            }
        }
    }

    fn dim(&self) -> usize {
        self.valid.dim
    }
}

/// Fresh mini-batches: new toy samples every step, or a reshuffled pass over the table.
struct Batches<'a> {
    data: &'a Dataset,
    rng: StdRng,
    order: Vec<usize>,
    at: usize,
}

impl<'a> Batches<'a> {
    fn new(data: &'a Dataset, seed: u64) -> Self {
        Self {
            data,
            rng: StdRng::seed_from_u64(seed),
            order: Vec::new(),
            at: 0,
        }
    }

    fn next(&mut self, size: usize) -> Table {
        if let Some(toy) = self.data.toy {
            return toy.sample(size, &mut self.rng);
        }
        if let Some(pixels) = &self.data.mnist_train {
            let d = self.data.dim();
            let rows = self.take(pixels.len() / d, size);
            let batch: Vec<u8> = rows
                .iter()
                .flat_map(|&r| pixels[r * d..(r + 1) * d].iter().copied())
                .collect();
            return data::mnist_logit(&batch, d, &mut self.rng).0;
        }
        let train = self
            .data
            .train
            .as_ref()
            .expect("file data has a train split");
        let d = train.dim;
        let values = self
            .take(train.rows(), size)
            .iter()
            .flat_map(|&r| train.values[r * d..(r + 1) * d].iter().copied())
            .collect();
        Table { values, dim: d }
    }

    /// The next `size` row indices of a reshuffled pass over `rows` rows.
    fn take(&mut self, rows: usize, size: usize) -> Vec<usize> {
        (0..size.min(rows))
            .map(|_| {
                if self.at == self.order.len() {
                    self.order = (0..rows).collect();
                    self.order.shuffle(&mut self.rng);
                    self.at = 0;
                }
                self.at += 1;
                self.order[self.at - 1]
            })
            .collect()
    }
}

fn tensor<B: Backend>(t: &Table, device: &B::Device) -> Tensor<B, 2> {
    let values: Vec<f32> = t.values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, [t.rows(), t.dim]), device)
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec()
        .expect("float data")
}

const CHUNK: usize = 10_000;

/// Mean log-density of the rows of `t` (in the model's standardized units).
fn mean_log_prob<B: Backend>(model: &Model<B>, t: &Table) -> Result<f64> {
    let device = Default::default();
    let mut total = 0.0;
    for start in (0..t.rows()).step_by(CHUNK) {
        let rows = CHUNK.min(t.rows() - start);
        let part = Table {
            values: t.values[start * t.dim..(start + rows) * t.dim].to_vec(),
            dim: t.dim,
        };
        total += host(model.log_prob(tensor(&part, &device), None)?.sum())[0];
    }
    Ok(total / t.rows() as f64)
}

/// What a fit reports.
#[derive(Debug, serde::Serialize)]
struct Summary {
    data: String,
    flow: String,
    dim: usize,
    params: usize,
    steps_run: usize,
    best_step: usize,
    train_seconds: f64,
    steps_per_second: f64,
    /// Mean test log-likelihood per row in the data's original units (nats).
    test_log_likelihood: f64,
    /// The true distribution's mean log-density on the same test points, where known.
    exact_test_log_likelihood: Option<f64>,
    /// The true distribution's entropy, where known in closed form.
    entropy: Option<f64>,
    /// MNIST: test bits per dimension of the pixel density on `[0, 256)^784`.
    bits_per_dim: Option<f64>,
    backend: &'static str,
}

fn fit<B: Backend>(args: &FitArgs, backend: &'static str) -> Result<Summary> {
    let device = Default::default();
    if args.flow.batchnorm && args.batch < 2 {
        return Err(other(
            "--batchnorm needs --batch 2 or more: a batch of one row has no variance",
        ));
    }
    let data = Dataset::new(&args.data, args.n_test, args.seed)?;
    let dim = data.dim();
    <Autodiff<B> as Backend>::seed(&device, args.seed);
    let mut model: Model<Autodiff<B>> = model::build(&args.flow, dim, args.seed, &device)?;
    let params = model.num_params();
    let out = args.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from("runs/density").join(format!("{}-{}", data.name, args.flow.label()))
    });
    let _lock = flow_programs::files::lock_dir(&out).map_err(other)?;
    flow_programs::files::remove_partial_files(&out);
    info!(data = %data.name, dim, flow = %args.flow.describe(), params, out = %out.display(), "fitting");

    let mut optim = flow_programs::FusedAdamConfig::new()
        .with_epsilon(1e-5)
        .init();
    let mut batches = Batches::new(&data, args.seed.wrapping_add(1));
    let mut best: Option<(f64, usize, Model<B>)> = None;
    let mut since_best = 0;
    let mut curve = String::from("step,train_nll,valid_nll\n");
    let mut pending: Vec<Tensor<Autodiff<B>, 1>> = Vec::new();
    let started = Instant::now();
    let mut steps_run = 0;
    let mut interrupted = None;
    for step in 1..=args.steps {
        if flow_programs::interrupt::requested() {
            interrupted = Some(step - 1);
            break;
        }
        let x = tensor::<Autodiff<B>>(&batches.next(args.batch), &device);
        let loss = model.log_prob(x, None)?.mean().neg();
        pending.push(loss.clone().detach());
        let lr = if args.cosine {
            args.lr
                * 0.5
                * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / args.steps as f64).cos())
        } else {
            args.lr
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        steps_run = step;
        if step % args.eval_every == 0 || step == args.steps {
            // One read of the losses since the last evaluation (no per-step sync).
            let losses = host(Tensor::cat(std::mem::take(&mut pending), 0).inner());
            let train_nll = losses.iter().sum::<f64>() / losses.len() as f64;
            let valid_model = model.valid();
            let valid_nll = -mean_log_prob(&valid_model, &data.valid)?;
            if !valid_nll.is_finite() || !train_nll.is_finite() {
                let kept = best.as_ref().map_or(String::new(), |b| {
                    format!("; keeping the best model, from step {}", b.1)
                });
                if best.is_none() {
                    return Err(other(format!(
                        "training diverged at step {step} (validation NLL {valid_nll}); try a smaller --lr"
                    )));
                }
                tracing::warn!(
                    "training diverged at step {step} (validation NLL {valid_nll}){kept}"
                );
                break;
            }
            curve.push_str(&format!("{step},{train_nll},{valid_nll}\n"));
            info!(
                step,
                of = args.steps,
                train_nll = format!("{train_nll:.4}"),
                valid_nll = format!("{valid_nll:.4}"),
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "progress"
            );
            if best.as_ref().is_none_or(|b| valid_nll < b.0) {
                // Saved as soon as it is the best: a kill or Ctrl-C loses no more.
                model::save(&valid_model, &args.flow, &data.standardizer, &out)?;
                write(&out.join("metrics.csv"), curve.as_bytes())?;
                best = Some((valid_nll, step, valid_model));
                since_best = 0;
            } else {
                since_best += 1;
                if args.patience > 0 && since_best >= args.patience {
                    info!(
                        step,
                        "early stop: no better validation loss in {} evaluations", args.patience
                    );
                    break;
                }
            }
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();
    write(&out.join("metrics.csv"), curve.as_bytes())?;
    if let Some(step) = interrupted {
        return Err(other(match &best {
            Some(b) => format!(
                "interrupted (Ctrl-C) after step {step}: the best model so far (step {}, \
                 validation NLL {:.4}) is saved in {}",
                b.1,
                b.0,
                out.display()
            ),
            None => format!(
                "interrupted (Ctrl-C) after step {step}, before the first evaluation: nothing \
                 was saved"
            ),
        }));
    }
    // The loop ends with an evaluation, or breaks after one: there is a best model.
    let Some((_, best_step, best_model)) = best else {
        return Err(other("no evaluation ran"));
    };
    let test_ll = mean_log_prob(&best_model, &data.test)? + data.standardizer.log_det();
    let toy = data.toy;
    let summary = Summary {
        data: data.name.clone(),
        flow: args.flow.describe(),
        dim,
        params,
        steps_run,
        best_step,
        train_seconds,
        steps_per_second: steps_run as f64 / train_seconds,
        test_log_likelihood: test_ll,
        exact_test_log_likelihood: toy.and_then(|t| t.exact_log_prob(&data.test_raw)),
        entropy: toy.and_then(Toy::entropy),
        bits_per_dim: data.mnist_test_log_det.as_ref().map(|ld| {
            let mean_ld = ld.iter().sum::<f64>() / ld.len() as f64;
            -(test_ll + mean_ld) / (dim as f64 * std::f64::consts::LN_2)
        }),
        backend,
    };
    write(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .map_err(other)?
            .as_bytes(),
    )?;
    if dim == 2 {
        draw(&best_model, &data, args, &out.join("density.png"))?;
    }
    Ok(summary)
}

/// Data histogram, learned density and model samples, on a square window that holds the
/// test data.
fn draw<B: Backend>(model: &Model<B>, data: &Dataset, args: &FitArgs, path: &Path) -> Result<()> {
    let device = Default::default();
    let mut sorted: Vec<f64> = data.test.values.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let (lo, hi) = (q(0.002), q(0.998));
    let pad = 0.1 * (hi - lo);
    let window = Window {
        lo: lo - pad,
        hi: hi + pad,
        res: args.resolution,
    };
    let cells = window.res * window.res;
    let mut data_hist = vec![0.0; cells];
    window.histogram(&data.test.values, &mut data_hist);
    let mut density = Vec::with_capacity(cells);
    for start in (0..cells).step_by(CHUNK) {
        let m = CHUNK.min(cells - start);
        let pts = window.centres(start..start + m);
        let x = Tensor::<B, 2>::from_data(TensorData::new(pts, [m, 2]), &device);
        density.extend(host(model.log_prob(x, None)?.exp()));
    }
    let mut samples = vec![0.0; cells];
    for start in (0..args.plot_samples).step_by(CHUNK) {
        let m = CHUNK.min(args.plot_samples - start);
        let z = model.sample(m, None, &device)?;
        let z: Vec<f64> = z
            .into_data()
            .convert::<f64>()
            .into_vec()
            .expect("float data");
        window.histogram(&z, &mut samples);
    }
    let panels = vec![
        Panel {
            values: data_hist,
            title: format!("{} (test data)", data.name),
        },
        Panel {
            values: density,
            title: "learned density".into(),
        },
        Panel {
            values: samples,
            title: "samples".into(),
        },
    ];
    let tmp = path.with_extension("tmp.png");
    flow_plots::write_grid(&tmp, window.res, &[(String::new(), panels)]).map_err(other)?;
    std::fs::rename(&tmp, path).map_err(|e| other(format!("{}: {e}", path.display())))
}

fn eval<B: Backend>(args: &EvalArgs) -> Result<f64> {
    let device = Default::default();
    let (model, standardizer) = model::load::<B>(&args.model, &device)?;
    let table = read_table(&args.data)?;
    let dim = model.dim();
    if table.dim != dim {
        return Err(other(format!(
            "{} has {} columns, the model in {} was fitted to {dim}",
            args.data.display(),
            table.dim,
            args.model.display()
        )));
    }
    Ok(mean_log_prob(&model, &standardizer.apply(&table))? + standardizer.log_det())
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
        match &self.command {
            Some(Command::Eval(e)) => eval::<B>(e).map(|ll| {
                println!(
                    "mean log-likelihood {ll:.4} nats per row ({})",
                    e.data.display()
                );
            }),
            // On the CPU backends on one of rayon's threads while the others poll for work
            // between the step's parallel regions instead of sleeping.
            Some(Command::Fit(f)) => {
                flow_programs::with_hot_workers_on::<B, _>(|| fit::<B>(f, backend)).map(report)
            }
            None => flow_programs::with_hot_workers_on::<B, _>(|| fit::<B>(&self.fit, backend))
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
        s.flow,
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
