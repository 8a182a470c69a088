//! `fusion simulate`: the real server and N real clients in one process,
//! over loopback gRPC (the deployment code path), once per strategy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use fusion_client::ClientConfig;
use fusion_core::{ParamSet, StrategyKind};
use fusion_data::Dataset;
use fusion_experiments::{Figure, Series};
use fusion_models::{Network, initial_cnn};
use fusion_server::{Init, InitialModel, RoundRecord, Server, ServerConfig};
use fusion_train::{DistillConfig, Distiller, TestSetScorer};
use serde::Serialize;

use crate::simulate_data::{deal, distill_proxy};
use fusion_cli::cli::SimulateArgs;
use fusion_cli::commands::outputs::{list, write_outputs};
use fusion_cli::commands::report::print_json;
use fusion_cli::options::load_data;

/// One strategy's run.
#[derive(Debug, Serialize)]
struct StrategyRun {
    strategy: String,
    seconds: f64,
    /// Bytes each client uploaded in the whole run (weights and
    /// statistics), mean over clients.
    upload_bytes_per_client: f64,
    rounds: Vec<RoundRecord>,
}

/// What the clients' own final models score on the test set, without any
/// merge: the practical ceiling (output ensemble, one forward pass per
/// client) and the floor a merge must beat (the best single client).
#[derive(Debug, Serialize)]
struct ClientBaselines {
    /// From the run of this strategy (every run trains the same clients
    /// with the same seeds).
    from_strategy: String,
    ensemble_acc: f64,
    ensemble_loss: f64,
    best_single_acc: f64,
    best_single_client: usize,
    single_acc: Vec<f64>,
}

/// The distillation settings of a run.
#[derive(Debug, Serialize)]
struct DistillReport {
    /// `holdout` or a dataset source.
    data: String,
    images: usize,
    epochs: usize,
    lr: f64,
    temperature: f64,
}

/// Everything `--json` prints and `results.json` holds.
#[derive(Debug, Serialize)]
struct SimulationReport {
    dataset: String,
    clients: u64,
    split: String,
    /// Training examples held back for the server, unlabeled.
    proxy_holdout: Option<usize>,
    /// Server-side distillation after each round, when on.
    distill: Option<DistillReport>,
    mode: &'static str,
    local_epochs: usize,
    shard_sizes: Vec<usize>,
    runs: Vec<StrategyRun>,
    /// The clients' own models, scored alone and as an output ensemble
    /// (one-shot runs).
    client_models: Option<ClientBaselines>,
}

