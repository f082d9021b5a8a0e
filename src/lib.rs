//! expanse: image datasets as memory-mapped shards, reproducible parallel augmentation and
//! libtorch training of the classic ImageNet/CIFAR networks.
//!
//! This facade re-exports the workspace libraries under one name.

pub use expanse_augment as augment;
pub use expanse_dataset as dataset;
pub use expanse_trainer as trainer;
