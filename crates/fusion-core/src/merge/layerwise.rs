use std::sync::Arc;

use super::client_alignment::ClientAlignment;
use super::least_squares::LayerSystem;
use super::statistics::{StatisticKind, StatisticRequest};
use super::{
    Aggregation, AlignToReference, Instructions, MergeError, MergeOutcome, ModelReport,
    RoundContext, RunningSum, Strategy, StrategyKind, Update,
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
#[derive(Clone, Debug)]
pub struct Layerwise {
    /// Ridge as a fraction of the mean diagonal, towards the FedAvg
    /// weights (see [`StrategyConfig::ridge`](super::StrategyConfig::ridge)).
    pub ridge: f64,
    /// Opt-in: start from an alignment. Exchange 0's models are
    /// weight-matched to the largest client, the ridge's FedAvg target is
    /// their aligned average, and each client's cross terms are put in its
    /// aligned order, so output unit `j` of a layer means the same unit
    /// for every client (see `ClientAlignment`). Costs weight matching
    /// and one model per client during exchange 0; its measured effect is
    /// in docs/experiments.md.
    pub align: Option<AlignToReference>,
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
            alignment: self.align.as_ref().map(ClientAlignment::new),
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

struct LayerwiseAggregation<'s> {
    ridge: f64,
    /// With [`Layerwise::align`]: the clients' alignment.
    alignment: Option<ClientAlignment<'s>>,
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

impl LayerwiseAggregation<'_> {
    fn requests(&self) -> [StatisticRequest; 2] {
        let layer = &self.chain[self.layer];
        [
            StatisticRequest::new(StatisticKind::Gram, layer),
            StatisticRequest::new(StatisticKind::Cross, layer),
        ]
    }

    /// Solves the current layer into the partial model.
    fn solve_current(&mut self) -> Result<(), MergeError> {
        self.align_exchange_zero()?;
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

    /// With alignment, at the end of exchange 0: aligns the held models,
    /// folds them into the average and their layer-0 cross terms into the
    /// system, and records how far each moved.
    fn align_exchange_zero(&mut self) -> Result<(), MergeError> {
        let Some(alignment) = self.alignment.as_mut().filter(|a| a.pending()) else {
            return Ok(());
        };
        let aligned = alignment.align(&self.chain[0])?;
        for cross in &aligned.crosses {
            self.system.add_cross(cross.data());
        }
        self.sum = aligned.sum;
        self.reports = aligned.reports;
        Ok(())
    }
}

impl Aggregation for LayerwiseAggregation<'_> {
    fn instructions(&self) -> Instructions {
        let first = self.layer == 0;
        Instructions {
            exchange: self.layer as u32,
            train: first,
            send_weights: first,
            statistics: self.requests().to_vec(),
            model: if first { None } else { self.merged.clone() },
            optional: false,
        }
    }

    fn add(&mut self, update: Update) -> Result<ModelReport, MergeError> {
        self.instructions().check(&update)?;
        let [gram, cross] = self.requests().map(|r| r.name());
        let (g, c) = match (update.statistics.get(&gram), update.statistics.get(&cross)) {
            (Some(g), Some(c)) => (g, c),
            // Unreachable after the check above, which requires both.
            _ => {
                return Err(MergeError::BadUpdate(format!(
                    "`{gram}` or `{cross}` is missing"
                )));
            }
        };
        let client = update.client.as_deref();
        let report = if self.layer == 0 {
            let index = self.reports.len();
            RunningSum::check_weight(index, update.weight)?;
            let params = update.require_params()?;
            match &mut self.alignment {
                // The cross term waits for the alignment; the Gram matrix
                // (the data's own) is added below.
                Some(alignment) => alignment.hold(client, params, update.weight, c)?,
                None => {
                    self.sum.add(params, update.weight)?;
                    self.system.add_cross(c.data());
                }
            }
            let report = ModelReport {
                index,
                weight: update.weight,
                ..ModelReport::default()
            };
            self.reports.push(report.clone());
            report
        } else {
            match &self.alignment {
                Some(alignment) => {
                    let layer = &self.chain[self.layer];
                    let aligned = alignment.cross_in_aligned_order(client, layer, c)?;
                    self.system.add_cross(aligned.data());
                }
                None => self.system.add_cross(c.data()),
            }
            ModelReport {
                index: self.updates_in_exchange,
                weight: update.weight,
                ..ModelReport::default()
            }
        };
        self.system.add_gram(g.data());
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
