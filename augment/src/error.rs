//! The error type of the augmentation crate.

/// A failure to validate an image, an op's parameters or an output buffer.
///
/// Every check runs before any pixel is written, so a returned error leaves the output buffer
/// unchanged. Messages carry the values that disagree.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image with a zero height, width or channel count.
    #[error("invalid image shape {height}x{width}x{channels}: every dimension must be at least 1")]
    ZeroDimension {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Interleaved channels per pixel.
        channels: usize,
    },

    /// An image whose pixel buffer length is not `height * width * channels`.
    #[error(
        "image data length {actual} does not match {height}x{width}x{channels} = {expected} bytes"
    )]
    DataLength {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Interleaved channels per pixel.
        channels: usize,
        /// `height * width * channels`, or `usize::MAX` where that product overflows.
        expected: usize,
        /// The length of the buffer given.
        actual: usize,
    },

    /// A crop window with a zero height or width.
    #[error("invalid crop size {height}x{width}: both sides must be at least 1")]
    ZeroCrop {
        /// Requested crop rows.
        height: usize,
        /// Requested crop columns.
        width: usize,
    },

    /// A crop window larger than the padded image on either side.
    #[error(
        "crop {crop_height}x{crop_width} does not fit in a {image_height}x{image_width} image \
         padded by {padding} on each side ({padded_height}x{padded_width})"
    )]
    CropTooLarge {
        /// Requested crop rows.
        crop_height: usize,
        /// Requested crop columns.
        crop_width: usize,
        /// Input image rows.
        image_height: usize,
        /// Input image columns.
        image_width: usize,
        /// Pixels added on each side before cropping.
        padding: usize,
        /// `image_height + 2 * padding`.
        padded_height: usize,
        /// `image_width + 2 * padding`.
        padded_width: usize,
    },

    /// A padding so large that the padded image size does not fit in `isize`.
    #[error(
        "padding {padding} around a {image_height}x{image_width} image overflows the padded size"
    )]
    PaddingOverflow {
        /// Pixels requested on each side.
        padding: usize,
        /// Input image rows.
        image_height: usize,
        /// Input image columns.
        image_width: usize,
    },

    /// A crop window that reaches past the padded image.
    #[error(
        "crop window at row {top}, column {left} of size {height}x{width} reaches past the \
         padded image ({padded_height}x{padded_width})"
    )]
    WindowOutOfBounds {
        /// First row of the window, in padded coordinates.
        top: usize,
        /// First column of the window, in padded coordinates.
        left: usize,
        /// Window rows.
        height: usize,
        /// Window columns.
        width: usize,
        /// Rows of the padded image.
        padded_height: usize,
        /// Columns of the padded image.
        padded_width: usize,
    },

    /// A probability outside `[0, 1]` or not finite.
    #[error("invalid flip probability {value}: expected a finite value in [0, 1]")]
    InvalidProbability {
        /// The probability given.
        value: f64,
    },

    /// A normalisation `mean` or `std` list whose length is neither 1 nor the channel count.
    #[error("normalize {name} has {len} entries but the image has {channels} channels (expected 1 or {channels})")]
    ChannelCount {
        /// `"mean"` or `"std"`.
        name: &'static str,
        /// Entries in the list.
        len: usize,
        /// Channels of the image.
        channels: usize,
    },

    /// An image whose channel count differs from that of a normalisation table.
    #[error("image has {found} channels but the normalize table was built for {expected}")]
    TableChannels {
        /// Channels of the table.
        expected: usize,
        /// Channels of the image.
        found: usize,
    },

    /// A normalisation mean that is not finite.
    #[error("invalid normalize mean {value} for channel {channel}: expected a finite value")]
    InvalidMean {
        /// Position in the `mean` list.
        channel: usize,
        /// The mean given, in 0..255 pixel units.
        value: f32,
    },

    /// A normalisation standard deviation that is zero, negative or not finite.
    #[error(
        "invalid normalize std {value} for channel {channel}: expected a finite value above 0"
    )]
    InvalidStd {
        /// Position in the `std` list.
        channel: usize,
        /// The standard deviation given, in 0..255 pixel units.
        value: f32,
    },

    /// An output buffer whose length does not match the op's output.
    #[error("output buffer has {actual} elements but the op writes {expected}")]
    OutputLength {
        /// Elements the op writes.
        expected: usize,
        /// Length of the buffer given.
        actual: usize,
    },

    /// A batch whose image and key lists differ in length.
    #[error("batch has {images} images but {keys} sample keys")]
    KeyCount {
        /// Images in the batch.
        images: usize,
        /// Keys given.
        keys: usize,
    },

    /// A batch image whose shape differs from the batch's shape (that of image 0, or the one a
    /// plan was prepared for).
    #[error(
        "batch image {index} has shape {found_height}x{found_width}x{found_channels} but the \
         batch shape is {height}x{width}x{channels}"
    )]
    ShapeMismatch {
        /// Position of the offending image in the batch.
        index: usize,
        /// Rows of the batch shape.
        height: usize,
        /// Columns of the batch shape.
        width: usize,
        /// Channels of the batch shape.
        channels: usize,
        /// Rows of the offending image.
        found_height: usize,
        /// Columns of the offending image.
        found_width: usize,
        /// Channels of the offending image.
        found_channels: usize,
    },

    /// An image whose shape differs from the one a plan was prepared for.
    #[error(
        "image has shape {found_height}x{found_width}x{found_channels} but the plan was prepared \
         for {height}x{width}x{channels}"
    )]
    PlanShape {
        /// Rows the plan expects.
        height: usize,
        /// Columns the plan expects.
        width: usize,
        /// Channels the plan expects.
        channels: usize,
        /// Rows of the image given.
        found_height: usize,
        /// Columns of the image given.
        found_width: usize,
        /// Channels of the image given.
        found_channels: usize,
    },

    /// An op parameter outside its valid range, or a combination of parameters that cannot work.
    #[error("{op}: invalid {parameter} {value}: expected {expected}")]
    InvalidParameter {
        /// The op, as named in a recipe (for example `"scale_jitter"`).
        op: &'static str,
        /// The parameter's field name.
        parameter: &'static str,
        /// The value given, formatted.
        value: String,
        /// What the op accepts.
        expected: String,
    },

    /// An image whose channel count an op cannot handle.
    #[error("{op} needs {expected} but the image has {found} channels")]
    UnsupportedChannels {
        /// The op, as named in a recipe.
        op: &'static str,
        /// What the op accepts, for example `"3 channels (RGB)"`.
        expected: &'static str,
        /// Channels of the image given.
        found: usize,
    },
}

/// Builds an [`Error::InvalidParameter`] for `op`, with `value` formatted by `Debug`.
pub(crate) fn invalid(
    op: &'static str,
    parameter: &'static str,
    value: impl std::fmt::Debug,
    expected: &str,
) -> Error {
    Error::InvalidParameter {
        op,
        parameter,
        value: format!("{value:?}"),
        expected: expected.to_string(),
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
