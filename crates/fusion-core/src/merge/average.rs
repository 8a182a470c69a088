use super::fold::Fold;
use super::{
    Aggregation, MergeError, MergeOutcome, ModelReport, RoundContext, Strategy, StrategyKind,
    Update,
};

/// Coordinate-wise weighted average of parameters: FedAvg when the weights
/// are example counts. The baseline Fusion improves on; also the right
/// answer when all models share a basin (every client started the round
/// from the same global model).
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedAverage;

impl Strategy for WeightedAverage {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Fedavg
    }

    fn begin(&self, _round: &RoundContext) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        Ok(Box::new(AverageAggregation::default()))
    }
}

#[derive(Default)]
struct AverageAggregation {
    fold: Fold,
}

impl Aggregation for AverageAggregation {
    fn add(&mut self, update: Update) -> Result<ModelReport, MergeError> {
        let report = ModelReport {
            index: self.fold.next_index(),
            weight: update.weight,
            ..ModelReport::default()
        };
        self.fold.add(update.require_params()?, report)
    }

    fn count(&self) -> usize {
        self.fold.count()
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        self.fold.finish(0)
    }
}
