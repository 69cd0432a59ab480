//! What a run leaves behind: metrics (JSONL, CSV), pictures (PNG) and the summary table.
//! Every file is written atomically (temporary file, `fsync`, rename).

use std::path::Path;

use plotters::prelude::*;

use crate::{error::VaeError, history::EpochRecord};

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// Writes `bytes` to `path` atomically ([`flow_programs::files::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), VaeError> {
    flow_programs::files::write_atomic(path, bytes).map_err(VaeError::io(path))
}

/// Writes `metrics.jsonl`, `metrics.csv` and `curves.png` for `history`.
pub fn write_history(run: &Path, history: &[EpochRecord]) -> Result<(), VaeError> {
    let mut jsonl = String::new();
    let mut csv = String::from(
        "epoch,train_loss,train_neg_elbo,train_recon,train_kl,valid_neg_elbo,valid_recon,valid_kl,train_seconds,images_per_second\n",
    );
    for r in history {
        jsonl += &serde_json::to_string(r).expect("records serialize");
        jsonl.push('\n');
        csv += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.epoch,
            r.train_loss,
            r.train_neg_elbo,
            r.train_recon,
            r.train_kl,
            r.valid_neg_elbo,
            r.valid_recon,
            r.valid_kl,
            r.train_seconds,
            r.images_per_second
        );
    }
    write_atomic(&run.join("metrics.jsonl"), jsonl.as_bytes())?;
    write_atomic(&run.join("metrics.csv"), csv.as_bytes())?;
    if !history.is_empty() {
        write_curves(&run.join("curves.png"), history)?;
    }
    Ok(())
}

fn plot_err(path: &Path) -> impl Fn(String) -> VaeError + '_ {
    move |reason| VaeError::Plot {
        path: path.to_path_buf(),
        reason,
    }
}

fn save_rgb(path: &Path, width: u32, height: u32, rgb: Vec<u8>) -> Result<(), VaeError> {
    let img = image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| plot_err(path)("pixel buffer has the wrong size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| plot_err(path)(e.to_string()))?;
    write_atomic(path, &png)
}

/// Loss curves: training and validation negative ELBO (and the training loss when it
/// differs, during KL warm-up) against the epoch.
pub fn write_curves(path: &Path, history: &[EpochRecord]) -> Result<(), VaeError> {
    let err = plot_err(path);
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| err("embedded font is invalid".into()))?;
    let (w, h) = (800u32, 500u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
        let series: [Series; 3] = [
            (
                "train −ELBO",
                BLUE,
                history
                    .iter()
                    .map(|r| (r.epoch as f64, r.train_neg_elbo))
                    .collect(),
            ),
            (
                "valid −ELBO",
                RED,
                history
                    .iter()
                    .map(|r| (r.epoch as f64, r.valid_neg_elbo))
                    .collect(),
            ),
            (
                "train loss (β)",
                GREEN,
                history
                    .iter()
                    .map(|r| (r.epoch as f64, r.train_loss))
                    .collect(),
            ),
        ];
        let finite = || {
            series
                .iter()
                .flat_map(|s| s.2.iter().map(|p| p.1))
                .filter(|v| v.is_finite())
        };
        let lo = finite().fold(f64::INFINITY, f64::min);
        let hi = finite().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() {
            (lo, hi.max(lo + 1.0))
        } else {
            (0.0, 1.0)
        };
        let pad = 0.05 * (hi - lo);
        let last = history.last().map_or(1, |r| r.epoch).max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("negative ELBO (nats) per epoch", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1f64..last, (lo - pad)..(hi + pad))
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("nats")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (label, color, points) in series {
            let points: Vec<_> = points.into_iter().filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    save_rgb(path, w, h, buf)
}

/// A grid of grey images (values in [0, 1], 1 = ink drawn black), `cols` per row, with a
/// 2-pixel gap, scaled up `zoom` times.
pub fn write_image_grid(
    path: &Path,
    images: &[f32],
    rows: usize,
    cols: usize,
    per_row: usize,
    zoom: usize,
) -> Result<(), VaeError> {
    let d = rows * cols;
    let n = images.len() / d.max(1);
    let grid_rows = n.div_ceil(per_row.max(1)).max(1);
    let (gap, cell_w, cell_h) = (2, cols * zoom, rows * zoom);
    let w = per_row * (cell_w + gap) + gap;
    let h = grid_rows * (cell_h + gap) + gap;
    let mut rgb = vec![200u8; w * h * 3];
    for k in 0..n {
        let (gr, gc) = (k / per_row, k % per_row);
        for i in 0..rows * zoom {
            for j in 0..cols * zoom {
                let v = images[k * d + (i / zoom) * cols + j / zoom].clamp(0.0, 1.0);
                let g = (255.0 * (1.0 - v)).round() as u8;
                let (y, x) = (gap + gr * (cell_h + gap) + i, gap + gc * (cell_w + gap) + j);
                let o = (y * w + x) * 3;
                rgb[o..o + 3].copy_from_slice(&[g, g, g]);
            }
        }
    }
    save_rgb(path, w as u32, h as u32, rgb)
}
