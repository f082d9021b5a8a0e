//! Shard format version 2: immutable, checksummed files of records plus a JSON manifest,
//! written atomically and read through read-only memory maps. A set has a fixed layout (every
//! record raw pixels of one shape: IDX, CIFAR) or a variable layout (a shape per record, raw or
//! JPEG: photo collections). Each record carries its source path and its metadata.
//!
//! A shard set is a folder holding `manifest.json` and the shard files
//! `<split>-00000.shard`, `<split>-00001.shard`, ... `FORMAT.md` beside this crate gives the
//! exact byte layout, the manifest fields, the checksums and what a reader must check.
//!
//! - Writing: [`write_shard_set`] takes a [`crate::source::SourceSet`]; [`write_record_set`]
//!   takes borrowed fixed-layout records ([`RecordSet`]); [`ShardWriter`] writes a single file
//!   of either layout ([`ShardWriter::push_record`] with a [`RecordRef`]).
//! - Reading: [`ShardSet::open`] opens a set and presents each [`Split`] as one index space;
//!   [`ShardReader`] opens a single file.
//! - Checking: [`verify_shard_set`] checks every checksum and the content hashes.

pub(crate) mod atomic;
mod layout;
mod limits;
mod manifest;
mod mmap;
mod reader;
mod schema;
mod set;
mod stats;
mod validate;
mod verify;
pub(crate) mod write_set;
mod writer;

#[cfg(test)]
mod tests;

pub use layout::{
    header_crc32c, record_crc32c, IndexEntry, ShardHeader, HEADER_LEN, INDEX_ENTRY_LEN, MAGIC,
    NO_LABEL, VERSION,
};
pub use limits::Limits;
pub use manifest::{
    is_valid_split_name, shard_file_name, Manifest, ShardFile, SplitManifest, MANIFEST_FILE,
    MANIFEST_FORMAT, MANIFEST_VERSION,
};
pub use reader::ShardReader;
pub use schema::{Dtype, Encoding, Layout, RecordMeta, SampleSchema, FLAG_REENCODED, KNOWN_FLAGS};
pub use set::{ShardSet, Split};
pub use stats::{channel_stats, class_counts, ChannelStats};
pub use verify::{verify_shard_set, verify_shard_set_with_limits, SplitReport, VerifyReport};
pub use write_set::{write_record_set, write_shard_set, RecordSet, RecordSplit, WriteOptions};
pub use writer::{RecordRef, ShardWriter};
