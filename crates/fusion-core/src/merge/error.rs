use crate::matching::MatchError;
use crate::params::ParamsError;
use crate::perm::PermError;
use crate::spec::SpecError;

/// Why a merge failed. Model indices count from 0 in the order the models
/// were added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no models to merge")]
    NoModels,
    /// A weight that is negative, NaN or infinite.
    #[error("model {model}: weight {weight} must be a finite number >= 0")]
    BadWeight {
        /// Model index.
        model: usize,
        /// The weight given.
        weight: f64,
    },
    /// Every weight is zero, so no average exists.
    #[error("the weights sum to zero")]
    ZeroTotalWeight,
    /// A model whose tensors differ from the others', or hold NaN.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The permutation spec does not fit the models.
    #[error("spec: {0}")]
    Spec(#[from] SpecError),
    /// Weight matching failed.
    #[error("model {model}: {source}")]
    Match {
        /// Model index.
        model: usize,
        /// The failure.
        source: MatchError,
    },
    /// An update that is not what the exchange asked for: weights missing
    /// or unasked, a statistic missing, unrequested, misshapen or not
    /// finite. The message names which.
    #[error("{0}")]
    BadUpdate(String),
    /// The strategy needs statistics of the clients' data, which an
    /// offline merge of model files does not have.
    #[error(
        "`{0}` needs statistics computed on each client's data; run it in a federation or `fusion simulate`"
    )]
    NeedsStatistics(super::StrategyKind),
    /// A layer's normal equations are singular (no ridge, or data that
    /// excite too few directions).
    #[error(
        "layer `{layer}`: its normal equations are singular (pivot {pivot}); use a ridge above 0"
    )]
    Singular {
        /// The layer.
        layer: String,
        /// The first failing pivot.
        pivot: usize,
    },
    /// The step after aggregation ([`Refiner`](super::Refiner)) failed; the
    /// message says which and why.
    #[error("refinement `{step}`: {reason}")]
    Refinement {
        /// The step, e.g. `distill`.
        step: String,
        /// What went wrong.
        reason: String,
    },
    /// Found permutations do not fit (an internal inconsistency).
    #[error(transparent)]
    Perm(#[from] PermError),
}
