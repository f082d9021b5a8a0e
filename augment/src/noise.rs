//! Additive Gaussian noise on u8 pixels.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::op::{OpRng, Transform};
use crate::sample::{fill_u16, normal_quantile};

/// Number of levels of the normal table: one per 16-bit random value.
const LEVELS: usize = 1 << 16;

/// Images with at least this many noise draws use a per-call table of rounded noise values
/// instead of computing each one; both give the same bytes.
const TABLE_MIN_DRAWS: usize = LEVELS;

/// Adds independent zero-mean Gaussian noise of standard deviation `std` to a u8 HWC image:
/// `out = clamp(v + round(std * z), 0, 255)`, halves rounded up.
///
/// With `per_channel` (the default) every value gets its own `z`; without it, each pixel gets
/// one `z` shared by its channels, so the noise is grey.
///
/// Randomness: `z` is looked up in a table of 65,536 standard normal quantiles, one per 16-bit
/// value of [`fill_u16`], drawn in HWC order (pixel order without `per_channel`). The table
/// holds the quantiles at the midpoints `(i + 0.5) / 65536`, so every `z` is equally likely.
/// Its mean is 0, its variance 0.99998, and its tails stop at +-4.325 (a true normal passes
/// that with probability 1.5e-5). After rounding to whole pixel levels, the distribution of
/// `round(std * z)` matches the rounded normal to within 1 / 65536 in every probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianNoise {
    /// Standard deviation in 0..255 pixel units, finite and at least 0.
    pub std: f32,
    /// Whether each channel gets its own noise (`true`, the default) or all channels of a
    /// pixel share one value.
    #[serde(default = "default_per_channel")]
    pub per_channel: bool,
}

fn default_per_channel() -> bool {
    true
}

impl Default for GaussianNoise {
    /// Standard deviation 25.5 per channel: torchvision 0.26 `GaussianNoise`'s default sigma
    /// of 0.1 on `[0, 1]` images, in 0..255 units.
    fn default() -> Self {
        Self { std: 25.5, per_channel: true }
    }
}

impl GaussianNoise {
    /// Creates noise of standard deviation `std` (0..255 units), independent per channel.
    pub fn new(std: f32) -> Self {
        Self { std, per_channel: true }
    }

    /// Checks that `std` is finite and at least 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] otherwise.
    pub fn validate(&self) -> Result<()> {
        if !(self.std.is_finite() && self.std >= 0.0) {
            return Err(Error::InvalidParameter {
                op: "gaussian_noise",
                parameter: "std",
                value: format!("{:?}", self.std),
                expected: "a finite value at least 0, in 0..255 units".to_string(),
            });
        }
        Ok(())
    }

    /// Adds noise to `data`, HWC values of `channels` channels.
    fn add_noise(&self, data: &mut [u8], channels: usize, rng: &mut OpRng) {
        let stride = if self.per_channel { 1 } else { channels };
        let draws = data.len() / stride;
        let quantiles = normal_quantiles();
        let std = self.std;

        if draws >= TABLE_MIN_DRAWS {
            let table: Vec<i16> = quantiles.iter().map(|&z| rounded_noise(std, z)).collect();
            add_drawn(data, stride, rng, |bits| table[usize::from(bits)]);
        } else {
            add_drawn(data, stride, rng, |bits| rounded_noise(std, quantiles[usize::from(bits)]));
        }
    }
}

impl Transform for GaussianNoise {
    fn name(&self) -> &'static str {
        "gaussian_noise"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let data = image.data().to_vec();
        let mut out = ImageBuf::new(data, image.height(), image.width(), image.channels())?;
        self.transform_in_place(&mut out, rng)?;
        Ok(out)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        self.validate()?;
        let channels = image.channels();
        self.add_noise(image.data_mut(), channels, rng);
        Ok(())
    }
}

/// Adds `noise(bits)` to each group of `stride` values of `data`, drawing one 16-bit value per
/// group in order, saturating at 0 and 255.
#[inline(always)]
fn add_drawn(data: &mut [u8], stride: usize, rng: &mut OpRng, noise: impl Fn(u16) -> i16) {
    const BLOCK: usize = 1024;
    let mut bits = [0u16; BLOCK];
    let add = |value: &mut u8, n: i16| *value = (i16::from(*value) + n).clamp(0, 255) as u8;

    for block in data.chunks_mut(BLOCK * stride) {
        let groups = block.len() / stride;
        fill_u16(rng, &mut bits[..groups]);
        // One value per draw is the common case; a plain zip keeps its loop tight.
        if stride == 1 {
            for (value, &b) in block.iter_mut().zip(&bits[..groups]) {
                add(value, noise(b));
            }
            continue;
        }
        for (group, &b) in block.chunks_exact_mut(stride).zip(&bits[..groups]) {
            let n = noise(b);
            for value in group {
                add(value, n);
            }
        }
    }
}

/// Returns `floor(std * z + 0.5)` clamped to `-256..=256`, which adds to any u8 the same
/// clamped result as any larger value would.
#[inline(always)]
fn rounded_noise(std: f32, z: f32) -> i16 {
    let shifted = (std * z).clamp(-256.0, 256.0) + 0.5;
    // Truncation rounds toward zero; step down for negative non-integers to get the floor.
    let truncated = shifted as i16;
    if f32::from(truncated) > shifted {
        truncated - 1
    } else {
        truncated
    }
}

