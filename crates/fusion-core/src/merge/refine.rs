//! The optional step after aggregation: what a server can do to the merged
//! model with what it holds itself, never the clients' data.

use super::{MergeError, RoundContext};
use crate::params::ParamSet;

/// A step after a round's aggregation that improves the merged model with
/// material the server holds: ensemble distillation (FedDF) on an unlabeled
/// proxy set is the first. Like [`Strategy`](super::Strategy) it is a pure
/// interface; implementations that need forward passes or training live in
/// the crates that have them (`fusion-train`), and a binary hands one to the
/// server as a trait object, so the server library needs no trainer.
pub trait Refiner: Send + Sync {
    /// Names the step in round records and logs, e.g. `distill`.
    fn name(&self) -> &str;

    /// Starts one round's refinement.
    fn begin(&self, round: &RoundContext) -> Result<Box<dyn Refinement>, MergeError>;
}

/// One round's refinement in progress: it sees each client model the
/// round accepted, then turns the merged model into the refined one.
pub trait Refinement: Send {
    /// Sees one client model accepted in exchange 0 (a FedDF teacher), with
    /// its weight in averages. Called only after the strategy accepted it.
    fn observe(&mut self, model: &ParamSet, weight: f64) -> Result<(), MergeError>;

    /// Client models observed so far.
    fn observed(&self) -> usize;

    /// The refined model, starting from the strategy's `merged`.
    fn refine(self: Box<Self>, merged: &ParamSet) -> Result<ParamSet, MergeError>;
}
