//! Figures as SVG and PNG with plotters: one line per series against a
//! shared x axis, loss on the left and accuracy on the right, like the
//! paper's Figure 2.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::ExperimentError;

/// The font every label is drawn with, compiled in so that plots render the
/// same on a machine with no fonts installed (DejaVu Sans, free licence in
/// `assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// One line of a figure.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// x values.
    pub x: Vec<f64>,
    /// Loss at each x (left panel).
    pub loss: Vec<f64>,
    /// Accuracy at each x, as a fraction (right panel, shown in percent).
    pub accuracy: Vec<f64>,
}

/// A two-panel figure: loss and accuracy against a shared x.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Title above both panels.
    pub title: String,
    /// x axis label, e.g. `λ`.
    pub x_label: String,
    /// Whether x counts (rounds): ticks at whole numbers only, labelled
    /// `3`, not `3.0`.
    pub integer_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// Colours that stay distinct in print and for colour-blind readers.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; if it ever did not,
        // text would be missing from plots but nothing else would break.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

impl Figure {
    /// Writes `STEM.svg` and `STEM.png` into `dir`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, ExperimentError> {
        register_font();
        let svg = dir.join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}.png"));
        let size = (1100, 420);
        {
            let root = SVGBackend::new(&svg, size).into_drawing_area();
            self.draw(&root).map_err(|e| output_error(&svg, e))?;
            root.present().map_err(|e| output_error(&svg, e))?;
        }
        {
            let root = BitMapBackend::new(&png, size).into_drawing_area();
            self.draw(&root).map_err(|e| output_error(&png, e))?;
            root.present().map_err(|e| output_error(&png, e))?;
        }
        Ok(vec![svg, png])
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 20))?;
        let panels = root.split_evenly((1, 2));
        self.panel(&panels[0], "test loss", |s| s.loss.clone())?;
        self.panel(&panels[1], "test accuracy (%)", |s| {
            s.accuracy.iter().map(|a| a * 100.0).collect()
        })?;
        Ok(())
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        y_label: &str,
        values: impl Fn(&Series) -> Vec<f64>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let ys: Vec<Vec<f64>> = self.series.iter().map(&values).collect();
        let all = ys.iter().flatten().copied().filter(|v| v.is_finite());
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.08).max(1e-3);
        let xs = self.series.iter().flat_map(|s| s.x.iter().copied());
        let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        let (x0, x1) = if x0 < x1 {
            (x0, x1)
        } else if self.integer_x && x0.is_finite() {
            // One round: a unit around it, so its tick is in the middle.
            (x0 - 1.0, x0 + 1.0)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))?;
        let whole = |x: &f64| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        };
        let mut mesh = chart.configure_mesh();
        if self.integer_x {
            // As many ticks as whole numbers fit, up to 12, each an integer.
            let span = (x1 - x0).round().max(1.0) as usize;
            mesh.x_labels((span + 1).min(12)).x_label_formatter(&whole);
        }
        mesh.x_desc(self.x_label.as_str())
            .y_desc(y_label)
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        // Earlier lines are drawn wider, and each has its own marker, so a
        // line that lies exactly on another still shows beneath it.
        let n = self.series.len() as u32;
        for (i, (series, y)) in self.series.iter().zip(&ys).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let width = 2 + 2 * (n - 1 - i as u32).min(3);
            let points: Vec<(f64, f64)> = series.x.iter().copied().zip(y.iter().copied()).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?
                .label(series.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
                });
            let style = color.filled();
            match i % 3 {
                0 => chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style)))?,
                1 => chart.draw_series(points.iter().map(|&p| TriangleMarker::new(p, 5, style)))?,
                _ => chart.draw_series(
                    points
                        .iter()
                        .map(|&p| Cross::new(p, 4, color.stroke_width(2))),
                )?,
            };
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()?;
        Ok(())
    }
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
