//! Command-line syntax. Values are only parsed here; `options` turns them
//! into engine types and checks them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fusion_core::{
    BatchNormStatistics, ComputeBackend, Reference, RepairMode, StrategyConfig, StrategyKind,
};
use fusion_data::{DataSource, Dataset, ShardRef, Split};
use fusion_experiments::Correction;
use fusion_models::{Architecture, MlpArchitecture};
use fusion_train::OptimizerKind;

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
    /// Train a model locally on a dataset (or one client's shard of it).
    Train(TrainArgs),
    /// Interpolate between two models, naively and after alignment, and
    /// report the loss barrier of each (the paper's Figure 2).
    Interpolate(InterpolateArgs),
    /// Reproduce the paper's experiments.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// The main job: a short split-merge on the embedded data, showing in a
    /// minute that aligned merging beats naive averaging.
    Demo(DemoArgs),
    /// Federated learning in one process: the real server and N real
    /// clients over loopback gRPC, once per strategy, compared per round.
    Simulate(SimulateArgs),
    /// Development certificates for TLS and mutual TLS: a CA, a server
    /// certificate and client certificates.
    Certs(CertsArgs),
    /// Write one silo's shard (and the test set) as NumPy .npy files, for
    /// your own trainer (`fusion-client --trainer-cmd`).
    ExportData(ExportDataArgs),
}

