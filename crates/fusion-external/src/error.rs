//! What can go wrong running a user's command, each error naming the
//! command, the file or the tensor at fault.

use std::path::PathBuf;

use thiserror::Error;

/// A failed run of an external trainer or evaluator.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExternalError {
    /// The shell could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("lost track of `{command}`: {source}")]
    Wait {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command exited with a failure.
    #[error("`{command}` failed ({status}){}", last_lines(stderr))]
    Failed {
        /// The command line.
        command: String,
        /// `exit status 1`, `killed by signal 9`.
        status: String,
        /// Its last lines of stderr.
        stderr: String,
    },
    /// The command ran past its time limit; its process group was killed.
    #[error(
        "`{command}` ran past its time limit of {seconds} s and was killed, with every process it started"
    )]
    TimedOut {
        /// The command line.
        command: String,
        /// The limit.
        seconds: f64,
    },
    /// A file of the contract could not be written or read.
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        /// Which file (`update`, `result file`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The command exited 0 but did not write a file it had to.
    #[error("the command exited 0 but wrote no {what} at `{}` (${variable})", path.display())]
    NotWritten {
        /// Which file.
        what: &'static str,
        /// The path it was given.
        path: PathBuf,
        /// The environment variable that named it.
        variable: &'static str,
    },
    /// A file the command wrote is not what the contract asks for.
    #[error("{what} `{}`: {why}", path.display())]
    Invalid {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong, naming the tensor or field.
        why: String,
    },
}

fn last_lines(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its last lines of stderr: {stderr}")
    }
}
