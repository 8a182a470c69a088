//! Strategies that ask clients for statistics of their data, over the
//! real protocol: every exchange of a round runs, identical clients give
//! FedAvg's model, and statistics nobody asked for (or misshapen, or NaN)
//! are refused while the round still completes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fusion_core::{ParamSet, StatisticKind, StatisticRequest, StatisticTensor, linear_chain};
use fusion_net::{ClientTls, Payload, pb};
use fusion_server::{Init, StrategyKind};
use fusion_tests::*;
use tonic::Code;

/// One-shot run of `kind` with three clients that train the same model on
/// the same data; returns the merged model.
async fn one_shot_identical_clients(kind: StrategyKind) -> ParamSet {
    let dir = scratch(&format!("stats-{kind}"));
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 3;
    config.init = Init::Clients;
    config.strategy = kind;
    let server = RunningServer::start(config, None);
    let (train, _) = small_data(300);
    let data = Arc::new(train);
    let mut clients = Vec::new();
    for i in 0..3 {
        // Same seeds: the three clients train identical models.
        let cfg = client_config(&server.http_url(), &format!("client-{i}"), 7);
        clients.push(tokio::spawn(fusion_client::run(cfg, data.clone())));
    }
    for client in clients {
        let summary = client.await.expect("task").expect("client finished");
        assert_eq!(summary.rounds_merged, vec![1], "{kind}");
        assert_eq!(summary.refused, 0, "{kind}");
    }
    let summary = server.finished(Duration::from_secs(120)).await;
    assert_eq!(summary.records.len(), 1);
    assert_eq!(summary.records[0].clients, 3);
    summary.global
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_aware_strategies_equal_fedavg_on_identical_clients() {
    let fedavg = one_shot_identical_clients(StrategyKind::Fedavg).await;
    // RegMean forms its cross terms on the server from the Gram matrices
    // it received; layer-wise least squares gets them from the clients.
    // Statistics travel in F64, so the solve gives the clients' model
    // back to within f32's rounding of it.
    for kind in [StrategyKind::Regmean, StrategyKind::Layerwise] {
        let merged = one_shot_identical_clients(kind).await;
        for (name, t) in merged.iter() {
            let want = fedavg.get(name).expect("same layout");
            for (i, (a, b)) in t.data().iter().zip(want.data()).enumerate() {
                assert!((a - b).abs() < 1e-6, "{kind}: {name}[{i}] {a} vs {b}");
            }
        }
    }
}

/// The statistics `names` for `model`, each a diagonal Gram matrix (1s,
/// and the 100 examples the test claims in the bias's entry) or zeros
/// (cross): well-formed values a test can predict.
fn statistics(model: &ParamSet, names: &[String]) -> BTreeMap<String, StatisticTensor> {
    names
        .iter()
        .map(|name| {
            let (request, layer) = StatisticRequest::parse(name, model).expect("known statistic");
            let k = layer.augmented_inputs();
            let data = match request.kind {
                StatisticKind::Gram => (0..k)
                    .flat_map(|i| {
                        (i..k).map(move |j| match (i == j, i + 1 == k) {
                            (true, true) => 100.0,
                            (true, false) => 1.0,
                            _ => 0.0,
                        })
                    })
                    .collect(),
                StatisticKind::Cross => vec![0.0; k * layer.outputs],
                StatisticKind::Moments | StatisticKind::Outputs => {
                    panic!("an MLP has no norm to measure")
                }
            };
            let tensor = StatisticTensor::new(name, request.shape.clone(), data).expect("tensor");
            (name.clone(), tensor)
        })
        .collect()
}

fn chunks(
    client: &Joined,
    weights: Option<&ParamSet>,
    stats: &BTreeMap<String, StatisticTensor>,
    exchange: u32,
) -> Vec<pb::Chunk> {
    update_from(client, weights, stats, exchange)
}

/// A one-round RegMean server with one raw client `c0` joined with
/// `examples`, asked for exchange 0: the server, the connection, the
/// client, the global model and the order.
async fn one_regmean_client(
    name: &str,
    examples: u64,
) -> (
    RunningServer,
    fusion_net::FederationClient,
    Joined,
    ParamSet,
    pb::HeartbeatReply,
) {
    let dir = scratch(name);
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 1;
    config.init = Init::Clients;
    config.strategy = StrategyKind::Regmean;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    let c0 = join(&mut rpc, "c0", examples, &model).await;
    let order = wait_for_order(&mut rpc, &c0).await;
    (server, rpc, c0, model, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_that_were_not_asked_for_are_refused_and_the_round_completes() {
    let (server, mut rpc, c0, model, order) = one_regmean_client("stats-refusals", 100).await;
    let layers: Vec<String> = linear_chain(&model)
        .expect("chain")
        .into_iter()
        .map(|l| format!("gram:{}", l.name))
        .collect();
    assert_eq!(
        order.statistics, layers,
        "RegMean asks for every layer's Gram matrix"
    );
    assert!(order.send_weights);
    let good = statistics(&model, &order.statistics);

    let mut unasked = good.clone();
    unasked.extend(statistics(&model, &["cross:layers.0".to_owned()]));
    let mut misshapen = good.clone();
    misshapen.insert(
        "gram:layers.0".into(),
        StatisticTensor::new("gram:layers.0", vec![4], vec![1.0; 4]).expect("tensor"),
    );
    let mut poisoned = good.clone();
    poisoned.get_mut("gram:layers.1").expect("asked").data_mut()[0] = f64::NAN;
    let mut inflated = good.clone();
    for (_, t) in inflated.iter_mut() {
        for v in t.data_mut() {
            *v *= 1000.0;
        }
    }
    let cases: Vec<(Vec<pb::Chunk>, Code, &str)> = vec![
        (
            chunks(&c0, Some(&model), &inflated, 0),
            Code::InvalidArgument,
            "sums 100000 examples, but the update claims 100",
        ),
        (
            chunks(&c0, Some(&model), &unasked, 0),
            Code::InvalidArgument,
            "cross:layers.0",
        ),
        (
            chunks(&c0, Some(&model), &misshapen, 0),
            Code::InvalidArgument,
            "shape [4]",
        ),
        (
            chunks(&c0, Some(&model), &poisoned, 0),
            Code::InvalidArgument,
            "gram:layers.1",
        ),
        (
            chunks(&c0, Some(&model), &BTreeMap::new(), 0),
            Code::InvalidArgument,
            "gram:layers.0",
        ),
        (
            chunks(&c0, None, &good, 0),
            Code::InvalidArgument,
            "tensors",
        ),
        (
            chunks(&c0, Some(&model), &good, 1),
            Code::Aborted,
            "exchange 1",
        ),
    ];
    for (bad, code, names) in cases {
        let s = upload(&mut rpc, bad).await.expect_err(names);
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(names), "{names}: {s:?}");
    }
    upload(&mut rpc, chunks(&c0, Some(&model), &good, 0))
        .await
        .expect("the good update is merged");
    let metrics = server.metrics.clone();
    let summary = server.finished(Duration::from_secs(30)).await;
    assert_eq!(summary.records.len(), 1);
    // One client with diagonal Gram matrices: RegMean returns its model.
    for (name, t) in summary.global.iter() {
        let want = model.get(name).expect("same layout");
        for (a, b) in t.data().iter().zip(want.data()) {
            assert!((a - b).abs() < 1e-5, "{name}: {a} vs {b}");
        }
    }
    assert!(metrics.rejected("statistics") >= 2);
    assert!(metrics.rejected("non_finite") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_merges_round_one_with_its_own_strategy() {
    let dir = scratch("stats-cold-start");
    let mut config = server_config(dir.join("state"));
    config.rounds = 2;
    config.min_clients = 2;
    config.strategy = StrategyKind::Fedavg;
    config.cold_start_strategy = Some(StrategyKind::Layerwise);
    let refused = config.clone();
    // Only a cold start has a round of clients' own models to merge.
    let err = refused.validate().expect_err("needs init = clients");
    assert!(err.to_string().contains("cold_start_strategy"), "{err}");
    config.init = Init::Clients;
    let server = RunningServer::start(config, None);
    let (train, _) = small_data(200);
    let shards = fusion_data::Split::Iid
        .shards(train.labels(), train.classes(), 2, 0)
        .expect("split");
    let mut clients = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let cfg = client_config(&server.http_url(), &format!("client-{i}"), i as u64);
        let data = Arc::new(train.subset(shard));
        clients.push(tokio::spawn(fusion_client::run(cfg, data)));
    }
    for client in clients {
        let summary = client.await.expect("task").expect("client finished");
        assert_eq!(summary.rounds_merged, vec![1, 2]);
    }
    let summary = server.finished(Duration::from_secs(120)).await;
    let strategies: Vec<&str> = summary
        .records
        .iter()
        .map(|r| r.strategy.as_str())
        .collect();
    assert_eq!(strategies, ["layerwise", "fedavg"]);
}

/// An update of `weights` and `stats` from `id` for exchange `exchange`.
fn update_from(
    client: &Joined,
    weights: Option<&ParamSet>,
    stats: &BTreeMap<String, StatisticTensor>,
    exchange: u32,
) -> Vec<pb::Chunk> {
    let payload = Payload::from_update(weights, stats).expect("payload");
    let mut header = header(&payload, 1, client, 100);
    header.exchange = exchange;
    payload
        .chunks(header, fusion_net::MIN_CHUNK_BYTES)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_dies_between_exchanges_leaves_the_others_merge_intact() {
    let dir = scratch("stats-dropout");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 2;
    config.init = Init::Clients;
    config.strategy = StrategyKind::Layerwise;
    config.client_timeout_secs = 1.0;
    let global = initial_global(&config);
    let strategy = config
        .strategy_config(
            StrategyKind::Layerwise,
            fusion_core::Device::flex(),
            fusion_core::SpecSource::InferMlp,
        )
        .build();
    let server = RunningServer::start(config, None);
    // Two clients with their own models.
    let models: Vec<ParamSet> = (1..=2)
        .map(|seed| {
            let arch: fusion_models::MlpArchitecture = MODEL.parse().expect("model");
            fusion_core::synthetic::random_mlp(&arch.widths(784, 10), seed)
        })
        .collect();
    let (mut live, mut dying) = (
        raw_client(&server.http_url(), &ClientTls::default(), None),
        raw_client(&server.http_url(), &ClientTls::default(), None),
    );
    let live_id = join(&mut live, "live", 100, &models[0]).await;
    let dying_id = join(&mut dying, "dying", 100, &models[1]).await;
    let order = wait_for_exchange(&mut live, &live_id, 0).await;
    wait_for_exchange(&mut dying, &dying_id, 0).await;
    let first = statistics(&models[0], &order.statistics);
    upload(
        &mut live,
        update_from(&live_id, Some(&models[0]), &first, 0),
    )
    .await
    .expect("live, exchange 0");
    let second = statistics(&models[1], &order.statistics);
    upload(
        &mut dying,
        update_from(&dying_id, Some(&models[1]), &second, 0),
    )
    .await
    .expect("dying, exchange 0");
    drop(dying); // never heard from again

    // The same updates through the strategy itself: both clients in
    // exchange 0, only `live` after it.
    let context = fusion_core::RoundContext {
        global: Some(Arc::new(global)),
        from_own_init: true,
    };
    let mut offline = strategy.begin(&context).expect("begin");
    fn add(
        a: &mut Box<dyn fusion_core::Aggregation + '_>,
        model: Option<&ParamSet>,
        statistics: BTreeMap<String, StatisticTensor>,
    ) {
        a.add(fusion_core::Update {
            client: None,
            params: model.cloned(),
            weight: 100.0,
            statistics,
        })
        .expect("offline add");
    }
    add(&mut offline, Some(&models[0]), first);
    add(&mut offline, Some(&models[1]), second);
    let mut exchange = 0;
    while let Some(next) = offline.advance().expect("advance") {
        exchange += 1;
        assert_eq!(next.exchange, exchange);
        let order = wait_for_exchange(&mut live, &live_id, exchange).await;
        let names: Vec<String> = next.statistics.iter().map(|r| r.name()).collect();
        assert_eq!(order.statistics, names, "exchange {exchange} asks the same");
        let stats = statistics(&models[0], &names);
        upload(&mut live, update_from(&live_id, None, &stats, exchange))
            .await
            .unwrap_or_else(|s| panic!("live, exchange {exchange}: {s:?}"));
        add(&mut offline, None, stats);
    }
    assert!(
        exchange >= 1,
        "layerwise on a two-layer MLP has a second exchange"
    );
    let want = offline.finish().expect("offline finish").merged;
    let summary = server.finished(Duration::from_secs(60)).await;
    assert_eq!(
        summary.records.len(),
        1,
        "the round completed without `dying`"
    );
    assert_eq!(
        summary.records[0].clients, 2,
        "both weights count in exchange 0"
    );
    for (name, t) in summary.global.iter() {
        let w = want.get(name).expect("same layout");
        for (a, b) in t.data().iter().zip(w.data()) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_of_an_update_claiming_more_than_its_join_count_weigh_the_join_count() {
    // Joined with 40 examples; the upload claims 100 and its Gram
    // matrices sum 100 examples. Scaled to the weight used (40), they
    // pass the count check, which unscaled they would fail.
    let (server, mut rpc, c0, model, order) = one_regmean_client("stats-capped", 40).await;
    let stats = statistics(&model, &order.statistics);
    upload(&mut rpc, chunks(&c0, Some(&model), &stats, 0))
        .await
        .expect("merged at the Join count");
    let summary = server.finished(Duration::from_secs(30)).await;
    let update = &summary.records[0].updates[0];
    assert_eq!((update.examples, update.claimed_examples), (40, Some(100)));
    for (name, t) in summary.global.iter() {
        let want = model.get(name).expect("same layout");
        for (a, b) in t.data().iter().zip(want.data()) {
            assert!((a - b).abs() < 1e-5, "{name}: {a} vs {b}");
        }
    }
}
