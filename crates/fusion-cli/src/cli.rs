//! Command-line syntax. Values are only parsed here; `options` turns them
//! into engine types and checks them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fusion_core::ComputeBackend;

/// Align and merge neural networks by permuting hidden units (Git Re-Basin).
#[derive(Debug, Parser)]
#[command(name = "fusion", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Permute model B's hidden units onto model A and write the result.
    Align(AlignArgs),
    /// Merge several models into one: plain average, aligned, or MergeMany.
    Merge(MergeArgs),
    /// List a model file's tensors and the permutation spec inferred for it.
    Inspect(InspectArgs),
    /// Measure alignment speed against baselines run in the same process.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Show on generated models why alignment matters before averaging.
    Demo(DemoArgs),
}

/// How weight matching runs; shared by `align`, `merge` and `demo`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Permutation spec: `mlp` (inferred chain of Linear layers) or a TOML
    /// or JSON spec file.
    #[arg(long, default_value = "mlp")]
    pub spec: String,
    /// Where cost matrices are computed.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Seed of the random permutation order in each sweep.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many sweeps even without convergence.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sweeps: u64,
}

/// `fusion align`.
#[derive(Debug, Args)]
pub struct AlignArgs {
    /// Reference model (safetensors).
    #[arg(long)]
    pub a: PathBuf,
    /// Model to permute onto A (safetensors).
    #[arg(long)]
    pub b: PathBuf,
    /// Matching options.
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Where to write B permuted onto A.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Merge methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MergeMethod {
    /// Coordinate-wise weighted average (FedAvg).
    Average,
    /// Align every model to the first, then average.
    Align,
    /// Align each model to the mean of the others until stable, then average.
    MergeMany,
}

/// `fusion merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// How to merge.
    #[arg(long, value_enum, default_value = "align")]
    pub method: MergeMethod,
    /// Model files (safetensors); with `align` the first is the reference.
    #[arg(long, num_args = 2.., required = true)]
    pub models: Vec<PathBuf>,
    /// One weight per model (for example example counts); equal if omitted.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// Matching options (ignored by `average`).
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Where to write the merged model.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `fusion inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model file (safetensors).
    pub file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `fusion bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Weight matching of a 784-512-512-512-10 MLP pair and the assignment
    /// solver at several sizes, each against an in-run baseline.
    Align(BenchAlignArgs),
}

/// `fusion bench align`.
#[derive(Debug, Args)]
pub struct BenchAlignArgs {
    /// Backend for the cost matrices.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Timed runs per measurement; the best is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeats: u64,
    /// Assignment problem sizes.
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048,4096")]
    pub lap_sizes: Vec<usize>,
    /// Also bench this model pair (A)…
    #[arg(long, requires = "b")]
    pub a: Option<PathBuf>,
    /// …aligned onto by this one (B).
    #[arg(long, requires = "a")]
    pub b: Option<PathBuf>,
    /// Write the benchmark's inputs here, so `scripts/bench_reference.py`
    /// can time scipy and the NumPy reference on identical data.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `fusion demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Layer widths of the generated MLP.
    #[arg(long, value_delimiter = ',', default_value = "784,512,512,512,10")]
    pub widths: Vec<usize>,
    /// Noise added to B after permuting, relative to the weights' scale.
    #[arg(long, default_value_t = 0.05)]
    pub noise: f32,
    /// Seed for the generated models.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where cost matrices are computed.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Directory for the generated and merged models.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
}

fn parse_backend(s: &str) -> Result<ComputeBackend, String> {
    s.parse()
        .map_err(|e: fusion_core::BackendError| e.to_string())
}
