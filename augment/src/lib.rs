//! Reproducible image augmentation on u8 HWC pixels.
//!
//! Every random choice is a pure function of a [`SampleKey`] (seed, epoch, sample index) and
//! the op's position in its recipe, through a ChaCha8 generator seeded from those four numbers.
//! Thread count, batch size and the order in which samples are processed therefore cannot
//! change a single output byte.
//!
//! The ops are small named types that implement [`Transform`] on u8 HWC images:
//! [`geometry`] (resize, scale jitter, crops, random-resized crop, affine warps), [`RandomCrop`],
//! [`HorizontalFlip`] and [`VerticalFlip`], [`elastic`] distortion, [`colour`] (PCA lighting,
//! colour jitter), [`noise`] and [`erase`] (random erasing, cutout).
//!
//! [`pipeline::Recipe`] chains them: a list of [`pipeline::Step`]s (ops, and the random
//! compositions `maybe`, `one_of` and `sequence`), evaluation [`pipeline::Views`] (ten-crop,
//! multi-scale) and an [`pipeline::Output`] (per-channel normalisation or mean-image
//! subtraction to f32 CHW). A recipe is plain serde data, so a run's config can hold it as
//! JSON, and [`pipeline::Recipe::named`] returns the standard ones (`resnet-imagenet`,
//! `inception`, `cifar`, `mnist-elastic` and the `eval-*` recipes). Batches run serially or
//! on rayon with the same output bytes.
//!
//! ```
//! use expanse_augment::pipeline::Recipe;
//! use expanse_augment::{ImageRef, SampleKey};
//!
//! let pixels = vec![128u8; 375 * 500 * 3];
//! let image = ImageRef::new(&pixels, 375, 500, 3)?;
//! let recipe = Recipe::named("resnet-imagenet")?;
//! assert_eq!(recipe.output_shape(375, 500, 3), Some((1, 3, 224, 224)));
//! let mut out = vec![0.0f32; 3 * 224 * 224];
//! recipe.apply(image, SampleKey::new(0, 0, 17), &mut out)?;
//! # Ok::<(), expanse_augment::Error>(())
//! ```
//!
//! The loaders use [`CropFlipNormalize`], the CIFAR-style recipe (pad, random crop, horizontal
//! flip, per-channel normalisation to f32 CHW) fused into one pass over the output. Its steps
//! also exist on their own ([`RandomCrop`], [`HorizontalFlip`], [`Normalize`]), and the fused
//! recipe equals their composition bit for bit, as does the named `cifar` recipe.
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
pub mod colour;
mod crop;
pub mod elastic;
pub mod erase;
mod error;
mod flip;
mod fused;
pub mod geometry;
mod image;
mod key;
pub mod noise;
mod normalize;
mod op;
mod pad;
pub mod pipeline;
mod recipe;
pub mod sample;

pub use batch::{apply_batch, par_apply_batch};
pub use crop::{CropWindow, RandomCrop};
pub use error::{Error, Result};
pub use flip::{flip_horizontal, flip_vertical, HorizontalFlip, VerticalFlip};
pub use fused::CropFlipNormalizePlan;
pub use image::{ImageBuf, ImageRef};
pub use key::{bernoulli, uniform_inclusive, SampleKey};
pub use normalize::{Normalize, NormalizeTable};
pub use op::{OpRng, Transform};
pub use pad::PadMode;
pub use recipe::CropFlipNormalize;
