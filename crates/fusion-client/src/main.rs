//! `fusion-client`: thin binary over the `fusion_client` library. Loads
//! its shard, then runs the client loop until the server reports the run
//! finished (exit 0) or a failure no retry can fix (exit 1, one line).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fusion_client::ClientArgs;

fn main() -> ExitCode {
    let args = ClientArgs::parse();
    init_logging(args.json_logs);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ClientArgs) -> anyhow::Result<()> {
    let (config, shard) = args.load()?;
    tracing::info!(
        client = %config.client_id,
        examples = shard.len(),
        shard = %args.shard,
        split = %args.split,
        "loaded shard"
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let summary = runtime.block_on(fusion_client::run(config, Arc::new(shard)))?;
    tracing::info!(
        merged = ?summary.rounds_merged,
        refused = summary.refused,
        reconnects = summary.reconnects,
        "client finished"
    );
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wgpu_hal=off,wgpu_core=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
