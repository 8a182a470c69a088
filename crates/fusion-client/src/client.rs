//! The client loop: join → wait → fetch global → train → upload, until the
//! server says the run is finished. Reconnects with backoff when the
//! server is down; stops at once on authentication or TLS failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion_core::{ParamSet, StatisticTensor};
use fusion_data::Dataset;
use fusion_external::TrainOutput;
use fusion_models::Network;
use fusion_net::{
    DecodingAssembler, FederationClient, LogSafe, PROTOCOL_VERSION, Payload, manifest_hash, pb,
};
use tonic::{Code, Status};

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::health::{HealthFile, REFRESH};
use crate::local::LocalTraining;

mod command_round;

/// What a client did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientSummary {
    /// Rounds whose update the server merged.
    pub rounds_merged: Vec<u32>,
    /// Updates the server refused (late, not sampled, …).
    pub refused: u32,
    /// Rounds (attempts) whose training failed, so nothing was uploaded:
    /// the user's trainer exited non-zero, hung, or wrote a bad update.
    pub failed: u32,
    /// Times the client had to reconnect.
    pub reconnects: u32,
    /// The last model this client trained and the server accepted, so an
    /// in-process caller (`fusion simulate`) can score the clients' own
    /// models beside the merge: best single client, output ensemble.
    pub last_trained: Option<ParamSet>,
}

/// How an upload ended.
enum Sent {
    /// The server merged it.
    Merged,
    /// The server refused it for this exchange; carry on.
    Refused,
    /// The call failed; the client waited and may try again.
    Retry,
    /// The server lost track of the client: join again.
    Rejoin,
}

/// How to react to a failed call.
enum Reaction {
    /// Wait (with backoff) and try again.
    Retry,
    /// The server lost track of us (restart): join again.
    Rejoin,
    /// Stop.
    Fatal(ClientError),
}

/// A running client: its connection, data and progress.
struct Session {
    config: ClientConfig,
    local: LocalTraining,
    /// Examples declared at Join (the cap on this client's weight).
    examples: u64,
    rpc: FederationClient,
    backoff: Backoff,
    unreachable_since: Option<Instant>,
    spec_hash: String,
    /// The secret of this client's latest Join, carried by every later
    /// call: it proves those calls come from the process that joined.
    secret: String,
    chunk_bytes: usize,
    poll: Duration,
    /// A trained update not yet accepted, kept so a retry after a
    /// connection failure does not train again.
    pending: Option<(u32, ParamSet)>,
    /// The same for the user's trainer: (round, exchange, its output).
    pending_output: Option<(u32, u32, TrainOutput)>,
    /// The (round, attempt, exchange) whose training last failed: not
    /// tried again until the server retries the round or moves on.
    failed_at: Option<(u32, u32, u32)>,
    /// Failed trainings in a row.
    failures_in_a_row: u32,
    /// The model this client trained in a round's exchange 0, kept for the
    /// round's later exchanges, whose statistics compare the merged model
    /// with it.
    trained: Option<(u32, ParamSet)>,
    summary: ClientSummary,
    health: HealthFile,
    /// The server said the run is finished while this client was busy (a
    /// keep-alive heartbeat's answer): stop instead of uploading to a
    /// server that may be gone.
    finished: bool,
}

/// Runs a client training the built-in model on `data` (its shard) until
/// the server reports the run finished.
pub async fn run(config: ClientConfig, data: Arc<Dataset>) -> Result<ClientSummary, ClientError> {
    run_with(config, LocalTraining::BuiltIn(data)).await
}

/// Runs a client whose updates come from `local` (the built-in model or
/// the user's trainer) until the server reports the run finished.
pub async fn run_with(
    config: ClientConfig,
    local: LocalTraining,
) -> Result<ClientSummary, ClientError> {
    let rpc = fusion_net::connect(&config.server, &config.tls, config.token.clone())?;
    let template = local.template(&config.model);
    let spec_hash = manifest_hash(&Payload::from_params(&template)?.manifest);
    let mut session = Session {
        health: HealthFile::new(config.health_file.clone()),
        backoff: Backoff::new(config.backoff.0, config.backoff.1),
        config,
        examples: local.examples(),
        local,
        rpc,
        unreachable_since: None,
        spec_hash,
        secret: String::new(),
        chunk_bytes: fusion_net::DEFAULT_CHUNK_BYTES,
        poll: Duration::from_millis(500),
        pending: None,
        pending_output: None,
        failed_at: None,
        failures_in_a_row: 0,
        trained: None,
        summary: ClientSummary::default(),
        finished: false,
    };
    session.run().await?;
    Ok(session.summary)
}

