//! The state directory: the global model and the round log, written so
//! that a crash at any instant leaves a consistent, resumable state.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use fusion_core::{ParamSet, safetensors_metadata};

use crate::error::ServerError;
use crate::record::RoundRecord;

/// Metadata key of the round a saved global model completes.
const ROUND_KEY: &str = "fusion.round";
/// Metadata key of the run id.
const RUN_KEY: &str = "fusion.run_id";
/// Metadata key of the completed round's record (its `rounds.jsonl` line),
/// so the checkpoint alone is the commit: a line lost to a crash between
/// the two writes is restored from it on resume.
const RECORD_KEY: &str = "fusion.round_record";

/// What a restarted server picks up.
#[derive(Clone, Debug)]
pub struct Resumed {
    /// Last completed round.
    pub round: u32,
    /// Run id.
    pub run_id: String,
    /// The global model after that round.
    pub global: ParamSet,
    /// Records already written.
    pub records: Vec<RoundRecord>,
    /// Whether the last round's line was missing from `rounds.jsonl` (the
    /// server stopped between its two writes) and was restored from the
    /// checkpoint.
    pub restored_record: bool,
}

/// `global.safetensors` (the model after the last completed round, with the
/// round number and the round's record inside its own header) and
/// `rounds.jsonl` (one line per round). The model file is the commit
/// point: it is written first, and on resume it is the truth; a round line
/// missing because of a crash between the two writes is restored from the
/// record it carries, so model and log always agree after a resume.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens the directory. It is created at the first commit, not here,
    /// so a server that fails to start leaves nothing behind; a path that
    /// exists but is not a directory is refused now.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        if path.exists() && !path.is_dir() {
            return Err(ServerError::State(format!(
                "{} exists and is not a directory",
                path.display()
            )));
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the global model.
    pub fn global_path(&self) -> PathBuf {
        self.path.join("global.safetensors")
    }

    /// Path of the round log.
    pub fn rounds_path(&self) -> PathBuf {
        self.path.join("rounds.jsonl")
    }

    /// The saved state, if a round was ever completed here.
    pub fn resume(&self) -> Result<Option<Resumed>, ServerError> {
        let path = self.global_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ServerError::Io {
                    what: "global model",
                    path,
                    source,
                });
            }
        };
        let unusable = |why: String| ServerError::State(format!("{}: {why}", path.display()));
        let metadata = safetensors_metadata(&bytes).map_err(|e| unusable(e.to_string()))?;
        let round = metadata
            .get(ROUND_KEY)
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or_else(|| unusable(format!("no `{ROUND_KEY}` in its metadata")))?;
        let run_id = metadata.get(RUN_KEY).cloned().unwrap_or_default();
        let global = ParamSet::from_safetensors(&bytes).map_err(|e| unusable(e.to_string()))?;
        let mut records = self.records()?;
        let last = records.last().map_or(0, |r| r.round);
        if last > round {
            return Err(unusable(format!(
                "rounds.jsonl records round {last} but the model completes round {round}"
            )));
        }
        let mut restored_record = false;
        if last < round
            && let Some(text) = metadata.get(RECORD_KEY)
        {
            let record: RoundRecord = serde_json::from_str(text)
                .map_err(|e| unusable(format!("its `{RECORD_KEY}` is unreadable: {e}")))?;
            if record.round != round {
                return Err(unusable(format!(
                    "its `{RECORD_KEY}` is for round {}, but the model completes round {round}",
                    record.round
                )));
            }
            self.append_record(&record)?;
            records.push(record);
            restored_record = true;
        }
        Ok(Some(Resumed {
            round,
            run_id,
            global,
            records,
            restored_record,
        }))
    }

    /// The records in `rounds.jsonl` (none when it does not exist).
    pub fn records(&self) -> Result<Vec<RoundRecord>, ServerError> {
        let path = self.rounds_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ServerError::Io {
                    what: "round log",
                    path,
                    source,
                });
            }
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    ServerError::State(format!("{} line {}: {e}", path.display(), i + 1))
                })
            })
            .collect()
    }

    /// Saves a completed round: the model with the round's record in its
    /// metadata (the commit point), then the log with the new line. Each
    /// file is replaced atomically; a crash between the two is repaired by
    /// the next [`StateDir::resume`].
    pub fn commit(
        &self,
        run_id: &str,
        global: &ParamSet,
        record: &RoundRecord,
    ) -> Result<(), ServerError> {
        std::fs::create_dir_all(&self.path).map_err(|source| ServerError::Io {
            what: "state dir",
            path: self.path.clone(),
            source,
        })?;
        self.write_checkpoint(run_id, global, record)?;
        self.append_record(record)
    }

    /// Replaces `global.safetensors` with `global`, its round, run id and
    /// round record in the metadata.
    fn write_checkpoint(
        &self,
        run_id: &str,
        global: &ParamSet,
        record: &RoundRecord,
    ) -> Result<(), ServerError> {
        let line = serde_json::to_string(record)
            .map_err(|e| ServerError::State(format!("cannot encode the round record: {e}")))?;
        let metadata = HashMap::from([
            (ROUND_KEY.to_owned(), record.round.to_string()),
            (RUN_KEY.to_owned(), run_id.to_owned()),
            (RECORD_KEY.to_owned(), line),
        ]);
        let bytes = global
            .to_safetensors_with_metadata(Some(metadata))
            .map_err(|e| ServerError::State(format!("cannot encode the global model: {e}")))?;
        write_atomic(&self.global_path(), &bytes)
    }

    /// Rewrites `rounds.jsonl` with `record` as its last line.
    fn append_record(&self, record: &RoundRecord) -> Result<(), ServerError> {
        let mut log = match std::fs::read(self.rounds_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(ServerError::Io {
                    what: "round log",
                    path: self.rounds_path(),
                    source,
                });
            }
        };
        if !log.is_empty() && !log.ends_with(b"\n") {
            log.push(b'\n');
        }
        let line = serde_json::to_string(record)
            .map_err(|e| ServerError::State(format!("cannot encode the round record: {e}")))?;
        log.extend_from_slice(line.as_bytes());
        log.push(b'\n');
        write_atomic(&self.rounds_path(), &log)
    }
}

