//! Charts drawn with plotters into PNG files: the font set-up shared by every chart, the
//! per-epoch curves of a run (`curves.png`, redrawn as a run goes), and the pictures of
//! `train inspect`: histogram grids, horizontal bar charts and filter grids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Deserializer};

/// Font used for every label, read at run time so that the binaries carry no font.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Environment variable that replaces [`DEFAULT_FONT`] with another TrueType file.
pub const FONT_VARIABLE: &str = "EXPANSE_PLOT_FONT";
/// Debian package that installs [`DEFAULT_FONT`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";
/// File name of the run curves in a run directory.
pub const CURVES_FILE: &str = "curves.png";
/// Per-epoch log written by `train`.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Configuration written by `train`, read for the name of the training split.
const CONFIG_FILE: &str = "config.json";

/// Colours in order (the matplotlib "tab10" palette).
pub const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Result of a plotters drawing call, with the bitmap backend's error boxed.
pub type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Whether [`register_font`] has registered a font in this process.
static FONT_REGISTERED: Mutex<bool> = Mutex::new(false);

/// Reads the TrueType font ([`DEFAULT_FONT`], or the file [`FONT_VARIABLE`] names) and
/// registers it as plotters' "sans-serif" family. Later calls in the same process do nothing.
///
/// # Errors
///
/// A missing font file (naming [`FONT_PACKAGE`] and [`FONT_VARIABLE`]), an unreadable one, or
/// one that is not a TrueType or OpenType font. A failed call registers nothing, so a later
/// call tries again.
pub fn register_font() -> anyhow::Result<()> {
    let mut registered = FONT_REGISTERED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *registered {
        return Ok(());
    }
    let path =
        std::env::var_os(FONT_VARIABLE).map_or_else(|| PathBuf::from(DEFAULT_FONT), PathBuf::from);
    let bytes = std::fs::read(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "font {} not found; install the Debian package {FONT_PACKAGE} or set \
                 {FONT_VARIABLE} to a TrueType file",
                path.display()
            )
        } else {
            anyhow!("failed to read the font {}: {error}", path.display())
        }
    })?;
    // plotters keeps registered fonts for the life of the process and needs 'static bytes.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{}: not a valid TrueType or OpenType font", path.display()))?;
    *registered = true;
    Ok(())
}

/// Draws with `draw` on a white `width x height` RGB canvas and returns it encoded as PNG.
///
/// # Errors
///
/// The drawing error of `draw`, or a PNG encoding error.
pub fn render_png(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> anyhow::Result<Vec<u8>> {
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|error| anyhow!("failed to draw the chart: {error}"))?;
        draw(&root).map_err(|error| anyhow!("failed to draw the chart: {error}"))?;
        root.present().map_err(|error| anyhow!("failed to draw the chart: {error}"))?;
    }
    encode_png(width, height, pixels)
}

/// Encodes an RGB buffer of `width x height` as PNG.
fn encode_png(width: u32, height: u32, pixels: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let image = image::RgbImage::from_raw(width, height, pixels)
        .context("the chart buffer does not match the image size")?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("failed to encode the chart as PNG")?;
    Ok(png)
}

/// The fields of one `metrics.jsonl` line that the run curves use.
#[derive(Debug, Deserialize)]
struct EpochLine {
    epoch: usize,
    split: String,
    #[serde(deserialize_with = "number_or_null")]
    loss: f64,
    #[serde(deserialize_with = "number_or_null")]
    top1: f64,
    #[serde(default)]
    lr: Option<f64>,
}

/// The field of `config.json` that the run curves use.
#[derive(Debug, Deserialize)]
struct SplitConfig {
    train_split: String,
}

