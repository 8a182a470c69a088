//! Scoring a federation's global model with a built-in network on a test
//! set: what `fusion-server --test-data` and `fusion simulate` hand the
//! server.

use std::sync::Arc;

use fusion_core::{Device, ParamSet, Score, ScoreError, Scorer};
use fusion_data::Dataset;
use fusion_models::Network;

/// Test loss and accuracy of a built-in network (MLP, ResNet, VGG) on a held-out set.
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
            "the built-in network on the {} test set ({} images)",
            self.name,
            self.test.len()
        )
    }

    fn score(&self, _round: u32, model: &ParamSet) -> Result<Score, ScoreError> {
        let network = Network::from_params(model, &self.device).map_err(|e| {
            ScoreError(format!(
                "test data scores the built-in networks (mlp, resnet, vgg), and this model is none of them ({e}); score other models with your own evaluator (fusion-server --evaluate-cmd)"
            ))
        })?;
        network
            .check_data(self.test.shape(), self.test.classes())
            .map_err(|e| ScoreError(format!("the {} test set: {e}", self.name)))?;
        let m = crate::evaluate_network(&network, &self.test, &self.device)
            .map_err(|e| ScoreError(e.to_string()))?;
        Ok(Score {
            loss: Some(m.loss),
            accuracy: Some(m.accuracy),
            metrics: Default::default(),
        })
    }
}
