//! `fusion bench federation`: whole rounds of a real `fusion-server`
//! process with N clients that upload without training, over loopback
//! gRPC. Reports the median round time, its overhead over moving the same
//! bytes by raw TCP in the same run, the throughput, and the server's
//! peak resident memory (its own process, so the clients' memory is not
//! counted).
//!
//! The clients do what a real client does in a round except train: poll,
//! download the global model (verifying its hash), upload a model. They
//! run in this process, on the same cores as the server, as Flower's
//! SuperNodes did in the figures this is compared with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fusion_core::StrategyKind;
use fusion_models::MlpArchitecture;
use fusion_net::{Assembler, BearerToken, ClientTls, FederationClient, Payload, pb};
use serde::Serialize;

use super::bench_net::{process_mb, tcp_copy, wait_for_train};
use super::report::print_json;
use crate::cli::BenchFederationArgs;

/// Longest wait for a round to open, or for the server's records.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// One row: a model size, a client count and a strategy.
#[derive(Debug, Serialize)]
struct FederationRow {
    model: String,
    model_mb: f64,
    clients: usize,
    strategy: String,
    rounds: u32,
    /// Median of the server's round times (round opened to model saved).
    round_s: f64,
    /// Seconds to move one round's bytes (N downloads and N uploads) over
    /// plain loopback TCP, best of three, in the same run.
    tcp_s: f64,
    /// `round_s - tcp_s`.
    overhead_s: f64,
    /// One round's bytes over `round_s`.
    mb_per_s: f64,
    /// Median seconds the server spent inside the strategy per round.
    strategy_s: f64,
    /// The server process's peak resident set (`VmHWM`).
    server_peak_mb: Option<f64>,
}

/// Runs `fusion bench federation`.
pub fn run(args: BenchFederationArgs) -> Result<()> {
    if args.clients.contains(&0) {
        bail!("--clients values must be at least 1");
    }
    if !(args.perturb.is_finite() && args.perturb >= 0.0) {
        bail!("--perturb must be a finite number, at least 0");
    }
    let server_bin = server_binary(args.server_bin.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut rows = Vec::new();
    for model in &args.model {
        let initial = Payload::from_params(&fusion_core::synthetic::random_mlp(
            &model.widths(784, 10),
            1,
        ))?;
        for &clients in &args.clients {
            // Moving one round's bytes: N downloads and N uploads. Best of
            // three; an attempt that fails (hundreds of new loopback
            // connections can meet a TIME_WAIT left by an earlier row and
            // be reset) is retried, up to three failures.
            let (mut tcp, mut failures) = (f64::INFINITY, 0);
            let mut done = 0;
            while done < 3 {
                match runtime.block_on(tcp_copy(&initial, 2 * clients)) {
                    Ok(seconds) => {
                        tcp = tcp.min(seconds);
                        done += 1;
                    }
                    Err(e) if failures < 3 => {
                        failures += 1;
                        tracing::debug!("raw TCP baseline attempt failed, retrying: {e:#}");
                    }
                    Err(e) => {
                        return Err(e.context(format!("raw TCP baseline, {} sockets", 2 * clients)));
                    }
                }
            }
            for &strategy in &args.strategy {
                let run = Run {
                    args: &args,
                    model,
                    clients,
                    strategy,
                    spec_hash: fusion_net::manifest_hash(&initial.manifest),
                };
                let (times, strategy_times, peak) = runtime
                    .block_on(run.measure(&server_bin))
                    .with_context(|| format!("{model}, {clients} clients, {strategy}"))?;
                let round_s = median(&times);
                let model_mb = initial.bytes.len() as f64 / 1e6;
                rows.push(FederationRow {
                    model: model.to_string(),
                    model_mb,
                    clients,
                    strategy: strategy.to_string(),
                    rounds: args.rounds,
                    round_s,
                    tcp_s: tcp,
                    overhead_s: round_s - tcp,
                    mb_per_s: 2.0 * model_mb * clients as f64 / round_s,
                    strategy_s: median(&strategy_times),
                    server_peak_mb: peak,
                });
                if !args.json {
                    print_row(rows.last().expect("just pushed"), rows.len() == 1);
                }
            }
        }
    }
    if args.json {
        return print_json(&serde_json::to_value(&rows)?);
    }
    println!(
        "round: the server's time from opening a round to saving its model, median of {}; \
         TCP: the same bytes (N downloads + N uploads) over plain loopback sockets; \
         uploads {}",
        args.rounds,
        if args.perturb > 0.0 {
            format!(
                "a copy of the initial model with {} relative noise",
                args.perturb
            )
        } else {
            "the global model unchanged".to_owned()
        }
    );
    Ok(())
}

fn print_row(r: &FederationRow, header: bool) {
    if header {
        println!(
            "| model | MB | clients | strategy | round s | TCP s | overhead s | MB/s | strategy s | server peak MB |"
        );
        println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    }
    println!(
        "| {} | {:.1} | {} | {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.3} | {} |",
        r.model,
        r.model_mb,
        r.clients,
        r.strategy,
        r.round_s,
        r.tcp_s,
        r.overhead_s,
        r.mb_per_s,
        r.strategy_s,
        r.server_peak_mb
            .map_or_else(|| "n/a".to_owned(), |m| format!("{m:.0}"))
    );
}

/// The `fusion-server` binary: the one given, or the one beside this one.
fn server_binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find this binary's path")?
            .with_file_name(format!("fusion-server{}", std::env::consts::EXE_SUFFIX)),
    };
    if !path.is_file() {
        bail!(
            "no fusion-server binary at '{}': build it with `cargo build --release -p fusion-server`, \
             or name one with --server-bin",
            path.display()
        );
    }
    Ok(path)
}