/// Deserializes a number, reading `null` as NaN, because serde_json writes the NaN loss of a
/// diverged run as `null`.
pub fn number_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Per-epoch values of one run, keyed by epoch. A later line for an epoch replaces an earlier
/// one.
#[derive(Debug, Default)]
struct EpochSeries {
    train_loss: BTreeMap<usize, f64>,
    train_error: BTreeMap<usize, f64>,
    lr: BTreeMap<usize, f64>,
    eval_split: Option<String>,
    eval_loss: BTreeMap<usize, f64>,
    eval_error: BTreeMap<usize, f64>,
}

impl EpochSeries {
    /// Returns the validation error minus the training error, in points, per epoch with both.
    fn gap(&self) -> BTreeMap<usize, f64> {
        self.eval_error
            .iter()
            .filter_map(|(epoch, eval)| {
                self.train_error.get(epoch).map(|train| (*epoch, eval - train))
            })
            .collect()
    }
}

/// Reads `metrics.jsonl` of `run_dir` and writes `curves.png` there atomically: loss per
/// epoch, top-1 error per epoch (training and evaluation split each), the learning rate at the
/// end of each training pass, and the evaluation error minus the training error. Returns the
/// path of the PNG.
///
/// Training lines are those of the run's training split: `train_split` of `config.json`, or
/// "train" without that file. The evaluation split is the first other split in the file.
/// Training error is measured on augmented batches while the weights change, so the gap is an
/// approximation of the generalisation gap.
///
/// # Errors
///
/// A missing or unreadable `metrics.jsonl`, an invalid line (with its number), a file without
/// records, a font or drawing error, or a failed write.
pub fn write_run_curves(run_dir: &Path) -> anyhow::Result<PathBuf> {
    let series = read_epoch_series(run_dir)?;
    register_font()?;
    let png = render_png(1200, 800, |root| draw_run_curves(root, &series))?;
    let path = run_dir.join(CURVES_FILE);
    crate::write_file_atomically(&path, &png)?;
    Ok(path)
}

/// Reads the per-epoch series of `run_dir/metrics.jsonl`.
fn read_epoch_series(run_dir: &Path) -> anyhow::Result<EpochSeries> {
    let path = run_dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("failed to read {}: is {} a run folder?", path.display(), run_dir.display())
    })?;
    let train_split = read_train_split(run_dir)?;

    let mut series = EpochSeries::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: EpochLine = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: invalid record", path.display(), index + 1))?;
        let error = 100.0 * (1.0 - record.top1);
        if record.split == train_split {
            series.train_loss.insert(record.epoch, record.loss);
            series.train_error.insert(record.epoch, error);
            if let Some(lr) = record.lr {
                series.lr.insert(record.epoch, lr);
            }
            continue;
        }
        let eval_split = series.eval_split.get_or_insert_with(|| record.split.clone());
        if *eval_split == record.split {
            series.eval_loss.insert(record.epoch, record.loss);
            series.eval_error.insert(record.epoch, error);
        }
    }
    if series.train_loss.is_empty() && series.eval_loss.is_empty() {
        bail!("{} has no records; the run has not finished an epoch", path.display());
    }
    Ok(series)
}

/// Returns `train_split` of `run_dir/config.json`, or "train" when the file is missing.
fn read_train_split(run_dir: &Path) -> anyhow::Result<String> {
    let path = run_dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok("train".into()),
        Err(error) => return Err(anyhow!("failed to read {}: {error}", path.display())),
    };
    let config: SplitConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid run configuration", path.display()))?;
    Ok(config.train_split)
}

/// One line of a [`line_chart`]: legend label, colour and (x, y) points.
pub struct Line<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Line and marker colour.
    pub colour: RGBColor,
    /// Points in x order. Points with a non-finite coordinate are not drawn.
    pub points: Vec<(f64, f64)>,
}

