//! Slow and silent peers cannot stall a round. The hardening issue saw
//! four sampled peers trickle 16 bytes every 5 s, hold every upload slot,
//! and keep honest uploads waiting until the round was retried three times
//! with nothing accepted; and 1,100 idle sockets lock honest clients out.

use std::time::{Duration, Instant};

use fusion_net::{ClientTls, Payload, pb};
use fusion_server::StrategyKind;
use fusion_tests::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_peers_are_cut_and_honest_uploads_complete() {
    let dir = scratch("slow-peers");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 4;
    config.min_updates = Some(2);
    config.strategy = StrategyKind::Fedavg;
    config.max_concurrent_uploads = 2;
    config.round_deadline_secs = 40.0;
    // 1 MiB/s: a trickler is cut about 10 s after it gets its slot.
    config.min_upload_rate = 1 << 20;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let url = server.http_url();
    let mut rpc = raw_client(&url, &ClientTls::default(), None);
    let mut joined = Vec::new();
    for id in ["slow-0", "slow-1", "honest-0", "honest-1"] {
        joined.push(join(&mut rpc, id, 100, &model).await);
    }
    for client in &joined {
        wait_for_train(&mut rpc, client).await;
    }
    let started = Instant::now();

    // The tricklers take both slots: a header, then 16 bytes a second.
    let payload = Payload::from_params(&model).expect("payload");
    let mut tricklers = Vec::new();
    for client in &joined[..2] {
        let (tx, rx) = mpsc::channel::<pb::Chunk>(1);
        let header = header(&payload, 1, client, 100);
        let bytes = payload.bytes.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(pb::Chunk {
                    part: Some(pb::chunk::Part::Header(header)),
                })
                .await;
            for at in (0..bytes.len()).step_by(16) {
                let part = bytes.slice(at..(at + 16).min(bytes.len()));
                if tx
                    .send(pb::Chunk {
                        part: Some(pb::chunk::Part::Data(part)),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut rpc = rpc.clone();
        tricklers.push(tokio::spawn(async move {
            rpc.upload(ReceiverStream::new(rx)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Honest uploads queue behind them and complete once they are cut.
    for client in &joined[2..] {
        let reply = upload(&mut rpc, honest_chunks(&model, 1, client, 100))
            .await
            .expect("honest update merged");
        assert!(reply.accepted >= 1);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "honest uploads waited {took:?}: the tricklers held their slots"
    );
    for trickler in tricklers {
        let s = trickler.await.expect("task").expect_err("cut");
        assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
        assert!(s.message().contains("too slow"), "{s:?}");
    }
    let metrics = server.metrics.clone();
    let summary = server.finished(Duration::from_secs(60)).await;
    let record = &summary.records[0];
    assert_eq!(record.attempts, 1, "no retry");
    let clients: Vec<&str> = record.updates.iter().map(|u| u.client.as_str()).collect();
    assert_eq!(clients.len(), 2);
    assert!(
        clients.iter().all(|c| c.starts_with("honest")),
        "{clients:?}"
    );
    assert_eq!(metrics.rejected("too_slow"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_lock_out_an_honest_client() {
    let dir = scratch("idle-connections");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 1;
    config.strategy = StrategyKind::Fedavg;
    config.max_connections = 256;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    // 2,000 sockets that never speak: the first 256 hold every slot until
    // they are cut for silence, the rest are closed at once. None of them
    // may exhaust the process's file descriptors.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let connect = tokio::net::TcpStream::connect(server.addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            idle.push(s);
        }
    }
    let started = Instant::now();
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    // The client retries (as fusion-client does) until a slot frees.
    let manifest = Payload::from_params(&model).expect("payload").manifest;
    let request = pb::JoinRequest {
        protocol_version: fusion_net::PROTOCOL_VERSION,
        client_id: "honest".into(),
        examples: 100,
        spec_hash: fusion_net::manifest_hash(&manifest),
    };
    let session = loop {
        match rpc.join(request.clone()).await {
            Ok(reply) => break reply.into_inner().session,
            Err(s) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "locked out for 30 s: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let honest = Joined {
        id: "honest".into(),
        session,
    };
    let round = wait_for_train(&mut rpc, &honest).await;
    upload(&mut rpc, honest_chunks(&model, round, &honest, 100))
        .await
        .expect("merged");
    assert!(server.metrics.connections_refused.get() > 1000);
    assert!(server.metrics.connections_timed_out.get() >= 1);
    drop(idle);
    let summary = server.finished(Duration::from_secs(60)).await;
    assert_eq!(summary.records.len(), 1);
}
