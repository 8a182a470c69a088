//! `fusion-server`: thin binary over the `fusion_server` library. Parses
//! flags, sets up logging, binds, and runs until the last round is saved
//! (exit 0) or Ctrl-C / SIGTERM (completed rounds stay saved; a restart
//! resumes).

mod args;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fusion_core::Scorer;
use fusion_external::{CommandScorer, ExternalCommand};
use fusion_models::initial_cnn;
use fusion_server::{InitialModel, Server, ServerConfig};
use fusion_train::{DistillConfig, Distiller, TestSetScorer};

use crate::args::ServerArgs;

fn main() -> ExitCode {
    let args = ServerArgs::try_parse().unwrap_or_else(|e| exit_naming_the_variable(e));
    let args_json = args.json_logs;
    fusion_bin::logging::init("info", fusion_bin::logging::format(args_json));
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
    let mut config = args.config()?;
    config.validate()?;
    // Everything is checked before the port is bound: the model and its
    // spec, the scorer against the model, the distillation data.
    let test = test_set(&mut config)?;
    let cnn = built_in_cnn(&mut config, test.as_ref().map(|(_, t)| t.shape()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.listen;
        let mut server = match cnn {
            Some(initial) => Server::with_initial_model(config, initial)?,
            None => Server::new(config)?,
        };
        if let Some((scorer, built_in)) = scorer(server.config(), test)? {
            if built_in {
                // A model the built-in scorer cannot score is a mistake
                // in the settings, found before the port is bound.
                scorer
                    .score(0, &server.global())
                    .map_err(|e| anyhow::anyhow!("--test-data cannot score this run: {e}"))?;
            }
            tracing::info!("scoring each global model with {}", scorer.describe());
            server = server.with_scorer(scorer);
        }
        let server = match distiller(server.config(), &server.global())? {
            Some(d) => server.with_refiner(Arc::new(d)),
            None => server,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let summary = server.run(listener, fusion_bin::stop_signal()).await;
        // An evaluator still running when the server was told to stop
        // would run on unseen in its own process group.
        fusion_external::kill_running();
        let summary = summary?;
        tracing::info!(
            run_id = %summary.run_id,
            rounds = summary.records.len(),
            "server finished"
        );
        Ok(())
    })
}

/// The dataset a setting names (`embedded`, `fashion-mnist[:DIR]`, …).
fn data_source(setting: &str, name: &str) -> anyhow::Result<fusion_data::DataSource> {
    name.parse().map_err(|e| anyhow::anyhow!("{setting}: {e}"))
}

/// The test set of `test_data`, loaded; with the built-in model, the
/// model's inputs and classes are taken from it.
fn test_set(config: &mut ServerConfig) -> anyhow::Result<Option<(String, fusion_data::Dataset)>> {
    let Some(name) = config.test_data.clone() else {
        return Ok(None);
    };
    let source = data_source("test_data", &name)?;
    let test = source
        .load()
        .with_context(|| format!("cannot load the test data `{source}`"))?
        .test;
    if config.init_model.is_none() {
        config.inputs = test.features();
        config.classes = test.classes();
    }
    Ok(Some((name, test)))
}

/// The first weights of a built-in CNN when `model` names one
/// (`resnet20x2`, `vgg11:16`) and no `init_model` is set: built here, with
/// the model code the server library does not link, and handed to it. Its
/// images have the test data's shape, or without test data the shape
/// `inputs` names (784: 1x28x28, 3072: 3x32x32); `spec` left at `mlp`
/// means the CNN's own layout.
fn built_in_cnn(
    config: &mut ServerConfig,
    image: Option<[usize; 3]>,
) -> anyhow::Result<Option<InitialModel>> {
    if config.init_model.is_some() {
        return Ok(None);
    }
    let device = config.backend()?.device()?;
    let image = match (image, config.inputs) {
        (Some(shape), _) => shape,
        (None, 784) => [1, 28, 28],
        (None, 3072) => [3, 32, 32],
        (None, n) => anyhow::bail!(
            "--model {}: without --test-data the image shape comes from --inputs, \
             784 (1x28x28, Fashion-MNIST) or 3072 (3x32x32, CIFAR-10), not {n}",
            config.model
        ),
    };
    let Some((arch, params, origin)) =
        initial_cnn(&config.model, image, config.classes, config.seed, &device)
            .map_err(|e| anyhow::anyhow!("model: {e}"))?
    else {
        return Ok(None);
    };
    Ok(Some(InitialModel::built_in(
        config,
        params,
        arch.spec_name(),
        origin,
    )?))
}

/// What scores each global model: the built-in network on `test` (true: it
/// is checked on the first model before binding), the user's
/// `evaluate_cmd` (false: it is not run before round 1), or nothing.
fn scorer(
    config: &ServerConfig,
    test: Option<(String, fusion_data::Dataset)>,
) -> anyhow::Result<Option<(Arc<dyn Scorer>, bool)>> {
    if let Some((name, test)) = test {
        let device = config.backend()?.device()?;
        return Ok(Some((
            Arc::new(TestSetScorer::new(Arc::new(test), name, device)),
            true,
        )));
    }
    Ok(config.evaluate_cmd.as_ref().map(|command| {
        let scorer: Arc<dyn Scorer> = Arc::new(CommandScorer::new(ExternalCommand::new(
            command.clone(),
            std::time::Duration::from_secs_f64(config.evaluate_timeout_secs),
            "evaluator",
        )));
        (scorer, false)
    }))
}

/// The FedDF step when `distill_data` is set: its proxy images loaded and
/// checked against the model before any port is bound.
fn distiller(
    config: &ServerConfig,
    global: &fusion_core::ParamSet,
) -> anyhow::Result<Option<Distiller>> {
    let Some(name) = &config.distill_data else {
        return Ok(None);
    };
    let source = data_source("distill_data", name)?;
    let proxy = source
        .load()
        .with_context(|| format!("cannot load the distillation data `{source}`"))?
        .train;
    let device = config.backend()?.device()?;
    // Distillation trains the built-in MLP: the run's model must be one,
    // and fit the proxy images.
    fusion_models::Mlp::from_params(global, &device)
        .and_then(|m| m.check_data(proxy.features(), proxy.classes()))
        .with_context(|| format!("distill_data `{source}` cannot distil this run's model"))?;
    let settings = DistillConfig {
        epochs: config.distill_epochs,
        lr: config.distill_lr,
        temperature: config.distill_temperature,
        seed: config.seed,
        ..DistillConfig::default()
    };
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
