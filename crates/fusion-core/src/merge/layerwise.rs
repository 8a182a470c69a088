use std::sync::Arc;

use super::least_squares::LayerSystem;
use super::statistics::{StatisticKind, StatisticRequest};
use super::{
    Aggregation, Instructions, MergeError, MergeOutcome, ModelReport, RoundContext, RunningSum,
    Strategy, StrategyKind, Update,
};
use crate::params::ParamSet;
use crate::spec::{LinearLayer, linear_chain};

/// Layer-wise least squares: solves each linear layer `l` in order, from
/// the first, so that the **merged** model's layer maps its own inputs to
/// each client's pre-activations on that client's data:
/// `W_l = (Σᵢ X̃ᵢᵀX̃ᵢ)⁻¹ Σᵢ X̃ᵢᵀ Yᵢ`, with `X̃ᵢ` layer `l`'s input in the
/// merged model built so far and `Yᵢ` the pre-activation in client `i`'s
/// own model. Unlike RegMean it corrects, layer after layer, for how the
/// merged model's earlier layers differ from each client's.
///
/// One exchange per layer. Exchange 0: clients train and send their
/// weights, with the Gram matrix and cross term of layer 0 (whose input is
/// the data itself). Exchange `l`: the server sends the partial model
/// (layers below `l` solved, the rest FedAvg) and clients send layer `l`'s
/// two statistics, computed by forward passes only. A client that drops
/// out between exchanges is absent from later layers' sums; nothing it
/// sent before is lost or double counted.
#[derive(Clone, Copy, Debug)]
pub struct Layerwise {
    /// Ridge as a fraction of the mean diagonal, towards the FedAvg
    /// weights (see [`StrategyConfig::ridge`](super::StrategyConfig::ridge)).
    pub ridge: f64,
}

impl Strategy for Layerwise {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Layerwise
    }

    fn begin(&self, round: &RoundContext) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        let template = round
            .global
            .as_deref()
            .ok_or(MergeError::NeedsStatistics(StrategyKind::Layerwise))?;
        let chain = linear_chain(template)?;
        let Some(first) = chain.first().cloned() else {
            return Err(MergeError::NoModels);
        };
        Ok(Box::new(LayerwiseAggregation {
            ridge: self.ridge,
            system: LayerSystem::new(first),
            chain,
            layer: 0,
            solved: 0,
            updates_in_exchange: 0,
            sum: RunningSum::new(),
            prior: None,
            merged: None,
            reports: Vec::new(),
        }))
    }
}

struct LayerwiseAggregation {
    ridge: f64,
    chain: Vec<LinearLayer>,
    /// The layer (and exchange) being collected.
    layer: usize,
    /// Layers solved so far.
    solved: usize,
    system: LayerSystem,
    updates_in_exchange: usize,
    /// FedAvg of the weights sent in exchange 0.
    sum: RunningSum,
    /// That average, once exchange 0 is over: the ridge's target.
    prior: Option<ParamSet>,
    /// The partial model: layers below `layer` solved, the rest FedAvg.
    merged: Option<Arc<ParamSet>>,
    reports: Vec<ModelReport>,
}

impl LayerwiseAggregation {
    fn requests(&self) -> [StatisticRequest; 2] {
        let layer = &self.chain[self.layer];
        [
            StatisticRequest::new(StatisticKind::Gram, layer),
            StatisticRequest::new(StatisticKind::Cross, layer),
        ]
    }

    /// Solves the current layer into the partial model.
    fn solve_current(&mut self) -> Result<(), MergeError> {
        let prior = match &self.prior {
            Some(p) => p,
            None => self.prior.insert(self.sum.mean()?),
        };
        // A copy: a failed solve leaves the layers solved so far in place.
        let mut merged = match &self.merged {
            Some(m) => m.as_ref().clone(),
            None => prior.clone(),
        };
        self.system.solve_into(self.ridge, prior, &mut merged)?;
        self.merged = Some(Arc::new(merged));
        self.solved = self.layer + 1;
        Ok(())
    }
}

impl Aggregation for LayerwiseAggregation {
    fn instructions(&self) -> Instructions {
        let first = self.layer == 0;
        Instructions {
            exchange: self.layer as u32,
            train: first,
            send_weights: first,
            statistics: self.requests().to_vec(),
            model: if first { None } else { self.merged.clone() },
        }
    }

    fn add(&mut self, update: Update) -> Result<ModelReport, MergeError> {
        self.instructions().check(&update)?;
        let [gram, cross] = self.requests().map(|r| r.name());
        let report = if self.layer == 0 {
            let index = self.reports.len();
            RunningSum::check_weight(index, update.weight)?;
            self.sum.add(update.require_params()?, update.weight)?;
            let report = ModelReport {
                index,
                weight: update.weight,
                ..ModelReport::default()
            };
            self.reports.push(report.clone());
            report
        } else {
            ModelReport {
                index: self.updates_in_exchange,
                weight: update.weight,
                ..ModelReport::default()
            }
        };
        if let (Some(g), Some(c)) = (update.statistics.get(&gram), update.statistics.get(&cross)) {
            self.system.add_gram(g.data());
            self.system.add_cross(c.data());
        }
        self.updates_in_exchange += 1;
        Ok(report)
    }

    fn count(&self) -> usize {
        self.updates_in_exchange
    }

    fn advance(&mut self) -> Result<Option<Instructions>, MergeError> {
        if self.updates_in_exchange == 0 {
            return Err(MergeError::NoModels);
        }
        self.solve_current()?;
        if self.layer + 1 >= self.chain.len() {
            return Ok(None);
        }
        self.layer += 1;
        self.system = LayerSystem::new(self.chain[self.layer].clone());
        self.updates_in_exchange = 0;
        Ok(Some(self.instructions()))
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        let mut this = *self;
        // A caller that finishes without advancing past the last exchange
        // still gets that layer solved; layers never reached stay FedAvg.
        if this.updates_in_exchange > 0 && this.solved <= this.layer {
            this.solve_current()?;
        }
        let merged = match this.merged {
            Some(m) => Arc::unwrap_or_clone(m),
            None => this.sum.mean()?,
        };
        Ok(MergeOutcome {
            merged,
            reports: this.reports,
            passes: 0,
        })
    }
}
