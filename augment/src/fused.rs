//! The crop, flip and normalise recipe fused into one pass over the output.

use crate::crop::{CropGeometry, CropWindow};
use crate::error::{Error, Result};
use crate::image::ImageRef;
use crate::key::{bernoulli, SampleKey};
use crate::normalize::NormalizeTable;
use crate::pad::PadMode;
use crate::recipe::CropFlipNormalize;

/// A [`CropFlipNormalize`] recipe validated for one input shape, with its normalisation table
/// built. Applying it to an image allocates nothing, and only the image's shape and the output
/// length can make it fail.
///
/// Made by [`CropFlipNormalize::prepare`]. Output: f32 CHW,
/// `out[(k * out_height + y) * out_width + x]`.
#[derive(Debug, Clone)]
pub struct CropFlipNormalizePlan {
    height: usize,
    width: usize,
    channels: usize,
    out_height: usize,
    out_width: usize,
    padding: usize,
    pad_mode: PadMode,
    /// `None` when the recipe has no crop: the window is then the whole unpadded image.
    crop: Option<CropGeometry>,
    /// `None` when the recipe has no flip.
    flip_probability: Option<f64>,
    table: NormalizeTable,
}

impl CropFlipNormalizePlan {
    pub(crate) fn new(
        recipe: &CropFlipNormalize,
        height: usize,
        width: usize,
        channels: usize,
    ) -> Result<Self> {
        if height == 0 || width == 0 || channels == 0 {
            return Err(Error::ZeroDimension { height, width, channels });
        }

        let crop = recipe.crop.map(|crop| crop.geometry(height, width)).transpose()?;
        if let Some(flip) = &recipe.flip {
            flip.validate()?;
        }
        let table = recipe.normalize.table(channels)?;

        let (out_height, out_width) = crop.map_or((height, width), |g| (g.height, g.width));
        Ok(Self {
            height,
            width,
            channels,
            out_height,
            out_width,
            padding: recipe.crop.map_or(0, |crop| crop.padding),
            pad_mode: recipe.crop.map_or(PadMode::Zero, |crop| crop.pad_mode),
            crop,
            flip_probability: recipe.flip.map(|flip| flip.probability),
            table,
        })
    }

    /// Returns the input shape `(height, width, channels)` the plan accepts.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }

    /// Returns the output shape `(channels, height, width)`.
    pub fn output_shape(&self) -> (usize, usize, usize) {
        (self.channels, self.out_height, self.out_width)
    }

