//! The server's side of the contract: the user's evaluator scores each
//! new global model (`fusion-server --evaluate-cmd`).

use std::ffi::OsString;

use fusion_core::{ParamSet, Score, ScoreError, Scorer};

use crate::error::ExternalError;
use crate::files::{scratch_dir, write_model};
use crate::process::ExternalCommand;
use crate::result_file::CommandResult;

/// Scores a global model by running the user's evaluator with
/// `FUSION_GLOBAL` (the model, safetensors), `FUSION_ROUND` and
/// `FUSION_RESULT`, where it writes `{"metrics": {...}}`. The metrics
/// `loss` and `accuracy` fill the round record's test loss and accuracy;
/// all of them are kept in the record.
#[derive(Clone, Debug)]
pub struct CommandScorer {
    command: ExternalCommand,
}

impl CommandScorer {
    /// A scorer running `command`.
    pub fn new(command: ExternalCommand) -> Self {
        Self { command }
    }

    /// Runs the evaluator on `model`, the global model after `round`.
    pub fn run(&self, round: u32, model: &ParamSet) -> Result<CommandResult, ExternalError> {
        let dir = scratch_dir("fusion-evaluator-")?;
        let global = dir.path().join("global.safetensors");
        let result = dir.path().join("result.json");
        write_model(&global, model, "global model")?;
        let env: [(&str, OsString); 3] = [
            ("FUSION_ROUND", round.to_string().into()),
            ("FUSION_GLOBAL", global.into()),
            ("FUSION_RESULT", result.clone().into()),
        ];
        self.command.run(&env)?;
        CommandResult::read(&result, "FUSION_RESULT")
    }
}

impl Scorer for CommandScorer {
    /// The evaluator's program only (`your evaluator (python3)`): the
    /// status page shows this, and a command line may hold paths or
    /// secrets that are the operator's alone.
    fn describe(&self) -> String {
        let program = self
            .command
            .command
            .split_whitespace()
            .next()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .unwrap_or("sh");
        format!("your evaluator ({program})")
    }

    fn score(&self, round: u32, model: &ParamSet) -> Result<Score, ScoreError> {
        let result = self
            .run(round, model)
            .map_err(|e| ScoreError(e.to_string()))?;
        let accuracy = result.metrics.get("accuracy").copied();
        if let Some(a) = accuracy
            && !(0.0..=1.0).contains(&a)
        {
            return Err(ScoreError(format!(
                "the evaluator reported accuracy {a}; write it as a fraction in [0, 1]"
            )));
        }
        Ok(Score {
            loss: result.metrics.get("loss").copied(),
            accuracy,
            metrics: result.metrics,
        })
    }
}
