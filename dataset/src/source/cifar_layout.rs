//! The CIFAR image layout shared by the binary and python versions.
//!
//! Each image is 32x32 RGB stored planar: 1024 red bytes (32 rows of 32, row-major), then 1024
//! green, then 1024 blue. The readers convert it to interleaved HWC.

/// Image height and width in pixels.
pub(super) const SIDE: u32 = 32;

/// Channels per pixel: red, green, blue.
pub(super) const CHANNELS: u32 = 3;

/// Bytes of one channel plane: 32 * 32.
const PLANE_LEN: usize = (SIDE * SIDE) as usize;

/// Bytes of one image: 3 planes of 1024.
pub(super) const IMAGE_LEN: usize = PLANE_LEN * CHANNELS as usize;

/// Writes the planar image `planar` into `hwc` in HWC order (r, g, b of pixel 0, then pixel 1).
///
/// # Panics
///
/// Panics unless both slices are [`IMAGE_LEN`] bytes long, which callers ensure by slicing.
pub(super) fn planar_to_hwc(planar: &[u8], hwc: &mut [u8]) {
    assert_eq!(planar.len(), IMAGE_LEN);
    assert_eq!(hwc.len(), IMAGE_LEN);

    let (red, rest) = planar.split_at(PLANE_LEN);
    let (green, blue) = rest.split_at(PLANE_LEN);
    let pixels = hwc.chunks_exact_mut(CHANNELS as usize);
    for (((pixel, &r), &g), &b) in pixels.zip(red).zip(green).zip(blue) {
        pixel[0] = r;
        pixel[1] = g;
        pixel[2] = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planar_to_hwc_moves_each_plane() {
        // Red plane values 0..=255 repeating, green = red + 1, blue = red + 2 (mod 256).
        let planar: Vec<u8> = (0..IMAGE_LEN)
            .map(|i| ((i % PLANE_LEN) as u8).wrapping_add((i / PLANE_LEN) as u8))
            .collect();
        let mut hwc = vec![0; IMAGE_LEN];

        planar_to_hwc(&planar, &mut hwc);

        for pixel in [0, 1, 31, 32, 33, 1023] {
            assert_eq!(hwc[pixel * 3], pixel as u8, "red of pixel {pixel}");
            assert_eq!(hwc[pixel * 3 + 1], (pixel as u8).wrapping_add(1), "green of pixel {pixel}");
            assert_eq!(hwc[pixel * 3 + 2], (pixel as u8).wrapping_add(2), "blue of pixel {pixel}");
        }
    }
}