    /// Returns the f32 count of one output sample.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_height * self.out_width
    }

    /// Draws the random choices for `key`: the crop window (padded coordinates) and whether
    /// to flip.
    pub fn draw(&self, key: SampleKey) -> (CropWindow, bool) {
        let window = match &self.crop {
            Some(geometry) => geometry.sample_window(&mut key.rng(CropFlipNormalize::CROP_OP)),
            None => CropWindow { top: 0, left: 0, height: self.height, width: self.width },
        };
        let flipped = match self.flip_probability {
            Some(probability) => bernoulli(&mut key.rng(CropFlipNormalize::FLIP_OP), probability),
            None => false,
        };
        (window, flipped)
    }

    /// Writes the augmented `image` for `key` into `out`, f32 CHW.
    ///
    /// # Errors
    ///
    /// [`Error::PlanShape`] when the image's shape differs from [`input_shape`](Self::input_shape),
    /// [`Error::OutputLength`] when `out.len()` differs from [`output_len`](Self::output_len).
    pub fn apply(&self, image: ImageRef<'_>, key: SampleKey, out: &mut [f32]) -> Result<()> {
        let found = (image.height(), image.width(), image.channels());
        if found != self.input_shape() {
            return Err(Error::PlanShape {
                height: self.height,
                width: self.width,
                channels: self.channels,
                found_height: found.0,
                found_width: found.1,
                found_channels: found.2,
            });
        }
        if out.len() != self.output_len() {
            return Err(Error::OutputLength { expected: self.output_len(), actual: out.len() });
        }

        self.write(image, key, out);
        Ok(())
    }

    /// Writes one sample. The caller has checked the image shape and `out.len()`.
    pub(crate) fn write(&self, image: ImageRef<'_>, key: SampleKey, out: &mut [f32]) {
        let (window, flipped) = self.draw(key);
        let padding = self.padding as isize;
        let plane = self.out_height * self.out_width;

        // Window columns [first, end) read source columns inside the image, as one straight
        // run starting at `run_start`. The columns outside it take the padding rule.
        let offset = padding - window.left as isize;
        let first = offset.clamp(0, self.out_width as isize) as usize;
        let end = (offset + self.width as isize).clamp(first as isize, self.out_width as isize);
        let end = end as usize;
        // An empty run may lie wholly in the right padding, past the end of the row, so it
        // starts at 0 instead.
        let run_start = if end > first { window.left + first - self.padding } else { 0 };
        let run =
            ColumnRun { run_start, first, end, left: window.left as isize - padding, flipped };

        for y in 0..self.out_height {
            let source_y = window.top as isize + y as isize - padding;
            let Some(source_y) = self.pad_mode.source_index(source_y, self.height) else {
                // A zero-padding row: every channel reads pixel value 0.
                for k in 0..self.channels {
                    let row = &mut out[k * plane + y * self.out_width..][..self.out_width];
                    row.fill(self.table.channel(k)[0]);
                }
                continue;
            };

            let row = image.row(source_y);
            let target = RowTarget { out: &mut *out, plane, offset: y * self.out_width };
            match self.channels {
                1 => self.write_row(row, target, &run, 1),
                3 => self.write_row(row, target, &run, 3),
                channels => self.write_row(row, target, &run, channels),
            }
        }
    }

    /// Writes output row `target` of every channel from source `row`. Inlined so that the
    /// literal channel counts at the call sites become constants in the pixel loops.
    #[inline(always)]
    fn write_row(&self, row: &[u8], target: RowTarget<'_>, run: &ColumnRun, channels: usize) {
        let out_width = self.out_width;
        let (interior_start, interior_end) = if run.flipped {
            (out_width - run.end, out_width - run.first)
        } else {
            (run.first, run.end)
        };
        let source =
            &row[run.run_start * channels..(run.run_start + run.end - run.first) * channels];

        for k in 0..channels {
            let table = self.table.channel(k);
            let out_row = &mut target.out[k * target.plane + target.offset..][..out_width];

            let interior = &mut out_row[interior_start..interior_end];
            let pixels = source.chunks_exact(channels);
            if run.flipped {
                for (value, pixel) in interior.iter_mut().zip(pixels.rev()) {
                    *value = table[usize::from(pixel[k])];
                }
            } else {
                for (value, pixel) in interior.iter_mut().zip(pixels) {
                    *value = table[usize::from(pixel[k])];
                }
            }

            for x in (0..interior_start).chain(interior_end..out_width) {
                let window_x = if run.flipped { out_width - 1 - x } else { x };
                let source_x = self.pad_mode.source_index(run.left + window_x as isize, self.width);
                let byte = source_x.map_or(0, |sx| row[sx * channels + k]);
                out_row[x] = table[usize::from(byte)];
            }
        }
    }
}

/// The columns of one sample's window that read inside the source image.
struct ColumnRun {
    /// Source column read by window column `first`.
    run_start: usize,
    /// First window column inside the image.
    first: usize,
    /// One past the last window column inside the image (`end >= first`).
    end: usize,
    /// Source column of window column 0 (negative inside the left padding).
    left: isize,
    /// Whether output column `x` shows window column `out_width - 1 - x`.
    flipped: bool,
}

