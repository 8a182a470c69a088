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
