//! An update's weight is what its client declared at Join (capped by
//! `max_examples`), never what the upload claims. The hardening issue
//! found an all-ones model uploaded with `examples = 2^64 − 1` becoming
//! the global model outright; here it weighs what its client joined with.

use std::time::Duration;

use fusion_core::ParamSet;
use fusion_net::ClientTls;
use fusion_server::StrategyKind;
use fusion_tests::*;
use tonic::Code;

/// `model`'s layout with every value `v`.
fn filled(model: &ParamSet, v: f32) -> ParamSet {
    let mut out = model.clone();
    for i in 0..out.len() {
        out.at_mut(i).data_mut().fill(v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_claims_cannot_outweigh_the_join_count() {
    let dir = scratch("weights");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 3;
    config.strategy = StrategyKind::Fedavg;
    config.max_examples = Some(1000);
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let url = server.http_url();
    let mut rpc = raw_client(&url, &ClientTls::default(), None);
    // (id, examples at Join, examples the upload claims, value uploaded)
    let clients = [
        ("honest", 100, 100, 0.0),
        ("greedy", 100, u64::MAX, 1.0),
        ("huge", 1_000_000_000_000, 1_000_000_000_000, 2.0),
    ];
    let mut joined = std::collections::BTreeMap::new();
    for (id, examples, _, _) in clients {
        joined.insert(id, join(&mut rpc, id, examples, &model).await);
    }
    for client in joined.values() {
        assert_eq!(wait_for_train(&mut rpc, client).await, 1);
    }

    let s = upload(
        &mut rpc,
        honest_chunks(&filled(&model, 5.0), 1, &joined["honest"], 0),
    )
    .await
    .expect_err("zero examples");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("examples must be at least 1"), "{s:?}");

    for (id, _, claimed, value) in clients {
        upload(
            &mut rpc,
            honest_chunks(&filled(&model, value), 1, &joined[id], claimed),
        )
        .await
        .expect("merged");
    }
    let summary = server.finished(Duration::from_secs(30)).await;

    // Weights 100, 100 (the claim capped at Join) and 1000 (Join capped
    // by max_examples): (0·100 + 1·100 + 2·1000) / 1200.
    let want = 2100.0 / 1200.0;
    for (name, t) in summary.global.iter() {
        for v in t.data() {
            assert!((f64::from(*v) - want).abs() < 1e-6, "{name}: {v} vs {want}");
        }
    }
    let record = &summary.records[0];
    assert_eq!(record.examples, 1200);
    for (id, _, claimed, _) in clients {
        let update = record
            .updates
            .iter()
            .find(|u| u.client == id)
            .expect("recorded");
        let used = if id == "huge" { 1000 } else { 100 };
        assert_eq!(
            (update.examples, update.claimed_examples),
            (used, Some(claimed)),
            "{id}"
        );
    }
}
