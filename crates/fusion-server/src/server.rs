//! The server: builds its state (fresh or resumed), serves gRPC, and runs
//! the round loop until the last round is saved.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fusion_core::{Instructions, ParamSet, Refiner, RoundContext, Score, Scorer, Strategy};
use fusion_net::{MAX_MESSAGE_BYTES, Payload, manifest_hash, pb};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tonic::service::interceptor::InterceptedService;

use crate::activity::{ActivityLayer, Connections};
use crate::aggregator::{Aggregator, PendingRefinement};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::incoming;
use crate::initial::InitialModel;
use crate::metrics::Metrics;
use crate::record::{ClientRound, RefinementRecord, RoundRecord};
use crate::registry::Registry;
use crate::rounds::{GlobalModel, OpenRound, RoundState, Step};
use crate::service::{FederationService, Shared};
use crate::state_dir::StateDir;

/// HTTP/2 streams one connection may have open at once: a client needs
/// two or three (a poll, a download, an upload).
const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// Largest block of request headers (metadata) a peer may send.
const MAX_HEADER_LIST_BYTES: u32 = 64 << 10;
/// Time a gRPC connection may go with no request in progress.
const NO_REQUEST: Duration = Duration::from_secs(60);
/// Connections the status page's listener holds at once, and from one
/// address: a few browsers and a Prometheus scraper.
const STATUS_CONNECTIONS: usize = 64;
/// See [`STATUS_CONNECTIONS`].
const STATUS_CONNECTIONS_PER_IP: usize = 16;

/// What a finished run leaves: its id and every round's record.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Round the server started at (1 unless resumed).
    pub started_at_round: u32,
    /// Records of all completed rounds, resumed ones included.
    pub records: Vec<RoundRecord>,
    /// The final global model.
    pub global: ParamSet,
}

