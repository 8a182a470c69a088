use std::sync::Arc;

use burn::tensor::Device;

use super::{
    AlignToReference, BatchNormStatistics, Layerwise, MergeMany, ReestimateBatchNorm, Reference,
    RegMean, Repair, RepairMode, Strategy, StrategyKind, WeightedAverage,
};
use crate::matching::MatchOptions;
use crate::spec::SpecSource;

/// Everything that configures a strategy, and the one place that builds
/// one: the server, `fusion merge` and `fusion simulate` all go through
/// [`StrategyConfig::build`], so a strategy behaves the same wherever it
/// runs. Options a strategy does not use are ignored by it.
#[derive(Clone, Debug)]
pub struct StrategyConfig {
    /// Which strategy.
    pub kind: StrategyKind,
    /// Where aligning strategies get the permutation spec.
    pub spec: SpecSource,
    /// Device for weight matching's cost matrices.
    pub device: Device,
    /// Weight-matching options (seed, sweeps).
    pub options: MatchOptions,
    /// What `align` aligns to.
    pub reference: Reference,
    /// MergeMany's pass cap.
    pub max_passes: usize,
    /// RegMean's off-diagonal weight α on the Gram matrices.
    pub regmean_alpha: f64,
    /// Ridge of the least-squares strategies, as a fraction of the mean
    /// diagonal of each layer's Gram matrix, towards the FedAvg weights.
    /// Dead hidden units make Gram matrices exactly singular; 1e-4 handles
    /// them and moved the measured accuracy by at most 0.003 (issue 10).
    pub ridge: f64,
    /// Whether `layerwise` starts from an alignment of the clients to the
    /// largest one (see [`Layerwise::align`]). Off by default; its
    /// measured effect is in docs/experiments.md.
    pub layerwise_align: bool,
    /// Whether each round ends with an exchange in which clients measure
    /// the merged model's BatchNorm statistics on their data (see
    /// [`ReestimateBatchNorm`]). Only a federation can: offline merges
    /// ignore it. Models without BatchNorm skip the exchange.
    pub batch_norm: BatchNormStatistics,
    /// Whether each round REPAIRs the merge (see [`Repair`]): clients send
    /// their own models' norm output moments with their weights, and
    /// further exchanges rescale the merged model's norms to them. Only a
    /// federation can; models without norm layers skip it.
    pub repair: RepairMode,
}

impl StrategyConfig {
    /// The default RegMean α (Jin et al.'s recommendation).
    pub const DEFAULT_REGMEAN_ALPHA: f64 = 0.9;
    /// The default ridge.
    pub const DEFAULT_RIDGE: f64 = 1e-4;

    /// `kind` with every other option at its default.
    pub fn new(kind: StrategyKind, spec: SpecSource, device: Device) -> Self {
        Self {
            kind,
            spec,
            device,
            options: MatchOptions::default(),
            reference: Reference::default(),
            max_passes: MergeMany::DEFAULT_MAX_PASSES,
            regmean_alpha: Self::DEFAULT_REGMEAN_ALPHA,
            ridge: Self::DEFAULT_RIDGE,
            layerwise_align: false,
            batch_norm: BatchNormStatistics::default(),
            repair: RepairMode::Off,
        }
    }

    /// Checks the numeric options, naming the one out of range.
    pub fn validate(&self) -> Result<(), String> {
        Self::check_options(self.max_passes, self.regmean_alpha, self.ridge)
    }

    /// The checks of [`StrategyConfig::validate`], for settings read before
    /// a device exists (a server's config file).
    pub fn check_options(max_passes: usize, regmean_alpha: f64, ridge: f64) -> Result<(), String> {
        if !(0.0..=1.0).contains(&regmean_alpha) {
            return Err(format!(
                "regmean_alpha must be between 0 and 1, got {regmean_alpha}"
            ));
        }
        if !(ridge.is_finite() && ridge >= 0.0) {
            return Err(format!("ridge must be a finite number >= 0, got {ridge}"));
        }
        if max_passes == 0 {
            return Err("max_passes must be at least 1".into());
        }
        Ok(())
    }

    /// The strategy, wrapped in [`ReestimateBatchNorm`] and then
    /// [`Repair`] when asked: REPAIR rescales a model whose running
    /// statistics are final, so re-estimation comes first.
    pub fn build(&self) -> Arc<dyn Strategy> {
        let mut strategy = self.build_merge();
        if self.batch_norm == BatchNormStatistics::Reestimate {
            strategy = Arc::new(ReestimateBatchNorm { inner: strategy });
        }
        if self.repair != RepairMode::Off {
            strategy = Arc::new(Repair {
                inner: strategy,
                spec: self.spec.clone(),
                mode: self.repair,
            });
        }
        strategy
    }

    /// The strategy that merges the weights.
    fn build_merge(&self) -> Arc<dyn Strategy> {
        match self.kind {
            StrategyKind::Fedavg => Arc::new(WeightedAverage),
            StrategyKind::Align => Arc::new(AlignToReference {
                spec: self.spec.clone(),
                device: self.device.clone(),
                options: self.options.clone(),
                reference: self.reference,
            }),
            StrategyKind::MergeMany => Arc::new(MergeMany {
                spec: self.spec.clone(),
                device: self.device.clone(),
                options: self.options.clone(),
                max_passes: self.max_passes,
            }),
            StrategyKind::Regmean => Arc::new(RegMean {
                alpha: self.regmean_alpha,
                ridge: self.ridge,
            }),
            StrategyKind::Layerwise => Arc::new(Layerwise {
                ridge: self.ridge,
                align: self.layerwise_align.then(|| AlignToReference {
                    spec: self.spec.clone(),
                    device: self.device.clone(),
                    options: self.options.clone(),
                    reference: Reference::Largest,
                }),
            }),
        }
    }
}