/// One row's run: a server process and its clients.
struct Run<'a> {
    args: &'a BenchFederationArgs,
    model: &'a MlpArchitecture,
    clients: usize,
    strategy: StrategyKind,
    spec_hash: String,
}

/// The server's state directory, removed however the run ends.
struct StateDir(PathBuf);

impl StateDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(name.replace([':', '/'], "_"));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the server process however the run ends.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Run<'_> {
    /// Round times and strategy times (seconds, from the server's round
    /// records) and the server's peak memory.
    async fn measure(&self, server_bin: &Path) -> Result<(Vec<f64>, Vec<f64>, Option<f64>)> {
        let state = StateDir::new(&format!(
            "fusion-bench-federation-{}-{}-{}-{}",
            std::process::id(),
            self.model,
            self.clients,
            self.strategy
        ));
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(server_bin);
        if let Some(window) = self.args.stream_window {
            command.args(["--stream-window", &window.to_string()]);
        }
        let mut server = ServerProcess(
            command
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--model", &self.model.to_string()])
                .args(["--rounds", &self.args.rounds.to_string()])
                .args(["--min-clients", &self.clients.to_string()])
                .args(["--strategy", &self.strategy.to_string()])
                .args([
                    "--max-concurrent-uploads",
                    &self.args.max_concurrent_uploads.to_string(),
                ])
                // Every client connects from 127.0.0.1.
                .args(["--max-connections-per-ip", &(self.clients + 16).to_string()])
                .args([
                    "--max-connections",
                    &(self.clients + 16).max(512).to_string(),
                ])
                .args(["--max-update-bytes", &(4u64 << 30).to_string()])
                .args(["--poll-ms", "5", "--finish-grace", "0", "--serve-final"])
                .arg("--state-dir")
                .arg(state.path())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start '{}'", server_bin.display()))?,
        );
        let pid = server.0.id();
        let mut tasks = Vec::with_capacity(self.clients);
        for i in 0..self.clients {
            let client = BenchClient {
                id: format!("bench-{i}"),
                url: url.clone(),
                spec_hash: self.spec_hash.clone(),
                rounds: self.args.rounds,
                perturb: (self.args.perturb > 0.0).then_some((self.args.perturb, i as u64)),
            };
            tasks.push(tokio::spawn(client.run()));
        }
        for task in tasks {
            if let Some(status) = server.0.try_wait()? {
                bail!("fusion-server exited early: {status}");
            }
            task.await.context("a client task panicked")??;
        }
        let records = wait_for_records(state.path(), self.args.rounds, &mut server.0).await?;
        let peak = process_mb(pid, "VmHWM");
        let times = records.iter().map(|r| r.0).collect();
        let strategy = records.iter().map(|r| r.1).collect();
        Ok((times, strategy, peak))
    }
}

