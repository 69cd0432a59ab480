//! `density fit`: train a flow with Adam on mini-batches, evaluate on the validation rows,
//! keep (and save) the best model, stop early, and report the test log-likelihood.

use std::{path::PathBuf, time::Instant};

use burn::{
    backend::Autodiff,
    module::{AutodiffModule, Module, ModuleMapper, Param},
    optim::{GradientsParams, Optimizer},
    tensor::{Tensor, backend::Backend},
};
use density::data::Toy;
use flow_programs::args::{fraction, learning_rate, non_negative, positive};
use tracing::info;

use crate::{
    dataset::{Batches, Dataset, Plan, Source, parse_source},
    error::{Result, other},
    evaluate::{batch, host, mean_log_prob},
    files::write,
    model::{self, BaseKind, Design, FlowArgs, Model},
};

/// `density fit`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct FitArgs {
    /// Toy data set (8gaussians, moons, checkerboard, pinwheel, rings, 2spirals,
    /// peer-moons, mog8, cond-bimodal), `mnist` (the embedded digits, dequantized, in logit
    /// space), or a .csv / .npy file of one row per sample.
    #[arg(long, default_value = "8gaussians", value_parser = parse_source)]
    pub data: Source,
    /// Columns that condition the density (1-based, e.g. `1,3-4`): the flow fits
    /// `p(rest | these)`. Every layer's conditioner and the base read them.
    #[arg(long, value_parser = parse_context)]
    pub context_cols: Option<Context>,
    #[command(flatten)]
    pub flow: FlowArgs,
    /// Base distribution: `normal` (the conditional normal with --context-cols) or
    /// `mog:K`, a learnable mixture of K diagonal normals.
    #[arg(long, default_value = "normal")]
    pub base: BaseKind,
    /// Tables: no whitening layer. By default the flow begins (noise side) with an LU
    /// layer started at the training rows' Cholesky factor, so it starts at their
    /// maximum-likelihood Gaussian.
    #[arg(long)]
    pub no_whiten: bool,
    /// Dropout probability on the conditioners' hidden activations in training, in
    /// `[0, 1)` (default: 0.2 for a table, 0 for toys and MNIST, which are sampled afresh).
    #[arg(long, value_parser = flow_programs::args::dropout)]
    pub dropout: Option<f64>,
    /// Training steps (one mini-batch each).
    #[arg(long, default_value_t = 5000, value_parser = positive)]
    pub steps: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 512, value_parser = positive)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = learning_rate)]
    pub lr: f64,
    /// Decoupled weight decay (AdamW): every step multiplies each parameter by
    /// `1 − lr · weight_decay`.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub weight_decay: f64,
    /// Decay the learning rate to 0 along a cosine over the run (as in the NSF paper).
    #[arg(long)]
    pub cosine: bool,
    /// Evaluate on the validation set every this many steps (default: every epoch for a
    /// table, at most 250 steps; 250 for toys and MNIST).
    #[arg(long, value_parser = positive)]
    pub eval_every: Option<usize>,
    /// Stop after this many evaluations without a better validation loss, 0 = never
    /// (default: 30 for a table, 10 for toys and MNIST).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Tables: fraction of the rows held out for validation (early stopping). Another
    /// 10 % is the test set unless --test-file gives one.
    #[arg(long, default_value_t = 0.1, value_parser = fraction)]
    pub valid_fraction: f64,
    /// Tables: the test rows, from a file of their own (same columns); then every row of
    /// --data is for training and validation.
    #[arg(long)]
    pub test_file: Option<PathBuf>,
    /// Validation and test points drawn for toy data.
    #[arg(long, default_value_t = 10_000, value_parser = positive)]
    pub n_test: usize,
    /// Seed of the data, the split and the initial parameters.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (default runs/density/<data>-<flow>).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Samples histogrammed for the PNG (2-D data).
    #[arg(long, default_value_t = 200_000, value_parser = positive)]
    pub plot_samples: usize,
    /// Pixels per side of each PNG panel.
    #[arg(long, default_value_t = 200, value_parser = positive)]
    pub resolution: usize,
}

