//! One line of `rounds.jsonl`: what a round did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one client's update contributed to a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRound {
    /// Client id.
    pub client: String,
    /// Examples behind the update: its weight, the upload's claim capped
    /// at the client's Join count.
    pub examples: u64,
    /// What the upload claimed, when the server records it (absent in
    /// records written before it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_examples: Option<u64>,
    /// Fraction of units the aligning strategy moved, per permutation
    /// (hidden layer). Empty for `fedavg`, all zeros when alignment found
    /// the identity.
    pub moved: BTreeMap<String, f64>,
}

/// A completed round, as appended to `rounds.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Round number, from 1.
    pub round: u32,
    /// Strategy that merged it.
    pub strategy: String,
    /// Tries it took (retries happen when too few updates arrived).
    pub attempts: u32,
    /// Updates merged.
    pub clients: u32,
    /// Examples behind them (their weights' sum, saturating: a sum of
    /// untrusted counts must not wrap).
    pub examples: u64,
    /// Seconds from the round opening to the new model being saved.
    pub seconds: f64,
    /// Seconds spent inside the strategy (alignment and averaging).
    pub align_seconds: f64,
    /// Test loss of the new global model, when a scorer is configured
    /// (test data for the built-in model, or the user's evaluator).
    pub test_loss: Option<f64>,
    /// Test accuracy of the new global model, when configured.
    pub test_acc: Option<f64>,
    /// Every metric the scorer reported (a user's evaluator may report
    /// more than loss and accuracy); absent when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Why the new global model could not be scored, when it could not
    /// (the round is kept, unscored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_error: Option<String>,
    /// Mean fraction of units moved, over clients and layers: how far
    /// models had left the common basin (0 when alignment changed nothing).
    pub moved_fraction: f64,
    /// SHA-256 of the new global model's payload.
    pub global_sha256: String,
    /// Per-client summary.
    pub updates: Vec<ClientRound>,
    /// The step after aggregation, when the server has one (absent in
    /// records written before it existed, and when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refinement: Option<RefinementRecord>,
}

/// What the step after aggregation did to a round's merged model. The
/// round's `test_loss` and `test_acc` score the model it saved: the
/// refined one, or the merged one when refinement failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefinementRecord {
    /// The step, e.g. `distill`.
    pub step: String,
    /// Client models it saw (the teachers, for distillation).
    pub observed: u32,
    /// Seconds it took: observing the client models as they arrived (not
    /// counted in `align_seconds`) and refining.
    pub seconds: f64,
    /// Test loss of the strategy's merge before the step, when test data
    /// is configured: the step's own effect is the difference.
    pub merged_test_loss: Option<f64>,
    /// Test accuracy of the merge before the step.
    pub merged_test_acc: Option<f64>,
    /// Why the step failed, when it did (the merged model was then saved
    /// unrefined: a failed refinement never loses a round).
    pub error: Option<String>,
}
