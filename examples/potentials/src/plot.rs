//! The Figure-3-style grid: one row per target, the true density then one column per flow.

use std::path::Path;

use plotters::{prelude::*, style::colors::colormaps::ViridisRGB};

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// A `res × res` image of non-negative values on `[−4, 4]²`, row-major with `z₂` growing
/// upward from row 0 at the bottom and `z₁` growing to the right.
pub struct Panel {
    /// Values (scaled to their own 99.5th percentile when drawn).
    pub values: Vec<f64>,
    /// Title shown above the panel.
    pub title: String,
}

/// The 99.5th percentile of the positive values: a few spiky histogram bins must not
/// wash out the rest of the panel.
fn robust_max(values: &[f64]) -> f64 {
    let mut positive: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
    if positive.is_empty() {
        return 1.0;
    }
    positive.sort_by(f64::total_cmp);
    positive[(positive.len() - 1) * 995 / 1000]
}

/// Writes `rows` (label, panels) as one PNG; every row must have the same number of panels.
pub fn write_grid(path: &Path, res: usize, rows: &[(String, Vec<Panel>)]) -> Result<(), String> {
    // Registering twice is harmless; the font is needed only for titles.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "embedded font is invalid".to_string())?;
    let cols = rows.first().map_or(0, |r| r.1.len());
    let (label_w, title_h, gap) = (70u32, 26u32, 6u32);
    let cell = res as u32 + gap;
    let width = label_w + cols as u32 * cell;
    let height = title_h + rows.len() as u32 * (cell + title_h);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title_style = ("sans-serif", 15).into_font().color(&BLACK);
    let label_style = ("sans-serif", 20).into_font().color(&BLACK);
    for (r, (label, panels)) in rows.iter().enumerate() {
        let top = title_h + r as u32 * (cell + title_h);
        root.draw_text(
            label,
            &label_style,
            (8, (top + title_h + res as u32 / 2) as i32),
        )
        .map_err(|e| e.to_string())?;
        for (c, panel) in panels.iter().enumerate() {
            let left = label_w + c as u32 * cell;
            root.draw_text(
                &panel.title,
                &title_style,
                (left as i32 + 4, top as i32 + 4),
            )
            .map_err(|e| e.to_string())?;
            let max = robust_max(&panel.values);
            for i in 0..res {
                for j in 0..res {
                    let v = (panel.values[i * res + j] / max).clamp(0.0, 1.0);
                    let color = ViridisRGB::get_color(v as f32);
                    // Row i = z₂ index from the bottom; image y grows downward.
                    let x = (left + j as u32) as i32;
                    let y = (top + title_h + (res - 1 - i) as u32) as i32;
                    root.draw_pixel((x, y), &color).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
