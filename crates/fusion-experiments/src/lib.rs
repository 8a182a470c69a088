//! The paper's experiments as library calls: interpolation between two
//! models with a loss barrier per alignment method ([`interpolate`]), and
//! merging models trained on two shards of a dataset ([`split_merge`]),
//! with plain-text tables, CSV and SVG/PNG figures of the results.
//!
//! The `fusion interpolate` and `fusion experiment split-merge` commands are
//! thin wrappers around these.

mod align;
mod error;
mod interpolate;
mod method;
mod plot;
mod split_merge;
mod table;

pub use align::{Aligned, align, lerp};
pub use error::ExperimentError;
pub use interpolate::{Correction, Curve, Interpolation, interpolate, lambdas};
pub use method::Method;
pub use plot::{Figure, Series};
pub use split_merge::{Row, SplitMergeConfig, SplitMergeReport, split_merge};
pub use table::{
    interpolation_csv, interpolation_figure, interpolation_table, split_merge_csv,
    split_merge_table,
};
