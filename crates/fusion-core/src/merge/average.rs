use super::{Aggregation, MergeError, MergeOutcome, ModelReport, RunningSum, Strategy};
use crate::params::ParamSet;

/// Coordinate-wise weighted average of parameters: FedAvg when the weights
/// are example counts. The baseline Fusion improves on; also the right
/// answer when all models share a basin (every client started the round
/// from the same global model).
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedAverage;

impl Strategy for WeightedAverage {
    fn name(&self) -> &'static str {
        "average"
    }

    fn begin(
        &self,
        _reference: Option<&ParamSet>,
    ) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        Ok(Box::new(AverageAggregation::default()))
    }
}

#[derive(Default)]
struct AverageAggregation {
    sum: RunningSum,
    reports: Vec<ModelReport>,
}

impl Aggregation for AverageAggregation {
    fn add(&mut self, model: &ParamSet, weight: f64) -> Result<ModelReport, MergeError> {
        self.sum.add(model, weight)?;
        let report = ModelReport {
            index: self.reports.len(),
            weight,
            ..ModelReport::default()
        };
        self.reports.push(report.clone());
        Ok(report)
    }

    fn count(&self) -> usize {
        self.sum.count()
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        Ok(MergeOutcome {
            merged: self.sum.mean()?,
            reports: self.reports,
            passes: 0,
        })
    }
}
