//! `fusion simulate`: the real server and N real clients in one process,
//! over loopback gRPC (the deployment code path), once per strategy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use fusion_client::ClientConfig;
use fusion_data::Dataset;
use fusion_experiments::{Figure, Series};
use fusion_server::{Init, RoundRecord, Server, ServerConfig, StrategyName};
use serde::Serialize;

use super::outputs::{list, write_outputs};
use super::report::print_json;
use crate::cli::SimulateArgs;
use crate::options::load_data;

/// One strategy's run.
#[derive(Debug, Serialize)]
struct StrategyRun {
    strategy: String,
    seconds: f64,
    rounds: Vec<RoundRecord>,
}

/// Everything `--json` prints and `results.json` holds.
#[derive(Debug, Serialize)]
struct SimulationReport {
    dataset: String,
    clients: u64,
    split: String,
    mode: &'static str,
    local_epochs: usize,
    shard_sizes: Vec<usize>,
    runs: Vec<StrategyRun>,
}

/// Runs `fusion simulate`.
pub fn run(args: SimulateArgs) -> Result<()> {
    if args.strategy.is_empty() {
        bail!("--strategy needs at least one of fedavg, align, merge-many");
    }
    let data = load_data(&args.data.dataset)?;
    let train = match args.limit {
        Some(n) => data.train.head(n),
        None => data.train.clone(),
    };
    let clients = usize::try_from(args.clients).context("--clients is too large")?;
    let shards = args
        .split
        .shards(train.labels(), train.classes(), clients, args.seed)
        .with_context(|| format!("cannot split the data with `{}`", args.split))?;
    if let Some(i) = shards.iter().position(|s| s.is_empty()) {
        bail!(
            "client {i} gets no examples under `{}`; use fewer clients or a milder split",
            args.split
        );
    }
    let shards: Vec<Arc<Dataset>> = shards.iter().map(|s| Arc::new(train.subset(s))).collect();
    let mode = if args.one_shot {
        "one-shot"
    } else if args.cold_start {
        "cold-start"
    } else {
        "rounds"
    };
    let local_epochs = args
        .local_epochs
        .unwrap_or(if args.one_shot { 5 } else { 1 });
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut runs = Vec::new();
    for &strategy in &args.strategy {
        let started = std::time::Instant::now();
        let records = runtime
            .block_on(simulate_one(
                &args,
                strategy,
                &shards,
                &data.test,
                local_epochs,
            ))
            .with_context(|| format!("simulation with `{strategy}` failed"))?;
        tracing::info!(%strategy, "simulation done");
        runs.push(StrategyRun {
            strategy: strategy.to_string(),
            seconds: started.elapsed().as_secs_f64(),
            rounds: records,
        });
    }
    let report = SimulationReport {
        dataset: data.name.clone(),
        clients: args.clients,
        split: args.split.to_string(),
        mode,
        local_epochs,
        shard_sizes: shards.iter().map(|s| s.len()).collect(),
        runs,
    };
    let written = write_outputs(
        &args.out,
        &[
            ("results.json", serde_json::to_string_pretty(&report)?),
            ("rounds.csv", rounds_csv(&report)),
        ],
        &figure(&report),
        "simulate",
    )?;
    if args.json {
        return print_json(&serde_json::to_value(&report)?);
    }
    print!("{}", table(&report));
    println!("wrote {}", list(&written));
    Ok(())
}