/// A port free on loopback now (the server binds it a moment later).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind loopback")?;
    Ok(listener.local_addr()?.port())
}

/// The `(seconds, align_seconds)` of each round in the server's
/// `rounds.jsonl`, once all `rounds` are there.
async fn wait_for_records(
    state: &Path,
    rounds: u32,
    server: &mut Child,
) -> Result<Vec<(f64, f64)>> {
    let path = state.join("rounds.jsonl");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() >= rounds as usize {
            return lines
                .iter()
                .map(|line| {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .with_context(|| format!("bad line in '{}'", path.display()))?;
                    Ok((
                        v["seconds"].as_f64().unwrap_or(f64::NAN),
                        v["align_seconds"].as_f64().unwrap_or(f64::NAN),
                    ))
                })
                .collect();
        }
        if let Some(status) = server.try_wait()? {
            bail!("fusion-server exited before saving {rounds} rounds: {status}");
        }
        if start.elapsed() > WAIT_LIMIT {
            bail!(
                "{} has {} of {rounds} rounds after 600 s",
                path.display(),
                lines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that joins and, each round, downloads the global model and
/// uploads a model without training.
struct BenchClient {
    id: String,
    url: String,
    spec_hash: String,
    rounds: u32,
    /// Relative noise and seed of the client's own model, or `None` to
    /// upload the global model it downloaded.
    perturb: Option<(f32, u64)>,
}

impl BenchClient {
    async fn run(self) -> Result<()> {
        let mut rpc = connect_when_up(&self.url).await?;
        let joined = rpc
            .join(pb::JoinRequest {
                protocol_version: fusion_net::PROTOCOL_VERSION,
                client_id: self.id.clone(),
                examples: 1,
                spec_hash: self.spec_hash.clone(),
            })
            .await
            .with_context(|| format!("{}: join", self.id))?
            .into_inner();
        let chunk_bytes = (joined.chunk_bytes as usize).max(1);
        let mut own: Option<Arc<Payload>> = None;
        for round in 1..=self.rounds {
            // As a real client: poll at the pace the server asks for.
            let poll = Duration::from_millis(u64::from(joined.poll_ms.max(1)));
            wait_for_train(
                &mut rpc,
                &self.id,
                &joined.session,
                round,
                (poll, WAIT_LIMIT),
            )
            .await?;
            let global = self.download(&mut rpc, &joined.session, round).await?;
            let upload = match (self.perturb, &own) {
                (None, _) => Arc::new(global),
                (Some(_), Some(p)) => p.clone(),
                (Some((noise, seed)), None) => {
                    let params = global.to_params()?;
                    let p = Arc::new(Payload::from_params(&fusion_core::synthetic::perturb(
                        &params, noise, seed,
                    ))?);
                    own = Some(p.clone());
                    p
                }
            };
            let mut header = upload.header(round, &self.id, 1);
            header.session = joined.session.clone();
            rpc.upload(tokio_stream::iter(upload.chunks(header, chunk_bytes)))
                .await
                .with_context(|| format!("{}: upload of round {round}", self.id))?;
        }
        Ok(())
    }

    async fn download(
        &self,
        rpc: &mut FederationClient,
        session: &str,
        round: u32,
    ) -> Result<Payload> {
        let mut stream = rpc
            .fetch_global(pb::FetchRequest {
                client_id: self.id.clone(),
                round,
                exchange: 0,
                session: session.to_owned(),
            })
            .await
            .with_context(|| format!("{}: fetch of round {round}", self.id))?
            .into_inner();
        let first = stream
            .message()
            .await?
            .with_context(|| format!("{}: empty download", self.id))?;
        let mut assembler = Assembler::start(first, u64::MAX)?;
        while let Some(chunk) = stream.message().await? {
            assembler.push(chunk)?;
        }
        Ok(assembler.finish()?.payload)
    }
}

/// Connects once the server listens (it was just started).
async fn connect_when_up(url: &str) -> Result<FederationClient> {
    let start = Instant::now();
    loop {
        let mut rpc = fusion_net::connect(url, &ClientTls::default(), BearerToken::default())?;
        match rpc.status(pb::StatusRequest {}).await {
            Ok(_) => return Ok(rpc),
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                bail!("the server at {url} did not answer within 60 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