impl Session {
    async fn run(&mut self) -> Result<(), ClientError> {
        loop {
            if !self.join().await? {
                continue;
            }
            loop {
                if self.finished {
                    self.health.write("finished");
                    tracing::info!(client = %self.config.client_id, "run finished");
                    return Ok(());
                }
                let request = pb::HeartbeatRequest {
                    client_id: self.config.client_id.clone(),
                    session: self.secret.clone(),
                };
                let reply =
                    match within(CALL_TIMEOUT, "Heartbeat", self.rpc.heartbeat(request)).await {
                        Ok(r) => r.into_inner(),
                        Err(status) => match self.react(status).await? {
                            Reaction::Retry => continue,
                            Reaction::Rejoin => break,
                            Reaction::Fatal(e) => return Err(e),
                        },
                    };
                self.connected();
                match pb::Action::try_from(reply.action).unwrap_or(pb::Action::Unspecified) {
                    pb::Action::Finished => {
                        self.health.write("finished");
                        tracing::info!(client = %self.config.client_id, "run finished");
                        return Ok(());
                    }
                    pb::Action::Train | pb::Action::Compute
                        if matches!(self.local, LocalTraining::Command(_)) =>
                    {
                        if !self.command_exchange(&reply).await? {
                            break;
                        }
                    }
                    pb::Action::Train => {
                        if !self.train_and_upload(&reply).await? {
                            break;
                        }
                    }
                    pb::Action::Compute => {
                        if !self.compute_and_upload(&reply).await? {
                            break;
                        }
                    }
                    _ => {
                        // The server's latest interval wins over the one from Join.
                        if reply.poll_ms > 0 {
                            self.poll = Duration::from_millis(u64::from(reply.poll_ms));
                        }
                        tokio::time::sleep(self.poll).await;
                    }
                }
            }
        }
    }

