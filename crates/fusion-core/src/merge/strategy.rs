use super::{MergeError, MergeOutcome, ModelReport};
use crate::params::ParamSet;

/// How a set of models becomes one. FedAvg, align-to-reference and
/// MergeMany implement it; the offline `fusion merge` and the federated
/// server both drive strategies only through this trait.
///
/// Like Flower's `Strategy`, it holds no transport and does no I/O: the
/// round loop lives elsewhere, and a strategy only decides how updates
/// combine. Aggregation is incremental ([`Strategy::begin`] then
/// [`Aggregation::add`] per model) so a server can fold updates in as they
/// arrive.
pub trait Strategy: Send + Sync {
    /// Short name, as used on the command line (`average`, `align`, …).
    fn name(&self) -> &'static str;

    /// Starts an aggregation. `reference` is the model to align to (the
    /// current global model in federation); strategies that need one use the
    /// first model added when it is `None`, and plain averaging ignores it.
    fn begin(&self, reference: Option<&ParamSet>) -> Result<Box<dyn Aggregation + '_>, MergeError>;

    /// Merges `models` (with their weights) in one call.
    fn merge(
        &self,
        reference: Option<&ParamSet>,
        models: &[(ParamSet, f64)],
    ) -> Result<MergeOutcome, MergeError> {
        let mut aggregation = self.begin(reference)?;
        for (model, weight) in models {
            aggregation.add(model, *weight)?;
        }
        aggregation.finish()
    }
}

/// One aggregation in progress.
pub trait Aggregation: Send {
    /// Folds in one model. On error the aggregation is unchanged, so a bad
    /// update can be dropped and the others still merged.
    fn add(&mut self, model: &ParamSet, weight: f64) -> Result<ModelReport, MergeError>;

    /// Number of models folded in so far.
    fn count(&self) -> usize;

    /// The merged model.
    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError>;
}
