//! What the network benchmarks share: the raw loopback TCP baseline they
//! are measured against, and the process's memory figures.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fusion_net::{FederationClient, Payload, pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The best (shortest) of `repeats` runs of `f`, each a time in seconds:
/// the least disturbed run on a noisy machine.
pub async fn best_of<F, Fut>(repeats: u64, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<f64>>,
{
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        best = best.min(f().await?);
    }
    Ok(best)
}

/// Seconds for `clients` sockets to each send the payload to a reader.
pub async fn tcp_copy(payload: &Payload, clients: usize) -> Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let size = payload.bytes.len();
    let reader = tokio::spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..clients {
            let (mut socket, _) = listener.accept().await?;
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                let mut got = 0usize;
                while got < size {
                    let n = socket.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                Ok::<usize, std::io::Error>(got)
            }));
        }
        let mut total = 0;
        for r in readers {
            total += r.await.map_err(std::io::Error::other)??;
        }
        Ok::<usize, std::io::Error>(total)
    });
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..clients {
        let bytes = payload.bytes.clone();
        writers.push(tokio::spawn(async move {
            let mut socket = tokio::net::TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            for chunk in bytes.chunks(1 << 20) {
                socket.write_all(chunk).await?;
            }
            socket.shutdown().await
        }));
    }
    for w in writers {
        w.await??;
    }
    let total = reader.await??;
    let seconds = start.elapsed().as_secs_f64();
    if total != size * clients {
        bail!(
            "TCP baseline moved {total} bytes, expected {}",
            size * clients
        );
    }
    Ok(seconds)
}

/// A `/proc/self/status` memory field in MB (Linux only).
pub fn rss_mb(field: &str) -> Option<f64> {
    status_mb("/proc/self/status", field)
}

/// A memory field of process `pid` in MB (Linux only), e.g. `VmHWM`, its
/// peak resident set.
pub fn process_mb(pid: u32, field: &str) -> Option<f64> {
    status_mb(&format!("/proc/{pid}/status"), field)
}

fn status_mb(path: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1000.0)
}

/// Resets the peak-RSS mark (`VmHWM`), so it measures only what follows.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Polls as client `id`, every `poll`, until the server asks it to train
/// in `round`, for at most `limit`.
pub async fn wait_for_train(
    rpc: &mut FederationClient,
    id: &str,
    session: &str,
    round: u32,
    (poll, limit): (Duration, Duration),
) -> Result<()> {
    let start = Instant::now();
    loop {
        let r = rpc
            .heartbeat(pb::HeartbeatRequest {
                client_id: id.into(),
                session: session.into(),
            })
            .await
            .with_context(|| format!("{id}: heartbeat"))?
            .into_inner();
        if r.action == pb::Action::Train as i32 && r.round == round {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "{id}: round {round} did not open within {} s",
                limit.as_secs()
            );
        }
        tokio::time::sleep(poll).await;
    }
}