    /// Joins; false when the attempt failed and should be repeated.
    async fn join(&mut self) -> Result<bool, ClientError> {
        let request = pb::JoinRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: self.config.client_id.clone(),
            examples: self.examples,
            spec_hash: self.spec_hash.clone(),
        };
        match within(CALL_TIMEOUT, "Join", self.rpc.join(request)).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                self.secret = reply.session;
                self.chunk_bytes = (reply.chunk_bytes as usize)
                    .clamp(fusion_net::MIN_CHUNK_BYTES, fusion_net::MAX_CHUNK_BYTES);
                self.poll = Duration::from_millis(u64::from(reply.poll_ms.max(1)));
                self.connected();
                self.health.write("joined");
                tracing::info!(
                    client = %self.config.client_id,
                    run = %reply.run_id,
                    rounds = reply.rounds,
                    "joined"
                );
                Ok(true)
            }
            Err(status) if status.code() == Code::FailedPrecondition => {
                Err(ClientError::Refused(LogSafe(status.message()).to_string()))
            }
            Err(status) => match self.react(status).await? {
                Reaction::Fatal(e) => Err(e),
                _ => Ok(false),
            },
        }
    }

    /// One round's work; false when the client must join again.
    async fn train_and_upload(&mut self, order: &pb::HeartbeatReply) -> Result<bool, ClientError> {
        let round = order.round;
        let update = match self.pending.take() {
            Some((r, model)) if r == round => model,
            _ => {
                let start = if order.from_own_init {
                    None
                } else {
                    match self.fetch(round, 0).await {
                        Ok(global) => Some(global),
                        Err(status) => {
                            return match self.react(status).await? {
                                Reaction::Retry => Ok(true),
                                Reaction::Rejoin => Ok(false),
                                Reaction::Fatal(e) => Err(e),
                            };
                        }
                    }
                };
                self.train(round, start, f64::from(order.proximal_mu))
                    .await?
            }
        };
        if self.finished {
            return Ok(true);
        }
        // Kept before uploading: if the reply is lost but the server merged
        // the update, later exchanges of the round still find the model.
        self.trained = Some((round, update.clone()));
        let statistics = match self.statistics(&update, None, &order.statistics).await {
            Ok(s) => s,
            Err(e) => {
                self.pending = Some((round, update));
                self.cannot_compute(order, &e).await;
                return Ok(true);
            }
        };
        let weights = order.send_weights.then_some(&update);
        let sent = self
            .upload(order, weights, &statistics, self.examples)
            .await?;
        match sent {
            Sent::Merged => {
                self.summary.last_trained = Some(update);
                Ok(true)
            }
            Sent::Refused => Ok(true),
            Sent::Retry => {
                self.pending = Some((round, update));
                Ok(true)
            }
            Sent::Rejoin => {
                self.pending = Some((round, update));
                Ok(false)
            }
        }
    }

    /// An exchange after the first: the statistics the server asks for,
    /// computed with the exchange's model and this client's model of the
    /// round; false when the client must join again.
    async fn compute_and_upload(
        &mut self,
        order: &pb::HeartbeatReply,
    ) -> Result<bool, ClientError> {
        let round = order.round;
        let own = match &self.trained {
            Some((r, model)) if *r == round => model.clone(),
            _ => {
                // A client restarted mid-round no longer has the model it
                // trained; the exchange completes without it.
                tracing::warn!(
                    client = %self.config.client_id,
                    round,
                    exchange = order.exchange,
                    "asked for statistics of a round this client did not train in; skipping"
                );
                tokio::time::sleep(self.poll).await;
                return Ok(true);
            }
        };
        let reference = match self.fetch(round, order.exchange).await {
            Ok(model) => model,
            Err(status) => {
                return match self.react(status).await? {
                    Reaction::Retry => Ok(true),
                    Reaction::Rejoin => Ok(false),
                    Reaction::Fatal(e) => Err(e),
                };
            }
        };
        let statistics = match self
            .statistics(&own, Some(reference), &order.statistics)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.cannot_compute(order, &e).await;
                return Ok(true);
            }
        };
        Ok(!matches!(
            self.upload(order, None, &statistics, self.examples).await?,
            Sent::Rejoin
        ))
    }

    /// Statistics the server asked for but this client cannot compute (a
    /// name it does not know, a layer its model lacks): logged and counted
    /// as refused, and the client carries on; the exchange completes
    /// without it.
    async fn cannot_compute(&mut self, order: &pb::HeartbeatReply, error: &ClientError) {
        self.summary.refused += 1;
        tracing::warn!(
            client = %self.config.client_id,
            round = order.round,
            exchange = order.exchange,
            "cannot compute the requested statistics: {error}"
        );
        tokio::time::sleep(self.poll).await;
    }

    /// Computes the named statistics off the async threads.
    async fn statistics(
        &mut self,
        own: &ParamSet,
        reference: Option<ParamSet>,
        names: &[String],
    ) -> Result<BTreeMap<String, StatisticTensor>, ClientError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let LocalTraining::BuiltIn(data) = &self.local else {
            return Err(ClientError::Model(
                "a trainer command computes its own statistics".into(),
            ));
        };
        let data = data.clone();
        let own = own.clone();
        let names = names.to_vec();
        let backend = self.config.backend;
        let batch = self.config.train.batch;
        self.health.write("computing statistics");
        tokio::task::spawn_blocking(move || {
            let device = backend.device()?;
            let statistics = fusion_train::requested_statistics(
                &own,
                reference.as_ref(),
                &names,
                &data,
                batch,
                &device,
            );
            statistics.map_err(ClientError::from)
        })
        .await
        .map_err(|e| ClientError::Model(format!("statistics task failed: {e}")))?
    }

    /// Uploads weights and/or statistics for the exchange of `order`,
    /// computed on `examples` examples.
    async fn upload(
        &mut self,
        order: &pb::HeartbeatReply,
        weights: Option<&ParamSet>,
        statistics: &BTreeMap<String, StatisticTensor>,
        examples: u64,
    ) -> Result<Sent, ClientError> {
        let round = order.round;
        let payload = Payload::from_update(weights, statistics)?;
        let mut header = payload.header(round, &self.config.client_id, examples);
        header.exchange = order.exchange;
        header.session = self.secret.clone();
        let chunks = tokio_stream::iter(payload.chunks(header, self.chunk_bytes));
        // The server cuts an upload at the exchange's deadline; past it
        // (and a margin for the reply), the server or the path is gone.
        let limit = Duration::from_millis(order.deadline_ms).max(CALL_TIMEOUT) + CALL_TIMEOUT;
        match within(limit, "Upload", self.rpc.upload(chunks)).await {
            Ok(reply) => {
                self.connected();
                if order.exchange == 0 {
                    self.summary.rounds_merged.push(round);
                }
                tracing::info!(
                    client = %self.config.client_id,
                    round,
                    exchange = order.exchange,
                    accepted = reply.into_inner().accepted,
                    "update merged"
                );
                Ok(Sent::Merged)
            }
            Err(status) => match status.code() {
                Code::Aborted
                | Code::AlreadyExists
                | Code::FailedPrecondition
                | Code::InvalidArgument
                | Code::ResourceExhausted => {
                    // Refused for this exchange only (late, duplicate, not
                    // sampled, or a bad update): carry on with the next.
                    self.summary.refused += 1;
                    tracing::warn!(
                        client = %self.config.client_id,
                        round,
                        exchange = order.exchange,
                        code = ?status.code(),
                        "update refused: {}",
                        LogSafe(status.message())
                    );
                    Ok(Sent::Refused)
                }
                _ => match self.react(status).await? {
                    Reaction::Retry => Ok(Sent::Retry),
                    Reaction::Rejoin => Ok(Sent::Rejoin),
                    Reaction::Fatal(e) => Err(e),
                },
            },
        }
    }

    /// Streams in and verifies the global model of `round` (exchange 0) or
    /// the model a later exchange's statistics are computed with.
    async fn fetch(&mut self, round: u32, exchange: u32) -> Result<ParamSet, Status> {
        let request = pb::FetchRequest {
            client_id: self.config.client_id.clone(),
            round,
            exchange,
            session: self.secret.clone(),
        };
        let mut stream = within(CALL_TIMEOUT, "FetchGlobal", self.rpc.fetch_global(request))
            .await?
            .into_inner();
        let first = within(CHUNK_TIMEOUT, "a model chunk", stream.message())
            .await?
            .ok_or_else(|| Status::data_loss("the server sent an empty model stream"))?;
        // Decoded as it arrives: the client never holds the bytes as well.
        let mut assembler = DecodingAssembler::start(first, u64::MAX)
            .map_err(|e| Status::data_loss(e.to_string()))?;
        while let Some(chunk) = within(CHUNK_TIMEOUT, "a model chunk", stream.message()).await? {
            assembler
                .push(chunk)
                .map_err(|e| Status::data_loss(e.to_string()))?;
        }
        assembler
            .finish()
            .map(|received| received.params)
            .map_err(|e| Status::data_loss(e.to_string()))
    }

    /// Trains from `start` (the global model) or from the client's own
    /// initialisation, off the async threads.
    async fn train(
        &mut self,
        round: u32,
        start: Option<ParamSet>,
        proximal_mu: f64,
    ) -> Result<ParamSet, ClientError> {
        if start.is_none()
            && let Some(own) = &self.config.init_model
        {
            tracing::info!(client = %self.config.client_id, round, "sending this silo's own model");
            return Ok(own.clone());
        }
        let LocalTraining::BuiltIn(data) = &self.local else {
            return Err(ClientError::Model(
                "the built-in trainer has no data with a trainer command".into(),
            ));
        };
        let data = data.clone();
        let config = self.config.clone();
        let from_global = start.is_some();
        self.health.write(&format!("training round {round}"));
        let handle = tokio::task::spawn_blocking(move || -> Result<ParamSet, ClientError> {
            let device = config.backend.device()?;
            let model = match &start {
                Some(global) => Network::from_params(global, &device)
                    .map_err(|e| ClientError::Model(e.to_string()))?,
                None => Network::init(
                    &config.model,
                    data.shape(),
                    data.classes(),
                    config.init_seed,
                    &device,
                ),
            };
            let mut train = config.train.clone();
            train.label = format!("{} round {round}", config.client_id);
            train.seed = config.train.seed ^ u64::from(round);
            if from_global {
                train.proximal_mu = proximal_mu;
            } else {
                train.epochs = config.init_epochs;
            }
            let (trained, summary) = fusion_train::train_network(model, &data, &train, &device)?;
            tracing::info!(
                client = %config.client_id,
                round,
                loss = summary.epoch_loss.last().copied().unwrap_or(f64::NAN),
                seconds = format!("{:.2}", summary.seconds),
                "trained"
            );
            // The protocol carries F32 tensors: BatchNorm's integer
            // counter stays home.
            Ok(trained.to_params().without_passthrough())
        });
        self.while_busy(handle, &format!("training round {round}"))
            .await
            .map_err(|e| ClientError::Model(format!("training task failed: {e}")))?
    }

    /// Waits for `work` (a blocking task), keeping the health file fresh
    /// and the registration alive meanwhile: a client silent past the
    /// server's client timeout is evicted.
    async fn while_busy<T>(
        &mut self,
        mut work: tokio::task::JoinHandle<T>,
        doing: &str,
    ) -> Result<T, tokio::task::JoinError> {
        let mut ticks = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                outcome = &mut work => return outcome,
                _ = ticks.tick() => {
                    self.health.beat(doing);
                    self.keep_alive().await;
                }
            }
        }
    }

    /// A heartbeat whose answer is not needed (the client is busy): it
    /// only keeps the registration alive. Failures are left to the next
    /// call that matters.
    async fn keep_alive(&mut self) {
        let request = pb::HeartbeatRequest {
            client_id: self.config.client_id.clone(),
            session: self.secret.clone(),
        };
        let call = self.rpc.heartbeat(request);
        match tokio::time::timeout(REFRESH, call).await {
            Ok(Ok(reply)) => {
                if reply.into_inner().action == pb::Action::Finished as i32 {
                    self.finished = true;
                }
            }
            Ok(Err(status)) => tracing::debug!(
                client = %self.config.client_id,
                "keep-alive heartbeat failed: {}",
                LogSafe(status.message())
            ),
            Err(_) => {}
        }
    }

    fn connected(&mut self) {
        self.health.beat("connected");
        self.backoff.reset();
        self.unreachable_since = None;
    }

    /// Decides what a failed call means, and waits before a retry.
    async fn react(&mut self, status: Status) -> Result<Reaction, ClientError> {
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => {
                return Ok(Reaction::Fatal(ClientError::Auth(
                    LogSafe(status.message()).to_string(),
                )));
            }
            Code::NotFound => {
                tracing::info!(client = %self.config.client_id, "server does not know this client: {}", LogSafe(status.message()));
                return Ok(Reaction::Rejoin);
            }
            _ => {}
        }
        if let Some(reason) = tls_failure(&status) {
            return Ok(Reaction::Fatal(ClientError::Tls(
                LogSafe(&reason).to_string(),
            )));
        }
        let mut last = describe(&status);
        if self.config.server.starts_with("http://") && looks_like_tls_server(&last) {
            last.push_str(
                " (a TLS server answers plain HTTP/2 like this: use an https:// address and --ca)",
            );
        }
        let since = *self.unreachable_since.get_or_insert_with(Instant::now);
        let left = self.config.give_up_after.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Err(ClientError::Unreachable {
                url: self.config.server.clone(),
                seconds: since.elapsed().as_secs_f64(),
                last: LogSafe(&last).to_string(),
            });
        }
        // Never sleep past the give-up time: the last try comes at it.
        let delay = self.backoff.next_delay().min(left);
        if self.backoff.failures() == 1 {
            self.summary.reconnects += 1;
        }
        tracing::warn!(
            client = %self.config.client_id,
            code = ?status.code(),
            retry_in_ms = delay.as_millis() as u64,
            "server call failed: {}",
            LogSafe(&last)
        );
        tokio::time::sleep(delay).await;
        Ok(Reaction::Retry)
    }
}

