//! Strings a client sends are checked before the server stores, logs or
//! echoes them: a newline in a client id could forge log lines, and a
//! 4 MB spec hash was logged whole on every Join.

use fusion_net::{ClientTls, Payload, pb};
use fusion_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_control_characters_and_oversized_hashes_are_refused() {
    let dir = scratch("names");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    let manifest = Payload::from_params(&model).expect("payload").manifest;
    let hash = fusion_net::manifest_hash(&manifest);
    let join = |client_id: &str, spec_hash: &str| pb::JoinRequest {
        protocol_version: fusion_net::PROTOCOL_VERSION,
        client_id: client_id.into(),
        examples: 10,
        spec_hash: spec_hash.into(),
    };

    let forged = "c0\n2026-12-04T00:00:00Z  INFO fusion_server: round 9 done";
    let s = rpc.join(join(forged, &hash)).await.expect_err("newline");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("control characters"), "{s:?}");
    let s = rpc
        .join(join(&"x".repeat(129), &hash))
        .await
        .expect_err("129 bytes");
    assert!(s.message().contains("1 to 128 bytes"), "{s:?}");
    let s = rpc
        .join(join("c0", &"f".repeat(4 << 20)))
        .await
        .expect_err("4 MB hash");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().len() < 200,
        "the hash is echoed: {} bytes",
        s.message().len()
    );

    let s = rpc
        .heartbeat(pb::HeartbeatRequest {
            client_id: forged.into(),
            session: String::new(),
        })
        .await
        .expect_err("heartbeat");
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = upload(
        &mut rpc,
        honest_chunks(&model, 1, &Joined::forged(forged, ""), 10),
    )
    .await
    .expect_err("upload");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("control characters"), "{s:?}");

    // Tensor names in an upload's manifest are echoed by the manifest
    // check: they are refused by position, not repeated.
    let mut chunks = honest_chunks(&model, 1, &Joined::forged("c0", ""), 10);
    if let Some(pb::chunk::Part::Header(h)) = &mut chunks[0].part {
        h.manifest[0].name = format!("layers.0.weight\nERROR {}", "x".repeat(1 << 20));
    }
    let s = upload(&mut rpc, chunks).await.expect_err("hostile name");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("manifest entry 0") && s.message().len() < 300,
        "{}",
        &s.message()[..s.message().len().min(300)]
    );

    // A well-formed Join still works, and nothing of the above registered.
    rpc.join(join("c0", &hash)).await.expect("good join");
    let status = rpc
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.live_clients, 1);
    server.kill();
}
