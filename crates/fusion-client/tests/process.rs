//! The `fusion-client` binary as a process against an in-process server:
//! it exits 0 when the server reports the run finished (its health file
//! saying so), and 1 with one clear line when the token is wrong.

use std::process::Command;
use std::time::Duration;

use fusion_server::{Metrics, RunSummary, Server, ServerConfig, ServerError, StrategyKind};
use tokio::task::JoinHandle;

/// `config` served on a free loopback port by a runtime of the test's
/// own: the runtime, the server's address, its counters and its task.
fn serve(
    config: ServerConfig,
) -> (
    tokio::runtime::Runtime,
    String,
    std::sync::Arc<Metrics>,
    JoinHandle<Result<RunSummary, ServerError>>,
) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = Server::new(config).expect("config");
    let metrics = server.metrics();
    let task = runtime.spawn(server.run(listener, std::future::pending()));
    (runtime, url, metrics, task)
}

#[test]
fn the_binary_trains_uploads_and_exits_zero_or_stops_on_a_bad_token() {
    let dir = std::env::temp_dir().join(format!("fusion-client-process-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        rounds: 1,
        min_clients: 1,
        strategy: StrategyKind::Fedavg,
        model: "mlp:32".into(),
        state_dir: dir.clone(),
        token: Some("process-test-token".into()),
        poll_ms: 20,
        finish_grace_secs: 1.0,
        ..ServerConfig::default()
    };
    let (runtime, url, _, server) = serve(config);

    let health = dir.with_extension("alive");
    let client = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_fusion-client"))
            .args(["--server", &url, "--dataset", "embedded", "--shard", "0/40"])
            .arg("--health-file")
            .arg(&health)
            .args(["--split", "iid", "--model", "mlp:32", "--batch", "50"])
            .args(["--give-up-after", "30"])
            .env("FUSION_TOKEN", token)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run fusion-client")
    };
    let wrong = client("guess");
    assert_eq!(wrong.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("authentication failed: wrong bearer token"),
        "{err}"
    );

    let ok = client("process-test-token");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let summary = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), server).await })
        .expect("server finished in time")
        .expect("task")
        .expect("server ok");
    assert_eq!(summary.records.len(), 1);
    assert_eq!(summary.records[0].updates[0].client, "client-0");
    // The liveness file for container health checks says how it ended.
    let alive = std::fs::read_to_string(&health).expect("health file written");
    assert!(alive.ends_with(" finished\n"), "{alive}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&health);
}

/// A one-round run of `align` for one client, started from a model file
/// written in `dir` (for the trainer command's `--model-file`).
fn one_round_of_a_model_file(dir: &std::path::Path) -> (std::path::PathBuf, ServerConfig) {
    let model = fusion_core::synthetic::random_mlp(&[784, 16, 10], 3);
    let model_file = dir.join("init.safetensors");
    std::fs::write(&model_file, model.to_safetensors().expect("encode")).expect("write");
    let config = ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        rounds: 1,
        min_clients: 1,
        strategy: StrategyKind::Align,
        init_model: Some(model_file.clone()),
        state_dir: dir.join("state"),
        poll_ms: 20,
        ..ServerConfig::default()
    };
    (model_file, config)
}

/// A trainer that always fails: each attempt of the round runs it once
/// (not again at once), nothing is uploaded, and after
/// `--max-failed-rounds` failures in a row the client stops with exit 1
/// and the trainer's last words.
#[test]
fn a_failing_trainer_uploads_nothing_is_retried_once_per_attempt_and_stops_the_client() {
    let dir = tempfile::tempdir().expect("dir");
    let (model_file, mut config) = one_round_of_a_model_file(dir.path());
    // A short round, so the server retries it while the client waits.
    config.round_deadline_secs = 1.5;
    let (_runtime, url, metrics, _server) = serve(config);

    let runs = dir.path().join("runs");
    let seen_env = dir.path().join("env");
    let trainer = format!(
        "echo run >> {}; env > {}; echo 'loading data: no such folder' >&2; exit 1",
        runs.display(),
        seen_env.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fusion-client"))
        .args(["--server", &url, "--client-id", "silo"])
        .args(["--trainer-cmd", &trainer, "--examples", "10"])
        .arg("--model-file")
        .arg(&model_file)
        .args(["--max-failed-rounds", "2", "--give-up-after", "30"])
        .env("RUST_LOG", "warn")
        // The client's own settings never reach the trainer, nor stale
        // values of the contract's variables.
        .env("FUSION_HEALTH_FILE", dir.path().join("alive"))
        .env("FUSION_STATS", "/stale/statistics.safetensors")
        .output()
        .expect("run fusion-client");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the trainer failed 2 times in a row")
            && err.contains("exit status 1")
            && err.contains("loading data: no such folder"),
        "{err}"
    );
    let runs = std::fs::read_to_string(runs).expect("runs");
    assert_eq!(runs.lines().count(), 2, "one run per attempt: {runs}");
    assert_eq!(metrics.accepted.get(), 0, "nothing was uploaded");
    let env = std::fs::read_to_string(seen_env).expect("env");
    assert!(
        env.contains("FUSION_ROUND=1") && env.contains("FUSION_UPDATE="),
        "{env}"
    );
    assert!(
        !env.contains("FUSION_HEALTH_FILE") && !env.contains("FUSION_STATS"),
        "{env}"
    );
    assert!(
        metrics.rejections().values().all(|&n| n == 0),
        "nothing was refused either"
    );
}

/// Ctrl-C or SIGTERM stops the client and its trainer with it: the
/// trainer runs in a process group of its own, which the terminal's
/// Ctrl-C does not reach.
#[test]
fn stopping_the_client_stops_its_trainer() {
    let dir = tempfile::tempdir().expect("dir");
    let (model_file, config) = one_round_of_a_model_file(dir.path());
    let (_runtime, url, _, _server) = serve(config);
    let pid_file = dir.path().join("trainer.pid");
    let trainer = format!("echo $$ > {}; exec sleep 300", pid_file.display());
    let client = Command::new(env!("CARGO_BIN_EXE_fusion-client"))
        .args(["--server", &url, "--client-id", "silo"])
        .args(["--trainer-cmd", &trainer, "--examples", "10"])
        .arg("--model-file")
        .arg(&model_file)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run fusion-client");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let trainer_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trainer never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = Command::new("kill")
        .args(["-TERM", &client.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = client.wait_with_output().expect("client exits");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped by a signal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The trainer is gone (or a zombie nobody reaps), not sleeping on.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{trainer_pid}/stat")).ok();
        let ended = state.is_none_or(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        });
        if ended {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trainer {trainer_pid} outlived its client"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
