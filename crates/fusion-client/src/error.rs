//! Why a client stopped.

use thiserror::Error;

/// A failure that ends the client. Transient trouble (server down or
/// restarting) is retried with backoff and never becomes one of these
/// unless it outlasts the give-up time.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the token; retrying cannot help.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The TLS handshake failed (unknown CA, missing or refused client
    /// certificate); retrying cannot help.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The server refused this client for good (protocol or model mismatch).
    #[error("server refused this client: {0}")]
    Refused(String),
    /// The server stayed unreachable.
    #[error("server {url} unreachable for {seconds:.0} s (last error: {last})")]
    Unreachable {
        /// Its address.
        url: String,
        /// How long the client tried.
        seconds: f64,
        /// The last error seen.
        last: String,
    },
    /// Bad address or TLS files.
    #[error(transparent)]
    Wire(#[from] fusion_net::WireError),
    /// Local training failed.
    #[error("local training: {0}")]
    Train(#[from] fusion_train::TrainError),
    /// The user's trainer failed this many rounds in a row (each failure
    /// was logged, and nothing was uploaded for it).
    #[error("the trainer failed {failures} times in a row; the last: {last}")]
    Trainer {
        /// Failures in a row.
        failures: u32,
        /// The last one, naming the file or tensor at fault.
        last: String,
    },
    /// The model could not be built from what the server sent.
    #[error("model: {0}")]
    Model(String),
    /// The compute backend is unavailable.
    #[error(transparent)]
    Backend(#[from] fusion_core::BackendError),
}
