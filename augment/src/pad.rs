//! Padding rules: which source pixel a coordinate outside the image reads.

use serde::{Deserialize, Serialize};

/// Rule that fills the pixels outside the image when an op pads it.
///
/// Coordinates are per axis: a position `i` on an axis of `n` pixels, where `i < 0` or
/// `i >= n` lies in the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Pixel value 0 in every channel (before normalisation, so it becomes `(0 - mean) / std`).
    #[default]
    Zero,
    /// Mirror about the edge pixel, without repeating it: row `[1, 2, 3, 4]` padded by 2 gives
    /// `[3, 2, 1, 2, 3, 4, 3, 2]`, the values of numpy's and torch's `reflect` mode.
    ///
    /// Padding of `n` or more pixels keeps reflecting off both edges: the source index is a
    /// triangle wave of period `2 * (n - 1)`, so `[1, 2, 3]` padded by 5 gives
    /// `[2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]`. torch rejects such padding. A one-pixel axis
    /// has nothing to reflect and repeats its pixel, as [`PadMode::Edge`] does.
    Reflect,
    /// Repeat the edge pixel: `[1, 2, 3, 4]` padded by 2 gives `[1, 1, 1, 2, 3, 4, 4, 4]`.
    Edge,
}

impl PadMode {
    /// Maps position `i` on an axis of `len` pixels to the source pixel it reads, or `None`
    /// where [`PadMode::Zero`] fills it with value 0.
    ///
    /// `len` must be at least 1.
    pub fn source_index(self, i: isize, len: usize) -> Option<usize> {
        debug_assert!(len >= 1);
        let last = len as isize - 1;
        if (0..=last).contains(&i) {
            return Some(i as usize);
        }

        match self {
            PadMode::Zero => None,
            PadMode::Edge => Some(i.clamp(0, last) as usize),
            PadMode::Reflect if len == 1 => Some(0),
            PadMode::Reflect => {
                let period = 2 * last;
                let phase = i.rem_euclid(period);
                Some(if phase <= last { phase } else { period - phase } as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pads `row` by `padding` on both sides with `mode`, using 0 for `None`.
    fn pad_row(row: &[u8], padding: isize, mode: PadMode) -> Vec<u8> {
        (-padding..row.len() as isize + padding)
            .map(|i| mode.source_index(i, row.len()).map_or(0, |s| row[s]))
            .collect()
    }

    #[test]
    fn reflect_matches_hand_computed_row() {
        assert_eq!(pad_row(&[1, 2, 3, 4], 2, PadMode::Reflect), [3, 2, 1, 2, 3, 4, 3, 2]);
    }

    #[test]
    fn reflect_repeats_when_padding_exceeds_size() {
        assert_eq!(
            pad_row(&[1, 2, 3], 5, PadMode::Reflect),
            [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]
        );
        assert_eq!(pad_row(&[1, 2], 3, PadMode::Reflect), [2, 1, 2, 1, 2, 1, 2, 1]);
    }

    #[test]
    fn reflect_one_pixel_repeats_it() {
        assert_eq!(pad_row(&[9], 3, PadMode::Reflect), [9; 7]);
    }

    #[test]
    fn edge_and_zero_rows() {
        assert_eq!(pad_row(&[1, 2, 3, 4], 2, PadMode::Edge), [1, 1, 1, 2, 3, 4, 4, 4]);
        assert_eq!(pad_row(&[1, 2, 3, 4], 2, PadMode::Zero), [0, 0, 1, 2, 3, 4, 0, 0]);
    }

    #[test]
    fn reflect_agrees_with_repeated_mirroring() {
        for len in 1..7usize {
            for i in -40..40isize {
                // Mirror step by step about whichever edge the position lies beyond.
                let last = len as isize - 1;
                let mut j = i;
                while len > 1 && !(0..=last).contains(&j) {
                    j = if j < 0 { -j } else { 2 * last - j };
                }
                let expected = if len == 1 { 0 } else { j as usize };

                assert_eq!(
                    PadMode::Reflect.source_index(i, len),
                    Some(expected),
                    "i {i} len {len}"
                );
            }
        }
    }

    #[test]
    fn pad_mode_serde_names() {
        assert_eq!(serde_json::to_string(&PadMode::Reflect).unwrap(), "\"reflect\"");
        assert_eq!(serde_json::from_str::<PadMode>("\"edge\"").unwrap(), PadMode::Edge);
    }
}
