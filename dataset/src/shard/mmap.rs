//! The one place in this crate that memory-maps a file.

use std::fs::File;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};

/// Maps the whole of `file` read-only.
///
/// The mapping is only sound while no process modifies or truncates the file, because the bytes
/// behind a `&[u8]` view must not change. Shard files meet this by construction: the writer
/// renames each one into place complete and never opens it for writing again. A process that
/// breaks the rule anyway (truncating a mapped shard, for example) can make a later read of the
/// mapping raise SIGBUS and kill this process.
///
/// The caller must not map an empty file. Some platforms reject zero-length mappings, and
/// every shard file is at least one header long.
pub(crate) fn map_read_only(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: `Mmap` hands out `&[u8]` views of the file, which is sound only while the file's
    // bytes and length stay unchanged. Shards are immutable once renamed into place, and this
    // crate opens them read-only. A truncation by another process breaks the contract and can
    // raise SIGBUS, as the function documentation states.
    let map = unsafe { MmapOptions::new().map(file) };

    map.map_err(|source| Error::io(path, source))
}
