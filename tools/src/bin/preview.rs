//! `preview`: draws a recipe's augmentations of real images into one PNG grid.
//!
//! ```text
//! preview --recipe NAME|FILE.json [--draws N] [--rows N] [--first N] [--seed S] [--cell PX]
//!         [--split NAME] [--max-side N] -o GRID.png INPUT...
//! ```
//!
//! INPUT is image files and folders of images, or one shard set folder. Row `r` of the grid
//! shows image `first + r`: column 0 the image as read, then for each draw `d` in `0..draws`
//! every view of `Recipe::augment` under the key `(seed, epoch = d, index)`. The index is the
//! record's index in the split for a shard set, and the image's position in the input list
//! for files. A shard set row therefore shows the draws that a loader with the same recipe and
//! seed makes for that record in epochs `0..draws`, as u8 pixels before the output stage.
//! `Recipe::augment` runs the steps unfused, so where training applies a recipe fused, a pixel
//! may differ by rounding.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::Parser;
use expanse_augment::pipeline::Recipe;
use expanse_augment::{ImageBuf, ImageRef, SampleKey};
use expanse_dataset::image::{convert_image, ConvertOptions, Store};
use expanse_dataset::shard::{Encoding, ShardSet, MANIFEST_FILE};
use expanse_tools::{load_recipe, recipe_help, UsageError};
use image::imageops::FilterType;
use rayon::prelude::*;

/// Draws per image when `--draws` is not given and the recipe returns one view per draw.
const DEFAULT_DRAWS: u32 = 6;
/// Pixels between cells and around the grid.
const GAP: usize = 4;
/// Height of the strip under each cell that shows the image's size.
const LABEL_HEIGHT: usize = 14;
/// Largest grid side in pixels, to keep a mistyped option from allocating gigabytes.
const MAX_GRID_SIDE: usize = 32_768;
/// Extensions of the files taken from INPUT folders (compared case-insensitively). Files named
/// on the command line are read whatever their name.
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "bmp", "webp"];
/// Colour of the gaps, the label strips and the letterbox around a scaled image.
const BACKGROUND: [u8; 3] = [255, 255, 255];

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Draw a recipe's augmentations of real images into a PNG grid: one image per row, \
             the original in column 0, then each draw's views"
)]
struct Cli {
    /// Recipe name or JSON file; the help text is [`recipe_help`].
    #[arg(long, value_name = "NAME|FILE", help = recipe_help())]
    recipe: String,

    /// Augmented draws per image; draw d uses epoch d of the sample key. [default: 6, or 1
    /// when the recipe returns several views per draw, such as a ten-crop]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    draws: Option<u32>,

    /// Images to show, one per row.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    rows: u32,

    /// Index of the first image shown: the record index in a shard set split, or the position
    /// in the sorted list of input images.
    #[arg(long, default_value_t = 0)]
    first: u64,

    /// Seed of the sample keys.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Side of each square cell in pixels; every image is scaled to fit inside it, keeping its
    /// aspect ratio.
    #[arg(long, default_value_t = 192, value_parser = clap::value_parser!(u32).range(16..=1024))]
    cell: u32,

    /// Split of a shard set INPUT. [default: train]
    #[arg(long)]
    split: Option<String>,

    /// Scale image files down so that the longer side is at most N pixels before augmenting,
    /// as `shardify --max-side N` stores them. Shard records are used as stored.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65535))]
    max_side: Option<u32>,

    /// Output PNG file, replaced atomically.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,

    /// Image files, folders searched recursively for images (sorted, hidden entries skipped),
    /// or one shard set folder.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

/// One input image, decoded to u8 HWC pixels.
struct Sample {
    /// The file path, or `split[index]` for a shard record, for messages.
    name: String,
    /// The sample key's index.
    index: u64,
    pixels: Vec<u8>,
    height: usize,
    width: usize,
    channels: usize,
}

impl Sample {
    fn image(&self) -> anyhow::Result<ImageRef<'_>> {
        ImageRef::new(&self.pixels, self.height, self.width, self.channels)
            .with_context(|| format!("{}: invalid image", self.name))
    }
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => expanse_tools::report(&error),
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let recipe = load_recipe(&cli.recipe)?;
    expanse_tools::check_output_file("-o", &cli.output)?;
    let samples = read_samples(cli)?;

    let first = &samples[0];
    let probe = augment(&recipe, first, cli.seed, 0)?;
    let views = probe.len().max(1);
    let draws = cli.draws.unwrap_or(if views > 1 { 1 } else { DEFAULT_DRAWS });
    let columns = 1 + draws as usize * views;
    let cell = cli.cell as usize;
    let (grid_width, grid_height) = grid_size(samples.len(), columns, cell);
    if grid_width > MAX_GRID_SIDE || grid_height > MAX_GRID_SIDE {
        return Err(UsageError(format!(
            "the grid would be {grid_width}x{grid_height} pixels, over the limit of \
             {MAX_GRID_SIDE} per side; lower --rows, --draws or --cell"
        ))
        .into());
    }

