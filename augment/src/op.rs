//! The interface every image op of a recipe implements.

use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::image::{ImageBuf, ImageRef};

/// The generator an op draws from: in a recipe, the ChaCha8 stream of
/// [`SampleKey::rng`](crate::SampleKey::rng) for the op's position.
pub type OpRng = ChaCha8Rng;

/// A transform of u8 HWC images that a recipe can run.
///
/// Every random choice comes from the generator passed in, drawn in the order the op's
/// documentation states, so the same generator state gives the same output bytes on every
/// machine thread count and batch size. An op reads no global or thread-local state.
pub trait Transform {
    /// The op's name in a recipe, for example `"scale_jitter"`.
    fn name(&self) -> &'static str;

    /// Returns the output rows and columns for a `height` x `width` input, or `None` where
    /// they depend on a random draw (scale jitter, for example).
    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)>;

    /// Transforms `image` into a new image.
    ///
    /// # Errors
    ///
    /// An op's parameter errors ([`Error::InvalidParameter`](crate::Error::InvalidParameter)
    /// and the like) and the images it cannot handle
    /// ([`Error::UnsupportedChannels`](crate::Error::UnsupportedChannels)).
    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf>;

    /// Transforms `image` in place, drawing exactly what [`transform`](Self::transform) draws
    /// and giving the same bytes. Pixel-wise ops override it to skip the copy; the default
    /// replaces `image` with the output of `transform`.
    ///
    /// # Errors
    ///
    /// The same as [`transform`](Self::transform); on error `image` is unchanged.
    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        *image = self.transform(image.as_image_ref(), rng)?;
        Ok(())
    }
}
