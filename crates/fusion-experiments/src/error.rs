//! Errors of the experiments.

use fusion_core::{MatchError, ParamsError, PermError, SpecError};
use fusion_data::DataError;
use fusion_models::ModelError;
use fusion_train::TrainError;

/// What can stop an experiment; each wraps the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A setting out of range (steps, methods, split).
    #[error("{0}")]
    BadSetting(String),
    /// Data could not be loaded or split.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A model could not be built from its parameters.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Weight matching failed.
    #[error(transparent)]
    Match(#[from] MatchError),
    /// The models' spec does not fit.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Permutations do not fit.
    #[error(transparent)]
    Perm(#[from] PermError),
    /// Parameter sets do not fit each other.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// Writing results or plots failed.
    #[error("{path}: {reason}")]
    Output {
        /// The file being written.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}