    // Rows are augmented in parallel. The keys fix every draw, so the grid does not depend on
    // the thread count.
    let rows: Vec<Vec<ImageBuf>> = samples
        .par_iter()
        .map(|sample| {
            let mut cells = Vec::with_capacity(columns - 1);
            for draw in 0..draws {
                cells.extend(augment(&recipe, sample, cli.seed, draw)?);
            }
            Ok(cells)
        })
        .collect::<anyhow::Result<_>>()?;

    let mut grid = Grid::new(grid_width, grid_height, cell);
    for (row, (sample, cells)) in samples.iter().zip(&rows).enumerate() {
        grid.draw_cell(row, 0, sample.image()?).with_context(|| sample.name.clone())?;
        for (column, view) in cells.iter().enumerate().take(columns - 1) {
            grid.draw_cell(row, column + 1, view.as_image_ref())
                .with_context(|| format!("{}: view {column}", sample.name))?;
        }
    }
    write_png_atomically(&cli.output, &grid.pixels, grid_width, grid_height)?;

    let text = format!(
        "{}: {} rows x {columns} columns (original, then {draws} draw(s) x {views} view(s)), \
         {grid_width}x{grid_height} pixels, recipe {}, seed {}\n",
        cli.output.display(),
        samples.len(),
        recipe.name.as_deref().unwrap_or(&cli.recipe),
        cli.seed
    );
    expanse_tools::print_stdout(&text)
}

/// Reads the images of the grid's rows from the inputs.
fn read_samples(cli: &Cli) -> anyhow::Result<Vec<Sample>> {
    for input in &cli.inputs {
        if std::fs::metadata(input).is_err() {
            return Err(UsageError(format!("INPUT {} not found", input.display())).into());
        }
    }
    let shard_sets: Vec<&PathBuf> =
        cli.inputs.iter().filter(|input| input.join(MANIFEST_FILE).is_file()).collect();

    let samples = match shard_sets.as_slice() {
        [] => {
            if let Some(split) = &cli.split {
                return Err(UsageError(format!(
                    "--split {split} needs a shard set INPUT, but no INPUT contains {MANIFEST_FILE}"
                ))
                .into());
            }
            read_files(cli)?
        }
        [set] if cli.inputs.len() == 1 => {
            if cli.max_side.is_some() {
                return Err(UsageError(
                    "--max-side applies to image files; shard records are shown as stored".into(),
                )
                .into());
            }
            read_records(set, cli.split.as_deref().unwrap_or("train"), cli.first, cli.rows)?
        }
        _ => {
            return Err(UsageError(format!(
                "{} is a shard set: give it as the only INPUT",
                shard_sets[0].display()
            ))
            .into())
        }
    };
    Ok(samples)
}

/// Lists the input images and decodes those of the requested rows, in parallel.
fn read_files(cli: &Cli) -> anyhow::Result<Vec<Sample>> {
    let mut list = ImageList {
        paths: Vec::new(),
        needed: cli.first.saturating_add(u64::from(cli.rows)),
        output: std::path::absolute(&cli.output).ok(),
        visited: HashSet::new(),
    };
    for input in &cli.inputs {
        if input.is_dir() {
            list.add_folder(input)?;
        } else {
            list.paths.push(input.clone());
        }
        if list.is_full() {
            break;
        }
    }
    let paths = list.paths;
    if paths.len() as u64 <= cli.first {
        return Err(anyhow!(
            "found {} image(s) in the inputs, none at --first {}",
            paths.len(),
            cli.first
        ));
    }

    let options =
        ConvertOptions { store: Store::Raw, max_side: cli.max_side, ..Default::default() };
    let chosen: Vec<(u64, &PathBuf)> =
        (0u64..).zip(&paths).skip(cli.first as usize).take(cli.rows as usize).collect();
    chosen
        .into_par_iter()
        .map(|(index, path)| {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let converted = convert_image(&bytes, &options)
                .map_err(|reason| anyhow!("cannot decode {}: {reason}", path.display()))?;
            Ok(Sample {
                name: path.display().to_string(),
                index,
                pixels: converted.payload,
                height: converted.height as usize,
                width: converted.width as usize,
                channels: usize::from(converted.channels),
            })
        })
        .collect()
}

/// Image files collected from the inputs in order: folders sorted and searched depth first,
/// until `needed` files are found.
struct ImageList {
    paths: Vec<PathBuf>,
    needed: u64,
    /// The grid itself, left out when it is written into an input folder.
    output: Option<PathBuf>,
    /// Canonical paths of the folders searched so far, so that a symlink loop is searched once.
    visited: HashSet<PathBuf>,
}

