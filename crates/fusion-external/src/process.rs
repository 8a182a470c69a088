//! Running one external command: in a process group of its own, its
//! output logged line by line, its time bounded, and every process it
//! started ended when it is done or out of time.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ExternalError;
use crate::lines::LineSplitter;

/// Time a command has between SIGTERM and SIGKILL once its limit is
/// reached, to save what it can.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How often a running command is checked for exit.
const POLL: Duration = Duration::from_millis(20);
/// Lines of the command's stderr kept for an error message.
const TAIL_LINES: usize = 8;
/// Longest wait for the command's output pipes to close after it exited
/// (a process that left the group may hold them open).
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// A user's command line and the limits it runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalCommand {
    /// The command line, run by `sh -c`, so users can write what they
    /// would type (`python3 train.py --data ~/silo`).
    pub command: String,
    /// Longest run; past it the whole process group is killed.
    pub timeout: Duration,
    /// Prefix of every logged output line (`trainer`, `evaluator`), so the
    /// command's lines stand apart from Fusion's own.
    pub label: String,
}

impl ExternalCommand {
    /// A command with its limit and log label.
    pub fn new(command: impl Into<String>, timeout: Duration, label: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            timeout,
            label: label.into(),
        }
    }

    /// Runs the command with this process's environment, less every
    /// `FUSION_*` variable (Fusion's own settings, tokens among them, and
    /// stale values of the contract's variables), plus `env`, and waits for
    /// it, logging its stdout and stderr line by line. Succeeds only on
    /// exit status 0 within the time limit. When it ends, by itself or
    /// killed, any process it left in its group is killed too, so a
    /// trainer's workers cannot outlive it.
    pub fn run(&self, env: &[(&str, OsString)]) -> Result<(), ExternalError> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new("sh");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FUSION_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("-c")
            .arg(&self.command)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout kills it and all it started. A
            // Ctrl-C at the terminal then reaches Fusion only; Fusion's
            // binaries end running commands on their way out
            // (`kill_running`).
            .process_group(0)
            .spawn()
            .map_err(|source| ExternalError::Spawn {
                command: self.command.clone(),
                source,
            })?;
        let group = Group::of(&child);
        let _running = group.register();
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (done_tx, done_rx) = mpsc::channel();
        let mut readers = 0;
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, self.label.clone(), None, done_tx.clone());
            readers += 1;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, self.label.clone(), Some(tail.clone()), done_tx);
            readers += 1;
        }
        let outcome = wait_within(&mut child, &group, self.timeout);
        // Whatever it left behind in its group goes with it.
        group.signal(rustix::process::Signal::KILL);
        let drain_until = Instant::now() + PIPE_DRAIN;
        for _ in 0..readers {
            let left = drain_until.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        // One line: each piece is escaped already, and a newline here
        // would let the command write log lines of its own.
        let last_lines = tail.lock().map(|t| t.lines.join(" ⏎ ")).unwrap_or_default();
        match outcome {
            Waited::Exited(status) if status.success() => Ok(()),
            Waited::Exited(status) => Err(ExternalError::Failed {
                command: self.command.clone(),
                status: describe(status),
                stderr: last_lines,
            }),
            Waited::TimedOut => Err(ExternalError::TimedOut {
                command: self.command.clone(),
                seconds: self.timeout.as_secs_f64(),
            }),
            Waited::Lost(source) => Err(ExternalError::Wait {
                command: self.command.clone(),
                source,
            }),
        }
    }
}

/// How waiting for the command ended.
enum Waited {
    Exited(ExitStatus),
    TimedOut,
    Lost(std::io::Error),
}

/// Waits for `child` at most `limit`; past it, SIGTERM to the group, then
/// SIGKILL after [`TERM_GRACE`].
fn wait_within(child: &mut Child, group: &Group, limit: Duration) -> Waited {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Waited::Exited(status),
            Ok(None) if Instant::now() >= deadline => break,
            Ok(None) => thread::sleep(POLL),
            Err(e) => {
                group.signal(rustix::process::Signal::KILL);
                let _ = child.wait();
                return Waited::Lost(e);
            }
        }
    }
    // SIGTERM to everyone in the group, and time to save what they can:
    // until the whole group is gone (not only the shell), or the grace ends.
    group.signal(rustix::process::Signal::TERM);
    let grace = Instant::now() + TERM_GRACE;
    while Instant::now() < grace {
        let _ = child.try_wait();
        if group.is_empty() {
            return Waited::TimedOut;
        }
        thread::sleep(POLL);
    }
    group.signal(rustix::process::Signal::KILL);
    let _ = child.wait();
    Waited::TimedOut
}

/// The process group a command runs in (its id is the shell's pid).
struct Group(Option<rustix::process::Pid>);

impl Group {
    fn of(child: &Child) -> Self {
        // Never group 0 or 1: kill(-1) would signal every process.
        let pid = i32::try_from(child.id()).ok().filter(|&p| p > 1);
        Self(pid.and_then(rustix::process::Pid::from_raw))
    }

    /// Signals every process in the group; a group already gone is fine.
    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }

    /// Whether no process is left in the group.
    fn is_empty(&self) -> bool {
        self.0
            .is_none_or(|pid| rustix::process::test_kill_process_group(pid).is_err())
    }

    /// Records the group as running until the guard is dropped, so
    /// [`kill_running`] can end it if Fusion is stopped meanwhile.
    fn register(&self) -> Registered {
        if let Some(pid) = self.0
            && let Ok(mut running) = RUNNING.lock()
        {
            running.insert(pid.as_raw_nonzero().get());
        }
        Registered(self.0)
    }
}

/// Process groups of the commands running now.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Removes a group from [`RUNNING`] when its run is over.
struct Registered(Option<rustix::process::Pid>);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(pid) = self.0
            && let Ok(mut running) = RUNNING.lock()
        {
            running.remove(&pid.as_raw_nonzero().get());
        }
    }
}

/// Kills every command this process is running, with all it started: a
/// binary calls it when it is told to stop (Ctrl-C, SIGTERM), since a
/// command in its own process group does not get the terminal's Ctrl-C
/// and would otherwise run on, training for hours on a GPU nobody
/// watches.
pub fn kill_running() {
    let groups: Vec<i32> = RUNNING
        .lock()
        .map(|r| r.iter().copied().collect())
        .unwrap_or_default();
    for raw in groups {
        Group(rustix::process::Pid::from_raw(raw)).signal(rustix::process::Signal::KILL);
    }
}

/// The last lines of stderr, for the error message of a failed command.
#[derive(Default)]
struct Tail {
    lines: Vec<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.remove(0);
        }
        self.lines.push(line.to_owned());
    }
}

/// Reads one output pipe on a thread of its own, logging each line.
fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    label: String,
    tail: Option<Arc<Mutex<Tail>>>,
    done: mpsc::Sender<()>,
) {
    let stream = if tail.is_some() { "stderr" } else { "stdout" };
    thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = [0u8; 8192];
        let mut emit = |line: &str| {
            tracing::info!(target: "fusion_external", "{label} {stream} | {line}");
            if let Some(tail) = &tail
                && let Ok(mut t) = tail.lock()
            {
                t.push(line);
            }
        };
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => splitter.push(&buf[..n], &mut emit),
            }
        }
        splitter.finish(&mut emit);
        let _ = done.send(());
    });
}

/// `exit status 3`, or `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}
