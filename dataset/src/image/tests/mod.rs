//! Tests of [`convert_image`](super::convert_image) on files built in memory and on the
//! committed fixtures in `dataset/testdata/images/`.

mod colour;
mod fixtures;
mod geometry;
mod skips;
mod store;
