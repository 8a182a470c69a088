//! Errors of the models crate.

use fusion_core::{ParamsError, SpecError};

/// A model description or parameter file that cannot become a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A parameter set that is not the MLP it should be.
    #[error("not an MLP in PyTorch layout: {0}")]
    NotAnMlp(String),
    /// A parameter set that is not the CNN (`resnet`, `vgg`) asked for.
    #[error("not a {family} in PyTorch layout: {reason}")]
    NotArchitecture {
        /// `resnet` or `vgg`.
        family: &'static str,
        /// The tensor at fault and how.
        reason: String,
    },
    /// A parameter set of none of the built-in architectures.
    #[error("not a built-in architecture: {0}")]
    Unrecognised(String),
    /// A `--model` name that is not a built-in architecture.
    #[error("bad model `{given}`: {reason}")]
    BadArchitecture {
        /// The name as given.
        given: String,
        /// Why it is refused.
        reason: String,
    },
    /// A parameter set that does not fit the data (input width or classes).
    #[error("model expects {model} {what}, the data has {data}")]
    DataMismatch {
        /// `input features` or `classes`.
        what: &'static str,
        /// The model's count.
        model: usize,
        /// The data's count.
        data: usize,
    },
    /// A parameter set could not be built or read.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The model's permutation spec could not be built.
    #[error(transparent)]
    Spec(#[from] SpecError),
}
