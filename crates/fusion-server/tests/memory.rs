//! The `fusion-server` binary's memory under many simultaneous uploads:
//! 24 clients upload a 15.9 MB model at once to a server that receives
//! at most 2 at a time. Its peak resident memory must stay within the
//! bound docs/benchmarks.md states, `(4 + C) × M` above what it held
//! before the uploads (M the model's size, C `--max-concurrent-uploads`),
//! plus a fixed allowance: a waiting upload costs kilobytes (an HTTP/2
//! stream and its flow-control window), never a model.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fusion_net::{BearerToken, ClientTls, FederationClient, Payload, pb};

const CLIENTS: usize = 24;
const CONCURRENT: usize = 2;
const MODEL: &str = "mlp:1024x4";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A memory field of `/proc/PID/status`, in MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("field present");
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kb / 1000.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn connect(url: &str) -> FederationClient {
    let start = Instant::now();
    loop {
        let mut rpc =
            fusion_net::connect(url, &ClientTls::default(), BearerToken::default()).expect("url");
        if rpc.status(pb::StatusRequest {}).await.is_ok() {
            return rpc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn peak_memory_does_not_grow_with_waiting_uploads() {
    let dir = std::env::temp_dir().join(format!("fusion-server-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_fusion-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--rounds", "1", "--min-clients", &CLIENTS.to_string()])
            .args(["--strategy", "fedavg", "--model", MODEL, "--serve-final"])
            .args(["--max-concurrent-uploads", &CONCURRENT.to_string()])
            .args(["--max-connections-per-ip", "64"])
            .args(["--state-dir", dir.to_str().expect("utf-8")])
            .args(["--poll-ms", "10", "--finish-grace", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fusion-server"),
    );
    let pid = server.0.id();
    let widths: fusion_core::MlpArchitecture = MODEL.parse().expect("model");
    let model = fusion_core::synthetic::random_mlp(&widths.widths(784, 10), 1);
    let payload = Payload::from_params(&model).expect("payload");
    let model_mb = payload.bytes.len() as f64 / 1e6;
    let url = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (before, peak) = runtime.block_on(async {
        let mut joined = Vec::new();
        for i in 0..CLIENTS {
            let mut rpc = connect(&url).await;
            let session = rpc
                .join(pb::JoinRequest {
                    protocol_version: fusion_net::PROTOCOL_VERSION,
                    client_id: format!("c{i}"),
                    examples: 1,
                    spec_hash: fusion_net::manifest_hash(&payload.manifest),
                })
                .await
                .expect("join")
                .into_inner()
                .session;
            joined.push((rpc, format!("c{i}"), session));
        }
        for (rpc, id, session) in &mut joined {
            let start = Instant::now();
            loop {
                let r = rpc
                    .heartbeat(pb::HeartbeatRequest {
                        client_id: id.clone(),
                        session: session.clone(),
                    })
                    .await
                    .expect("heartbeat")
                    .into_inner();
                if r.action == pb::Action::Train as i32 {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(30), "no round opened");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Give the server's allocator a moment, then note where it stands.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = status_mb(pid, "VmRSS");
        let uploads: Vec<_> = joined
            .into_iter()
            .map(|(mut rpc, id, session)| {
                let payload = payload.clone();
                tokio::spawn(async move {
                    let mut header = payload.header(1, &id, 1);
                    header.session = session;
                    rpc.upload(tokio_stream::iter(
                        payload.chunks(header, fusion_net::DEFAULT_CHUNK_BYTES),
                    ))
                    .await
                })
            })
            .collect();
        for upload in uploads {
            upload.await.expect("task").expect("upload accepted");
        }
        let lines = loop {
            let text = std::fs::read_to_string(dir.join("rounds.jsonl")).unwrap_or_default();
            if !text.trim().is_empty() {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(lines.contains(&format!("\"clients\":{CLIENTS}")), "{lines}");
        (before, status_mb(pid, "VmHWM"))
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let growth = peak - before;
    let bound = (4 + CONCURRENT) as f64 * model_mb + 64.0;
    eprintln!(
        "model {model_mb:.1} MB, {CLIENTS} uploads, {CONCURRENT} at once: \
         {before:.0} MB before, peak {peak:.0} MB, growth {growth:.0} MB, bound {bound:.0} MB"
    );
    assert!(
        growth <= bound,
        "peak grew by {growth:.0} MB, over the bound of {bound:.0} MB; \
         {CLIENTS} uploads holding a model each would be {:.0} MB",
        CLIENTS as f64 * model_mb
    );
}
