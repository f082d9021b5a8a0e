//! Reproducible image augmentation on u8 HWC pixels.
//!
//! Every random choice is a pure function of a [`SampleKey`] (seed, epoch, sample index) and
//! the op's position in its recipe, through a ChaCha8 generator seeded from those four numbers.
//! Thread count, batch size and the order in which samples are processed therefore cannot
//! change a single output byte.
//!
//! The loaders use [`CropFlipNormalize`], the CIFAR-style recipe (pad, random crop, horizontal
//! flip, per-channel normalisation to f32 CHW) fused into one pass over the output. Each step
//! also exists on its own ([`RandomCrop`], [`HorizontalFlip`], [`Normalize`]) on u8 HWC
//! images, and the fused recipe equals their composition bit for bit.
//!
//! ```
//! use expanse_augment::{CropFlipNormalize, ImageRef, SampleKey};
//!
//! let pixels = vec![128u8; 32 * 32 * 3];
//! let image = ImageRef::new(&pixels, 32, 32, 3)?;
//! let recipe = CropFlipNormalize::cifar(4, vec![125.3, 123.0, 113.9], vec![63.0, 62.1, 66.7]);
//! let mut out = vec![0.0f32; recipe.output_len(32, 32, 3)];
//! recipe.apply(image, SampleKey::new(0, 0, 17), &mut out)?;
//! # Ok::<(), expanse_augment::Error>(())
//! ```
//!
//! This crate reads no files and does not depend on libtorch or any other tensor library.

mod batch;
mod crop;
mod error;
mod flip;
mod fused;
mod image;
mod key;
mod normalize;
mod pad;
mod recipe;

pub use batch::{apply_batch, par_apply_batch};
pub use crop::{CropWindow, RandomCrop};
pub use error::{Error, Result};
pub use flip::{flip_horizontal, HorizontalFlip};
pub use fused::CropFlipNormalizePlan;
pub use image::{ImageBuf, ImageRef};
pub use key::{bernoulli, uniform_inclusive, SampleKey};
pub use normalize::{Normalize, NormalizeTable};
pub use pad::PadMode;
pub use recipe::CropFlipNormalize;
