//! Failures mid-run: a client dies during its upload, the server dies
//! between rounds. Neither loses or corrupts anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion_net::{ClientTls, Payload, pb};
use fusion_server::StrategyKind;
use fusion_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_upload_is_never_merged() {
    let dir = scratch("killed-client");
    let (train, _) = small_data(400);
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 3;
    config.min_updates = Some(2);
    config.round_deadline_secs = 8.0;
    config.strategy = StrategyKind::Fedavg;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let url = server.http_url();

    // The doomed client joins first, so the round waits for it.
    let mut rpc = raw_client(&url, &ClientTls::default(), None);
    let doomed = join(&mut rpc, "doomed", 1000, &model).await;
    let halves = train.subset(&(0..400).collect::<Vec<_>>());
    let mut honest = Vec::new();
    for i in 0..2 {
        let cfg = client_config(&url, &format!("client-{i}"), i);
        honest.push(tokio::spawn(fusion_client::run(
            cfg,
            Arc::new(halves.clone()),
        )));
    }
    let round = wait_for_train(&mut rpc, &doomed).await;

    // Header and half the data, then the process "dies": the stream is
    // reset mid-upload.
    let payload = Payload::from_params(&model).expect("payload");
    let header = header(&payload, round, &doomed, 1000);
    let half = payload.bytes.slice(0..payload.bytes.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::Chunk>(4);
    let mut stream_rpc = rpc.clone();
    let uploading = tokio::spawn(async move {
        stream_rpc
            .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(pb::Chunk {
        part: Some(pb::chunk::Part::Header(header)),
    })
    .await
    .expect("send header");
    tx.send(pb::Chunk {
        part: Some(pb::chunk::Part::Data(half)),
    })
    .await
    .expect("send data");
    tokio::time::sleep(Duration::from_millis(300)).await;
    uploading.abort();
    drop(tx);

    for h in honest {
        let s = h.await.expect("task").expect("honest client finished");
        assert_eq!(s.rounds_merged, vec![1]);
    }
    let metrics = server.metrics.clone();
    let summary = server.finished(Duration::from_secs(30)).await;
    let record = &summary.records[0];
    assert_eq!(record.clients, 2, "{record:?}");
    assert!(record.updates.iter().all(|u| u.client != "doomed"));
    assert_eq!(
        record.examples, 800,
        "only the honest clients' examples count"
    );
    // Depending on how the connection dies, the server sees a reset stream
    // or one that ends short of the announced length; both are refused.
    let refused = metrics.rejected("broken_stream") + metrics.rejected("truncated");
    assert_eq!(refused, 1, "{}", metrics.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_at_the_next_round() {
    let dir = scratch("restart");
    let (train, _) = small_data(400);
    let mut config = server_config(dir.join("state"));
    config.rounds = 3;
    config.min_clients = 2;
    config.strategy = StrategyKind::Align;
    // Fix the port so clients find the restarted server where they left it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    config.listen = ([127, 0, 0, 1], port).into();
    let first = RunningServer::start(config.clone(), None);
    let url = first.http_url();
    let shards = fusion_data::Split::Iid
        .shards(train.labels(), train.classes(), 2, 0)
        .expect("split");
    let mut clients = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let cfg = client_config(&url, &format!("client-{i}"), i as u64);
        clients.push(tokio::spawn(fusion_client::run(
            cfg,
            Arc::new(train.subset(shard)),
        )));
    }
    // Kill the server as soon as round 1 is saved.
    let start = Instant::now();
    while round_lines(&dir.join("state")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "round 1 never completed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    let saved_after_1 = round_lines(&dir.join("state"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = RunningServer::start(config, None);
    for c in clients {
        let s = c.await.expect("task").expect("client survived the restart");
        assert!(s.rounds_merged.contains(&3), "{s:?}");
        assert!(s.reconnects >= 1, "{s:?}");
    }
    let summary = tokio::task::spawn_blocking(move || second.wait(Duration::from_secs(60)))
        .await
        .expect("join")
        .expect("restarted server finished");
    assert!(
        summary.started_at_round >= 2,
        "resumed, not restarted from scratch"
    );
    let lines = round_lines(&dir.join("state"));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0] == saved_after_1[0], "round 1 was not redone");
    let rounds: Vec<u32> = summary.records.iter().map(|r| r.round).collect();
    assert_eq!(rounds, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_when_it_said_it_would() {
    // Nothing listens there; backoff alone would sleep past the give-up
    // time (a newcomer's `--give-up-after 5` took 12 s).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut cfg = client_config(&format!("http://127.0.0.1:{port}"), "c", 0);
    cfg.backoff = (Duration::from_secs(1), Duration::from_secs(30));
    cfg.give_up_after = Duration::from_secs(3);
    let (train, _) = small_data(10);
    let started = Instant::now();
    let err = fusion_client::run(cfg, Arc::new(train))
        .await
        .expect_err("unreachable");
    let took = started.elapsed();
    assert!(
        matches!(err, fusion_client::ClientError::Unreachable { .. }),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
}