/// Draws the four panels of the run curves.
fn draw_run_curves(root: &DrawingArea<BitMapBackend, Shift>, series: &EpochSeries) -> DrawResult {
    let panels = root.split_evenly((2, 2));
    let eval = series.eval_split.as_deref().unwrap_or("evaluation");
    let points = |values: &BTreeMap<usize, f64>| -> Vec<(f64, f64)> {
        values.iter().map(|(&epoch, &value)| (epoch as f64, value)).collect()
    };

    let loss = [
        Line { label: "train", colour: COLOURS[0], points: points(&series.train_loss) },
        Line { label: eval, colour: COLOURS[1], points: points(&series.eval_loss) },
    ];
    line_chart(&panels[0], "loss", "epoch", "cross-entropy", &loss, false)?;
    let error = [
        Line { label: "train", colour: COLOURS[0], points: points(&series.train_error) },
        Line { label: eval, colour: COLOURS[1], points: points(&series.eval_error) },
    ];
    line_chart(&panels[1], "top-1 error", "epoch", "error (%)", &error, false)?;
    let lr = [Line { label: "learning rate", colour: COLOURS[2], points: points(&series.lr) }];
    line_chart(&panels[2], "learning rate", "epoch", "learning rate", &lr, false)?;
    let gap_desc = format!("{eval} error - train error (points)");
    let gap = [Line { label: "gap", colour: COLOURS[3], points: points(&series.gap()) }];
    line_chart(&panels[3], "generalisation gap", "epoch", &gap_desc, &gap, true)?;
    Ok(())
}

/// Draws `lines` with a marker at every point, so that a line of one point still shows. The x
/// axis runs from 0 to just past the last x, and a legend appears when there is more than one
/// line. The y axis starts at 0, unless `signed` is set, in which case it covers every value
/// and 0.
///
/// # Errors
///
/// The drawing error.
pub fn line_chart(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    signed: bool,
) -> DrawResult {
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> =
        lines.iter().flat_map(|line| line.points.iter().filter(finite)).copied().collect();
    // A margin past the last x keeps its marker inside the plotting area.
    let x_last = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let x_max = x_last + (0.04 * x_last).max(0.1);
    let y_high = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let y_low = if signed { all.iter().map(|p| p.1).fold(0.0, f64::min) } else { 0.0 };
    let span = y_high - y_low;
    let (y_low, y_high) = if span <= 1e-12 {
        (y_low - 1.0, y_high + 1.0)
    } else {
        (if signed { y_low - 0.05 * span } else { y_low }, y_high + 0.05 * span)
    };

    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, y_low..y_high)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if signed && y_low < 0.0 {
        let axis = [(0.0, 0.0), (x_max, 0.0)];
        chart.draw_series(LineSeries::new(axis, BLACK.stroke_width(1)))?;
    }

    for line in lines {
        let points: Vec<(f64, f64)> = line.points.iter().filter(finite).copied().collect();
        let style = line.colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
        let colour = line.colour;
        chart.draw_series(points.iter().map(|&point| Circle::new(point, 4, colour.filled())))?;
    }
    if lines.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// One histogram of a [`histogram_grid`]: equal-width bins from `low` to `high`.
pub struct HistogramPanel<'a> {
    /// Title above the panel (a variable name).
    pub title: &'a str,
    /// Second title line, such as the mean and standard deviation.
    pub note: String,
    /// Lower edge of the first bin.
    pub low: f64,
    /// Upper edge of the last bin.
    pub high: f64,
    /// Number of values per bin.
    pub counts: &'a [u64],
}

/// Width and height in pixels of one panel of a [`histogram_grid`].
const HISTOGRAM_PANEL: (u32, u32) = (400, 240);
/// Maximum number of panels per row of a [`histogram_grid`].
const HISTOGRAM_COLUMNS: usize = 4;

