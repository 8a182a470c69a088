//! Integration tests of fusion-core, in one binary: one link of burn instead of one per file.

mod common;
mod lap_solver;
mod least_squares;
mod merge;
mod permutation;
mod spec_validation;
mod weight_matching;
