//! Occlusion: random erasing (Zhong et al. 2017, torchvision semantics) and cutout (DeVries and
//! Taylor 2017).

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::crop::CropWindow;
use crate::error::{invalid, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::key::{bernoulli, uniform_inclusive};
use crate::op::{OpRng, Transform};
use crate::sample::uniform_f64;

/// Attempts at a window that fits before random erasing gives up, as in torchvision.
const ERASE_ATTEMPTS: usize = 10;

/// The fill of an erased window.
///
/// Serde: `{"constant": 0}` or `"random"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EraseValue {
    /// The same value (0..255) in every channel.
    Constant(u8),
    /// Independent uniform bytes in `0..=255`, one per value of the window. torchvision fills
    /// with standard normal values of a normalised f32 tensor instead; on u8 pixels the uniform
    /// bytes play that role.
    Random,
}

impl Default for EraseValue {
    fn default() -> Self {
        EraseValue::Constant(0)
    }
}

/// Random erasing of u8 HWC images with torchvision's `RandomErasing` algorithm.
///
/// With probability `probability`, erases one rectangle whose area is a uniform fraction in
/// `scale` of the image area and whose aspect ratio (height / width) is log-uniform in
/// `ratio`. Each of up to 10 attempts computes `h = round(sqrt(area * aspect))` and
/// `w = round(sqrt(area / aspect))` (halves to even, as Python's `round`) and keeps the first
/// with `h < height` and `w < width`. When no attempt fits, the image is unchanged.
///
/// Draws, in order: one [`bernoulli`] for whether to erase. Then, per attempt, one
/// [`uniform_f64`] for the area fraction and one for the log aspect ratio. For the window
/// kept, the top row and then the left column by [`uniform_inclusive`]. Last, for
/// [`EraseValue::Random`], the fill bytes (see [`RandomErasing::draw_fill`]). torchvision draws its random fill before the position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomErasing {
    /// Chance of erasing, in `[0, 1]`.
    #[serde(default = "default_probability")]
    pub probability: f64,
    /// Range of the erased area as a fraction of the image area, within `[0, 1]`.
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    /// Range of the aspect ratio (height / width), above 0.
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    /// Fill of the erased window.
    #[serde(default)]
    pub value: EraseValue,
}

fn default_probability() -> f64 {
    0.5
}

fn default_scale() -> [f64; 2] {
    [0.02, 0.33]
}

fn default_ratio() -> [f64; 2] {
    [0.3, 3.3]
}

impl Default for RandomErasing {
    /// torchvision's defaults: probability 0.5, scale (0.02, 0.33), ratio (0.3, 3.3), fill 0.
    fn default() -> Self {
        Self {
            probability: default_probability(),
            scale: default_scale(),
            ratio: default_ratio(),
            value: EraseValue::default(),
        }
    }
}

impl RandomErasing {
    /// Creates random erasing with torchvision's scale and ratio ranges and the given chance
    /// and fill.
    pub fn new(probability: f64, value: EraseValue) -> Self {
        Self { probability, value, ..Self::default() }
    }

