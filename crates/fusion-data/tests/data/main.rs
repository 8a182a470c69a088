//! Integration tests of fusion-data, in one binary: one link of burn instead of one per file.

mod idx_reader;
mod splits;
