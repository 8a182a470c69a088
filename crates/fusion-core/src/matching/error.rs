use crate::device::BackendError;
use crate::lap::LapError;
use crate::params::ParamsError;
use crate::perm::PermError;
use crate::spec::SpecError;

/// Why weight matching could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatchError {
    /// A model does not fit the spec.
    #[error("model {model}: {source}")]
    Spec {
        /// Which model (0 = A, 1 = B, or the index in a merge).
        model: usize,
        /// The mismatch.
        source: SpecError,
    },
    /// A model holds NaN or infinity.
    #[error("model {model}: {source}")]
    Params {
        /// Which model.
        model: usize,
        /// The bad value.
        source: ParamsError,
    },
    /// The warm-start permutations do not fit the spec.
    #[error("initial permutations: {0}")]
    Init(#[from] PermError),
    /// The assignment solver failed (a non-finite cost).
    #[error("assignment for permutation '{perm}': {source}")]
    Lap {
        /// Permutation being solved.
        perm: String,
        /// Solver error.
        source: LapError,
    },
    /// The compute device is unavailable.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Reading back a tensor from the device failed.
    #[error("device error: {0}")]
    Device(String),
}
