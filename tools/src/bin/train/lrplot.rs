//! Plots of `train lr-find --sweep` and `train search`.

use std::path::Path;

use anyhow::{anyhow, Context};
use expanse_trainer::lr_find::Sweep;
use plotters::prelude::*;

/// Width and height of the plots, in pixels.
const SIZE: (u32, u32) = (1000, 600);
/// Colours of the series, in order.
const COLOURS: [RGBColor; 3] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
/// Colours of the vertical marks, in order.
const MARK_COLOURS: [RGBColor; 2] = [RGBColor(214, 39, 40), RGBColor(148, 103, 189)];

/// Writes a PNG of the loss (thin) and its smoothed value (thick) against the learning rate, on
/// a logarithmic rate axis, with the rates of the lowest smoothed loss and the recommendation
/// marked.
pub fn write_sweep_plot(path: &Path, sweep: &Sweep) -> anyhow::Result<()> {
    let finite: Vec<(f64, f64, f64)> = sweep
        .points
        .iter()
        .filter(|p| p.loss.is_finite() && p.smoothed.is_finite())
        .map(|p| (p.lr, p.loss, p.smoothed))
        .collect();
    let raw: Vec<(f64, f64)> = finite.iter().map(|&(lr, loss, _)| (lr, loss)).collect();
    let smoothed: Vec<(f64, f64)> = finite.iter().map(|&(lr, _, s)| (lr, s)).collect();
    let marks: Vec<(f64, String)> = [
        sweep.min_loss_lr.map(|lr| (lr, "rate at lowest smoothed loss".to_string())),
        sweep.recommended.map(|lr| (lr, "recommended".to_string())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let chart = LogChart {
        title: "learning-rate sweep",
        x_desc: "learning rate",
        y_desc: "training loss",
        log_x: true,
        series: vec![
            Series { label: "loss", points: raw, width: 1, scatter: false },
            Series { label: "smoothed loss", points: smoothed, width: 3, scatter: false },
        ],
        marks,
    };
    let png =
        chart.render().map_err(|error| anyhow!("failed to draw {}: {error}", path.display()))?;
    expanse_tools::write_file_atomically(path, &png)
}

/// One series of a [`LogChart`].
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
    /// Stroke width in pixels.
    pub width: u32,
    /// Draw a dot per point instead of a line.
    pub scatter: bool,
}

/// A chart of series with vertical marks, against an x axis that is logarithmic when `log_x` is
/// set.
pub struct LogChart<'a> {
    /// Caption.
    pub title: &'a str,
    /// X axis description.
    pub x_desc: &'a str,
    /// Y axis description.
    pub y_desc: &'a str,
    /// Whether the x axis is logarithmic.
    pub log_x: bool,
    /// The series, drawn in order.
    pub series: Vec<Series<'a>>,
    /// Vertical dashed lines, each at an x with its legend label.
    pub marks: Vec<(f64, String)>,
}

impl LogChart<'_> {
    /// Renders the chart as PNG bytes.
    pub fn render(&self) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        expanse_tools::charts::register_font()?;
        let points = self.series.iter().flat_map(|series| series.points.iter());
        let xs = points.clone().map(|&(x, _)| x).filter(|x| *x > 0.0 || !self.log_x);
        let (x_min, x_max) = xs.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let (x_min, x_max) = match (x_min < x_max, self.log_x) {
            (true, _) => (x_min, x_max),
            (false, true) => (1e-3, 1.0),
            (false, false) if x_min.is_finite() => (x_min - 0.5, x_min + 0.5),
            (false, false) => (0.0, 1.0),
        };
        let ys = points.map(|&(_, y)| y);
        let (y_min, y_max) =
            ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (y_min, y_max) = if y_min < y_max { (y_min, y_max) } else { (0.0, 1.0) };
        let pad = 0.05 * (y_max - y_min);
        // Headroom above the data for the legend box (about 24 px a row on a plot about 400 px
        // high), so that the box never covers a point.
        let rows = (self.series.len() + self.marks.len()) as f64;
        let top = y_max + pad + (y_max - y_min) * (24.0 * rows + 16.0) / 400.0;

        let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
        // The two axis kinds are different types in plotters, so the drawing is written once
        // for both.
        macro_rules! draw {
            ($x_range:expr, $x_format:expr) => {{
                let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
                root.fill(&WHITE)?;
                let mut chart = ChartBuilder::on(&root)
                    .caption(self.title, ("sans-serif", 26))
                    .margin(20)
                    .x_label_area_size(50)
                    .y_label_area_size(70)
                    .build_cartesian_2d($x_range, (y_min - pad)..top)?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc)
                    .y_desc(self.y_desc)
                    .x_label_formatter(&$x_format)
                    .label_style(("sans-serif", 16))
                    .axis_desc_style(("sans-serif", 20))
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()?;
                for (index, series) in self.series.iter().enumerate() {
                    let style = COLOURS[index % COLOURS.len()].stroke_width(series.width);
                    let legend = move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style);
                    let points = &series.points;
                    if series.scatter {
                        let dots = points.iter().map(|&p| Circle::new(p, 5, style.filled()));
                        let dot = move |(x, y)| Circle::new((x + 12, y), 5, style.filled());
                        chart.draw_series(dots)?.label(series.label).legend(dot);
                    } else {
                        let line = LineSeries::new(points.clone(), style);
                        chart.draw_series(line)?.label(series.label).legend(legend);
                    }
                }
                for (index, (x, label)) in self.marks.iter().enumerate() {
                    let style = MARK_COLOURS[index % MARK_COLOURS.len()].stroke_width(2);
                    let line = [(*x, y_min - pad), (*x, top)];
                    chart
                        .draw_series(DashedLineSeries::new(line, 8, 6, style))?
                        .label(format!("{label} {x:.2e}"))
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .label_font(("sans-serif", 16))
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK)
                    .draw()?;
                root.present()?;
            }};
        }
        if self.log_x {
            draw!((x_min..x_max).log_scale(), |x: &f64| format!("{x:.0e}"));
        } else {
            // The linear axis counts trials: label whole numbers only, so that no label repeats.
            draw!(x_min..x_max, |x: &f64| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            });
        }
        let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels)
            .context("the plot buffer does not match the image size")?;
        let mut png = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        Ok(png)
    }
}
