//! Command-line flags of `fusion-client`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fusion_client::{ClientConfig, CommandTraining, LocalTraining};
use fusion_core::ComputeBackend;
use fusion_data::{DataSource, Dataset, ShardRef, Split};
use fusion_external::{ExternalCommand, Trainer};
use fusion_models::Architecture;
use fusion_net::{BearerToken, ClientTls};
use fusion_train::OptimizerKind;

/// `fusion-client`: trains on this node's shard and sends the weights to
/// a `fusion-server`.
#[derive(Debug, Clone, Parser)]
#[command(name = "fusion-client", version, about, long_about = None)]
pub struct ClientArgs {
    /// Server address: http://host:port, or https://host:port with --ca.
    #[arg(long, env = "FUSION_SERVER")]
    pub server: String,
    /// Dataset: embedded, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR.
    #[arg(long, default_value = "embedded", env = "FUSION_DATASET")]
    pub dataset: DataSource,
    /// This client's shard of the training split, `i/N` from 0.
    #[arg(long, default_value = "0/1", env = "FUSION_SHARD")]
    pub shard: ShardRef,
    /// How the training split is cut: iid, dirichlet:ALPHA, classes:…, biased:P.
    #[arg(long, default_value = "iid", env = "FUSION_SPLIT")]
    pub split: Split,
    /// Seed of the split (every client of a federation must use the same).
    #[arg(long, default_value_t = 0, env = "FUSION_SPLIT_SEED")]
    pub split_seed: u64,
    /// Model architecture, as `fusion train --model` (mlp:512x3,
    /// resnet20x2, vgg11:16, …); must match the server's.
    #[arg(long, default_value = "mlp", env = "FUSION_MODEL")]
    pub model: Architecture,
    /// Local epochs per round.
    #[arg(long, default_value_t = 1, env = "FUSION_LOCAL_EPOCHS")]
    pub local_epochs: usize,
    /// Epochs when the server asks for the client's own model (cold start).
    #[arg(long, default_value_t = 5)]
    pub init_epochs: usize,
    /// A model this silo already trained (safetensors, PyTorch layout),
    /// sent as its own model on a cold start.
    #[arg(long)]
    pub init_model: Option<PathBuf>,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Batch size.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Optimiser: adam, sgd or sgd:MOMENTUM.
    #[arg(long, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Seed of shuffling and of the client's own initialisation
    /// [default: the shard index].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Training backend: flex, ndarray or wgpu.
    #[arg(long, default_value_t = ComputeBackend::default(), env = "FUSION_BACKEND")]
    pub backend: ComputeBackend,
    /// CA certificate of the server (PEM).
    #[arg(long, env = "FUSION_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM).
    #[arg(long, env = "FUSION_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key for mutual TLS (PEM).
    #[arg(long, env = "FUSION_KEY")]
    pub key: Option<PathBuf>,
    /// Server name to verify, when it differs from the address's host.
    #[arg(long)]
    pub domain: Option<String>,
    /// Bearer token.
    #[arg(long, env = "FUSION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Client id [default: client-<shard index>].
    #[arg(long, env = "FUSION_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Seconds of an unreachable server before giving up.
    #[arg(long, default_value_t = 600.0)]
    pub give_up_after: f64,
    /// Keep this file fresh while alive (rewritten on each server answer
    /// and every 5 s of training), for container health checks.
    #[arg(long, env = "FUSION_HEALTH_FILE")]
    pub health_file: Option<PathBuf>,
    /// Train with your own command instead of the built-in MLP: run by
    /// `sh -c` once per round with FUSION_GLOBAL, FUSION_UPDATE,
    /// FUSION_RESULT, … (README, "Federate your PyTorch model"). Needs
    /// --model-file and --examples; --dataset is then not read.
    #[arg(long, env = "FUSION_TRAINER_CMD")]
    pub trainer_cmd: Option<String>,
    /// The federation's model as a safetensors file (the server's
    /// --init-model): the tensors every update of --trainer-cmd must have.
    #[arg(long, env = "FUSION_MODEL_FILE")]
    pub model_file: Option<PathBuf>,
    /// With --trainer-cmd: the examples this silo trains on, declared at
    /// Join; its updates never weigh more.
    #[arg(long, env = "FUSION_EXAMPLES")]
    pub examples: Option<u64>,
    /// Seconds --trainer-cmd may run in one round before its whole process
    /// group is killed (the round then uploads nothing).
    #[arg(long, default_value_t = 3600.0, env = "FUSION_TRAINER_TIMEOUT")]
    pub trainer_timeout: f64,
    /// Failed trainings in a row after which the client stops (exit 1).
    #[arg(long, default_value_t = 3)]
    pub max_failed_rounds: u32,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FUSION_JSON_LOGS")]
    pub json_logs: bool,
}

