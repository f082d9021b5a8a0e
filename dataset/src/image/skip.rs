//! Reasons for leaving a source file out of a converted set.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The class of problem that made the converter skip a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// The file has no bytes.
    Empty,
    /// The file ends before the image does (cut-off download or copy).
    Truncated,
    /// The bytes start with no known image signature.
    NotAnImage,
    /// An image format or a feature of one (arithmetic-coded or 12-bit JPEG, TIFF, …) that the
    /// converter does not decode.
    Unsupported,
    /// The declared size exceeds [`DecodeLimits`](super::DecodeLimits), or a JPEG side would
    /// exceed 65535.
    TooLarge,
    /// The data is invalid for its format.
    Corrupt,
}

impl SkipKind {
    /// Every kind, in declaration order (for per-kind counters).
    pub const ALL: [SkipKind; 6] = [
        SkipKind::Empty,
        SkipKind::Truncated,
        SkipKind::NotAnImage,
        SkipKind::Unsupported,
        SkipKind::TooLarge,
        SkipKind::Corrupt,
    ];

    /// Returns the kind in words, as [`SkipReason`] prints it: "empty", "not an image", ….
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::Empty => "empty",
            SkipKind::Truncated => "truncated",
            SkipKind::NotAnImage => "not an image",
            SkipKind::Unsupported => "unsupported",
            SkipKind::TooLarge => "too large",
            SkipKind::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file the converter skipped: the kind of problem and a detail with the values found, such as
/// "too large: declares 100000x100000 pixels, limit 178956970".
///
/// The detail does not name the file; the caller knows which file it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReason {
    /// The class of problem.
    pub kind: SkipKind,
    /// The values found: offsets, sizes and limits.
    pub detail: String,
}

impl SkipReason {
    /// Builds a reason of `kind`.
    pub fn new(kind: SkipKind, detail: impl Into<String>) -> Self {
        SkipReason { kind, detail: detail.into() }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for SkipReason {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_kind_and_detail() {
        let reason = SkipReason::new(SkipKind::NotAnImage, "starts with 68 65 6c 6c");
        assert_eq!(reason.to_string(), "not an image: starts with 68 65 6c 6c");
    }

    #[test]
    fn kinds_serialise_in_snake_case() {
        let text = serde_json::to_string(&SkipKind::ALL).unwrap();
        assert_eq!(
            text,
            r#"["empty","truncated","not_an_image","unsupported","too_large","corrupt"]"#
        );
    }
}