impl ImageList {
    fn is_full(&self) -> bool {
        self.paths.len() as u64 >= self.needed
    }

    /// Adds the image files under `folder`, leaving out hidden entries.
    fn add_folder(&mut self, folder: &Path) -> anyhow::Result<()> {
        let canonical = std::fs::canonicalize(folder)
            .with_context(|| format!("cannot resolve {}", folder.display()))?;
        if !self.visited.insert(canonical) {
            log::warn!("{} leads to a folder searched already; skipped", folder.display());
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
            .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
            .with_context(|| format!("cannot list {}", folder.display()))?;
        entries.sort();

        for path in entries {
            if self.is_full() {
                break;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                self.add_folder(&path)?;
                continue;
            }
            let extension = path.extension().unwrap_or_default().to_string_lossy().to_lowercase();
            let is_output = self.output.is_some()
                && std::path::absolute(&path).ok().as_ref() == self.output.as_ref();
            if IMAGE_EXTENSIONS.contains(&extension.as_str()) && !is_output {
                self.paths.push(path);
            }
        }
        Ok(())
    }
}

/// Reads records `first..first + rows` of `split` in the shard set `dir`, checking each
/// record's checksum and decoding JPEG records.
fn read_records(dir: &Path, split: &str, first: u64, rows: u32) -> anyhow::Result<Vec<Sample>> {
    let set = ShardSet::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let split = set.split(split).map_err(|e| UsageError(e.to_string()))?;
    if first >= split.len() as u64 {
        return Err(UsageError(format!(
            "--first {first} is past the end of split {:?}, which has {} records",
            split.name(),
            split.len()
        ))
        .into());
    }

    let end = (first as usize).saturating_add(rows as usize).min(split.len());
    let options = ConvertOptions { store: Store::Raw, ..Default::default() };
    (first as usize..end)
        .into_par_iter()
        .map(|i| {
            let name = format!("{}[{i}]", split.name());
            let payload = split.checked_record(i).with_context(|| format!("cannot read {name}"))?;
            let meta = split.meta(i);
            let sample = |pixels: Vec<u8>, height: u32, width: u32, channels: u8| Sample {
                name: name.clone(),
                index: i as u64,
                pixels,
                height: height as usize,
                width: width as usize,
                channels: usize::from(channels),
            };
            match meta.encoding {
                Encoding::Raw => {
                    Ok(sample(payload.to_vec(), meta.height, meta.width, meta.channels))
                }
                Encoding::Jpeg => {
                    let converted = convert_image(payload, &options)
                        .map_err(|reason| anyhow!("cannot decode {name}: {reason}"))?;
                    let (height, width) = (converted.height, converted.width);
                    Ok(sample(converted.payload, height, width, converted.channels))
                }
            }
        })
        .collect()
}

/// Returns the views of one draw of `recipe` on `sample`.
fn augment(
    recipe: &Recipe,
    sample: &Sample,
    seed: u64,
    draw: u32,
) -> anyhow::Result<Vec<ImageBuf>> {
    let key = SampleKey::new(seed, u64::from(draw), sample.index);
    recipe
        .augment(sample.image()?, key)
        .with_context(|| format!("the recipe failed on {} in draw {draw}", sample.name))
}

/// Returns the width and height of a grid of `rows` x `columns` cells of side `cell`, each
/// with its label strip, separated and surrounded by [`GAP`] pixels.
fn grid_size(rows: usize, columns: usize, cell: usize) -> (usize, usize) {
    let width = GAP + columns * (cell + GAP);
    let height = GAP + rows * (cell + LABEL_HEIGHT + GAP);
    (width, height)
}

/// An RGB canvas of cells.
struct Grid {
    pixels: Vec<u8>,
    width: usize,
    cell: usize,
}

impl Grid {
    fn new(width: usize, height: usize, cell: usize) -> Self {
        let pixels = BACKGROUND.repeat(width * height);
        Grid { pixels, width, cell }
    }