/// Runs `fusion simulate`.
pub fn run(args: SimulateArgs) -> Result<()> {
    if args.strategy.is_empty() {
        bail!("--strategy needs at least one of fedavg, align, merge-many, regmean, layerwise");
    }
    let data = load_data(&args.data.dataset)?;
    let dealt = deal(&args, &data.train)?;
    let proxy = distill_proxy(&args, dealt.holdout.as_ref(), &data.test)?;
    let distill = match &proxy {
        Some(p) => Some(DistillReport {
            data: args.distill_data.clone().unwrap_or_default(),
            images: p.len(),
            epochs: args.distill_epochs,
            lr: args.distill_lr,
            temperature: args.distill_temperature,
        }),
        None => None,
    };
    let shards: Vec<Arc<Dataset>> = dealt.shards.into_iter().map(Arc::new).collect();
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
    let mut baselines = None;
    for &strategy in &args.strategy {
        let started = std::time::Instant::now();
        let (records, client_models, uploaded) = runtime
            .block_on(simulate_one(
                &args,
                strategy,
                &shards,
                &data.test,
                proxy.as_ref(),
                local_epochs,
            ))
            .with_context(|| format!("simulation with `{strategy}` failed"))?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(%strategy, "simulation done");
        if baselines.is_none() {
            baselines = score_clients(&args, strategy, &client_models, &data.test)?;
        }
        runs.push(StrategyRun {
            strategy: strategy.to_string(),
            seconds,
            upload_bytes_per_client: uploaded,
            rounds: records,
        });
    }
    let report = SimulationReport {
        dataset: data.name.clone(),
        clients: shards.len() as u64,
        split: dealt.split,
        proxy_holdout: dealt.holdout.as_ref().map(Dataset::len),
        distill,
        mode,
        local_epochs,
        shard_sizes: shards.iter().map(|s| s.len()).collect(),
        runs,
        client_models: baselines,
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
/// this process; returns the server's round records, each client's last
/// accepted model and the mean bytes a client uploaded.
async fn simulate_one(
    args: &SimulateArgs,
    strategy: StrategyKind,
    shards: &[Arc<Dataset>],
    test: &Dataset,
    proxy: Option<&Dataset>,
    local_epochs: usize,
) -> Result<(Vec<RoundRecord>, Vec<Option<ParamSet>>, f64)> {
    let state_dir = args.out.join(format!("state-{strategy}"));
    remove_state(&state_dir)?;
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        rounds: if args.one_shot { 1 } else { args.rounds },
        min_clients: shards.len() as u32,
        strategy,
        reference: args.reference,
        cold_start_strategy: args.cold_start_strategy,
        max_passes: args.strategy_options.max_passes,
        regmean_alpha: args.strategy_options.regmean_alpha,
        ridge: args.strategy_options.ridge,
        layerwise_align: args.strategy_options.layerwise_align,
        batch_norm: args.batch_norm,
        repair: args.repair,
        backend: args.backend.to_string(),
        state_dir,
        model: args.model.to_string(),
        inputs: test.features(),
        classes: test.classes(),
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
    let mut config = config;
    let server = match initial_cnn(
        &config.model,
        test.shape(),
        test.classes(),
        config.seed,
        &args.backend.device()?,
    )? {
        Some((arch, params, origin)) => {
            let initial = InitialModel::built_in(&mut config, params, arch.spec_name(), origin)?;
            Server::with_initial_model(config, initial)?
        }
        None => Server::new(config)?,
    };
    let mut server = server.with_scorer(Arc::new(TestSetScorer::new(
        Arc::new(test.clone()),
        args.data.dataset.to_string(),
        args.backend.device()?,
    )));
    if let Some(proxy) = proxy {
        let settings = DistillConfig {
            epochs: args.distill_epochs,
            lr: args.distill_lr,
            temperature: args.distill_temperature,
            seed: args.seed,
            ..DistillConfig::default()
        };
        let distiller = Distiller::new(proxy.clone(), settings, args.backend.device()?)
            .context("cannot set up distillation")?;
        server = server.with_refiner(Arc::new(distiller));
    }
    let metrics = server.metrics();
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
        // As `fusion-client`: CIFAR-10 training images are cropped and mirrored.
        c.train.augment = matches!(args.data.dataset, fusion_data::DataSource::Cifar10(_));
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
    let mut models = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.into_iter().enumerate() {
        let summary = t
            .await
            .context("client task failed")?
            .with_context(|| format!("client {i} failed"))?;
        models.push(summary.last_trained);
    }
    let summary = server.await.context("server task failed")??;
    let uploaded = metrics.bytes_in.get() as f64 / shards.len().max(1) as f64;
    Ok((summary.records, models, uploaded))
}

/// Scores the clients' own models (one-shot runs only: in rounds they are
/// one round's local updates, not models of their own).
fn score_clients(
    args: &SimulateArgs,
    strategy: StrategyKind,
    models: &[Option<ParamSet>],
    test: &Dataset,
) -> Result<Option<ClientBaselines>> {
    if !args.one_shot {
        return Ok(None);
    }
    let Some(params) = models.iter().cloned().collect::<Option<Vec<ParamSet>>>() else {
        tracing::warn!("a client has no accepted model: no ensemble row");
        return Ok(None);
    };
    let device = args.backend.device()?;
    let built: Vec<Network> = params
        .iter()
        .map(|p| Network::from_params(p, &device))
        .collect::<Result<_, _>>()
        .context("cannot build a client's model")?;
    let mut single_acc = Vec::with_capacity(built.len());
    for m in &built {
        single_acc.push(fusion_train::evaluate_network(m, test, &device)?.accuracy);
    }
    let refs: Vec<&Network> = built.iter().collect();
    let ensemble = fusion_train::evaluate_networks(&refs, test, &device)?;
    let (best_single_client, best_single_acc) = single_acc
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, f64::NAN));
    Ok(Some(ClientBaselines {
        from_strategy: strategy.to_string(),
        ensemble_acc: ensemble.accuracy,
        ensemble_loss: ensemble.loss,
        best_single_acc,
        best_single_client,
        single_acc,
    }))
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
        "{} clients, split {}, {} ({} local epoch{}), {}\n",
        report.clients,
        report.split,
        report.mode,
        report.local_epochs,
        if report.local_epochs == 1 { "" } else { "s" },
        report.dataset
    );
    if let Some(n) = report.proxy_holdout {
        out.push_str(&format!(
            "{n} training images held back for the server, unlabeled\n"
        ));
    }
    if let Some(d) = &report.distill {
        out.push_str(&format!(
            "each merge distilled on {} images of `{}` ({} epochs, lr {}, T {})\n",
            d.images, d.data, d.epochs, d.lr, d.temperature
        ));
    }
    out.push_str(&format!(
        "{:<11} {:>5} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
        "strategy", "round", "test acc", "test loss", "moved", "align s", "round s"
    ));
    for run in &report.runs {
        for r in &run.rounds {
            // The round's own strategy: round 1 of a cold start may use
            // --cold-start-strategy.
            out.push_str(&format!(
                "{:<11} {:>5} {:>9} {:>9} {:>7.3} {:>8.3} {:>8.2}\n",
                r.strategy,
                r.round,
                r.test_acc.map_or("-".into(), |a| format!("{:.4}", a)),
                r.test_loss.map_or("-".into(), |l| format!("{:.4}", l)),
                r.moved_fraction,
                r.align_seconds,
                r.seconds
            ));
            if let Some(f) = &r.refinement {
                let outcome = match &f.error {
                    Some(e) => format!("{} failed: {e}", f.step),
                    None => format!(
                        "before {}: {:.1} s, {} teachers",
                        f.step, f.seconds, f.observed
                    ),
                };
                out.push_str(&format!(
                    "{:<11} {:>5} {:>9} {:>9}   ({outcome})\n",
                    "",
                    "",
                    f.merged_test_acc
                        .map_or("-".into(), |a| format!("{:.4}", a)),
                    f.merged_test_loss
                        .map_or("-".into(), |l| format!("{:.4}", l)),
                ));
            }
        }
    }
    if let Some(c) = &report.client_models {
        out.push_str(&format!(
            "{:<11} {:>5} {:>9.4} {:>9.4}   (the clients' own models, one forward pass each)\n",
            "ensemble", "-", c.ensemble_acc, c.ensemble_loss
        ));
        out.push_str(&format!(
            "{:<11} {:>5} {:>9.4} {:>9}   (client {})\n",
            "best-single", "-", c.best_single_acc, "-", c.best_single_client
        ));
    }
    out.push_str(
        "moved: mean fraction of hidden units the strategy permuted per client and layer\n",
    );
    for run in &report.runs {
        out.push_str(&format!(
            "{}: {:.1} MB uploaded per client, {:.1} s\n",
            run.strategy,
            run.upload_bytes_per_client / 1e6,
            run.seconds
        ));
    }
    out
}

fn rounds_csv(report: &SimulationReport) -> String {
    let mut out = String::from(
        "strategy,round,test_acc,test_loss,moved_fraction,align_seconds,seconds,clients,examples,merged_test_acc,refine_seconds\n",
    );
    for run in &report.runs {
        for r in &run.rounds {
            let refined = r.refinement.as_ref();
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{}\n",
                run.strategy,
                r.round,
                r.test_acc.map_or(String::new(), |v| v.to_string()),
                r.test_loss.map_or(String::new(), |v| v.to_string()),
                r.moved_fraction,
                r.align_seconds,
                r.seconds,
                r.clients,
                r.examples,
                refined
                    .and_then(|f| f.merged_test_acc)
                    .map_or(String::new(), |v| v.to_string()),
                refined.map_or(String::new(), |f| f.seconds.to_string()),
            ));
        }
    }
    out
}

fn figure(report: &SimulationReport) -> Figure {
    Figure {
        title: format!(
            "{} clients, {} split of {} ({})",
            report.clients,
            report.split,
            // The dataset's name, not where it lives on this machine.
            report.dataset.split(':').next().unwrap_or_default(),
            report.mode
        ),
        x_label: "round".into(),
        integer_x: true,
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