/// One strategy: a server on a free loopback port and every client, all in
/// this process; returns the server's round records.
async fn simulate_one(
    args: &SimulateArgs,
    strategy: StrategyName,
    shards: &[Arc<Dataset>],
    test: &Dataset,
    local_epochs: usize,
) -> Result<Vec<RoundRecord>> {
    let state_dir = args.out.join(format!("state-{strategy}"));
    remove_state(&state_dir)?;
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        rounds: if args.one_shot { 1 } else { args.rounds },
        min_clients: shards.len() as u32,
        strategy,
        reference: args.reference,
        backend: args.backend.to_string(),
        state_dir,
        model: args.model.to_string(),
        init: if args.one_shot || args.cold_start {
            Init::Clients
        } else {
            Init::Global
        },
        seed: args.seed,
        proximal_mu: args.proximal_mu,
        round_deadline_secs: 24.0 * 3600.0,
        poll_ms: 20,
        finish_grace_secs: 2.0,
        ..ServerConfig::default()
    };
    let server = Server::new(config, Some(test.clone()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(server.run(listener, std::future::pending()));
    let mut tasks = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let mut c = ClientConfig::new(url.clone(), format!("client-{i}"));
        c.model = args.model.clone();
        c.backend = args.backend;
        c.train.epochs = local_epochs;
        c.train.lr = args.lr;
        c.train.batch = args.batch;
        c.train.seed = args.seed.wrapping_add(i as u64);
        c.train.progress = false;
        // One-shot: each client trains from its own initialisation for the
        // local epochs; cold start: for --init-epochs.
        c.init_epochs = if args.one_shot {
            local_epochs
        } else {
            args.init_epochs
        };
        c.init_seed = args.seed.wrapping_add(1000 + i as u64);
        tasks.push(tokio::spawn(fusion_client::run(c, shard.clone())));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        t.await
            .context("client task failed")?
            .with_context(|| format!("client {i} failed"))?;
    }
    let summary = server.await.context("server task failed")??;
    Ok(summary.records)
}

/// Removes a previous run's state, so a new simulation never resumes one.
fn remove_state(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot clear '{}'", dir.display())),
    }
}

fn table(report: &SimulationReport) -> String {
    let mut out = format!(
        "{} clients, split {}, {} ({} local epochs), {}\n",
        report.clients, report.split, report.mode, report.local_epochs, report.dataset
    );
    out.push_str(&format!(
        "{:<11} {:>5} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
        "strategy", "round", "test acc", "test loss", "moved", "align s", "round s"
    ));
    for run in &report.runs {
        for r in &run.rounds {
            out.push_str(&format!(
                "{:<11} {:>5} {:>9} {:>9} {:>7.3} {:>8.3} {:>8.2}\n",
                run.strategy,
                r.round,
                r.test_acc.map_or("-".into(), |a| format!("{:.4}", a)),
                r.test_loss.map_or("-".into(), |l| format!("{:.4}", l)),
                r.moved_fraction,
                r.align_seconds,
                r.seconds
            ));
        }
    }
    out.push_str(
        "moved: mean fraction of hidden units the strategy permuted per client and layer\n",
    );
    out
}

fn rounds_csv(report: &SimulationReport) -> String {
    let mut out = String::from(
        "strategy,round,test_acc,test_loss,moved_fraction,align_seconds,seconds,clients,examples\n",
    );
    for run in &report.runs {
        for r in &run.rounds {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                run.strategy,
                r.round,
                r.test_acc.map_or(String::new(), |v| v.to_string()),
                r.test_loss.map_or(String::new(), |v| v.to_string()),
                r.moved_fraction,
                r.align_seconds,
                r.seconds,
                r.clients,
                r.examples
            ));
        }
    }
    out
}

fn figure(report: &SimulationReport) -> Figure {
    Figure {
        title: format!(
            "{} clients, {} split of {} ({})",
            report.clients, report.split, report.dataset, report.mode
        ),
        x_label: "round".into(),
        series: report
            .runs
            .iter()
            .map(|run| Series {
                label: run.strategy.clone(),
                x: run.rounds.iter().map(|r| f64::from(r.round)).collect(),
                loss: run
                    .rounds
                    .iter()
                    .map(|r| r.test_loss.unwrap_or(f64::NAN))
                    .collect(),
                accuracy: run
                    .rounds
                    .iter()
                    .map(|r| r.test_acc.unwrap_or(f64::NAN))
                    .collect(),
            })
            .collect(),
    }
}
