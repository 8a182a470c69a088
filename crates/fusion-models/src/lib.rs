//! Models for Fusion, as burn modules that convert both ways with the
//! engine's [`fusion_core::ParamSet`] in PyTorch names and layout.
//!
//! The paper's MLP ([`Mlp`]), a CIFAR ResNet with a width multiplier
//! ([`ResNet`]: ResNet-20 and deeper) and a VGG-style CNN ([`Vgg`]), each
//! with its permutation spec inferred from its names (`fusion_core`'s
//! `infer_mlp_spec`, `infer_resnet_spec`, `infer_vgg_spec`). [`Network`]
//! holds any of them and [`Architecture`] is what `--model` names.
//! Files written from them load into the matching PyTorch modules.

mod check;
mod error;
mod layers;
mod mlp;
mod network;
mod resnet;
mod vgg;

pub use check::{SAME_FUNCTION_TOLERANCE, permuted_output_difference};
pub use error::ModelError;
/// The built-in MLP's widths (defined in fusion-core, which servers build
/// first weights from without model code).
pub use fusion_core::MlpArchitecture;
pub use layers::{Norm2d, NormKind};
pub use mlp::{Mlp, host};
pub use network::{Architecture, Network, initial_cnn};
pub use resnet::{BasicBlock, ResNet, ResNetShape, Shortcut};
pub use vgg::{Vgg, VggConv, VggShape};
