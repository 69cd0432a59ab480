//! PNG figures shared by the programs of this workspace: grids of 2-D density panels on a
//! square window, and the helpers that fill them (cell centres to evaluate a density on,
//! histograms of samples); rows of line charts ([`write_curves`]).
//!
//! Panels are `res × res` images of non-negative values, row-major, with the second
//! coordinate growing upward from row 0 at the bottom and the first growing to the right.

use std::path::{Path, PathBuf};

use plotters::{prelude::*, style::colors::colormaps::ViridisRGB};

/// Why a figure could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The font compiled into this crate did not load (a build defect, not an input one).
    #[error("the embedded font is invalid")]
    Font,
    /// A panel's values do not fill the `res × res` grid.
    #[error("panel {title:?} has {got} values; a {res}×{res} grid needs {}", res * res)]
    PanelSize {
        /// The panel's title.
        title: String,
        /// Cells per side asked for.
        res: usize,
        /// Values the panel holds.
        got: usize,
    },
    /// The rows of a grid hold different numbers of panels.
    #[error("row {row:?} has {got} panels; the first row has {expected}")]
    RaggedRows {
        /// The label of the offending row.
        row: String,
        /// Panels in the first row.
        expected: usize,
        /// Panels in this row.
        got: usize,
    },
    /// A chart's abscissae do not span an interval, or a curve's length differs from theirs.
    #[error("chart {title:?}: {reason}")]
    Chart {
        /// The chart's title.
        title: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Drawing or writing the PNG failed (an I/O error from the file, most often).
    #[error("{}: {message}", path.display())]
    Draw {
        /// The PNG being written.
        path: PathBuf,
        /// Plotters' description of the failure.
        message: String,
    },
}

fn register_font() -> Result<(), PlotError> {
    // Registering twice is harmless; the font is needed only for titles.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| PlotError::Font)
}

/// A drawing failure on `path`, from whatever plotters' backend reported.
fn draw_error(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> PlotError + '_ {
    move |e| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// One panel of a grid: values on the window's cells and a title.
pub struct Panel {
    /// `res × res` non-negative values (scaled to their own 99.5th percentile when drawn).
    pub values: Vec<f64>,
    /// Title shown above the panel.
    pub title: String,
}

/// A square window `[lo, hi]²` cut into `res × res` cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Lower edge of both coordinates.
    pub lo: f64,
    /// Upper edge of both coordinates.
    pub hi: f64,
    /// Cells per side.
    pub res: usize,
}

impl Window {
    /// Centres of the cells with flat index in `cells` (`index = row · res + column`), as
    /// interleaved `(x₁, x₂)` pairs.
    pub fn centres(&self, cells: std::ops::Range<usize>) -> Vec<f32> {
        let h = (self.hi - self.lo) / self.res as f64;
        cells
            .flat_map(|k| {
                let (i, j) = (k / self.res, k % self.res);
                [
                    (self.lo + (j as f64 + 0.5) * h) as f32,
                    (self.lo + (i as f64 + 0.5) * h) as f32,
                ]
            })
            .collect()
    }

    /// Adds the interleaved `(x₁, x₂)` points to the cell counts `counts` (`res²`); points
    /// outside the window are dropped.
    pub fn histogram(&self, points: &[f64], counts: &mut [f64]) {
        let res = self.res as f64;
        let bin = |v: f64| ((v - self.lo) / (self.hi - self.lo) * res).floor();
        for p in points.chunks_exact(2) {
            let (j, i) = (bin(p[0]), bin(p[1]));
            if (0.0..res).contains(&i) && (0.0..res).contains(&j) {
                counts[i as usize * self.res + j as usize] += 1.0;
            }
        }
    }
}

/// The 99.5th percentile of the positive values: a few spiky cells must not wash out the
/// rest of the panel.
fn robust_max(values: &[f64]) -> f64 {
    let mut positive: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
    if positive.is_empty() {
        return 1.0;
    }
    positive.sort_by(f64::total_cmp);
    positive[(positive.len() - 1) * 995 / 1000]
}

