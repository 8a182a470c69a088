//! Scoring a global model: how a server measures a round without knowing
//! what model it aggregates.

use std::collections::BTreeMap;

use crate::params::ParamSet;

/// Scores each new global model: test loss and accuracy of a built-in
/// model on a test set (`fusion-train`), or whatever the user's own
/// evaluator reports (`fusion-external`). Like [`Refiner`](super::Refiner)
/// this is a pure interface; a binary hands one to the server as a trait
/// object, so the server library needs neither models nor data.
pub trait Scorer: Send + Sync {
    /// Says what scores the model, for logs and the status page
    /// (`embedded test set, 2000 images`, `evaluate.py`).
    fn describe(&self) -> String;

    /// Scores `model`, the global model after `round`. Blocking: callers
    /// run it off their async threads.
    fn score(&self, round: u32, model: &ParamSet) -> Result<Score, ScoreError>;
}

/// What a [`Scorer`] measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Score {
    /// Test loss, when measured.
    pub loss: Option<f64>,
    /// Test accuracy in [0, 1], when measured.
    pub accuracy: Option<f64>,
    /// Every other named metric the scorer reported.
    pub metrics: BTreeMap<String, f64>,
}

/// Why a model could not be scored; the round is kept, unscored.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScoreError(pub String);