/// Returns the 65,536 standard normal quantiles at `(i + 0.5) / 65536`, computed once.
fn normal_quantiles() -> &'static [f32] {
    static TABLE: OnceLock<Box<[f32]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..LEVELS).map(|i| normal_quantile((i as f64 + 0.5) / LEVELS as f64) as f32).collect()
    })
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::RngCore;

    use super::*;
    use crate::key::SampleKey;

    #[test]
    fn quantile_table_moments() {
        let table = normal_quantiles();

        let mean = table.iter().map(|&z| f64::from(z)).sum::<f64>() / LEVELS as f64;
        let variance = table.iter().map(|&z| f64::from(z).powi(2)).sum::<f64>() / LEVELS as f64;

        assert!(mean.abs() < 1e-7, "mean {mean}");
        assert!((variance - 0.99998).abs() < 1e-5, "variance {variance}");
        assert!((table[LEVELS - 1] - 4.3249).abs() < 1e-3, "max {}", table[LEVELS - 1]);
        assert!(table.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn rounded_noise_is_floor() {
        for (value, expected) in [(0.5, 1), (-0.5, 0), (-0.51, -1), (2.49, 2), (-3.0, -3)] {
            assert_eq!(rounded_noise(1.0, value), expected, "{value}");
        }
        assert_eq!(rounded_noise(1000.0, 4.0), 256);
        assert_eq!(rounded_noise(1000.0, -4.0), -256);
    }

    /// Expected output of one value from the stream, computed apart from `add_drawn`.
    fn naive_noisy(value: u8, bits: u16, std: f32) -> u8 {
        let z = f64::from(normal_quantiles()[usize::from(bits)]);
        let noise = (f64::from(std) * z + 0.5).floor();
        (f64::from(value) + noise).clamp(0.0, 255.0) as u8
    }

    #[test]
    fn noise_follows_stream() {
        let noise = GaussianNoise::new(30.0);
        let data: Vec<u8> = (0..3 * 5 * 7).map(|i| (i * 11 % 256) as u8).collect();
        let image = ImageRef::new(&data, 5, 7, 3).unwrap();
        let mut copy = SampleKey::new(1, 0, 0).rng(0);

        let out = noise.transform(image, &mut SampleKey::new(1, 0, 0).rng(0)).unwrap();

        let mut bits = vec![0u16; data.len()];
        fill_u16(&mut copy, &mut bits);
        for (i, &v) in data.iter().enumerate() {
            assert_eq!(out.data()[i], naive_noisy(v, bits[i], 30.0), "value {i}");
        }
    }

    #[test]
    fn shared_noise_per_pixel() {
        let noise = GaussianNoise { std: 12.0, per_channel: false };
        let mut image = ImageBuf::new(vec![128; 4 * 3 * 3], 4, 3, 3).unwrap();
        let mut rng = SampleKey::new(2, 0, 0).rng(0);
        let mut copy = rng.clone();

        noise.transform_in_place(&mut image, &mut rng).unwrap();

        let mut bits = [0u16; 12];
        fill_u16(&mut copy, &mut bits);
        for (pixel, &b) in image.data().chunks(3).zip(&bits) {
            assert_eq!(pixel, &[naive_noisy(128, b, 12.0); 3]);
        }
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn table_and_direct_paths_agree() {
        // 256 x 256 grey values use the table; each row alone uses the direct path.
        let noise = GaussianNoise::new(17.3);
        let data: Vec<u8> = (0..256 * 256).map(|i| (i % 256) as u8).collect();
        let mut whole = ImageBuf::new(data.clone(), 256, 256, 1).unwrap();
        let mut rng = SampleKey::new(3, 0, 0).rng(0);

        noise.transform_in_place(&mut whole, &mut rng).unwrap();

        let mut copy = SampleKey::new(3, 0, 0).rng(0);
        for (y, row) in data.chunks(256).enumerate() {
            let mut image = ImageBuf::new(row.to_vec(), 1, 256, 1).unwrap();
            noise.transform_in_place(&mut image, &mut copy).unwrap();
            assert_eq!(image.data(), &whole.data()[y * 256..(y + 1) * 256], "row {y}");
        }
    }

    #[test]
    fn zero_std_is_identity() {
        let data: Vec<u8> = (0..=255).collect();
        let image = ImageRef::new(&data, 16, 16, 1).unwrap();

        let out = GaussianNoise::new(0.0).transform(image, &mut SampleKey::new(4, 0, 0).rng(0));

        assert_eq!(out.unwrap().data(), &data[..]);
    }

    #[test]
    fn noise_rejects_bad_std() {
        let mut image = ImageBuf::new(vec![7], 1, 1, 1).unwrap();
        let mut rng = SampleKey::new(0, 0, 0).rng(0);

        for std in [-1.0, f32::NAN, f32::INFINITY] {
            let error = GaussianNoise::new(std).transform_in_place(&mut image, &mut rng);
            assert!(matches!(error, Err(Error::InvalidParameter { parameter: "std", .. })));
        }
        assert_eq!(image.data(), &[7]);
    }

    #[test]
    fn noise_serde_defaults() {
        let parsed: GaussianNoise = serde_json::from_str(r#"{"std": 10}"#).unwrap();
        let missing = serde_json::from_str::<GaussianNoise>("{}").unwrap_err();

        assert_eq!(parsed, GaussianNoise::new(10.0));
        assert!(missing.to_string().contains("missing field `std`"), "{missing}");
        assert_eq!(
            serde_json::to_string(&GaussianNoise::default()).unwrap(),
            r#"{"std":25.5,"per_channel":true}"#
        );
    }
}
