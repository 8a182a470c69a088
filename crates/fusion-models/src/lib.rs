//! Models for Fusion, as burn modules that convert both ways with the
//! engine's [`fusion_core::ParamSet`] in PyTorch names and layout.
//!
//! Today that is the paper's MLP ([`Mlp`]), whose permutation spec comes with
//! it ([`Mlp::permutation_spec`]); files written from it load in PyTorch as
//! the state dict of `nn.ModuleList([nn.Linear, ...])` stored under `layers`.

mod error;
mod mlp;

pub use error::ModelError;
/// The built-in MLP's widths (defined in fusion-core, which servers build
/// first weights from without model code).
pub use fusion_core::MlpArchitecture;
pub use mlp::{Mlp, host};
