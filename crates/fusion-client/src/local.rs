//! Where a client's updates come from: the built-in MLP trained with burn
//! on the client's shard, or the user's own training command.

use std::sync::Arc;

use fusion_core::ParamSet;
use fusion_data::Dataset;
use fusion_external::Trainer;

/// How a client trains each round.
#[derive(Clone, Debug)]
pub enum LocalTraining {
    /// The built-in MLP (`ClientConfig::model`), trained on this shard.
    BuiltIn(Arc<Dataset>),
    /// The user's command, run once per round under the `FUSION_*`
    /// contract (`fusion-client --trainer-cmd`).
    Command(CommandTraining),
}

/// A user's training command and what the client declares for it.
#[derive(Clone, Debug)]
pub struct CommandTraining {
    /// The command, and the model layout its updates must have.
    pub trainer: Arc<Trainer>,
    /// Examples the client declares at Join: the cap on its updates'
    /// weight, which the server never lets an upload exceed.
    pub examples: u64,
    /// Failed rounds in a row after which the client stops (exit 1), so a
    /// broken trainer is not retried every round forever.
    pub max_failures: u32,
}

impl LocalTraining {
    /// Examples declared at Join.
    pub fn examples(&self) -> u64 {
        match self {
            Self::BuiltIn(data) => data.len() as u64,
            Self::Command(c) => c.examples,
        }
    }

    /// A model with the federation's tensors, for the spec hash the client
    /// joins with: the built-in network for `data`, or the trainer's
    /// template.
    pub fn template(&self, model: &fusion_models::Architecture) -> ParamSet {
        match self {
            Self::BuiltIn(data) => match model {
                fusion_models::Architecture::Mlp(mlp) => {
                    let widths = mlp.widths(data.features(), data.classes());
                    fusion_core::synthetic::random_mlp(&widths, 0)
                }
                cnn => fusion_models::Network::init(
                    cnn,
                    data.shape(),
                    data.classes(),
                    0,
                    &fusion_core::Device::flex(),
                )
                .to_params()
                // What the server sends and expects: F32 tensors only.
                .without_passthrough(),
            },
            Self::Command(c) => c.trainer.template().clone(),
        }
    }
}
