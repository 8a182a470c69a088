//! The gRPC service: thin handlers that check, then hand over to the
//! round state and the aggregator. Nothing a client sends can panic it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fusion_core::Update;
use fusion_net::{DecodingAssembler, PROTOCOL_VERSION, TokenTable, pb};
use tokio::sync::{Notify, Semaphore};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::ServerConfig;
use crate::identity::Credentials;
use crate::input::{check_client_id, check_spec_hash};
use crate::metrics::Metrics;
use crate::rounds::{RoundState, Ticket};

/// State shared by the service handlers and the round loop.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub config: ServerConfig,
    /// Run id, stable across restarts.
    pub run_id: String,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Rounds and clients.
    pub state: Mutex<RoundState>,
    /// Wakes the round loop when something it waits for happens.
    pub wake: Notify,
    /// Bounds uploads received at once (memory).
    pub uploads: Semaphore,
    /// Bearer tokens: shared, and one per client.
    pub token: TokenTable,
    /// The manifest every update must match.
    pub manifest: Vec<pb::TensorMeta>,
    /// Its hash, compared at Join.
    pub spec_hash: String,
    /// Where the first global model came from, for the Join refusal
    /// that tells a client with another model what the run expects.
    pub model_origin: String,
    /// What scores each global model (set once, before the server runs);
    /// unset when nothing does, which the status page says.
    pub scoring: std::sync::OnceLock<String>,
    /// Records of the completed rounds (resumed ones included), for the
    /// status page and the run summary.
    pub records: Mutex<Vec<crate::record::RoundRecord>>,
}

impl Shared {
    /// Locks the state. A poisoned lock (a panic elsewhere) still yields
    /// the data: the state is updated in single steps that leave it valid.
    pub fn lock(&self) -> MutexGuard<'_, RoundState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The round records so far (a poisoned lock still yields them).
    pub fn records(&self) -> Vec<crate::record::RoundRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether client certificates are demanded (and so name client ids).
    fn mutual_tls(&self) -> bool {
        self.config.client_ca.is_some()
    }

    /// Refuses a call naming `client` unless its credentials may act as
    /// that id (a malformed id is refused first, before it is echoed).
    fn authorize(&self, credentials: &Credentials, client: &str) -> Result<(), Status> {
        check_client_id(client).map_err(|status| self.refuse("bad_client_id", status))?;
        credentials
            .check(&self.token, client, self.mutual_tls())
            .map_err(|status| self.refuse("identity", status))
    }

    /// What a failed read of an upload stream means for the peer, after
    /// `received` payload bytes: a message over the size limit is
    /// RESOURCE_EXHAUSTED, one that is not a valid chunk INVALID_ARGUMENT
    /// (resending it cannot help), and a stream that broke CANCELLED.
    fn stream_error(&self, status: Status, received: u64) -> Status {
        use tonic::Code;
        let message = fusion_net::LogSafe(status.message());
        match status.code() {
            Code::OutOfRange | Code::ResourceExhausted => self.refuse(
                "size",
                Status::resource_exhausted(format!("upload chunk refused: {message}")),
            ),
            Code::Internal | Code::InvalidArgument => self.refuse(
                "malformed",
                Status::invalid_argument(format!(
                    "upload is not a valid stream of chunks after {received} bytes: {message}"
                )),
            ),
            _ => self.refuse(
                "broken_stream",
                Status::cancelled(format!("upload broke after {received} bytes: {message}")),
            ),
        }
    }

    fn refuse(&self, reason: &'static str, status: Status) -> Status {
        self.metrics.reject(reason);
        tracing::warn!(
            reason,
            code = ?status.code(),
            "refused: {}",
            fusion_net::LogSafe(status.message())
        );
        status
    }
}

/// The `Federation` service.
#[derive(Clone, Debug)]
pub struct FederationService {
    shared: Arc<Shared>,
}

impl FederationService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// Releases an upload's slot however the handler ends (error, client gone,
/// handler dropped mid-stream), so a broken upload never blocks the round.
struct Settle<'a> {
    shared: &'a Shared,
    ticket: Ticket,
    done: bool,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().settle(&self.ticket, false);
            self.shared.wake.notify_one();
        }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;