/// `fusion export-data`.
#[derive(Debug, Args)]
pub struct ExportDataArgs {
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
    /// Which part of the training set.
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Directory for train-images.npy, train-labels.npy, test-images.npy
    /// and test-labels.npy (uint8; images [n, channels, height, width]).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `fusion simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Clients, each on its own shard [default: 4; with --split-file, the
    /// file's shard count].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: Option<u64>,
    /// Rounds (1 with --one-shot).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Strategies to compare, comma-separated. regmean and layerwise ask
    /// clients for second moments of their data.
    #[arg(
        long,
        default_value = "fedavg,align,merge-many",
        value_delimiter = ',',
        value_enum
    )]
    pub strategy: Vec<StrategyKind>,
    /// How the training data is dealt to clients.
    #[arg(long, default_value = "dirichlet:0.3", value_parser = parse_split)]
    pub split: Split,
    /// Deal the shards from a file instead of --split: a JSON array of
    /// arrays, client i's training-set indices (from 0, after --limit and
    /// --proxy-holdout), so that another implementation's split can be
    /// rerun exactly. From NumPy: `json.dump([s.tolist() for s in shards], f)`.
    #[arg(long, conflicts_with = "split")]
    pub split_file: Option<PathBuf>,
    /// Use only the first N training examples (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Take the last N training examples away from the clients before the
    /// split and give them to the server without labels: a proxy set for
    /// --distill-data holdout, which no client trains on.
    #[arg(long)]
    pub proxy_holdout: Option<usize>,
    /// Distil each round's merge on the server towards the output
    /// ensemble of the round's client models (FedDF), on unlabeled images:
    /// `holdout` (the --proxy-holdout images) or a dataset's training
    /// images (`embedded`, `fashion-mnist[:DIR]`, …; labels never read).
    #[arg(long)]
    pub distill_data: Option<String>,
    /// Distillation epochs over the proxy set.
    #[arg(long, default_value_t = 20)]
    pub distill_epochs: usize,
    /// Distillation learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    pub distill_lr: f64,
    /// Distillation softmax temperature.
    #[arg(long, default_value_t = 1.0)]
    pub distill_temperature: f64,
    /// The data the clients' shards are dealt from.
    #[command(flatten)]
    pub data: DataArgs,
    /// Local epochs per round [default: 1; 5 with --one-shot].
    #[arg(long)]
    pub local_epochs: Option<usize>,
    /// Clients start from their own random initialisations, train, and the
    /// server merges once: one-shot fusion.
    #[arg(long, conflicts_with = "cold_start")]
    pub one_shot: bool,
    /// Clients bring models trained from their own initialisations; round 1
    /// merges them, then normal rounds follow.
    #[arg(long)]
    pub cold_start: bool,
    /// With --cold-start: the strategy of round 1 only (a one-shot method
    /// such as layerwise); each --strategy runs the rounds after.
    #[arg(long, value_enum, requires = "cold_start")]
    pub cold_start_strategy: Option<StrategyKind>,
    /// Epochs of each client's own training with --cold-start.
    #[arg(long, default_value_t = 5)]
    pub init_epochs: usize,
    /// Reference of `align` [global: the round's global model; the largest
    /// client when clients bring their own models].
    #[arg(long, default_value = "global", value_enum)]
    pub reference: Reference,
    /// The strategies' settings.
    #[command(flatten)]
    pub strategy_options: StrategyArgs,
    /// BatchNorm running statistics after each merge: reestimate (clients
    /// measure them on their shards, one more exchange per round) or
    /// average. Models without BatchNorm ignore it.
    #[arg(long, default_value = "reestimate", value_enum)]
    pub batch_norm: BatchNormStatistics,
    /// REPAIR after each merge of a CNN: `sequential` has clients send
    /// their own models' per-channel norm output moments with their
    /// weights, then spends one exchange per norm rescaling the merged
    /// model to them, as offline REPAIR.
    #[arg(long, default_value = "off", value_enum)]
    pub repair: RepairMode,
    /// FedProx μ sent to clients.
    #[arg(long, default_value_t = 0.0)]
    pub proximal_mu: f64,
    /// Network, as `fusion train --model` (mlp:512x3, resnet20x2,
    /// vgg11:16, …). A CNN is aligned with its built-in spec; regmean and
    /// layerwise need a chain of Linear layers.
    #[arg(long, default_value = "mlp:512x3", value_parser = parse_network)]
    pub model: Architecture,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Examples per step.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Seeds the split, initial models and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where training, alignment and evaluation run.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Directory for results.json, rounds.csv, the plot and per-strategy state.
    #[arg(long, default_value = "out/simulate")]
    pub out: PathBuf,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `fusion certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for ca.pem/.key, server.pem/.key and client-N.pem/.key.
    #[arg(long)]
    pub out: PathBuf,
    /// Client certificates to make.
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// Names the server certificate is valid for (DNS names or IPs).
    #[arg(
        long,
        default_value = "localhost,127.0.0.1,fusion-server",
        value_delimiter = ','
    )]
    pub names: Vec<String>,
}

/// Options of the strategies; each uses its own and ignores the rest.
#[derive(Debug, Args)]
pub struct StrategyArgs {
    /// MergeMany's pass cap.
    #[arg(long, default_value_t = fusion_core::MergeMany::DEFAULT_MAX_PASSES)]
    pub max_passes: usize,
    /// RegMean's weight on the Gram matrices' off-diagonal, 0 to 1.
    #[arg(long, default_value_t = StrategyConfig::DEFAULT_REGMEAN_ALPHA)]
    pub regmean_alpha: f64,
    /// Ridge of regmean and layerwise, a fraction of each layer's mean
    /// Gram diagonal, towards the FedAvg weights.
    #[arg(long, default_value_t = StrategyConfig::DEFAULT_RIDGE)]
    pub ridge: f64,
    /// Start layerwise from an alignment of the clients to the largest
    /// (weight matching in exchange 0; off by default).
    #[arg(long)]
    pub layerwise_align: bool,
}

/// How weight matching runs; shared by `align` and `merge`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Permutation spec: a built-in layout inferred from the tensor names
    /// (`mlp`: a chain of Linear layers; `resnet` or `resnet20`: a CIFAR
    /// ResNet; `vgg`: convolutions then a classifier; `auto`: whichever
    /// fits) or a TOML or JSON spec file.
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

/// `fusion merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// How to merge (`average` is fedavg). regmean and layerwise need
    /// statistics of each client's data: use them in a federation or
    /// `fusion simulate`.
    #[arg(long, value_enum, default_value = "align")]
    pub method: StrategyKind,
    /// Model files (safetensors); with `align` the first is the reference.
    #[arg(long, num_args = 2.., required = true)]
    pub models: Vec<PathBuf>,
    /// One weight per model, such as its training examples. Without it,
    /// each file's `examples` metadata (written by `fusion train`) is used,
    /// or equal weights with a warning.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// MergeMany's pass cap.
    #[arg(long, default_value_t = fusion_core::MergeMany::DEFAULT_MAX_PASSES)]
    pub max_passes: usize,
    /// Matching options (ignored by `average`).
    #[command(flatten)]
    pub matching: MatchArgs,
    /// Re-estimate the merged model's BatchNorm statistics on this many
    /// batches of 250 examples of --dataset's training set (averaged
    /// running statistics do not describe the merged network). Needs a
    /// ResNet or VGG with BatchNorm.
    #[arg(long, default_value_t = 0)]
    pub reset_bn_batches: usize,
    /// Data for --reset-bn-batches.
    #[arg(long, value_parser = parse_dataset)]
    pub dataset: Option<DataSource>,
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
    /// One training epoch of the 784-512-512-512-10 MLP on 60k images
    /// (Adam, batch 500) on each backend, as ratios to the first one.
    /// `scripts/bench-train.sh` adds PyTorch on the same machine.
    Train(BenchTrainArgs),
    /// Update ingest over gRPC: N clients upload at once to an in-process
    /// server, against a plain loopback TCP copy of the same bytes, with
    /// the peak memory growth of the process.
    Ingest(BenchIngestArgs),
    /// Whole federated rounds: a `fusion-server` process and N clients
    /// that upload without training, over loopback gRPC; median round
    /// time, its overhead over moving the same bytes by raw TCP, and the
    /// server's peak memory.
    Federation(BenchFederationArgs),
}

