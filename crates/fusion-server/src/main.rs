//! `fusion-server`: thin binary over the `fusion_server` library. Parses
//! flags, sets up logging, binds, and runs until the last round is saved
//! (exit 0) or Ctrl-C / SIGTERM (completed rounds stay saved; a restart
//! resumes).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use fusion_server::{Server, ServerArgs, ServerConfig};
use fusion_train::{DistillConfig, Distiller};

fn main() -> ExitCode {
    let args = ServerArgs::try_parse().unwrap_or_else(|e| exit_naming_the_variable(e));
    let args_json = args.json_logs;
    init_logging(args_json);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Once: a log line for machines reading JSON, else plain text.
            if args_json {
                tracing::error!("{err:#}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.listen;
        let server = Server::new(config, None)?;
        let server = match distiller(server.config())? {
            Some(d) => server.with_refiner(Arc::new(d)),
            None => server,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let summary = server.run(listener, shutdown_signal()).await?;
        tracing::info!(
            run_id = %summary.run_id,
            rounds = summary.records.len(),
            "server finished"
        );
        Ok(())
    })
}

/// The FedDF step when `distill_data` is set: its proxy images loaded and
/// checked against the model before any port is bound.
fn distiller(config: &ServerConfig) -> anyhow::Result<Option<Distiller>> {
    let Some(source) = config.distill_source()? else {
        return Ok(None);
    };
    let proxy = source
        .load()
        .with_context(|| format!("cannot load the distillation data `{source}`"))?
        .train;
    if (proxy.features(), proxy.classes()) != (config.inputs, config.classes) {
        bail!(
            "distill_data `{source}` has {} features and {} classes; the model takes {} and gives {}",
            proxy.features(),
            proxy.classes(),
            config.inputs,
            config.classes
        );
    }
    let settings = DistillConfig {
        epochs: config.distill_epochs,
        lr: config.distill_lr,
        temperature: config.distill_temperature,
        seed: config.seed,
        ..DistillConfig::default()
    };
    let device = config.backend()?.device()?;
    tracing::info!(
        images = proxy.len(),
        epochs = settings.epochs,
        "distilling each round's merge on `{source}` (labels unused)"
    );
    Ok(Some(Distiller::new(proxy, settings, device)?))
}

/// Prints clap's error and exits; when the bad value came from a
/// `FUSION_*` variable rather than the flag clap names, says so.
fn exit_naming_the_variable(error: clap::Error) -> ! {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let culprit = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split_whitespace().next().map(str::to_owned),
        _ => None,
    };
    let from_env = culprit.and_then(|flag| {
        let on_command_line =
            std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        let command = ServerArgs::command();
        let env = command
            .get_arguments()
            .find(|a| a.get_long().is_some_and(|l| flag == format!("--{l}")))?
            .get_env()?
            .to_string_lossy()
            .into_owned();
        (!on_command_line && std::env::var_os(&env).is_some()).then_some(env)
    });
    let code = error.exit_code();
    let _ = error.print();
    if let Some(env) = from_env {
        eprintln!("note: the value came from the environment variable {env}");
    }
    std::process::exit(code)
}

/// Ctrl-C, or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wgpu_hal=off,wgpu_core=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
