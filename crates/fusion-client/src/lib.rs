//! # fusion-client
//!
//! A Fusion federation client. It joins the server, then loops: wait to
//! be sampled, fetch the global model (streamed in verified chunks), train
//! it locally on its own shard with burn, stream the update back. It exits
//! when the server reports the run finished.
//!
//! - [`ClientConfig`]: server address, TLS/token, model and training.
//! - [`run`]: the loop; [`ClientSummary`] says what happened.
//! - [`LocalTraining`]: where updates come from: a built-in network on this
//!   shard, or the user's own training command ([`run_with`]), run each
//!   round under the `FUSION_*` contract with its output checked before
//!   anything is uploaded.
//! - Transient failures (server down, restarting) are retried with
//!   exponential backoff and full jitter ([`Backoff`]); an authentication
//!   or TLS failure stops the client at once, so a misconfigured fleet
//!   does not hammer the server.
//! - [`HealthFile`]: a liveness file for container health checks, since a
//!   client has no port to probe.

#![deny(missing_docs)]

mod backoff;
mod client;
mod config;
mod error;
mod health;
mod local;

pub use backoff::Backoff;
pub use client::{ClientSummary, run, run_with};
pub use config::ClientConfig;
pub use error::ClientError;
pub use health::HealthFile;
pub use local::{CommandTraining, LocalTraining};
