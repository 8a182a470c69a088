//! The `fusion-server` binary killed with SIGKILL at random points of a
//! 20-round run: after every kill the state directory holds a checkpoint
//! and a round log that agree (every completed round has its line, the
//! last line's hash is the checkpoint's), and restarted, the run goes on
//! to its last round. Before the checkpoint carried its round's record, a
//! kill between the two writes lost that round's line for good.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion_net::Payload;
use fusion_server::StateDir;

const ROUNDS: u32 = 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn start(port: u16, state: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fusion-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--rounds", &ROUNDS.to_string(), "--min-clients", "2"])
        .args(["--strategy", "fedavg", "--model", "mlp:16"])
        .args(["--state-dir", state.to_str().expect("utf-8")])
        .args(["--poll-ms", "10", "--finish-grace", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fusion-server")
}

/// The rounds the state directory holds, checked for agreement.
fn consistent_rounds(state: &std::path::Path) -> u32 {
    let Some(resumed) = StateDir::open(state)
        .expect("opens")
        .resume()
        .expect("resumable")
    else {
        return 0;
    };
    let rounds: Vec<u32> = resumed.records.iter().map(|r| r.round).collect();
    let want: Vec<u32> = (1..=resumed.round).collect();
    assert_eq!(rounds, want, "every completed round has exactly one line");
    let last = resumed.records.last().expect("a line per round");
    let sha = Payload::from_params(&resumed.global)
        .expect("payload")
        .sha256;
    assert_eq!(
        last.global_sha256, sha,
        "the last line is the checkpoint's round"
    );
    resumed.round
}

#[test]
fn kills_at_random_points_leave_checkpoint_and_log_consistent() {
    let dir = std::env::temp_dir().join(format!("fusion-server-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    let port = free_port();
    let data = fusion_data::DataSource::Embedded
        .load()
        .expect("data")
        .train
        .head(1000);
    let data = Arc::new(data);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let mut config = fusion_client::ClientConfig::new(
                format!("http://127.0.0.1:{port}"),
                format!("c{i}"),
            );
            config.model = "mlp:16".parse().expect("model");
            config.train.batch = 50;
            config.backoff = (Duration::from_millis(20), Duration::from_millis(200));
            config.give_up_after = Duration::from_secs(120);
            runtime.spawn(fusion_client::run(config, data.clone()))
        })
        .collect();

    let started = Instant::now();
    let mut kills = 0;
    let mut restarts_with_progress = 0;
    let mut seen = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run never finished ({kills} kills, {seen} rounds)"
        );
        let mut server = start(port, &state);
        if seen == ROUNDS {
            // Every round is saved: the restarted server says so to the
            // clients (or waits out its grace) and exits 0.
            let status = server.wait().expect("exit");
            assert!(status.success(), "the server failed: {status}");
            break;
        }
        let wait = Duration::from_millis(rand::random_range(5..80));
        std::thread::sleep(wait);
        if let Some(status) = server.try_wait().expect("poll") {
            assert!(status.success(), "the server failed: {status}");
            break;
        }
        server.kill().expect("SIGKILL");
        server.wait().expect("reaped");
        kills += 1;
        let now = consistent_rounds(&state);
        assert!(now >= seen, "rounds went backwards: {now} after {seen}");
        if now > seen {
            restarts_with_progress += 1;
        }
        seen = now;
    }
    assert_eq!(consistent_rounds(&state), ROUNDS);
    eprintln!("{kills} kills, {restarts_with_progress} of them after progress");
    assert!(
        kills >= 5 && restarts_with_progress >= 3,
        "{kills} kills, {restarts_with_progress} after a round: too few restarts exercised"
    );
    for client in clients {
        runtime
            .block_on(client)
            .expect("task")
            .expect("client finished cleanly");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