/// Draws one histogram per panel, four panels per row, and returns the PNG. Each panel has its
/// own x and y range, so the shapes stay visible at every scale.
///
/// # Errors
///
/// No panels, a font or drawing error.
pub fn histogram_grid(title: &str, panels: &[HistogramPanel]) -> anyhow::Result<Vec<u8>> {
    if panels.is_empty() {
        bail!("{title}: no histograms to draw");
    }
    register_font()?;
    let columns = HISTOGRAM_COLUMNS.min(panels.len());
    let rows = panels.len().div_ceil(columns);
    let (panel_width, panel_height) = HISTOGRAM_PANEL;
    let width = panel_width * columns as u32;
    let height = 50 + panel_height * rows as u32;
    render_png(width, height, |root| {
        let body = root.titled(title, ("sans-serif", 26))?;
        let cells = body.split_evenly((rows, columns));
        for (cell, panel) in cells.iter().zip(panels) {
            draw_histogram(cell, panel)?;
        }
        Ok(())
    })
}

/// Draws one histogram panel.
fn draw_histogram(area: &DrawingArea<BitMapBackend, Shift>, panel: &HistogramPanel) -> DrawResult {
    let bins = panel.counts.len().max(1);
    let (low, high) = if panel.high > panel.low {
        (panel.low, panel.high)
    } else {
        (panel.low - 0.5, panel.low + 0.5)
    };
    let peak = panel.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let area = area.margin(4, 4, 4, 8);
    let (header, rest) = area.split_vertically(38);
    header.draw(&Text::new(shorten(panel.title, 46), (4, 2), ("sans-serif", 14)))?;
    let grey = ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90));
    header.draw(&Text::new(panel.note.clone(), (4, 20), grey))?;

    let mut chart = ChartBuilder::on(&rest)
        .x_label_area_size(22)
        .y_label_area_size(44)
        .build_cartesian_2d(low..high, 0.0..peak * 1.05)?;
    chart
        .configure_mesh()
        .x_labels(4)
        .y_labels(4)
        .x_label_formatter(&|x| compact(snap_to_zero(*x, high - low)))
        .y_label_formatter(&|y| count_label(*y))
        .label_style(("sans-serif", 11))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    let width = (high - low) / bins as f64;
    let bars = panel.counts.iter().enumerate().map(|(index, &count)| {
        let left = low + index as f64 * width;
        Rectangle::new([(left, 0.0), (left + width, count as f64)], COLOURS[0].filled())
    });
    chart.draw_series(bars)?;
    Ok(())
}

/// One row of a [`bar_chart`]: a name and one value per series (NaN draws no bar).
pub struct BarRow<'a> {
    /// Row name (a layer).
    pub name: &'a str,
    /// One value per series.
    pub values: Vec<f64>,
}

/// One series of a [`bar_chart`]: its title and x range.
pub struct BarSeries<'a> {
    /// Title above the panel.
    pub title: &'a str,
    /// Range of the x axis. `None` means 0 to 5% past the largest finite value, or 0 to 1 when
    /// no value is above 0.
    pub range: Option<(f64, f64)>,
}

/// Width in pixels of one panel of a [`bar_chart`], without the row names.
const BAR_PANEL_WIDTH: u32 = 340;
/// Height in pixels of one row of a [`bar_chart`].
const BAR_ROW_HEIGHT: u32 = 22;

