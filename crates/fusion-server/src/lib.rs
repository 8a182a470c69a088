//! # fusion-server
//!
//! The aggregator of a Fusion federation. Clients dial in over gRPC
//! (`proto/fusion/v1/fusion.proto`), train on their own data and stream
//! their weights back; each round the server verifies every update,
//! permutation-aligns it to a reference (Git Re-Basin) when the strategy
//! says so, averages, checkpoints, and opens the next round.
//!
//! - [`ServerConfig`]: every setting (TOML file, flags, environment).
//! - [`Server`]: `Server::new(config, test)?.run(listener, shutdown)`.
//! - [`RoundRecord`]: one line of `rounds.jsonl`.
//!
//! # Layout
//! - `config`: settings (defaults, TOML); the binary's `args` adds the
//!   command line.
//! - `registry`: registered clients, evicted when silent, capped.
//! - `rounds`: who is sampled and accepted; the round rules.
//! - `aggregator`: the strategy (and the optional refinement's teachers)
//!   on a thread of its own.
//! - `service`: the gRPC handlers; `identity`: who may act as a client id
//!   (per-client tokens, certificate names, Join sessions).
//! - `server`: start-up, resume, the round loop, checkpoints; `incoming`:
//!   accepted connections, capped and timed out when silent.
//! - `state_dir`: `global.safetensors` and `rounds.jsonl`, written atomically.
//! - `metrics`: Prometheus counters.
//! - `status_page`: the operator's live page, `/status.json` and `/metrics`.

#![deny(missing_docs)]

mod activity;
mod aggregator;
mod config;
mod error;
mod identity;
mod incoming;
mod initial;
mod input;
mod metrics;
mod record;
mod registry;
mod rounds;
mod server;
mod service;
mod state_dir;
mod status_page;

pub use config::{
    BatchNormStatistics, Init, Reference, RepairMode, SecretString, ServerConfig, StrategyKind,
};
pub use error::ServerError;
pub use initial::InitialModel;
pub use metrics::Metrics;
pub use record::{ClientRound, RefinementRecord, RoundRecord};
pub use server::{RunSummary, Server};
pub use state_dir::{StateDir, write_atomic};
pub use status_page::CONTENT_SECURITY_POLICY;