/// One output row position, in every channel plane of the sample's CHW buffer.
struct RowTarget<'a> {
    out: &'a mut [f32],
    plane: usize,
    offset: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crop::RandomCrop;
    use crate::flip::HorizontalFlip;
    use crate::image::ImageBuf;

    /// Builds a non-square image whose bytes differ within each channel (while fewer than 256).
    fn ramp(height: usize, width: usize, channels: usize) -> Vec<u8> {
        (0..height * width * channels).map(|i| (i * 37 % 256) as u8).collect()
    }

    /// Runs the unfused ops one after the other with the recipe's generators.
    fn compose(recipe: &CropFlipNormalize, image: ImageRef<'_>, key: SampleKey) -> Vec<f32> {
        let (height, width, channels) = (image.height(), image.width(), image.channels());
        let mut pixels = match &recipe.crop {
            Some(crop) => crop.apply(image, &mut key.rng(CropFlipNormalize::CROP_OP)).unwrap(),
            None => ImageBuf::new(image.data().to_vec(), height, width, channels).unwrap(),
        };
        if let Some(flip) = &recipe.flip {
            flip.apply(&mut pixels, &mut key.rng(CropFlipNormalize::FLIP_OP)).unwrap();
        }
        let mut out = vec![f32::NAN; pixels.data().len()];
        recipe.normalize.apply(pixels.as_image_ref(), &mut out).unwrap();
        out
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn fused_equals_composition() {
        let shapes = [(1, 1), (1, 5), (4, 1), (5, 3), (6, 9), (10, 7), (32, 32)];
        let modes = [PadMode::Zero, PadMode::Reflect, PadMode::Edge];
        let mut cases = 0;

        for (height, width) in shapes {
            for channels in [1, 3] {
                let data = ramp(height, width, channels);
                let image = ImageRef::new(&data, height, width, channels).unwrap();
                let mean: Vec<f32> = (0..channels).map(|k| 100.0 + 10.5 * k as f32).collect();
                let std: Vec<f32> = (0..channels).map(|k| 60.0 + 3.25 * k as f32).collect();

                for padding in [0, 1, 4, 10] {
                    for pad_mode in modes {
                        let crops = [
                            RandomCrop::input_size(padding, pad_mode),
                            RandomCrop::new(height.div_ceil(2), width, padding, pad_mode),
                            RandomCrop::new(height + padding, width.div_ceil(2), padding, pad_mode),
                        ];
                        for crop in crops {
                            let recipe = CropFlipNormalize {
                                crop: Some(crop),
                                flip: Some(HorizontalFlip::new(0.5)),
                                normalize: crate::Normalize::new(mean.clone(), std.clone()),
                            };
                            let plan = recipe.prepare(height, width, channels).unwrap();
                            let mut fused = vec![f32::NAN; plan.output_len()];

                            for index in 0..24 {
                                let key = SampleKey::new(17, 2, index);
                                plan.apply(image, key, &mut fused).unwrap();

                                let expected = compose(&recipe, image, key);
                                assert_eq!(
                                    bits(&fused),
                                    bits(&expected),
                                    "shape {height}x{width}x{channels}, {crop:?}, key {key:?}"
                                );
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 7 * 2 * 4 * 3 * 3 * 24);
    }

    #[test]
    fn fused_flip_both_ways_seen() {
        let recipe = CropFlipNormalize::cifar(4, vec![0.0], vec![1.0]);
        let plan = recipe.prepare(8, 6, 1).unwrap();

        let flips = (0..64).filter(|&index| plan.draw(SampleKey::new(0, 0, index)).1).count();

        assert!(flips > 0, "no sample of 64 flipped");
        assert!(flips < 64, "every sample of 64 flipped");
    }

    #[test]
    fn fused_same_key_same_output() {
        let data = ramp(12, 10, 3);
        let image = ImageRef::new(&data, 12, 10, 3).unwrap();
        let recipe = CropFlipNormalize::cifar(4, vec![120.0, 110.0, 100.0], vec![60.0]);
        let key = SampleKey::new(5, 9, 300);
        let mut first = vec![0.0f32; recipe.output_len(12, 10, 3)];
        let mut second = vec![1.0f32; first.len()];

        recipe.apply(image, key, &mut first).unwrap();
        recipe.apply(image, key, &mut second).unwrap();

        assert_eq!(bits(&first), bits(&second));
    }

    #[test]
    fn fused_epoch_changes_crops() {
        let recipe = CropFlipNormalize::cifar(4, vec![0.0], vec![1.0]);
        let plan = recipe.prepare(32, 32, 3).unwrap();
        let batch = 64;

        let changed = (0..batch)
            .filter(|&index| {
                plan.draw(SampleKey::new(1, 0, index)) != plan.draw(SampleKey::new(1, 1, index))
            })
            .count();

        // 81 windows x 2 flips: two independent draws agree with chance 1/162.
        assert!(changed >= batch as usize - 4, "only {changed} of {batch} samples changed");
    }

    #[test]
    fn fused_zero_padding_reads_normalized_zero() {
        // A 1x1 image padded by 1 and cropped 3x3 at the only position keeps the pixel in the
        // middle, and the rest is pixel value 0.
        let recipe = CropFlipNormalize {
            crop: Some(RandomCrop::new(3, 3, 1, PadMode::Zero)),
            flip: None,
            normalize: crate::Normalize::new(vec![10.0], vec![2.0]),
        };
        let image = ImageRef::new(&[30], 1, 1, 1).unwrap();
        let mut out = [0.0f32; 9];

        recipe.apply(image, SampleKey::new(0, 0, 0), &mut out).unwrap();

        assert_eq!(out, [-5.0, -5.0, -5.0, -5.0, 10.0, -5.0, -5.0, -5.0, -5.0]);
    }

    #[test]
    fn fused_rejects_bad_shapes_and_lengths() {
        let recipe = CropFlipNormalize::cifar(2, vec![0.0], vec![1.0]);
        let plan = recipe.prepare(4, 4, 1).unwrap();
        let data = [0u8; 16];
        let image = ImageRef::new(&data, 4, 4, 1).unwrap();
        let other = ImageRef::new(&data, 2, 8, 1).unwrap();
        let mut short = [7.0f32; 15];
        let mut exact = [0.0f32; 16];

        let length = plan.apply(image, SampleKey::new(0, 0, 0), &mut short).unwrap_err();
        let shape = plan.apply(other, SampleKey::new(0, 0, 0), &mut exact).unwrap_err();

        assert_eq!(length, Error::OutputLength { expected: 16, actual: 15 });
        assert_eq!(short, [7.0; 15]);
        assert!(matches!(shape, Error::PlanShape { found_height: 2, found_width: 8, .. }));
    }

    #[test]
    fn prepare_reports_each_bad_parameter() {
        let mut recipe = CropFlipNormalize::cifar(0, vec![0.0], vec![1.0]);
        recipe.crop = Some(RandomCrop::new(5, 5, 0, PadMode::Zero));
        let too_large = recipe.prepare(4, 4, 1).unwrap_err();
        recipe.crop = None;
        recipe.flip = Some(HorizontalFlip::new(2.0));
        let bad_flip = recipe.prepare(4, 4, 1).unwrap_err();
        recipe.flip = None;
        recipe.normalize.std = vec![0.0];
        let bad_std = recipe.prepare(4, 4, 1).unwrap_err();

        assert!(matches!(too_large, Error::CropTooLarge { crop_height: 5, .. }));
        assert_eq!(bad_flip, Error::InvalidProbability { value: 2.0 });
        assert_eq!(bad_std, Error::InvalidStd { channel: 0, value: 0.0 });
        assert!(matches!(recipe.prepare(0, 4, 1), Err(Error::ZeroDimension { .. })));
    }
}
