//! Who may act as a client id. The hardening issue found that anyone with
//! the shared token could fetch and upload as a client it read off the
//! status page, and that under mutual TLS one client's certificate could
//! join and upload as another. Here a client id is bound to credentials:
//! a certificate acts only as a name it carries, a per-client token only
//! as its own id, and every call after Join carries that Join's session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion_net::{ClientTls, DevCertificates, pb};
use fusion_server::StrategyKind;
use fusion_tests::*;
use tonic::Code;

fn join_request(id: &str, model: &fusion_core::ParamSet) -> pb::JoinRequest {
    let manifest = fusion_net::Payload::from_params(model)
        .expect("payload")
        .manifest;
    pb::JoinRequest {
        protocol_version: fusion_net::PROTOCOL_VERSION,
        client_id: id.into(),
        examples: 100,
        spec_hash: fusion_net::manifest_hash(&manifest),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_acts_only_as_the_client_it_names() {
    let dir = scratch("identity-mtls");
    let certs = DevCertificates::generate("test CA", &["localhost".into()], 2).expect("certs");
    certs.write(&dir.join("certs")).expect("write");
    let c = |name: &str| dir.join("certs").join(name);
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 2;
    config.strategy = StrategyKind::Fedavg;
    config.tls_cert = Some(c("server.pem"));
    config.tls_key = Some(c("server.key"));
    config.client_ca = Some(c("ca.pem"));
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let tls = |i: usize| ClientTls {
        ca: Some(c("ca.pem")),
        cert: Some(c(&format!("client-{i}.pem"))),
        key: Some(c(&format!("client-{i}.key"))),
        domain: None,
    };
    let url = server.https_url();
    let mut zero = raw_client(&url, &tls(0), None);

    // client-0's certificate cannot join, poll or upload as client-1.
    let s = zero
        .join(join_request("client-1", &model))
        .await
        .expect_err("impersonation");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().contains("does not name client `client-1`"),
        "{s:?}"
    );
    let mut one = raw_client(&url, &tls(1), None);
    let client_1 = join(&mut one, "client-1", 100, &model).await;
    let s = heartbeat(&mut zero, &client_1)
        .await
        .expect_err("heartbeat with another's session");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = upload(&mut zero, honest_chunks(&model, 1, &client_1, 100))
        .await
        .expect_err("upload as another");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // The real client stops at once when its id is not its certificate's.
    let (train, _) = small_data(100);
    let mut cfg = client_config(&url, "client-1", 0);
    cfg.tls = tls(0);
    let started = Instant::now();
    let err = fusion_client::run(cfg, Arc::new(train.clone()))
        .await
        .expect_err("refused");
    assert!(matches!(err, fusion_client::ClientError::Auth(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Under their own names, both take part and the round completes.
    let client_0 = join(&mut zero, "client-0", 100, &model).await;
    for (rpc, client) in [(&mut zero, &client_0), (&mut one, &client_1)] {
        let round = wait_for_train(rpc, client).await;
        upload(rpc, honest_chunks(&model, round, client, 100))
            .await
            .expect("merged");
    }
    let metrics = server.metrics.clone();
    let summary = server.finished(Duration::from_secs(60)).await;
    assert_eq!(summary.records.len(), 1);
    assert!(metrics.rejected("identity") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_sessions_bind_calls_to_the_client_that_joined() {
    const SHARED: &str = "identity-shared-token";
    const ALICE: &str = "identity-alice-token";
    const BOB: &str = "identity-bob-token-0";
    let dir = scratch("identity-tokens");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("# id token\nalice {ALICE}\nbob {BOB}\n")).expect("write");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 3;
    config.strategy = StrategyKind::Fedavg;
    config.token = Some(SHARED.into());
    config.token_file = Some(tokens);
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let url = server.http_url();
    let mut alice_rpc = raw_client(&url, &ClientTls::default(), Some(ALICE));
    let mut bob_rpc = raw_client(&url, &ClientTls::default(), Some(BOB));
    let mut outsider = raw_client(&url, &ClientTls::default(), Some(SHARED));

    // A per-client token acts only as its own id.
    let s = alice_rpc
        .join(join_request("bob", &model))
        .await
        .expect_err("alice as bob");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("another client than `bob`"), "{s:?}");
    let alice = join(&mut alice_rpc, "alice", 100, &model).await;
    let bob = join(&mut bob_rpc, "bob", 100, &model).await;
    // Carol has no token of her own: she uses the shared one.
    let mut carol_rpc = raw_client(&url, &ClientTls::default(), Some(SHARED));
    let carol = join(&mut carol_rpc, "carol", 100, &model).await;
    let round = wait_for_train(&mut alice_rpc, &alice).await;
    assert_eq!(wait_for_train(&mut bob_rpc, &bob).await, round);
    assert_eq!(wait_for_train(&mut carol_rpc, &carol).await, round);

    // The shared token may not act as a client that has its own token.
    let s = outsider
        .join(join_request("alice", &model))
        .await
        .expect_err("shared as alice");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("token of its own"), "{s:?}");

    // The shared token is one principal, but one that never joined as
    // carol cannot act for her: no session, or a guessed one, is refused
    // on every call, and nothing of it counts.
    for session in ["", "00000000000000000000000000000000"] {
        let forged = Joined::forged("carol", session);
        let s = heartbeat(&mut outsider, &forged)
            .await
            .expect_err("heartbeat");
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        assert!(s.message().contains("not the current session"), "{s:?}");
        let s = outsider
            .fetch_global(pb::FetchRequest {
                client_id: "carol".into(),
                round,
                exchange: 0,
                session: session.into(),
            })
            .await
            .expect_err("fetch");
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        let mut ones = model.clone();
        for i in 0..ones.len() {
            ones.at_mut(i).data_mut().fill(1.0);
        }
        let s = upload(
            &mut outsider,
            honest_chunks(&ones, round, &forged, u64::MAX),
        )
        .await
        .expect_err("upload");
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    }

    // A Join under carol's id with the shared token takes her session
    // over, as documented for a shared token; she sees it at her next
    // call instead of silently losing her place.
    let usurper = join(&mut outsider, "carol", 100, &model).await;
    let s = heartbeat(&mut carol_rpc, &carol)
        .await
        .expect_err("replaced");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // Carol joins again: the usurper's session ends.
    let carol = join(&mut carol_rpc, "carol", 100, &model).await;
    let s = heartbeat(&mut outsider, &usurper).await.expect_err("ended");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // The honest clients complete the round with their sessions.
    for (rpc, client) in [
        (&mut alice_rpc, &alice),
        (&mut bob_rpc, &bob),
        (&mut carol_rpc, &carol),
    ] {
        upload(rpc, honest_chunks(&model, round, client, 100))
            .await
            .expect("merged");
    }
    let metrics = server.metrics.clone();
    let summary = server.finished(Duration::from_secs(60)).await;
    assert_eq!(summary.global, model, "only the honest updates were merged");
    assert!(metrics.rejected("session") >= 6);
    assert!(metrics.rejected("identity") >= 2);
}
