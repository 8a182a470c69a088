//! Settings of one local training run.

use crate::error::TrainError;
use crate::optimizer::OptimizerKind;

/// Hyper-parameters of local training. The defaults are the paper's MLP
/// recipe: Adam, learning rate 1e-3, batch 500.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Examples per step; the last batch of an epoch may be smaller.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Seeds the shuffling of every epoch (and nothing else: the model's
    /// initial weights are seeded where the model is made).
    pub seed: u64,
    /// FedProx proximal weight μ: adds μ/2·‖w − w₀‖² to the loss, with w₀
    /// the weights training started from. 0 (the default) is plain training.
    pub proximal_mu: f64,
    /// Random 4-pixel crops and left-right mirroring of every training
    /// image (the CIFAR recipe; off for Fashion-MNIST, whose items are
    /// centred and not mirror-symmetric in meaning).
    pub augment: bool,
    /// Draw a progress bar when standard error is a terminal.
    pub progress: bool,
    /// Names the run in logs and on the bar, e.g. `model A`.
    pub label: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch: 500,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            seed: 0,
            proximal_mu: 0.0,
            augment: false,
            progress: true,
            label: "model".into(),
        }
    }
}

impl TrainConfig {
    /// Checks ranges, naming the setting at fault.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |name: &'static str, value: String, reason: &str| {
            Err(TrainError::BadSetting {
                name,
                value,
                reason: reason.into(),
            })
        };
        if self.batch == 0 {
            return bad("batch", "0".into(), "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "must be a positive number");
        }
        if !(self.proximal_mu.is_finite() && self.proximal_mu >= 0.0) {
            return bad(
                "proximal_mu",
                self.proximal_mu.to_string(),
                "must be 0 or more",
            );
        }
        Ok(())
    }
}
