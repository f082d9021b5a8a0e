//! The error type of the dataset crate.

use std::path::PathBuf;

/// A failure while reading a source, writing or reading shards, or loading batches.
///
/// Every variant names the file it concerns; `Format` and `Corrupt` messages also carry the
/// place (record, byte offset) and the values that disagree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error on a file. The message names the file; the OS error is the
    /// source, so print the chain (`{:#}` with anyhow) to see both.
    #[error("{}", path.display())]
    Io {
        /// The file or folder being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A file whose structure does not match its format.
    #[error("{}: {message}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong, with the offset and the values found and expected.
        message: String,
    },

    /// A record or table whose checksum does not match its bytes.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// The record index or region, with the stored and computed checksums.
        message: String,
    },

    /// A source folder or file whose kind could not be recognised.
    #[error("{}: {message}", path.display())]
    UnknownSource {
        /// The path given as the source.
        path: PathBuf,
        /// What was looked for and not found.
        message: String,
    },

    /// A manifest that is not valid JSON or lacks a field.
    #[error("{}: invalid manifest", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The JSON error, with line and column.
        source: serde_json::Error,
    },

    /// An augmentation that cannot be applied to the records' shape.
    #[error("augmentation")]
    Augment(#[from] expanse_augment::Error),

    /// A request that cannot be served, such as an unknown split or a zero batch size.
    #[error("{0}")]
    InvalidArgument(String),
}

/// The result type of the dataset crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Builds an [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), message: message.into() }
    }
}