impl ClientArgs {
    /// The client's settings, and where its updates come from: its shard
    /// of the training data for the built-in model, or the user's trainer.
    pub fn load(&self) -> anyhow::Result<(ClientConfig, LocalTraining)> {
        let local = match &self.trainer_cmd {
            Some(command) => LocalTraining::Command(self.command_training(command)?),
            None => {
                anyhow::ensure!(
                    self.model_file.is_none() && self.examples.is_none(),
                    "--model-file and --examples go with --trainer-cmd"
                );
                LocalTraining::BuiltIn(std::sync::Arc::new(self.shard()?))
            }
        };
        let init_model = match &self.init_model {
            Some(path) => Some(read_model(path)?),
            None => None,
        };
        anyhow::ensure!(
            self.give_up_after.is_finite() && self.give_up_after > 0.0 && self.give_up_after <= 1e7,
            "--give-up-after must be a positive number of seconds, at most 1e7"
        );
        let seed = self.seed.unwrap_or(self.shard.index as u64);
        let mut config = ClientConfig::new(
            self.server.clone(),
            self.client_id
                .clone()
                .unwrap_or_else(|| format!("client-{}", self.shard.index)),
        );
        config.tls = ClientTls {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            domain: self.domain.clone(),
        };
        config.token = BearerToken::new(self.token.clone());
        config.model = self.model.clone();
        config.train.epochs = self.local_epochs;
        config.train.lr = self.lr;
        config.train.batch = self.batch;
        config.train.optimizer = self.optimizer;
        config.train.seed = seed;
        config.train.progress = false;
        // CIFAR-10's standard recipe crops and mirrors its training images.
        config.train.augment = matches!(self.dataset, DataSource::Cifar10(_));
        config.train.validate()?;
        config.init_epochs = self.init_epochs;
        config.init_seed = seed;
        config.init_model = init_model;
        config.backend = self.backend;
        config.give_up_after = Duration::from_secs_f64(self.give_up_after);
        config.health_file = self.health_file.clone();
        Ok((config, local))
    }

    /// This client's shard of `--dataset`.
    fn shard(&self) -> anyhow::Result<Dataset> {
        use anyhow::Context;
        let data = self
            .dataset
            .load()
            .with_context(|| format!("cannot load dataset `{}`", self.dataset))?;
        let train = data.train;
        let shards = self
            .split
            .shards(
                train.labels(),
                train.classes(),
                self.shard.count,
                self.split_seed,
            )
            .with_context(|| format!("cannot split the data with `{}`", self.split))?;
        let mine = train.subset(&shards[self.shard.index]);
        anyhow::ensure!(
            !mine.is_empty(),
            "shard {} of split `{}` is empty",
            self.shard,
            self.split
        );
        Ok(mine)
    }

    /// The user's trainer, its model layout and declared examples.
    fn command_training(&self, command: &str) -> anyhow::Result<CommandTraining> {
        anyhow::ensure!(!command.trim().is_empty(), "--trainer-cmd is empty");
        let Some(path) = &self.model_file else {
            anyhow::bail!(
                "--trainer-cmd needs --model-file: the federation's model (the server's --init-model), whose tensors every update must have"
            );
        };
        let Some(examples) = self.examples.filter(|&n| n > 0) else {
            anyhow::bail!(
                "--trainer-cmd needs --examples N (N ≥ 1): the examples this silo trains on, which weigh its updates"
            );
        };
        anyhow::ensure!(
            self.init_model.is_none(),
            "--init-model sends a ready model on a cold start; with --trainer-cmd your trainer sees FUSION_FROM_OWN_INIT=1 and can load it itself"
        );
        anyhow::ensure!(
            self.trainer_timeout.is_finite()
                && self.trainer_timeout > 0.0
                && self.trainer_timeout <= 1e7,
            "--trainer-timeout must be a positive number of seconds, at most 1e7"
        );
        anyhow::ensure!(
            self.max_failed_rounds >= 1,
            "--max-failed-rounds must be at least 1"
        );
        let template = read_model(path)?;
        let command = ExternalCommand::new(
            command,
            Duration::from_secs_f64(self.trainer_timeout),
            "trainer",
        );
        Ok(CommandTraining {
            trainer: std::sync::Arc::new(Trainer::new(command, template)),
            examples,
            max_failures: self.max_failed_rounds,
        })
    }
}

/// Reads a safetensors model, naming the file in errors.
fn read_model(path: &std::path::Path) -> anyhow::Result<fusion_core::ParamSet> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    fusion_core::ParamSet::from_safetensors(&bytes)
        .with_context(|| format!("`{}` is not a usable model", path.display()))
}
