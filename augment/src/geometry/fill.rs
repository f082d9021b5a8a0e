//! Fill rules for samples outside the image, and interpolation between pixels.

use serde::{Deserialize, Serialize};

/// Value of the samples a warp ([`warp_affine`](super::warp_affine), elastic) reads outside
/// the input image.
///
/// The rule applies to each interpolation tap on its own: a bilinear sample near the border
/// mixes in-image pixels with the fill, as OpenCV's `remap` and `warpAffine` do. With
/// `Fill::Constant(0)` this gives torchvision 0.26's tensor `affine` with `fill=None`. Given any
/// `fill` list, torchvision multiplies the border samples by its interpolated in-image mask a
/// second time, so its border pixels differ from ours (by up to 58 levels in the golden tests).
///
/// Serde: `{"constant": 0}`, `"edge"`, `"reflect"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// The same value in every channel (0..255).
    Constant(u8),
    /// The nearest edge pixel (OpenCV `BORDER_REPLICATE`).
    Edge,
    /// Mirror about the edge pixel without repeating it (OpenCV `BORDER_REFLECT_101`, numpy
    /// `reflect`, [`PadMode::Reflect`](crate::PadMode::Reflect)). Far-away positions keep
    /// reflecting off both edges, and a 1-pixel axis repeats its pixel.
    Reflect,
}

impl Default for Fill {
    fn default() -> Self {
        Fill::Constant(0)
    }
}

impl Fill {
    /// Maps tap position `i` on an axis of `len` pixels to the pixel it reads, or `None` where
    /// [`Fill::Constant`] supplies the value. `len` must be at least 1.
    pub fn source_index(self, i: i64, len: usize) -> Option<usize> {
        let last = len as i64 - 1;
        if (0..=last).contains(&i) {
            return Some(i as usize);
        }

        match self {
            Fill::Constant(_) => None,
            Fill::Edge => Some(i.clamp(0, last) as usize),
            Fill::Reflect if last == 0 => Some(0),
            Fill::Reflect => {
                let period = 2 * last;
                let phase = i.rem_euclid(period);
                Some(if phase <= last { phase } else { period - phase } as usize)
            }
        }
    }
}

/// Interpolation rule of a warp at a non-integer source position.
///
/// Serde: `"nearest"`, `"bilinear"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// The pixel whose centre is nearest, rounding halves to even as torch's `grid_sample`
    /// does.
    Nearest,
    /// Weighted mean of the four surrounding pixels, rounded to nearest.
    #[default]
    Bilinear,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_source_index_rules() {
        let reflect: Vec<_> = (-3..7).map(|i| Fill::Reflect.source_index(i, 4)).collect();
        let edge: Vec<_> = (-2..6).map(|i| Fill::Edge.source_index(i, 4)).collect();

        assert_eq!(reflect, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0].map(Some));
        assert_eq!(edge, [0, 0, 0, 1, 2, 3, 3, 3].map(Some));
        assert_eq!(Fill::Constant(7).source_index(-1, 4), None);
        assert_eq!(Fill::Constant(7).source_index(4, 4), None);
        assert_eq!(Fill::Constant(7).source_index(3, 4), Some(3));
        assert_eq!(Fill::Reflect.source_index(-5, 1), Some(0));
    }

    #[test]
    fn fill_serde_names() {
        assert_eq!(serde_json::to_string(&Fill::Constant(3)).unwrap(), r#"{"constant":3}"#);
        assert_eq!(serde_json::to_string(&Fill::Reflect).unwrap(), r#""reflect""#);
        assert_eq!(serde_json::from_str::<Fill>(r#""edge""#).unwrap(), Fill::Edge);
        assert_eq!(Fill::default(), Fill::Constant(0));
        assert_eq!(serde_json::to_string(&Interpolation::Nearest).unwrap(), r#""nearest""#);
        assert_eq!(Interpolation::default(), Interpolation::Bilinear);
    }
}
