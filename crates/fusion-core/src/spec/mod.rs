//! Permutation specs: which tensor axes each permutation of hidden units
//! reorders, as in Ainsworth et al.'s `PermutationSpec`.

mod cnn;
mod error;
mod file;
mod infer;
mod model;
mod validate;

pub use cnn::{indexed_layers, infer_resnet_spec, infer_vgg_spec};
pub use error::SpecError;
pub use infer::{LinearLayer, infer_mlp_spec, linear_chain};
pub use model::{AxisRef, PermDef, PermutationSpec, SpecSource, infer_any};
pub use validate::ValidatedSpec;
