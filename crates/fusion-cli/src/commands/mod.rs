//! One module per subcommand.

mod align;
mod bench;
mod demo;
mod inspect;
mod merge;
mod report;

use anyhow::Result;

use crate::cli::{BenchCommand, Command};

/// Runs a parsed command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Align(args) => align::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(BenchCommand::Align(args)) => bench::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
