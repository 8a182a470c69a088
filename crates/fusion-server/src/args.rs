//! Command-line flags. Each also reads an environment variable
//! (`FUSION_…`), and any flag given overrides the `--config` file, which
//! overrides the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use fusion_server::{
    BatchNormStatistics, Init, Reference, RepairMode, SecretString, ServerConfig, ServerError,
    StrategyKind,
};

/// `fusion-server`: the aggregator of a Fusion federation.
#[derive(Debug, Clone, Parser)]
#[command(name = "fusion-server", version, about, long_about = None)]
pub struct ServerArgs {
    /// TOML file with settings (keys as in `ServerConfig`); flags win.
    #[arg(long, env = "FUSION_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC address [default: 127.0.0.1:50051].
    #[arg(long, env = "FUSION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Rounds to run [default: 3].
    #[arg(long, env = "FUSION_ROUNDS")]
    pub rounds: Option<u32>,
    /// Live clients needed to open a round [default: 2].
    #[arg(long, env = "FUSION_MIN_CLIENTS")]
    pub min_clients: Option<u32>,
    /// Updates needed to close a round at its deadline [default: min-clients].
    #[arg(long, env = "FUSION_MIN_UPDATES")]
    pub min_updates: Option<u32>,
    /// Fraction of live clients sampled per round [default: 1].
    #[arg(long, env = "FUSION_FRACTION")]
    pub fraction: Option<f64>,
    /// Seconds a round stays open [default: 600].
    #[arg(long, env = "FUSION_DEADLINE")]
    pub deadline: Option<f64>,
    /// fedavg, align, merge-many, regmean or layerwise [default: align].
    /// regmean and layerwise ask clients for second moments of their data
    /// (see the README's "What each strategy sends").
    #[arg(long, env = "FUSION_STRATEGY")]
    pub strategy: Option<StrategyKind>,
    /// What `align` aligns to: global, first or largest [default: global;
    /// largest when clients bring their own models].
    #[arg(long, env = "FUSION_REFERENCE")]
    pub reference: Option<Reference>,
    /// With --init clients: the strategy of round 1 only (a one-shot
    /// method such as layerwise); --strategy runs the rounds after.
    #[arg(long, env = "FUSION_COLD_START_STRATEGY")]
    pub cold_start_strategy: Option<StrategyKind>,
    /// MergeMany's pass cap [default: 10].
    #[arg(long, env = "FUSION_MAX_PASSES")]
    pub max_passes: Option<usize>,
    /// RegMean's off-diagonal weight on the Gram matrices, 0 to 1 [default: 0.9].
    #[arg(long, env = "FUSION_REGMEAN_ALPHA")]
    pub regmean_alpha: Option<f64>,
    /// Ridge of regmean and layerwise, a fraction of each layer's mean
    /// Gram diagonal [default: 0.0001].
    #[arg(long, env = "FUSION_RIDGE")]
    pub ridge: Option<f64>,
    /// Start layerwise from an alignment of the clients to the largest
    /// (opt-in; costs weight matching and a model per client in exchange 0).
    #[arg(long, env = "FUSION_LAYERWISE_ALIGN")]
    pub layerwise_align: bool,
    /// BatchNorm running statistics after a merge: reestimate (clients
    /// measure them on their data, one more exchange per round) or average
    /// [default: reestimate].
    #[arg(long, env = "FUSION_BATCH_NORM")]
    pub batch_norm: Option<BatchNormStatistics>,
    /// REPAIR after each merge of a model with norm layers (CNNs):
    /// `sequential` has clients send their own models' per-channel norm
    /// output moments with their weights, then spends one exchange per
    /// norm rescaling the merged model to them, as offline REPAIR
    /// [default: off].
    #[arg(long, env = "FUSION_REPAIR")]
    pub repair: Option<RepairMode>,
    /// After the last round, keep serving until stopped instead of exiting
    /// (for a Kubernetes StatefulSet).
    #[arg(long, env = "FUSION_SERVE_FINAL")]
    pub serve_final: bool,
    /// Alignment and evaluation backend: flex, ndarray or wgpu.
    #[arg(long, env = "FUSION_BACKEND")]
    pub backend: Option<String>,
    /// Directory for global.safetensors and rounds.jsonl [default: fusion-state].
    #[arg(long, env = "FUSION_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Server certificate (PEM): turns TLS on, with --tls-key.
    #[arg(long, env = "FUSION_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "FUSION_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA for client certificates: turns mutual TLS on.
    #[arg(long, env = "FUSION_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Shared bearer token clients must present (at least 16 bytes). All
    /// holders are one principal: each may act as any client id.
    #[arg(long, env = "FUSION_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<SecretString>,
    /// File of per-client tokens, one `CLIENT_ID TOKEN` line each: a token
    /// from it may act only as its own client id.
    #[arg(long, env = "FUSION_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Bearer token that /status.json and /metrics need (the page asks for
    /// it); without it they are open on --metrics-listen.
    #[arg(long, env = "FUSION_STATUS_TOKEN", hide_env_values = true, value_parser = secret)]
    pub status_token: Option<SecretString>,
    /// Dataset whose test split scores each round with the built-in MLP
    /// (embedded, fashion-mnist[:DIR], …).
    #[arg(long, env = "FUSION_TEST_DATA")]
    pub test_data: Option<String>,
    /// Your own evaluator, run by `sh -c` after each round: it reads the
    /// model at $FUSION_GLOBAL and writes {"metrics": {"loss": …,
    /// "accuracy": …}} to $FUSION_RESULT (docs/protocol.md, "Your own
    /// trainer"). The alternative to --test-data for any model.
    #[arg(long, env = "FUSION_EVALUATE_CMD")]
    pub evaluate_cmd: Option<String>,
    /// Seconds --evaluate-cmd may run before its process group is killed
    /// (the round is kept, unscored) [default: 600].
    #[arg(long, env = "FUSION_EVALUATE_TIMEOUT")]
    pub evaluate_timeout: Option<f64>,
    /// Unlabeled proxy images for ensemble distillation (FedDF) after each
    /// round: the training images of a dataset (embedded,
    /// fashion-mnist[:DIR], …; labels never read). Off by default.
    #[arg(long, env = "FUSION_DISTILL_DATA")]
    pub distill_data: Option<String>,
    /// Distillation epochs over the proxy set [default: 20].
    #[arg(long, env = "FUSION_DISTILL_EPOCHS")]
    pub distill_epochs: Option<usize>,
    /// Distillation learning rate (Adam) [default: 0.001].
    #[arg(long, env = "FUSION_DISTILL_LR")]
    pub distill_lr: Option<f64>,
    /// Distillation softmax temperature [default: 1].
    #[arg(long, env = "FUSION_DISTILL_TEMPERATURE")]
    pub distill_temperature: Option<f64>,
    /// Built-in model architecture, when no --init-model [default: mlp].
    #[arg(long, env = "FUSION_MODEL")]
    pub model: Option<String>,
    /// Start the run from this model (safetensors, PyTorch layout): any
    /// architecture --spec describes. Clients must send the same tensors.
    #[arg(long, env = "FUSION_INIT_MODEL")]
    pub init_model: Option<PathBuf>,
    /// How the model's hidden units permute: a built-in layout inferred
    /// from the names (mlp, resnet, vgg, auto) or a spec file, as
    /// `fusion align --spec`; checked
    /// against the model before the port is bound [default: mlp].
    #[arg(long, env = "FUSION_SPEC")]
    pub spec: Option<String>,
    /// Input features, when no test data says [default: 784].
    #[arg(long, env = "FUSION_INPUTS")]
    pub inputs: Option<usize>,
    /// Classes, when no test data says [default: 10].
    #[arg(long, env = "FUSION_CLASSES")]
    pub classes: Option<usize>,
    /// global (server initialises) or clients (cold start) [default: global].
    #[arg(long, env = "FUSION_INIT")]
    pub init: Option<Init>,
    /// Seed of the initial model, sampling and matching [default: 0].
    #[arg(long, env = "FUSION_SEED")]
    pub seed: Option<u64>,
    /// FedProx μ sent to clients [default: 0].
    #[arg(long, env = "FUSION_PROXIMAL_MU")]
    pub proximal_mu: Option<f64>,
    /// Upload chunk size in bytes, 1-4 MiB [default: 1 MiB].
    #[arg(long, env = "FUSION_CHUNK_BYTES")]
    pub chunk_bytes: Option<usize>,
    /// Largest update accepted, in bytes [default: 4 GiB].
    #[arg(long, env = "FUSION_MAX_UPDATE_BYTES")]
    pub max_update_bytes: Option<u64>,
    /// Cap on the examples a client may declare at Join (its weight)
    /// [default: none].
    #[arg(long, env = "FUSION_MAX_EXAMPLES")]
    pub max_examples: Option<u64>,
    /// Uploads received at once [default: 4].
    #[arg(long, env = "FUSION_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: Option<usize>,
    /// Clients registered at once; more Joins are refused until a silent
    /// one is evicted [default: 10000].
    #[arg(long, env = "FUSION_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// gRPC connections open at once; keep it below `ulimit -n`
    /// [default: 512].
    #[arg(long, env = "FUSION_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// gRPC connections open at once from one address [default: 64].
    #[arg(long, env = "FUSION_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// HTTP/2 flow-control window per stream and per connection, bytes:
    /// what an upload waiting for its slot may hold in server memory, and
    /// the most one upload has in flight (its speed is at most this per
    /// round trip) [default: 1048576].
    #[arg(long, env = "FUSION_STREAM_WINDOW")]
    pub stream_window: Option<u32>,
    /// Slowest upload kept, bytes/s (0: off) [default: 65536].
    #[arg(long, env = "FUSION_MIN_UPLOAD_RATE")]
    pub min_upload_rate: Option<u64>,
    /// Seconds without a call after which a client is not live [default: 60].
    #[arg(long, env = "FUSION_CLIENT_TIMEOUT")]
    pub client_timeout: Option<f64>,
    /// Client poll interval in ms [default: 500].
    #[arg(long, env = "FUSION_POLL_MS")]
    pub poll_ms: Option<u32>,
    /// Seconds to keep serving after the last round [default: 5].
    #[arg(long, env = "FUSION_FINISH_GRACE")]
    pub finish_grace: Option<f64>,
    /// Address for the status page (/), /status.json and /metrics (off by default).
    #[arg(long, env = "FUSION_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FUSION_JSON_LOGS")]
    pub json_logs: bool,
}

