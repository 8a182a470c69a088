//! Permutation specs: which tensor axes each permutation of hidden units
//! reorders, as in Ainsworth et al.'s `PermutationSpec`.

mod error;
mod file;
mod infer;
mod model;
mod validate;

pub use error::SpecError;
pub use infer::{LinearLayer, infer_mlp_spec, linear_chain};
pub use model::{AxisRef, PermDef, PermutationSpec, SpecSource};
pub use validate::ValidatedSpec;
