//! One module per subcommand, and the helpers `fusion-sim` shares
//! (`outputs`, `report`, `bench_net`).

mod align;
mod bench;
mod bench_federation;
pub mod bench_net;
mod bench_train;
mod certs;
mod experiment;
mod export_data;
mod forward;
mod inspect;
mod interpolate;
mod merge;
pub mod outputs;
pub mod report;
mod train;

use anyhow::Result;

use crate::cli::{BenchCommand, Command, ExperimentCommand};

/// Runs a parsed command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Align(args) => align::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(BenchCommand::Align(args)) => bench::run(args),
        Command::Bench(BenchCommand::Train(args)) => bench_train::run(args),
        Command::Bench(BenchCommand::Ingest(_)) => forward::to_fusion_sim(),
        Command::Bench(BenchCommand::Federation(args)) => bench_federation::run(args),
        Command::Train(args) => train::run(args),
        Command::Interpolate(args) => interpolate::run(args),
        Command::Experiment(ExperimentCommand::SplitMerge(args)) => {
            experiment::run_split_merge(args)
        }
        Command::Demo(args) => experiment::run_demo(args),
        Command::Simulate(_) => forward::to_fusion_sim(),
        Command::Certs(args) => certs::run(args),
        Command::ExportData(args) => export_data::run(args),
    }
}
