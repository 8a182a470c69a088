//! Errors of the data crate: every one names the file or the flag at fault.

use std::path::PathBuf;

/// Everything that can go wrong while reading a dataset or cutting it into
/// client shards. Variants carry the file and the specific defect, so a user
/// can fix the input without reading source code.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file the dataset needs is not there.
    #[error("{path}: file not found{hint}")]
    Missing {
        /// The path looked for.
        path: PathBuf,
        /// How to obtain it, when known (may be empty).
        hint: String,
    },
    /// Reading a file failed for another reason (permissions, I/O).
    #[error("{path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A gzip stream could not be decompressed.
    #[error("{path}: not a valid gzip stream: {source}")]
    Gzip {
        /// The file being read.
        path: PathBuf,
        /// The decompression error.
        source: std::io::Error,
    },
    /// The file does not start with the magic number its format requires.
    #[error("{path}: bad magic number 0x{found:08x}: {expected}")]
    BadMagic {
        /// The file being read.
        path: PathBuf,
        /// The four bytes found at the start.
        found: u32,
        /// What was expected there.
        expected: String,
    },
    /// The file ends before the data its header announces.
    #[error("{path}: truncated: header announces {expected} bytes of data, file holds {actual}")]
    Truncated {
        /// The file being read.
        path: PathBuf,
        /// Bytes the header announces.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The header is well formed but describes something this reader does not take.
    #[error("{path}: {reason}")]
    BadHeader {
        /// The file being read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Images and labels do not pair up one to one.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Number of images it holds.
        n_images: usize,
        /// The label file.
        labels: PathBuf,
        /// Number of labels it holds.
        n_labels: usize,
    },
    /// A label is outside the dataset's classes.
    #[error("{path}: label {label} at index {index} is outside 0..{classes}")]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// The offending label.
        label: u8,
        /// Its position.
        index: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A `--dataset` value that names no known source.
    #[error("dataset `{given}`: {reason}")]
    BadSource {
        /// The text given.
        given: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A `--split` or `--shard` value that cannot be used.
    #[error("split `{given}`: {reason}")]
    BadSplit {
        /// The text given.
        given: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// Result alias for the data crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
