//! Merging models: plain weighted averaging (FedAvg), alignment to a
//! reference, and MergeMany, behind one [`Strategy`] trait that the
//! federated server drives round after round.

mod align;
mod average;
mod error;
mod fold;
mod merge_many;
mod report;
mod running_sum;
mod strategy;

pub use align::AlignToReference;
pub use average::WeightedAverage;
pub use error::MergeError;
pub use merge_many::MergeMany;
pub use report::{MergeOutcome, ModelReport, PermMoved};
pub use running_sum::RunningSum;
pub use strategy::{Aggregation, Strategy};
