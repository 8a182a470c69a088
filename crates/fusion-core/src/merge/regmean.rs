use super::least_squares::LayerSystem;
use super::statistics::{StatisticKind, StatisticRequest};
use super::{
    Aggregation, Instructions, MergeError, MergeOutcome, ModelReport, RoundContext, RunningSum,
    Strategy, StrategyKind, Update,
};
use crate::spec::linear_chain;

/// RegMean (Jin et al., ICLR 2023): every linear layer solved from the
/// clients' input Gram matrices, `W = (Σ Gᵢ')⁻¹ Σ Gᵢ' Wᵢ` with
/// `Gᵢ' = αGᵢ + (1 − α)·diag(Gᵢ)`, the merge that minimises the sum of the
/// clients' squared output differences on their own data, layer by layer.
///
/// One exchange: clients train, then send their weights and one Gram
/// matrix per layer (the bias is an extra input column of 1s, so it is
/// solved with the weight). The server folds `Σ Gᵢ'` and `Σ Gᵢ' Wᵢ` on
/// arrival: memory is one model plus one system per layer, whatever the
/// number of clients.
#[derive(Clone, Copy, Debug)]
pub struct RegMean {
    /// Weight kept on the Gram matrices' off-diagonal (1: plain least
    /// squares; 0: a per-feature diagonal, close to averaging).
    pub alpha: f64,
    /// Ridge as a fraction of the mean diagonal, towards the FedAvg
    /// weights (see [`StrategyConfig::ridge`](super::StrategyConfig::ridge)).
    pub ridge: f64,
}

impl Strategy for RegMean {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Regmean
    }

    fn begin(&self, round: &RoundContext) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        let template = round
            .global
            .as_deref()
            .ok_or(MergeError::NeedsStatistics(StrategyKind::Regmean))?;
        let chain = linear_chain(template)?;
        let requests = chain
            .iter()
            .map(|l| StatisticRequest::new(StatisticKind::Gram, l))
            .collect();
        Ok(Box::new(RegMeanAggregation {
            strategy: *self,
            instructions: Instructions {
                statistics: requests,
                ..Instructions::train_and_send_weights()
            },
            systems: chain.into_iter().map(LayerSystem::new).collect(),
            sum: RunningSum::new(),
            reports: Vec::new(),
        }))
    }
}

struct RegMeanAggregation {
    strategy: RegMean,
    instructions: Instructions,
    systems: Vec<LayerSystem>,
    sum: RunningSum,
    reports: Vec<ModelReport>,
}

impl Aggregation for RegMeanAggregation {
    fn instructions(&self) -> Instructions {
        self.instructions.clone()
    }

    fn add(&mut self, update: Update) -> Result<ModelReport, MergeError> {
        self.instructions.check(&update)?;
        let index = self.reports.len();
        RunningSum::check_weight(index, update.weight)?;
        let params = update.require_params()?;
        self.sum.add(params, update.weight)?;
        for (system, request) in self.systems.iter_mut().zip(&self.instructions.statistics) {
            if let Some(gram) = update.statistics.get(&request.name()) {
                system.add_regmean(gram.data(), params, self.strategy.alpha);
            }
        }
        let report = ModelReport {
            index,
            weight: update.weight,
            ..ModelReport::default()
        };
        self.reports.push(report.clone());
        Ok(report)
    }

    fn count(&self) -> usize {
        self.reports.len()
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        let prior = self.sum.mean()?;
        let mut merged = prior.clone();
        for system in &self.systems {
            system.solve_into(self.strategy.ridge, &prior, &mut merged)?;
        }
        Ok(MergeOutcome {
            merged,
            reports: self.reports,
            passes: 0,
        })
    }
}
