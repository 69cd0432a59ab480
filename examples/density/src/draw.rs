//! The PNGs of a 2-column fit: the joint density (data, learned density, samples), or a
//! conditional density `p(y | c)` as an image over `(c, y)` and as curves for a few `c`,
//! beside the truth where it is known.

use std::path::Path;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use flow_plots::{Curves, Panel, Window};

use crate::{
    dataset::Dataset,
    error::{Result, other},
    evaluate::{CHUNK, host},
    model::Model,
};

/// How the pictures look.
pub struct Look {
    /// Pixels per side of a panel.
    pub resolution: usize,
    /// Samples histogrammed for a joint density's sample panel.
    pub samples: usize,
}

/// A square window holding the central 99.6 % of `values` (both coordinates), padded.
fn window_of(values: &[f64], res: usize) -> Window {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let (lo, hi) = (q(0.002), q(0.998));
    let pad = 0.1 * (hi - lo);
    Window {
        lo: lo - pad,
        hi: hi + pad,
        res,
    }
}

fn save_grid(path: &Path, res: usize, panels: Vec<Panel>) -> Result<()> {
    let tmp = path.with_extension("tmp.png");
    flow_plots::write_grid(&tmp, res, &[(String::new(), panels)])?;
    std::fs::rename(&tmp, path).map_err(|e| other(format!("{}: {e}", path.display())))
}

/// Data histogram, learned density and model samples, on a square window that holds the
/// test data.
pub fn joint<B: Backend>(model: &Model<B>, data: &Dataset, look: &Look, path: &Path) -> Result<()> {
    let device = crate::evaluate::device_of(model);
    let window = window_of(&data.test.values, look.resolution);
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
    for start in (0..look.samples).step_by(CHUNK) {
        let m = CHUNK.min(look.samples - start);
        window.histogram(&host(model.sample(m, None, &device)?), &mut samples);
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
    save_grid(path, window.res, panels)
}

/// `p(y | c)` at the points `(c, y)` (standardized units), evaluated in chunks.
fn conditional_density<B: Backend>(model: &Model<B>, points: &[f32]) -> Result<Vec<f64>> {
    let device = crate::evaluate::device_of(model);
    let mut out = Vec::with_capacity(points.len() / 2);
    for chunk in points.chunks(2 * CHUNK) {
        let m = chunk.len() / 2;
        let cy = Tensor::<B, 2>::from_data(TensorData::new(chunk.to_vec(), [m, 2]), &device);
        let c = cy.clone().narrow(1, 0, 1);
        let y = cy.narrow(1, 1, 1);
        out.extend(host(model.log_prob(y, Some(&c))?.exp()));
    }
    Ok(out)
}

/// For one context column and one modelled column: `conditional.png` (test data, learned
/// `p(y | c)` and the true one over `(c, y)`, context horizontal) and
/// `conditional-curves.png` (`p(y | c)` against `y` at five values of `c`, learned and
/// true).
pub fn conditional<B: Backend>(
    model: &Model<B>,
    data: &Dataset,
    look: &Look,
    dir: &Path,
) -> Result<()> {
    let layout = &data.layout;
    let (y, c) = layout.split(&data.test);
    let c = c.expect("a conditional layout has context columns");
    let pairs: Vec<f64> = c
        .values
        .iter()
        .zip(&y.values)
        .flat_map(|(c, y)| [*c, *y])
        .collect();
    let window = window_of(&pairs, look.resolution);
    let cells = window.res * window.res;
    let mut data_hist = vec![0.0; cells];
    window.histogram(&pairs, &mut data_hist);
    let learned = conditional_density(model, &window.centres(0..cells))?;
    // The truth in the data's units: toys are not standardized.
    let truth = |c: f64, y: f64| {
        data.toy
            .and_then(|t| t.exact_conditional(c, y).map(f64::exp))
    };
    let true_image: Option<Vec<f64>> = window
        .centres(0..cells)
        .chunks_exact(2)
        .map(|p| truth(f64::from(p[0]), f64::from(p[1])))
        .collect::<Option<_>>()
        .filter(|_| layout.context() == [0]);
    let mut panels = vec![
        Panel {
            values: data_hist,
            title: format!("{} (test data)", data.name),
        },
        Panel {
            values: learned,
            title: "learned p(y | x)".into(),
        },
    ];
    if let Some(values) = &true_image {
        panels.push(Panel {
            values: values.clone(),
            title: "true p(y | x)".into(),
        });
    }
    save_grid(&dir.join("conditional.png"), window.res, panels)?;

    // Curves at the 10th, 30th, 50th, 70th and 90th percentiles of the test contexts.
    let mut contexts = c.values.clone();
    contexts.sort_by(f64::total_cmp);
    let ys: Vec<f64> = (0..400)
        .map(|k| window.lo + (window.hi - window.lo) * (k as f64 + 0.5) / 400.0)
        .collect();
    let mut charts = Vec::new();
    for p in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let at = contexts[((contexts.len() - 1) as f64 * p) as usize];
        let points: Vec<f32> = ys.iter().flat_map(|&y| [at as f32, y as f32]).collect();
        let mut series = vec![("learned".to_string(), conditional_density(model, &points)?)];
        if true_image.is_some() {
            let exact = ys.iter().map(|&y| truth(at, y).unwrap_or(f64::NAN));
            series.insert(0, ("true".to_string(), exact.collect()));
        }
        charts.push(Curves {
            title: format!("p(y | x = {at:.2})"),
            x: ys.clone(),
            series,
        });
    }
    let path = dir.join("conditional-curves.png");
    let tmp = path.with_extension("tmp.png");
    flow_plots::write_curves(&tmp, 260, &charts)?;
    std::fs::rename(&tmp, &path).map_err(|e| other(format!("{}: {e}", path.display())))
}
