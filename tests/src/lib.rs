//! Helpers for the end-to-end federation tests in `tests/federation/`: a
//! server on its own runtime (so a test can kill it like a process), small
//! data, small models, and raw protocol calls for misbehaving clients.

#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion_client::ClientConfig;
use fusion_core::{ParamSet, Refiner};
use fusion_data::{DataSource, Dataset};
use fusion_net::{BearerToken, ClientTls, FederationClient, Payload, pb};
use fusion_server::{RunSummary, Server, ServerConfig, ServerError};
use tokio::sync::oneshot;

/// The small model every test uses: one hidden layer of 32 units.
pub const MODEL: &str = "mlp:32";

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fusion-tests-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `n` training examples and 500 test examples of the embedded sample.
pub fn small_data(n: usize) -> (Dataset, Dataset) {
    let data = DataSource::Embedded.load().expect("embedded data");
    (data.train.head(n), data.test.head(500))
}

/// A server configuration for tests: loopback, port 0, small model,
/// quick polling, no grace after the last round.
pub fn server_config(state_dir: PathBuf) -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        model: MODEL.into(),
        state_dir,
        poll_ms: 20,
        round_deadline_secs: 60.0,
        finish_grace_secs: 2.0,
        ..ServerConfig::default()
    }
}

/// The initial global model a server with `config` starts from.
pub fn initial_global(config: &ServerConfig) -> ParamSet {
    let arch: fusion_models::MlpArchitecture = config.model.parse().expect("model");
    fusion_core::synthetic::random_mlp(&arch.widths(config.inputs, config.classes), config.seed)
}

/// A server running on a runtime of its own, like a separate process:
/// [`RunningServer::kill`] drops the runtime, closing every socket.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub metrics: Arc<fusion_server::Metrics>,
    kill: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<Result<RunSummary, ServerError>>,
}

impl RunningServer {
    /// Starts `config` (binding its `listen` address) with optional test data.
    pub fn start(config: ServerConfig, test: Option<Dataset>) -> Self {
        Self::start_with(config, test, None)
    }

    /// Starts `config` with a step after aggregation, as a binary hands
    /// one in ([`Server::with_refiner`]).
    pub fn start_with(
        config: ServerConfig,
        test: Option<Dataset>,
        refiner: Option<Arc<dyn Refiner>>,
    ) -> Self {
        let std_listener = std::net::TcpListener::bind(config.listen).expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let mut config = config;
        if let Some(t) = &test {
            config.inputs = t.features();
            config.classes = t.classes();
        }
        let mut server = Server::new(config).expect("server config");
        if let Some(t) = test {
            let device = server
                .config()
                .backend()
                .expect("backend")
                .device()
                .expect("device");
            server = server.with_scorer(Arc::new(fusion_train::TestSetScorer::new(
                Arc::new(t),
                "test",
                device,
            )));
        }
        if let Some(r) = refiner {
            server = server.with_refiner(r);
        }
        let metrics = server.metrics();
        let (kill, killed) = oneshot::channel::<()>();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                tokio::select! {
                    r = server.run(listener, std::future::pending()) => Some(r),
                    _ = killed => None,
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
            if let Some(r) = result {
                let _ = tx.send(r);
            }
        });
        Self {
            addr,
            metrics,
            kill: Some(kill),
            done,
        }
    }

    /// `http://` URL of the server.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:PORT`, for TLS tests.
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Kills it abruptly (no graceful shutdown).
    pub fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }

    /// Waits for the run to end by itself.
    pub fn wait(self, timeout: Duration) -> Result<RunSummary, ServerError> {
        self.done
            .recv_timeout(timeout)
            .expect("server finished within the timeout")
    }
    /// From async code: waits (off the async threads) up to `timeout` for
    /// the run to end by itself, and for it to have ended well.
    pub async fn finished(self, timeout: Duration) -> RunSummary {
        tokio::task::spawn_blocking(move || self.wait(timeout))
            .await
            .expect("waiting task")
            .expect("server finished cleanly")
    }
}