/// Size of the messages a model is sent in. Each download in progress
/// holds about two of them (one encoded by tonic, one queued in HTTP/2),
/// so with hundreds of clients fetching at once small messages keep the
/// server's memory flat; on loopback, 64 KiB messages move as fast as
/// 1 MiB ones (docs/benchmarks.md).
const DOWNLOAD_CHUNK_BYTES: usize = 256 << 10;

/// Time a peer is always given for a chunk, whatever the rate.
const CHUNK_GRACE: Duration = Duration::from_secs(10);

/// The pace an upload must keep: by `CHUNK_GRACE + n / min_rate` after
/// it got its permit it must have delivered `n` bytes, so the next chunk
/// (of up to `chunk_bytes`) is due by then. Counted in bytes, not
/// messages, so a peer cannot keep a slot by sending tiny chunks.
struct UploadPace {
    start: tokio::time::Instant,
    chunk_bytes: u64,
    min_rate: u64,
}

impl UploadPace {
    fn new(chunk_bytes: usize, min_rate: u64) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            chunk_bytes: chunk_bytes as u64,
            min_rate,
        }
    }

    /// When the next chunk is due, `received` bytes in.
    fn next(&self, received: u64) -> tokio::time::Instant {
        if self.min_rate == 0 {
            // No rate: only the exchange deadline bounds the wait.
            return self.start + Duration::from_secs(1 << 30);
        }
        let due = received.saturating_add(self.chunk_bytes) as f64 / self.min_rate as f64;
        self.start + CHUNK_GRACE + Duration::from_secs_f64(due.min(1e9))
    }
}

