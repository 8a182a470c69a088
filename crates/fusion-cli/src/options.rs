//! Turns parsed flags into engine options.

use anyhow::Result;
use fusion_core::{Device, MatchOptions, SpecSource};

use crate::cli::MatchArgs;
use crate::files;

/// Everything weight matching needs, resolved from the flags.
pub struct Matching {
    /// Spec source.
    pub spec: SpecSource,
    /// Compute device.
    pub device: Device,
    /// Options.
    pub options: MatchOptions,
}

impl Matching {
    /// Reads the spec file (if any) and creates the device.
    pub fn from_args(args: &MatchArgs) -> Result<Self> {
        Ok(Self {
            spec: files::read_spec(&args.spec)?,
            device: args.backend.device()?,
            options: MatchOptions {
                seed: args.seed,
                max_sweeps: usize::try_from(args.max_sweeps).unwrap_or(usize::MAX),
                ..MatchOptions::default()
            },
        })
    }
}

/// A training configuration from the shared training flags.
pub fn train_config(
    args: &crate::cli::TrainingArgs,
    dataset: &fusion_data::DataSource,
    label: &str,
) -> fusion_train::TrainConfig {
    fusion_train::TrainConfig {
        epochs: args.epochs,
        batch: usize::try_from(args.batch).unwrap_or(usize::MAX),
        lr: args.lr,
        optimizer: args.optimizer,
        seed: args.seed,
        proximal_mu: 0.0,
        augment: args.augment.enabled(dataset),
        progress: !args.no_progress,
        label: label.into(),
    }
}

/// Loads a dataset, saying which one in the error.
pub fn load_data(source: &fusion_data::DataSource) -> Result<fusion_data::TrainTest> {
    use anyhow::Context;
    source
        .load()
        .with_context(|| format!("cannot load dataset `{source}`"))
}
