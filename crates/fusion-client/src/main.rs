//! `fusion-client`: thin binary over the `fusion_client` library. Loads
//! its shard, then runs the client loop until the server reports the run
//! finished (exit 0) or a failure no retry can fix (exit 1, one line).
//! Ctrl-C or SIGTERM stop it at once, and the user's trainer with it.

mod args;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fusion_client::LocalTraining;

use crate::args::ClientArgs;

fn main() -> ExitCode {
    let args = ClientArgs::parse();
    fusion_bin::logging::init("info", fusion_bin::logging::format(args.json_logs));
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ClientArgs) -> anyhow::Result<()> {
    let (config, local) = args.load()?;
    match &local {
        LocalTraining::BuiltIn(shard) => tracing::info!(
            client = %config.client_id,
            examples = shard.len(),
            shard = %args.shard,
            split = %args.split,
            "loaded shard"
        ),
        LocalTraining::Command(c) => tracing::info!(
            client = %config.client_id,
            examples = c.examples,
            tensors = c.trainer.template().len(),
            "training with `{}`",
            c.trainer.command().command
        ),
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let summary = runtime.block_on(async {
        tokio::select! {
            summary = fusion_client::run_with(config, local) => Some(summary),
            () = fusion_bin::stop_signal() => None,
        }
    });
    // A trainer runs in its own process group, which the terminal's
    // Ctrl-C does not reach: it ends with the client, not hours later.
    fusion_external::kill_running();
    let Some(summary) = summary else {
        anyhow::bail!("stopped by a signal");
    };
    let summary = summary?;
    tracing::info!(
        merged = ?summary.rounds_merged,
        refused = summary.refused,
        failed = summary.failed,
        reconnects = summary.reconnects,
        "client finished"
    );
    Ok(())
}
