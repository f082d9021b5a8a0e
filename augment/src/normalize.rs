//! Per-channel normalisation of u8 pixels to f32.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::ImageRef;

/// Converts a u8 HWC image to f32 CHW with `out = (value - mean[k]) / std[k]` per channel `k`,
/// computed in f32.
///
/// `mean` and `std` are in 0..255 pixel units (CIFAR-10 red: mean 125.3, std 63.0). Each has
/// one entry per channel, or a single entry used for every channel. No randomness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Channel means in 0..255 units, finite.
    pub mean: Vec<f32>,
    /// Channel standard deviations in 0..255 units, finite and above 0.
    pub std: Vec<f32>,
}

/// The 256 normalised values of each channel: `table.channel(k)[v]` is the output for byte `v`
/// in channel `k`, bit for bit the value of the formula in [`Normalize`].
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeTable {
    channels: Vec<[f32; 256]>,
}

impl Normalize {
    /// Creates a normalisation with the given means and standard deviations, 0..255 units.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Self { mean, std }
    }

    /// Checks the parameters against `channels` and builds the lookup table.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelCount`] when a list has neither 1 nor `channels` entries,
    /// [`Error::InvalidMean`] for a non-finite mean, [`Error::InvalidStd`] for a standard
    /// deviation that is not finite and above 0.
    pub fn table(&self, channels: usize) -> Result<NormalizeTable> {
        check_len("mean", self.mean.len(), channels)?;
        check_len("std", self.std.len(), channels)?;
        if let Some(channel) = self.mean.iter().position(|m| !m.is_finite()) {
            return Err(Error::InvalidMean { channel, value: self.mean[channel] });
        }
        if let Some(channel) = self.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::InvalidStd { channel, value: self.std[channel] });
        }

        let pick = |list: &[f32], k: usize| if list.len() == 1 { list[0] } else { list[k] };
        let tables = (0..channels)
            .map(|k| {
                let (mean, std) = (pick(&self.mean, k), pick(&self.std, k));
                std::array::from_fn(|v| (v as f32 - mean) / std)
            })
            .collect();
        Ok(NormalizeTable { channels: tables })
    }

    /// Returns the f32 count written for an image of the given shape: `height * width * channels`.
    pub fn output_len(&self, height: usize, width: usize, channels: usize) -> usize {
        height * width * channels
    }

    /// Normalises `image` into `out` as f32 CHW: `out[(k * height + y) * width + x]`.
    ///
    /// Builds the lookup table on every call. For many images, keep a [`NormalizeTable`] and
    /// use [`NormalizeTable::apply`].
    ///
    /// # Errors
    ///
    /// The errors of [`Normalize::table`], and [`Error::OutputLength`] when `out` does not
    /// hold exactly `height * width * channels` values.
    pub fn apply(&self, image: ImageRef<'_>, out: &mut [f32]) -> Result<()> {
        self.table(image.channels())?.apply(image, out)
    }
}

impl NormalizeTable {
    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Returns the 256 output values of channel `k`. Panics if `k >= self.channels()`.
    pub fn channel(&self, k: usize) -> &[f32; 256] {
        &self.channels[k]
    }

    /// Normalises `image` into `out` as f32 CHW, the layout of [`Normalize::apply`].
    ///
    /// # Errors
    ///
    /// [`Error::TableChannels`] when the image's channel count differs from the table's,
    /// [`Error::OutputLength`] when `out` does not hold `height * width * channels` values.
    pub fn apply(&self, image: ImageRef<'_>, out: &mut [f32]) -> Result<()> {
        let channels = image.channels();
        if channels != self.channels() {
            return Err(Error::TableChannels { expected: self.channels(), found: channels });
        }
        let plane = image.height() * image.width();
        if out.len() != plane * channels {
            return Err(Error::OutputLength { expected: plane * channels, actual: out.len() });
        }

        for (k, out_plane) in out.chunks_exact_mut(plane).enumerate() {
            let table = &self.channels[k];
            let pixels = image.data().chunks_exact(channels);
            for (value, pixel) in out_plane.iter_mut().zip(pixels) {
                *value = table[usize::from(pixel[k])];
            }
        }
        Ok(())
    }
}

fn check_len(name: &'static str, len: usize, channels: usize) -> Result<()> {
    if len == 1 || len == channels {
        Ok(())
    } else {
        Err(Error::ChannelCount { name, len, channels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_exact_against_formula() {
        let (height, width, channels) = (3, 5, 3);
        let data: Vec<u8> = (0..height * width * channels).map(|i| (i * 17 % 256) as u8).collect();
        let image = ImageRef::new(&data, height, width, channels).unwrap();
        let mean = vec![125.307, 122.95, 113.865];
        let std = vec![62.993, 62.089, 66.705];
        let mut out = vec![0.0f32; height * width * channels];

        Normalize::new(mean.clone(), std.clone()).apply(image, &mut out).unwrap();

        for k in 0..channels {
            for y in 0..height {
                for x in 0..width {
                    let value = data[(y * width + x) * channels + k] as f32;
                    let expected = (value - mean[k]) / std[k];
                    let found = out[(k * height + y) * width + x];
                    assert_eq!(found.to_bits(), expected.to_bits(), "({k}, {y}, {x})");
                }
            }
        }
    }

    #[test]
    fn normalize_single_entry_broadcasts() {
        let data = [0u8, 255, 10, 20, 30, 40];
        let image = ImageRef::new(&data, 1, 2, 3).unwrap();
        let mut out = [0.0f32; 6];

        Normalize::new(vec![10.0], vec![2.0]).apply(image, &mut out).unwrap();

        assert_eq!(out, [-5.0, 5.0, 122.5, 10.0, 0.0, 15.0]);
    }

    #[test]
    fn normalize_full_table_every_byte() {
        let table = Normalize::new(vec![0.5], vec![3.0]).table(1).unwrap();

        for v in 0..=255u8 {
            assert_eq!(table.channel(0)[usize::from(v)], (f32::from(v) - 0.5) / 3.0);
        }
    }

    #[test]
    fn normalize_rejects_bad_std() {
        for value in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let error = Normalize::new(vec![0.0], vec![1.0, value, 1.0]).table(3).unwrap_err();

            assert_eq!(error.to_string(), Error::InvalidStd { channel: 1, value }.to_string());
        }
    }

    #[test]
    fn normalize_rejects_bad_mean_and_lengths() {
        let nan_mean = Normalize::new(vec![f32::NAN], vec![1.0]).table(3).unwrap_err();
        let two_means = Normalize::new(vec![0.0, 0.0], vec![1.0]).table(3).unwrap_err();

        assert!(matches!(nan_mean, Error::InvalidMean { channel: 0, .. }));
        assert_eq!(two_means, Error::ChannelCount { name: "mean", len: 2, channels: 3 });
        assert_eq!(
            two_means.to_string(),
            "normalize mean has 2 entries but the image has 3 channels (expected 1 or 3)"
        );
    }

    #[test]
    fn normalize_rejects_wrong_output_length() {
        let data = [0u8; 4];
        let image = ImageRef::new(&data, 2, 2, 1).unwrap();
        let mut out = [0.0f32; 5];

        let error = Normalize::new(vec![0.0], vec![1.0]).apply(image, &mut out).unwrap_err();

        assert_eq!(error, Error::OutputLength { expected: 4, actual: 5 });
        assert_eq!(out, [0.0; 5]);
    }
}
