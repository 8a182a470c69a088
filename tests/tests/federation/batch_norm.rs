//! BatchNorm networks in a federation: after the merge, each client
//! measures the merged model's per-channel moments on its data, and the
//! server writes their average, weighted by examples, into the model it
//! checkpoints. A bad measurement is refused by name and the round
//! completes; strategies that need a Linear chain refuse a CNN at start.

use std::collections::BTreeMap;
use std::time::Duration;

use fusion_core::{ComputeBackend, ParamSet, StatisticTensor, batch_norm_layers};
use fusion_models::{Architecture, Network};
use fusion_net::{ClientTls, Payload, pb};
use fusion_server::{Server, ServerConfig, StrategyKind};
use fusion_tests::*;
use tonic::Code;

/// A VGG-11 of width 4 with BatchNorm, written as the run's first model;
/// returns the config that starts from it and the model.
fn vgg_run(name: &str) -> (ServerConfig, ParamSet) {
    let dir = scratch(name);
    let device = ComputeBackend::Flex.device().expect("flex");
    let arch: Architecture = "vgg11:4".parse().expect("arch");
    let model = Network::init(&arch, [1, 28, 28], 10, 3, &device)
        .to_params()
        .without_passthrough();
    let path = dir.join("init.safetensors");
    std::fs::write(&path, model.to_safetensors().expect("bytes")).expect("write model");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 2;
    config.strategy = StrategyKind::Fedavg;
    config.init_model = Some(path);
    config.spec = "vgg".into();
    (config, model)
}

/// A `moments:` statistic per norm: channel `c`'s mean `base + c` and
/// variance `2 base + c`.
fn moments(names: &[String], model: &ParamSet, base: f64) -> BTreeMap<String, StatisticTensor> {
    names
        .iter()
        .map(|name| {
            let layer = name.strip_prefix("moments:").expect("moments");
            let channels = model
                .get(&format!("{layer}.running_mean"))
                .expect("norm")
                .shape()[0];
            let values = (0..channels)
                .map(|c| base + c as f64)
                .chain((0..channels).map(|c| 2.0 * base + c as f64))
                .collect();
            let tensor = StatisticTensor::new(name, vec![2, channels], values).expect("tensor");
            (name.clone(), tensor)
        })
        .collect()
}

