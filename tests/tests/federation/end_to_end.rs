//! A server and three clients over TLS with mutual TLS and a token
//! complete two rounds; the global model changes and is checkpointed.

use std::sync::Arc;
use std::time::Duration;

use fusion_net::{BearerToken, ClientTls, DevCertificates};
use fusion_server::StrategyKind;
use fusion_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_two_rounds_over_mutual_tls() {
    let dir = scratch("e2e");
    let certs = DevCertificates::generate("test CA", &["localhost".into()], 3).expect("certs");
    certs.write(&dir.join("certs")).expect("written");
    let c = |name: &str| dir.join("certs").join(name);

    let (train, test) = small_data(900);
    let mut config = server_config(dir.join("state"));
    config.rounds = 2;
    config.min_clients = 3;
    config.strategy = StrategyKind::Align;
    config.tls_cert = Some(c("server.pem"));
    config.tls_key = Some(c("server.key"));
    config.client_ca = Some(c("ca.pem"));
    config.token = Some("end-to-end-token".into());
    let initial = initial_global(&config);
    let server = RunningServer::start(config, Some(test));

    let shards = fusion_data::Split::Iid
        .shards(train.labels(), train.classes(), 3, 0)
        .expect("split");
    let mut clients = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let mut cfg = client_config(&server.https_url(), &format!("client-{i}"), i as u64);
        cfg.tls = ClientTls {
            ca: Some(c("ca.pem")),
            cert: Some(c(&format!("client-{i}.pem"))),
            key: Some(c(&format!("client-{i}.key"))),
            domain: None,
        };
        cfg.token = BearerToken::new(Some("end-to-end-token".into()));
        let data = Arc::new(train.subset(shard));
        clients.push(tokio::spawn(fusion_client::run(cfg, data)));
    }
    for client in clients {
        let summary = client
            .await
            .expect("task")
            .expect("client finished cleanly");
        assert_eq!(summary.rounds_merged, vec![1, 2]);
    }
    let summary = server.finished(Duration::from_secs(60)).await;

    assert_eq!(summary.records.len(), 2);
    assert_ne!(summary.global, initial, "the global model changed");
    let lines = round_lines(&dir.join("state"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (i, record) in summary.records.iter().enumerate() {
        assert_eq!(record.round, i as u32 + 1);
        assert_eq!(record.clients, 3);
        assert_eq!(record.examples, 900);
        let acc = record.test_acc.expect("test data configured");
        assert!(acc > 0.25, "round {} accuracy {acc}", record.round);
        // Every client started from the global model: alignment finds
        // (nearly) nothing to move.
        assert!(record.moved_fraction < 0.2, "{}", record.moved_fraction);
        assert_eq!(record.updates.len(), 3);
    }
    let saved = std::fs::read(dir.join("state/global.safetensors")).expect("checkpoint");
    let saved = fusion_core::ParamSet::from_safetensors(&saved).expect("readable");
    assert_eq!(saved, summary.global);
}