/// Context columns, 0-based (a type of its own: clap would read `Vec<usize>` as a
/// repeated flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Context(pub Vec<usize>);

fn parse_context(s: &str) -> std::result::Result<Context, String> {
    density::data::parse_columns(s).map(Context)
}

/// What a fit reports.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub data: String,
    pub flow: String,
    pub base: String,
    /// Context columns (1-based), for a conditional density.
    pub context: Vec<usize>,
    pub dim: usize,
    pub params: usize,
    pub steps_run: usize,
    pub best_step: usize,
    pub train_seconds: f64,
    pub steps_per_second: f64,
    /// Mean test log-likelihood per row in the data's original units (nats): `ln p(x)`, or
    /// `ln p(y | c)` for a conditional density.
    pub test_log_likelihood: f64,
    /// The true distribution's mean log-density on the same test points, where known.
    pub exact_test_log_likelihood: Option<f64>,
    /// The true distribution's entropy, where known in closed form.
    pub entropy: Option<f64>,
    /// MNIST: test bits per dimension of the pixel density on `[0, 256)^784`.
    pub bits_per_dim: Option<f64>,
    pub backend: &'static str,
}

/// Multiplies every parameter by a factor (decoupled weight decay), keeping it trainable.
struct Decay(f64);

impl<B: Backend> ModuleMapper<B> for Decay {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let factor = self.0;
        param.map(|t| {
            let trainable = t.is_require_grad();
            let t = t.mul_scalar(factor).detach();
            if trainable { t.require_grad() } else { t }
        })
    }
}

