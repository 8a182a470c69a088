//! # fusion-external
//!
//! Runs a user's own trainer or evaluator as a child process under
//! Fusion's file contract, so a federation can train and score any model
//! with the code its users already have (PyTorch, JAX, NumPy, …).
//!
//! - [`ExternalCommand`]: one command line, run by `sh -c` in a process
//!   group of its own; its output logged line by line with a prefix; a
//!   time limit that kills the whole group.
//! - [`Trainer`]: the client's side: writes the global model, runs the
//!   command with `FUSION_*` variables, checks the update (tensors,
//!   shapes, finite values), the result file and any statistics.
//! - [`CommandScorer`]: the server's side: scores each new global model
//!   with the user's evaluator (`--evaluate-cmd`).
//!
//! Files are exchanged in a private scratch directory, removed after each
//! run. Every error names the command, the file and the tensor at fault.

#![deny(missing_docs)]

mod error;
mod files;
mod lines;
mod process;
mod result_file;
mod scorer;
mod trainer;

pub use error::ExternalError;
pub use files::read_update;
pub use lines::MAX_LINE_BYTES;
pub use process::{ExternalCommand, kill_running};
pub use result_file::{CommandResult, MAX_METRIC_NAME, MAX_METRICS};
pub use scorer::CommandScorer;
pub use trainer::{TrainOutput, TrainRequest, Trainer};