/// `fusion bench federation`.
#[derive(Debug, Args)]
pub struct BenchFederationArgs {
    /// Clients per round, comma-separated: one row each.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub clients: Vec<usize>,
    /// Models, comma-separated: one row each (`mlp:512x3` is 3.7 MB,
    /// `mlp:2800x4` 103 MB).
    #[arg(long, value_delimiter = ',', default_value = "mlp:512x3", value_parser = parse_model)]
    pub model: Vec<MlpArchitecture>,
    /// Server strategies, comma-separated: one row each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fedavg,align",
        value_enum
    )]
    pub strategy: Vec<StrategyKind>,
    /// Timed rounds per row; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Each client uploads its own copy of the initial model with this
    /// much relative noise (as `fusion bench align`'s near pair); 0
    /// uploads the global model unchanged.
    #[arg(long, default_value_t = 0.0)]
    pub perturb: f32,
    /// The server's limit on uploads received at once.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_uploads: usize,
    /// The server's HTTP/2 window in bytes (`fusion-server
    /// --stream-window`); the server's default when not given.
    #[arg(long)]
    pub stream_window: Option<u32>,
    /// The `fusion-server` binary; by default the one next to this
    /// `fusion` binary (`cargo build --release -p fusion-server`).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `fusion bench ingest`.
#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Concurrent clients, comma-separated: one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "4,16")]
    pub clients: Vec<usize>,
    /// Model uploaded by every client.
    #[arg(long, default_value = "mlp:1024x4", value_parser = parse_model)]
    pub model: MlpArchitecture,
    /// Timed rounds per measurement; the best is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeats: u64,
    /// The server's limit on uploads received at once.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_uploads: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `fusion bench train`.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Images to train on; the dataset is repeated to reach this count, so
    /// the embedded sample gives a full-size epoch too.
    #[command(flatten)]
    pub data: DataArgs,
    /// Examples per epoch.
    #[arg(long, default_value_t = 60_000)]
    pub examples: usize,
    /// Backends to time, comma-separated; ratios are to the first.
    #[arg(long, value_delimiter = ',', default_value = "flex,ndarray", value_parser = parse_backend)]
    pub backends: Vec<ComputeBackend>,
    /// Timed epochs per backend (after one warm-up epoch); the best is reported.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeats: u64,
    /// Network to train, as `fusion train --model` (the paper's MLP by
    /// default; `resnet20` for the CNN figures).
    #[arg(long, default_value = "mlp:512x3", value_parser = parse_network)]
    pub model: Architecture,
    /// Examples per step (Adam, lr 1e-3).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Where the data comes from; shared by every command that reads data.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// `embedded` (compiled-in Fashion-MNIST sample, 12k/2k),
    /// `fashion-mnist[:DIR]` (full 60k/10k, Debian's dataset-fashion-mnist),
    /// `mnist:DIR` or `cifar10:DIR`.
    #[arg(long, default_value = "embedded", value_parser = parse_dataset)]
    pub dataset: DataSource,
}