/// Longest wait for the answer to a unary call (Join, Heartbeat) or for a
/// download to start.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one chunk of a model being downloaded.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for `call` at most `limit`: a server (or path) that stops
/// answering becomes DEADLINE_EXCEEDED, which is retried with backoff like
/// any transient failure, instead of a client hung for good.
async fn within<T>(
    limit: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!(
            "no answer to {what} within {} s",
            limit.as_secs()
        )))
    })
}

/// The status message with its whole source chain, on one line, each
/// cause once (tonic's messages often repeat their source's text).
fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// Whether a failure over plain HTTP/2 looks like the peer speaks TLS: it
/// answers the HTTP/2 preface with bytes that are not HTTP/2 frames.
fn looks_like_tls_server(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "frame",
        "h2 protocol error",
        "http2 error",
        "connection reset",
    ]
    .iter()
    .any(|sign| lower.contains(sign))
}

/// A TLS handshake failure hidden in a transport error, which no retry
/// can fix: the CA, the certificate or the client certificate is wrong.
fn tls_failure(status: &Status) -> Option<String> {
    let text = describe(status);
    let lower = text.to_ascii_lowercase();
    const SIGNS: [&str; 7] = [
        "certificate",
        "unknownissuer",
        "unknown ca",
        "unknownca",
        "handshake",
        "badsignature",
        "decrypterror",
    ];
    SIGNS.iter().any(|s| lower.contains(s)).then_some(text)
}
