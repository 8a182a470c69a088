//! Registrations are evicted and capped. The hardening issue saw 10,000
//! Joins under distinct ids raise Join latency from 0.64 to 8.6 ms, keep
//! 9 MB, and get fake ids sampled so that every round waited for its
//! deadline.

use std::time::{Duration, Instant};

use fusion_net::{ClientTls, Payload, pb};
use fusion_server::StrategyKind;
use fusion_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_fake_joins_are_evicted_and_never_sampled() {
    let dir = scratch("registrations");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 1;
    config.strategy = StrategyKind::Fedavg;
    config.client_timeout_secs = 2.0;
    config.max_clients = 10_000;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let url = server.http_url();
    let manifest = Payload::from_params(&model).expect("payload").manifest;
    let request = |id: String| pb::JoinRequest {
        protocol_version: fusion_net::PROTOCOL_VERSION,
        client_id: id,
        examples: 1,
        spec_hash: fusion_net::manifest_hash(&manifest),
    };
    // 10,000 Joins under fresh ids, from 8 connections at once.
    let mut floods = Vec::new();
    for c in 0..8 {
        let mut rpc = raw_client(&url, &ClientTls::default(), None);
        let requests: Vec<_> = (0..1250)
            .map(|i| request(format!("fake-{c}-{i}")))
            .collect();
        floods.push(tokio::spawn(async move {
            for r in requests {
                rpc.join(r).await.expect("under the cap");
            }
        }));
    }
    for flood in floods {
        flood.await.expect("flood task");
    }
    let mut rpc = raw_client(&url, &ClientTls::default(), None);
    // Silent, they are evicted after the client timeout, and a round that
    // sampled them stops waiting; an honest client then joins, is the only
    // one live, and its round opens and closes without waiting for a
    // fake (the round deadline is 60 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let honest = join(&mut rpc, "honest", 100, &model).await;
    let status = rpc
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.live_clients, 1, "the fakes were evicted");
    let order = wait_for_order(&mut rpc, &honest).await;
    upload(&mut rpc, honest_chunks(&model, order.round, &honest, 100))
        .await
        .expect("merged");
    let summary = server.finished(Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the honest round took {took:?}"
    );
    let record = &summary.records[0];
    assert_eq!(record.clients, 1);
    assert_eq!(record.updates[0].client, "honest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_cap_refuses_new_ids_until_one_is_evicted() {
    let dir = scratch("registration-cap");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 3;
    config.max_clients = 3;
    config.client_timeout_secs = 1.0;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    for id in ["a", "b", "c"] {
        join(&mut rpc, id, 10, &model).await;
    }
    let manifest = Payload::from_params(&model).expect("payload").manifest;
    let fourth = pb::JoinRequest {
        protocol_version: fusion_net::PROTOCOL_VERSION,
        client_id: "d".into(),
        examples: 10,
        spec_hash: fusion_net::manifest_hash(&manifest),
    };
    let s = rpc.join(fourth.clone()).await.expect_err("over the cap");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("max_clients"), "{s:?}");
    // A registered id may join again: it takes no new place.
    join(&mut rpc, "a", 10, &model).await;
    // Once the three fall silent past the timeout, there is room.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rpc.join(fourth).await.expect("room after eviction");
    assert_eq!(server.metrics.rejected("registrations_full"), 1);
    server.kill();
}