    /// Checks the probability, scale and ratio ranges.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        check_probability("random_erasing", self.probability)?;
        let [low, high] = self.scale;
        if !(0.0 <= low && low <= high && high <= 1.0) {
            return Err(invalid(
                "random_erasing",
                "scale",
                self.scale,
                "a range [low, high] with 0 <= low <= high <= 1",
            ));
        }
        let [low, high] = self.ratio;
        if !(0.0 < low && low <= high && high.is_finite()) {
            return Err(invalid(
                "random_erasing",
                "ratio",
                self.ratio,
                "a finite range [low, high] with 0 < low <= high",
            ));
        }
        Ok(())
    }

    /// Draws the window to erase in a `height` x `width` image (image coordinates), or `None`
    /// when the Bernoulli draw is false or no attempt fits. The window can have a zero side when the
    /// drawn area rounds to 0.
    ///
    /// # Errors
    ///
    /// The errors of [`RandomErasing::validate`], before any draw.
    pub fn draw_window<R: RngCore + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> Result<Option<CropWindow>> {
        self.validate()?;
        if !bernoulli(rng, self.probability) {
            return Ok(None);
        }

        let area = (height as f64) * (width as f64);
        let log_ratio = [self.ratio[0].ln(), self.ratio[1].ln()];
        for _ in 0..ERASE_ATTEMPTS {
            let erase_area = area * uniform_f64(rng, self.scale[0], self.scale[1]);
            let aspect = uniform_f64(rng, log_ratio[0], log_ratio[1]).exp();
            let h = (erase_area * aspect).sqrt().round_ties_even();
            let w = (erase_area / aspect).sqrt().round_ties_even();
            if !(h < height as f64 && w < width as f64) {
                continue;
            }

            let (h, w) = (h as usize, w as usize);
            let top = uniform_inclusive(rng, (height - h) as u64) as usize;
            let left = uniform_inclusive(rng, (width - w) as u64) as usize;
            return Ok(Some(CropWindow { top, left, height: h, width: w }));
        }
        Ok(None)
    }

    /// Draws the fill of a `window` of an image with `channels` channels for
    /// [`EraseValue::Random`]: `height * width * channels` bytes in HWC order, from one
    /// `fill_bytes` call whose length is rounded up to a multiple of 8 (the extra bytes are
    /// dropped).
    pub fn draw_fill<R: RngCore + ?Sized>(
        window: CropWindow,
        channels: usize,
        rng: &mut R,
    ) -> Vec<u8> {
        let len = window.height * window.width * channels;
        let mut bytes = vec![0u8; len.div_ceil(8) * 8];
        rng.fill_bytes(&mut bytes);
        bytes.truncate(len);
        bytes
    }
}

impl Transform for RandomErasing {
    fn name(&self) -> &'static str {
        "random_erasing"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let mut out = image.to_buf();
        self.transform_in_place(&mut out, rng)?;
        Ok(out)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        let Some(window) = self.draw_window(image.height(), image.width(), rng)? else {
            return Ok(());
        };

        match self.value {
            EraseValue::Constant(value) => erase(image, window, value),
            EraseValue::Random => {
                let fill = Self::draw_fill(window, image.channels(), rng);
                let row_len = window.width * image.channels();
                let mut rows = fill.chunks_exact(row_len.max(1));
                for_each_window_row(image, window, |row| {
                    if let Some(source) = rows.next() {
                        row.copy_from_slice(source);
                    }
                })
            }
        }
    }
}

/// Cutout (DeVries and Taylor 2017): with probability `probability`, sets a `size` x `size`
/// square of a u8 HWC image to 0, centred at a uniformly drawn pixel and clipped at the border.
///
/// The square covers rows `cy - size / 2 .. cy - size / 2 + size` (integer division) and the
/// same columns around `cx`, intersected with the image. For even sizes this is the reference
/// code's square; for odd sizes the reference erases `size - 1` rows and columns, this one
/// `size`. The fill 0 is the reference's mask value; there the image is already normalised, so
/// 0 is the mean colour, whereas here it is black.
///
/// Draws, in order: one [`bernoulli`]; then the centre row `cy` and column `cx`, each by
/// [`uniform_inclusive`] over all pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cutout {
    /// Side of the square in pixels, at least 1.
    pub size: usize,
    /// Chance of cutting, in `[0, 1]`.
    #[serde(default = "default_cutout_probability")]
    pub probability: f64,
}

fn default_cutout_probability() -> f64 {
    1.0
}

impl Default for Cutout {
    /// A 16-pixel square on every image, DeVries and Taylor's CIFAR-10 setting.
    fn default() -> Self {
        Self { size: 16, probability: 1.0 }
    }
}

impl Cutout {
    /// Creates cutout of a `size`-pixel square with the given chance.
    pub fn new(size: usize, probability: f64) -> Self {
        Self { size, probability }
    }

