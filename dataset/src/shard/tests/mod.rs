//! Tests across the shard modules: round trips, determinism and corrupt input.

pub(crate) mod fixtures;

mod corrupt;
mod determinism;
mod round_trip;
