//! # fusion-core
//!
//! The pure engine of Fusion: model parameters as data, permutation specs,
//! weight matching (Git Re-Basin), and merging strategies. It does no
//! network or file I/O; it reads and writes safetensors *bytes*.
//!
//! Central types:
//! - [`ParamSet`]: a model's named `f32` tensors, PyTorch layout.
//! - [`PermutationSpec`] / [`ValidatedSpec`]: which tensor axes each
//!   permutation of hidden units reorders.
//! - [`weight_matching`]: finds the permutations aligning model B to A.
//! - [`Strategy`]: how many models become one ([`WeightedAverage`],
//!   [`AlignToReference`], [`MergeMany`], [`RegMean`], [`Layerwise`]),
//!   chosen by [`StrategyKind`] and built by [`StrategyConfig`]; an
//!   optional [`Refiner`] improves the merged model on the server, and a
//!   [`Scorer`] scores it.
//! - [`MlpArchitecture`]: the built-in MLP's widths (`mlp:512x3`), from
//!   which [`synthetic::random_mlp`] makes first weights without model code.
//!
//! ```
//! use fusion_core::{ComputeBackend, MatchOptions, ParamSet, ParamTensor, infer_mlp_spec, weight_matching};
//!
//! // A 2-4-1 MLP, and the same network with its hidden units reversed.
//! let mut a = ParamSet::new();
//! a.insert("layers.0.weight", ParamTensor::new("w0", vec![4, 2], (0..8).map(|x| x as f32).collect())?)?;
//! a.insert("layers.1.weight", ParamTensor::new("w1", vec![1, 4], vec![1.0, -2.0, 3.0, -4.0])?)?;
//! let spec = infer_mlp_spec(&a)?.validate(&a)?;
//! let reversed = vec![fusion_core::Permutation::from_vec("P_0", vec![3, 2, 1, 0])?];
//! let b = spec.apply(&a, &reversed)?;
//!
//! let device = ComputeBackend::Flex.device()?;
//! let found = weight_matching(&spec, &a, &b, &device, &MatchOptions::default())?;
//! assert_eq!(spec.apply(&b, &found.perms)?, a);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - `params`: [`ParamSet`], safetensors bytes in and out.
//! - `spec`: spec types, the spec file format, MLP inference, validation.
//! - `perm`: [`Permutation`].
//! - `lap`: the exact assignment solver ([`LapSolver`]).
//! - `matching`: cost matrices on a burn device, and the sweep loop.
//! - `merge`: [`Strategy`] and its implementations.
//! - `device`: [`ComputeBackend`], choosing CPU or GPU at run time.
//! - [`synthetic`]: generated models for demos, benchmarks and tests.

#![deny(missing_docs)]

mod architecture;
mod device;
mod lap;
mod matching;
mod merge;
mod params;
mod perm;
mod spec;
pub mod synthetic;
mod text;

pub use architecture::{ArchitectureError, MlpArchitecture};
pub use device::{BackendError, ComputeBackend};
pub use lap::{Assignment, LapError, LapSolver, Sense};
pub use matching::{MatchError, MatchOptions, MatchResult, is_running_statistic, weight_matching};
pub use merge::{
    Aggregation, AlignToReference, BatchNormStatistics, Instructions, Layerwise, MergeError,
    MergeMany, MergeOutcome, ModelReport, PermMoved, ReestimateBatchNorm, Reference, Refinement,
    Refiner, RegMean, Repair, RepairMode, RoundContext, RunningSum, Score, ScoreError, Scorer,
    StatisticKind, StatisticRequest, StatisticTensor, Strategy, StrategyConfig, StrategyKind,
    Update, WeightedAverage, add_unpacked, batch_norm_layers, check_gram, check_moments,
    norm_layers, pack_upper,
};
pub use params::{
    ParamSet, ParamTensor, ParamsError, RawTensor, TensorInfo, describe_safetensors, natural_cmp,
    safetensors_metadata,
};
pub use perm::{PermError, Permutation};
pub use spec::{
    AxisRef, LinearLayer, PermDef, PermutationSpec, SpecError, SpecSource, ValidatedSpec,
    indexed_layers, infer_any, infer_mlp_spec, infer_resnet_spec, infer_vgg_spec, linear_chain,
};
pub use text::is_hidden;

/// Re-exported so callers can name a device without depending on burn.
pub use burn::tensor::Device;
