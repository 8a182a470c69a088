//! A client's settings.

use std::time::Duration;

use fusion_core::{ComputeBackend, ParamSet};
use fusion_models::{Architecture, MlpArchitecture};
use fusion_net::{BearerToken, ClientTls};
use fusion_train::TrainConfig;

/// Everything one client needs besides its data.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server address, `http://host:port` or `https://host:port`.
    pub server: String,
    /// This client's stable name.
    pub client_id: String,
    /// TLS files (for `https://`).
    pub tls: ClientTls,
    /// Bearer token, if the server wants one.
    pub token: BearerToken,
    /// Model architecture; must match the server's.
    pub model: Architecture,
    /// Local training per round (`epochs` is local epochs). The proximal
    /// term comes from the server.
    pub train: TrainConfig,
    /// Epochs when the server asks for a model from the client's own
    /// initialisation (cold start or one-shot): the silo's own training.
    pub init_epochs: usize,
    /// Seed of the client's own initialisation.
    pub init_seed: u64,
    /// A model this silo already trained, sent as is when the server asks
    /// for the client's own model.
    pub init_model: Option<ParamSet>,
    /// Device for local training.
    pub backend: ComputeBackend,
    /// Base and cap of the reconnect backoff.
    pub backoff: (Duration, Duration),
    /// Give up after the server has been unreachable this long.
    pub give_up_after: Duration,
    /// Liveness file for container health checks ([`crate::HealthFile`]).
    pub health_file: Option<std::path::PathBuf>,
}

impl ClientConfig {
    /// Defaults for everything but the address and the id.
    pub fn new(server: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            client_id: client_id.into(),
            tls: ClientTls::default(),
            token: BearerToken::default(),
            model: Architecture::Mlp(MlpArchitecture::default()),
            train: TrainConfig {
                epochs: 1,
                progress: false,
                ..TrainConfig::default()
            },
            init_epochs: 5,
            init_seed: 0,
            init_model: None,
            backend: ComputeBackend::default(),
            backoff: (Duration::from_millis(200), Duration::from_secs(10)),
            give_up_after: Duration::from_secs(600),
            health_file: None,
        }
    }
}
