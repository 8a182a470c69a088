//! # fusion-net
//!
//! The wire between Fusion's clients and its aggregator, shared by both
//! sides so they cannot disagree:
//! - [`pb`]: the gRPC service and messages generated from
//!   `proto/fusion/v1/fusion.proto` (read that file for the protocol).
//! - [`Payload`]: a model as a tensor manifest plus raw bytes and their
//!   SHA-256, cut into [`pb::Chunk`]s by [`Payload::chunks`] and put back
//!   together, length- and hash-checked, by [`Assembler`] (keeping the
//!   bytes) or [`DecodingAssembler`] (decoding them into tensors as they
//!   arrive, with [`TensorDecoder`]).
//! - [`ServerTls`] / [`ClientTls`]: rustls configuration from PEM files,
//!   with optional mutual TLS, and [`check_certificate_names`] binding a
//!   client id to its certificate; [`BearerToken`] / [`TokenTable`]:
//!   optional bearer tokens, shared or one per client.
//! - [`connect`]: a client channel with TLS and token applied.
//! - [`DevCertificates`]: a development CA with server and client
//!   certificates (`fusion certs`).
//!
//! It knows nothing of rounds or strategies: that is the server's job.

#![deny(missing_docs)]

mod auth;
mod certs;
mod chunks;
mod connect;
mod decode;
mod error;
mod header;
mod log_safe;
mod payload;
mod peer;
mod tls;

/// Code generated from `proto/fusion/v1/fusion.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("fusion.v1");
}

pub use auth::{BearerToken, Caller, MIN_TOKEN_BYTES, TokenTable, parse_token_file, same_secret};
pub use certs::{DevCertificates, PemPair};
pub use chunks::{Assembler, DecodingAssembler, Received, ReceivedUpdate};
pub use connect::{FederationClient, connect};
pub use decode::TensorDecoder;
pub use error::WireError;
pub use header::{MAX_TENSOR_NAME_BYTES, check_header_text};
pub use log_safe::{LogSafe, MAX_LOGGED_BYTES, is_hidden};
pub use payload::{
    F32, F64, Payload, check_manifest, is_sha256_hex, manifest_bytes, manifest_hash, payload_bytes,
    sha256_hex,
};
pub use peer::check_certificate_names;
pub use tls::{ClientTls, ServerTls};

/// Version of the protocol in `proto/`; a client and server that disagree
/// refuse each other at `Join` rather than misreading messages.
pub const PROTOCOL_VERSION: u32 = 2;

/// Smallest chunk size a server may ask for (1 MiB).
pub const MIN_CHUNK_BYTES: usize = 1 << 20;
/// Largest chunk size (4 MiB); the decoding limit leaves room above it.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;
/// Default chunk size (1 MiB).
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// gRPC message size limit both sides set: the largest chunk plus room for
/// a header carrying a manifest of thousands of tensors.
pub const MAX_MESSAGE_BYTES: usize = MAX_CHUNK_BYTES + (1 << 20);