/// Writes to a temporary file in the same directory, fsyncs it, renames it
/// over `path` and fsyncs the directory: readers see the old file or the
/// new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let io = |source| ServerError::Io {
        what: "state file",
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        // A full disk must not also leave a half-written temporary behind.
        let _ = std::fs::remove_file(&temp);
        return Err(io(e));
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(round: u32) -> RoundRecord {
        RoundRecord {
            round,
            strategy: "fedavg".into(),
            attempts: 1,
            clients: 2,
            examples: 10,
            seconds: 0.1,
            align_seconds: 0.0,
            test_loss: None,
            test_acc: None,
            metrics: Default::default(),
            score_error: None,
            moved_fraction: 0.0,
            global_sha256: "x".into(),
            updates: Vec::new(),
            refinement: None,
        }
    }

    #[test]
    fn commits_resume_with_round_model_and_log() {
        let dir = std::env::temp_dir().join(format!("fusion-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).expect("opens");
        assert!(state.resume().expect("empty ok").is_none());
        let m1 = fusion_core::synthetic::random_mlp(&[3, 4, 2], 1);
        let m2 = fusion_core::synthetic::random_mlp(&[3, 4, 2], 2);
        state.commit("run", &m1, &record(1)).expect("commit 1");
        state.commit("run", &m2, &record(2)).expect("commit 2");
        let resumed = state.resume().expect("reads").expect("has state");
        assert_eq!(resumed.round, 2);
        assert_eq!(resumed.run_id, "run");
        assert_eq!(resumed.global, m2);
        assert_eq!(resumed.records.len(), 2);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // A stop between the two writes of round 3: the checkpoint has
        // it, the log does not. Resume restores the line, once.
        let m3 = fusion_core::synthetic::random_mlp(&[3, 4, 2], 3);
        state
            .write_checkpoint("run", &m3, &record(3))
            .expect("checkpoint 3");
        assert_eq!(state.records().expect("log").len(), 2);
        let resumed = state.resume().expect("reads").expect("has state");
        assert!(resumed.restored_record);
        assert_eq!((resumed.round, resumed.global.clone()), (3, m3));
        let rounds: Vec<u32> = state
            .records()
            .expect("log")
            .iter()
            .map(|r| r.round)
            .collect();
        assert_eq!(rounds, [1, 2, 3], "the line is back in the file");
        let again = state.resume().expect("reads").expect("has state");
        assert!(
            !again.restored_record,
            "restored once, not on every restart"
        );
        assert_eq!(again.records.len(), 3);

        std::fs::write(state.rounds_path(), "{not json\n").expect("corrupt");
        let err = state.resume().expect_err("corrupt log").to_string();
        assert!(err.contains("rounds.jsonl line 1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
