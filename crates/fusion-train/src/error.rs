//! Errors of local training and evaluation.

use fusion_core::{BackendError, LapError, PermError, SpecError};
use fusion_models::ModelError;

/// What can stop training, evaluation or activation matching.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The dataset (or shard) holds no examples.
    #[error("{0} holds no examples")]
    EmptyData(&'static str),
    /// A hyper-parameter out of range.
    #[error("{name} = {value}: {reason}")]
    BadSetting {
        /// The flag or field.
        name: &'static str,
        /// The value given, as text.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// Training diverged: the loss is no longer a number.
    #[error(
        "training diverged at epoch {epoch}, batch {batch}: loss is {loss}; lower the learning rate"
    )]
    Diverged {
        /// Epoch (from 1).
        epoch: usize,
        /// Batch within the epoch (from 1).
        batch: usize,
        /// The loss value.
        loss: f32,
    },
    /// The model does not fit the data or cannot be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The compute backend is unavailable.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An assignment problem could not be solved.
    #[error(transparent)]
    Lap(#[from] LapError),
    /// A spec does not fit the models.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Found permutations do not fit the model.
    #[error(transparent)]
    Perm(#[from] PermError),
    /// Weight matching failed (inside STE matching).
    #[error(transparent)]
    Match(#[from] fusion_core::MatchError),
}

impl TrainError {
    /// A requested statistic that cannot be computed, named as the server
    /// sent it, and why.
    pub(crate) fn bad_statistic(name: &str, reason: impl Into<String>) -> Self {
        Self::BadSetting {
            name: "statistic",
            value: name.to_owned(),
            reason: reason.into(),
        }
    }
}