/// Draws one horizontal bar chart per series side by side, with a row per name from top to
/// bottom and the names left of the first chart, and returns the PNG.
///
/// # Errors
///
/// No rows or series, a row whose value count differs from the series count, a font or
/// drawing error.
pub fn bar_chart(title: &str, series: &[BarSeries], rows: &[BarRow]) -> anyhow::Result<Vec<u8>> {
    if rows.is_empty() || series.is_empty() {
        bail!("{title}: no rows to draw");
    }
    if let Some(row) = rows.iter().find(|row| row.values.len() != series.len()) {
        bail!(
            "{title}: row {} has {} values for {} series",
            row.name,
            row.values.len(),
            series.len()
        );
    }
    register_font()?;
    // About 8 pixels per character at the 13-pixel label font.
    let name_width =
        rows.iter().map(|row| row.name.chars().count()).max().unwrap_or(0) as u32 * 8 + 16;
    let width = series.len() as u32 * BAR_PANEL_WIDTH + name_width;
    let height = 120 + BAR_ROW_HEIGHT * rows.len() as u32;
    render_png(width, height, |root| {
        let body = root.titled(title, ("sans-serif", 26))?;
        let (first, rest) = body.split_horizontally(name_width + BAR_PANEL_WIDTH);
        let mut panels = vec![first];
        if series.len() > 1 {
            panels.extend(rest.split_evenly((1, series.len() - 1)));
        }
        for (index, (panel, series)) in panels.iter().zip(series).enumerate() {
            let values: Vec<f64> = rows.iter().map(|row| row.values[index]).collect();
            let names = if index == 0 { Some((rows, name_width)) } else { None };
            draw_bars(panel, series, &values, names)?;
        }
        Ok(())
    })
}

/// Draws one panel of horizontal bars, row 0 at the top, with the row names left of the bars
/// when `names` gives them and the width they need.
fn draw_bars(
    area: &DrawingArea<BitMapBackend, Shift>,
    series: &BarSeries,
    values: &[f64],
    names: Option<(&[BarRow], u32)>,
) -> DrawResult {
    let rows = values.len() as f64;
    let (low, high) = series.range.unwrap_or_else(|| {
        let top = values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
        (0.0, if top > 0.0 { top * 1.05 } else { 1.0 })
    });
    let mut chart = ChartBuilder::on(area)
        .caption(series.title, ("sans-serif", 16))
        .margin_right(16)
        .x_label_area_size(30)
        .y_label_area_size(names.map_or(8, |(_, width)| width))
        .build_cartesian_2d(low..high, 0.0..rows)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(5)
        .x_label_formatter(&|x| compact(*x))
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    let bars = values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(index, &value)| {
        let top = rows - index as f64;
        let value = value.clamp(low, high);
        Rectangle::new([(low, top - 0.85), (value, top - 0.15)], COLOURS[0].filled())
    });
    chart.draw_series(bars)?;

    if let Some((rows_with_names, _)) = names {
        let anchor = Pos::new(HPos::Right, VPos::Center);
        let style = TextStyle::from(("sans-serif", 13).into_font()).pos(anchor);
        // plotters does not clip elements to the plotting area, so the names can sit left of it.
        let labels = rows_with_names.iter().enumerate().map(|(index, row)| {
            let centre = (low, rows - index as f64 - 0.5);
            EmptyElement::at(centre) + Text::new(row.name.to_string(), (-6, 0), style.clone())
        });
        chart.draw_series(labels)?;
    }
    Ok(())
}

/// Formats a value with about three significant digits, in scientific notation when very small
/// or large.
pub fn compact(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.1e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Returns 0 for a tick within a millionth of `span` of 0, which rounding leaves as values
/// such as 3.5e-18.
fn snap_to_zero(value: f64, span: f64) -> f64 {
    if value.abs() < span * 1e-6 {
        0.0
    } else {
        value
    }
}

/// Formats a bin count: a whole number, in scientific notation from 100,000 on.
fn count_label(count: f64) -> String {
    if count < 1e5 {
        format!("{count:.0}")
    } else {
        format!("{count:.1e}")
    }
}

/// Returns `text` cut to `max` characters with an ellipsis in the middle.
fn shorten(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_string();
    }
    let half = (max - 1) / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head}…{tail}")
}

/// Gap in pixels between the tiles of a [`filter_grid`].
const TILE_GAP: u32 = 4;

