//! Bad updates are refused with a status that says what was wrong, and
//! the round still completes with a good one.

use std::time::Duration;

use fusion_net::{ClientTls, Payload, pb};
use fusion_server::StrategyKind;
use fusion_tests::*;
use tonic::Code;

const TOKEN: &str = "refusals-shared-token";

fn data_of(chunks: &mut [pb::Chunk], i: usize) -> &mut bytes::Bytes {
    match &mut chunks[i].part {
        Some(pb::chunk::Part::Data(d)) => d,
        _ => panic!("chunk {i} is not data"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_update_is_refused_and_the_round_completes() {
    let dir = scratch("refusals");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 1;
    config.strategy = StrategyKind::Fedavg;
    config.token = Some(TOKEN.into());
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let url = server.http_url();

    // A wrong token is refused on every call.
    let mut intruder = raw_client(&url, &ClientTls::default(), Some("guess"));
    let status = intruder
        .heartbeat(pb::HeartbeatRequest {
            client_id: "x".into(),
            session: String::new(),
        })
        .await
        .expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("wrong bearer token"),
        "{status:?}"
    );

    // The real client stops at once on a wrong token: no retry storm.
    let (train, _) = small_data(100);
    let mut cfg = client_config(&url, "wrong-token", 0);
    cfg.token = fusion_net::BearerToken::new(Some("guess".into()));
    let started = std::time::Instant::now();
    let err = fusion_client::run(cfg, std::sync::Arc::new(train))
        .await
        .expect_err("refused");
    assert!(matches!(err, fusion_client::ClientError::Auth(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut rpc = raw_client(&url, &ClientTls::default(), Some(TOKEN));
    let c0 = join(&mut rpc, "c0", 100, &model).await;
    let status = rpc
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        (status.round, status.rounds, status.finished),
        (1, 1, false)
    );
    assert_eq!(status.strategy, "fedavg");
    assert_eq!(status.live_clients, 1);
    let round = wait_for_train(&mut rpc, &c0).await;
    assert_eq!(round, 1);

    // Corrupt chunk: one flipped bit fails the hash.
    let mut chunks = honest_chunks(&model, round, &c0, 100);
    let d = data_of(&mut chunks, 1);
    let mut v = d.to_vec();
    v[10] ^= 0x40;
    *d = v.into();
    let s = upload(&mut rpc, chunks).await.expect_err("corrupt");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("hash mismatch"), "{s:?}");

    // Header hash that does not match honest data.
    let mut chunks = honest_chunks(&model, round, &c0, 100);
    if let Some(pb::chunk::Part::Header(h)) = &mut chunks[0].part {
        h.sha256 = "00".repeat(32);
    }
    let s = upload(&mut rpc, chunks).await.expect_err("hash");
    assert!(s.message().contains("hash mismatch"), "{s:?}");

    // Wrong shape.
    let other = fusion_core::synthetic::random_mlp(&[784, 33, 10], 1);
    let s = upload(&mut rpc, honest_chunks(&other, round, &c0, 100))
        .await
        .expect_err("shape");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("shape") && s.message().contains("layers.0"),
        "{s:?}"
    );

    // NaN.
    let mut poisoned = model.clone();
    let at = poisoned.position("layers.1.bias").expect("bias");
    poisoned.at_mut(at).data_mut()[3] = f32::NAN;
    let s = upload(&mut rpc, honest_chunks(&poisoned, round, &c0, 100))
        .await
        .expect_err("nan");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("non-finite") && s.message().contains("layers.1.bias"),
        "{s:?}"
    );

    // Truncated stream (the last data chunk never sent).
    let mut chunks = honest_chunks(&model, round, &c0, 100);
    chunks.pop();
    let s = upload(&mut rpc, chunks).await.expect_err("short");
    assert!(s.message().contains("truncated"), "{s:?}");

    // An update for an old round (a replay).
    let s = upload(&mut rpc, honest_chunks(&model, 0, &c0, 100))
        .await
        .expect_err("old round");
    assert_eq!(s.code(), Code::Aborted);
    assert!(s.message().contains("over"), "{s:?}");

    // A client that never joined.
    let s = upload(
        &mut rpc,
        honest_chunks(&model, round, &Joined::forged("ghost", ""), 100),
    )
    .await
    .expect_err("unknown");
    assert_eq!(s.code(), Code::NotFound);

    // Nothing of that reached the round: a good update completes it.
    let mut good = model.clone();
    good.at_mut(0).data_mut()[0] += 1.0;
    upload(&mut rpc, honest_chunks(&good, round, &c0, 100))
        .await
        .expect("good update merged");
    // A duplicate after acceptance.
    let s = upload(&mut rpc, honest_chunks(&good, round, &c0, 100))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(s.code(), Code::AlreadyExists | Code::Aborted),
        "{s:?}"
    );

    let metrics = server.metrics.clone();
    let summary = server.finished(Duration::from_secs(30)).await;
    assert_eq!(summary.records.len(), 1);
    assert_eq!(summary.global, good, "only the good update was merged");
    for reason in [
        "hash",
        "manifest",
        "non_finite",
        "truncated",
        "old_round",
        "auth",
    ] {
        assert!(
            metrics.rejected(reason) >= 1,
            "no `{reason}` refusal counted"
        );
    }
    assert!(metrics.render().contains("fusion_rounds_completed_total 1"));
    let _ = Payload::from_params(&summary.global).expect("sendable");
}