    /// Draws `image` scaled to fit the cell at (`row`, `column`), centred, with its size
    /// written below it.
    ///
    /// An image that fits is enlarged by the largest whole factor that still fits, with
    /// nearest-neighbour sampling, so its pixels stay visible as squares. A larger one is
    /// shrunk with a triangle (bilinear, antialiased) filter.
    fn draw_cell(&mut self, row: usize, column: usize, image: ImageRef<'_>) -> anyhow::Result<()> {
        let rgb = to_rgb(image)?;
        let (width, height) = (image.width(), image.height());
        let rgb = image::RgbImage::from_raw(width as u32, height as u32, rgb)
            .ok_or_else(|| anyhow!("{width}x{height} image with a wrong buffer length"))?;

        let cell = self.cell;
        let scaled = if width <= cell && height <= cell {
            let factor = (cell / width).min(cell / height);
            let (w, h) = ((width * factor) as u32, (height * factor) as u32);
            image::imageops::resize(&rgb, w, h, FilterType::Nearest)
        } else {
            let scale = (cell as f64 / width as f64).min(cell as f64 / height as f64);
            let w = ((width as f64 * scale).round() as u32).clamp(1, cell as u32);
            let h = ((height as f64 * scale).round() as u32).clamp(1, cell as u32);
            image::imageops::resize(&rgb, w, h, FilterType::Triangle)
        };

        let left = GAP + column * (cell + GAP);
        let top = GAP + row * (cell + LABEL_HEIGHT + GAP);
        let (w, h) = (scaled.width() as usize, scaled.height() as usize);
        let (x0, y0) = (left + (cell - w) / 2, top + (cell - h) / 2);
        for y in 0..h {
            let source = &scaled.as_raw()[y * w * 3..(y + 1) * w * 3];
            let start = ((y0 + y) * self.width + x0) * 3;
            self.pixels[start..start + w * 3].copy_from_slice(source);
        }

        self.draw_label(&format!("{width}x{height}"), left, top + cell);
        Ok(())
    }

    /// Writes `text` centred in the label strip that starts at (`left`, `top`): glyphs of 3x5
    /// dots drawn at 2x, or at 1x when that is too wide, or not at all when even 1x is.
    fn draw_label(&mut self, text: &str, left: usize, top: usize) {
        let Some(scale) = [2, 1].into_iter().find(|s| text_width(text, *s) <= self.cell) else {
            return;
        };
        let x0 = left + (self.cell - text_width(text, scale)) / 2;
        let y0 = top + (LABEL_HEIGHT - 5 * scale) / 2;

        for (i, character) in text.chars().enumerate() {
            let Some(glyph) = glyph(character) else { continue };
            let glyph_left = x0 + i * 4 * scale;
            for (dy, bits) in glyph.iter().enumerate() {
                for dx in 0..3 {
                    if bits & (0b100 >> dx) == 0 {
                        continue;
                    }
                    for sy in 0..scale {
                        for sx in 0..scale {
                            let x = glyph_left + dx * scale + sx;
                            let y = y0 + dy * scale + sy;
                            let at = (y * self.width + x) * 3;
                            self.pixels[at..at + 3].copy_from_slice(&[0, 0, 0]);
                        }
                    }
                }
            }
        }
    }
}

/// Returns the width in pixels of `text` in 3x5 glyphs with one dot between them, at `scale`.
fn text_width(text: &str, scale: usize) -> usize {
    let glyphs = text.chars().count();
    (glyphs * 4).saturating_sub(1) * scale
}

/// Returns the 3x5 dot pattern of a digit or `x`, one row per byte, bit 2 the left dot.
fn glyph(character: char) -> Option<[u8; 5]> {
    const DIGITS: [[u8; 5]; 10] = [
        [0b111, 0b101, 0b101, 0b101, 0b111],
        [0b010, 0b110, 0b010, 0b010, 0b111],
        [0b111, 0b001, 0b111, 0b100, 0b111],
        [0b111, 0b001, 0b111, 0b001, 0b111],
        [0b101, 0b101, 0b111, 0b001, 0b001],
        [0b111, 0b100, 0b111, 0b001, 0b111],
        [0b111, 0b100, 0b111, 0b101, 0b111],
        [0b111, 0b001, 0b001, 0b001, 0b001],
        [0b111, 0b101, 0b111, 0b101, 0b111],
        [0b111, 0b101, 0b111, 0b001, 0b111],
    ];
    match character {
        'x' => Some([0b000, 0b101, 0b010, 0b101, 0b000]),
        _ => character.to_digit(10).map(|d| DIGITS[d as usize]),
    }
}

/// Returns the pixels of `image` as RGB: grey is repeated into the three channels.
fn to_rgb(image: ImageRef<'_>) -> anyhow::Result<Vec<u8>> {
    match image.channels() {
        3 => Ok(image.data().to_vec()),
        1 => Ok(image.data().iter().flat_map(|&v| [v, v, v]).collect()),
        channels => Err(anyhow!("cannot show a {channels}-channel image; 1 or 3 are supported")),
    }
}

/// Writes `pixels` (RGB, `width` x `height`) as a PNG to `path` atomically (see
/// [`expanse_tools::write_file_atomically`]).
fn write_png_atomically(
    path: &Path,
    pixels: &[u8],
    width: usize,
    height: usize,
) -> anyhow::Result<()> {
    use image::ImageEncoder;

    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width as u32, height as u32, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot encode {} as PNG", path.display()))?;
    expanse_tools::write_file_atomically(path, &png)
}
