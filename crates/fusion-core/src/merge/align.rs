use burn::tensor::Device;

use super::fold::Fold;
use super::{Aggregation, MergeError, MergeOutcome, ModelReport, PermMoved, RunningSum, Strategy};
use crate::matching::{MatchOptions, weight_matching};
use crate::params::ParamSet;
use crate::spec::{SpecSource, ValidatedSpec};

/// Aligns every model to a reference by weight matching, then takes the
/// weighted average: Git Re-Basin's merge, and Fusion's `align` strategy.
///
/// The reference is the one passed to [`Strategy::begin`] (the global
/// model, in federation) or else the first model added. Each model is
/// folded into a running sum as soon as it is aligned, so memory stays at
/// two models however many are merged.
#[derive(Clone, Debug)]
pub struct AlignToReference {
    /// Where the permutation spec comes from.
    pub spec: SpecSource,
    /// Device for the cost matrices.
    pub device: Device,
    /// Matching options (seed, sweeps).
    pub options: MatchOptions,
}

impl AlignToReference {
    /// Aligning strategy with default matching options.
    pub fn new(spec: SpecSource, device: Device) -> Self {
        Self {
            spec,
            device,
            options: MatchOptions::default(),
        }
    }
}

impl Strategy for AlignToReference {
    fn name(&self) -> &'static str {
        "align"
    }

    fn begin(&self, reference: Option<&ParamSet>) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        let target = match reference {
            Some(r) => {
                r.check_finite()?;
                Some((r.clone(), self.spec.resolve(r)?))
            }
            None => None,
        };
        Ok(Box::new(AlignAggregation {
            strategy: self,
            target,
            fold: Fold::default(),
        }))
    }
}

struct AlignAggregation<'s> {
    strategy: &'s AlignToReference,
    target: Option<(ParamSet, ValidatedSpec)>,
    fold: Fold,
}

impl Aggregation for AlignAggregation<'_> {
    fn add(&mut self, model: &ParamSet, weight: f64) -> Result<ModelReport, MergeError> {
        let index = self.fold.next_index();
        RunningSum::check_weight(index, weight)?;
        let (reference, spec) = match &self.target {
            Some((r, s)) => (r, s),
            None => {
                // The first model is the reference: it aligns to itself.
                let spec = self.strategy.spec.resolve(model)?;
                let report = ModelReport {
                    index,
                    weight,
                    moved: PermMoved::list(&spec, &spec.identity()),
                    ..ModelReport::default()
                };
                let report = self.fold.add(model, report)?;
                self.target = Some((model.clone(), spec));
                return Ok(report);
            }
        };
        let found = weight_matching(
            spec,
            reference,
            model,
            &self.strategy.device,
            &self.strategy.options,
        )
        .map_err(|source| MergeError::Match {
            model: index,
            source,
        })?;
        let aligned = spec.apply(model, &found.perms)?;
        let report = ModelReport {
            index,
            weight,
            moved: PermMoved::list(spec, &found.perms),
            sweeps: found.sweeps,
            objective_before: Some(found.initial_objective),
            objective_after: found.objective.last().copied(),
        };
        self.fold.add(&aligned, report)
    }

    fn count(&self) -> usize {
        self.fold.count()
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        self.fold.finish(1)
    }
}
