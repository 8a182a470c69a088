//! `fusion simulate`, `fusion certs`, and the server's `align` against the
//! offline `fusion merge --method align` on the same updates.

use std::time::Duration;

use fusion_core::ParamSet;
use fusion_net::{BearerToken, ClientTls, Payload, pb};
use fusion_server::{Reference, Server, ServerConfig, StrategyKind};

use crate::common::{fusion, s, scratch};

#[test]
fn server_align_equals_offline_merge_align() {
    let dir = scratch("align-offline");
    let widths = [784, 32, 10];
    let models: Vec<ParamSet> = (1..=3)
        .map(|seed| fusion_core::synthetic::random_mlp(&widths, seed))
        .collect();
    let examples = [100u64, 200, 300];
    let mut paths = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let p = dir.join(format!("m{i}.safetensors"));
        std::fs::write(&p, m.to_safetensors().expect("encode")).expect("write");
        paths.push(p);
    }

    let config = ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        rounds: 1,
        min_clients: 3,
        strategy: StrategyKind::Align,
        reference: Reference::First,
        model: "mlp:32".into(),
        state_dir: dir.join("state"),
        poll_ms: 20,
        finish_grace_secs: 0.5,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let summary = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(
            Server::new(config)
                .expect("config")
                .run(listener, std::future::pending()),
        );
        let manifest = Payload::from_params(&models[0]).expect("payload").manifest;
        let mut rpcs = Vec::new();
        let mut sessions = Vec::new();
        for (i, &n) in examples.iter().enumerate() {
            let mut rpc = fusion_net::connect(&url, &ClientTls::default(), BearerToken::default())
                .expect("connect");
            let reply = rpc
                .join(pb::JoinRequest {
                    protocol_version: fusion_net::PROTOCOL_VERSION,
                    client_id: format!("c{i}"),
                    examples: n,
                    spec_hash: fusion_net::manifest_hash(&manifest),
                })
                .await
                .expect("join");
            sessions.push(reply.into_inner().session);
            rpcs.push(rpc);
        }
        // Wait until the round is open, then upload in a fixed order: the
        // first update is the reference, as the first file is offline.
        loop {
            let reply = rpcs[0]
                .heartbeat(pb::HeartbeatRequest {
                    client_id: "c0".into(),
                    session: sessions[0].clone(),
                })
                .await
                .expect("heartbeat")
                .into_inner();
            if reply.action == pb::Action::Train as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (i, rpc) in rpcs.iter_mut().enumerate() {
            let payload = Payload::from_params(&models[i]).expect("payload");
            let mut header = payload.header(1, &format!("c{i}"), examples[i]);
            header.session = sessions[i].clone();
            rpc.upload(tokio_stream::iter(payload.chunks(header, 1 << 20)))
                .await
                .expect("accepted");
        }
        server.await.expect("task").expect("server finished")
    });
    assert_eq!(summary.records.len(), 1);
    let moved = summary.records[0].moved_fraction;
    assert!(
        moved > 0.5,
        "independent models need alignment: moved {moved}"
    );

    let out = dir.join("offline.safetensors");
    let o = fusion(&[
        "merge",
        "--method",
        "align",
        "--models",
        s(&paths[0]),
        s(&paths[1]),
        s(&paths[2]),
        "--weights",
        "100,200,300",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let offline = ParamSet::from_safetensors(&std::fs::read(&out).expect("read")).expect("parse");
    let served = std::fs::read(dir.join("state/global.safetensors")).expect("checkpoint");
    let served = ParamSet::from_safetensors(&served).expect("parse");
    assert_eq!(
        served, offline,
        "server align == fusion merge --method align"
    );
    assert_eq!(served, summary.global);
}

fn simulate(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "1500",
        "--model",
        "mlp:32",
        "--batch",
        "50",
        "--lr",
        "0.005",
        "--json",
        "--out",
        s(dir),
    ];
    if !extra.contains(&"--split-file") {
        args.extend_from_slice(&["--split", "iid"]);
    }
    args.extend_from_slice(extra);
    let o = fusion(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

#[test]
fn simulate_rounds_compare_strategies_and_write_outputs() {
    let dir = scratch("simulate");
    let v = simulate(
        &dir,
        &[
            "--clients",
            "3",
            "--rounds",
            "2",
            "--strategy",
            "fedavg,align",
        ],
    );
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        let rounds = run["rounds"].as_array().expect("rounds");
        assert_eq!(rounds.len(), 2, "{run}");
        let acc = rounds[1]["test_acc"].as_f64().expect("accuracy");
        assert!(acc > 0.5, "{} round 2 accuracy {acc}", run["strategy"]);
    }
    // Clients started each round from the global model: align is FedAvg.
    let moved = runs[1]["rounds"][0]["moved_fraction"]
        .as_f64()
        .expect("moved");
    assert!(moved < 0.1, "align moved {moved} units from a common start");
    for f in ["results.json", "rounds.csv", "simulate.svg", "simulate.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn one_shot_fusion_moves_units_and_aligned_beats_plain_average() {
    let dir = scratch("one-shot");
    let v = simulate(
        &dir,
        &[
            "--clients",
            "2",
            "--one-shot",
            "--local-epochs",
            "2",
            "--strategy",
            "fedavg,align",
        ],
    );
    assert_eq!(v["mode"], "one-shot");
    let runs = v["runs"].as_array().expect("runs");
    let acc = |i: usize| runs[i]["rounds"][0]["test_acc"].as_f64().expect("acc");
    // The first update is the reference (there is no global model yet);
    // the other, from another initialisation, has nearly every unit moved.
    let updates = runs[1]["rounds"][0]["updates"].as_array().expect("updates");
    let moved: Vec<f64> = updates
        .iter()
        .flat_map(|u| u["moved"].as_object().expect("per layer").values())
        .map(|v| v.as_f64().expect("fraction"))
        .collect();
    assert!(
        moved.iter().any(|&m| m > 0.8),
        "models from different inits need alignment: moved {moved:?}"
    );
    assert!(acc(1) > acc(0), "align {} vs fedavg {}", acc(1), acc(0));
}

#[test]
fn one_shot_distillation_on_a_proxy_holdout_lifts_the_plain_average() {
    let dir = scratch("distill");
    let v = simulate(
        &dir,
        &[
            "--clients",
            "2",
            "--one-shot",
            "--local-epochs",
            "2",
            "--strategy",
            "fedavg",
            "--proxy-holdout",
            "300",
            "--distill-data",
            "holdout",
            "--distill-epochs",
            "10",
            "--distill-lr",
            "0.001",
        ],
    );
    assert_eq!(v["proxy_holdout"], 300);
    assert_eq!(v["distill"]["images"], 300);
    let sizes: u64 = v["shard_sizes"]
        .as_array()
        .expect("sizes")
        .iter()
        .map(|s| s.as_u64().expect("size"))
        .sum();
    assert_eq!(sizes, 1200, "the holdout is taken from the clients' data");
    let round = &v["runs"][0]["rounds"][0];
    let refinement = &round["refinement"];
    assert_eq!(refinement["step"], "distill");
    assert_eq!(refinement["observed"], 2);
    let merged = refinement["merged_test_acc"]
        .as_f64()
        .expect("merge scored");
    let distilled = round["test_acc"].as_f64().expect("distilled scored");
    // Two models from different initialisations average badly; 300
    // unlabeled images and their ensemble's answers repair much of it.
    assert!(
        distilled > merged + 0.1,
        "distilled {distilled} vs plain average {merged}"
    );
}

#[test]
fn simulate_deals_shards_from_a_split_file_and_checks_it() {
    let dir = scratch("split-file");
    let file = dir.join("split.json");
    let shards: Vec<Vec<usize>> = vec![(0..500).collect(), (500..800).collect()];
    std::fs::write(&file, serde_json::to_string(&shards).expect("json")).expect("write");
    let v = simulate(
        &dir,
        &[
            "--one-shot",
            "--local-epochs",
            "1",
            "--strategy",
            "fedavg",
            "--split-file",
            s(&file),
        ],
    );
    assert_eq!(v["clients"], 2);
    assert_eq!(v["shard_sizes"], serde_json::json!([500, 300]));
    assert_eq!(v["split"], format!("file:{}", file.display()));

    std::fs::write(&file, "[[0, 1, 2], [2, 3]]").expect("write");
    let o = fusion(&[
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "1500",
        "--split-file",
        s(&file),
        "--out",
        s(&dir),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("example 2 is dealt twice: to shard 0 and to shard 1"),
        "{err}"
    );
    std::fs::write(&file, "[[0, 1], [2]]").expect("write");
    let o = fusion(&[
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "1500",
        "--split-file",
        s(&file),
        "--clients",
        "3",
        "--out",
        s(&dir),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--clients 3 but"), "{err}");
}

#[test]
fn certs_writes_a_usable_pki() {
    let dir = scratch("certs");
    let o = fusion(&["certs", "--out", s(&dir), "--clients", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "client-0.pem",
        "client-1.key",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).expect(f);
        assert!(text.starts_with("-----BEGIN"), "{f}");
    }
    let tls = fusion_net::ServerTls {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: Some(dir.join("ca.pem")),
    };
    tls.config().expect("the server accepts them");
}
