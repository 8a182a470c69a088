//! `fusion certs`, `fusion simulate`'s hand-over to `fusion-sim`, and the
//! server's `align` against the offline `fusion merge --method align` on
//! the same updates.

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

/// `fusion simulate` runs the `fusion-sim` binary with the same
/// arguments; without it beside `fusion`, it says how to build it.
#[test]
fn simulate_runs_fusion_sim_beside_fusion_or_says_how_to_build_it() {
    let dir = scratch("forward");
    let alone = dir.join("fusion");
    std::fs::copy(env!("CARGO_BIN_EXE_fusion"), &alone).expect("copy fusion");
    // Valid for fusion's parser; only fusion-sim reads the data and fails.
    let args = [
        "simulate",
        "--dataset",
        "fashion-mnist:/nonexistent-fusion-data",
        "--out",
        s(&dir),
    ];
    let o = std::process::Command::new(&alone)
        .args(args)
        .output()
        .expect("run fusion");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cargo build --release -p fusion-sim"), "{err}");
    // Built by `cargo test --workspace` (fusion-sim's own tests need it).
    let sim = std::path::Path::new(env!("CARGO_BIN_EXE_fusion")).with_file_name("fusion-sim");
    if sim.is_file() {
        std::fs::copy(&sim, dir.join("fusion-sim")).expect("copy fusion-sim");
        let o = std::process::Command::new(&alone)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run fusion");
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("nonexistent-fusion-data") && !err.contains("fusion-sim binary"),
            "not handed to fusion-sim: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
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