/// The chunks of an upload for exchange 1: `statistics`, and `weights`
/// where a test sends what the exchange does not ask for.
fn measured(
    client: &Joined,
    weights: Option<&ParamSet>,
    statistics: &BTreeMap<String, StatisticTensor>,
    examples: u64,
) -> Vec<pb::Chunk> {
    let payload = Payload::from_update(weights, statistics).expect("payload");
    let mut header = header(&payload, 1, client, examples);
    header.exchange = 1;
    payload
        .chunks(header, fusion_net::MIN_CHUNK_BYTES)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_measure_the_merged_batch_norm_statistics_and_the_server_averages_them() {
    let (config, model) = vgg_run("batch-norm");
    let server = RunningServer::start(config, None);
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    let c0 = join(&mut rpc, "c0", 100, &model).await;
    let c1 = join(&mut rpc, "c1", 300, &model).await;
    for (client, examples) in [(&c0, 100), (&c1, 300)] {
        let order = wait_for_order(&mut rpc, client).await;
        assert!(order.statistics.is_empty(), "exchange 0 sends weights only");
        upload(
            &mut rpc,
            honest_chunks(&model, order.round, client, examples),
        )
        .await
        .expect("weights merged");
    }
    let order = wait_for_exchange(&mut rpc, &c0, 1).await;
    assert_eq!(order.action, pb::Action::Compute as i32);
    assert!(!order.send_weights);
    let norms: Vec<String> = batch_norm_layers(&model).iter().map(|r| r.name()).collect();
    assert_eq!(norms.len(), 8, "{norms:?}");
    assert_eq!(order.statistics, norms);

    let mut negative = moments(&norms, &model, 1.0);
    let last = norms.last().expect("a norm");
    let values = negative.get_mut(last).expect("asked").data_mut();
    let at = values.len() - 1;
    values[at] = -0.5;
    let err = upload(&mut rpc, measured(&c0, None, &negative, 100))
        .await
        .expect_err("a negative variance");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("negative variance -0.5"), "{err:?}");
    let weights = measured(&c0, Some(&model), &moments(&norms, &model, 1.0), 100);
    let err = upload(&mut rpc, weights)
        .await
        .expect_err("weights in exchange 1");
    assert!(err.message().contains("statistics only"), "{err:?}");

    upload(
        &mut rpc,
        measured(&c0, None, &moments(&norms, &model, 1.0), 100),
    )
    .await
    .expect("c0's moments merged");
    upload(
        &mut rpc,
        measured(&c1, None, &moments(&norms, &model, 5.0), 300),
    )
    .await
    .expect("c1's moments merged");
    let summary = server.finished(Duration::from_secs(60)).await;
    assert_eq!(summary.records.len(), 1);
    let global = summary.global;
    for name in &norms {
        let layer = name.strip_prefix("moments:").expect("moments");
        let mean = global.get(&format!("{layer}.running_mean")).expect("mean");
        let var = global.get(&format!("{layer}.running_var")).expect("var");
        for c in 0..mean.shape()[0] {
            // (100 (1 + c) + 300 (5 + c)) / 400 and (100 (2 + c) + 300 (10 + c)) / 400.
            let want_mean = 4.0 + c as f32;
            let want_var = 8.0 + c as f32;
            assert!(
                (mean.data()[c] - want_mean).abs() < 1e-5,
                "{layer} mean {c}"
            );
            assert!((var.data()[c] - want_var).abs() < 1e-5, "{layer} var {c}");
        }
    }
    // Everything else is the weights' FedAvg: the clients sent the model.
    for (name, tensor) in global.iter() {
        if !name.ends_with(".running_mean") && !name.ends_with(".running_var") {
            assert_eq!(Some(tensor), model.get(name), "{name}");
        }
    }
}

#[test]
fn strategies_that_solve_linear_layers_refuse_a_cnn_before_binding() {
    for kind in [StrategyKind::Regmean, StrategyKind::Layerwise] {
        let (mut config, _) = vgg_run(&format!("cnn-{kind}"));
        config.strategy = kind;
        let err = Server::new(config).expect_err("a CNN is not a Linear chain");
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "strategy `{kind}` merges a chain of Linear layers"
            )),
            "{message}"
        );
    }
    let (mut config, _) = vgg_run("cnn-cold-start");
    config.init = fusion_server::Init::Clients;
    config.cold_start_strategy = Some(StrategyKind::Layerwise);
    let err = Server::new(config).expect_err("round 1's strategy too");
    assert!(err.to_string().contains("`layerwise`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moments_exchange_nobody_answers_ends_at_its_deadline_and_keeps_the_merge() {
    // Clients that cannot measure (a trainer command that does not know
    // `moments:`) must not cost the round its training: the exchange
    // closes at its deadline and the merge keeps its averaged statistics.
    let (mut config, model) = vgg_run("batch-norm-unanswered");
    config.round_deadline_secs = 2.0;
    let server = RunningServer::start(config, None);
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    let c0 = join(&mut rpc, "c0", 100, &model).await;
    let c1 = join(&mut rpc, "c1", 100, &model).await;
    for client in [&c0, &c1] {
        let order = wait_for_order(&mut rpc, client).await;
        upload(&mut rpc, honest_chunks(&model, order.round, client, 100))
            .await
            .expect("weights merged");
    }
    let order = wait_for_exchange(&mut rpc, &c0, 1).await;
    assert!(!order.statistics.is_empty());
    // Both stay live (heartbeats, so neither is evicted) and send nothing.
    let mut beats = rpc.clone();
    let live = tokio::spawn(async move {
        loop {
            for client in [&c0, &c1] {
                let _ = heartbeat(&mut beats, client).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let summary = server.finished(Duration::from_secs(30)).await;
    assert_eq!(summary.records.len(), 1);
    live.abort();
    assert_eq!(summary.records[0].attempts, 1, "the round was not retried");
    assert_eq!(&summary.global, &model);
}
