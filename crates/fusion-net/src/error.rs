//! What can be wrong with a payload on the wire.

use thiserror::Error;

/// A payload that cannot be accepted, with what exactly was wrong. The
/// server turns each into a gRPC status (see [`WireError::code`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The stream ended, or began, without a header chunk.
    #[error("the first chunk must be a header")]
    MissingHeader,
    /// A second header arrived inside one payload.
    #[error("a header chunk arrived after data; one payload has one header")]
    ExtraHeader,
    /// The stream ended with no chunk at all.
    #[error("empty stream: no header and no data")]
    Empty,
    /// A manifest entry has a dtype other than its section's (weights
    /// travel as F32, statistics as F64).
    #[error(
        "tensor `{name}` has dtype {dtype}; protocol version 2 sends weights as F32 and statistics as F64, so this one must be {expected}"
    )]
    Dtype {
        /// Tensor name.
        name: String,
        /// The dtype it claims.
        dtype: String,
        /// The dtype its section carries.
        expected: &'static str,
    },
    /// The manifest differs from the expected one.
    #[error("manifest mismatch: {0}")]
    Manifest(String),
    /// The header's byte count disagrees with its manifest.
    #[error("header says {header} payload bytes but its manifest adds up to {manifest}")]
    HeaderSize {
        /// Bytes in the header.
        header: u64,
        /// Bytes implied by the manifest.
        manifest: u64,
    },
    /// More bytes than the size limit.
    #[error("payload of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Payload size.
        bytes: u64,
        /// Limit.
        limit: u64,
    },
    /// A single chunk above the maximum chunk size.
    #[error("chunk of {bytes} bytes exceeds the maximum chunk size of {limit} bytes")]
    ChunkTooLarge {
        /// Chunk size.
        bytes: usize,
        /// Limit.
        limit: usize,
    },
    /// Data beyond the announced length.
    #[error("received more data than the {expected} bytes the header announced")]
    Overflow {
        /// Announced size.
        expected: u64,
    },
    /// The stream ended early.
    #[error("payload truncated: received {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The content hash does not match.
    #[error("hash mismatch: header says sha256 {expected}, payload hashes to {actual}")]
    Hash {
        /// Hash in the header.
        expected: String,
        /// Hash of what arrived.
        actual: String,
    },
    /// A NaN or infinity in the weights or statistics.
    #[error("tensor `{name}` holds a non-finite value ({value}) at element {index}")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat index.
        index: usize,
        /// The value (an F32 weight widened losslessly).
        value: f64,
    },
    /// The model cannot be expressed on the wire.
    #[error("model cannot be sent: {0}")]
    Unsendable(String),
    /// A PEM file is missing or unreadable.
    #[error("cannot read {what} `{path}`")]
    File {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("{what} `{path}` is not usable: {reason}")]
    BadPem {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A server address that cannot be dialled.
    #[error("bad server address `{url}`: {reason}")]
    Address {
        /// The address given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// TLS or token configuration that cannot work.
    #[error("{0}")]
    Config(String),
}

impl WireError {
    /// The gRPC status code for this error: `RESOURCE_EXHAUSTED` for size
    /// limits, `INVALID_ARGUMENT` for everything wrong with the content.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::TooLarge { .. } | Self::ChunkTooLarge { .. } => tonic::Code::ResourceExhausted,
            Self::File { .. } | Self::BadPem { .. } | Self::Address { .. } | Self::Config(_) => {
                tonic::Code::Internal
            }
            _ => tonic::Code::InvalidArgument,
        }
    }

    /// A short stable label for metrics (`hash`, `size`, `non_finite`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader | Self::ExtraHeader | Self::Empty => "malformed",
            Self::Dtype { .. } | Self::Manifest(_) | Self::HeaderSize { .. } => "manifest",
            Self::TooLarge { .. } | Self::ChunkTooLarge { .. } | Self::Overflow { .. } => "size",
            Self::Truncated { .. } => "truncated",
            Self::Hash { .. } => "hash",
            Self::NonFinite { .. } => "non_finite",
            _ => "other",
        }
    }

    /// This error as a gRPC status whose message says what was wrong.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}
