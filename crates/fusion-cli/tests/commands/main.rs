//! Integration tests of fusion-cli, in one binary: one link of burn instead of one per file.

mod cli;
mod common;
mod federation;
mod training_commands;
