//! Recipes built from steps: any op sequence with random compositions, evaluation views and
//! an output stage, stored as JSON in a run's config.
//!
//! A [`Recipe`] runs its [`Step`]s on a u8 HWC image, cuts its [`Views`] and writes each
//! through its [`Output`] as f32 CHW. [`Recipe::named`] returns the standard recipes
//! ([`Recipe::NAMES`]). Step `i` draws from `key.rng(i)`, so the output depends only on the
//! recipe, the image and the [`SampleKey`](crate::SampleKey), and
//! [`Recipe::par_apply_batch`] writes the same bytes as [`Recipe::apply_batch`] on any pool.
//!
//! ```
//! use expanse_augment::pipeline::Recipe;
//! use expanse_augment::{ImageRef, SampleKey};
//!
//! let recipe = Recipe::named("resnet-imagenet")?;
//! let pixels = vec![128u8; 375 * 500 * 3];
//! let image = ImageRef::new(&pixels, 375, 500, 3)?;
//! let len = recipe.output_len(375, 500, 3).expect("a fixed 3x224x224 output");
//! let mut out = vec![0.0f32; len];
//! recipe.apply(image, SampleKey::new(0, 0, 17), &mut out)?;
//! # Ok::<(), expanse_augment::Error>(())
//! ```

mod batch;
mod fused;
mod named;
mod output;
mod recipe;
mod step;
mod views;

pub use named::{
    CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD,
};
pub use output::{MeanImage, MeanImageSum, Output};
pub use recipe::{Recipe, RecipePlan};
pub use step::{child_rng, Step};
pub use views::Views;
