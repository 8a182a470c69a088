//! # fusion-bin
//!
//! What Fusion's three binaries share, written once: how they log
//! ([`logging`]) and how they learn they must stop ([`stop_signal`]).
//! Only binaries depend on this crate; libraries only emit `tracing`
//! events and take shutdown futures.

#![deny(missing_docs)]

pub mod logging;
mod signal;

pub use signal::stop_signal;
