//! The `fusion-server` binary as a process: configured by flags and the
//! environment, it serves a client, exposes /metrics, warns that TLS is
//! off, writes its state and exits 0 after its last round.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn scrape(port: u16) -> String {
    get(port, "/metrics")
}

fn get(port: u16, path: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes()).expect("request");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("response");
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "metrics never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn join_silently(port: u16) {
    let mut rpc = fusion_net::connect(
        &format!("http://127.0.0.1:{port}"),
        &fusion_net::ClientTls::default(),
        fusion_net::BearerToken::new(Some("process-test-token".into())),
    )
    .expect("client");
    let model = fusion_core::synthetic::random_mlp(&[784, 32, 10], 0);
    let manifest = fusion_net::Payload::from_params(&model)
        .expect("payload")
        .manifest;
    let start = Instant::now();
    while rpc
        .join(fusion_net::pb::JoinRequest {
            protocol_version: fusion_net::PROTOCOL_VERSION,
            client_id: "silent".into(),
            examples: 1,
            spec_hash: fusion_net::manifest_hash(&manifest),
        })
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_binary_runs_its_rounds_and_exits_zero() {
    let dir = std::env::temp_dir().join(format!("fusion-server-process-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_fusion-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--rounds", "1", "--strategy", "align", "--model", "mlp:32"])
        .args(["--state-dir", dir.to_str().expect("utf-8")])
        .args(["--poll-ms", "20", "--finish-grace", "3"])
        .args(["--min-updates", "1", "--deadline", "2"])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .env("FUSION_MIN_CLIENTS", "2")
        .env("FUSION_TOKEN", "process-test-token")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fusion-server");

    let before = scrape(metrics_port);
    assert!(before.contains("200 OK"), "{before}");
    assert!(
        before.contains("fusion_rounds_completed_total 0"),
        "{before}"
    );

    let data = fusion_data::DataSource::Embedded
        .load()
        .expect("data")
        .train
        .head(200);
    let mut config = fusion_client::ClientConfig::new(format!("http://127.0.0.1:{port}"), "p0");
    config.model = "mlp:32".parse().expect("model");
    config.token = fusion_net::BearerToken::new(Some("process-test-token".into()));
    config.train.batch = 50;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // A silent second client: sampled, it never uploads, so the round
    // closes at its deadline with the one update (min_updates 1); never
    // told the run is over, it keeps the server up for its finish grace,
    // long enough to read the status page after the run.
    runtime.block_on(join_silently(port));
    let summary = runtime
        .block_on(fusion_client::run(config, Arc::new(data)))
        .expect("client finished");
    assert_eq!(summary.rounds_merged, vec![1]);

    // The operator's page and the JSON it polls, while the server lingers.
    let page = get(metrics_port, "/");
    assert!(
        page.contains("text/html") && page.contains("Fusion server"),
        "{page}"
    );
    // Client ids are shown on it: no inline script may run, and the
    // script comes as its own file under the same policy.
    let policy = format!(
        "content-security-policy: {}",
        fusion_server::CONTENT_SECURITY_POLICY
    );
    assert!(page.to_ascii_lowercase().contains(&policy), "{page}");
    assert!(!page.contains("<script>"), "inline script: {page}");
    let script = get(metrics_port, "/status.js");
    assert!(
        script.starts_with("HTTP/1.1 200")
            && script.contains("text/javascript")
            && script.contains("textContent")
            && !script.contains("innerHTML"),
        "{script}"
    );
    assert!(get(metrics_port, "/status.css").contains("text/css"));
    let health = get(metrics_port, "/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("ok round 1 of 1"),
        "{health}"
    );
    let status = get(metrics_port, "/status.json");
    let body = status.split("\r\n\r\n").nth(1).expect("body");
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON status");
    assert_eq!(json["rounds"], 1);
    assert_eq!(json["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["clients"][0]["id"], "p0");
    assert_eq!(json["clients"][1]["id"], "silent");
    assert_eq!(json["updates_accepted"], 1);

    let output = child.wait_with_output().expect("server exits");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("TLS is off; serving on loopback"),
        "the missing TLS is said: {log}"
    );
    let lines = std::fs::read_to_string(dir.join("rounds.jsonl")).expect("round log");
    assert_eq!(lines.lines().count(), 1);
    assert!(dir.join("global.safetensors").is_file());

    // A bad configuration is one clear error and exit status 1.
    let bad = Command::new(env!("CARGO_BIN_EXE_fusion-server"))
        .args(["--fraction", "2"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("fraction must be in (0, 1]"), "{err}");
    assert_eq!(
        err.matches("fraction must be").count(),
        1,
        "printed once: {err}"
    );

    // A bad value from the environment is traced to its variable.
    let bad = Command::new(env!("CARGO_BIN_EXE_fusion-server"))
        .env("FUSION_ROUNDS", "abc")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("'abc'") && err.contains("FUSION_ROUNDS"),
        "{err}"
    );
}

/// Runs the binary with `args` while `listen` is held by this test, so a
/// server that bound before checking its model would fail with "cannot
/// listen" instead of naming the model: the check comes first.
fn refused_before_binding(args: &[std::ffi::OsString]) -> String {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let listen = held.local_addr().expect("addr").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_fusion-server"))
        .args(["--listen", &listen, "--rounds", "1", "--min-clients", "1"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fusion-server");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("cannot listen"), "bound first: {err}");
    err
}

#[test]
fn an_init_model_that_its_spec_or_scorer_does_not_fit_is_refused_before_binding() {
    use fusion_core::{ParamSet, ParamTensor};
    let dir = tempfile::tempdir().expect("dir");
    // A small CNN: conv1 [8, 1, 3, 3] → conv2 [16, 8, 3, 3] → fc [10, 16].
    let mut cnn = ParamSet::new();
    for (name, shape) in [
        ("conv1.weight", vec![8, 1, 3, 3]),
        ("conv1.bias", vec![8]),
        ("conv2.weight", vec![16, 8, 3, 3]),
        ("conv2.bias", vec![16]),
        ("fc.weight", vec![10, 16]),
        ("fc.bias", vec![10]),
    ] {
        let n = shape.iter().product();
        cnn.insert(
            name,
            ParamTensor::new(name, shape, vec![0.1; n]).expect("t"),
        )
        .expect("insert");
    }
    let model = dir.path().join("cnn.safetensors");
    std::fs::write(&model, cnn.to_safetensors().expect("encode")).expect("write");
    let spec = dir.path().join("spec.toml");
    let state = dir.path().join("state");
    let base = |spec: &std::path::Path| -> Vec<std::ffi::OsString> {
        vec![
            "--init-model".into(),
            model.clone().into(),
            "--spec".into(),
            spec.into(),
            "--state-dir".into(),
            state.clone().into(),
        ]
    };

    // A spec whose axes do not fit: conv2's input channels are 8, fc's 16.
    std::fs::write(
        &spec,
        "[permutations]\nP = [\"conv1.weight:0\", \"conv1.bias:0\", \"fc.weight:1\"]\n",
    )
    .expect("spec");
    let err = refused_before_binding(&base(&spec));
    assert!(
        err.contains("does not fit the model file cnn.safetensors") && err.contains("fc.weight"),
        "{err}"
    );

    // `mlp` infers a chain of Linear layers; a CNN is not one.
    let mut args = base(&spec);
    args[3] = "mlp".into();
    let err = refused_before_binding(&args);
    assert!(err.contains("spec `mlp` does not fit"), "{err}");

    // A spec that fits, but --test-data scores the built-in networks only.
    std::fs::write(
        &spec,
        "[permutations]\nP1 = [\"conv1.weight:0\", \"conv1.bias:0\", \"conv2.weight:1\"]\n\
         P2 = [\"conv2.weight:0\", \"conv2.bias:0\", \"fc.weight:1\"]\n",
    )
    .expect("spec");
    let mut args = base(&spec);
    args.extend(["--test-data".into(), "embedded".into()]);
    let err = refused_before_binding(&args);
    assert!(
        err.contains("--test-data cannot score this run") && err.contains("--evaluate-cmd"),
        "{err}"
    );
    // Both scorers at once is a configuration error too.
    let mut args = base(&spec);
    args.extend([
        "--test-data".into(),
        "embedded".into(),
        "--evaluate-cmd".into(),
        "true".into(),
    ]);
    let err = refused_before_binding(&args);
    assert!(err.contains("set one"), "{err}");
    assert!(!state.join("rounds.jsonl").exists(), "nothing was run");
}

#[test]
fn a_built_in_cnn_is_built_by_the_binary_and_its_spec_checked_before_binding() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let base = |model: &str, spec: &str| -> Vec<std::ffi::OsString> {
        vec![
            "--model".into(),
            model.into(),
            "--spec".into(),
            spec.into(),
            "--state-dir".into(),
            state.clone().into(),
        ]
    };
    // The binary builds the ResNet; the library refuses a spec of another
    // layout for it, naming both.
    let err = refused_before_binding(&base("resnet20x2", "vgg"));
    assert!(
        err.contains("the built-in resnet20x2") && err.contains("cannot infer a vgg spec"),
        "{err}"
    );
    // A model name that is no built-in network says what is accepted.
    let err = refused_before_binding(&base("resnet21", "mlp"));
    assert!(err.contains("model:") && err.contains("6·b+2"), "{err}");
}