/// One client's shard of a training set; shared by `train` and
/// `export-data`, so both cut the data exactly as `fusion-client` does.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Shard `i` of `N` (0-based) of the training set [default: all of it]…
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<ShardRef>,
    /// …dealt by this split: `iid`, `dirichlet:ALPHA`, `classes:0-4/5-9` or `biased:P`.
    #[arg(long, default_value = "iid", value_parser = parse_split)]
    pub split: Split,
    /// Seed of the split (every client of a federation must use the same).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
}

impl ShardArgs {
    /// The selected part of `train`, and how to describe it.
    pub fn select(&self, train: &Dataset) -> anyhow::Result<(Dataset, String)> {
        let Some(shard) = self.shard else {
            return Ok((train.clone(), "all of it".to_owned()));
        };
        let shards = self.split.shards(
            train.labels(),
            train.classes(),
            shard.count,
            self.split_seed,
        )?;
        Ok((
            train.subset(&shards[shard.index]),
            format!("shard {shard} of split {}", self.split),
        ))
    }
}

/// Whether training images are augmented (`--augment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Augment {
    /// On for CIFAR-10, whose standard recipe has it; off otherwise.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

impl Augment {
    /// Whether training on `dataset` is augmented.
    pub fn enabled(self, dataset: &DataSource) -> bool {
        match self {
            Self::Auto => matches!(dataset, DataSource::Cifar10(_)),
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// Local training settings; shared by `train`, `experiment` and `demo`.
#[derive(Debug, Args)]
pub struct TrainingArgs {
    /// Network: `mlp` (= mlp:512x3, the paper's), `mlp:WIDTHxDEPTH`,
    /// `mlp:W1,W2,…`; `resnet20`, `resnet20x2`, … (CIFAR ResNet, width
    /// multiplier after x); `vgg11`, `vgg16:32`, … (VGG, first-stage
    /// channels after :); `-ln` for LayerNorm instead of BatchNorm.
    #[arg(long, default_value = "mlp:512x3", value_parser = parse_network)]
    pub model: Architecture,
    /// Passes over the training data.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Examples per step.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// `adam` (PyTorch's defaults, ε = 1e-8), `sgd` (momentum 0.9) or `sgd:MOMENTUM`.
    #[arg(long, default_value = "adam", value_parser = parse_optimizer)]
    pub optimizer: OptimizerKind,
    /// Seeds initial weights and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where training runs: `flex` (fastest CPU backend measured), `ndarray`, or `wgpu`.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Never draw a progress bar (logs still report each epoch).
    #[arg(long)]
    pub no_progress: bool,
    /// Random 4-pixel crops and mirroring of training images: `auto` (on
    /// for cifar10, off otherwise), `on` or `off`.
    #[arg(long, value_enum, default_value = "auto")]
    pub augment: Augment,
}

/// `fusion train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
    /// Which part of the training set.
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Training settings.
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Where to write the trained model (safetensors, PyTorch layout).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `fusion interpolate`.
#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// Model A (λ = 0), safetensors.
    #[arg(long)]
    pub a: PathBuf,
    /// Model B (λ = 1), safetensors.
    #[arg(long)]
    pub b: PathBuf,
    /// The data: test set for the curves, training set for activation matching.
    #[command(flatten)]
    pub data: DataArgs,
    /// Alignment methods, comma-separated: naive, weight, activation, ste.
    /// ste (STE matching, the paper's Algorithm 2) is expensive: a weight
    /// matching and a training step of the midpoint per batch of 100, over
    /// one epoch of the training set.
    #[arg(long, default_value = "naive,weight,activation")]
    pub method: String,
    /// Number of λ values from 0 to 1 (odd counts include 0.5).
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Where evaluation and matching run.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Seed of weight matching's permutation order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What is done to every interpolated model before it is scored.
    #[command(flatten)]
    pub correction: CorrectionArgs,
    /// Directory for curves (JSON, CSV) and the plot (SVG, PNG).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the results as JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `fusion experiment …`.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Train A and B on two shards, then compare A, B, their naive average,
    /// weight- and activation-matched merges and their ensemble on the full test set.
    SplitMerge(SplitMergeArgs),
}

/// `fusion experiment split-merge` (and, with other defaults, `fusion demo`).
#[derive(Debug, Args)]
pub struct SplitMergeArgs {
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
    /// How the training set is dealt to A and B: `biased:P` (the paper's),
    /// `classes:0-4/5-9`, `dirichlet:ALPHA` or `iid`.
    #[arg(long, default_value = "biased:0.8", value_parser = parse_split)]
    pub split: Split,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Training settings of both models.
    #[command(flatten)]
    pub training: TrainingArgs,
    /// λ values of the interpolation curves in the plot.
    #[arg(long, default_value_t = 11)]
    pub steps: usize,
    /// What is done to every merged and interpolated model before it is
    /// scored (a BatchNorm CNN needs one of them).
    #[command(flatten)]
    pub correction: CorrectionArgs,
    /// Directory for results (JSON, CSV), the plot and the two models.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How interpolated CNNs are corrected before scoring: at most one of the
/// two.
#[derive(Debug, Args)]
pub struct CorrectionArgs {
    /// Re-estimate the BatchNorm statistics of every interpolated model on
    /// this many training batches of 250 before scoring it (0: keep the
    /// interpolated statistics). Only BatchNorm CNNs are affected.
    #[arg(long, default_value_t = 0)]
    pub reset_bn_batches: usize,
    /// REPAIR every interpolated model: rescale each channel of a CNN so
    /// its mean and standard deviation are the interpolation of A's and
    /// B's, measured on this many training batches of 250 (0: off). One
    /// pass over them per norm layer, for every λ: slower than
    /// --reset-bn-batches, and it also works with LayerNorm.
    #[arg(long, default_value_t = 0, conflicts_with = "reset_bn_batches")]
    pub repair_batches: usize,
}

impl CorrectionArgs {
    /// The correction the flags name.
    pub fn correction(&self) -> Correction {
        match (self.reset_bn_batches, self.repair_batches) {
            (0, 0) => Correction::None,
            (0, batches) => Correction::Repair { batches },
            (batches, _) => Correction::ResetBatchNorm { batches },
        }
    }
}

/// `fusion demo`: split-merge on the embedded data with fixed defaults.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Passes over each shard.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Seeds initial weights, shuffling and the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where training runs.
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: ComputeBackend,
    /// Directory for the results, the plot and the two models.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
}

fn parse_dataset(s: &str) -> Result<DataSource, String> {
    s.parse().map_err(|e: fusion_data::DataError| e.to_string())
}

fn parse_split(s: &str) -> Result<Split, String> {
    s.parse().map_err(|e: fusion_data::DataError| e.to_string())
}

fn parse_shard(s: &str) -> Result<ShardRef, String> {
    s.parse().map_err(|e: fusion_data::DataError| e.to_string())
}

fn parse_model(s: &str) -> Result<MlpArchitecture, String> {
    s.parse()
        .map_err(|e: fusion_core::ArchitectureError| e.to_string())
}

fn parse_network(s: &str) -> Result<Architecture, String> {
    s.parse()
        .map_err(|e: fusion_models::ModelError| e.to_string())
}

fn parse_optimizer(s: &str) -> Result<OptimizerKind, String> {
    s.parse()
        .map_err(|e: fusion_train::TrainError| e.to_string())
}

fn parse_backend(s: &str) -> Result<ComputeBackend, String> {
    s.parse()
        .map_err(|e: fusion_core::BackendError| e.to_string())
}
