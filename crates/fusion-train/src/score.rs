//! Scoring a federation's global model with the built-in MLP on a test
//! set: what `fusion-server --test-data` and `fusion simulate` hand the
//! server.

use std::sync::Arc;

use fusion_core::{Device, ParamSet, Score, ScoreError, Scorer};
use fusion_data::Dataset;
use fusion_models::Mlp;

/// Test loss and accuracy of the built-in MLP on a held-out set.
#[derive(Clone, Debug)]
pub struct TestSetScorer {
    test: Arc<Dataset>,
    name: String,
    device: Device,
}

impl TestSetScorer {
    /// Scores on `test` (named `name` in logs and on the status page).
    pub fn new(test: Arc<Dataset>, name: impl Into<String>, device: Device) -> Self {
        Self {
            test,
            name: name.into(),
            device,
        }
    }
}

impl Scorer for TestSetScorer {
    fn describe(&self) -> String {
        format!(
            "the built-in MLP on the {} test set ({} images)",
            self.name,
            self.test.len()
        )
    }

    fn score(&self, _round: u32, model: &ParamSet) -> Result<Score, ScoreError> {
        let mlp = Mlp::from_params(model, &self.device).map_err(|e| {
            ScoreError(format!(
                "test data scores the built-in MLP, and this model is not one ({e}); score other models with your own evaluator (fusion-server --evaluate-cmd)"
            ))
        })?;
        mlp.check_data(self.test.features(), self.test.classes())
            .map_err(|e| ScoreError(format!("the {} test set: {e}", self.name)))?;
        let m = crate::evaluate(&mlp, &self.test, &self.device)
            .map_err(|e| ScoreError(e.to_string()))?;
        Ok(Score {
            loss: Some(m.loss),
            accuracy: Some(m.accuracy),
            metrics: Default::default(),
        })
    }
}
