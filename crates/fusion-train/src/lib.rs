//! Local training and evaluation for Fusion.
//!
//! What a federated client runs on its shard ([`train`]), how models are
//! scored ([`evaluate`], [`evaluate_ensemble`]), and activation matching
//! ([`activation_matching`]), which needs forward passes over data and so
//! sits here rather than in the pure engine; likewise the server's
//! optional ensemble distillation ([`Distiller`], a `fusion_core::Refiner`).
//!
//! Training runs on any [`burn::tensor::Device`]; the CLI picks burn's
//! `flex` CPU backend by default (the fastest measured here, see
//! `docs/benchmarks.md`) and wgpu by flag.

mod activation_matching;
mod augment;
mod batch_norm;
mod config;
mod distill;
mod error;
mod evaluate;
mod optimizer;
mod progress;
mod repair;
mod score;
mod statistics;
mod ste;
mod tensors;
mod train;

pub use activation_matching::{activation_matching, activation_matching_network};
pub use batch_norm::{batch_norm_moments, reset_batch_norm};
pub use config::TrainConfig;
pub use distill::{DistillConfig, Distiller};
pub use error::TrainError;
pub use evaluate::{
    EVAL_BATCH, Metrics, evaluate, evaluate_ensemble, evaluate_network, evaluate_networks,
};
pub use optimizer::OptimizerKind;
pub use progress::Progress;
pub use repair::{
    ChannelMoments, MomentData, OUTPUT_MOMENT_EXAMPLES, norm_moments, norm_output_moments, repair,
};
pub use score::TestSetScorer;
pub use statistics::{client_statistics, requested_statistics};
pub use ste::{SteConfig, SteResult, ste_matching};
pub use train::{TrainSummary, train, train_network};