/// Draws convolution filters `out x in x kh x kw` (row-major f32 `values`) as a grid of tiles
/// and returns the PNG. Each filter is scaled on its own from its smallest weight (black) to
/// its largest (white). With 3 input channels a filter is one RGB tile. Otherwise it is one
/// grey tile per input channel, side by side. Tiles are enlarged so that the longer side of a
/// kernel is at least 48 pixels.
///
/// # Errors
///
/// A shape whose product differs from the number of values, or an empty shape.
pub fn filter_grid(shape: [usize; 4], values: &[f32]) -> anyhow::Result<Vec<u8>> {
    let [outputs, inputs, kh, kw] = shape;
    if shape.iter().product::<usize>() != values.len() || values.is_empty() {
        bail!("filter shape {shape:?} does not match {} weights", values.len());
    }
    let colour = inputs == 3;
    let tiles_per_filter = if colour { 1 } else { inputs };
    let scale = 48usize.div_ceil(kw.max(kh)).max(1) as u32;
    let (tile_w, tile_h) = (kw as u32 * scale, kh as u32 * scale);
    let cell_w = tiles_per_filter as u32 * (tile_w + TILE_GAP) + TILE_GAP * 2;
    let cell_h = tile_h + TILE_GAP * 3;
    let columns = ((outputs as f64).sqrt().ceil() as usize).max(1);
    let columns = columns.min(outputs).max(1);
    let rows = outputs.div_ceil(columns);
    let width = columns as u32 * cell_w + TILE_GAP;
    let height = rows as u32 * cell_h + TILE_GAP;
    let mut image = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));

    let per_filter = inputs * kh * kw;
    for output in 0..outputs {
        let weights = &values[output * per_filter..(output + 1) * per_filter];
        let low = weights.iter().copied().filter(|v| v.is_finite()).fold(f32::INFINITY, f32::min);
        let high =
            weights.iter().copied().filter(|v| v.is_finite()).fold(f32::NEG_INFINITY, f32::max);
        let span = if high > low { high - low } else { 1.0 };
        let level = |value: f32| -> u8 {
            if value.is_finite() {
                (255.0 * (value - low) / span).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        };
        let left = TILE_GAP + (output % columns) as u32 * cell_w + TILE_GAP;
        let top = TILE_GAP + (output / columns) as u32 * cell_h + TILE_GAP;
        for tile in 0..tiles_per_filter {
            let tile_left = left + tile as u32 * (tile_w + TILE_GAP);
            for y in 0..tile_h {
                for x in 0..tile_w {
                    let (row, column) = ((y / scale) as usize, (x / scale) as usize);
                    let at = |channel: usize| weights[(channel * kh + row) * kw + column];
                    let pixel = if colour {
                        [level(at(0)), level(at(1)), level(at(2))]
                    } else {
                        let grey = level(at(tile));
                        [grey, grey, grey]
                    };
                    image.put_pixel(tile_left + x, top + y, image::Rgb(pixel));
                }
            }
        }
    }
    encode_png(width, height, image.into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG and returns its size and whether any pixel differs from the first.
    fn decode(png: &[u8]) -> (u32, u32, bool) {
        let image = image::load_from_memory(png).unwrap().to_rgb8();
        let first = *image.get_pixel(0, 0);
        let varied = image.pixels().any(|pixel| *pixel != first);
        (image.width(), image.height(), varied)
    }

    fn write_metrics(dir: &Path, lines: &[&str]) {
        std::fs::write(dir.join(METRICS_FILE), lines.join("\n")).unwrap();
    }

    #[test]
    fn run_curves_from_one_epoch() {
        let dir = tempfile::tempdir().unwrap();
        write_metrics(
            dir.path(),
            &[
                r#"{"epoch":1,"split":"train","loss":2.1,"top1":0.3,"top5":0.7,"lr":0.1}"#,
                r#"{"epoch":1,"split":"test","loss":1.9,"top1":0.35,"top5":0.8}"#,
            ],
        );
        let path = write_run_curves(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(CURVES_FILE));
        let (width, height, varied) = decode(&std::fs::read(&path).unwrap());
        assert_eq!(width, 1200);
        assert_eq!(height, 800);
        assert!(varied, "curves.png is blank");
    }

    #[test]
    fn run_curves_redrawn_as_epochs_add() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let mut pngs = Vec::new();
        for epoch in 1..=3 {
            let train_top1 = 0.3 + 0.1 * epoch as f64;
            lines.push(format!(
                r#"{{"epoch":{epoch},"split":"train","loss":{},"top1":{train_top1},"top5":0.9,"lr":{}}}"#,
                2.0 / epoch as f64,
                0.1 / epoch as f64
            ));
            lines.push(format!(
                r#"{{"epoch":{epoch},"split":"test","loss":{},"top1":{},"top5":0.9}}"#,
                2.2 / epoch as f64,
                train_top1 - 0.05
            ));
            let borrowed: Vec<&str> = lines.iter().map(String::as_str).collect();
            write_metrics(dir.path(), &borrowed);
            let png = std::fs::read(write_run_curves(dir.path()).unwrap()).unwrap();
            pngs.push(png);
        }
        assert_ne!(pngs[0], pngs[2], "curves.png did not change with more epochs");
    }

    #[test]
    fn run_curves_without_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let message = format!("{:#}", write_run_curves(dir.path()).unwrap_err());
        assert!(message.contains("metrics.jsonl"), "{message}");
    }

    #[test]
    fn run_curves_bad_line_named() {
        let dir = tempfile::tempdir().unwrap();
        write_metrics(
            dir.path(),
            &[r#"{"epoch":1,"split":"train","loss":2.1,"top1":0.3,"top5":0.7}"#, "{oops"],
        );
        let message = format!("{:#}", write_run_curves(dir.path()).unwrap_err());
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn filter_grid_rgb_tiles() {
        // 2 filters of 3 x 2 x 2: filter 0 is red where its red weights are high.
        let mut values = vec![0.0f32; 2 * 3 * 2 * 2];
        values[0] = 1.0;
        let png = filter_grid([2, 3, 2, 2], &values).unwrap();
        let image = image::load_from_memory(&png).unwrap().to_rgb8();
        let corner = TILE_GAP * 2;
        assert_eq!(image.get_pixel(corner, corner).0, [255, 0, 0]);
        assert_eq!(image.get_pixel(corner + 30, corner + 30).0, [0, 0, 0]);
    }

    #[test]
    fn filter_grid_rejects_wrong_shape() {
        let message = filter_grid([2, 1, 3, 3], &[0.0; 10]).unwrap_err().to_string();
        assert!(message.contains("[2, 1, 3, 3]"), "{message}");
        assert!(message.contains("10 weights"), "{message}");
    }

    #[test]
    fn histogram_grid_and_bars_draw() {
        let counts = [1u64, 4, 9, 4, 1];
        let panels: Vec<HistogramPanel> = (0..5)
            .map(|_| HistogramPanel {
                title: "layer1.0.conv1.weight",
                note: "mean 0 std 1".into(),
                low: -1.0,
                high: 1.0,
                counts: &counts,
            })
            .collect();
        let (width, height, varied) = decode(&histogram_grid("weights", &panels).unwrap());
        assert_eq!(width, 1600);
        assert_eq!(height, 50 + 2 * 240);
        assert!(varied);

        let rows = [
            BarRow { name: "bn1", values: vec![0.5, 0.0, f64::NAN] },
            BarRow { name: "layer1.0.bn1", values: vec![0.2, 0.25, 0.1] },
        ];
        let series = [
            BarSeries { title: "mean", range: None },
            BarSeries { title: "dead", range: Some((0.0, 1.0)) },
            BarSeries { title: "correlation", range: Some((0.0, 1.0)) },
        ];
        let (_, height, varied) = decode(&bar_chart("activations", &series, &rows).unwrap());
        assert_eq!(height, 120 + 2 * BAR_ROW_HEIGHT);
        assert!(varied);
    }
}