impl ServerArgs {
    /// The configuration: defaults, then the file, then every flag given.
    pub fn config(&self) -> Result<ServerConfig, ServerError> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_toml_file(path)?,
            None => ServerConfig::default(),
        };
        macro_rules! set {
            ($($flag:ident => $field:ident),* $(,)?) => {
                $(if let Some(v) = &self.$flag { c.$field = v.clone(); })*
            };
        }
        set!(
            listen => listen, rounds => rounds, min_clients => min_clients,
            fraction => fraction, deadline => round_deadline_secs, strategy => strategy,
            reference => reference, max_passes => max_passes,
            regmean_alpha => regmean_alpha, ridge => ridge, batch_norm => batch_norm,
            repair => repair,
            backend => backend, state_dir => state_dir,
            model => model, spec => spec, evaluate_timeout => evaluate_timeout_secs,
            inputs => inputs, classes => classes, init => init, seed => seed,
            proximal_mu => proximal_mu, chunk_bytes => chunk_bytes,
            max_update_bytes => max_update_bytes,
            max_concurrent_uploads => max_concurrent_uploads,
            max_clients => max_clients, max_connections => max_connections,
            max_connections_per_ip => max_connections_per_ip,
            min_upload_rate => min_upload_rate,
            stream_window => stream_window,
            client_timeout => client_timeout_secs, poll_ms => poll_ms,
            finish_grace => finish_grace_secs,
            distill_epochs => distill_epochs, distill_lr => distill_lr,
            distill_temperature => distill_temperature,
        );
        // A switch: the flag turns it on over the file's setting.
        if self.layerwise_align {
            c.layerwise_align = true;
        }
        if self.serve_final {
            c.serve_final = true;
        }
        macro_rules! set_opt {
            ($($flag:ident),* $(,)?) => {
                $(if self.$flag.is_some() { c.$flag = self.$flag.clone(); })*
            };
        }
        set_opt!(
            min_updates,
            max_examples,
            cold_start_strategy,
            tls_cert,
            tls_key,
            client_ca,
            token_file,
            test_data,
            evaluate_cmd,
            init_model,
            distill_data,
            metrics_listen
        );
        if self.token.is_some() {
            c.token = self.token.clone();
        }
        if self.status_token.is_some() {
            c.status_token = self.status_token.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// A secret flag's value, kept in a type whose `Debug` hides it, so the
/// parsed arguments can be printed without showing a token.
fn secret(value: &str) -> Result<SecretString, String> {
    Ok(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_its_environment_variable() {
        use clap::CommandFactory;
        for arg in ServerArgs::command().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let want = format!("FUSION_{}", id.to_uppercase());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(want.as_str()), "--{id}");
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("fusion-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("server.toml");
        std::fs::write(
            &file,
            "rounds = 7\nmin_clients = 4\nstrategy = \"fedavg\"\n",
        )
        .expect("write");
        let args = ServerArgs::parse_from([
            "fusion-server",
            "--config",
            file.to_str().expect("utf-8"),
            "--min-clients",
            "3",
        ]);
        let c = args.config().expect("valid");
        assert_eq!((c.rounds, c.min_clients), (7, 3));
        let with_token =
            ServerArgs::parse_from(["fusion-server", "--token", "a-secret-token-0123"]);
        assert!(
            !format!("{with_token:?}").contains("a-secret-token"),
            "Debug hides it"
        );
        assert_eq!(
            with_token.config().expect("valid").token,
            Some("a-secret-token-0123".into())
        );
        assert_eq!(c.strategy, StrategyKind::Fedavg);
        assert_eq!(c.poll_ms, ServerConfig::default().poll_ms);
        std::fs::write(&file, "rounds = 0\n").expect("write");
        let err = args.config().expect_err("rounds 0").to_string();
        assert!(err.contains("rounds"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