/// Fits the flow of `args` on `device`; writes the best model, metrics, summary and (2-D)
/// PNGs.
pub fn fit<B: Backend>(
    args: &FitArgs,
    backend: &'static str,
    device: &B::Device,
) -> Result<Summary> {
    let device = device.clone();
    if args.flow.batchnorm && args.batch < 2 {
        return Err(other(
            "--batchnorm needs --batch 2 or more: a batch of one row has no variance",
        ));
    }
    let context = args.context_cols.clone().map(|c| c.0).unwrap_or_default();
    let data = Dataset::new(&Plan {
        source: &args.data,
        test_file: args.test_file.as_deref(),
        valid_fraction: args.valid_fraction,
        context: &context,
        n_test: args.n_test,
        seed: args.seed,
    })?;
    let layout = data.layout.clone();
    let dim = data.dim();
    let mut flow = args.flow.clone();
    flow.dropout = args
        .dropout
        .unwrap_or(if data.train.is_some() { 0.2 } else { 0.0 });
    let flow = &flow;
    let start = if args.no_whiten {
        None
    } else {
        data.start(args.base == BaseKind::Normal)?
    };
    let design = Design {
        layout: layout.clone(),
        base: args.base,
        regression: start.as_ref().and_then(|s| s.regression.clone()),
        whitening: start.map(|s| (s.a, s.shift)),
    };
    <Autodiff<B> as Backend>::seed(&device, args.seed);
    let mut model: Model<Autodiff<B>> = model::build(flow, &design, args.seed, &device)?;
    let params = model.num_params();
    let out = args.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from("runs/density").join(format!("{}-{}", data.name, args.flow.label()))
    });
    let _lock = flow_programs::files::lock_dir(&out).map_err(other)?;
    flow_programs::files::remove_partial_files(&out);
    info!(
        data = %data.name,
        dim,
        context = ?layout.context().iter().map(|c| c + 1).collect::<Vec<_>>(),
        flow = %flow.describe(),
        base = %args.base,
        whitened = design.whitening.is_some(),
        params,
        out = %out.display(),
        "fitting"
    );

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
    let train_rows = data.train.as_ref().map(|t| t.rows());
    // Tables: evaluate every epoch (a small table overfits within a few hundred steps).
    let eval_every = args
        .eval_every
        .unwrap_or_else(|| train_rows.map_or(250, |n| n.div_ceil(args.batch).min(250)));
    let patience = args
        .patience
        .unwrap_or(if train_rows.is_some() { 30 } else { 10 });
    // Step 0 evaluates the initial model: with the whitening layer, the data's Gaussian,
    // which training must beat on validation to replace.
    for step in 0..=args.steps {
        if flow_programs::interrupt::requested() {
            interrupted = Some(step.saturating_sub(1));
            break;
        }
        if step > 0 {
            let rows = batches.next(args.batch);
            let (y, c) = batch::<Autodiff<B>>(&rows, &layout, 0..rows.rows(), &device);
            let loss = model.log_prob(y, c.as_ref())?.mean().neg();
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
            if args.weight_decay > 0.0 {
                model = model.map(&mut Decay(1.0 - lr * args.weight_decay));
            }
            steps_run = step;
        }
        if step % eval_every == 0 || step == args.steps {
            // One read of the losses since the last evaluation (no per-step sync).
            let train_nll = if pending.is_empty() {
                None
            } else {
                let losses = host(Tensor::cat(std::mem::take(&mut pending), 0).inner());
                Some(losses.iter().sum::<f64>() / losses.len() as f64)
            };
            let valid_model = model.valid();
            let valid_nll = -mean_log_prob(&valid_model, &data.valid, &layout)?;
            if !valid_nll.is_finite() || !train_nll.is_none_or(f64::is_finite) {
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
            let train_cell = train_nll.map_or(String::new(), |v| v.to_string());
            curve.push_str(&format!("{step},{train_cell},{valid_nll}\n"));
            info!(
                step,
                of = args.steps,
                train_nll = %train_nll.map_or("–".into(), |v| format!("{v:.4}")),
                valid_nll = format!("{valid_nll:.4}"),
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "progress"
            );
            if best.as_ref().is_none_or(|b| valid_nll < b.0) {
                // Saved as soon as it is the best: a kill or Ctrl-C loses no more.
                model::save(
                    &valid_model,
                    flow,
                    &design,
                    args.seed,
                    &data.standardizer,
                    &out,
                )?;
                write(&out.join("metrics.csv"), curve.as_bytes())?;
                best = Some((valid_nll, step, valid_model));
                since_best = 0;
            } else {
                since_best += 1;
                if patience > 0 && since_best >= patience {
                    info!(
                        step,
                        "early stop: no better validation loss in {patience} evaluations"
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
    let modelled = layout.modelled();
    let test_ll =
        mean_log_prob(&best_model, &data.test, &layout)? + data.standardizer.log_det_of(&modelled);
    let toy = data.toy;
    let exact = toy.and_then(|t| {
        if layout.context().is_empty() {
            t.exact_log_prob(&data.test_raw)
        } else {
            t.exact_conditional_log_prob(&data.test_raw, layout.context())
        }
    });
    let summary = Summary {
        data: data.name.clone(),
        flow: flow.describe(),
        base: args.base.to_string(),
        context: layout.context().iter().map(|c| c + 1).collect(),
        dim,
        params,
        steps_run,
        best_step,
        train_seconds,
        steps_per_second: steps_run as f64 / train_seconds,
        test_log_likelihood: test_ll,
        exact_test_log_likelihood: exact,
        entropy: toy
            .filter(|_| layout.context().is_empty())
            .and_then(Toy::entropy),
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
    let look = crate::draw::Look {
        resolution: args.resolution,
        samples: args.plot_samples,
    };
    if layout.columns() == 2 && layout.context().is_empty() {
        crate::draw::joint(&best_model, &data, &look, &out.join("density.png"))?;
    } else if layout.columns() == 2 {
        crate::draw::conditional(&best_model, &data, &look, &out)?;
    }
    Ok(summary)
}
