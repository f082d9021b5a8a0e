//! Evaluation views: the fixed crops a recipe cuts from one augmented image.

use serde::{Deserialize, Serialize};

use crate::crop::CropWindow;
use crate::error::{Error, Result};
use crate::flip::flip_horizontal;
use crate::geometry::{self, Filter};
use crate::image::{ImageBuf, ImageRef};

/// The views a recipe makes of each image after its steps. No view draws a random number.
///
/// In JSON a value is an object whose `"kind"` field names the variant in snake case:
/// `{"kind": "ten_crop", "size": 224}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Views {
    /// The image itself, one view.
    #[default]
    Single,
    /// Ten `size` x `size` crops in the order of torchvision's `TenCrop`: the top-left,
    /// top-right, bottom-left and bottom-right corners and the centre, then the same five crops
    /// of the horizontally mirrored image. Mirroring comes first there, so view 5 is the mirror
    /// of view 1 (top-right), not of view 0. The centre window's top row is
    /// `(height - size) / 2` rounded down (torchvision rounds half to even, which differs by one
    /// row or column when the difference is odd and its half is odd).
    TenCrop {
        /// Side of each square crop in pixels, at most the image's shorter side.
        size: usize,
    },
    /// Views at several scales, for each entry `s` of `shorter_sides` in order. The image is
    /// resized so that its shorter side is `s` pixels (longer side as in
    /// [`geometry::shorter_side_size`]). The view is its centre `crop` x `crop` square, or its
    /// centre `s` x `s` square when `crop` is `None`. With `mirror`, the square's horizontal
    /// mirror follows it.
    ///
    /// Each scale has one fixed shape, whatever the input's aspect ratio, so a trainer can
    /// batch the views of one scale across images. With `crop: None` this approximates the
    /// fully convolutional multi-scale test of He et al. 2015 (ResNet), which scores the whole
    /// rectangular image instead of its centre square.
    MultiScale {
        /// Shorter sides in pixels, at least one, each at least 1.
        shorter_sides: Vec<usize>,
        /// Side of the centre crop in pixels, at most every entry of `shorter_sides`; `None`
        /// crops the centre square of each scale.
        #[serde(default)]
        crop: Option<usize>,
        /// Whether each crop is followed by its horizontal mirror.
        #[serde(default)]
        mirror: bool,
        /// Resampling filter of the resize.
        #[serde(default)]
        filter: Filter,
    },
}

impl Views {
    /// Returns the shape `(height, width)` of each view, in output order, for an augmented
    /// image of `size`, or `None` where a view's shape depends on a random draw.
    pub fn shapes(&self, size: Option<(usize, usize)>) -> Option<Vec<(usize, usize)>> {
        match self {
            Views::Single => size.map(|size| vec![size]),
            Views::TenCrop { size } => Some(vec![(*size, *size); 10]),
            Views::MultiScale { shorter_sides, crop, mirror, .. } => {
                let copies = if *mirror { 2 } else { 1 };
                let shapes = shorter_sides
                    .iter()
                    .flat_map(|&side| {
                        let square = crop.unwrap_or(side);
                        std::iter::repeat_n((square, square), copies)
                    })
                    .collect();
                Some(shapes)
            }
        }
    }

    /// Cuts the views of `image`, in output order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (op `"ten_crop"` or `"multi_scale"`) for a crop of size 0
    /// or larger than the image or scale it comes from, an empty `shorter_sides` or a shorter
    /// side of 0, and the errors of [`geometry::resize`].
    pub fn cut(&self, image: ImageRef<'_>) -> Result<Vec<ImageBuf>> {
        match self {
            Views::Single => Ok(vec![image.to_buf()]),
            Views::TenCrop { size } => ten_crop(image, *size),
            Views::MultiScale { shorter_sides, crop, mirror, filter } => {
                multi_scale(image, shorter_sides, *crop, *mirror, *filter)
            }
        }
    }
}

fn ten_crop(image: ImageRef<'_>, size: usize) -> Result<Vec<ImageBuf>> {
    let (height, width) = (image.height(), image.width());
    if size == 0 || size > height.min(width) {
        return Err(Error::InvalidParameter {
            op: "ten_crop",
            parameter: "size",
            value: size.to_string(),
            expected: format!("1 to the shorter side of the {height}x{width} image"),
        });
    }

    let mut mirrored = image.to_buf();
    flip_horizontal(&mut mirrored);

    let mut views = five_crop(image, size)?;
    views.extend(five_crop(mirrored.as_image_ref(), size)?);
    Ok(views)
}

/// Cuts the four corners, then the centre (top row and left column rounded down).
fn five_crop(image: ImageRef<'_>, size: usize) -> Result<Vec<ImageBuf>> {
    let (bottom, right) = (image.height() - size, image.width() - size);
    let corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom / 2, right / 2)];

    corners
        .into_iter()
        .map(|(top, left)| {
            geometry::crop(image, CropWindow { top, left, height: size, width: size })
        })
        .collect()
}

fn multi_scale(
    image: ImageRef<'_>,
    shorter_sides: &[usize],
    crop: Option<usize>,
    mirror: bool,
    filter: Filter,
) -> Result<Vec<ImageBuf>> {
    let invalid = |parameter: &'static str, value: String, expected: String| {
        Error::InvalidParameter { op: "multi_scale", parameter, value, expected }
    };
    if shorter_sides.is_empty() || shorter_sides.contains(&0) {
        let value = format!("{shorter_sides:?}");
        return Err(invalid("shorter_sides", value, "at least one side, each at least 1".into()));
    }
    if let Some(size) = crop {
        let smallest = shorter_sides.iter().copied().min().unwrap_or(0);
        if size == 0 || size > smallest {
            let expected = format!("1 to the smallest shorter side, {smallest}");
            return Err(invalid("crop", size.to_string(), expected));
        }
    }

    let mut views = Vec::with_capacity(shorter_sides.len() * if mirror { 2 } else { 1 });
    for &side in shorter_sides {
        let (height, width) = geometry::shorter_side_size(image.height(), image.width(), side);
        let resized = geometry::resize(image, height, width, filter)?;
        let size = crop.unwrap_or(side).min(height).min(width);
        let window = CropWindow {
            top: (height - size) / 2,
            left: (width - size) / 2,
            height: size,
            width: size,
        };
        let view = geometry::crop(resized.as_image_ref(), window)?;

        if mirror {
            let mut mirrored = view.clone();
            flip_horizontal(&mut mirrored);
            views.push(view);
            views.push(mirrored);
        } else {
            views.push(view);
        }
    }
    Ok(views)
}
