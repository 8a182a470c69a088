//! `fusion bench ingest`: how fast the server takes in updates from many
//! clients at once, against the raw loopback TCP bandwidth measured in the
//! same run, and how much memory the ingest costs (it should not grow with
//! the number of clients: updates are folded into a running sum).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fusion_net::{BearerToken, ClientTls, FederationClient, Payload, pb};
use fusion_server::{Server, ServerConfig, StrategyKind};
use serde::Serialize;

use fusion_cli::cli::BenchIngestArgs;
use fusion_cli::commands::bench_net::{best_of, reset_peak, rss_mb, tcp_copy, wait_for_train};
use fusion_cli::commands::report::print_json;

#[derive(Debug, Serialize)]
struct IngestRow {
    clients: usize,
    model_bytes: usize,
    tcp_seconds: f64,
    grpc_seconds: f64,
    tcp_mb_per_s: f64,
    grpc_mb_per_s: f64,
    ratio_to_tcp: f64,
    peak_growth_mb: Option<f64>,
}

/// Runs `fusion bench ingest`.
pub fn run(args: BenchIngestArgs) -> Result<()> {
    if args.clients.contains(&0) {
        bail!("--clients values must be at least 1");
    }
    let widths = args.model.widths(784, 10);
    let model = fusion_core::synthetic::random_mlp(&widths, 1);
    let payload = Payload::from_params(&model)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let tcp = runtime.block_on(best_of(args.repeats, || tcp_copy(&payload, clients)))?;
        let base_rss = rss_mb("VmRSS");
        reset_peak();
        let grpc = runtime.block_on(grpc_ingest(&args, &payload, clients))?;
        let peak = rss_mb("VmHWM").zip(base_rss).map(|(p, b)| (p - b).max(0.0));
        let total = (payload.bytes.len() * clients) as f64 / 1e6;
        rows.push(IngestRow {
            clients,
            model_bytes: payload.bytes.len(),
            tcp_seconds: tcp,
            grpc_seconds: grpc,
            tcp_mb_per_s: total / tcp,
            grpc_mb_per_s: total / grpc,
            ratio_to_tcp: tcp / grpc,
            peak_growth_mb: peak,
        });
    }
    if args.json {
        return print_json(&serde_json::to_value(&rows)?);
    }
    println!(
        "model {} ({:.1} MB per update), best of {}, max {} uploads received at once",
        args.model,
        payload.bytes.len() as f64 / 1e6,
        args.repeats,
        args.max_concurrent_uploads
    );
    println!(
        "{:>7} {:>12} {:>13} {:>14} {:>17}",
        "clients", "TCP MB/s", "gRPC MB/s", "gRPC / TCP", "peak growth MB"
    );
    for r in &rows {
        println!(
            "{:>7} {:>12.0} {:>13.0} {:>14.2} {:>17}",
            r.clients,
            r.tcp_mb_per_s,
            r.grpc_mb_per_s,
            r.ratio_to_tcp,
            r.peak_growth_mb.map_or("n/a".into(), |m| format!("{m:.0}"))
        );
    }
    println!(
        "gRPC: join, header + SHA-256 + manifest and NaN checks, fold into the running sum (fedavg);\n\
         TCP: the same bytes written to plain loopback sockets and discarded by the reader."
    );
    Ok(())
}

/// Best seconds over `repeats` rounds for `clients` concurrent uploads to
/// an in-process server, from the first byte to the last acceptance.
async fn grpc_ingest(args: &BenchIngestArgs, payload: &Payload, clients: usize) -> Result<f64> {
    let state = std::env::temp_dir().join(format!("fusion-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let rounds = u32::try_from(args.repeats).unwrap_or(u32::MAX);
    let config = ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        rounds,
        min_clients: clients as u32,
        strategy: StrategyKind::Fedavg,
        model: args.model.to_string(),
        state_dir: state.clone(),
        poll_ms: 5,
        finish_grace_secs: 0.0,
        max_concurrent_uploads: args.max_concurrent_uploads,
        // Every client connects from 127.0.0.1.
        max_connections: (clients + 16).max(512),
        max_connections_per_ip: clients + 16,
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(Server::new(config)?.run(listener, std::future::pending()));
    let spec_hash = fusion_net::manifest_hash(&payload.manifest);
    // Each client's connection and the session secret its Join returned.
    let mut rpcs: Vec<(FederationClient, String)> = Vec::new();
    for i in 0..clients {
        let mut rpc = fusion_net::connect(&url, &ClientTls::default(), BearerToken::default())?;
        let session = rpc
            .join(pb::JoinRequest {
                protocol_version: fusion_net::PROTOCOL_VERSION,
                client_id: format!("c{i}"),
                examples: 1,
                spec_hash: spec_hash.clone(),
            })
            .await
            .context("join")?
            .into_inner()
            .session;
        rpcs.push((rpc, session));
    }
    let payload = Arc::new(payload.clone());
    let mut best = f64::INFINITY;
    for round in 1..=rounds {
        for (i, (rpc, session)) in rpcs.iter_mut().enumerate() {
            wait_for_train(
                rpc,
                &format!("c{i}"),
                session,
                round,
                (Duration::from_millis(2), Duration::from_secs(120)),
            )
            .await?;
        }
        let start = Instant::now();
        let mut uploads = Vec::new();
        for (i, (rpc, session)) in rpcs.iter().enumerate() {
            let mut rpc = rpc.clone();
            let payload = payload.clone();
            let session = session.clone();
            uploads.push(tokio::spawn(async move {
                let mut header = payload.header(round, &format!("c{i}"), 1);
                header.session = session;
                let chunks = payload.chunks(header, fusion_net::DEFAULT_CHUNK_BYTES);
                rpc.upload(tokio_stream::iter(chunks)).await
            }));
        }
        for u in uploads {
            u.await?.context("upload refused")?;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    server.await??;
    let _ = std::fs::remove_dir_all(&state);
    Ok(best)
}
