//! The trainer contract: what a client hands a user's training command
//! each round, and what it expects back.
//!
//! The command is run once per round (and once per later exchange when a
//! strategy asks for statistics of merged models) with these variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `FUSION_ROUND`, `FUSION_EXCHANGE` | the round (from 1) and exchange (from 0) |
//! | `FUSION_GLOBAL` | the model to start from (safetensors); unset when `FUSION_FROM_OWN_INIT=1` |
//! | `FUSION_FROM_OWN_INIT` | `1`: train from the silo's own initialisation (cold start), else `0` |
//! | `FUSION_PROXIMAL_MU` | FedProx μ (0: plain training) |
//! | `FUSION_UPDATE` | where to write the trained model, same tensors as the global; unset when the exchange wants no weights |
//! | `FUSION_RESULT` | where to write `{"examples": N, "metrics": {...}}` |
//! | `FUSION_OWN` | exchanges after the first: the model this client trained in the round |
//! | `FUSION_STATS`, `FUSION_STATS_NAMES` | when asked: where to write the statistics (safetensors, F64), and their names, comma-separated |
//!
//! Everything the command writes is checked before anything is uploaded.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use fusion_core::{ParamSet, StatisticTensor};

use crate::error::ExternalError;
use crate::files::{read_statistics, read_update, scratch_dir, write_model};
use crate::process::ExternalCommand;
use crate::result_file::CommandResult;

/// A user's training command and the model layout its updates must have.
#[derive(Clone, Debug)]
pub struct Trainer {
    command: ExternalCommand,
    template: ParamSet,
}

/// What one run of the trainer is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct TrainRequest<'a> {
    /// The round, from 1.
    pub round: u32,
    /// The exchange within the round, from 0.
    pub exchange: u32,
    /// The model to start from, or the exchange's model; none when the
    /// round asks for a model from the client's own initialisation.
    pub global: Option<&'a ParamSet>,
    /// Exchanges after the first: the model this client trained.
    pub own: Option<&'a ParamSet>,
    /// Whether the round asks for a model from the client's own init.
    pub from_own_init: bool,
    /// FedProx μ.
    pub proximal_mu: f64,
    /// Whether an updated model is expected.
    pub wants_weights: bool,
    /// Statistics the exchange asks for, by name.
    pub statistics: &'a [String],
}

/// What the trainer produced, checked.
#[derive(Clone, Debug)]
pub struct TrainOutput {
    /// The updated model, when one was asked for.
    pub update: Option<ParamSet>,
    /// Examples the update was trained on.
    pub examples: u64,
    /// The trainer's metrics (logged by the client).
    pub metrics: BTreeMap<String, f64>,
    /// The statistics asked for.
    pub statistics: BTreeMap<String, StatisticTensor>,
}

impl Trainer {
    /// A trainer whose updates must have `template`'s tensors (the
    /// federation's model: the server's `--init-model`).
    pub fn new(command: ExternalCommand, template: ParamSet) -> Self {
        Self { command, template }
    }

    /// The model layout updates are checked against.
    pub fn template(&self) -> &ParamSet {
        &self.template
    }

    /// The command line.
    pub fn command(&self) -> &ExternalCommand {
        &self.command
    }

    /// Runs the command once for `request` in a private scratch directory
    /// (removed afterwards) and checks what it wrote.
    pub fn run(&self, request: &TrainRequest<'_>) -> Result<TrainOutput, ExternalError> {
        let dir = scratch_dir("fusion-trainer-")?;
        let path = |name: &str| dir.path().join(name);
        let mut env: Vec<(&str, OsString)> = vec![
            ("FUSION_ROUND", request.round.to_string().into()),
            ("FUSION_EXCHANGE", request.exchange.to_string().into()),
            (
                "FUSION_FROM_OWN_INIT",
                u8::from(request.from_own_init).to_string().into(),
            ),
            ("FUSION_PROXIMAL_MU", request.proximal_mu.to_string().into()),
            ("FUSION_RESULT", path("result.json").into()),
        ];
        if let Some(global) = request.global {
            let file = path("global.safetensors");
            write_model(&file, global, "global model")?;
            env.push(("FUSION_GLOBAL", file.into()));
        }
        if let Some(own) = request.own {
            let file = path("own.safetensors");
            write_model(&file, own, "own model")?;
            env.push(("FUSION_OWN", file.into()));
        }
        if request.wants_weights {
            env.push(("FUSION_UPDATE", path("update.safetensors").into()));
        }
        if !request.statistics.is_empty() {
            env.push(("FUSION_STATS", path("statistics.safetensors").into()));
            env.push(("FUSION_STATS_NAMES", request.statistics.join(",").into()));
        }
        self.command.run(&env)?;
        self.collect(dir.path(), request)
    }

    /// Reads and checks the files of a finished run.
    fn collect(
        &self,
        dir: &Path,
        request: &TrainRequest<'_>,
    ) -> Result<TrainOutput, ExternalError> {
        let update = if request.wants_weights {
            Some(read_update(
                &dir.join("update.safetensors"),
                &self.template,
                "FUSION_UPDATE",
            )?)
        } else {
            None
        };
        let result_path = dir.join("result.json");
        let result = CommandResult::read(&result_path, "FUSION_RESULT")?;
        let Some(examples) = result.examples else {
            return Err(ExternalError::Invalid {
                what: "result file",
                path: result_path,
                why: "no `examples`: a trainer must say how many examples it trained on".into(),
            });
        };
        let statistics = if request.statistics.is_empty() {
            BTreeMap::new()
        } else {
            read_statistics(
                &dir.join("statistics.safetensors"),
                request.statistics,
                statistics_limit(&self.template),
                "FUSION_STATS",
            )?
        };
        Ok(TrainOutput {
            update,
            examples,
            metrics: result.metrics,
            statistics,
        })
    }
}

/// The most bytes the statistics of `template` can take: for every 2-D
/// tensor `[out, in]` (a linear layer), a Gram matrix's upper triangle of
/// `in + 1` inputs and a cross term `[in + 1, out]`, in F64. A statistics
/// file larger than every statistic of every layer at once is refused
/// before it is read.
fn statistics_limit(template: &ParamSet) -> u64 {
    template
        .iter()
        .filter(|(_, t)| t.shape().len() == 2)
        .map(|(_, t)| {
            let (out, k) = (t.shape()[0] as u64, t.shape()[1] as u64 + 1);
            (k * (k + 1) / 2 + k * out).saturating_mul(8)
        })
        .fold(0u64, u64::saturating_add)
}
