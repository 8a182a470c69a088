//! A liveness file for container health checks. A client has no listener
//! to probe, so it proves it is alive by rewriting a small file: on every
//! answer from the server, and every few seconds while it trains (training
//! sends nothing). A health check compares the file's age with a bound:
//! a client that cannot reach the server, or whose runtime is wedged,
//! stops refreshing it and is marked unhealthy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often training refreshes the file, and the least time between two
/// writes for server answers (heartbeats can come every few milliseconds).
pub const REFRESH: Duration = Duration::from_secs(5);

/// The liveness file, or nothing when the client was not asked for one.
#[derive(Debug, Default)]
pub struct HealthFile {
    path: Option<PathBuf>,
    last: Option<Instant>,
    warned: bool,
}

impl HealthFile {
    /// A liveness file at `path`; `None` turns every call into a no-op.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            last: None,
            warned: false,
        }
    }

    /// Records that the client is alive and what it is doing, unless the
    /// file was written less than [`REFRESH`] ago. A write failure is
    /// logged once and never stops the client: health reporting must not
    /// cost a round.
    pub fn beat(&mut self, phase: &str) {
        if self.last.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        self.write(phase);
    }

    /// Like [`beat`](Self::beat), but writes even if the file is fresh:
    /// for changes of phase an operator wants to see at once.
    pub fn write(&mut self, phase: &str) {
        let Some(path) = &self.path else { return };
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match write_replacing(path, &format!("{unix} {phase}\n")) {
            Ok(()) => self.last = Some(Instant::now()),
            Err(err) if !self.warned => {
                self.warned = true;
                tracing::warn!(
                    path = %path.display(),
                    "cannot write the health file: {err}; health checks will fail"
                );
            }
            Err(_) => {}
        }
    }
}

/// Writes through a temporary and a rename, so a health check never reads
/// a half-written file.
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("health file")
    }

    #[test]
    fn beat_writes_the_time_and_phase_then_waits_for_the_refresh_interval() {
        let dir = std::env::temp_dir().join(format!("fusion-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("alive");
        let mut health = HealthFile::new(Some(path.clone()));
        health.beat("joined");
        let first = read(&path);
        let (secs, phase) = first.trim().split_once(' ').expect("two fields");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(now - secs.parse::<u64>().expect("seconds") <= 1);
        assert_eq!(phase, "joined");
        // Within the refresh interval a beat does not write; a phase
        // change written explicitly does.
        health.beat("waiting");
        assert_eq!(read(&path), first);
        health.write("training round 1");
        assert!(read(&path).ends_with(" training round 1\n"));
        assert!(!dir.join("alive.tmp").exists());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn an_unwritable_path_is_reported_not_fatal() {
        let mut health = HealthFile::new(Some("/nonexistent-dir/fusion/alive".into()));
        health.beat("joined");
        health.write("joined");
        assert!(health.warned);
        assert!(health.last.is_none());
    }

    #[test]
    fn no_path_means_no_file() {
        let mut health = HealthFile::new(None);
        health.write("joined");
        assert!(health.last.is_none() && !health.warned);
    }
}