/// Writes `rows` of (label, panels) as one PNG (viridis colours); every panel is
/// `res × res` and every row has the same number of panels (checked: [`PlotError`]
/// otherwise, before anything is written).
pub fn write_grid(path: &Path, res: usize, rows: &[(String, Vec<Panel>)]) -> Result<(), PlotError> {
    let cols = rows.first().map_or(0, |r| r.1.len());
    for (label, panels) in rows {
        if panels.len() != cols {
            return Err(PlotError::RaggedRows {
                row: label.clone(),
                expected: cols,
                got: panels.len(),
            });
        }
        if let Some(p) = panels.iter().find(|p| p.values.len() != res * res) {
            return Err(PlotError::PanelSize {
                title: p.title.clone(),
                res,
                got: p.values.len(),
            });
        }
    }
    register_font()?;
    let err = draw_error(path);
    let label_w = if rows.iter().any(|r| !r.0.is_empty()) {
        70u32
    } else {
        0
    };
    let (title_h, gap) = (26u32, 6u32);
    let cell = res as u32 + gap;
    let width = label_w + cols as u32 * cell;
    let height = title_h + rows.len() as u32 * (cell + title_h);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title_style = ("sans-serif", 15).into_font().color(&BLACK);
    let label_style = ("sans-serif", 20).into_font().color(&BLACK);
    for (r, (label, panels)) in rows.iter().enumerate() {
        let top = title_h + r as u32 * (cell + title_h);
        root.draw_text(
            label,
            &label_style,
            (8, (top + title_h + res as u32 / 2) as i32),
        )
        .map_err(|e| err(&e))?;
        for (c, panel) in panels.iter().enumerate() {
            let left = label_w + c as u32 * cell;
            root.draw_text(
                &panel.title,
                &title_style,
                (left as i32 + 4, top as i32 + 4),
            )
            .map_err(|e| err(&e))?;
            let max = robust_max(&panel.values);
            for i in 0..res {
                for j in 0..res {
                    let v = (panel.values[i * res + j] / max).clamp(0.0, 1.0);
                    let color = ViridisRGB::get_color(v as f32);
                    // Row i counts from the bottom; image y grows downward.
                    let x = (left + j as u32) as i32;
                    let y = (top + title_h + (res - 1 - i) as u32) as i32;
                    root.draw_pixel((x, y), &color).map_err(|e| err(&e))?;
                }
            }
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One line chart: curves `(label, y values)` over shared `x` values, drawn in order
/// (the first solid black, the others in colour).
pub struct Curves {
    /// Title shown above the chart.
    pub title: String,
    /// The abscissae, increasing.
    pub x: Vec<f64>,
    /// `(label, ordinates)`, each as long as `x`.
    pub series: Vec<(String, Vec<f64>)>,
}

/// Writes `charts` side by side as one PNG, each `size × size` pixels, with a legend.
/// Non-finite values are left out of their curve; a chart whose `x` spans no interval, or
/// whose curves are not as long as `x`, is a [`PlotError::Chart`].
pub fn write_curves(path: &Path, size: u32, charts: &[Curves]) -> Result<(), PlotError> {
    let x_range = |chart: &Curves| {
        let lo = chart.x.iter().copied().fold(f64::INFINITY, f64::min);
        (
            lo,
            chart.x.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    for chart in charts {
        let (x_lo, x_hi) = x_range(chart);
        let reason = if x_lo.partial_cmp(&x_hi) != Some(std::cmp::Ordering::Less) {
            Some("its x values span no interval".to_string())
        } else {
            chart
                .series
                .iter()
                .find(|(_, y)| y.len() != chart.x.len())
                .map(|(label, y)| {
                    format!(
                        "curve {label:?} has {} values for {} x",
                        y.len(),
                        chart.x.len()
                    )
                })
        };
        if let Some(reason) = reason {
            return Err(PlotError::Chart {
                title: chart.title.clone(),
                reason,
            });
        }
    }
    register_font()?;
    let err = draw_error(path);
    let root =
        BitMapBackend::new(path, (size * charts.len().max(1) as u32, size)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let colours = [BLACK, RED, BLUE, GREEN, MAGENTA];
    for (area, chart) in root
        .split_evenly((1, charts.len().max(1)))
        .iter()
        .zip(charts)
    {
        let finite = |v: &&f64| v.is_finite();
        let (x_lo, x_hi) = x_range(chart);
        let y_hi = chart
            .series
            .iter()
            .flat_map(|(_, y)| y.iter().filter(finite))
            .copied()
            .fold(0.0, f64::max);
        let mut c = ChartBuilder::on(area)
            .caption(&chart.title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(x_lo..x_hi, 0.0..(y_hi * 1.05).max(1e-12))
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .light_line_style(WHITE)
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        for (k, (label, y)) in chart.series.iter().enumerate() {
            let colour = colours[k % colours.len()];
            let points = chart
                .x
                .iter()
                .zip(y)
                .filter(|(_, v)| v.is_finite())
                .map(|(x, v)| (*x, *v));
            c.draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_and_histogram_agree() {
        let w = Window {
            lo: -4.0,
            hi: 4.0,
            res: 8,
        };
        let centres: Vec<f64> = w.centres(0..64).into_iter().map(f64::from).collect();
        let mut counts = vec![0.0; 64];
        w.histogram(&centres, &mut counts);
        assert!(counts.iter().all(|&c| c == 1.0), "{counts:?}");
        // Cell 9 is row 1, column 1: centre (−2.5, −2.5).
        assert_eq!(&centres[18..20], &[-2.5, -2.5]);
        w.histogram(&[10.0, 0.0, 0.0, -4.5], &mut counts);
        assert_eq!(counts.iter().sum::<f64>(), 64.0);
    }

    fn panel(title: &str, n: usize) -> Panel {
        Panel {
            values: (0..n).map(|i| i as f64).collect(),
            title: title.into(),
        }
    }

    #[test]
    fn bad_grids_and_charts_are_typed_errors() {
        let path = std::env::temp_dir().join("flow-plots-never-written.png");
        let ragged = [
            ("a".to_string(), vec![panel("p", 16), panel("q", 16)]),
            ("b".to_string(), vec![panel("r", 16)]),
        ];
        assert!(matches!(
            write_grid(&path, 4, &ragged),
            Err(PlotError::RaggedRows {
                expected: 2,
                got: 1,
                ..
            })
        ));
        let short = [("a".to_string(), vec![panel("p", 15)])];
        assert!(matches!(
            write_grid(&path, 4, &short),
            Err(PlotError::PanelSize {
                res: 4,
                got: 15,
                ..
            })
        ));
        let flat = Curves {
            title: "flat".into(),
            x: vec![1.0, 1.0],
            series: vec![],
        };
        assert!(matches!(
            write_curves(&path, 100, &[flat]),
            Err(PlotError::Chart { .. })
        ));
        let uneven = Curves {
            title: "uneven".into(),
            x: vec![0.0, 1.0, 2.0],
            series: vec![("y".into(), vec![1.0, 2.0])],
        };
        let e = write_curves(&path, 100, &[uneven]).unwrap_err();
        assert!(e.to_string().contains("2 values for 3 x"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn figures_are_written_and_unwritable_paths_say_where() {
        let dir = std::env::temp_dir().join(format!("flow-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let grid = dir.join("grid.png");
        write_grid(&grid, 4, &[("row".to_string(), vec![panel("p", 16)])]).unwrap();
        let curves = Curves {
            title: "loss".into(),
            x: vec![0.0, 1.0, 2.0],
            series: vec![("train".into(), vec![3.0, f64::NAN, 1.0])],
        };
        let chart = dir.join("curves.png");
        write_curves(&chart, 120, std::slice::from_ref(&curves)).unwrap();
        for png in [&grid, &chart] {
            let bytes = std::fs::read(png).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", png.display());
        }
        let missing = dir.join("no-such-dir").join("curves.png");
        match write_curves(&missing, 120, &[curves]) {
            Err(PlotError::Draw { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected a drawing error, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
