//! Borrowed and owned u8 images in HWC layout.

use crate::error::{Error, Result};

/// A borrowed u8 image: `height` rows of `width` pixels, each pixel `channels` interleaved bytes
/// (HWC). The byte of channel `k` at row `y`, column `x` is
/// `data[(y * width + x) * channels + k]`.
///
/// Invariant, checked by [`ImageRef::new`]: all three dimensions are at least 1 and
/// `data.len() == height * width * channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    data: &'a [u8],
    height: usize,
    width: usize,
    channels: usize,
}

impl<'a> ImageRef<'a> {
    /// Wraps `data` as a `height` x `width` x `channels` HWC image.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroDimension`] when a dimension is 0, [`Error::DataLength`] when `data.len()`
    /// is not `height * width * channels`.
    pub fn new(data: &'a [u8], height: usize, width: usize, channels: usize) -> Result<Self> {
        check_shape(data.len(), height, width, channels)?;
        Ok(Self { data, height, width, channels })
    }

    /// Returns the pixel bytes, HWC.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Interleaved channels per pixel.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Copies the image into an owned buffer.
    pub fn to_buf(&self) -> ImageBuf {
        ImageBuf {
            data: self.data.to_vec(),
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }

    /// Returns the bytes of row `y`: `width * channels` values. Panics if `y >= height`.
    pub(crate) fn row(&self, y: usize) -> &'a [u8] {
        let stride = self.width * self.channels;
        &self.data[y * stride..(y + 1) * stride]
    }
}

/// An owned u8 HWC image, the output of the unfused geometric ops.
///
/// Same layout and invariant as [`ImageRef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBuf {
    data: Vec<u8>,
    height: usize,
    width: usize,
    channels: usize,
}

impl ImageBuf {
    /// Takes ownership of `data` as a `height` x `width` x `channels` HWC image.
    ///
    /// # Errors
    ///
    /// The same as [`ImageRef::new`].
    pub fn new(data: Vec<u8>, height: usize, width: usize, channels: usize) -> Result<Self> {
        check_shape(data.len(), height, width, channels)?;
        Ok(Self { data, height, width, channels })
    }

    /// Borrows the image.
    pub fn as_image_ref(&self) -> ImageRef<'_> {
        ImageRef {
            data: &self.data,
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }

    /// Returns the pixel bytes, HWC.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Returns the pixel bytes, HWC, for in-place edits that keep the shape.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Interleaved channels per pixel.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Returns the pixel bytes.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

fn check_shape(len: usize, height: usize, width: usize, channels: usize) -> Result<()> {
    if height == 0 || width == 0 || channels == 0 {
        return Err(Error::ZeroDimension { height, width, channels });
    }

    let expected = height.checked_mul(width).and_then(|n| n.checked_mul(channels));
    if expected != Some(len) {
        return Err(Error::DataLength {
            height,
            width,
            channels,
            expected: expected.unwrap_or(usize::MAX),
            actual: len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ref_accepts_exact_length() {
        let data = [0u8; 2 * 3 * 4];

        let image = ImageRef::new(&data, 2, 3, 4).unwrap();

        assert_eq!((image.height(), image.width(), image.channels()), (2, 3, 4));
        assert_eq!(image.row(1).len(), 12);
    }

    #[test]
    fn image_ref_rejects_wrong_length() {
        let data = [0u8; 23];

        let error = ImageRef::new(&data, 2, 3, 4).unwrap_err();

        assert_eq!(
            error,
            Error::DataLength { height: 2, width: 3, channels: 4, expected: 24, actual: 23 }
        );
        assert_eq!(error.to_string(), "image data length 23 does not match 2x3x4 = 24 bytes");
    }

    #[test]
    fn image_ref_rejects_zero_dimension() {
        for (h, w, c) in [(0, 3, 1), (3, 0, 1), (3, 3, 0)] {
            let error = ImageRef::new(&[], h, w, c).unwrap_err();

            assert_eq!(error, Error::ZeroDimension { height: h, width: w, channels: c });
        }
    }

    #[test]
    fn image_ref_rejects_overflowing_shape() {
        let error = ImageRef::new(&[0u8; 4], usize::MAX, 2, 1).unwrap_err();

        assert!(matches!(error, Error::DataLength { expected: usize::MAX, actual: 4, .. }));
    }

    #[test]
    fn image_buf_round_trips_data() {
        let image = ImageBuf::new(vec![1, 2, 3, 4, 5, 6], 1, 2, 3).unwrap();

        assert_eq!(image.as_image_ref().row(0), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(image.into_data(), vec![1, 2, 3, 4, 5, 6]);
    }
}