    /// Checks that `size` is at least 1 and the probability lies in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] otherwise.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 {
            return Err(invalid("cutout", "size", self.size, "at least 1 pixel"));
        }
        check_probability("cutout", self.probability)
    }

    /// Draws the clipped square for a `height` x `width` image, or `None` when the Bernoulli
    /// draw is false.
    ///
    /// # Errors
    ///
    /// The errors of [`Cutout::validate`], before any draw.
    pub fn draw_window<R: RngCore + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> Result<Option<CropWindow>> {
        self.validate()?;
        if !bernoulli(rng, self.probability) {
            return Ok(None);
        }

        let cy = uniform_inclusive(rng, (height - 1) as u64) as usize;
        let cx = uniform_inclusive(rng, (width - 1) as u64) as usize;
        let (top, bottom) = clipped_span(cy, self.size, height);
        let (left, right) = clipped_span(cx, self.size, width);
        Ok(Some(CropWindow { top, left, height: bottom - top, width: right - left }))
    }
}

impl Transform for Cutout {
    fn name(&self) -> &'static str {
        "cutout"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let mut out = image.to_buf();
        self.transform_in_place(&mut out, rng)?;
        Ok(out)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        match self.draw_window(image.height(), image.width(), rng)? {
            Some(window) => erase(image, window, 0),
            None => Ok(()),
        }
    }
}

/// Sets every channel of every pixel inside `window` (image coordinates: rows `top..top +
/// height`, columns `left..left + width`) to `value`. A window with a zero side changes
/// nothing.
///
/// # Errors
///
/// [`Error::InvalidParameter`] when the window reaches past the image; the image is then
/// unchanged.
pub fn erase(image: &mut ImageBuf, window: CropWindow, value: u8) -> Result<()> {
    for_each_window_row(image, window, |row| row.fill(value))
}

/// Calls `visit` on the bytes of each row of `window`, top to bottom, after checking that the
/// window lies inside the image.
fn for_each_window_row(
    image: &mut ImageBuf,
    window: CropWindow,
    mut visit: impl FnMut(&mut [u8]),
) -> Result<()> {
    let (height, width, channels) = (image.height(), image.width(), image.channels());
    let bottom = window.top.checked_add(window.height).filter(|&b| b <= height);
    let right = window.left.checked_add(window.width).filter(|&r| r <= width);
    if bottom.is_none() || right.is_none() {
        return Err(invalid(
            "erase",
            "window",
            window,
            &format!("a window inside the {height}x{width} image"),
        ));
    }
    if window.height == 0 || window.width == 0 {
        return Ok(());
    }

    let stride = width * channels;
    let start = window.left * channels;
    let end = start + window.width * channels;
    for row in image.data_mut().chunks_exact_mut(stride).skip(window.top).take(window.height) {
        visit(&mut row[start..end]);
    }
    Ok(())
}

/// Returns the span `centre - size / 2 .. centre - size / 2 + size` clipped to `0..len`.
fn clipped_span(centre: usize, size: usize, len: usize) -> (usize, usize) {
    // Every difference and sum of two usize values fits in an i128.
    let start = centre as i128 - (size / 2) as i128;
    let end = start + size as i128;
    (start.max(0) as usize, end.min(len as i128) as usize)
}

