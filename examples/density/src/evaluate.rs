//! Using a model: its mean log-likelihood on a table (`density eval` and the fit's
//! reports) and samples written to a file (`density sample`).

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use density::data::{self, Layout, Table};

use crate::{
    dataset::read_table,
    error::{Result, other},
    files::write,
    model::{self, Model},
};

/// Rows per device call when evaluating or sampling.
pub const CHUNK: usize = 10_000;

/// `t` as a `[rows, dim]` tensor.
pub fn tensor<B: Backend>(t: &Table, device: &B::Device) -> Tensor<B, 2> {
    let values: Vec<f32> = t.values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, [t.rows(), t.dim]), device)
}

/// A tensor's values on the host.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec()
        .expect("float data")
}

/// `(y, c)` tensors of the rows `range` of `t` (every column of the data) under `layout`.
pub fn batch<B: Backend>(
    t: &Table,
    layout: &Layout,
    range: std::ops::Range<usize>,
    device: &B::Device,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    let part = Table {
        values: t.values[range.start * t.dim..range.end * t.dim].to_vec(),
        dim: t.dim,
    };
    let (y, c) = layout.split(&part);
    (tensor(&y, device), c.map(|c| tensor(&c, device)))
}

/// The device `model`'s parameters live on.
pub fn device_of<B: Backend>(model: &Model<B>) -> B::Device {
    burn::module::Module::devices(model)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Mean `ln p(y | c)` of the rows of `t` (standardized units, every column).
pub fn mean_log_prob<B: Backend>(model: &Model<B>, t: &Table, layout: &Layout) -> Result<f64> {
    let device = device_of(model);
    let mut total = 0.0;
    for start in (0..t.rows()).step_by(CHUNK) {
        let end = t.rows().min(start + CHUNK);
        let (y, c) = batch::<B>(t, layout, start..end, &device);
        total += host(model.log_prob(y, c.as_ref())?.sum())[0];
    }
    Ok(total / t.rows() as f64)
}

/// `density eval`'s arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A fitted model: its directory (model.json + model.mpk) or an exported .safetensors
    /// file.
    #[arg(long)]
    pub model: PathBuf,
    /// A .csv or .npy file with the columns the model was fitted to (context columns
    /// included, in the same places).
    #[arg(long)]
    pub data: PathBuf,
}

/// Mean log-likelihood per row of `args.data` in its units: `ln p(x)`, or `ln p(y | c)`
/// for a conditional model.
pub fn eval<B: Backend>(args: &EvalArgs, device: &B::Device) -> Result<f64> {
    let device = device.clone();
    let loaded = model::load::<B>(&args.model, &device)?;
    let table = read_table(&args.data)?;
    let layout = &loaded.layout;
    if table.dim != layout.columns() {
        let context = if layout.context().is_empty() {
            String::new()
        } else {
            format!(" ({} of them context)", layout.context().len())
        };
        return Err(other(format!(
            "{} has {} columns, the model in {} was fitted to {}{context}",
            args.data.display(),
            table.dim,
            args.model.display(),
            layout.columns()
        )));
    }
    let st = &loaded.standardizer;
    Ok(
        mean_log_prob(&loaded.model, &st.apply(&table), layout)?
            + st.log_det_of(&layout.modelled()),
    )
}

/// `density sample`'s arguments.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// A fitted model: its directory (model.json + model.mpk) or an exported .safetensors
    /// file.
    #[arg(long)]
    pub model: PathBuf,
    /// Samples to draw (per context row, for a conditional model).
    #[arg(long, default_value_t = 1000, value_parser = flow_programs::args::positive)]
    pub n: usize,
    /// A conditional model's contexts: a .csv or .npy file with one row per context and
    /// the model's context columns (in their order in the training data).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Output file, .csv or .npy: one row per sample in the training data's columns
    /// (context columns hold the context the sample was drawn for).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the backend's random numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Draws the samples of `args` and writes them; returns the number of rows written.
