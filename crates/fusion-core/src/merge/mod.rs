//! Merging models behind one [`Strategy`] trait that the federated server,
//! `fusion merge` and `fusion simulate` drive: plain weighted averaging
//! (FedAvg), alignment to a reference, MergeMany, and the data-aware
//! least-squares merges (RegMean, layer-wise) that ask clients for
//! statistics of their data, and the optional [`Refiner`] step after a
//! round. [`StrategyConfig`] builds any of them from a
//! [`StrategyKind`].

mod align;
mod average;
mod batch_norm;
mod client_alignment;
mod config;
mod error;
mod fold;
mod kind;
mod layerwise;
mod least_squares;
mod merge_many;
mod refine;
mod regmean;
mod repair;
mod report;
mod running_sum;
mod score;
mod statistic_tensor;
mod statistics;
mod strategy;

pub use align::AlignToReference;
pub use average::WeightedAverage;
pub use batch_norm::ReestimateBatchNorm;
pub use config::StrategyConfig;
pub use error::MergeError;
pub use kind::{BatchNormStatistics, Reference, RepairMode, StrategyKind};
pub use layerwise::Layerwise;
pub use merge_many::MergeMany;
pub use refine::{Refinement, Refiner};
pub use regmean::RegMean;
pub use repair::Repair;
pub use report::{MergeOutcome, ModelReport, PermMoved};
pub use running_sum::RunningSum;
pub use score::{Score, ScoreError, Scorer};
pub use statistic_tensor::StatisticTensor;
pub use statistics::{
    StatisticKind, StatisticRequest, add_unpacked, batch_norm_layers, check_gram, check_moments,
    norm_layers, pack_upper,
};
pub use strategy::{Aggregation, Instructions, RoundContext, Strategy, Update};
