//! Caps a reader applies to sizes read from shard files and manifests before using them.

/// Upper bounds on the sizes a reader accepts from a shard file or manifest.
///
/// Every size in a file is also checked against the file length, so these caps do not guard
/// memory (the reader allocates nothing from file sizes). They reject implausible values early
/// with a clear message. The defaults are format sanity bounds, not tuned for any machine.
/// The writer rejects input that a reader with default limits would reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of records in one shard file.
    pub max_records: u64,
    /// Maximum size of one record in bytes.
    pub max_record_bytes: u64,
    /// Maximum image height and width in pixels.
    pub max_side: u32,
    /// Maximum channels per pixel.
    pub max_channels: u32,
    /// Maximum size of `manifest.json` in bytes; the manifest is read into memory whole.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    /// Returns 2^28 records, 1 GiB per record, 65536-pixel sides, 64 channels and a 64 MiB
    /// manifest.
    fn default() -> Self {
        Limits {
            max_records: 1 << 28,
            max_record_bytes: 1 << 30,
            max_side: 1 << 16,
            max_channels: 64,
            max_manifest_bytes: 64 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_record_cap_fits_index_length_field() {
        let limits = Limits::default();

        assert!(limits.max_record_bytes < u64::from(u32::MAX));
        assert!(limits.max_side > 0);
        assert!(limits.max_channels >= 4);
    }
}
