//! # fusion-cli
//!
//! The `fusion` command line as a library: its argument types (`cli`),
//! one module per subcommand (`commands`), model and spec files
//! (`files`) and flag-to-option conversions (`options`). The `fusion`
//! binary is a thin `main` over it, and `fusion-sim` (the federation in
//! one process, and the ingest benchmark, which need the server and
//! client libraries) reuses its arguments and output helpers, so this
//! library never depends on the server or the client.

pub mod cli;
pub mod commands;
pub mod files;
pub mod options;

/// Default log filter of `fusion` and `fusion-sim`: warnings, plus
/// per-epoch training lines (shown when no progress bar is drawn) and
/// experiment milestones.
pub const DEFAULT_LOG: &str = "warn,fusion_train=info,fusion_experiments=info";
