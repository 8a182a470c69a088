//! The server's settings: defaults, a TOML file, then flags and
//! environment variables on top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use fusion_core::{BatchNormStatistics, Reference, RepairMode, StrategyKind};
use fusion_core::{ComputeBackend, MergeMany, MlpArchitecture, SpecSource, StrategyConfig};
use fusion_net::TokenTable;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// Smallest HTTP/2 window: the protocol's initial 64 KiB.
const MIN_STREAM_WINDOW: u32 = 64 << 10;
/// Largest HTTP/2 window accepted (16 MiB).
const MAX_STREAM_WINDOW: u32 = 16 << 20;

/// Where the first global model comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// The server initialises it from `seed`, and every client starts
    /// round 1 from it (usual federated training).
    Global,
    /// Cold start: in round 1 clients bring models trained from their own
    /// initialisations, and the server merges them; normal rounds follow.
    /// With one round this is one-shot fusion.
    Clients,
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "global" => Ok(Self::Global),
            "clients" => Ok(Self::Clients),
            other => Err(format!(
                "unknown init `{other}`; expected global or clients"
            )),
        }
    }
}

/// Everything the server needs to run. Field names are the TOML keys; see
/// `deploy/server.toml` for a commented example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for gRPC.
    pub listen: SocketAddr,
    /// Rounds to run; the server exits 0 after the last.
    pub rounds: u32,
    /// Live clients needed before a round opens.
    pub min_clients: u32,
    /// Valid updates needed to close a round at its deadline (defaults to
    /// `min_clients`); with fewer the round is retried.
    pub min_updates: Option<u32>,
    /// Fraction of live clients sampled per round (at least `min_clients`).
    pub fraction: f64,
    /// Seconds a round stays open.
    pub round_deadline_secs: f64,
    /// Aggregation strategy.
    pub strategy: StrategyKind,
    /// Alignment reference for `align`.
    pub reference: Reference,
    /// With `init = "clients"`: the strategy of round 1 only, where the
    /// clients' own models are merged (a one-shot method such as
    /// `layerwise`); `strategy` runs the rounds after. Unset: `strategy`
    /// runs every round.
    pub cold_start_strategy: Option<StrategyKind>,
    /// MergeMany's pass cap.
    pub max_passes: usize,
    /// RegMean's off-diagonal weight α on the Gram matrices.
    pub regmean_alpha: f64,
    /// Ridge of `regmean` and `layerwise`, as a fraction of each layer's
    /// mean Gram diagonal, towards the FedAvg weights.
    pub ridge: f64,
    /// Whether `layerwise` starts from an alignment of the clients to the
    /// largest one (opt-in; see `StrategyConfig::layerwise_align`).
    pub layerwise_align: bool,
    /// What happens to a merged model's BatchNorm running statistics
    /// (see [`BatchNormStatistics`]).
    pub batch_norm: BatchNormStatistics,
    /// Whether each round REPAIRs the merge of a CNN (see
    /// [`RepairMode`]): clients send their own models' norm output moments
    /// with their weights, and one exchange per norm (`sequential`)
    /// rescales the merged model's norms to them. Models without norm
    /// layers skip it.
    pub repair: RepairMode,
    /// After the last round, keep serving (FINISHED to clients, the final
    /// model to FetchGlobal for round `rounds + 1`, the status page) until
    /// stopped, instead of exiting: for orchestrators that restart a
    /// process that exits (a Kubernetes StatefulSet).
    pub serve_final: bool,
    /// Device for alignment and server-side evaluation.
    pub backend: String,
    /// Where `global.safetensors` and `rounds.jsonl` live.
    pub state_dir: PathBuf,
    /// Server certificate (PEM); with `tls_key`, enables TLS.
    pub tls_cert: Option<PathBuf>,
    /// Server key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA for client certificates: enables mutual TLS.
    pub client_ca: Option<PathBuf>,
    /// Shared bearer token clients must present. Every holder is one
    /// principal: it may act as any client id.
    pub token: Option<SecretString>,
    /// File of per-client tokens, one `CLIENT_ID TOKEN` line each: a call
    /// with one of them may act only as that client id.
    pub token_file: Option<PathBuf>,
    /// Bearer token `/status.json` and `/metrics` need (the status page
    /// asks for it). They show client ids; without it they are open to
    /// whoever reaches `metrics_listen`.
    pub status_token: Option<SecretString>,
    /// Dataset whose test split scores each global model with the
    /// built-in MLP (`embedded`, `fashion-mnist`, …); none by default. The
    /// `fusion-server` binary loads it and hands the server a scorer
    /// ([`crate::Server::with_scorer`]).
    pub test_data: Option<String>,
    /// Unlabeled proxy images for ensemble distillation (FedDF) after each
    /// round: the training images of this dataset (`embedded`,
    /// `fashion-mnist`, …), whose labels are never read. None by default.
    /// The `fusion-server` binary builds the step and hands it to the
    /// server ([`crate::Server::with_refiner`]).
    pub distill_data: Option<String>,
    /// Distillation epochs over the proxy set.
    pub distill_epochs: usize,
    /// Distillation learning rate (Adam).
    pub distill_lr: f64,
    /// Softmax temperature of teachers and student in distillation.
    pub distill_temperature: f64,
    /// Built-in model architecture (`mlp`, `mlp:512x3`, `mlp:256,128`),
    /// used when `init_model` is unset.
    pub model: String,
    /// The run's first global model, from a file (safetensors, PyTorch
    /// layout): any architecture `spec` describes. Its tensors are the
    /// federation's manifest; clients must send the same. Unset: the
    /// built-in `model`, initialised from `seed`.
    pub init_model: Option<PathBuf>,
    /// How the model's hidden units permute, for the strategies that align:
    /// `mlp` (inferred: a chain of Linear layers) or a spec file (TOML or
    /// JSON, as `fusion align --spec`). Checked against the model before
    /// any port is bound.
    pub spec: String,
    /// A command that scores each new global model (the user's own
    /// evaluator, run by `sh -c`): it reads `FUSION_GLOBAL` and writes
    /// `{"metrics": {"loss": …, "accuracy": …}}` to `FUSION_RESULT`. The
    /// alternative to `test_data` for models Fusion does not build.
    pub evaluate_cmd: Option<String>,
    /// Longest run of `evaluate_cmd`, in seconds; past it its process group
    /// is killed and the round is kept unscored.
    pub evaluate_timeout_secs: f64,
    /// Input features of the model (784 for 28×28 images); taken from
    /// `test_data` when that is set.
    pub inputs: usize,
    /// Output classes; taken from `test_data` when that is set.
    pub classes: usize,
    /// Where the first global model comes from.
    pub init: Init,
    /// Seed of the initial global model, of client sampling and matching.
    pub seed: u64,
    /// FedProx μ sent to clients (0: plain local training).
    pub proximal_mu: f64,
    /// Chunk size clients upload in, 1-4 MiB (sent at Join). The server
    /// sends models in 256 KiB chunks, whatever this says.
    pub chunk_bytes: usize,
    /// Largest update accepted, in bytes.
    pub max_update_bytes: u64,
    /// Cap on the examples a client may declare at Join, and so on its
    /// weight: Join counts are untrusted, and without a cap one client
    /// can outweigh all others. Unset: no cap.
    pub max_examples: Option<u64>,
    /// Updates received concurrently; more wait (HTTP/2 flow control holds
    /// them back), so memory stays bounded.
    pub max_concurrent_uploads: usize,
    /// Clients registered at once; a Join beyond it is refused until a
    /// silent one is evicted (after `client_timeout_secs`).
    pub max_clients: usize,
    /// gRPC connections open at once; more are closed as soon as they are
    /// accepted. Keep it below the process's file-descriptor limit.
    pub max_connections: usize,
    /// gRPC connections open at once from one address, so one host cannot
    /// take every slot (clients behind one NAT share it).
    pub max_connections_per_ip: usize,
    /// Slowest upload kept, in bytes per second: 10 s after it gets its
    /// slot, an upload must have delivered its bytes at this rate, so a
    /// peer trickling bytes cannot hold a slot. 0 turns the rate off (the
    /// exchange deadline still cuts every upload).
    pub min_upload_rate: u64,
    /// HTTP/2 flow-control window, per stream and per connection, in
    /// bytes. An upload waiting for its slot can have this much in the
    /// server's buffers, so with N clients waiting it costs N × window
    /// (not N models); an upload in progress has at most this much in
    /// flight, so over a link with round-trip time RTT it runs at most at
    /// window / RTT (1 MiB: 50 MB/s at 20 ms). 64 KiB to 16 MiB.
    pub stream_window: u32,
    /// Seconds without a call after which a client is not live: its
    /// registration is evicted, and its next call is told to Join again.
    pub client_timeout_secs: f64,
    /// Client polling interval, in milliseconds.
    pub poll_ms: u32,
    /// After the last round, seconds to keep answering so clients learn the
    /// run is finished.
    pub finish_grace_secs: f64,
    /// Address for the status page (`/`, `/status.json`) and Prometheus
    /// `/metrics`; none by default.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            rounds: 3,
            min_clients: 2,
            min_updates: None,
            fraction: 1.0,
            round_deadline_secs: 600.0,
            strategy: StrategyKind::Align,
            reference: Reference::Global,
            cold_start_strategy: None,
            max_passes: MergeMany::DEFAULT_MAX_PASSES,
            regmean_alpha: StrategyConfig::DEFAULT_REGMEAN_ALPHA,
            ridge: StrategyConfig::DEFAULT_RIDGE,
            layerwise_align: false,
            batch_norm: BatchNormStatistics::default(),
            repair: RepairMode::Off,
            serve_final: false,
            backend: ComputeBackend::default().to_string(),
            state_dir: PathBuf::from("fusion-state"),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            token: None,
            token_file: None,
            status_token: None,
            test_data: None,
            distill_data: None,
            distill_epochs: 20,
            distill_lr: 1e-3,
            distill_temperature: 1.0,
            model: "mlp".into(),
            init_model: None,
            spec: "mlp".into(),
            evaluate_cmd: None,
            evaluate_timeout_secs: 600.0,
            inputs: 784,
            classes: 10,
            init: Init::Global,
            seed: 0,
            proximal_mu: 0.0,
            chunk_bytes: fusion_net::DEFAULT_CHUNK_BYTES,
            max_update_bytes: 4 << 30,
            max_examples: None,
            max_concurrent_uploads: 4,
            max_clients: 10_000,
            max_connections: 512,
            max_connections_per_ip: 64,
            min_upload_rate: 64 << 10,
            stream_window: 1 << 20,
            client_timeout_secs: 60.0,
            poll_ms: 500,
            finish_grace_secs: 5.0,
            metrics_listen: None,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; unknown keys are errors, so typos do not pass.
    pub fn from_toml_file(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io {
            what: "config file",
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
    }

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));
        if self.rounds == 0 {
            return bad("rounds must be at least 1".into());
        }
        if self.min_clients == 0 {
            return bad("min_clients must be at least 1".into());
        }
        if self.min_updates == Some(0) {
            return bad("min_updates must be at least 1".into());
        }
        if self.max_examples == Some(0) {
            return bad("max_examples must be at least 1".into());
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad(format!("fraction must be in (0, 1], got {}", self.fraction));
        }
        const MAX_SECS: f64 = 1e7;
        for (name, v) in [
            ("round_deadline_secs", self.round_deadline_secs),
            ("client_timeout_secs", self.client_timeout_secs),
            ("evaluate_timeout_secs", self.evaluate_timeout_secs),
        ] {
            // Bounded so that durations and deadlines cannot overflow.
            if !(v.is_finite() && v > 0.0 && v <= MAX_SECS) {
                return bad(format!(
                    "{name} must be a positive number of seconds up to {MAX_SECS}, got {v}"
                ));
            }
        }
        let grace = self.finish_grace_secs;
        if !(grace.is_finite() && (0.0..=MAX_SECS).contains(&grace)) {
            return bad(format!(
                "finish_grace_secs must be between 0 and {MAX_SECS} seconds, got {grace}"
            ));
        }
        if !(self.proximal_mu.is_finite() && self.proximal_mu >= 0.0) {
            return bad(format!("proximal_mu must be ≥ 0, got {}", self.proximal_mu));
        }
        if !(fusion_net::MIN_CHUNK_BYTES..=fusion_net::MAX_CHUNK_BYTES).contains(&self.chunk_bytes)
        {
            return bad(format!(
                "chunk_bytes must be between {} and {} (1-4 MiB), got {}",
                fusion_net::MIN_CHUNK_BYTES,
                fusion_net::MAX_CHUNK_BYTES,
                self.chunk_bytes
            ));
        }
        if (self.max_clients as u64) < u64::from(self.min_clients) {
            return bad(format!(
                "max_clients ({}) must be at least min_clients ({})",
                self.max_clients, self.min_clients
            ));
        }
        if let Some(token) = &self.status_token {
            if token.0.len() < fusion_net::MIN_TOKEN_BYTES {
                return bad(format!(
                    "status_token must be at least {} bytes (try `openssl rand -hex 16`)",
                    fusion_net::MIN_TOKEN_BYTES
                ));
            }
            if self.metrics_listen.is_none() {
                return bad("status_token guards the status page: it needs metrics_listen".into());
            }
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return bad("max_connections and max_connections_per_ip must be at least 1".into());
        }
        if self.max_concurrent_uploads == 0 {
            return bad("max_concurrent_uploads must be at least 1".into());
        }
        if !(MIN_STREAM_WINDOW..=MAX_STREAM_WINDOW).contains(&self.stream_window) {
            return bad(format!(
                "stream_window must be {MIN_STREAM_WINDOW} to {MAX_STREAM_WINDOW} bytes, got {}",
                self.stream_window
            ));
        }
        if self.poll_ms == 0 {
            return bad("poll_ms must be at least 1".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("TLS needs both tls_cert and tls_key".into());
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            return bad("client_ca (mutual TLS) needs tls_cert and tls_key".into());
        }
        self.backend()?;
        // `model` is checked where it is built: InitialModel::from_config
        // for the MLP, the binary for a CNN.
        if self.test_data.is_some() && self.evaluate_cmd.is_some() {
            return bad("test_data and evaluate_cmd both score the global model: set one".into());
        }
        if self
            .evaluate_cmd
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return bad("evaluate_cmd is empty".into());
        }
        if self.spec.is_empty() {
            return bad("spec must be `mlp` or a spec file's path".into());
        }
        if self.distill_epochs == 0 {
            return bad("distill_epochs must be at least 1".into());
        }
        for (name, v) in [
            ("distill_lr", self.distill_lr),
            ("distill_temperature", self.distill_temperature),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a positive number, got {v}"));
            }
        }
        StrategyConfig::check_options(self.max_passes, self.regmean_alpha, self.ridge)
            .map_err(ServerError::Config)?;
        if self.cold_start_strategy.is_some() && self.init != Init::Clients {
            return bad(
                "cold_start_strategy applies to round 1 of a cold start: it needs init = \"clients\""
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether clients train `round` from their own initialisations: round
    /// 1 of a cold start (one-shot fusion when it is the only round).
    pub fn from_own_init(&self, round: u32) -> bool {
        self.init == Init::Clients && round == 1
    }

    /// The strategy that merges `round`: `cold_start_strategy` for round 1
    /// of a cold start, else `strategy`.
    pub fn strategy_for(&self, round: u32) -> StrategyKind {
        match self.cold_start_strategy {
            Some(kind) if self.from_own_init(round) => kind,
            _ => self.strategy,
        }
    }

    /// The settings of `kind`, for [`StrategyConfig::build`].
    pub fn strategy_config(
        &self,
        kind: StrategyKind,
        device: fusion_core::Device,
        spec: SpecSource,
    ) -> StrategyConfig {
        let mut config = StrategyConfig::new(kind, spec, device);
        config.options.seed = self.seed;
        config.reference = self.reference;
        config.max_passes = self.max_passes;
        config.regmean_alpha = self.regmean_alpha;
        config.ridge = self.ridge;
        config.layerwise_align = self.layerwise_align;
        config.batch_norm = self.batch_norm;
        config.repair = self.repair;
        config
    }

    /// The bearer tokens calls must carry: the shared token and those of
    /// `token_file`, checked (length, duplicates) with errors naming the
    /// file and the client but never a token.
    pub fn tokens(&self) -> Result<TokenTable, ServerError> {
        let clients = match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io {
                    what: "token file",
                    path: path.clone(),
                    source,
                })?;
                warn_if_readable_by_others(path);
                let clients = fusion_net::parse_token_file(&text)
                    .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
                for id in clients.keys() {
                    crate::input::check_client_id(id).map_err(|s| {
                        ServerError::Config(format!("{}: {}", path.display(), s.message()))
                    })?;
                }
                if clients.is_empty() {
                    return Err(ServerError::Config(format!(
                        "{} lists no client (expected `CLIENT_ID TOKEN` lines)",
                        path.display()
                    )));
                }
                clients
            }
            None => Default::default(),
        };
        TokenTable::new(self.token.as_ref().map(|t| t.0.as_str()), &clients).map_err(|e| {
            let source = self
                .token_file
                .as_ref()
                .map(|p| format!("{}: ", p.display()))
                .unwrap_or_default();
            ServerError::Config(format!("{source}{e}"))
        })
    }

    /// Updates needed to close a round.
    pub fn min_updates(&self) -> u32 {
        self.min_updates.unwrap_or(self.min_clients)
    }

    /// The compute backend.
    pub fn backend(&self) -> Result<ComputeBackend, ServerError> {
        self.backend
            .parse()
            .map_err(|e| ServerError::Config(format!("backend: {e}")))
    }

    /// The model architecture.
    pub fn architecture(&self) -> Result<MlpArchitecture, ServerError> {
        self.model
            .parse()
            .map_err(|e| ServerError::Config(format!("model: {e}")))
    }

    /// The round deadline.
    pub fn round_deadline(&self) -> Duration {
        Duration::from_secs_f64(self.round_deadline_secs)
    }

    /// The liveness window.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.client_timeout_secs)
    }

    /// The TLS files, when TLS is on.
    pub fn tls(&self) -> Option<fusion_net::ServerTls> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(fusion_net::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_settings_are_checked_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("fusion-config-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tokens");
        let mut config = ServerConfig {
            token: Some("shared-token-0123456789".into()),
            token_file: Some(file.clone()),
            ..ServerConfig::default()
        };
        assert!(!format!("{config:?}").contains("shared-token"));
        std::fs::write(&file, "a alice-token-0123456789\nb short\n").expect("write");
        let err = config.tokens().expect_err("short").to_string();
        assert!(
            err.contains("client `b`") && !err.contains("short"),
            "{err}"
        );
        std::fs::write(&file, "a\nb x\n").expect("write");
        let err = config.tokens().expect_err("one field").to_string();
        assert!(err.contains("line 1"), "{err}");
        std::fs::write(&file, "# none\n").expect("write");
        assert!(config.tokens().is_err(), "an empty file is a mistake");
        std::fs::write(&file, "a alice-token-0123456789\n").expect("write");
        assert_eq!(config.tokens().expect("valid").client_tokens(), 1);
        config.token_file = Some(dir.join("missing"));
        let err = config.tokens().expect_err("missing").to_string();
        assert!(err.contains("token file"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn defaults_are_valid_and_toml_round_trips() {
        let config = ServerConfig::default();
        config.validate().expect("defaults valid");
        let text = toml::to_string(&config).expect("serialises");
        let back: ServerConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, config);
    }

    #[test]
    fn the_documented_example_file_is_valid() {
        let text = include_str!("../../../deploy/server.toml");
        let config: ServerConfig = toml::from_str(text).expect("deploy/server.toml parses");
        config.validate().expect("and is valid");
        assert_eq!(config.rounds, 10);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let err = toml::from_str::<ServerConfig>("roundz = 3").expect_err("unknown key");
        assert!(err.to_string().contains("roundz"), "{err}");
        let bad = ServerConfig {
            fraction: 1.5,
            ..ServerConfig::default()
        };
        assert!(
            bad.validate()
                .expect_err("fraction")
                .to_string()
                .contains("fraction")
        );
        let bad = ServerConfig {
            round_deadline_secs: 1e30,
            ..ServerConfig::default()
        };
        let err = bad.validate().expect_err("deadline").to_string();
        assert!(err.contains("round_deadline_secs"), "{err}");
        let bad = ServerConfig {
            chunk_bytes: 10,
            ..ServerConfig::default()
        };
        assert!(
            bad.validate()
                .expect_err("chunk")
                .to_string()
                .contains("chunk_bytes")
        );
        let bad = ServerConfig {
            client_ca: Some("ca.pem".into()),
            ..ServerConfig::default()
        };
        assert!(
            bad.validate()
                .expect_err("mtls")
                .to_string()
                .contains("client_ca")
        );
        let parsed: ServerConfig =
            toml::from_str("strategy = \"merge-many\"\nreference = \"largest\"").expect("parses");
        assert_eq!(parsed.strategy, StrategyKind::MergeMany);
        assert_eq!(parsed.reference, Reference::Largest);
    }
}

/// A secret setting (the shared token): read from TOML like a string, but
/// its `Debug` form hides it, so a logged or printed configuration never
/// shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Tokens are secrets: a file others can read is worth a warning.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} is readable by other users; tokens are secrets (chmod 600)",
                path.display()
            );
        }
    }
}