/// A client configuration for tests: small model, one quick epoch.
pub fn client_config(url: &str, id: &str, seed: u64) -> ClientConfig {
    let mut c = ClientConfig::new(url, id);
    c.model = MODEL.parse().expect("model");
    c.train.epochs = 1;
    c.train.batch = 50;
    c.train.lr = 5e-3;
    c.train.seed = seed;
    c.init_seed = seed;
    c.init_epochs = 1;
    c.backoff = (Duration::from_millis(50), Duration::from_millis(500));
    c.give_up_after = Duration::from_secs(60);
    c
}

/// A raw protocol client, for tests that misbehave on purpose.
pub fn raw_client(url: &str, tls: &ClientTls, token: Option<&str>) -> FederationClient {
    fusion_net::connect(url, tls, BearerToken::new(token.map(str::to_owned))).expect("connect")
}

/// A client id and the session secret its Join was given, which the
/// server wants on every later call under that id.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The client id.
    pub id: String,
    /// `JoinReply.session`.
    pub session: String,
}

impl Joined {
    /// A client that never joined (or lost its session): for tests of
    /// refusals.
    pub fn forged(id: &str, session: &str) -> Self {
        Self {
            id: id.into(),
            session: session.into(),
        }
    }
}

/// Joins as `id` with `examples` and the manifest of `model`.
pub async fn join(rpc: &mut FederationClient, id: &str, examples: u64, model: &ParamSet) -> Joined {
    let manifest = Payload::from_params(model).expect("payload").manifest;
    let reply = rpc
        .join(pb::JoinRequest {
            protocol_version: fusion_net::PROTOCOL_VERSION,
            client_id: id.into(),
            examples,
            spec_hash: fusion_net::manifest_hash(&manifest),
        })
        .await
        .expect("join accepted")
        .into_inner();
    Joined {
        id: id.into(),
        session: reply.session,
    }
}

/// A heartbeat from `client`.
pub async fn heartbeat(
    rpc: &mut FederationClient,
    client: &Joined,
) -> Result<pb::HeartbeatReply, tonic::Status> {
    rpc.heartbeat(pb::HeartbeatRequest {
        client_id: client.id.clone(),
        session: client.session.clone(),
    })
    .await
    .map(|r| r.into_inner())
}

/// Polls until the server tells `client` to train; returns the round.
pub async fn wait_for_train(rpc: &mut FederationClient, client: &Joined) -> u32 {
    wait_for_order(rpc, client).await.round
}

/// Polls until the server tells `client` to train; returns the whole
/// order (round, exchange, statistics asked for).
pub async fn wait_for_order(rpc: &mut FederationClient, client: &Joined) -> pb::HeartbeatReply {
    wait_for_exchange(rpc, client, 0).await
}

/// Polls until the server asks `client` for `exchange` of its round
/// (exchange 0 trains; later ones compute statistics); returns the order.
pub async fn wait_for_exchange(
    rpc: &mut FederationClient,
    client: &Joined,
    exchange: u32,
) -> pb::HeartbeatReply {
    let start = Instant::now();
    loop {
        let reply = heartbeat(rpc, client).await.expect("heartbeat");
        let due =
            reply.action == pb::Action::Train as i32 || reply.action == pb::Action::Compute as i32;
        if due && reply.exchange == exchange {
            return reply;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never asked for exchange {exchange}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads `chunks` as one stream and returns the server's answer.
pub async fn upload(
    rpc: &mut FederationClient,
    chunks: Vec<pb::Chunk>,
) -> Result<pb::UploadReply, tonic::Status> {
    rpc.upload(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

/// The header of an upload of `payload` for `round` from `client`.
pub fn header(payload: &Payload, round: u32, client: &Joined, examples: u64) -> pb::Header {
    let mut header = payload.header(round, &client.id, examples);
    header.session = client.session.clone();
    header
}

/// The chunks of an honest upload of `model` for `round` from `client`.
pub fn honest_chunks(
    model: &ParamSet,
    round: u32,
    client: &Joined,
    examples: u64,
) -> Vec<pb::Chunk> {
    let payload = Payload::from_params(model).expect("payload");
    payload
        .chunks(
            header(&payload, round, client, examples),
            fusion_net::MIN_CHUNK_BYTES,
        )
        .collect()
}

/// Lines of `rounds.jsonl` in `state_dir`.
pub fn round_lines(state_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(state_dir.join("rounds.jsonl"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}