pub fn sample<B: Backend>(args: &SampleArgs, device: &B::Device) -> Result<usize> {
    let device = device.clone();
    let format = match args.out.extension().and_then(|e| e.to_str()) {
        Some(e @ ("csv" | "npy")) => e.to_string(),
        _ => {
            return Err(other(format!(
                "--out {}: write a .csv or .npy file",
                args.out.display()
            )));
        }
    };
    let loaded = model::load::<B>(&args.model, &device)?;
    B::seed(&device, args.seed);
    let (layout, st) = (&loaded.layout, &loaded.standardizer);
    let contexts = contexts(args, layout)?;
    let modelled = layout.modelled();
    let mut y_all = Vec::new();
    let mut c_all = Vec::new();
    let rows = contexts.as_ref().map_or(1, Table::rows) * args.n;
    for start in (0..rows).step_by(CHUNK) {
        let end = rows.min(start + CHUNK);
        let c = contexts.as_ref().map(|c| {
            let picked: Vec<usize> = (start..end).map(|r| r / args.n).collect();
            let values = picked
                .iter()
                .flat_map(|&r| c.values[r * c.dim..(r + 1) * c.dim].iter().copied())
                .collect();
            Table { values, dim: c.dim }
        });
        let c_std = c.as_ref().map(|c| st.apply_columns(c, layout.context()));
        let c_tensor = c_std.as_ref().map(|c| tensor::<B>(c, &device));
        let y = loaded
            .model
            .sample(end - start, c_tensor.as_ref(), &device)?;
        let y = Table {
            values: host(y),
            dim: modelled.len(),
        };
        y_all.extend(st.restore(&y, &modelled).values);
        if let Some(c) = c {
            c_all.extend(c.values);
        }
    }
    let y = Table {
        values: y_all,
        dim: modelled.len(),
    };
    let c = contexts.map(|c| Table {
        values: c_all,
        dim: c.dim,
    });
    let out = layout.join(&y, c.as_ref());
    if let Some(i) = out.values.iter().position(|v| !v.is_finite()) {
        return Err(other(format!(
            "sample {} is not finite: the model is broken (refit it)",
            i / out.dim + 1
        )));
    }
    let bytes = if format == "npy" {
        data::write_npy(&out)
    } else {
        let names: Vec<String> = (1..=out.dim).map(|j| format!("col{j}")).collect();
        data::write_csv(&out, &names).into_bytes()
    };
    write(&args.out, &bytes)?;
    Ok(out.rows())
}

/// The contexts of a conditional model's samples (original units), checked against the
/// model; `None` for an unconditional model.
fn contexts(args: &SampleArgs, layout: &Layout) -> Result<Option<Table>> {
    let width = layout.context().len();
    let cols: Vec<String> = layout
        .context()
        .iter()
        .map(|c| (c + 1).to_string())
        .collect();
    match (&args.context, width) {
        (None, 0) => Ok(None),
        (Some(path), 0) => Err(other(format!(
            "the model in {} is not conditional: it takes no --context ({})",
            args.model.display(),
            path.display()
        ))),
        (None, _) => Err(other(format!(
            "the model in {} is conditional on column(s) {} of its data: give --context \
             FILE with {width} column(s) per row",
            args.model.display(),
            cols.join(",")
        ))),
        (Some(path), _) => {
            let table = read_table(path)?;
            if table.dim != width {
                return Err(other(format!(
                    "{} has {} columns, the model in {} takes a context of {width} \
                     (column(s) {} of its data)",
                    path.display(),
                    table.dim,
                    args.model.display(),
                    cols.join(",")
                )));
            }
            Ok(Some(table))
        }
    }
}

/// The formats `density export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One safetensors file: tensors under their module paths, the description in the
    /// metadata.
    Safetensors,
}

/// `density export`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Directory of a fitted model (model.json + model.mpk).
    #[arg(long)]
    pub model: PathBuf,
    /// The format to write.
    #[arg(long, value_enum, default_value_t = Format::Safetensors)]
    pub format: Format,
    /// Output file (`.safetensors`).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes the model of `args` in its format; returns the number of tensors written.
pub fn export<B: Backend>(args: &ExportArgs, device: &B::Device) -> Result<usize> {
    match args.format {
        Format::Safetensors => {
            if args.out.extension().is_none_or(|e| e != "safetensors") {
                return Err(other(format!(
                    "--out {}: name the file .safetensors (eval and sample read a model from \
                     a file by that extension)",
                    args.out.display()
                )));
            }
            model::export_safetensors::<B>(&args.model, &args.out, device)
        }
    }
}
