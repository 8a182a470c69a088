//! `fusion`: align and merge neural networks offline (Git Re-Basin).
//!
//! Thin binary over the `fusion_cli` library: argument parsing lives in
//! `cli`, each subcommand in `commands`, and all the work in
//! `fusion-core`. `simulate` and `bench ingest` run the `fusion-sim`
//! binary, so this one needs neither the server nor the client library.

use fusion_cli::{DEFAULT_LOG, cli, commands};

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    fusion_bin::logging::init(DEFAULT_LOG, fusion_bin::logging::Format::Text);
    one_line_panics();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A panic (a bug, or a GPU driver that burn cannot open) still ends in one
/// `error:` line, like every other failure, instead of a multi-line report.
/// `RUST_BACKTRACE=1` keeps the full report for debugging.
fn one_line_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let first = message.lines().next().unwrap_or("").trim();
        eprintln!("error: internal failure: {first}");
    }));
}
