use super::{MergeError, MergeOutcome, ModelReport, RunningSum};
use crate::params::ParamSet;

/// A running sum plus the report of every model in it: the state of each
/// strategy that folds models in as they arrive (FedAvg, align).
#[derive(Default)]
pub(crate) struct Fold {
    sum: RunningSum,
    reports: Vec<ModelReport>,
}

impl Fold {
    /// Index the next model will get.
    pub(crate) fn next_index(&self) -> usize {
        self.reports.len()
    }

    /// Adds `model` at `report.weight` and records the report; on error
    /// nothing changes.
    pub(crate) fn add(
        &mut self,
        model: &ParamSet,
        report: ModelReport,
    ) -> Result<ModelReport, MergeError> {
        self.sum.add(model, report.weight)?;
        self.reports.push(report.clone());
        Ok(report)
    }

    /// Models folded in.
    pub(crate) fn count(&self) -> usize {
        self.sum.count()
    }

    /// The weighted mean and the reports.
    pub(crate) fn finish(self, passes: usize) -> Result<MergeOutcome, MergeError> {
        Ok(MergeOutcome {
            merged: self.sum.mean()?,
            reports: self.reports,
            passes,
        })
    }
}
