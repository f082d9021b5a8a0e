//! The fused path of a plan: resize only the region under the crop window, then write flip,
//! lighting and output values in one pass. See [`RecipePlan`](super::RecipePlan) for when it
//! applies and how close it is to the step-by-step result.

use std::cell::RefCell;

use fast_image_resize::{self as fr, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::colour::PcaLighting;
use crate::crop::{CropWindow, RandomCrop};
use crate::error::Result;
use crate::flip::HorizontalFlip;
use crate::geometry::{
    resize_algorithm, shorter_side_size, CenterCrop, Filter, ResizeTo, ScaleJitter,
};
use crate::image::{ImageBuf, ImageRef};
use crate::key::SampleKey;
use crate::normalize::NormalizeTable;
use crate::op::Transform;

use super::Step;

thread_local! {
    /// One resizer per thread, so that its scratch buffers are reused between samples.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// The shorter side of the resize: drawn by a scale jitter, or fixed.
#[derive(Debug, Clone)]
enum ShorterSide {
    Jitter(ScaleJitter),
    /// The side, the filter and whether shrinking is antialiased.
    Fixed(usize, Filter, bool),
}

/// The crop inside the resized image.
#[derive(Debug, Clone)]
enum Crop {
    Random(RandomCrop),
    Center(CenterCrop),
}

/// A recognised "resize shorter side, crop, flip, lighting" step list, with the positions
/// whose generators the flip and lighting draw from.
#[derive(Debug, Clone)]
pub(crate) struct FusedPlan {
    shorter_side: ShorterSide,
    crop: Crop,
    flip: Option<(u64, HorizontalFlip)>,
    lighting: Option<(u64, PcaLighting)>,
    table: NormalizeTable,
}

impl FusedPlan {
    /// Recognises `steps`, or returns `None` when they do not have the fused form.
    pub(crate) fn new(steps: &[Step], table: NormalizeTable) -> Option<Self> {
        let (first, rest) = steps.split_first()?;
        let shorter_side = match first {
            Step::ScaleJitter(jitter) => ShorterSide::Jitter(jitter.clone()),
            Step::Resize(resize) => match resize.size {
                ResizeTo::ShorterSide(side) => {
                    ShorterSide::Fixed(side, resize.filter, resize.antialias)
                }
                ResizeTo::Exact { .. } => return None,
            },
            _ => return None,
        };

        let (second, rest) = rest.split_first()?;
        let crop = match second {
            Step::RandomCrop(crop)
                if crop.padding == 0 && crop.height.is_some() && crop.width.is_some() =>
            {
                Crop::Random(*crop)
            }
            Step::CenterCrop(crop) => Crop::Center(crop.clone()),
            _ => return None,
        };

        let mut flip = None;
        let mut lighting = None;
        for (position, step) in rest.iter().enumerate() {
            let position = position as u64 + 2;
            match step {
                Step::HorizontalFlip(op) if flip.is_none() && lighting.is_none() => {
                    flip = Some((position, *op));
                }
                Step::PcaLighting(op) if lighting.is_none() => {
                    lighting = Some((position, op.clone()));
                }
                _ => return None,
            }
        }
        Some(Self { shorter_side, crop, flip, lighting, table })
    }

    /// Writes the sample, or returns `None` where this image needs the step-by-step path
    /// (a channel count or size the fused path does not handle, or a window outside the image,
    /// which the steps report or pad). The caller has checked `out.len()`.
    pub(crate) fn apply(
        &self,
        image: ImageRef<'_>,
        key: SampleKey,
        out: &mut [f32],
    ) -> Option<Result<()>> {
        let channels = image.channels();
        let pixel_type = match channels {
            1 => PixelType::U8,
            2 => PixelType::U8x2,
            3 => PixelType::U8x3,
            4 => PixelType::U8x4,
            _ => return None,
        };
        if self.lighting.is_some() && channels != 3 {
            return None;
        }

        let (height, width) = (image.height(), image.width());
        let (side, algorithm) = match &self.shorter_side {
            ShorterSide::Jitter(jitter) => match jitter.draw_shorter_side(&mut key.rng(0)) {
                Ok(side) => (side, resize_algorithm(jitter.filter, jitter.antialias)),
                Err(error) => return Some(Err(error)),
            },
            ShorterSide::Fixed(side, filter, antialias) => {
                (*side, resize_algorithm(*filter, *antialias))
            }
        };
        let (resized_height, resized_width) = shorter_side_size(height, width, side);
        let fits_u32 = |n: usize| (1..=u32::MAX as usize).contains(&n);
        if ![height, width, resized_height, resized_width].into_iter().all(fits_u32) {
            return None;
        }

        let window = match &self.crop {
            Crop::Random(crop) => {
                match crop.sample_window(resized_height, resized_width, &mut key.rng(1)) {
                    Ok(window) => window,
                    Err(error) => return Some(Err(error)),
                }
            }
            Crop::Center(crop) => {
                if crop.height == 0
                    || crop.width == 0
                    || crop.height > resized_height
                    || crop.width > resized_width
                {
                    return None;
                }
                CropWindow {
                    top: (resized_height - crop.height) / 2,
                    left: (resized_width - crop.width) / 2,
                    height: crop.height,
                    width: crop.width,
                }
            }
        };

        let flipped = match &self.flip {
            Some((position, flip)) => match flip.decide(&mut key.rng(*position)) {
                Ok(flipped) => flipped,
                Err(error) => return Some(Err(error)),
            },
            None => false,
        };
        let tables = match self.value_tables(channels, key) {
            Ok(tables) => tables,
            Err(error) => return Some(Err(error)),
        };

        let region = Region {
            scale_y: height as f64 / resized_height as f64,
            scale_x: width as f64 / resized_width as f64,
            window,
        };
        let pixels = resample(image, pixel_type, &region, algorithm)?;
        write_planes(&pixels, window.height, window.width, channels, flipped, &tables, out);
        Some(Ok(()))
    }

    /// Builds, per channel, the output value of each byte after lighting. The lighting's
    /// per-channel byte map is read off by running the op itself on a 256-pixel ramp, so it
    /// draws exactly what the step draws and rounds exactly as the step rounds.
    fn value_tables(&self, channels: usize, key: SampleKey) -> Result<Vec<[f32; 256]>> {
        let mut tables: Vec<[f32; 256]> = (0..channels).map(|k| *self.table.channel(k)).collect();
        let Some((position, lighting)) = &self.lighting else {
            return Ok(tables);
        };

        let ramp: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
        let mut ramp = ImageBuf::new(ramp, 1, 256, 3)?;
        lighting.transform_in_place(&mut ramp, &mut key.rng(*position))?;

        for (k, table) in tables.iter_mut().enumerate() {
            let source = self.table.channel(k);
            for (v, value) in table.iter_mut().enumerate() {
                *value = source[usize::from(ramp.data()[v * 3 + k])];
            }
        }
        Ok(tables)
    }
}

/// The crop window in resized coordinates and the source pixels per resized pixel.
struct Region {
    scale_y: f64,
    scale_x: f64,
    window: CropWindow,
}

/// Resizes the source region under `region.window` to the window's size, u8 HWC, or returns
/// `None` where the resizer rejects the region.
///
/// A crop box option, not a cropped view, so the filter also reads source pixels beyond the
/// region's edges, as the full resize does.
fn resample(
    image: ImageRef<'_>,
    pixel_type: PixelType,
    region: &Region,
    algorithm: ResizeAlg,
) -> Option<Vec<u8>> {
    let window = region.window;
    let (height, width) = (image.height() as f64, image.width() as f64);
    // Rounding can put the far edge a hair past the image, which the resizer rejects.
    let top = window.top as f64 * region.scale_y;
    let left = window.left as f64 * region.scale_x;
    let bottom = ((window.top + window.height) as f64 * region.scale_y).min(height);
    let right = ((window.left + window.width) as f64 * region.scale_x).min(width);

    let source = fr::images::ImageRef::new(
        image.width() as u32,
        image.height() as u32,
        image.data(),
        pixel_type,
    )
    .ok()?;
    let mut output = fr::images::Image::new(window.width as u32, window.height as u32, pixel_type);
    let options = ResizeOptions::new().resize_alg(algorithm).use_alpha(false).crop(
        left,
        top,
        right - left,
        bottom - top,
    );
    let resized =
        RESIZER.with(|resizer| resizer.borrow_mut().resize(&source, &mut output, &options));
    resized.ok()?;
    Some(output.into_vec())
}

/// Writes u8 HWC `pixels` into `out` as CHW through the per-channel `tables`, mirrored when
/// `flipped`.
fn write_planes(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    flipped: bool,
    tables: &[[f32; 256]],
    out: &mut [f32],
) {
    match channels {
        1 => write_planes_n::<1>(pixels, height, width, flipped, tables, out),
        2 => write_planes_n::<2>(pixels, height, width, flipped, tables, out),
        3 => write_planes_n::<3>(pixels, height, width, flipped, tables, out),
        _ => write_planes_n::<4>(pixels, height, width, flipped, tables, out),
    }
}

fn write_planes_n<const C: usize>(
    pixels: &[u8],
    height: usize,
    width: usize,
    flipped: bool,
    tables: &[[f32; 256]],
    out: &mut [f32],
) {
    let plane = height * width;
    for (y, row) in pixels.chunks_exact(width * C).enumerate() {
        for (k, table) in tables.iter().enumerate().take(C) {
            let out_row = &mut out[k * plane + y * width..][..width];
            let row_pixels = row.chunks_exact(C);
            if flipped {
                for (value, pixel) in out_row.iter_mut().zip(row_pixels.rev()) {
                    *value = table[usize::from(pixel[k])];
                }
            } else {
                for (value, pixel) in out_row.iter_mut().zip(row_pixels) {
                    *value = table[usize::from(pixel[k])];
                }
            }
        }
    }
    debug_assert_eq!(pixels.len(), plane * C);
}
