//! Exact linear assignment (Jonker–Volgenant) with warm starts.

mod jv;

pub use jv::{Assignment, LapError, LapSolver, Sense};