#[tonic::async_trait]
impl pb::federation_server::Federation for FederationService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinReply>, Status> {
        let s = &self.shared;
        let credentials = Credentials::of(&request);
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(s.refuse(
                "protocol",
                Status::failed_precondition(format!(
                    "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
                    r.protocol_version
                )),
            ));
        }
        s.authorize(&credentials, &r.client_id)?;
        check_spec_hash(&r.spec_hash).map_err(|status| s.refuse("bad_join", status))?;
        if r.examples == 0 {
            return Err(s.refuse(
                "bad_join",
                Status::invalid_argument(
                    "examples must be at least 1: it weights the client's updates",
                ),
            ));
        }
        if r.spec_hash != s.spec_hash {
            return Err(s.refuse(
                "spec",
                Status::failed_precondition(format!(
                    "model spec hash {} differs from the server's {} ({}): the client's model must have the same tensors, names and shapes",
                    r.spec_hash, s.spec_hash, s.model_origin
                )),
            ));
        }
        // The weight this client's updates get: its declared count, capped.
        let examples = s
            .config
            .max_examples
            .map_or(r.examples, |cap| r.examples.min(cap));
        if examples < r.examples {
            tracing::warn!(
                client = %r.client_id,
                declared = r.examples,
                used = examples,
                "client declares more examples than max_examples; its updates weigh max_examples"
            );
        }
        let (joined, live) = {
            let mut state = s.lock();
            let now = Instant::now();
            let joined = state
                .clients
                .join(&r.client_id, examples, now)
                .map_err(|status| s.refuse("registrations_full", status))?;
            (joined, state.clients.live_count(now))
        };
        s.metrics.live_clients.set(live as i64);
        let (session, replaced) = (joined.session, joined.replaced);
        if replaced {
            tracing::warn!(
                client = %r.client_id,
                "client joined again while its previous session was live; that session ends \
                 (a restarted client, or two processes under one id)"
            );
        } else {
            tracing::info!(client = %r.client_id, examples = r.examples, "client joined");
        }
        s.wake.notify_one();
        Ok(Response::new(pb::JoinReply {
            protocol_version: PROTOCOL_VERSION,
            run_id: s.run_id.clone(),
            rounds: s.config.rounds,
            chunk_bytes: s.config.chunk_bytes as u32,
            poll_ms: s.config.poll_ms,
            session: session.expose().to_owned(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let s = &self.shared;
        let credentials = Credentials::of(&request);
        let r = request.into_inner();
        s.authorize(&credentials, &r.client_id)?;
        let reply = {
            let mut state = s.lock();
            let now = Instant::now();
            state
                .clients
                .touch(&r.client_id, &r.session, now)
                .map_err(|(status, reason)| s.refuse(reason, status))?;
            state.instruction(&r.client_id, now, &s.config)
        };
        s.wake.notify_one();
        Ok(Response::new(reply))
    }

    type FetchGlobalStream = ChunkStream;

    async fn fetch_global(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let s = &self.shared;
        let credentials = Credentials::of(&request);
        let r = request.into_inner();
        s.authorize(&credentials, &r.client_id)?;
        let global = {
            let mut state = s.lock();
            state
                .clients
                .touch(&r.client_id, &r.session, Instant::now())
                .map_err(|(status, reason)| s.refuse(reason, status))?;
            if r.round != state.round {
                return Err(Status::not_found(format!(
                    "the global model for round {} is not served; the current round is {}",
                    r.round, state.round
                )));
            }
            if r.exchange == 0 {
                state.global.payload.clone()
            } else {
                let served = state
                    .open
                    .as_ref()
                    .filter(|o| o.exchange == r.exchange)
                    .and_then(|o| o.exchange_model.clone());
                served.ok_or_else(|| {
                    Status::not_found(format!(
                        "no model is served for exchange {} of round {}",
                        r.exchange, r.round
                    ))
                })?
            }
        };
        let mut header = global.header(r.round, "server", 0);
        header.exchange = r.exchange;
        s.metrics.bytes_out.inc_by(global.bytes.len() as u64);
        // Each chunk taken by the client keeps it registered, however long
        // a large model takes to download.
        let shared = s.clone();
        let client = r.client_id;
        let chunks = global
            .chunks(header, DOWNLOAD_CHUNK_BYTES)
            .map(move |chunk| {
                shared.lock().clients.seen(&client, Instant::now());
                Ok(chunk)
            });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn upload(
        &self,
        request: Request<Streaming<pb::Chunk>>,
    ) -> Result<Response<pb::UploadReply>, Status> {
        let s = &self.shared;
        let credentials = Credentials::of(&request);
        let mut stream = request.into_inner();
        let first = tokio::time::timeout(CHUNK_GRACE, stream.message())
            .await
            .map_err(|_| {
                s.refuse(
                    "too_slow",
                    Status::deadline_exceeded(format!(
                        "no upload header within {} s",
                        CHUNK_GRACE.as_secs()
                    )),
                )
            })?
            .map_err(|status| s.stream_error(status, 0))?
            .ok_or_else(|| {
                s.refuse("malformed", Status::invalid_argument("empty upload stream"))
            })?;
        let wire = |e: fusion_net::WireError| s.refuse(e.reason(), e.to_status());
        let Some(pb::chunk::Part::Header(header)) = &first.part else {
            return Err(wire(fusion_net::WireError::MissingHeader));
        };
        s.authorize(&credentials, &header.client_id)?;
        // Names, dtypes and the hash are echoed by the checks below.
        fusion_net::check_header_text(header).map_err(wire)?;
        // The round, the exchange and the manifests (weights and
        // statistics) must be what the open exchange asks for before
        // anything is allocated for the payload, so a hostile header cannot
        // make the server reserve more than one update's worth of memory.
        let ticket = s
            .lock()
            .admit(header, &s.manifest)
            .map_err(|(status, reason)| s.refuse(reason, status))?;
        let mut slot = Settle {
            shared: s,
            ticket,
            done: false,
        };
        let deadline = tokio::time::Instant::from_std(slot.ticket.deadline);
        let closed = || {
            s.refuse(
                "deadline",
                Status::aborted(format!(
                    "exchange {} of round {} reached its deadline before this upload was received",
                    slot.ticket.exchange, slot.ticket.round
                )),
            )
        };
        // Receive memory is reserved only under a permit, so at most
        // `max_concurrent_uploads` payloads are held at once. Waiters are
        // served in arrival order, and no wait outlasts the exchange.
        let _permit = tokio::time::timeout_at(deadline, s.uploads.acquire())
            .await
            .map_err(|_| closed())?
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        // Decoded as it arrives: the upload holds one decoded model, never
        // its bytes as well.
        let mut assembler =
            DecodingAssembler::start(first, s.config.max_update_bytes).map_err(wire)?;
        let pace = UploadPace::new(s.config.chunk_bytes, s.config.min_upload_rate);
        loop {
            // Each chunk within its time at the minimum rate, and all of
            // them before the deadline: a trickling peer is cut, and its
            // permit goes to the next upload.
            let due = pace.next(assembler.received());
            let wait = tokio::time::timeout_at(deadline.min(due), stream.message()).await;
            let message = match wait {
                Ok(message) => message,
                Err(_) if tokio::time::Instant::now() >= deadline => return Err(closed()),
                Err(_) => {
                    return Err(s.refuse(
                        "too_slow",
                        Status::deadline_exceeded(format!(
                            "upload too slow: {} bytes in {:.0} s; the server's minimum is {} \
                             bytes/s after the first {} s",
                            assembler.received(),
                            pace.start.elapsed().as_secs_f64(),
                            s.config.min_upload_rate,
                            CHUNK_GRACE.as_secs()
                        )),
                    ));
                }
            };
            match message {
                Ok(Some(chunk)) => {
                    assembler.push(chunk).map_err(wire)?;
                    // A long upload keeps its client registered.
                    s.lock().clients.seen(&slot.ticket.client, Instant::now());
                }
                Ok(None) => break,
                Err(status) => return Err(s.stream_error(status, assembler.received())),
            }
        }
        // Counted whether or not the update is then refused: the bytes
        // came in either way.
        s.metrics.bytes_in.inc_by(assembler.received());
        let fusion_net::ReceivedUpdate {
            params,
            mut statistics,
            ..
        } = assembler.finish().map_err(wire)?;
        let client = slot.ticket.client.clone();
        let examples = slot.ticket.examples;
        if examples.used < examples.claimed {
            // Statistics are sums over the claimed examples; scaled to the
            // capped weight, a client's influence is that weight. The Gram
            // check still sees the claimed count (its bias entry, scaled
            // alike, must equal the weight used).
            let scale = examples.used as f64 / examples.claimed as f64;
            for tensor in statistics.values_mut() {
                tensor.data_mut().iter_mut().for_each(|v| *v *= scale);
            }
            tracing::warn!(
                client = %client,
                claimed = examples.claimed,
                used = examples.used,
                "update claims more examples than the client joined with; weighted by the Join count"
            );
        }
        let update = Update {
            client: Some(client.clone()),
            params: slot.ticket.send_weights.then_some(params),
            weight: examples.used as f64,
            statistics,
        };
        match slot
            .ticket
            .aggregator
            .add(client.clone(), slot.ticket.exchange, examples, update)
            .await
        {
            None => {
                return Err(s.refuse(
                    "late",
                    Status::aborted(format!(
                        "exchange {} of round {} closed before this update could be merged",
                        slot.ticket.exchange, slot.ticket.round
                    )),
                ));
            }
            Some(Err(reason)) => {
                return Err(s.refuse(
                    "unmergeable",
                    Status::invalid_argument(format!("update cannot be merged: {reason}")),
                ));
            }
            Some(Ok(_)) => {}
        }
        let settled = s.lock().settle(&slot.ticket, true);
        slot.done = true;
        let Some(accepted) = settled else {
            return Err(s.refuse(
                "late",
                Status::aborted(format!(
                    "round {} was retried before this update counted; wait to be asked again",
                    slot.ticket.round
                )),
            ));
        };
        s.metrics.accepted.inc();
        s.wake.notify_one();
        tracing::info!(
            %client,
            round = slot.ticket.round,
            exchange = slot.ticket.exchange,
            examples = examples.used,
            "update merged"
        );
        Ok(Response::new(pb::UploadReply {
            round: slot.ticket.round,
            accepted: accepted as u32,
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let s = &self.shared;
        let mut state = s.lock();
        let (sampled, accepted) = state
            .open
            .as_ref()
            .map(|o| (o.sampled.len() as u32, o.accepted.len() as u32))
            .unwrap_or((0, 0));
        Ok(Response::new(pb::StatusReply {
            run_id: s.run_id.clone(),
            round: state.round.min(s.config.rounds),
            rounds: s.config.rounds,
            finished: state.finished(),
            live_clients: state.clients.live_count(Instant::now()) as u32,
            sampled,
            accepted,
            strategy: s.config.strategy.to_string(),
        }))
    }
}