/// Checks that a probability is finite and in `[0, 1]`.
fn check_probability(op: &'static str, probability: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&probability) {
        return Err(invalid(op, "probability", probability, "a value in [0, 1]"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::key::SampleKey;

    /// A non-square image whose values all differ.
    fn ramp(height: usize, width: usize, channels: usize) -> ImageBuf {
        let data = (0..height * width * channels).map(|i| (i % 251) as u8 + 1).collect();
        ImageBuf::new(data, height, width, channels).unwrap()
    }

    #[test]
    fn erase_fills_window_only() {
        let mut image = ramp(4, 5, 2);
        let before = image.clone();
        let window = CropWindow { top: 1, left: 2, height: 2, width: 3 };

        erase(&mut image, window, 9).unwrap();

        for y in 0..4 {
            for x in 0..5 {
                let inside = (1..3).contains(&y) && (2..5).contains(&x);
                for c in 0..2 {
                    let i = (y * 5 + x) * 2 + c;
                    let expected = if inside { 9 } else { before.data()[i] };
                    assert_eq!(image.data()[i], expected, "({y}, {x}, {c})");
                }
            }
        }
    }

    #[test]
    fn erase_rejects_window_outside() {
        let mut image = ramp(4, 5, 1);
        let past = CropWindow { top: 3, left: 0, height: 2, width: 1 };
        let overflow = CropWindow { top: 0, left: usize::MAX, height: 1, width: 2 };

        let error = erase(&mut image, past, 0).unwrap_err();

        assert!(matches!(error, Error::InvalidParameter { op: "erase", parameter: "window", .. }));
        assert!(erase(&mut image, overflow, 0).is_err());
        assert_eq!(image, ramp(4, 5, 1));
        assert!(erase(&mut image, CropWindow { top: 4, left: 5, height: 0, width: 0 }, 0).is_ok());
    }

    /// The torchvision algorithm written out again, for one seed.
    fn naive_window(
        op: &RandomErasing,
        height: usize,
        width: usize,
        rng: &mut OpRng,
    ) -> Option<CropWindow> {
        if !bernoulli(rng, op.probability) {
            return None;
        }
        let area = (height * width) as f64;
        for _ in 0..10 {
            let fraction = uniform_f64(rng, op.scale[0], op.scale[1]);
            let log_ratio = uniform_f64(rng, op.ratio[0].ln(), op.ratio[1].ln());
            let h = (area * fraction * log_ratio.exp()).sqrt().round_ties_even() as usize;
            let w = (area * fraction / log_ratio.exp()).sqrt().round_ties_even() as usize;
            if h < height && w < width {
                let top = uniform_inclusive(rng, (height - h) as u64) as usize;
                let left = uniform_inclusive(rng, (width - w) as u64) as usize;
                return Some(CropWindow { top, left, height: h, width: w });
            }
        }
        None
    }

    #[test]
    fn erasing_window_follows_algorithm() {
        let op = RandomErasing { probability: 0.7, ..RandomErasing::default() };

        for index in 0..200 {
            let mut rng = SampleKey::new(1, 0, index).rng(0);
            let window = op.draw_window(37, 53, &mut rng).unwrap();
            let expected = naive_window(&op, 37, 53, &mut SampleKey::new(1, 0, index).rng(0));
            assert_eq!(window, expected, "index {index}");
            if let Some(w) = window {
                assert!(w.top + w.height <= 37);
                assert!(w.left + w.width <= 53);
            }
        }
    }

    #[test]
    fn erasing_applies_constant_and_random() {
        let constant = RandomErasing::new(1.0, EraseValue::Constant(7));
        let random = RandomErasing::new(1.0, EraseValue::Random);
        let image = ramp(20, 30, 3);
        let key = SampleKey::new(2, 0, 0);

        let window = constant.draw_window(20, 30, &mut key.rng(0)).unwrap().unwrap();
        let mut expected = image.clone();
        erase(&mut expected, window, 7).unwrap();
        let out = constant.transform(image.as_image_ref(), &mut key.rng(0)).unwrap();
        let noisy = random.transform(image.as_image_ref(), &mut key.rng(0)).unwrap();

        assert_eq!(out, expected);
        let mut rng = key.rng(0);
        random.draw_window(20, 30, &mut rng).unwrap();
        let fill = RandomErasing::draw_fill(window, 3, &mut rng);
        let row_len = window.width * 3;
        for (r, row) in noisy.data().chunks(30 * 3).skip(window.top).take(window.height).enumerate()
        {
            let start = window.left * 3;
            assert_eq!(&row[start..start + row_len], &fill[r * row_len..(r + 1) * row_len]);
        }
    }

    #[test]
    fn erasing_one_pixel_image_unchanged() {
        let op = RandomErasing::new(1.0, EraseValue::Constant(0));
        let image = ImageBuf::new(vec![200, 100, 50], 1, 1, 3).unwrap();

        let out = op.transform(image.as_image_ref(), &mut SampleKey::new(3, 0, 0).rng(0)).unwrap();

        assert_eq!(out, image);
    }

    #[test]
    fn erasing_rejects_bad_parameters() {
        let cases = [
            (RandomErasing { probability: 1.5, ..RandomErasing::default() }, "probability"),
            (RandomErasing { scale: [0.5, 0.2], ..RandomErasing::default() }, "scale"),
            (RandomErasing { scale: [0.1, 1.2], ..RandomErasing::default() }, "scale"),
            (RandomErasing { ratio: [0.0, 3.3], ..RandomErasing::default() }, "ratio"),
            (RandomErasing { ratio: [1.0, f64::INFINITY], ..RandomErasing::default() }, "ratio"),
        ];
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        for (op, name) in cases {
            let error = op.draw_window(10, 10, &mut rng).unwrap_err();
            assert!(
                matches!(error, Error::InvalidParameter { parameter, .. } if parameter == name),
                "{op:?}: {error}"
            );
        }
    }

    #[test]
    fn cutout_square_clipped() {
        let op = Cutout::new(5, 1.0);

        for index in 0..300 {
            let mut rng = SampleKey::new(4, 0, index).rng(0);
            let mut copy = rng.clone();
            let window = op.draw_window(12, 9, &mut rng).unwrap().unwrap();

            bernoulli(&mut copy, 1.0);
            let cy = uniform_inclusive(&mut copy, 11) as i64;
            let cx = uniform_inclusive(&mut copy, 8) as i64;
            let rows = (cy - 2).max(0)..(cy + 3).min(12);
            let columns = (cx - 2).max(0)..(cx + 3).min(9);
            assert_eq!(window.top as i64, rows.start, "index {index}");
            assert_eq!(window.height as i64, rows.end - rows.start, "index {index}");
            assert_eq!(window.left as i64, columns.start, "index {index}");
            assert_eq!(window.width as i64, columns.end - columns.start, "index {index}");
        }
    }

    #[test]
    fn cutout_even_size_and_one_pixel() {
        let op = Cutout::new(4, 1.0);
        let image = ImageBuf::new(vec![9], 1, 1, 1).unwrap();

        let out = op.transform(image.as_image_ref(), &mut SampleKey::new(5, 0, 0).rng(0)).unwrap();

        assert_eq!(out.data(), &[0]);
        assert_eq!(clipped_span(10, 4, 100), (8, 12));
        assert_eq!(clipped_span(1, 4, 100), (0, 3));
        assert_eq!(clipped_span(98, 4, 100), (96, 100));
    }

    #[test]
    fn cutout_rejects_bad_parameters() {
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        let size = Cutout::new(0, 1.0).draw_window(4, 4, &mut rng).unwrap_err();
        let probability = Cutout::new(3, f64::NAN).draw_window(4, 4, &mut rng).unwrap_err();

        assert!(matches!(size, Error::InvalidParameter { parameter: "size", .. }));
        assert!(matches!(probability, Error::InvalidParameter { parameter: "probability", .. }));
    }

    #[test]
    fn occlusion_serde() {
        let erasing: RandomErasing =
            serde_json::from_str(r#"{"probability": 0.25, "value": "random"}"#).unwrap();
        let cutout: Cutout = serde_json::from_str(r#"{"size": 8}"#).unwrap();

        assert_eq!(erasing, RandomErasing::new(0.25, EraseValue::Random));
        assert_eq!(cutout, Cutout::new(8, 1.0));
        assert_eq!(
            serde_json::to_string(&RandomErasing::default()).unwrap(),
            r#"{"probability":0.5,"scale":[0.02,0.33],"ratio":[0.3,3.3],"value":{"constant":0}}"#
        );
        assert!(serde_json::from_str::<Cutout>(r#"{"size": 8, "fill": 1}"#).is_err());
    }
}
