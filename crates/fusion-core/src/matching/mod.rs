//! Weight matching (Ainsworth et al., Algorithm 1): find the permutations of
//! model B's hidden units that make it closest to model A.

mod cost;
mod error;
mod weight_matching;

pub use cost::is_running_statistic;
pub use error::MatchError;
pub use weight_matching::{MatchOptions, MatchResult, weight_matching};
