//! `fusion-sim`: the commands of `fusion` that drive the real server and
//! clients in one process, `simulate` and `bench ingest`. It reads the
//! same command line as `fusion` (which runs it for those two), so
//! `fusion-sim simulate …` and `fusion simulate …` are one command; only
//! this binary links the server and client libraries.

mod bench_ingest;
mod simulate;
mod simulate_data;

use std::process::ExitCode;

use clap::Parser;
use fusion_cli::DEFAULT_LOG;
use fusion_cli::cli::{BenchCommand, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    fusion_bin::logging::init(DEFAULT_LOG, fusion_bin::logging::Format::Text);
    let outcome = match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Bench(BenchCommand::Ingest(args)) => bench_ingest::run(args),
        _ => Err(anyhow::anyhow!(
            "fusion-sim runs `simulate` and `bench ingest`; run the other commands with `fusion`"
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