/// A configured server, ready to [`Server::run`].
pub struct Server {
    shared: Arc<Shared>,
    state_dir: StateDir,
    strategy: Arc<dyn Strategy>,
    /// Round 1's strategy on a cold start, when it differs.
    cold_start_strategy: Option<Arc<dyn Strategy>>,
    /// The step after aggregation, handed in by the binary.
    refiner: Option<Arc<dyn Refiner>>,
    /// What scores each new global model, handed in by the binary.
    scorer: Option<Arc<dyn Scorer>>,
    started_at_round: u32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.shared.config)
            .field("run_id", &self.shared.run_id)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `config`, builds or reads the first global model and
    /// checks its spec (before any port is bound), and resumes from the
    /// state dir when it holds a completed round. Scoring and refinement
    /// are handed in afterwards ([`Server::with_scorer`],
    /// [`Server::with_refiner`]): this library builds no model of its own
    /// beyond the built-in MLP's initial weights.
    pub fn new(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let initial = InitialModel::from_config(&config)?;
        Self::with_initial_model(config, initial)
    }

    /// A server whose first global model the caller built: the binary
    /// builds a built-in CNN (`--model resnet20x2`) with the model code
    /// this library does not depend on, and hands in its weights and spec.
    /// The spec is checked against the weights here; a resumed run still
    /// starts from its checkpoint, which must hold the same tensors.
    pub fn with_initial_model(
        config: ServerConfig,
        initial: InitialModel,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        initial.spec.resolve(&initial.params).map_err(|e| {
            ServerError::Config(format!("the spec does not fit {}: {e}", initial.origin))
        })?;
        // regmean and layerwise solve each Linear layer of a chain; a CNN
        // would otherwise be accepted and fail every round at its merge.
        let statistics_strategies = std::iter::once(config.strategy)
            .chain(config.cold_start_strategy)
            .filter(|kind| kind.uses_client_statistics());
        for kind in statistics_strategies {
            if let Err(e) = fusion_core::linear_chain(&initial.params) {
                return Err(ServerError::Config(format!(
                    "strategy `{kind}` merges a chain of Linear layers, which {} is not ({e}); use fedavg, align or merge-many",
                    initial.origin
                )));
            }
        }
        let tokens = config.tokens()?;
        let device = config.backend()?.device()?;
        let InitialModel {
            params: initial,
            spec,
            origin,
        } = initial;
        let manifest = Payload::from_params(&initial)?.manifest;
        let state_dir = StateDir::open(&config.state_dir)?;
        let (global, completed, run_id, records) = match state_dir.resume()? {
            Some(r) => {
                let found = Payload::from_params(&r.global)?;
                fusion_net::check_manifest(&manifest, &found.manifest).map_err(|e| {
                    ServerError::State(format!(
                        "{} holds a different model than configured ({e})",
                        state_dir.global_path().display()
                    ))
                })?;
                if r.restored_record {
                    tracing::info!(
                        round = r.round,
                        "restored round {}'s line of rounds.jsonl from the checkpoint (the server had stopped between its two writes)",
                        r.round
                    );
                }
                let recorded: std::collections::BTreeSet<u32> =
                    r.records.iter().map(|x| x.round).collect();
                let missing: Vec<u32> = (1..=r.round).filter(|n| !recorded.contains(n)).collect();
                if !missing.is_empty() {
                    tracing::warn!(
                        "rounds.jsonl has no line for round(s) {missing:?} of the {} the model completes; \
                         they cannot be restored (lost before this version kept records in the checkpoint, or removed by hand)",
                        r.round
                    );
                }
                tracing::info!(round = r.round, run_id = %r.run_id, "resuming from {}", state_dir.path().display());
                (r.global, r.round, r.run_id, r.records)
            }
            None => (initial, 0, new_run_id(), Vec::new()),
        };
        let strategy = config
            .strategy_config(config.strategy, device.clone(), spec.clone())
            .build();
        let cold_start_strategy = config
            .cold_start_strategy
            .map(|kind| config.strategy_config(kind, device, spec.clone()).build());
        let payload = Payload::from_params(&global)?;
        let spec_hash = manifest_hash(&manifest);
        let rounds = config.rounds;
        let metrics = Arc::new(Metrics::new());
        metrics.round.set(i64::from(completed + 1));
        let shared = Arc::new(Shared {
            token: tokens,
            uploads: Semaphore::new(config.max_concurrent_uploads),
            run_id,
            metrics,
            state: Mutex::new(RoundState::new(
                completed + 1,
                Arc::new(GlobalModel {
                    params: Arc::new(global),
                    payload,
                }),
                rounds,
                Registry::new(config.max_clients, config.client_timeout()),
            )),
            wake: Notify::new(),
            manifest,
            spec_hash,
            model_origin: origin,
            scoring: std::sync::OnceLock::new(),
            records: Mutex::new(records),
            config,
        });
        Ok(Self {
            shared,
            state_dir,
            strategy,
            cold_start_strategy,
            refiner: None,
            scorer: None,
            started_at_round: completed + 1,
        })
    }

    /// Scores every new global model with `scorer` (the built-in model on
    /// test data: `fusion_train::TestSetScorer`; the user's evaluator:
    /// `fusion_external::CommandScorer`). The binary builds it, so this
    /// library needs neither models nor data. A failed scoring is logged
    /// and recorded; the round is kept, unscored.
    pub fn with_scorer(mut self, scorer: Arc<dyn Scorer>) -> Self {
        let _ = self.shared.scoring.set(scorer.describe());
        self.scorer = Some(scorer);
        self
    }

    /// The current global model: the first one before any round completes,
    /// so a binary can check its scorer against it before binding.
    pub fn global(&self) -> Arc<ParamSet> {
        self.shared.lock().global.params.clone()
    }

    /// Adds a step after every round's aggregation (FedDF distillation:
    /// `fusion_train::Distiller`). The binary builds it, so this library
    /// needs no trainer. It sees each client model the strategy accepted
    /// in exchange 0, then refines the merge; the round saves the refined
    /// model, or the merge when the step fails, and records both scores.
    pub fn with_refiner(mut self, refiner: Arc<dyn Refiner>) -> Self {
        self.refiner = Some(refiner);
        self
    }

    /// The validated settings.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The counters, for tests and embedding.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Serves on `listener` until the last round is saved (then returns the
    /// summary) or `shutdown` resolves (then returns what was completed; a
    /// restart resumes from there).
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<RunSummary, ServerError> {
        let config = &self.shared.config;
        if self.scorer.is_none() && (config.test_data.is_some() || config.evaluate_cmd.is_some()) {
            return Err(ServerError::Config(
                "test_data or evaluate_cmd is set but no scorer was handed in (Server::with_scorer; the fusion-server binary builds it)".into(),
            ));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let address = listener.local_addr().ok();
        // Every wait on a peer is bounded: the TLS handshake, the first
        // bytes, silence and idling without requests (crate::incoming,
        // crate::activity), keepalive pings, streams per connection and
        // header size (HTTP/2), and uploads (service).
        let connections = Arc::new(Connections::default());
        let mut builder = tonic::transport::Server::builder()
            .layer(ActivityLayer(connections.clone()))
            .http2_keepalive_interval(Some(incoming::KEEPALIVE))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            // Fixed windows, not adaptive ones: a window grown by an
            // earlier upload is what a waiting upload may fill, so
            // adaptive windows made a waiting client cost megabytes.
            .initial_stream_window_size(config.stream_window)
            .initial_connection_window_size(config.stream_window);
        match config.tls() {
            Some(tls) => {
                builder = builder.tls_config(tls.config()?.timeout(incoming::FIRST_BYTES))?;
                tracing::info!(
                    mutual = config.client_ca.is_some(),
                    "TLS on, serving https on {address:?}"
                );
            }
            // On loopback nothing crosses a network (`fusion simulate`,
            // tests): a note, not an alarm.
            None if address.is_some_and(|a| a.ip().is_loopback()) => tracing::info!(
                "TLS is off; serving on loopback {address:?} only, so nothing crosses a network"
            ),
            None => tracing::warn!(
                "TLS IS OFF: model weights and tokens cross the network in clear text. \
                 Use --tls-cert/--tls-key (and --client-ca for mutual TLS); `fusion certs` makes dev certificates."
            ),
        }
        let metrics = self.shared.metrics.clone();
        let token = self.shared.token.clone();
        let service = InterceptedService::new(
            pb::federation_server::FederationServer::new(FederationService::new(
                self.shared.clone(),
            ))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
            move |mut request: tonic::Request<()>| {
                let caller = token
                    .authenticate(request.metadata())
                    .inspect_err(|_| metrics.reject("auth"))?;
                // The handlers compare it with the client id the call claims.
                request.extensions_mut().insert(caller);
                Ok(request)
            },
        );
        // A connection with no request for a minute (or two polls, when
        // clients poll slowly) is a peer only answering pings: closed.
        let poll = Duration::from_millis(u64::from(config.poll_ms));
        let no_request = NO_REQUEST.max(poll * 2);
        let incoming = incoming::guarded(
            listener,
            incoming::Limits::new(config.max_connections, config.max_connections_per_ip)
                .with_requests(connections.clone(), no_request),
            self.shared.metrics.clone(),
        );
        let grpc = tokio::spawn(
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stopped),
        );
        let metrics_task = match config.metrics_listen {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Io {
                        what: "metrics address",
                        path: addr.to_string().into(),
                        source,
                    })?;
                tracing::info!(
                    "status page on http://{0}/, metrics on http://{0}/metrics",
                    l.local_addr().unwrap_or(addr)
                );
                let mut rx = stop_rx.clone();
                let l = incoming::GuardedListener::new(
                    l,
                    incoming::Limits::new(STATUS_CONNECTIONS, STATUS_CONNECTIONS_PER_IP),
                    self.shared.metrics.clone(),
                )
                .map_err(|source| ServerError::Io {
                    what: "metrics address",
                    path: addr.to_string().into(),
                    source,
                })?;
                Some(tokio::spawn(crate::status_page::serve(
                    self.shared.clone(),
                    l,
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                )))
            }
            None => None,
        };
        tracing::info!(
            strategy = %config.strategy,
            rounds = config.rounds,
            min_clients = config.min_clients,
            "fusion-server listening on {address:?}, run {}",
            self.shared.run_id
        );
        let outcome = tokio::select! {
            r = self.round_loop() => r,
            () = shutdown => {
                tracing::info!("shutdown requested; completed rounds are saved");
                Ok(())
            }
        };
        let _ = stop_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(5), grpc)
            .await
            .is_err()
        {
            tracing::warn!("gRPC connections did not drain within 5 s");
        }
        if let Some(task) = metrics_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        outcome?;
        let global = self.shared.lock().global.params.as_ref().clone();
        Ok(RunSummary {
            run_id: self.shared.run_id.clone(),
            started_at_round: self.started_at_round,
            records: self.shared.records(),
            global,
        })
    }

    /// Opens, closes and retries rounds until the run is over.
    async fn round_loop(&mut self) -> Result<(), ServerError> {
        let shared = self.shared.clone();
        let config = &shared.config;
        loop {
            let now = Instant::now();
            let step = shared.lock().step(now, config);
            match step {
                Step::Exit if config.serve_final => {
                    // Orchestrators restart a process that exits; this one
                    // stays up, answering FINISHED and serving the final
                    // model, until it is told to stop.
                    tracing::info!(
                        "run complete; serving the final model until stopped (serve_final)"
                    );
                    std::future::pending::<()>().await;
                }
                Step::Exit => return Ok(()),
                Step::Wait => {
                    let live = shared.lock().clients.live_count(now);
                    shared.metrics.live_clients.set(live as i64);
                    tokio::select! {
                        () = shared.wake.notified() => {}
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                Step::Open(sampled) => self.open_round(sampled)?,
                Step::Retry { accepted } => {
                    let round = shared.lock().round;
                    shared.metrics.retries.inc();
                    tracing::warn!(
                        round,
                        accepted,
                        needed = config.min_updates(),
                        "too few updates (the deadline passed, or every client the round waited for went silent); retrying the round"
                    );
                }
                Step::Close(aggregator) => self.end_exchange(aggregator).await?,
            }
        }
    }

    fn open_round(&self, sampled: Vec<String>) -> Result<(), ServerError> {
        let config = &self.shared.config;
        let (round, global) = {
            let state = self.shared.lock();
            (state.round, state.global.params.clone())
        };
        let context = RoundContext {
            global: Some(global),
            from_own_init: config.from_own_init(round),
        };
        let strategy = match &self.cold_start_strategy {
            Some(s) if context.from_own_init => s.clone(),
            _ => self.strategy.clone(),
        };
        let (aggregator, instructions) = Aggregator::spawn(strategy, self.refiner.clone(), context)
            .map_err(|e| {
                ServerError::Model(format!(
                    "strategy `{}` cannot begin round {round}: {e}",
                    config.strategy
                ))
            })?;
        let mut state = self.shared.lock();
        state.attempts += 1;
        let attempt = state.attempts;
        state.round_started.get_or_insert_with(Instant::now);
        tracing::info!(
            round = state.round,
            attempt,
            clients = ?sampled,
            "round open"
        );
        let sampled: std::collections::BTreeSet<String> = sampled.into_iter().collect();
        state.open = Some(OpenRound {
            attempt,
            expected: sampled.clone(),
            sampled,
            exchange: 0,
            statistics: statistics_manifest(&instructions),
            exchange_model: None,
            instructions,
            deadline: Instant::now() + config.round_deadline(),
            accepted: Default::default(),
            in_flight: Default::default(),
            aggregator,
            closing: false,
        });
        Ok(())
    }

    /// Ends the open exchange: opens the strategy's next exchange for the
    /// clients this one accepted, or closes the round.
    async fn end_exchange(&mut self, aggregator: Aggregator) -> Result<(), ServerError> {
        let next = match aggregator.advance().await {
            Some(Ok(next)) => next,
            failed => {
                let why = match failed {
                    Some(Err(e)) => e,
                    _ => "the aggregation thread stopped".into(),
                };
                let mut state = self.shared.lock();
                tracing::error!(
                    round = state.round,
                    "merge failed ({why}); retrying the round"
                );
                self.shared.metrics.retries.inc();
                state.open = None;
                return Ok(());
            }
        };
        let Some(instructions) = next else {
            return self.close_round(aggregator).await;
        };
        let exchange_model = match &instructions.model {
            Some(model) => Some(Payload::from_params(model)?),
            None => None,
        };
        let config = &self.shared.config;
        let mut state = self.shared.lock();
        let round = state.round;
        let Some(open) = state.open.as_mut() else {
            return Ok(());
        };
        let clients = std::mem::take(&mut open.accepted);
        tracing::info!(
            round,
            exchange = instructions.exchange,
            clients = clients.len(),
            statistics = ?instructions.statistics.iter().map(|r| r.name()).collect::<Vec<_>>(),
            "exchange open"
        );
        open.exchange = instructions.exchange;
        open.statistics = statistics_manifest(&instructions);
        open.exchange_model = exchange_model;
        open.instructions = instructions;
        open.expected = clients;
        open.deadline = Instant::now() + config.round_deadline();
        open.closing = false;
        drop(state);
        self.shared.wake.notify_waiters();
        Ok(())
    }

    /// Scores `params`, the global model after `round`, when a scorer is
    /// configured. A failure is logged and returned as the record's
    /// `score_error`: an evaluator's bug never stops the run.
    async fn score(&self, round: u32, params: &ParamSet) -> Scored {
        let Some(scorer) = self.scorer.clone() else {
            return Scored::default();
        };
        let params = params.clone();
        let outcome = tokio::task::spawn_blocking(move || scorer.score(round, &params))
            .await
            .map_err(|e| format!("the scoring task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match outcome {
            Ok(score) => Scored { score, error: None },
            Err(e) => {
                tracing::error!(round, "cannot score the global model: {e}");
                Scored {
                    score: Score::default(),
                    error: Some(e),
                }
            }
        }
    }

    async fn close_round(&mut self, aggregator: Aggregator) -> Result<(), ServerError> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let (round, attempts, started) = {
            let s = shared.lock();
            (
                s.round,
                s.attempts,
                s.round_started.unwrap_or_else(Instant::now),
            )
        };
        let aggregated = match aggregator.finish().await {
            Some(Ok(a)) => a,
            failed => {
                let why = match failed {
                    Some(Err(e)) => e,
                    _ => "the aggregation thread stopped".into(),
                };
                tracing::error!(round, "merge failed ({why}); retrying the round");
                shared.metrics.retries.inc();
                shared.lock().open = None;
                return Ok(());
            }
        };
        let merged = aggregated.outcome.merged;
        let mut scored = self.score(round, &merged).await;
        let (merged, refinement) = match aggregated.refinement {
            Some(pending) => {
                let (model, mut record) = refine(pending, merged, round).await;
                record.merged_test_loss = scored.score.loss;
                record.merged_test_acc = scored.score.accuracy;
                if record.error.is_none() {
                    scored = self.score(round, &model).await;
                }
                (model, Some(record))
            }
            None => (merged, None),
        };
        let payload = Payload::from_params(&merged)?;
        let merged = Arc::new(merged);
        let updates: Vec<ClientRound> = aggregated
            .clients
            .iter()
            .zip(&aggregated.outcome.reports)
            .map(|((client, examples), report)| ClientRound {
                client: client.clone(),
                examples: examples.used,
                claimed_examples: Some(examples.claimed),
                moved: report
                    .moved
                    .iter()
                    .map(|m| (m.name.clone(), m.fraction()))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect();
        let fractions: Vec<f64> = updates
            .iter()
            .flat_map(|u| u.moved.values().copied())
            .collect();
        let record = RoundRecord {
            round,
            strategy: config.strategy_for(round).to_string(),
            attempts,
            clients: updates.len() as u32,
            examples: updates
                .iter()
                .fold(0u64, |sum, u| sum.saturating_add(u.examples)),
            seconds: started.elapsed().as_secs_f64(),
            align_seconds: aggregated.seconds,
            test_loss: scored.score.loss,
            test_acc: scored.score.accuracy,
            metrics: scored.score.metrics,
            score_error: scored.error,
            moved_fraction: if fractions.is_empty() {
                0.0
            } else {
                fractions.iter().sum::<f64>() / fractions.len() as f64
            },
            global_sha256: payload.sha256.clone(),
            updates,
            refinement,
        };
        {
            let state_dir = self.state_dir.clone();
            let run_id = shared.run_id.clone();
            let model = merged.clone(); // an Arc: the checkpoint copies nothing
            let rec = record.clone();
            tokio::task::spawn_blocking(move || state_dir.commit(&run_id, &model, &rec))
                .await
                .map_err(|e| ServerError::State(format!("checkpoint task failed: {e}")))??;
        }
        shared.metrics.rounds.inc();
        shared.metrics.align_seconds.observe(record.align_seconds);
        shared.metrics.round_seconds.observe(record.seconds);
        tracing::info!(
            round,
            clients = record.clients,
            seconds = format!("{:.2}", record.seconds),
            align_seconds = format!("{:.3}", record.align_seconds),
            moved = format!("{:.3}", record.moved_fraction),
            test_acc = %record
                .test_acc
                .map_or_else(|| "none".to_owned(), |a| format!("{a:.4}")),
            "round complete"
        );
        shared
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        let mut state = shared.lock();
        state.global = Arc::new(GlobalModel {
            params: merged,
            payload,
        });
        state.open = None;
        state.round = round + 1;
        state.attempts = 0;
        state.round_started = None;
        shared.metrics.round.set(i64::from(round + 1));
        if round >= config.rounds {
            state.finished_at = Some(Instant::now());
            tracing::info!("all {} rounds complete", config.rounds);
        }
        Ok(())
    }
}

/// Runs the round's refinement on `merged`, off the async threads. A
/// failure keeps `merged` (the round is not lost) and is recorded.
async fn refine(
    pending: PendingRefinement,
    merged: ParamSet,
    round: u32,
) -> (ParamSet, RefinementRecord) {
    let started = Instant::now();
    let mut record = RefinementRecord {
        step: pending.step.clone(),
        observed: 0,
        seconds: 0.0,
        merged_test_loss: None,
        merged_test_acc: None,
        error: None,
    };
    let outcome = match pending.round {
        Err(e) => Err(e),
        Ok(refinement) => {
            record.observed = refinement.observed() as u32;
            let input = merged.clone();
            tokio::task::spawn_blocking(move || refinement.refine(&input))
                .await
                .map_err(|e| format!("the refinement task failed: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()))
        }
    };
    record.seconds = pending.observe_seconds + started.elapsed().as_secs_f64();
    match outcome {
        Ok(refined) => {
            tracing::info!(
                round,
                step = %record.step,
                seconds = format!("{:.2}", record.seconds),
                "merged model refined"
            );
            (refined, record)
        }
        Err(e) => {
            tracing::error!(round, step = %record.step, "refinement failed ({e}); saving the merge unrefined");
            record.error = Some(e);
            (merged, record)
        }
    }
}

/// A round's score, or why there is none.
#[derive(Default)]
struct Scored {
    score: Score,
    error: Option<String>,
}

/// The statistics manifest an exchange's updates must carry: what the
/// instructions ask for, sorted by name as clients encode them.
fn statistics_manifest(instructions: &Instructions) -> Vec<pb::TensorMeta> {
    let mut metas: Vec<pb::TensorMeta> = instructions
        .statistics
        .iter()
        .map(|r| pb::TensorMeta {
            name: r.name(),
            dtype: fusion_net::F64.to_owned(),
            shape: r.shape.iter().map(|&d| d as u64).collect(),
        })
        .collect();
    metas.sort_by(|a, b| a.name.cmp(&b.name));
    metas
}

fn new_run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
