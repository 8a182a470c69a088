//! Errors that stop the server (bad configuration, an unusable state dir).
//! Errors in one client's update never become these: they are statuses.

use std::path::PathBuf;

use thiserror::Error;

/// A failure of the server as a whole.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is wrong; the message names it.
    #[error("configuration: {0}")]
    Config(String),
    /// A file or directory could not be used.
    #[error("cannot use {what} `{}`", path.display())]
    Io {
        /// What the path is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state directory holds something unusable.
    #[error("state dir: {0}")]
    State(String),
    /// TLS files or other wire settings.
    #[error(transparent)]
    Wire(#[from] fusion_net::WireError),
    /// The model could not be built or scored.
    #[error("model: {0}")]
    Model(String),
    /// The compute backend is unavailable.
    #[error(transparent)]
    Backend(#[from] fusion_core::BackendError),
    /// The gRPC transport failed (the port is taken, say).
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Aggregation failed in a way that no retry can fix.
    #[error("aggregation: {0}")]
    Aggregation(String),
}
